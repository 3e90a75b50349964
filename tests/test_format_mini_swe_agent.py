"""mini-swe-agent trajectories and SWE-bench results: sniffing, canonical rows, outcome join.

Fixtures (tests/fixtures/formats/):
- ``mini_swe_agent_django.traj.json``: v1 (``mini-swe-agent-1``), django__django-11099: 6 assistant
  turns -- an ok grep, a format error (2 bash blocks), a failing script (traceback), an ok sed, a
  timeout, the submission.
- ``mini_swe_agent_astropy.traj.json``: v1, astropy__astropy-12907: an elided long output, submit.
- ``mini_swe_agent_v2_flask.traj.json``: v2 (``mini-swe-agent-1.1``, tool calling),
  pallets__flask-5014: tool messages (one returncode 1), a FormatError, an ``exit`` message.
- ``swe_bench_results_summary.json``: ``instances`` (django resolved, astropy not).
- ``swe_bench_results_run_report.json``: harness run report (resolved / unresolved / error /
  empty_patch / incomplete ids).
- ``swe_bench_results_report.json``: grading reports keyed by instance id, with tests_status.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from fixture_files import (
    assert_every_file_accounted,
    assert_header_cites,
    feedback_of,
    file_counts,
    fixture_file,
    gzipped,
    ingest_fixtures,
    ingest_shared,
    other_fixtures,
    reports_by_name,
    sniffs,
    steps_of,
    trajectories_by_id,
)

from pipeline.ingest import Traces, ingest, sniff_format
from pipeline.ingest.formats import mini_swe_agent, swe_bench_results
from pipeline.ingest.formats._common import error_line

DJANGO = "mini_swe_agent_django.traj.json"
ASTROPY = "mini_swe_agent_astropy.traj.json"
FLASK = "mini_swe_agent_v2_flask.traj.json"
SUMMARY = "swe_bench_results_summary.json"
RUN_REPORT = "swe_bench_results_run_report.json"
GRADING = "swe_bench_results_report.json"
TRAJECTORIES = (DJANGO, ASTROPY, FLASK)
SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git add -A && git diff --cached"


def _feedback(traces: Traces, trajectory_id: str) -> list[tuple]:
    return [
        (f["name"], f["value"], f["value_text"], f["source"], f["comment"])
        for f in feedback_of(traces, trajectory_id)
    ]


def _calls(steps: list[dict]) -> list[tuple]:
    return [
        (s["step_type"], s["tool_name"], s["tool_call_id"], s["tool_args"], s["is_error"])
        for s in steps
    ]


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory) -> Traces:
    return ingest_fixtures(tmp_path_factory.mktemp("mini"), *TRAJECTORIES, SUMMARY)


# --- headers and sniffing ------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRAJECTORIES)
def test_trajectory_fixture_header_names_the_spec(name: str) -> None:
    assert_header_cites(
        name, "https://github.com/SWE-agent/mini-swe-agent", "trajectory_format", "mini_version"
    )


@pytest.mark.parametrize("name", (SUMMARY, RUN_REPORT, GRADING))
def test_results_fixture_header_names_the_spec(name: str) -> None:
    assert_header_cites(name, "https://github.com/SWE-bench/SWE-bench", "SWE-bench 4.x")


@pytest.mark.parametrize(
    ("name", "format_name"),
    [(n, "mini-swe-agent") for n in TRAJECTORIES]
    + [(n, "swe-bench-results") for n in (SUMMARY, RUN_REPORT, GRADING)],
)
def test_sniff(tmp_path: Path, name: str, format_name: str) -> None:
    assert sniff_format(fixture_file(name, tmp_path)) == format_name


def test_sniff_claims_no_other_fixture(tmp_path: Path) -> None:
    others = other_fixtures(tmp_path, "mini_swe_agent", "swe_bench_results")
    assert others
    for path in others:
        assert not sniffs(mini_swe_agent, path), path.name
        assert not sniffs(swe_bench_results, path), path.name


# --- v1 trajectory ----------------------------------------------------------------------------


def test_v1_steps(joined: Traces) -> None:
    steps = steps_of(joined, "django__django-11099")
    assert [s["step_idx"] for s in steps] == list(range(21))
    bash = "bash"
    assert _calls(steps) == [
        ("system", None, None, None, False),
        ("user", None, None, None, False),
        ("assistant", None, None, None, False),
        (
            "tool_call",
            bash,
            "m2.0",
            '{"command":"grep -rn \\"class ASCIIUsernameValidator\\" django/"}',
            False,
        ),
        ("tool_result", bash, "m2.0", None, False),
        ("assistant", None, None, None, False),
        ("tool_call", bash, "m4.0", '{"command":"cat django/contrib/auth/validators.py"}', False),
        ("tool_call", bash, "m4.1", '{"command":"ls tests/auth_tests"}', False),
        ("tool_result", bash, None, None, True),
        ("assistant", None, None, None, False),
        ("tool_call", bash, "m6.0", '{"command":"python reproduce.py"}', False),
        ("tool_result", bash, "m6.0", None, True),
        ("assistant", None, None, None, False),
        ("tool_call", bash, "m8.0", steps[13]["tool_args"], False),
        ("tool_result", bash, "m8.0", None, False),
        ("assistant", None, None, None, False),
        ("tool_call", bash, "m10.0", '{"command":"python -m pytest tests/auth_tests -q"}', False),
        ("tool_result", bash, "m10.0", None, True),
        ("assistant", None, None, None, False),
        ("tool_call", bash, "m12.0", json.dumps({"command": SUBMIT}, separators=(",", ":")), False),
        ("tool_result", bash, "m12.0", None, False),
    ]
    assert json.loads(steps[13]["tool_args"])["command"].startswith("sed -i ")
    assert [s["error_message"] for s in steps if s["is_error"]] == [
        "Please always provide EXACTLY ONE action in triple backticks, found 2 actions.",
        "django.core.exceptions.ValidationError: ['Enter a valid username.']",
        "the command timed out and was killed",
    ]
    assert steps[4]["tool_result_text"].startswith("<returncode>0</returncode>")
    assert steps[20]["tool_result_text"].startswith(
        "diff --git a/django/contrib/auth/validators.py"
    )
    assistant = [s for s in steps if s["step_type"] == "assistant"]
    assert [(s["input_tokens"], s["output_tokens"]) for s in assistant] == [
        (1622, 184),
        (1850, 120),
        (2010, 96),
        (2240, 150),
        (2400, 80),
        (2550, 60),
    ]
    assert {s["model"] for s in assistant} == {"google/gemini-3-pro-preview"}
    assert steps[2]["content_text"].startswith("THOUGHT: I need to find where")
    assert steps[2]["started_at"].isoformat() == "2025-11-19T00:12:07+00:00"
    assert steps[3]["started_at"] == steps[2]["started_at"]
    assert steps[4]["started_at"] is None


def test_v1_trajectory(joined: Traces) -> None:
    row = trajectories_by_id(joined)["django__django-11099"]
    assert row["source_format"] == "mini-swe-agent"
    assert row["dataset"] == "swe-bench"
    assert row["domain"] == "django/django"
    assert row["task_id"] == "django__django-11099"
    assert row["agent_name"] == "mini-swe-agent"
    assert row["model"] == "google/gemini-3-pro-preview"
    assert row["termination_reason"] == "Submitted"
    assert row["cost_usd"] == pytest.approx(0.0421)
    assert row["final_output"].startswith("diff --git a/django/contrib/auth/validators.py")
    assert row["system_prompt"].startswith("You are a helpful assistant that can interact")
    assert row["task_input"].startswith("<pr_description>\nConsider the following PR")
    assert (row["n_steps"], row["n_tool_calls"], row["n_tool_errors"]) == (21, 7, 3)
    assert (row["input_tokens"], row["output_tokens"]) == (12672, 690)
    assert row["started_at"].isoformat() == "2025-11-19T00:12:07+00:00"
    assert row["ended_at"].isoformat() == "2025-11-19T00:12:46+00:00"
    metadata = json.loads(row["metadata"])
    assert metadata["mini_version"] == "1.15.0"
    assert metadata["trajectory_format"] == "mini-swe-agent-1"
    assert metadata["api_calls"] == 6
    assert metadata["environment_image"].endswith("django_1776_django-11099:latest")


def test_elided_output_is_an_ok_observation(joined: Traces) -> None:
    steps = steps_of(joined, "astropy__astropy-12907")
    assert [s["step_type"] for s in steps] == [
        "system",
        "user",
        "assistant",
        "tool_call",
        "tool_result",
        "assistant",
        "tool_call",
        "tool_result",
    ]
    assert not any(s["is_error"] for s in steps)
    assert "<elided_chars>" in steps[4]["tool_result_text"]


# --- v2 trajectory (tool calling) ---------------------------------------------------------------


def test_v2_tool_calls_and_exit(joined: Traces) -> None:
    steps = steps_of(joined, "pallets__flask-5014")
    assert _calls(steps) == [
        ("system", None, None, None, False),
        ("user", None, None, None, False),
        ("assistant", None, None, None, False),
        (
            "tool_call",
            "bash",
            "toolu_01",
            '{"command":"grep -n \'def __init__\' src/flask/blueprints.py"}',
            False,
        ),
        ("tool_result", "bash", "toolu_01", None, False),
        ("assistant", None, None, None, False),
        ("tool_call", "bash", "toolu_02", '{"command":"cat src/flask/blueprint.py"}', False),
        ("tool_result", "bash", "toolu_02", None, True),
        ("assistant", None, None, None, False),
        ("tool_result", None, None, None, True),
        (
            "tool_call",
            "bash",
            "toolu_03",
            json.dumps({"command": SUBMIT}, separators=(",", ":")),
            False,
        ),
        ("tool_result", "bash", "toolu_03", None, False),
    ]
    assert [s["error_message"] for s in steps if s["is_error"]] == [
        "cat: src/flask/blueprint.py: No such file or directory",
        "FormatError: No tool calls found in the response. Every response MUST include at least "
        "one tool call.",
    ]
    # the last turn has no text: its tokens go to the tool call
    assert (steps[10]["input_tokens"], steps[10]["output_tokens"]) == (2500, 40)
    assert steps[4]["started_at"].isoformat() == "2025-11-20T00:53:21.250000+00:00"
    row = trajectories_by_id(joined)["pallets__flask-5014"]
    assert row["model"] == "anthropic/claude-sonnet-4-5-20250929"
    assert row["termination_reason"] == "Submitted"
    assert row["cost_usd"] == pytest.approx(0.0315)
    assert json.loads(row["metadata"])["trajectory_format"] == "mini-swe-agent-1.1"


# --- outcome from the results file -----------------------------------------------------------


def test_outcome_comes_from_the_results_summary(joined: Traces) -> None:
    rows = trajectories_by_id(joined)
    assert {
        t: (r["outcome_label"], r["outcome_score"], r["outcome_source"]) for t, r in rows.items()
    } == {
        "django__django-11099": ("success", 1.0, "feedback:resolved"),
        "astropy__astropy-12907": ("failure", 0.0, "feedback:resolved"),
        "pallets__flask-5014": ("unknown", None, None),
    }
    assert _feedback(joined, "django__django-11099") == [
        ("resolved", 1.0, None, "swe-bench", None),
        ("patch_applied", 1.0, None, "swe-bench", None),
    ]
    assert _feedback(joined, "astropy__astropy-12907") == [
        ("resolved", 0.0, None, "swe-bench", None),
        ("patch_applied", 1.0, None, "swe-bench", None),
    ]
    assert joined.quarantine == []
    by_file = reports_by_name(joined)
    assert by_file[SUMMARY].format == "swe-bench-results"
    assert (by_file[SUMMARY].records_read, by_file[SUMMARY].ingested) == (2, 2)
    for name in TRAJECTORIES:
        assert (by_file[name].records_read, by_file[name].ingested) == (1, 1)
    assert_every_file_accounted(joined)


def test_run_report(tmp_path: Path) -> None:
    traces = ingest_fixtures(tmp_path, *TRAJECTORIES, RUN_REPORT)
    rows = trajectories_by_id(traces)
    assert {t: r["outcome_label"] for t, r in rows.items()} == {
        "django__django-11099": "success",
        "astropy__astropy-12907": "failure",
        "pallets__flask-5014": "failure",
    }
    assert _feedback(traces, "pallets__flask-5014") == [
        ("resolved", 0.0, None, "swe-bench", None),
        ("eval_status", None, "error", "swe-bench", None),
    ]
    assert _feedback(traces, "django__django-11099")[1] == (
        "eval_status",
        None,
        "resolved",
        "swe-bench",
        None,
    )
    # psf__requests-2317 (empty patch) has no trajectory here; incomplete ids are not records
    assert file_counts(traces)[RUN_REPORT] == (4, 3, 1)
    (row,) = traces.quarantine
    assert row["where"] == "empty_patch_ids[0]"
    assert row["reason"] == "feedback for trajectory 'psf__requests-2317', which no input holds"


def test_grading_report(tmp_path: Path) -> None:
    traces = ingest_fixtures(tmp_path, DJANGO, ASTROPY, GRADING)
    assert _feedback(traces, "django__django-11099") == [
        ("resolved", 1.0, None, "swe-bench", None),
        ("patch_applied", 1.0, None, "swe-bench", None),
        ("fail_to_pass", 1.0, None, "swe-bench", "2/2 tests pass"),
        ("pass_to_pass", 0.75, None, "swe-bench", "3/4 tests pass"),
    ]
    assert _feedback(traces, "astropy__astropy-12907") == [
        ("resolved", 0.0, None, "swe-bench", None),
        ("patch_applied", 0.0, None, "swe-bench", None),
    ]
    assert {r["trajectory_id"]: r["outcome_label"] for r in traces.trajectories.to_pylist()} == {
        "django__django-11099": "success",
        "astropy__astropy-12907": "failure",
    }


def test_bare_grading_report_takes_the_id_from_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / "django__django-11099"
    folder.mkdir(parents=True)
    report = json.loads(fixture_file(GRADING, tmp_path).read_text())["django__django-11099"]
    (folder / "report.json").write_text(json.dumps(report))
    (item,) = list(swe_bench_results.read(folder / "report.json", _options(folder)))
    assert item.where == "document"
    assert [(r["trajectory_id"], r["name"], r["value"]) for r in item.rows][:2] == [
        ("django__django-11099", "resolved", 1.0),
        ("django__django-11099", "patch_applied", 1.0),
    ]


def test_leaderboard_results_json(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps(
            {
                "no_generation": ["astropy__astropy-12907"],
                "no_logs": [],
                "resolved": ["django__django-11099", "django__django-11099"],
            }
        )
    )
    assert sniff_format(path) == "swe-bench-results"
    items = list(swe_bench_results.read(path, _options(path)))
    assert [
        (i.where, [(r["name"], r["value"], r["value_text"]) for r in i.rows]) for i in items
    ] == [
        ("resolved[0]", [("resolved", 1.0, None), ("eval_status", None, "resolved")]),
        ("no_generation[0]", [("resolved", 0.0, None), ("eval_status", None, "no_generation")]),
    ]


def _options(path: Path):
    from pipeline.ingest.formats._io import ReadOptions

    return ReadOptions(source_uri=str(path))


# --- malformed records --------------------------------------------------------------------------


def test_malformed_records_are_quarantined(tmp_path: Path) -> None:
    good = [fixture_file(name, tmp_path) for name in (DJANGO, ASTROPY)]
    text = good[0].read_text()
    truncated = tmp_path / "django__django-99999.traj.json"
    truncated.write_text(text[: len(text) // 2])
    bad_role = json.loads(text)
    bad_role["instance_id"] = "django__django-88888"
    bad_role["messages"][3]["role"] = "robot"
    (tmp_path / "robot.traj.json").write_text(json.dumps(bad_role))
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps(
            {
                "instances": [
                    {"instance_id": "django__django-11099", "resolved": True},
                    {"resolved": False},
                    {"instance_id": "astropy__astropy-12907", "resolved": "maybe"},
                    {"instance_id": "django__django-11099", "resolved": False},
                ]
            }
        )
    )
    traces = ingest([*good, truncated, tmp_path / "robot.traj.json", results])
    reasons = {(Path(q["file"]).name, q["where"]): q["reason"] for q in traces.quarantine}
    assert "invalid JSON at line" in reasons[("django__django-99999.traj.json", "document")]
    assert reasons[("robot.traj.json", "document")] == "message 3 has unknown role 'robot'"
    assert reasons[("results.json", "instances[1]")] == "missing 'instance_id'"
    assert reasons[("results.json", "instances[2]")] == "'resolved' is not true/false: 'maybe'"
    assert reasons[("results.json", "instances[3]")] == (
        "instance 'django__django-11099' listed twice (first at instances[0])"
    )
    assert len(reasons) == 5
    assert {r["trajectory_id"]: r["outcome_label"] for r in traces.trajectories.to_pylist()} == {
        "django__django-11099": "success",
        "astropy__astropy-12907": "unknown",
    }
    counts = file_counts(traces)
    assert counts["results.json"] == (4, 1, 3)
    assert counts["django__django-99999.traj.json"] == (1, 0, 1)
    assert counts["robot.traj.json"] == (1, 0, 1)
    assert_every_file_accounted(traces)


def test_gzip(tmp_path: Path, joined: Traces) -> None:
    traces = ingest([gzipped(fixture_file(name, tmp_path)) for name in (DJANGO, SUMMARY)])
    assert [f.format for f in traces.files] == ["mini-swe-agent", "swe-bench-results"]
    assert steps_of(traces, "django__django-11099") == steps_of(joined, "django__django-11099")
    assert trajectories_by_id(traces)["django__django-11099"]["outcome_label"] == "success"


def test_instance_id_from_the_file_name(tmp_path: Path) -> None:
    data = json.loads(fixture_file(ASTROPY, tmp_path).read_text())
    del data["instance_id"]
    path = tmp_path / "psf__requests-2317.traj.json.gz"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    (record,) = list(mini_swe_agent.read(path, _options(path)))
    assert record.trajectory["trajectory_id"] == "psf__requests-2317"
    assert record.trajectory["domain"] == "psf/requests"


@pytest.mark.parametrize(
    ("output", "line"),
    [
        (
            'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
            "    import foo\nModuleNotFoundError: No module named 'foo'\n",
            "ModuleNotFoundError: No module named 'foo'",
        ),
        (
            'Traceback (most recent call last):\n  File "m.py", line 9, in <module>\n'
            "django.core.exceptions.ImproperlyConfigured: Requested setting DEBUG\n",
            "django.core.exceptions.ImproperlyConfigured: Requested setting DEBUG",
        ),
        (
            "============ test session starts ============\nplatform linux\n"
            "E   TypeError: unhashable type: 'dict'\n",
            "TypeError: unhashable type: 'dict'",
        ),
        (
            "==== short test summary info ====\nFAILED t.py::test_a - assert 1 == 2\n",
            "FAILED t.py::test_a - assert 1 == 2",
        ),
        ("\n=====\nrm: cannot remove 'x': No such file\n", "rm: cannot remove 'x': No such file"),
        ("\n \n", None),
    ],
)
def test_error_line(output: str, line: str | None) -> None:
    assert error_line(output) == line


# --- the shared real traces ---------------------------------------------------------------------


def test_real_swe_bench_traces() -> None:
    traces = ingest_shared("swe-bench")
    assert traces.quarantine == []
    assert traces.counts["quarantined"] == 0
    assert traces.trajectories.num_rows == 305
    frame = pl.from_arrow(traces.trajectories)
    assert dict(frame.group_by("outcome_label").len().iter_rows()) == {
        "success": 231,
        "failure": 74,
    }
    assert set(frame["source_format"]) == {"mini-swe-agent"}
    assert frame["n_tool_calls"].min() > 0
    assert frame["domain"].null_count() == 0
    formats = {Path(f.path).name: f.format for f in traces.files}
    assert formats["results.json"] == "swe-bench-results"
    assert sum(f == "mini-swe-agent" for f in formats.values()) == 305
    assert_every_file_accounted(traces)

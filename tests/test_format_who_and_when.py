"""Who&When failure-attribution logs: sniffing, canonical rows, mistake feedback, quarantine.

Fixtures (tests/fixtures/formats/):
- ``who_and_when_algorithm_generated.json``: one Algorithm-Generated (AG2) run as in the dataset's
  files: a failing code block (IndexError), two blocks (python + sh) run together, a "no code"
  terminal reply; ``mistake_step`` "2" (the second DataAnalysis_Expert message); not correct.
- ``who_and_when_runs.jsonl``: line 1 an Algorithm-Generated AssistantBench run with
  ``is_correct`` "True" and empty mistake fields; line 2 a Hand-Crafted (Magentic-One) run with
  delegations to WebSurfer and ComputerTerminal (an error); mistake at history index 3.
"""

from __future__ import annotations

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
    sniffs,
    steps_of,
    trajectories_by_id,
)

from pipeline.ingest import Traces, ingest, sniff_format
from pipeline.ingest.formats import who_and_when
from pipeline.ingest.formats._io import ReadOptions

GENERATED = "who_and_when_algorithm_generated.json"
RUNS = "who_and_when_runs.jsonl"
AG = "who-and-when/algorithm-generated/8e867cd7-cff9-4e6c-867a-ff5ddc2550be"
AB = "who-and-when/algorithm-generated/9baaa267c95f9d8b75741ee9169c50563d297cfa"
HC = "who-and-when/hand-crafted/42576abe-0deb-4869-8c63-225c2d75a95a"


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Traces:
    return ingest_fixtures(tmp_path_factory.mktemp("ww"), GENERATED, RUNS)


def _feedback(traces: Traces, trajectory_id: str) -> list[tuple]:
    return [
        (f["step_idx"], f["name"], f["value"], f["value_text"], f["source"], f["comment"])
        for f in feedback_of(traces, trajectory_id)
    ]


def _shape(steps: list[dict]) -> list[tuple]:
    return [
        (s["step_type"], s["role"], s["actor"], s["tool_name"], s["tool_call_id"], s["is_error"])
        for s in steps
    ]


@pytest.mark.parametrize("name", (GENERATED, RUNS))
def test_fixture_header_names_the_spec(name: str) -> None:
    assert_header_cites(
        name,
        "https://github.com/ag2ai/Agents_Failure_Attribution",
        "arXiv 2505.00212",
        "2025-05 release",
    )


@pytest.mark.parametrize("name", (GENERATED, RUNS))
def test_sniff(tmp_path: Path, name: str) -> None:
    assert sniff_format(fixture_file(name, tmp_path)) == "who-and-when"


def test_sniff_claims_no_other_fixture(tmp_path: Path) -> None:
    for path in other_fixtures(tmp_path, "who_and_when"):
        assert not sniffs(who_and_when, path), path.name


def test_algorithm_generated_steps(traces: Traces) -> None:
    steps = steps_of(traces, AG)
    assert [s["step_idx"] for s in steps] == list(range(10))
    expert, verifier = "DataAnalysis_Expert", "Verification_Expert"
    assert _shape(steps) == [
        ("assistant", "assistant", expert, None, None, False),
        ("tool_call", "assistant", expert, "python", "h0.0", False),
        ("tool_result", "tool", "Computer_terminal", "python", "h0.0", True),
        ("assistant", "assistant", expert, None, None, False),
        ("tool_call", "assistant", expert, "python", "h2.0", False),
        ("tool_call", "assistant", expert, "sh", "h2.1", False),
        ("tool_result", "tool", "Computer_terminal", "sh", "h2.1", False),
        ("assistant", "assistant", verifier, None, None, False),
        ("tool_result", "tool", "Computer_terminal", None, None, False),
        ("assistant", "assistant", verifier, None, None, False),
    ]
    assert json.loads(steps[1]["tool_args"]) == {
        "code": "import pandas as pd\ntables = pd.read_html('https://en.wikipedia.org/wiki/"
        "Mercedes_Sosa')\nalbums = tables[3]\nprint(albums[(albums['Year'] >= 2000) & "
        "(albums['Year'] <= 2009)])"
    }
    assert steps[5]["tool_args"] == '{"code":"pip list | grep lxml"}'
    assert steps[2]["error_message"] == "IndexError: list index out of range"
    assert steps[2]["tool_result_text"].startswith("exitcode: 1 (execution failed)")
    assert steps[8]["tool_result_text"].startswith("There is no code from the last 1 message")
    assert steps[9]["content_text"] == "TERMINATE"


def test_algorithm_generated_trajectory(traces: Traces) -> None:
    row = trajectories_by_id(traces)[AG]
    assert (row["outcome_label"], row["outcome_score"], row["outcome_source"]) == (
        "failure",
        0.0,
        "feedback:is_correct",
    )
    assert row["source_format"] == "who-and-when"
    assert row["dataset"] == "who-and-when"
    assert row["domain"] == "gaia"
    assert row["task_id"] == "8e867cd7-cff9-4e6c-867a-ff5ddc2550be"
    assert row["agent_name"] == "CaptainAgent"
    assert row["model"] is None
    assert row["task_input"].startswith("How many studio albums were published by Mercedes Sosa")
    assert row["system_prompt"].startswith("# DataAnalysis_Expert\n## Your role\n")
    assert "# Verification_Expert\n" in row["system_prompt"]
    assert row["final_output"] == "TERMINATE"
    assert (row["n_steps"], row["n_tool_calls"], row["n_tool_errors"]) == (10, 3, 1)
    assert (row["input_tokens"], row["output_tokens"], row["cost_usd"]) == (None, None, None)
    metadata = json.loads(row["metadata"])
    assert metadata["subset"] == "algorithm-generated"
    assert (metadata["level"], metadata["ground_truth"]) == ("1", "3")
    assert metadata["agents"] == ["DataAnalysis_Expert", "Verification_Expert"]


def test_mistake_is_step_level_feedback(traces: Traces) -> None:
    reason = (
        "The expert printed only the head of the discography table, missing Cantora 1 and "
        "Cantora 2 (2009)."
    )
    # history index 2 is the second DataAnalysis_Expert message: step 3 in the steps table
    assert _feedback(traces, AG) == [
        (None, "is_correct", 0.0, None, "who-and-when", None),
        (3, "mistake_agent", None, "DataAnalysis_Expert", "who-and-when", None),
        (3, "mistake_step", 2.0, None, "who-and-when", None),
        (3, "mistake_reason", None, reason, "who-and-when", None),
    ]
    mistake = steps_of(traces, AG)[3]
    assert (mistake["step_type"], mistake["actor"]) == ("assistant", "DataAnalysis_Expert")


def test_success_with_text_flag_and_no_mistake(traces: Traces) -> None:
    row = trajectories_by_id(traces)[AB]
    assert (row["outcome_label"], row["outcome_score"]) == ("success", 1.0)
    assert row["domain"] == "assistantbench"
    assert _feedback(traces, AB) == [(None, "is_correct", 1.0, None, "who-and-when", None)]
    assert [s["tool_name"] for s in steps_of(traces, AB) if s["step_type"] == "tool_call"] == ["sh"]


def test_hand_crafted_steps(traces: Traces) -> None:
    steps = steps_of(traces, HC)
    assert _shape(steps) == [
        ("user", "user", None, None, None, False),
        ("assistant", "assistant", "Orchestrator", None, None, False),
        ("tool_call", "assistant", "Orchestrator", "WebSurfer", "h2", False),
        ("tool_result", "tool", "WebSurfer", "WebSurfer", "h2", False),
        ("tool_call", "assistant", "Orchestrator", "ComputerTerminal", "h4", False),
        ("tool_result", "tool", "ComputerTerminal", "ComputerTerminal", "h4", True),
        ("assistant", "assistant", "Orchestrator", None, None, False),
    ]
    assert steps[2]["tool_args"] == '{"request":"Please search for a Tizin grammar reference."}'
    assert steps[5]["error_message"] == "ModuleNotFoundError: No module named 'tizin'"
    row = trajectories_by_id(traces)[HC]
    assert (row["agent_name"], row["outcome_label"]) == ("Magentic-One", "failure")
    assert (
        row["task_input"] == "In the fictional language of Tizin, how would you say I like apples?"
    )
    assert row["system_prompt"] is None
    assert [f[:3] for f in _feedback(traces, HC)] == [
        (None, "is_correct", 0.0),
        (3, "mistake_agent", None),
        (3, "mistake_step", 3.0),
        (3, "mistake_reason", None),
    ]


def test_accounting(traces: Traces) -> None:
    assert traces.quarantine == []
    counts = file_counts(traces)
    assert counts == {GENERATED: (1, 1, 0), RUNS: (2, 2, 0)}
    assert traces.trajectories.num_rows == 3


def test_malformed_records_are_quarantined(tmp_path: Path) -> None:
    good = json.loads(fixture_file(GENERATED, tmp_path).read_text())
    text_history = dict(good, question_ID="q-text-history", history=json.dumps(good["history"]))
    out_of_range = dict(good, question_ID="q-far", mistake_step="42")
    lines = [
        json.dumps(text_history),
        json.dumps(dict(good, question_ID="q-no-history", history=17)),
        '{"question_ID": "q-broken", "history": [',
        json.dumps(dict(good, question_ID="q-flag", is_correct="maybe")),
        json.dumps({k: v for k, v in good.items() if k != "question_ID"}),
        json.dumps(dict(good, question_ID="q-bad-message", history=[["assistant", "hi"]])),
        json.dumps(out_of_range),
    ]
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    truncated = tmp_path / "7.json"
    truncated.write_text(json.dumps(good)[:500])
    traces = ingest([path, truncated])
    reasons = {(Path(q["file"]).name, q["where"]): q["reason"] for q in traces.quarantine}
    assert reasons[("runs.jsonl", "line 2")] == "'history' is missing or not a list"
    assert reasons[("runs.jsonl", "line 3")].startswith("invalid JSON")
    assert reasons[("runs.jsonl", "line 4")] == "'is_correct' is not true/false: 'maybe'"
    assert reasons[("runs.jsonl", "line 5")] == "missing 'question_ID'"
    assert reasons[("runs.jsonl", "line 6")] == "history[0] is not an object"
    assert "JSON at line 1" in reasons[("7.json", "document")]
    assert len(reasons) == 6
    ids = {r["trajectory_id"] for r in traces.trajectories.to_pylist()}
    assert ids == {
        "who-and-when/algorithm-generated/q-text-history",
        "who-and-when/algorithm-generated/q-far",
    }
    assert len(steps_of(traces, "who-and-when/algorithm-generated/q-text-history")) == 10
    far = _feedback(traces, "who-and-when/algorithm-generated/q-far")
    assert far[1] == (
        None,
        "mistake_agent",
        None,
        "DataAnalysis_Expert",
        "who-and-when",
        "mistake_step 42 is outside the history (7 messages)",
    )
    counts = file_counts(traces)
    assert counts == {"runs.jsonl": (7, 2, 5), "7.json": (1, 0, 1)}


def test_gzip(tmp_path: Path, traces: Traces) -> None:
    packed = gzipped(fixture_file(RUNS, tmp_path))
    assert sniff_format(packed) == "who-and-when"
    packed_traces = ingest([packed])
    assert packed_traces.counts["ingested"] == 2
    assert steps_of(packed_traces, HC) == steps_of(traces, HC)
    assert _feedback(packed_traces, HC) == _feedback(traces, HC)


def test_read_yields_one_record_per_run(tmp_path: Path) -> None:
    path = fixture_file(RUNS, tmp_path)
    records = list(who_and_when.read(path, ReadOptions(source_uri=str(path))))
    assert [(r.where, r.records, r.trajectory["trajectory_id"]) for r in records] == [
        ("line 1", 1, AB),
        ("line 2", 1, HC),
    ]


# --- the shared real traces ---------------------------------------------------------------------


def test_real_who_and_when_traces() -> None:
    traces = ingest_shared("who-and-when")
    assert traces.quarantine == []
    assert traces.counts["quarantined"] == 0
    assert traces.trajectories.num_rows == 126
    frame = pl.from_arrow(traces.trajectories)
    assert set(frame["outcome_label"]) == {"failure"}
    assert set(frame["source_format"]) == {"who-and-when"}
    assert dict(frame.group_by("domain").len().iter_rows()) == {"gaia": 98, "assistantbench": 28}
    feedback = pl.from_arrow(traces.feedback)
    mistakes = feedback.filter(pl.col("name") == "mistake_agent")
    assert mistakes.height == 126
    assert mistakes["step_idx"].null_count() == 0
    steps = pl.from_arrow(traces.steps)
    assert steps.filter(pl.col("is_error")).height > 0
    assert_every_file_accounted(traces)

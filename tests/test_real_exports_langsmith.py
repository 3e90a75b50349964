"""LangSmith runs in the shapes the LangSmith API and SDK hand them out, ingested without
``--format``: a JSON array of runs (``client.list_runs`` written out, as in an exported dataset of
runs) and a ``POST /runs/query`` page (``{"runs": [...], "cursors": {...}}``).

No public LangSmith export with ``tool`` runs was found to copy (see
tests/fixtures/real_exports/README.md), so the runs are those of tests/fixtures/langsmith_api/:
real traces (the langsmith SDK's recorded ``wrap_openai`` runs and a LangGraph agent calling a
``Web-Search`` tool) in LangSmith's ``RunSchema`` shape; its README.md gives each source.

The request bodies the langsmith SDK sends to ``POST /runs/batch`` and ``POST /feedback``, with
``tool`` runs, are read from tests/fixtures/real_exports/langsmith-sdk-*.jsonl, written by the
real SDK through ``make_langsmith_batch.py`` there.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.ingest import Traces, ingest, sniff_format

API = Path(__file__).resolve().parent / "fixtures" / "langsmith_api"
RUNS = json.loads((API / "runs.json").read_text(encoding="utf-8"))
GRAPH = "e1fde3ef-ec57-ce8a-69ba-fd3fb928a7eb"


@pytest.fixture(params=["runs array", "runs query page"])
def export(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / "export.json"
    body = RUNS if request.param == "runs array" else {"runs": RUNS, "cursors": {"next": None}}
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_runs_with_tool_runs_are_sniffed_and_ingested(export: Path) -> None:
    assert sniff_format(export) == "langsmith"
    traces = ingest([export])
    (report,) = traces.files
    assert (report.format, report.ingested, report.quarantined) == ("langsmith", len(RUNS), 0)
    ids = {t["trajectory_id"] for t in traces.trajectories.to_pylist()}
    assert ids == {r["id"] for r in RUNS if r["parent_run_id"] is None}
    steps = [s for s in traces.steps.to_pylist() if s["trajectory_id"] == GRAPH]
    assert [s["step_type"] for s in steps] == [
        "user",
        "user",
        "tool_call",
        "tool_result",
        "assistant",
    ]
    call, result = steps[2], steps[3]
    assert call["tool_name"] == result["tool_name"] == "Web-Search"
    assert call["tool_call_id"] == result["tool_call_id"] == "call_1oGK863sxQHlPreFhDdEs3yl"
    graph = next(t for t in traces.trajectories.to_pylist() if t["trajectory_id"] == GRAPH)
    assert (graph["model"], graph["session_id"], graph["n_tool_errors"]) == (
        "gpt-4o",
        "demo-thread-1",
        0,
    )
    # without feedback records, the root run's feedback_stats averages are the feedback
    stats = {r["name"]: r for r in traces.feedback.to_pylist() if r["trajectory_id"] == GRAPH}
    assert set(stats) == {"toxicity", "hallucination"}
    assert stats["hallucination"]["value"] == pytest.approx(0.1)
    assert stats["toxicity"]["source"] == "feedback_stats"


# --- request bodies the langsmith SDK sent (make_langsmith_batch.py) ---------------------------

REAL = Path(__file__).resolve().parent / "fixtures" / "real_exports"
TRACEABLE = REAL / "langsmith-sdk-traceable.jsonl"
LANGCHAIN = REAL / "langsmith-sdk-langchain.jsonl"
LISBON, ATLANTIS, PORTO = (f"0190a5e0-000{n}-7000-8000-000000000001" for n in (1, 2, 3))
SDK_PYTHON = os.environ.get("COACH_LANGSMITH_PYTHON")


def _bodies(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _read(path: Path) -> Traces:
    """``path`` ingested sniffed: every record read is ingested, none quarantined."""
    traces = ingest([path])
    (report,) = traces.files
    assert report.format == "langsmith"
    assert report.quarantined == 0, traces.quarantine
    assert report.records_read == report.ingested + report.deduplicated
    return traces


def _steps(traces: Traces, trajectory_id: str) -> list[dict[str, Any]]:
    rows = [s for s in traces.steps.to_pylist() if s["trajectory_id"] == trajectory_id]
    return sorted(rows, key=lambda s: s["step_idx"])


def _outcomes(traces: Traces) -> dict[str, tuple[str, float | None, str | None]]:
    return {
        t["trajectory_id"]: (t["outcome_label"], t["outcome_score"], t["outcome_source"])
        for t in traces.trajectories.to_pylist()
    }


@pytest.mark.parametrize("path", [TRACEABLE, LANGCHAIN], ids=lambda p: p.name)
def test_sdk_request_bodies_are_sniffed_as_langsmith(path: Path) -> None:
    bodies = _bodies(path)
    assert set(bodies[0]) <= {"post", "patch"}  # a batch body first, the feedback after it
    assert all("key" in b and "feedback_source" in b for b in bodies if "post" not in b)
    assert sniff_format(path) == "langsmith"
    posted = sum(len(b.get("post", [])) for b in bodies)
    feedback = sum("key" in b for b in bodies)
    assert _read(path).files[0].records_read == posted + feedback


def test_traceable_agent_runs_give_tool_calls_errors_and_outcomes() -> None:
    traces = _read(TRACEABLE)
    assert _outcomes(traces) == {
        LISBON: ("success", 1.0, "feedback:correctness"),
        ATLANTIS: ("failure", 0.0, "feedback:correctness"),
    }
    lisbon = _steps(traces, LISBON)
    assert [s["step_type"] for s in lisbon] == [
        "system",
        "user",
        "tool_call",
        "tool_result",
        "assistant",
    ]
    call, result, answer = lisbon[2:]
    assert (call["tool_name"], call["tool_call_id"], json.loads(call["tool_args"])) == (
        "get_weather",
        "call_weather_lisbon",
        {"city": "Lisbon"},
    )
    assert (result["tool_name"], result["tool_call_id"]) == ("get_weather", "call_weather_lisbon")
    assert (result["tool_result_text"], result["is_error"]) == ("Sunny, 21 C in Lisbon", False)
    assert answer["content_text"] == "Here is the weather: Sunny, 21 C in Lisbon"
    # usage_metadata in the llm run's outputs, the model from extra.metadata.ls_model_name
    assert (call["input_tokens"], call["output_tokens"], call["model"]) == (40, 12, "scripted-gpt")
    failed = _steps(traces, ATLANTIS)[3]
    assert (failed["step_type"], failed["tool_name"], failed["is_error"]) == (
        "tool_result",
        "get_weather",
        True,
    )
    assert failed["error_message"] == "ConnectionError('no weather station in Atlantis')"
    errors = {t["trajectory_id"]: t["n_tool_errors"] for t in traces.trajectories.to_pylist()}
    assert errors == {LISBON: 0, ATLANTIS: 1}
    runs = {t["trajectory_id"]: t for t in traces.trajectories.to_pylist()}
    assert (runs[LISBON]["agent_name"], runs[LISBON]["session_id"]) == (
        "weather_agent",
        "weather-session",
    )


def test_langchain_tracer_runs_patched_in_a_later_batch_are_completed() -> None:
    first, second, _ = _bodies(LANGCHAIN)
    # the SDK sent the root's start in the first batch and its end in the second
    assert PORTO in {r["id"] for r in first["post"]}
    assert PORTO in {r["id"] for r in second["patch"]}
    traces = _read(LANGCHAIN)
    assert _outcomes(traces) == {PORTO: ("success", 1.0, "feedback:correctness")}
    steps = _steps(traces, PORTO)
    assert [(s["step_type"], s["tool_name"], s["tool_call_id"], s["is_error"]) for s in steps] == [
        ("user", None, None, False),
        ("tool_call", "lookup_station", "call_station_1", False),
        ("tool_call", "get_weather", "call_weather_1", False),
        ("tool_result", "lookup_station", "call_station_1", True),
        ("tool_result", "get_weather", "call_weather_1", False),
        ("assistant", None, None, False),
    ]
    # the tool's ToolMessage output and the root's end both came in the patch
    assert steps[4]["tool_result_text"] == "Sunny, 21 C in Porto"
    assert steps[3]["error_message"] == "ConnectionError('station registry unreachable for Porto')"
    assert steps[5]["content_text"] == "It is sunny in Porto, 21 C."
    (trajectory,) = traces.trajectories.to_pylist()
    assert trajectory["ended_at"] is not None and trajectory["ended_at"] > steps[4]["started_at"]
    assert (trajectory["session_id"], trajectory["n_tool_errors"]) == ("porto-thread", 1)


def test_a_patch_whose_run_no_line_posts_is_quarantined(tmp_path: Path) -> None:
    lines = LANGCHAIN.read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / "without-first-batch.jsonl"
    path.write_text("".join(lines[1:]), encoding="utf-8")
    traces = ingest([path])
    (report,) = traces.files
    # the second batch's post (the second llm run) and its two patches, and the feedback
    assert (report.records_read, report.ingested, report.quarantined) == (4, 0, 4)
    reasons = {row["where"]: row["reason"] for row in traces.quarantine}
    assert "not posted in this file" in reasons["line 1 patch[0]"]
    assert "not posted in this file" in reasons["line 1 patch[1]"]


def test_coach_learn_runs_over_the_sdk_request_bodies(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    traces.mkdir()
    for path in (TRACEABLE, LANGCHAIN):
        (traces / path.name).write_bytes(path.read_bytes())
    args = ["learn", str(traces), "--json", "-q", "--data-dir", str(tmp_path / "d")]
    args += ["--skillbook", str(tmp_path / "sb"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["trajectories"], summary["quarantined"]) == (3, 0)
    assert (tmp_path / "sb" / "skillbook.json").exists()


@pytest.mark.skipif(
    not SDK_PYTHON, reason="set COACH_LANGSMITH_PYTHON to a Python with langsmith, langchain-core"
)
def test_regenerated_with_the_real_sdk_reads_the_same(tmp_path: Path) -> None:
    script = REAL / "make_langsmith_batch.py"
    subprocess.run([str(SDK_PYTHON), str(script), str(tmp_path)], check=True, capture_output=True)
    keys = ("step_type", "tool_name", "tool_call_id", "is_error", "content_text", "error_message")
    for committed in (TRACEABLE, LANGCHAIN):
        fresh, before = _read(tmp_path / committed.name), _read(committed)
        assert _outcomes(fresh) == _outcomes(before)
        for trajectory_id in _outcomes(before):
            assert [tuple(s[k] for k in keys) for s in _steps(fresh, trajectory_id)] == [
                tuple(s[k] for k in keys) for s in _steps(before, trajectory_id)
            ]

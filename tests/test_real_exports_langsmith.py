"""LangSmith runs in the shapes the LangSmith API and SDK hand them out, ingested without
``--format``: a JSON array of runs (``client.list_runs`` written out, as in an exported dataset of
runs) and a ``POST /runs/query`` page (``{"runs": [...], "cursors": {...}}``).

No public LangSmith export with ``tool`` runs was found to copy (see
tests/fixtures/real_exports/README.md), so the runs are those of tests/fixtures/langsmith_api/:
real traces (the langsmith SDK's recorded ``wrap_openai`` runs and a LangGraph agent calling a
``Web-Search`` tool) in LangSmith's ``RunSchema`` shape; its README.md gives each source.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.ingest import ingest, sniff_format

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

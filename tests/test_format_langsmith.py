"""LangSmith adapter: runs exported with ``Client.list_runs`` and feedback from ``list_feedback``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fixture_files import (
    BRIEF_WITH_USAGE,
    assert_accounted,
    assert_every_file_accounted,
    assert_header_cites,
    briefs,
    fixture_file,
    gzipped,
    ingest_fixtures,
    read_json_lines,
    reports_by_name,
    sniffs,
    sorted_feedback,
    steps_of,
    trajectories_by_id,
    write_json_lines,
)

from pipeline.ingest import Traces, ingest
from pipeline.ingest.formats import langfuse, langsmith

RUNS = "langsmith_runs.jsonl"
FEEDBACK = "langsmith_feedback.jsonl"
WEATHER = "0195f1a0-1111-7000-8000-000000000001"
ORDER = "0195f1a0-2222-7000-8000-000000000001"
LOOKUP_RUN = "0195f1a0-2222-7000-8000-000000000003"
CAPITAL = "0195f1a0-3333-7000-8000-000000000001"
BROKEN = "0195f1a0-4444-7000-8000-000000000001"
NO_TOOL = (None,) * 4


def _steps(traces: Traces, trajectory_id: str) -> list[tuple[Any, ...]]:
    return briefs(steps_of(traces, trajectory_id), BRIEF_WITH_USAGE)


def _feedback(traces: Traces) -> list[tuple[Any, ...]]:
    return briefs(sorted_feedback(traces), ("trajectory_id", "step_idx", "name", "value", "source"))


@pytest.fixture
def both(tmp_path: Path) -> Traces:
    return ingest_fixtures(tmp_path, RUNS, FEEDBACK)


def test_fixture_headers_name_the_specification() -> None:
    for name in (RUNS, FEEDBACK):
        assert_header_cites(name, "langsmith-sdk", "python/langsmith/schemas.py")
    assert_header_cites(RUNS, "langchain_core/tracers/langchain.py")


def test_records_are_sniffed_and_accounted(both: Traces) -> None:
    reports = reports_by_name(both)
    runs, feedback = reports[RUNS], reports[FEEDBACK]
    assert (runs.format, feedback.format) == ("langsmith", "langsmith")
    # 14 run lines: 7 + 4 + 1 runs of three good traces, a run without id, a broken trace
    assert (runs.records_read, runs.ingested, runs.quarantined) == (14, 12, 2)
    assert (feedback.records_read, feedback.ingested, feedback.quarantined) == (4, 3, 1)
    assert_every_file_accounted(both)
    assert sorted(both.trajectories.column("trajectory_id").to_pylist()) == [
        WEATHER,
        ORDER,
        CAPITAL,
    ]
    reasons = {q["reason"] for q in both.quarantine}
    assert (
        f"run {BROKEN!r} (llm 'ChatOpenAI') of trace {BROKEN}: message 0: tool call 0 has no name"
        in reasons
    )
    assert "feedback 'fb-0005' has no 'key'" in reasons
    assert any(r.startswith("run has no 'id'") for r in reasons)


def test_nested_langgraph_trace_in_dotted_order(both: Traces) -> None:
    # the file lists children before their root; dotted_order restores execution order
    model = "gpt-4o-mini"
    assert _steps(both, WEATHER) == [
        (0, "system", "You are a weather assistant. Use get_weather for forecasts.")
        + NO_TOOL
        + (False, None, None, None, None),
        (1, "user", "What's the weather in Paris?") + NO_TOOL + (False, None, None, None, None),
        (2, "tool_call", None, "get_weather", "call_w1", '{"city":"Paris"}', None)
        + (False, None, model, 52, 18),
        (3, "tool_result", None, "get_weather", "call_w1", None, "18°C, sunny")
        + (False, None, None, None, None),
        (4, "assistant", "It is 18°C and sunny in Paris.") + NO_TOOL + (False, None, model, 95, 12),
    ]
    weather = trajectories_by_id(both)[WEATHER]
    expected = {
        "source_format": "langsmith",
        "agent_name": "LangGraph",
        "model": "gpt-4o-mini",
        "session_id": "thread-7",
        "user_id": "user-42",
        "task_id": "7c1d2e3f-0000-4000-8000-00000000e001",
        "outcome_label": "success",
        "outcome_score": 1.0,
        "outcome_source": "feedback:correctness",
        "n_tool_calls": 1,
        "n_tool_errors": 0,
        "input_tokens": 147,
        "output_tokens": 30,
        "final_output": "It is 18°C and sunny in Paris.",
    }
    assert {k: weather[k] for k in expected} == expected
    assert weather["cost_usd"] == pytest.approx(0.0000426)
    assert weather["started_at"] == datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    assert json.loads(weather["metadata"])["project_id"] == "5f0a2b1c-7d3e-4a9f-9c1b-2e4d6f8a0b1c"


def test_tool_error_and_outcome_from_separate_feedback(both: Traces) -> None:
    model = "gpt-4o-mini"
    assert _steps(both, ORDER) == [
        (0, "system", "You are a support agent for ACME.")
        + NO_TOOL
        + (False, None, None, None, None),
        (1, "user", "Where is my order A-17?") + NO_TOOL + (False, None, None, None, None),
        # tokens from the AIMessage's usage_metadata: the run has no prompt_tokens
        (2, "tool_call", None, "lookup_order", "call_o1", '{"order_id":"A-17"}', None)
        + (False, None, model, 61, 20),
        (3, "tool_result", None, "lookup_order", "call_o1", None, None)
        + (True, "OrderNotFound('no order with id A-17')", None, None, None),
        (4, "assistant", "I could not find order A-17. Could you double-check the number?")
        + NO_TOOL
        + (False, None, model, 110, 16),
    ]
    order = trajectories_by_id(both)[ORDER]
    assert (order["outcome_label"], order["outcome_score"], order["outcome_source"]) == (
        "failure",
        0.0,
        "feedback:correctness",
    )
    assert (order["session_id"], order["user_id"], order["n_tool_errors"]) == (
        "sess-8",
        "user-17",
        1,
    )
    capital = trajectories_by_id(both)[CAPITAL]
    assert _steps(both, CAPITAL) == [
        (0, "system", "Answer in one word.") + NO_TOOL + (False, None, None, None, None),
        (1, "user", "Capital of France?") + NO_TOOL + (False, None, None, None, None),
        (2, "assistant", "Paris") + NO_TOOL + (False, None, "gpt-4o-mini", 20, 1),
    ]
    assert (capital["outcome_label"], capital["outcome_source"]) == (
        "success",
        "feedback:correctness",
    )
    assert _feedback(both) == [
        (WEATHER, None, "correctness", 1.0, "model"),
        (WEATHER, None, "helpfulness", 0.9, "api"),
        (ORDER, None, "correctness", 0.0, "api"),
        (ORDER, None, "tool_error", 1.0, "model"),
        (CAPITAL, None, "correctness", 1.0, "feedback_stats"),
    ]
    correction = next(
        f["comment"]
        for f in both.feedback.to_pylist()
        if f["trajectory_id"] == ORDER and f["name"] == "correctness"
    )
    assert correction == (
        'Order A-17 exists; the agent gave up.\ncorrection: {"output": "Order A-17 ships tomorrow."}'
    )


def test_feedback_on_a_child_run_in_the_same_file_maps_to_its_trace_and_step(
    tmp_path: Path,
) -> None:
    runs = read_json_lines(fixture_file(RUNS, tmp_path))
    order = [r for r in runs if r.get("trace_id") == ORDER]
    feedback = {"id": "fb-9", "key": "tool_use", "score": 0, "run_id": LOOKUP_RUN}
    traces = ingest([write_json_lines(tmp_path / "order_runs.jsonl", [feedback, *order])])
    assert _feedback(traces) == [(ORDER, 3, "tool_use", 0.0, None)]
    assert_accounted(traces, "langsmith", read=5, ingested=5, quarantined=0)


def test_gzip_compressed_fixture_reads_the_same(tmp_path: Path, both: Traces) -> None:
    traces = ingest([gzipped(fixture_file(RUNS, tmp_path / "plain"))])
    assert_accounted(traces, "langsmith", read=14, ingested=12, quarantined=2)
    assert traces.steps.to_pylist() == both.steps.to_pylist()


def test_sniff_is_specific(tmp_path: Path) -> None:
    for name in (RUNS, FEEDBACK):
        path = fixture_file(name, tmp_path)
        assert sniffs(langsmith, path)
        assert not sniffs(langfuse, path)


def _run(
    run_id: str, parent: str | None, run_type: str, name: str, second: int, **fields: Any
) -> dict[str, Any]:
    """A run of trace ``sup-1``; ``agent`` becomes its ``extra.metadata.lc_agent_name``."""
    agent = fields.pop("agent", None)
    return {
        "id": run_id,
        "trace_id": "sup-1",
        "parent_run_id": parent,
        "run_type": run_type,
        "name": name,
        "start_time": f"2025-03-05T09:00:0{second}",
        "end_time": f"2025-03-05T09:00:0{second}.5",
        "extra": {"metadata": {"lc_agent_name": agent} if agent else {}},
        **fields,
    }


def test_actor_from_lc_agent_name_in_a_multi_agent_trace(tmp_path: Path, both: Traces) -> None:
    # a supervisor created with create_agent(name="supervisor") hands off to a "researcher"
    # subagent; the researcher's LLM run has no lc_agent_name of its own and inherits its chain's
    system = {"type": "system", "content": "You are the supervisor."}
    human = {"type": "human", "content": "How many people live in Paris?"}
    handoff = {"name": "transfer_to_researcher", "args": {}, "id": "call_t"}
    asked = {"type": "ai", "content": "", "tool_calls": [handoff]}
    moved = {"type": "tool", "content": "Transferred", "tool_call_id": "call_t"}
    answer = {"type": "ai", "content": "About 2.1 million."}
    researcher = {"type": "system", "content": "You are the researcher."}
    runs = [
        _run("sup-1", None, "chain", "supervisor", 0, agent="supervisor", inputs={}, outputs={}),
        _run("llm-1", "sup-1", "llm", "ChatOpenAI", 1, agent="supervisor")
        | {"inputs": {"messages": [[system, human]]}}
        | {"outputs": {"generations": [[{"text": "", "message": asked}]]}},
        _run("tool-1", "sup-1", "tool", "transfer_to_researcher", 2, agent="supervisor")
        | {"inputs": {"input": "{}"}, "outputs": {"output": moved}},
        _run("res-1", "sup-1", "chain", "researcher", 3, agent="researcher"),
        _run("llm-2", "res-1", "llm", "ChatOpenAI", 4)
        | {"inputs": {"messages": [[researcher, human, asked, moved]]}}
        | {"outputs": {"generations": [[{"text": "", "message": answer}]]}},
    ]
    path = write_json_lines(tmp_path / "supervisor_runs.jsonl", runs)
    steps = sorted(ingest([path]).steps.to_pylist(), key=lambda s: s["step_idx"])
    assert [(s["step_type"], s["actor"]) for s in steps] == [
        ("system", "supervisor"),
        ("user", None),
        ("tool_call", "supervisor"),
        ("tool_result", "supervisor"),
        ("system", "researcher"),
        ("assistant", "researcher"),
    ]
    # runs without lc_agent_name (the fixture's single LangGraph agents) leave actor empty
    assert {s["actor"] for s in both.steps.to_pylist()} == {None}

"""Langfuse adapter: full-detail traces, a blob-storage observations export and an API scores page."""

from __future__ import annotations

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
    reports_by_name,
    sniffs,
    sorted_feedback,
    steps_of,
    trajectories_by_id,
)

from pipeline.ingest import Traces, ingest
from pipeline.ingest.formats import langfuse, langsmith

TRACES = "langfuse_traces.jsonl"
OBSERVATIONS = "langfuse_observations.jsonl"
SCORES = "langfuse_scores.json"
FEEDBACK = ("trajectory_id", "step_idx", "name", "value", "value_text", "source")


def _steps(traces: Traces, trajectory_id: str) -> list[tuple[Any, ...]]:
    return briefs(steps_of(traces, trajectory_id), BRIEF_WITH_USAGE)


def _feedback(traces: Traces) -> list[tuple[Any, ...]]:
    return briefs(sorted_feedback(traces), FEEDBACK)


@pytest.fixture
def traces_file(tmp_path: Path) -> Traces:
    return ingest_fixtures(tmp_path, TRACES)


def test_fixture_headers_name_the_specification() -> None:
    assert_header_cites(TRACES, "https://api.reference.langfuse.com", "TraceWithFullDetails")
    assert_header_cites(OBSERVATIONS, "blob-storage-export-fields")
    assert_header_cites(SCORES, "/api/public/v2/scores")


def test_full_detail_traces_are_sniffed_and_accounted(traces_file: Traces) -> None:
    assert_accounted(traces_file, "langfuse", read=4, ingested=2, quarantined=2)
    assert_every_file_accounted(traces_file)
    assert sorted(traces_file.trajectories.column("trajectory_id").to_pylist()) == [
        "tr-order-2",
        "tr-weather-1",
    ]
    reasons = {q["where"]: q["reason"] for q in traces_file.quarantine}
    assert reasons["line 3"] == (
        "observation 'obs-c1' (GENERATION 'OpenAI-generation') of trace tr-bad-3: "
        "message 0: tool call 0 has no name"
    )
    assert reasons["line 4"].startswith("invalid JSON")


def test_generations_and_tool_observations_become_steps(traces_file: Traces) -> None:
    model = "gpt-4o-mini"
    assert _steps(traces_file, "tr-weather-1") == [
        (0, "system", "You are a weather assistant. Use get_weather for forecasts.")
        + (None,) * 4
        + (False, None, None, None, None),
        (1, "user", "What's the weather in Paris?") + (None,) * 4 + (False, None, None, None, None),
        (2, "tool_call", None, "get_weather", "call_1", '{"city":"Paris"}', None)
        + (False, None, model, 52, 18),
        (3, "tool_result", None, "get_weather", "call_1", None, '{"temp_c": 18, "sky": "sunny"}')
        + (False, None, None, None, None),
        (4, "assistant", "It is 18°C and sunny in Paris.")
        + (None,) * 4
        + (False, None, model, 95, 12),
    ]
    # the SPAN named after the pending tool call is the tool; its ERROR level is the tool error
    assert _steps(traces_file, "tr-order-2") == [
        (0, "system", "You are a support agent for ACME.")
        + (None,) * 4
        + (False, None, None, None, None),
        (1, "user", "Where is my order A-17?") + (None,) * 4 + (False, None, None, None, None),
        (2, "tool_call", None, "lookup_order", "call_9", '{"order_id":"A-17"}', None)
        + (False, None, model, 61, 20),
        (3, "tool_result", None, "lookup_order", "call_9", None, None)
        + (True, "OrderNotFound: no order with id A-17", None, None, None),
        (4, "assistant", "I could not find order A-17. Could you double-check the number?")
        + (None,) * 4
        + (False, None, model, 110, 16),
    ]


def test_trace_fields_and_outcome_from_scores(traces_file: Traces) -> None:
    weather = trajectories_by_id(traces_file)["tr-weather-1"]
    expected = {
        "source_format": "langfuse",
        "agent_name": "weather-agent",
        "model": "gpt-4o-mini",
        "session_id": "sess-7",
        "user_id": "user-42",
        "task_id": "weather-paris",
        "outcome_label": "success",
        "outcome_score": 1.0,
        "outcome_source": "feedback:correctness",
        "n_steps": 5,
        "n_tool_calls": 1,
        "n_tool_errors": 0,
        "input_tokens": 147,
        "output_tokens": 30,
        "task_input": "What's the weather in Paris?",
        "final_output": "It is 18°C and sunny in Paris.",
    }
    assert {k: weather[k] for k in expected} == expected
    assert weather["cost_usd"] == pytest.approx(0.0000426)
    assert weather["started_at"] == datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    assert weather["ended_at"] == datetime(2025, 3, 4, 10, 0, 2, 400000, tzinfo=UTC)
    assert '"tags":["prod","weather"]' in weather["metadata"]
    assert '"environment":"production"' in weather["metadata"]
    order = trajectories_by_id(traces_file)["tr-order-2"]
    assert (order["outcome_label"], order["outcome_score"], order["outcome_source"]) == (
        "failure",
        0.0,
        "feedback:success",
    )
    assert (order["n_tool_calls"], order["n_tool_errors"]) == (1, 1)
    # the observation score lands on the step of the scored generation; categorical is text
    assert _feedback(traces_file) == [
        ("tr-order-2", None, "success", 0.0, None, "API"),
        ("tr-weather-1", None, "correctness", 1.0, None, "EVAL"),
        ("tr-weather-1", 4, "tone", None, "friendly", "ANNOTATION"),
    ]


def test_observations_export_joins_scores_from_another_file(tmp_path: Path) -> None:
    traces = ingest_fixtures(tmp_path, OBSERVATIONS, SCORES)
    reports = reports_by_name(traces)
    observations, scores = reports[OBSERVATIONS], reports[SCORES]
    assert (observations.format, scores.format) == ("langfuse", "langfuse")
    assert (observations.records_read, observations.ingested, observations.quarantined) == (5, 4, 1)
    assert (scores.records_read, scores.ingested, scores.quarantined) == (3, 2, 1)
    assert {q["reason"] for q in traces.quarantine} == {
        "observation 'obs-x9' has no traceId",
        "score 'sc-s1' ('session-satisfaction') has no traceId (a session or dataset-run "
        "score); only trace scores are ingested",
    }
    model = "claude-sonnet-4"
    assert _steps(traces, "tr-refund-3") == [
        (0, "system", "You process refunds for ACME.")
        + (None,) * 4
        + (False, None, None, None, None),
        (1, "user", "Please refund order B-2, it arrived broken.")
        + (None,) * 4
        + (False, None, None, None, None),
        (2, "assistant", "Let me issue that refund.") + (None,) * 4 + (False, None, model, 80, 25),
        (3, "tool_call", None, "issue_refund", "call_r1", '{"order_id":"B-2","reason":"damaged"}')
        + (None, False, None, model, None, None),
        (4, "tool_result", None, "issue_refund", "call_r1", None)
        + ('{"status": "refunded", "amount_usd": 42.5}', False, None, None, None, None),
        (5, "assistant", "Your refund for B-2 is on its way.")
        + (None,) * 4
        + (False, None, model, 130, 11),
    ]
    refund = trajectories_by_id(traces)["tr-refund-3"]
    assert (refund["agent_name"], refund["user_id"], refund["session_id"]) == (
        "refund-agent",
        "user-9",
        "sess-11",
    )
    assert (refund["outcome_label"], refund["outcome_score"], refund["outcome_source"]) == (
        "success",
        1.0,
        "feedback:resolved",
    )
    assert refund["cost_usd"] == pytest.approx(0.00117)
    assert refund["started_at"] == datetime(2025, 3, 5, 9, 0, tzinfo=UTC)
    assert _feedback(traces) == [
        ("tr-refund-3", None, "helpfulness", 0.8, None, "EVAL"),
        ("tr-refund-3", None, "resolved", 1.0, None, "ANNOTATION"),
    ]


def test_gzip_compressed_fixture_reads_the_same(tmp_path: Path, traces_file: Traces) -> None:
    traces = ingest([gzipped(fixture_file(TRACES, tmp_path / "plain"))])
    assert_accounted(traces, "langfuse", read=4, ingested=2, quarantined=2)
    assert traces.steps.to_pylist() == traces_file.steps.to_pylist()
    assert _feedback(traces) == _feedback(traces_file)


def test_sniff_is_specific(tmp_path: Path) -> None:
    for name in (TRACES, OBSERVATIONS, SCORES):
        path = fixture_file(name, tmp_path)
        assert sniffs(langfuse, path)
        assert not sniffs(langsmith, path)
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        '{"id": "c1", "timestamp": "2025-01-01T00:00:00Z", "session_id": "s", "tags": [], '
        '"messages": [{"role": "user", "content": "hi"}]}\n',
        encoding="utf-8",
    )
    assert not sniffs(langfuse, chat)

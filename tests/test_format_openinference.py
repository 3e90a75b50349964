"""OpenInference spans and Phoenix annotations (``pipeline.ingest.formats.openinference``).

Fixtures:

- ``openinference_phoenix.jsonl``: Phoenix REST span export, 8 spans of 2 traces then 3
  annotations: ``6f1c...`` (AGENT root, a ``get_weather`` call; one LLM span's attributes nested)
  annotated ``correctness`` 1 on its root span; ``7a2d...`` (CHAIN root, ``cancel_order`` fails)
  with a trace annotation ``correctness`` 0 and a step-level ``helpfulness`` annotation;
- ``openinference_dataframe.jsonl``: 4 rows of ``get_spans_dataframe()`` (one trace, a tool
  timeout, no annotation);
- ``openinference_otlp.jsonl``: OTLP/JSON, 7 spans of 2 traces: ``9c4f...`` (smolagents-style,
  ``evaluations.0.evaluation.*`` on the root) and ``ad5a...`` (a RAG chain: RETRIEVER, then an
  ``llm.prompts`` / ``llm.choices`` LLM span);
- ``openinference_annotations.jsonl``: 3 annotations for ``openinference_otlp.jsonl``: a trace
  annotation, a span annotation naming its trace, one of an unknown span without trace id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixture_files import (
    append_lines,
    assert_accounted,
    assert_header_cites,
    assert_reads_the_same,
    briefs,
    fixture_file,
    gzipped,
    read_json_lines,
    sorted_feedback,
    steps_of,
    trajectories_by_id,
)

from pipeline.ingest import Traces, ingest, sniff_format

PHOENIX = "openinference_phoenix.jsonl"
DATAFRAME = "openinference_dataframe.jsonl"
OTLP = "openinference_otlp.jsonl"
ANNOTATIONS = "openinference_annotations.jsonl"
P1 = "6f1c3a0e9b8d4c2a8e7f5d3b1a09c8e7"
P2 = "7a2d4b1f0c9e5d3b9f8a6e4c2b1ad9f8"
D1 = "8b3e5c2a1d0f6e4c0a9b7f5d3c2be0a9"
O1 = "9c4f6d3b2e1a7f5d1b0c8a6e4d3cf1b0"
O2 = "ad5a7e4c3f2b8a6e2c1d9b7f5e4da2c1"
WEATHER_SYSTEM = "You are a weather assistant. Always call get_weather."


@pytest.fixture
def phoenix_path(tmp_path: Path) -> Path:
    return fixture_file(PHOENIX, tmp_path)


@pytest.fixture
def phoenix(phoenix_path: Path) -> Traces:
    return ingest([phoenix_path])


def _text(idx: int, role: str, text: str) -> tuple:
    return (idx, role, role, text, None, None, None, None, False, None)


def _accounted(traces: Traces, name: str, read: int, quarantined: int = 0) -> None:
    assert_accounted(traces, "openinference", read=read, quarantined=quarantined, name=name)


@pytest.mark.parametrize("name", [PHOENIX, DATAFRAME, OTLP, ANNOTATIONS])
def test_fixture_header_names_the_spec(name: str, tmp_path: Path) -> None:
    assert_header_cites(name, "https://github.com/Arize-ai/openinference/blob/main/spec/")
    assert sniff_format(fixture_file(name, tmp_path)) == "openinference"


def test_phoenix_export_accounting(phoenix_path: Path, phoenix: Traces) -> None:
    _accounted(phoenix, PHOENIX, read=11)  # 8 spans + 3 annotations
    assert phoenix.trajectories.column("trajectory_id").to_pylist() == [P1, P2]


def test_phoenix_success_trace(phoenix: Traces) -> None:
    steps = steps_of(phoenix, P1)
    assert briefs(steps) == [
        _text(0, "system", WEATHER_SYSTEM),
        _text(1, "user", "What's the weather in Tokyo?"),
        (2, "assistant", "tool_call", None, "get_weather", "call_t1", '{"city":"Tokyo"}')
        + (None, False, None),
        (3, "tool", "tool_result", None, "get_weather", "call_t1", None)
        + ('{"temp_c": 22, "sky": "clear"}', False, None),
        _text(4, "assistant", "It's 22°C and clear in Tokyo."),
    ]
    assert [(s["model"], s["input_tokens"], s["output_tokens"]) for s in steps] == [
        (None, None, None),
        (None, None, None),
        ("gpt-4o-mini-2024-07-18", 80, 18),
        (None, None, None),
        ("gpt-4o-mini-2024-07-18", 120, 12),  # from the nested-object attributes
    ]
    row = trajectories_by_id(phoenix)[P1]
    assert (row["outcome_label"], row["outcome_score"], row["outcome_source"]) == (
        "success",
        1.0,
        "feedback:correctness",
    )
    assert (row["agent_name"], row["session_id"], row["user_id"]) == (
        "weather_agent",
        "sess-7f3a",
        "u-42",
    )
    assert row["model"] == "gpt-4o-mini-2024-07-18"
    assert row["cost_usd"] == pytest.approx(0.0007)
    assert (row["input_tokens"], row["output_tokens"]) == (200, 30)
    assert str(row["started_at"]) == "2024-06-02 09:00:00+00:00"
    assert str(row["ended_at"]) == "2024-06-02 09:00:04+00:00"
    assert json.loads(row["metadata"]) == {
        "metadata": {"experiment": "prompt-v2"},
        "root_kind": "AGENT",
        "root_span": "weather_agent",
        "spans": 4,
        "tags": ["prod", "weather"],
        "trace_id": P1,
    }


def test_phoenix_tool_error_trace(phoenix: Traces) -> None:
    steps = steps_of(phoenix, P2)
    assert briefs(steps) == [
        _text(0, "user", "Cancel my order #1234"),
        _text(1, "assistant", "I'll cancel order 1234."),
        (2, "assistant", "tool_call", None, "cancel_order", "toolu_01", '{"order_id":"1234"}')
        + (None, False, None),
        (3, "tool", "tool_result", None, "cancel_order", "toolu_01", None, None, True)
        + ("OrderLockedError: order 1234 has already shipped",),
        _text(
            4, "assistant", "Sorry, order 1234 has already shipped and can no longer be cancelled."
        ),
    ]
    row = trajectories_by_id(phoenix)[P2]
    assert (row["outcome_label"], row["outcome_score"]) == ("failure", 0.0)
    assert (row["n_tool_calls"], row["n_tool_errors"]) == (1, 1)
    assert (row["agent_name"], row["session_id"]) == (None, "sess-9c1d")
    assert row["task_input"] == "Cancel my order #1234"


def test_phoenix_annotations_are_feedback(phoenix: Traces) -> None:
    rows = sorted_feedback(phoenix)
    assert rows == [
        {
            "trajectory_id": P1,
            "step_idx": None,  # on the root span: the whole trajectory
            "name": "correctness",
            "value": 1.0,
            "value_text": "correct",
            "source": "LLM",
            "comment": "Matches the weather service.",
        },
        {
            "trajectory_id": P2,
            "step_idx": None,
            "name": "correctness",
            "value": 0.0,
            "value_text": "incorrect",
            "source": "HUMAN",
            "comment": "The order was not cancelled.",
        },
        {
            "trajectory_id": P2,
            "step_idx": 4,  # the first step of the annotated LLM span
            "name": "helpfulness",
            "value": 0.8,
            "value_text": "helpful",
            "source": "LLM",
            "comment": None,
        },
    ]


def test_dataframe_rows(tmp_path: Path) -> None:
    path = fixture_file(DATAFRAME, tmp_path)
    traces = ingest([path])
    _accounted(traces, DATAFRAME, read=4)
    steps = steps_of(traces, D1)
    args = '{"query":"population of Lyon"}'
    assert briefs(steps) == [
        _text(0, "user", "Find the population of Lyon"),
        (1, "assistant", "tool_call", None, "web_search", "call_d1", args, None, False, None),
        (2, "tool", "tool_result", None, "web_search", "call_d1", None, None, True)
        + ("TimeoutError: search backend did not answer in 2s",),
        _text(3, "assistant", "I could not reach the search service; please try again later."),
    ]
    assert [(s["input_tokens"], s["output_tokens"]) for s in steps] == [
        (None, None),
        (45, 21),
        (None, None),
        (110, 16),
    ]
    assert str(steps[0]["started_at"]) == "2024-06-02 10:00:00.100000+00:00"
    row = trajectories_by_id(traces)[D1]
    assert (row["outcome_label"], row["agent_name"], row["model"]) == (
        "unknown",
        "research_agent",
        "gpt-4o",
    )
    assert traces.feedback.num_rows == 0


def test_otlp_spans_with_separate_annotations(tmp_path: Path) -> None:
    otlp = fixture_file(OTLP, tmp_path)
    notes = fixture_file(ANNOTATIONS, tmp_path)
    traces = ingest([otlp, notes])
    _accounted(traces, OTLP, read=7)
    _accounted(traces, ANNOTATIONS, read=3, quarantined=1)
    (quarantined,) = traces.quarantine
    assert quarantined["where"] == "line 3"
    assert quarantined["reason"] == (
        "annotation 'hallucination' of span ffffffffffffffff: the span is not in this file and "
        "the annotation has no trace_id, so its trajectory is unknown"
    )
    code = '{"code":"print(2**10)"}'
    assert briefs(steps_of(traces, O1)) == [
        _text(0, "system", "You solve tasks with python_interpreter."),
        _text(1, "user", "New task:\nWhat is 2**10?"),
        _text(2, "assistant", "Thought: compute it."),
        (3, "assistant", "tool_call", None, "python_interpreter", "call_o1", code)
        + (None, False, None),
        (
            4,
            "tool",
            "tool_result",
            None,
            "python_interpreter",
            "call_o1",
            None,
            "1024",
            False,
            None,
        ),
        _text(5, "assistant", "The answer is 1024."),
    ]
    # the root CHAIN's input opens the RAG trajectory; the retriever is a tool step
    rag = steps_of(traces, O2)
    assert briefs(rag) == [
        _text(0, "user", "Who wrote Dune?"),
        (
            1,
            "assistant",
            "tool_call",
            None,
            "retrieve",
            None,
            '"Who wrote Dune?"',
            None,
            False,
            None,
        ),
        (2, "tool", "tool_result", None, "retrieve", None, None)
        + ("Dune is a 1965 novel by Frank Herbert.\n\nDune Messiah followed in 1969.", False, None),
        _text(
            3, "user", "Context: Dune is a 1965 novel by Frank Herbert.\nQuestion: Who wrote Dune?"
        ),
        _text(4, "assistant", "Frank Herbert wrote Dune."),
    ]
    rows = trajectories_by_id(traces)
    assert (rows[O1]["outcome_label"], rows[O1]["outcome_source"]) == (
        "success",
        "feedback:task_success",
    )
    # ad5a's outcome comes from the separate annotations file
    assert (rows[O2]["outcome_label"], rows[O2]["outcome_score"], rows[O2]["outcome_source"]) == (
        "success",
        1.0,
        "feedback:correctness",
    )
    assert json.loads(rows[O1]["metadata"])["project"] == "math-and-rag"
    feedback = sorted_feedback(traces)
    assert [
        (r["trajectory_id"], r["step_idx"], r["name"], r["value"], r["value_text"], r["source"])
        for r in feedback
    ] == [
        (O1, None, "task_success", 1.0, "pass", "CODE"),
        (O2, None, "correctness", 1.0, "correct", "LLM"),
        (O2, None, "retrieval_relevance", 0.91, None, "CODE"),
    ]


def test_annotations_without_their_spans_are_quarantined(tmp_path: Path) -> None:
    traces = ingest([fixture_file(ANNOTATIONS, tmp_path)])
    _accounted(traces, ANNOTATIONS, read=3, quarantined=3)
    assert traces.feedback.num_rows == 0
    reasons = {q["where"]: q["reason"] for q in traces.quarantine}
    assert set(reasons) == {"line 1", "line 2", "line 3"}
    assert O2 in reasons["line 1"] and O2 in reasons["line 2"]  # no input holds that trace


def test_malformed_records_are_quarantined_and_the_rest_ingested(phoenix_path: Path) -> None:
    bad_trace = "ffffffffffffffffffffffffffffffff"
    lines = [
        "{not json",
        json.dumps({"name": "orphan", "context": {"span_id": "f1"}, "span_kind": "LLM"}),
        json.dumps(
            {
                "name": "llm",
                "context": {"trace_id": bad_trace, "span_id": "f2"},
                "span_kind": "LLM",
                "parent_id": None,
                "attributes": {
                    "llm.input_messages.0.message.role": "narrator",
                    "llm.input_messages.0.message.content": "Once upon a time",
                },
            }
        ),
        json.dumps({"span_id": "a000000000000002", "name": "tone", "annotator_kind": "LLM"}),
        json.dumps({"kind": "something else"}),
    ]
    append_lines(phoenix_path, lines)
    traces = ingest([phoenix_path])
    _accounted(traces, PHOENIX, read=16, quarantined=5)
    assert traces.trajectories.column("trajectory_id").to_pylist() == [P1, P2]
    reasons = {q["where"]: q["reason"] for q in traces.quarantine}
    assert reasons["line 12"].startswith("invalid JSON")
    assert reasons["line 13"] == "line 13: span has no context.trace_id"
    assert reasons[f"trace {bad_trace} (from line 14)"] == (
        f"trace {bad_trace}: span f2 (llm): llm.input_messages.0: unknown message role 'narrator'"
    )
    assert reasons["line 15"] == "line 15: annotation 'tone' has no score, label or explanation"
    assert reasons["line 16"].startswith("not an OpenInference span")


def test_gzip_compressed(phoenix_path: Path, phoenix: Traces) -> None:
    assert_reads_the_same(gzipped(phoenix_path), phoenix, "openinference", read=11)


@pytest.mark.parametrize("shape", ["array", "rest page"])
def test_json_array_and_rest_page(phoenix_path: Path, phoenix: Traces, shape: str) -> None:
    records = read_json_lines(phoenix_path)
    target = phoenix_path.with_name("spans.json")
    document = records if shape == "array" else {"data": records, "next_cursor": None}
    target.write_text(json.dumps(document, indent=2), encoding="utf-8")
    phoenix_path.unlink()
    assert_reads_the_same(target, phoenix, "openinference", read=11)


def test_otel_genai_spans_are_not_claimed(tmp_path: Path) -> None:
    assert sniff_format(fixture_file("otel_genai.jsonl", tmp_path)) == "otel"

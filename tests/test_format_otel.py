"""OpenTelemetry GenAI spans in OTLP/JSON (``pipeline.ingest.formats.otel``).

Fixture ``otel_genai.jsonl``: 3 ExportTraceServiceRequest lines holding 12 spans of 3 traces:

- ``5b8e...`` (4 spans; the root ``invoke_agent`` span arrives on line 3, after its children on
  line 1): system instructions, a ``get_weather`` tool call and its ``execute_tool`` span, the
  answer; ``gen_ai.evaluation.result`` task_success 1.0 on the root and relevance 0.9 on the
  second chat span;
- ``0af7...`` (4 spans): ``book_flight`` fails (status ERROR, ``error.type``, exception event),
  task_success 0.0;
- ``4bf9...`` (4 spans, older forms): OpenLLMetry ``gen_ai.prompt.N`` / ``gen_ai.completion.N``
  attributes, a Traceloop tool span, per-message events; no evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixture_files import (
    FORMATS,
    append_lines,
    assert_accounted,
    assert_header_cites,
    assert_reads_the_same,
    briefs,
    fixture_file,
    fixture_pair,
    gzipped,
    read_json_lines,
    sniffs,
    sorted_feedback,
    steps_of,
    trajectories_by_id,
)

from pipeline.ingest import Traces, ingest, sniff_format
from pipeline.ingest.formats import openinference, otel

NAME = "otel_genai.jsonl"
A = "5b8efff798038103d269b633813fc60c"
B = "0af7651916cd43dd8448eb211c80319c"
C = "4bf92f3577b34da6a3ce929d0e0e4736"
CALL_A = "call_VSPygqKTWdrhaFErNvMV18Yl"

path, traces = fixture_pair(NAME)


def test_fixture_header_names_the_spec() -> None:
    assert_header_cites(
        NAME,
        "https://opentelemetry.io/docs/specs/otel/protocol/file-exporter/",
        "Semantic Conventions for Generative AI, v1.37.0",
        "gen-ai-input-messages.json",
    )


def test_sniffed_and_every_span_accounted_for(path: Path, traces: Traces) -> None:
    assert sniff_format(path) == "otel"
    assert_accounted(traces, "otel", read=12)
    assert traces.trajectories.column("trajectory_id").to_pylist() == [A, B, C]
    assert set(traces.trajectories.column("source_format").to_pylist()) == {"otel"}


def test_success_trace_steps(traces: Traces) -> None:
    steps = steps_of(traces, A)
    assert briefs(steps) == [
        (
            0,
            "system",
            "system",
            "You are a travel assistant. Use the tools for live data.",
            None,
            None,
            None,
            None,
            False,
            None,
        ),
        (1, "user", "user", "What's the weather in Paris?", None, None, None, None, False, None),
        (
            2,
            "assistant",
            "tool_call",
            None,
            "get_weather",
            CALL_A,
            '{"location":"Paris"}',
            None,
            False,
            None,
        ),
        (
            3,
            "tool",
            "tool_result",
            None,
            "get_weather",
            CALL_A,
            None,
            '{"temperature_c": 18, "conditions": "sunny"}',
            False,
            None,
        ),
        (
            4,
            "assistant",
            "assistant",
            "It is 18°C and sunny in Paris right now.",
            None,
            None,
            None,
            None,
            False,
            None,
        ),
    ]
    # the second chat call resends system, user, tool call and tool response: not repeated
    tokens = [(s["input_tokens"], s["output_tokens"]) for s in steps]
    assert tokens == [(None, None), (None, None), (120, 20), (None, None), (168, 14)]
    assert [s["model"] for s in steps] == [
        None,
        None,
        "gpt-4o-2024-08-06",
        None,
        "gpt-4o-2024-08-06",
    ]
    assert [str(s["started_at"]) for s in steps] == [
        "2024-06-01 12:00:00.100000+00:00",
        "2024-06-01 12:00:00.100000+00:00",
        "2024-06-01 12:00:00.100000+00:00",
        "2024-06-01 12:00:01.300000+00:00",
        "2024-06-01 12:00:01.700000+00:00",
    ]
    assert str(steps[3]["ended_at"]) == "2024-06-01 12:00:01.600000+00:00"


def test_success_trace_row(traces: Traces) -> None:
    row = trajectories_by_id(traces)[A]
    assert row["source_uri"].endswith(NAME)
    assert row["agent_name"] == "travel-agent"
    assert row["model"] == "gpt-4o-2024-08-06"
    assert row["session_id"] == "conv_5j66UpCpwteGg4YSxUnt7lPY"
    assert row["user_id"] is None
    assert (row["outcome_label"], row["outcome_score"], row["outcome_source"]) == (
        "success",
        1.0,
        "feedback:task_success",
    )
    assert (row["n_steps"], row["n_tool_calls"], row["n_tool_errors"]) == (5, 1, 0)
    assert (row["input_tokens"], row["output_tokens"]) == (288, 34)
    assert row["system_prompt"] == "You are a travel assistant. Use the tools for live data."
    assert row["task_input"] == "What's the weather in Paris?"
    assert row["final_output"] == "It is 18°C and sunny in Paris right now."
    assert str(row["started_at"]) == "2024-06-01 12:00:00+00:00"
    assert str(row["ended_at"]) == "2024-06-01 12:00:03+00:00"
    assert row["termination_reason"] is None
    assert json.loads(row["metadata"]) == {
        "agent_id": "asst_5j66UpCpwteGg4YSxUnt7lPY",
        "provider": "openai",
        "resource": {
            "deployment.environment.name": "staging",
            "service.name": "travel-desk",
            "service.version": "1.4.2",
        },
        "root_span": "invoke_agent travel-agent",
        "scopes": ["opentelemetry.instrumentation.openai_v2"],
        "spans": 4,
        "trace_id": A,
    }


def test_tool_error_trace(traces: Traces) -> None:
    steps = steps_of(traces, B)
    assert briefs(steps) == [
        (0, "system", "system", "You book flights. Confirm before booking.")
        + (None,) * 4
        + (False, None),
        (1, "user", "user", "Book me a flight to Rome on 2025-06-01.")
        + (None,) * 4
        + (False, None),
        (2, "assistant", "assistant", "Let me book that for you.") + (None,) * 4 + (False, None),
        (
            3,
            "assistant",
            "tool_call",
            None,
            "book_flight",
            "call_b1",
            '{"date":"2025-06-01","destination":"FCO"}',
            None,
            False,
            None,
        ),
        (
            4,
            "tool",
            "tool_result",
            None,
            "book_flight",
            "call_b1",
            None,
            None,
            True,
            "SeatUnavailableError: no seats left on AZ 205",
        ),
        (
            5,
            "assistant",
            "assistant",
            "Sorry, there are no seats left on AZ 205 on 2025-06-01.",
        )
        + (None,) * 4
        + (False, None),
    ]
    # the assistant message with text and a tool call carries its tokens on its first step
    assert [(s["input_tokens"], s["output_tokens"]) for s in steps if s["input_tokens"]] == [
        (95, 31),
        (140, 18),
    ]
    row = trajectories_by_id(traces)[B]
    assert (row["outcome_label"], row["outcome_score"]) == ("failure", 0.0)
    assert (row["n_tool_calls"], row["n_tool_errors"]) == (1, 1)
    assert (row["agent_name"], row["session_id"], row["user_id"]) == (
        "booking-agent",
        "conv_booking_42",
        "user-314",
    )
    assert row["model"] == "gpt-4o"


def test_older_semconv_forms(traces: Traces) -> None:
    steps = steps_of(traces, C)
    assert briefs(steps) == [
        (0, "system", "system", "You are a calculator assistant.") + (None,) * 4 + (False, None),
        (1, "user", "user", "What is 17 * 23?") + (None,) * 4 + (False, None),
        (
            2,
            "assistant",
            "tool_call",
            None,
            "calculator",
            "call_c1",
            '{"expression":"17 * 23"}',
            None,
            False,
            None,
        ),
        # the Traceloop tool span has no call id: it answers the pending call of its tool
        (3, "tool", "tool_result", None, "calculator", "call_c1", None, "391", False, None),
        (4, "assistant", "assistant", "17 * 23 = 391.") + (None,) * 4 + (False, None),
    ]
    assert [(s["model"], s["input_tokens"], s["output_tokens"]) for s in steps] == [
        (None, None, None),
        (None, None, None),
        ("gpt-4o-mini-2024-07-18", 52, 19),
        (None, None, None),
        ("gpt-4o-mini", 80, 9),
    ]
    row = trajectories_by_id(traces)[C]
    assert (row["outcome_label"], row["outcome_score"], row["outcome_source"]) == (
        "unknown",
        None,
        None,
    )
    assert row["agent_name"] is None
    assert json.loads(row["metadata"])["resource"] == {"service.name": "calc-bot"}


def test_feedback_rows_from_evaluation_events(traces: Traces) -> None:
    rows = sorted_feedback(traces)
    source = "gen_ai.evaluation.result"
    assert rows == [
        {
            "trajectory_id": B,
            "step_idx": None,
            "name": "task_success",
            "value": 0.0,
            "value_text": "fail",
            "source": source,
            "comment": "No flight was booked.",
        },
        {
            "trajectory_id": A,
            "step_idx": 4,
            "name": "relevance",
            "value": 0.9,
            "value_text": "relevant",
            "source": source,
            "comment": None,
        },
        {
            "trajectory_id": A,
            "step_idx": None,
            "name": "task_success",
            "value": 1.0,
            "value_text": "pass",
            "source": source,
            "comment": "The answer states the current weather in Paris.",
        },
    ]


def test_malformed_records_are_quarantined_and_the_rest_ingested(path: Path) -> None:
    bad_trace = "ffffffffffffffffffffffffffffffff"

    def span(span_id: str, parent: str, attributes: list) -> dict:
        return {
            "traceId": bad_trace,
            "spanId": span_id,
            "parentSpanId": parent,
            "name": "chat gpt-4o",
            "startTimeUnixNano": "1717243300000000000",
            "endTimeUnixNano": "1717243301000000000",
            "attributes": attributes,
        }

    chat = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.input.messages", "value": {"stringValue": '[{"role": "user", "parts"'}},
    ]
    lines = [
        "{not json",
        json.dumps(
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "01", "name": "x"}]}]}]}
        ),
        json.dumps(
            {
                "resourceSpans": [
                    {"scopeSpans": [{"spans": [span("aa01", "", []), span("aa02", "aa01", chat)]}]}
                ]
            }
        ),
        json.dumps({"resource_logs": []}),
    ]
    append_lines(path, lines)
    traces = ingest([path])
    assert_accounted(traces, "otel", read=17, quarantined=5)
    assert traces.trajectories.column("trajectory_id").to_pylist() == [A, B, C]
    reasons = {q["where"]: q["reason"] for q in traces.quarantine}
    assert reasons["line 4"].startswith("invalid JSON")
    assert reasons["line 5 span 1"] == "line 5 span 1: span has no traceId"
    assert reasons[f"trace {bad_trace} (from line 6 span 1)"].startswith(
        f"trace {bad_trace}: span aa02 (chat gpt-4o): attribute gen_ai.input.messages is not "
        "valid JSON"
    )
    assert reasons["line 7"] == "not an OTLP trace request (no 'resourceSpans' list)"


def test_gzip_compressed(path: Path, traces: Traces) -> None:
    assert_reads_the_same(gzipped(path), traces, "otel", read=12)


@pytest.mark.parametrize("shape", ["document", "array"])
def test_single_document_and_array_of_requests(path: Path, traces: Traces, shape: str) -> None:
    requests = read_json_lines(path)
    target = path.with_name("export.json")
    if shape == "document":
        merged = {"resourceSpans": [rs for r in requests for rs in r["resourceSpans"]]}
        target.write_text(json.dumps(merged, indent=2), encoding="utf-8")
    else:
        target.write_text(json.dumps(requests, indent=2), encoding="utf-8")
    path.unlink()
    assert_reads_the_same(target, traces, "otel", read=12)


def test_string_status_codes_and_proto_field_names(tmp_path: Path) -> None:
    span = {
        "trace_id": "ABCDEF0123456789ABCDEF0123456789",
        "span_id": "0102030405060708",
        "name": "execute_tool lookup",
        "start_time_unix_nano": 1717243200000000000,
        "end_time_unix_nano": 1717243200500000000,
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
            {"key": "gen_ai.tool.name", "value": {"stringValue": "lookup"}},
            {
                "key": "gen_ai.tool.call.arguments",
                "value": {
                    "kvlistValue": {
                        "values": [
                            {"key": "id", "value": {"intValue": "42"}},
                            {
                                "key": "tags",
                                "value": {"arrayValue": {"values": [{"stringValue": "a"}]}},
                            },
                        ]
                    }
                },
            },
        ],
        "status": {"code": "STATUS_CODE_ERROR", "message": "not found"},
    }
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps({"resource_spans": [{"scope_spans": [{"spans": [span]}]}]}) + "\n")
    assert sniff_format(path) == "otel"
    traces = ingest([path])
    trace_id = "abcdef0123456789abcdef0123456789"
    assert briefs(steps_of(traces, trace_id)) == [
        (
            0,
            "assistant",
            "tool_call",
            None,
            "lookup",
            None,
            '{"id":42,"tags":["a"]}',
            None,
            False,
            None,
        ),
        (1, "tool", "tool_result", None, "lookup", None, None, None, True, "not found"),
    ]


def test_other_formats_are_not_claimed(tmp_path: Path) -> None:
    openinference_otlp = fixture_file("openinference_otlp.jsonl", tmp_path)
    assert sniff_format(openinference_otlp) == "openinference"
    for fixture in sorted(FORMATS.glob("*")):
        if fixture.name.startswith(("otel", "openinference")) or not fixture.is_file():
            continue
        copy = fixture_file(fixture.name, tmp_path / "other")
        assert not sniffs(otel, copy), fixture.name
        assert not sniffs(openinference, copy), fixture.name


def _attrs(values: dict) -> list[dict]:
    def any_value(value: object) -> dict:
        if isinstance(value, int):
            return {"intValue": str(value)}
        return {"stringValue": value if isinstance(value, str) else json.dumps(value)}

    return [{"key": k, "value": any_value(v)} for k, v in values.items()]


def _write_spans(path: Path, trace_id: str, spans: list[tuple]) -> Path:
    """``spans``: ``(span_id, parent_id, start_ms, attributes, status)`` tuples."""
    base = 1717243200000
    rows = [
        {
            "traceId": trace_id,
            "spanId": span_id,
            "parentSpanId": parent,
            "name": attributes.get("gen_ai.operation.name", "span"),
            "startTimeUnixNano": str((base + start) * 1_000_000),
            "endTimeUnixNano": str((base + start + 50) * 1_000_000),
            "attributes": _attrs(attributes),
            "status": status,
        }
        for span_id, parent, start, attributes, status in spans
    ]
    path.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": rows}]}]}) + "\n")
    return path


def test_spans_without_content_and_an_agent_error(tmp_path: Path) -> None:
    trace_id = "11111111111111111111111111111111"
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"}
    chat = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "gen_ai.usage.input_tokens": 7,
    }
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}
    path = _write_spans(
        tmp_path / "nocontent.jsonl",
        trace_id,
        [
            ("01", "", 0, agent, {"code": 2, "message": "max turns exceeded"}),
            ("02", "01", 10, chat, {}),
            ("03", "01", 100, tool, {}),
        ],
    )
    traces = ingest([path])
    steps = steps_of(traces, trace_id)
    assert [(s["step_type"], s["content_text"], s["tool_name"], s["is_error"]) for s in steps] == [
        ("assistant", None, None, False),  # an LLM call without captured content keeps its tokens
        ("tool_call", None, "search", False),
        ("tool_result", None, "search", False),
        ("error", "max turns exceeded", None, True),  # the agent span failed after its children
    ]
    assert (steps[0]["model"], steps[0]["input_tokens"]) == ("m", 7)
    row = trajectories_by_id(traces)[trace_id]
    assert (row["termination_reason"], row["n_tool_errors"]) == ("error", 1)


def test_repeated_user_messages_in_a_conversation_are_kept(tmp_path: Path) -> None:
    trace_id = "22222222222222222222222222222222"

    def chat(inputs: list[tuple[str, str]], answer: str) -> dict:
        messages = [{"role": r, "parts": [{"type": "text", "content": t}]} for r, t in inputs]
        output = [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": messages,
            "gen_ai.output.messages": output,
        }

    first = [("user", "ok")]
    second = [*first, ("assistant", "Step 1 done."), ("user", "ok")]
    path = _write_spans(
        tmp_path / "turns.jsonl",
        trace_id,
        [
            ("01", "", 0, chat(first, "Step 1 done."), {}),
            ("02", "", 100, chat(second, "Step 2 done."), {}),
        ],
    )
    steps = steps_of(ingest([path]), trace_id)
    assert [(s["step_type"], s["content_text"]) for s in steps] == [
        ("user", "ok"),
        ("assistant", "Step 1 done."),
        ("user", "ok"),
        ("assistant", "Step 2 done."),
    ]


def test_actor_names_the_agent_in_a_multi_agent_trace(tmp_path: Path, traces: Traces) -> None:
    assert set(traces.steps.column("actor").to_pylist()) == {None}  # single-agent fixture traces
    trace_id = "33333333333333333333333333333333"

    def agent(name: str) -> dict:
        return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name}

    def chat(text: str) -> dict:
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.output.messages": [
                {"role": "assistant", "parts": [{"type": "text", "content": text}]}
            ],
        }

    path = _write_spans(
        tmp_path / "agents.jsonl",
        trace_id,
        [
            ("01", "", 0, agent("triage"), {}),
            ("02", "01", 10, chat("Handing over."), {}),
            ("03", "01", 100, agent("refund"), {}),
            ("04", "03", 110, chat("Refund issued."), {}),
        ],
    )
    steps = steps_of(ingest([path]), trace_id)
    assert [(s["content_text"], s["actor"]) for s in steps] == [
        ("Handing over.", "triage"),
        ("Refund issued.", "refund"),
    ]

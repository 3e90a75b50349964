"""OpenAI Agents SDK traces (``pipeline.ingest.formats.openai_agents``).

Fixture ``openai_agents_traces.jsonl``: 20 items of 3 traces, written in the order the SDK's
batch processor exports them (a trace when it starts, a span when it ends):

- trace ``...5f60`` (11 items): chat-completions model, Triage Agent hands off to Refund Agent,
  metadata ``outcome: success``;
- trace ``...8899`` (5 items): Responses model (response spans with usage only), a tool error,
  metadata ``reward: "0"``, the agent span ends with ``Max turns exceeded``;
- trace ``...0f10`` (4 items): an input guardrail trips, no outcome.
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
    fixture_pair,
    gzipped,
    read_json_lines,
    steps_of,
    trajectories_by_id,
    write_json_lines,
)

from pipeline.ingest import Traces, ingest, sniff_format

NAME = "openai_agents_traces.jsonl"
T1 = "trace_6f1c2d3e4a5b46c7890a1b2c3d4e5f60"
T2 = "trace_0a9b8c7d6e5f40312233445566778899"
T3 = "trace_b1e2c3d4f5a647b8990a0b0c0d0e0f10"
SYS_TRIAGE = "You are the triage agent of Acme support. Hand refunds to the Refund Agent."
REFUND_ARGS = '{"amount":42.0,"order_id":"1234"}'
SYS_REFUND = "You are the Refund Agent. Check the order, then issue the refund."
# A step as these tests compare it: the tool-call columns.
TOOL_BRIEF = ("step_idx", "role", "step_type", "tool_name", "tool_call_id", "tool_args", "is_error")

path, traces = fixture_pair(NAME)


def test_fixture_header_names_the_spec() -> None:
    assert_header_cites(
        NAME,
        "openai/openai-agents-python v0.17.3",
        "https://github.com/openai/openai-agents-python",
        "span_data.py",
    )


def test_sniffed_and_every_item_accounted_for(path: Path, traces: Traces) -> None:
    assert sniff_format(path) == "openai-agents"
    assert_accounted(traces, "openai-agents", read=20)
    assert traces.trajectories.column("trajectory_id").to_pylist() == [T1, T2, T3]


def test_handoff_trace_steps(traces: Traces) -> None:
    steps = steps_of(traces, T1)
    assert briefs(steps, TOOL_BRIEF) == [
        (0, "system", "system", None, None, None, False),
        (1, "user", "user", None, None, None, False),
        (
            2,
            "assistant",
            "tool_call",
            "lookup_order",
            "call_lookup_1",
            '{"order_id":"1234"}',
            False,
        ),
        (3, "tool", "tool_result", "lookup_order", "call_lookup_1", None, False),
        (4, "assistant", "tool_call", "transfer_to_refund_agent", "call_handoff_2", "{}", False),
        (5, "assistant", "handoff", "Refund Agent", "call_handoff_2", None, False),
        (6, "system", "system", None, None, None, False),
        (7, "assistant", "tool_call", "issue_refund", "call_refund_3", REFUND_ARGS, False),
        (8, "tool", "tool_result", "issue_refund", "call_refund_3", None, False),
        (9, "assistant", "assistant", None, None, None, False),
    ]
    # history repeated in later generation inputs is not repeated; the new agent's prompt is
    assert [s["content_text"] for s in steps if s["step_type"] == "system"] == [
        SYS_TRIAGE,
        SYS_REFUND,
    ]
    assert steps[3]["tool_result_text"] == '{"status": "delivered", "total": 42.0}'
    assert steps[8]["tool_result_text"] == "Refund issued: R-77"
    assert steps[5]["content_text"] == "handoff from Triage Agent to Refund Agent"
    tokens = [(s["input_tokens"], s["output_tokens"]) for s in steps if s["input_tokens"]]
    assert tokens == [(120, 18), (160, 12), (210, 25), (250, 20)]
    assert {
        s["model"] for s in steps if s["role"] == "assistant" and s["step_type"] != "handoff"
    } == {"gpt-4o-mini"}
    # ordered by start time, not by the export order (children end before their agent)
    stamps = [s["started_at"] for s in steps]
    assert stamps == sorted(stamps)
    assert str(steps[0]["started_at"]) == "2025-06-03 10:00:01.100000+00:00"


def test_actor_is_the_enclosing_agent_in_a_multi_agent_trace(traces: Traces) -> None:
    # each step names the agent span above it (the handoff belongs to the agent handing off);
    # user messages have no actor
    triage, refund = "Triage Agent", "Refund Agent"
    assert [s["actor"] for s in steps_of(traces, T1)] == [
        triage,
        None,
        triage,
        triage,
        triage,
        triage,
        refund,
        refund,
        refund,
        refund,
    ]
    # single-agent traces leave it empty
    assert {s["actor"] for trace in (T2, T3) for s in steps_of(traces, trace)} == {None}


def test_handoff_trace_row_and_outcome(traces: Traces) -> None:
    row = trajectories_by_id(traces)[T1]
    assert row["source_format"] == "openai-agents"
    assert row["agent_name"] == "Triage Agent"
    assert row["model"] == "gpt-4o-mini"
    assert row["session_id"] == "conv_42"
    assert row["dataset"] == "Customer service"
    assert row["task_id"] == "refund-17"
    assert row["user_id"] == "u_981"
    assert row["system_prompt"] == SYS_TRIAGE
    assert row["task_input"] == "I want a refund for order 1234, it arrived broken."
    assert row["final_output"].startswith("Your refund of $42.00")
    assert (row["n_steps"], row["n_tool_calls"], row["n_tool_errors"]) == (10, 3, 0)
    assert (row["input_tokens"], row["output_tokens"]) == (740, 75)
    assert (row["outcome_label"], row["outcome_score"], row["outcome_source"]) == (
        "success",
        1.0,
        "feedback:outcome",
    )
    assert row["termination_reason"] is None
    metadata = json.loads(row["metadata"])
    assert metadata["agents"] == ["Triage Agent", "Refund Agent"]
    assert metadata["workflow_name"] == "Customer service"
    assert str(row["started_at"]) == "2025-06-03 10:00:01+00:00"
    assert str(row["ended_at"]) == "2025-06-03 10:00:05.600000+00:00"


def test_tool_error_trace(traces: Traces) -> None:
    steps = steps_of(traces, T2)
    span_id = "span_f2000000000000000000000001"
    assert briefs(steps, TOOL_BRIEF) == [
        (0, "assistant", "tool_call", "lookup_order", span_id, '{"order_id":"9999"}', False),
        (1, "tool", "tool_result", "lookup_order", span_id, None, True),
    ]
    assert steps[1]["error_message"] == "Error running tool (non-fatal): order 9999 not found"
    assert steps[1]["tool_result_text"].startswith("An error occurred while running the tool")
    row = trajectories_by_id(traces)[T2]
    assert (row["n_tool_calls"], row["n_tool_errors"]) == (1, 1)
    # response spans carry no messages, only usage
    assert (row["input_tokens"], row["output_tokens"]) == (240, 45)
    assert row["termination_reason"] == "Max turns exceeded"
    assert (row["outcome_label"], row["outcome_score"], row["outcome_source"]) == (
        "failure",
        0.0,
        "feedback:reward",
    )
    errors = json.loads(row["metadata"])["span_errors"]
    assert [e["type"] for e in errors] == ["agent", "function"]


def test_triggered_guardrail_trace(traces: Traces) -> None:
    steps = steps_of(traces, T3)
    assert [(s["step_type"], s["is_error"]) for s in steps] == [
        ("system", False),
        ("user", False),
        ("guardrail", True),
    ]
    assert steps[2]["tool_name"] == "homework_check"
    assert steps[2]["error_message"] == "guardrail tripwire triggered: homework_check"
    row = trajectories_by_id(traces)[T3]
    assert row["outcome_label"] == "unknown"
    assert row["outcome_source"] is None
    assert row["n_tool_errors"] == 0
    assert row["termination_reason"] == "Guardrail tripwire triggered"
    assert row["session_id"] is None


def test_feedback_rows_from_trace_metadata(traces: Traces) -> None:
    rows = sorted(traces.feedback.to_pylist(), key=lambda r: r["trajectory_id"])
    assert rows == [
        {
            "trajectory_id": T2,
            "step_idx": None,
            "name": "reward",
            "value": 0.0,
            "value_text": None,
            "source": "metadata",
            "comment": None,
        },
        {
            "trajectory_id": T1,
            "step_idx": None,
            "name": "outcome",
            "value": None,
            "value_text": "success",
            "source": "metadata",
            "comment": None,
        },
    ]


def test_malformed_items_are_quarantined_and_the_rest_ingested(path: Path) -> None:
    bad_trace = "trace_ffffffffffffffffffffffffffffffff"
    lines = [
        "{not json",
        json.dumps({"object": "trace", "id": bad_trace, "workflow_name": "x", "metadata": {}}),
        json.dumps(
            {
                "object": "trace.span",
                "id": "span_bad",
                "trace_id": bad_trace,
                "parent_id": None,
                "started_at": None,
                "ended_at": None,
                "span_data": "oops",
                "error": None,
            }
        ),
        json.dumps({"object": "response", "id": "resp_1"}),
    ]
    append_lines(path, lines)
    traces = ingest([path])
    assert_accounted(traces, "openai-agents", read=24, quarantined=4)
    assert len(traces.trajectories) == 3
    reasons = {q["where"]: q["reason"] for q in traces.quarantine}
    assert reasons["line 21"].startswith("invalid JSON")
    assert reasons[f"trace {bad_trace} (from line 22)"] == (
        f"span 0 (span_bad) of trace {bad_trace}: 'span_data' is not an object"
    )
    assert reasons["line 24"] == "not a trace or span item (object 'response')"


def test_gzip_compressed(path: Path, traces: Traces) -> None:
    assert_reads_the_same(gzipped(path), traces, "openai-agents", read=20)


@pytest.mark.parametrize("shape", ["array", "batch document", "batch lines"])
def test_array_and_batch_envelopes(path: Path, traces: Traces, shape: str) -> None:
    items = read_json_lines(path)
    target = path.with_name("export.json" if shape != "batch lines" else "export.jsonl")
    if shape == "array":
        target.write_text(json.dumps(items, indent=2), encoding="utf-8")
    elif shape == "batch document":
        target.write_text(json.dumps({"data": items}, indent=2), encoding="utf-8")
    else:
        write_json_lines(target, [{"data": items[:7]}, {"data": items[7:]}])
    path.unlink()
    assert_reads_the_same(target, traces, "openai-agents", read=20)


def test_span_written_on_start_and_on_end_is_kept_once(path: Path, traces: Traces) -> None:
    items = read_json_lines(path)
    started = dict(items[3], ended_at=None)  # the lookup_order span as on_span_start saw it
    started["span_data"] = dict(started["span_data"], output=None)
    items.insert(1, started)
    again = ingest([write_json_lines(path, items)])
    assert_accounted(again, "openai-agents", read=21)
    assert again.steps.to_pylist() == traces.steps.to_pylist()


def test_response_spans_with_private_input_and_response(tmp_path: Path) -> None:
    trace_id = "trace_1234567890abcdef1234567890abcdef"
    response = {
        "id": "resp_1",
        "object": "response",
        "model": "gpt-4.1",
        "output": [
            {
                "type": "function_call",
                "call_id": "call_9",
                "name": "search_docs",
                "arguments": '{"q": "refund policy"}',
            }
        ],
        "usage": {"input_tokens": 30, "output_tokens": 9},
    }

    def span(span_id: str, start: str, data: dict) -> dict:
        return {
            "object": "trace.span",
            "id": span_id,
            "trace_id": trace_id,
            "parent_id": None,
            "started_at": f"2025-06-03T11:00:0{start}+00:00",
            "ended_at": f"2025-06-03T11:00:0{start}.5+00:00",
            "span_data": data,
            "error": None,
        }

    question = "What is the refund policy?"
    model_call = {"type": "response", "response_id": "resp_1", "_input": question}
    tool = {"type": "function", "name": "search_docs", "input": '{"q": "x"}', "output": "30 days"}
    items = [span("span_1", "1", model_call | {"_response": response}), span("span_2", "2", tool)]
    traces = ingest([write_json_lines(tmp_path / "spans.jsonl", items)])
    steps = steps_of(traces, trace_id)
    assert [(s["step_type"], s["tool_call_id"], s["tool_args"]) for s in steps] == [
        ("user", None, None),
        ("tool_call", "call_9", '{"q":"refund policy"}'),
        ("tool_result", "call_9", None),
    ]
    assert (steps[1]["model"], steps[1]["input_tokens"], steps[1]["output_tokens"]) == (
        "gpt-4.1",
        30,
        9,
    )
    row = trajectories_by_id(traces)[trace_id]
    assert (row["task_input"], row["model"], row["input_tokens"]) == (
        "What is the refund policy?",
        "gpt-4.1",
        30,
    )
    assert_accounted(traces, "openai-agents", read=2)


def test_other_formats_are_not_claimed(tmp_path: Path) -> None:
    responses = fixture_file("openai_responses_conversations.jsonl", tmp_path)
    assert sniff_format(responses) == "openai-responses"
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"}]}) + "\n")
    assert sniff_format(chat) == "chat-jsonl"

"""OpenAI Responses API conversations (``pipeline.ingest.formats.openai_responses``).

Fixture ``openai_responses_conversations.jsonl``, 4 lines:

1. ``conv_weather_001``: a conversation log whose input holds a function call and its output, with
   the final ``response``; ``outcome: success``.
2. ``conv_booking_002``: a conversation log with ``output`` items (reasoning, a function call, its
   ``Error: ...`` output, an answer); ``reward: 0``.
3. ``resp_68a2b7d4``: a Response object with a web search; ``metadata.success: "true"``.
4. ``resp_68a3c111``: a failed Response with no output and no outcome.
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
    fixture_pair,
    gzipped,
    read_json_lines,
    steps_of,
    trajectories_by_id,
    write_json_lines,
)

from pipeline.errors import UnknownFormatError
from pipeline.ingest import Traces, ingest, sniff_format
from pipeline.ingest.formats import openai_responses

NAME = "openai_responses_conversations.jsonl"
IDS = ["conv_weather_001", "conv_booking_002", "resp_68a2b7d4", "resp_68a3c111"]

path, traces = fixture_pair(NAME)


def test_fixture_header_names_the_spec() -> None:
    assert_header_cites(
        NAME, "https://platform.openai.com/docs/api-reference/responses", "openai-python v3.54.0"
    )


def test_sniffed_and_every_line_accounted_for(path: Path, traces: Traces) -> None:
    assert sniff_format(path) == "openai-responses"
    assert_accounted(traces, "openai-responses", read=4)
    assert traces.trajectories.column("trajectory_id").to_pylist() == IDS


def test_conversation_with_response(traces: Traces) -> None:
    steps = steps_of(traces, "conv_weather_001")
    assert [
        (s["role"], s["step_type"], s["tool_name"], s["tool_call_id"], s["tool_args"])
        for s in steps
    ] == [
        ("system", "system", None, None, None),
        ("user", "user", None, None, None),
        ("assistant", "tool_call", "get_weather", "call_w1", '{"city":"Paris","unit":"c"}'),
        ("tool", "tool_result", "get_weather", "call_w1", None),
        ("assistant", "assistant", None, None, None),
    ]
    assert steps[3]["tool_result_text"] == '{"temp_c": 18, "conditions": "light rain"}'
    assert steps[3]["is_error"] is False
    assert (steps[4]["model"], steps[4]["input_tokens"], steps[4]["output_tokens"]) == (
        "gpt-4.1-mini-2025-04-14",
        312,
        14,
    )
    row = trajectories_by_id(traces)["conv_weather_001"]
    assert row["system_prompt"] == "You are a concise weather assistant. Always call get_weather."
    assert row["task_input"] == "What's the weather in Paris right now? Answer in Celsius."
    assert row["final_output"] == "It is 18 °C with light rain in Paris."
    assert (row["dataset"], row["task_id"], row["user_id"]) == (
        "weather-demo",
        "weather-paris",
        "u_17",
    )
    assert (row["outcome_label"], row["outcome_score"], row["outcome_source"]) == (
        "success",
        1.0,
        "feedback:outcome",
    )
    assert row["termination_reason"] == "completed"
    assert str(row["started_at"]) == "2025-06-03 10:00:00+00:00"
    assert str(row["ended_at"]) == "2025-06-03 10:00:02+00:00"
    metadata = json.loads(row["metadata"])
    assert metadata["response_id"] == "resp_68a1f0c2"
    assert metadata["previous_response_id"] == "resp_68a1e9b0"


def test_tool_error_and_reward_failure(traces: Traces) -> None:
    steps = steps_of(traces, "conv_booking_002")
    assert [(s["step_type"], s["is_error"]) for s in steps] == [
        ("system", False),
        ("user", False),
        ("reasoning", False),
        ("tool_call", False),
        ("tool_result", True),
        ("assistant", False),
    ]
    assert steps[2]["content_text"] == "The user wants seat 12A; call book_seat."
    assert (steps[2]["input_tokens"], steps[2]["output_tokens"]) == (420, 96)
    assert steps[3]["tool_args"] == '{"date":"2025-06-04","flight":"AF123","seat":"12A"}'
    assert (steps[4]["tool_name"], steps[4]["tool_call_id"]) == ("book_seat", "call_b1")
    assert steps[4]["error_message"] == "Error: seat 12A is not available"
    row = trajectories_by_id(traces)["conv_booking_002"]
    assert (row["n_steps"], row["n_tool_calls"], row["n_tool_errors"]) == (6, 1, 1)
    assert (row["model"], row["trial"], row["task_id"]) == ("o4-mini-2025-04-16", 1, "book-12a")
    assert (row["outcome_label"], row["outcome_score"], row["outcome_source"]) == (
        "failure",
        0.0,
        "feedback:reward",
    )


def test_response_objects(traces: Traces) -> None:
    steps = steps_of(traces, "resp_68a2b7d4")
    assert [(s["step_type"], s["tool_name"], s["tool_call_id"]) for s in steps] == [
        ("system", None, None),
        ("tool_call", "web_search", "ws_68a2"),
        ("tool_result", "web_search", "ws_68a2"),
        ("assistant", None, None),
    ]
    assert json.loads(steps[1]["tool_args"])["query"] == "Acme Corp founding year"
    assert steps[2]["tool_result_text"] == "https://example.com/acme-history"
    rows = trajectories_by_id(traces)
    found = rows["resp_68a2b7d4"]
    assert (found["session_id"], found["user_id"], found["input_tokens"]) == (
        "conv_68a2",
        "u_17",
        50,
    )
    assert (found["outcome_label"], found["outcome_source"]) == ("success", "feedback:success")
    failed = rows["resp_68a3c111"]
    assert failed["n_steps"] == 1
    assert failed["outcome_label"] == "unknown"
    assert failed["termination_reason"] == (
        "failed: The server had an error while processing your request."
    )
    assert json.loads(failed["metadata"])["previous_response_id"] == "resp_68a2b7d4"


def test_feedback_rows(traces: Traces) -> None:
    rows = [
        (r["trajectory_id"], r["name"], r["value"], r["value_text"], r["source"])
        for r in traces.feedback.to_pylist()
    ]
    assert rows == [
        ("conv_weather_001", "outcome", None, "success", "record"),
        ("conv_booking_002", "reward", 0.0, None, "record"),
        ("resp_68a2b7d4", "success", None, "true", "metadata"),
    ]


def test_malformed_lines_are_quarantined_and_the_rest_ingested(path: Path) -> None:
    bad = [
        {"input": "hi", "output": []},
        {"id": "c1", "input": ["not an item"], "output": []},
        {"id": "c2", "input": [], "output": [{"type": "function_call", "call_id": "x"}]},
        {"id": "c3", "input": [], "output": [], "reward": "high"},
        {"id": "c4", "input": []},
    ]
    append_lines(path, [json.dumps(r) for r in bad])
    traces = ingest([path])
    assert_accounted(traces, "openai-responses", read=9, quarantined=5)
    assert traces.trajectories.column("trajectory_id").to_pylist() == IDS
    assert {q["where"]: q["reason"] for q in traces.quarantine} == {
        "line 5": "missing 'id' (conversation or response id)",
        "line 6": "input item 0 is not an object",
        "line 7": "output item 0: function_call has no 'name'",
        "line 8": "'reward' is not a number: 'high'",
        "line 9": "no 'output' list (neither in the record nor in its 'response')",
    }


def test_gzip_compressed(path: Path, traces: Traces) -> None:
    assert_reads_the_same(gzipped(path), traces, "openai-responses", read=4)


def test_json_array(path: Path, traces: Traces) -> None:
    records = read_json_lines(path)
    array = path.with_name("responses.json")
    array.write_text(json.dumps(records, indent=2), encoding="utf-8")
    path.unlink()
    assert_reads_the_same(array, traces, "openai-responses", read=4)


def test_tool_output_error_rules(tmp_path: Path) -> None:
    shell_output = {"stdout": "", "stderr": "make: *** [all] Error 2"}
    shell_output["outcome"] = {"type": "exit", "exit_code": 2}

    def call(call_id: str, name: str) -> dict:
        return {"type": "function_call", "call_id": call_id, "name": name, "arguments": "{}"}

    def result(call_id: str, output: object, **extra: str) -> dict:
        return {"type": "function_call_output", "call_id": call_id, "output": output} | extra

    record = {
        "id": "c",
        "input": "Fix the build.",
        "output": [
            {"type": "shell_call", "call_id": "s1", "action": {"commands": ["make"]}},
            {"type": "shell_call_output", "call_id": "s1", "output": [shell_output]},
            call("f1", "run_tests"),
            result("f1", "partial", status="incomplete"),
            call("f2", "lint"),
            result("f2", '{"error": {"message": "no config"}}'),
            call("f3", "lint"),
            result("f3", [{"type": "input_text", "text": "ok"}]),
            {"type": "mcp_call", "id": "m1", "name": "deploy", "server_label": "ops"}
            | {"arguments": "{}", "error": "denied"},
            {"type": "mcp_list_tools", "id": "l1", "server_label": "ops", "tools": []},
        ],
    }
    traces = ingest([write_json_lines(tmp_path / "tools.jsonl", [record])])
    results = [s for s in steps_of(traces, "c") if s["step_type"] == "tool_result"]
    assert [(s["tool_name"], s["is_error"], s["error_message"]) for s in results] == [
        ("shell", True, "exit code 2: make: *** [all] Error 2"),
        ("run_tests", True, "partial"),
        ("lint", True, "no config"),
        ("lint", False, None),
        ("deploy", True, "denied"),
    ]
    assert results[3]["tool_result_text"] == "ok"
    row = trajectories_by_id(traces)["c"]
    assert (row["n_tool_calls"], row["n_tool_errors"], row["outcome_label"]) == (5, 4, "unknown")
    assert json.loads(row["metadata"])["skipped_items"] == {"mcp_list_tools": 1}


def test_sniff_leaves_other_formats_alone(tmp_path: Path) -> None:
    chat = write_json_lines(
        tmp_path / "chat.jsonl",
        [{"id": "a", "messages": [{"role": "user", "content": "hi"}], "input": "hi", "output": []}],
    )
    assert sniff_format(chat) == "chat-jsonl"
    span = {"object": "trace.span", "id": "span_1", "trace_id": "trace_1", "span_data": {}}
    assert sniff_format(write_json_lines(tmp_path / "spans.jsonl", [span])) == "openai-agents"
    plain = write_json_lines(
        tmp_path / "plain.jsonl", [{"id": "a", "input": "hi", "output": "hello"}]
    )
    with pytest.raises(UnknownFormatError):
        sniff_format(plain)
    observation = {
        "id": "o1",
        "traceId": "t1",
        "type": "GENERATION",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "output": [{"type": "message", "role": "assistant", "content": []}],
    }
    assert not _claims(tmp_path, observation)
    langfuse_trace = {
        "id": "t1",
        "timestamp": "2025-06-03T10:00:00Z",
        "input": observation["input"],
        "output": observation["output"],
        "htmlPath": "/project/p/traces/t1",
        "observations": [],
    }
    assert not _claims(tmp_path, langfuse_trace)
    assert _claims(tmp_path, {k: langfuse_trace[k] for k in ("id", "input", "output")})


def _claims(tmp_path: Path, record: dict) -> bool:
    path = write_json_lines(tmp_path / "x.jsonl", [record])
    return openai_responses.sniff(path, path.read_bytes())

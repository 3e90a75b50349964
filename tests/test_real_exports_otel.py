"""Span JSON as OpenTelemetry SDK exporters write it, and OpenAI Agents SDK traces as its
processors and exporter write them, read without ``--format``.

The fixtures (tests/fixtures/real_exports/, sources and versions in its README.md) are real
output: ``make_otel_sdk_spans.py`` writes the ``otel-sdk-*`` files through opentelemetry-sdk's
``ConsoleSpanExporter``, ``make_openai_agents_trace.py`` the ``openai-agents-*`` files through
openai-agents' tracing, and the ``any-agent-*`` files are mozilla-ai/any-agent's own test
assets. Every span or item read is ingested or quarantined with a reason; tool calls carry the
tools' real names. One test regenerates the OpenTelemetry output with the real SDK (from
``.venv/phoenix``, where ``make test`` installs it) and checks it reads the same.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import Traces, ingest, sniff_format

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "fixtures" / "real_exports"
GENAI = REAL / "otel-sdk-console-genai.json"
OPENINFERENCE = REAL / "otel-sdk-console-openinference.jsonl"
AGNO = REAL / "any-agent-agno-trace.json"
LANGCHAIN = REAL / "any-agent-langchain-trace.json"
AGENTS_PROCESSOR = REAL / "openai-agents-processor.jsonl"
AGENTS_BACKEND = REAL / "openai-agents-backend-export.jsonl"
SDK_PYTHON = (
    Path(os.environ.get("COACH_PHOENIX_VENV", ROOT / ".venv" / "phoenix")) / "bin" / "python"
)

LISBON = "5a9d9952bd062cabeba29b3c0b0733d9"
OSLO = "aa1fd96a48d76203270200922d4b2ffe"


def _read(path: Path, records: int) -> Traces:
    """Ingest ``path`` sniffed: ``records`` source records read, all ingested."""
    traces = ingest([path])
    (report,) = traces.files
    assert report.quarantined == 0, traces.quarantine
    assert report.records_read == records
    assert report.ingested + report.deduplicated == records
    return traces


def _steps(traces: Traces) -> list[dict[str, Any]]:
    return sorted(traces.steps.to_pylist(), key=lambda s: (s["trajectory_id"], s["step_idx"]))


def _calls(traces: Traces) -> list[tuple[str | None, str | None]]:
    return [
        (s["tool_name"], s["tool_call_id"]) for s in _steps(traces) if s["step_type"] == "tool_call"
    ]


def _trajectories(traces: Traces) -> dict[str, dict[str, Any]]:
    return {t["trajectory_id"]: t for t in traces.trajectories.to_pylist()}


def _objects(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of ConsoleSpanExporter output (indented objects one after another)."""
    decoder, text, pos, out = json.JSONDecoder(), path.read_text(encoding="utf-8"), 0, []
    while pos < len(text.rstrip()):
        value, pos = decoder.raw_decode(text, pos)
        out.append(value)
        pos = len(text) - len(text[pos:].lstrip())
    return out


# --- opentelemetry-sdk ConsoleSpanExporter ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "format_name"),
    [(GENAI, "otel"), (OPENINFERENCE, "openinference"), (AGNO, "otel"), (LANGCHAIN, "otel")],
)
def test_sdk_span_json_is_sniffed(path: Path, format_name: str) -> None:
    assert sniff_format(path) == format_name


def test_console_exporter_genai_spans() -> None:
    spans = _objects(GENAI)
    assert len(spans) == 8 and spans[0]["context"]["trace_id"] == f"0x{LISBON}"
    traces = _read(GENAI, records=8)
    runs = _trajectories(traces)
    assert set(runs) == {LISBON, OSLO}  # the ids OTLP would carry: hex without "0x"
    assert [s["step_type"] for s in _steps(traces) if s["trajectory_id"] == LISBON] == [
        "system",
        "user",
        "tool_call",
        "tool_result",
        "assistant",
    ]
    assert _calls(traces) == [("get_weather", "call_weather_1"), ("get_weather", "call_weather_2")]
    results = {s["trajectory_id"]: s for s in _steps(traces) if s["step_type"] == "tool_result"}
    assert results[LISBON]["tool_result_text"] == "Sunny, 21 C in Lisbon"
    assert not results[LISBON]["is_error"]
    assert results[OSLO]["is_error"]  # span status ERROR, from the SDK's exception handling
    assert results[OSLO]["error_message"] == "ConnectionError: weather service unavailable"
    lisbon, oslo = runs[LISBON], runs[OSLO]
    assert (lisbon["outcome_label"], oslo["outcome_label"]) == ("success", "failure")
    assert lisbon["outcome_source"] == "feedback:task_success"
    assert (lisbon["n_tool_errors"], oslo["n_tool_errors"]) == (0, 1)
    assert lisbon["agent_name"] == "weather-agent"
    assert lisbon["model"] == "gpt-4o-mini-2024-07-18"
    assert lisbon["session_id"] == "conversation-1"
    assert lisbon["system_prompt"] == "You are a weather assistant. Use the tools."
    assert lisbon["final_output"] == "It is sunny and 21 C in Lisbon."
    assert (lisbon["input_tokens"], lisbon["output_tokens"]) == (52 + 81, 17 + 14)
    assert json.loads(lisbon["metadata"])["resource"] == {"service.name": "weather-agent"}


def test_console_exporter_openinference_lines() -> None:
    traces = _read(OPENINFERENCE, records=4)
    ((trace_id, run),) = _trajectories(traces).items()
    assert not trace_id.startswith("0x")
    assert _calls(traces) == [("lookup_order", "call_order_1")]
    assert [s["step_type"] for s in _steps(traces)] == [
        "system",
        "user",
        "tool_call",
        "tool_result",
        "assistant",
    ]
    assert (run["outcome_label"], run["outcome_source"]) == ("success", "feedback:resolved")
    assert run["agent_name"] == "support"
    assert run["final_output"] == "Your order 1234 has shipped."


@pytest.mark.parametrize("layout", ["array", "lines", "gzip"])
def test_the_same_spans_as_an_array_json_lines_or_gzip(tmp_path: Path, layout: str) -> None:
    spans = _objects(GENAI)
    path = (
        tmp_path / {"array": "spans.json", "lines": "spans.jsonl", "gzip": "spans.json.gz"}[layout]
    )
    if layout == "array":
        path.write_text(json.dumps(spans, indent=2), encoding="utf-8")
    elif layout == "lines":
        path.write_text("".join(json.dumps(s) + "\n" for s in spans), encoding="utf-8")
    else:
        path.write_bytes(gzip.compress(GENAI.read_bytes()))
    assert sniff_format(path) == "otel"
    assert _steps(_read(path, records=8)) == _steps(_read(GENAI, records=8))


def test_a_damaged_span_quarantines_its_trace_and_the_rest_is_read(tmp_path: Path) -> None:
    text = GENAI.read_text(encoding="utf-8")
    objects = text.split("\n{")
    oslo = next(n for n, o in enumerate(objects) if OSLO in o)
    objects[oslo] = objects[oslo].replace('"kind": ', '"kind" ', 1)  # not JSON any more
    damaged = tmp_path / "spans.json"
    damaged.write_text("\n{".join(objects), encoding="utf-8")
    traces = ingest([damaged])
    (report,) = traces.files
    assert report.records_read == 8
    assert report.ingested == 4 and report.quarantined == 4  # the whole Oslo trace
    assert set(_trajectories(traces)) == {LISBON}
    assert all(q["reason"] for q in traces.quarantine)
    assert any(q["reason"].startswith("invalid JSON") for q in traces.quarantine)
    assert any(OSLO in q["reason"] or OSLO in q["where"] for q in traces.quarantine)


def test_a_file_cut_inside_its_last_span(tmp_path: Path) -> None:
    text = GENAI.read_text(encoding="utf-8")
    cut = tmp_path / "spans.json"
    cut.write_text(text[: text.rindex('"attributes"')], encoding="utf-8")
    traces = ingest([cut])
    (report,) = traces.files
    assert (report.records_read, report.ingested, report.quarantined) == (8, 4, 4)
    last = traces.quarantine[0]
    assert last["where"] == f"line {text[: text.rindex(chr(10) + '{')].count(chr(10)) + 2}"
    assert last["reason"].endswith("(the file ends inside it: cut off?)")
    assert set(_trajectories(traces)) == {LISBON}  # the last span is Oslo's root


def test_regenerated_with_the_real_sdk_reads_the_same(tmp_path: Path) -> None:
    if not SDK_PYTHON.exists():
        pytest.skip(f"opentelemetry-sdk is not installed in {SDK_PYTHON.parent.parent}")
    script = REAL / "make_otel_sdk_spans.py"
    subprocess.run([str(SDK_PYTHON), str(script), str(tmp_path)], check=True, capture_output=True)
    for committed in (GENAI, OPENINFERENCE):
        fresh = tmp_path / committed.name
        assert sniff_format(fresh) == sniff_format(committed)
        again, before = _read(fresh, records=len(_objects(committed))), ingest([committed])
        assert _steps(again) == _steps(before)
        assert again.feedback.to_pylist() == before.feedback.to_pylist()
        runs = [_trajectories(again), _trajectories(before)]
        for table in runs:
            for run in table.values():
                del run["source_uri"], run["record_sha256"]
        assert runs[0] == runs[1]


# --- mozilla-ai/any-agent AgentTrace ------------------------------------------------------------


def test_any_agent_trace_with_call_ids_on_the_tool_spans() -> None:
    traces = _read(AGNO, records=6)
    ((trace_id, run),) = _trajectories(traces).items()
    assert trace_id == f"{json.loads(AGNO.read_text())['spans'][0]['context']['trace_id']:032x}"
    # the LLM's output names the calls without ids; the tool spans carry them
    assert _calls(traces) == [("get_current_time", "LlAGPjfO0"), ("write_file", "wzCUjvRq4")]
    results = [s for s in _steps(traces) if s["step_type"] == "tool_result"]
    assert [(s["tool_name"], s["tool_call_id"]) for s in results] == _calls(traces)
    assert json.loads(results[0]["tool_result_text"])["timezone"] == "America/New_York"
    assert run["agent_name"] == "any_agent"
    assert run["model"] == "mistral/mistral-small-latest"
    assert run["task_input"].startswith("Find what year it is in the America/New_York timezone")
    assert json.loads(run["final_output"])["steps"][1]["description"] == "Write the year to a file"
    assert run["cost_usd"] == pytest.approx(0.0001618, rel=1e-3)
    assert run["outcome_label"] == "unknown"  # any-agent records no score


def test_any_agent_trace_with_text_output() -> None:
    traces = _read(LANGCHAIN, records=7)
    assert _calls(traces) == [("get_current_time", None), ("write_file", None)]
    results = [
        (s["tool_name"], s["tool_result_text"])
        for s in _steps(traces)
        if s["step_type"] == "tool_result"
    ]
    assert results[1] == ("write_file", "null")
    answers = [s["content_text"] for s in _steps(traces) if s["step_type"] == "assistant"]
    assert answers[0].startswith("Here are the steps I have taken:")


# --- openai-agents tracing ----------------------------------------------------------------------


@pytest.mark.parametrize("path", [AGENTS_PROCESSOR, AGENTS_BACKEND])
def test_openai_agents_sdk_output_is_sniffed(path: Path) -> None:
    assert sniff_format(path) == "openai-agents"


def test_openai_agents_processor_lines() -> None:
    traces = _read(AGENTS_PROCESSOR, records=16)  # 2 traces of 1 trace item and 7 spans
    runs = _trajectories(traces)
    lisbon, atlantis = runs["trace_" + "1" * 32], runs["trace_" + "2" * 32]
    assert _calls(traces) == [("get_weather", "call_weather_1")] * 2
    assert [
        s["step_type"] for s in _steps(traces) if s["trajectory_id"] == lisbon["trajectory_id"]
    ] == [
        "system",
        "user",
        "tool_call",
        "tool_result",
        "assistant",
    ]
    failed = next(
        s
        for s in _steps(traces)
        if s["trajectory_id"] == atlantis["trajectory_id"] and s["step_type"] == "tool_result"
    )
    assert failed["is_error"] and failed["error_message"].startswith(
        "Error running tool (non-fatal)"
    )
    assert (lisbon["outcome_label"], atlantis["outcome_label"]) == ("success", "failure")
    assert lisbon["task_id"] == "weather-lisbon" and lisbon["session_id"] == "weather-session"
    assert lisbon["agent_name"] == "Weather agent" and lisbon["dataset"] == "weather workflow"
    assert lisbon["final_output"] == "Here is the weather: Sunny, 21 C in Lisbon"
    assert (lisbon["n_tool_errors"], atlantis["n_tool_errors"]) == (0, 1)


def test_openai_agents_backend_exporter_payload() -> None:
    bodies = [json.loads(line) for line in AGENTS_BACKEND.read_text().splitlines()]
    items = sum(len(body["data"]) for body in bodies)
    traces = _read(AGENTS_BACKEND, records=items)
    ((trace_id, run),) = _trajectories(traces).items()
    assert trace_id == "trace_" + "3" * 32
    assert _calls(traces) == [("get_weather", "call_weather_1")]
    assert run["task_input"] == "What is the weather in Porto?"
    assert run["outcome_label"] == "unknown"  # no outcome in its trace metadata

"""Real exports (tests/fixtures/real_exports/, sources in its README.md) are sniffed and read
without ``--format``: every record ingested, with their tool calls under the tools' real names,
and their scores as feedback. A file that gives nothing makes ``coach ingest`` exit 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.ingest import Traces, ingest, sniff_format

REAL = Path(__file__).resolve().parent / "fixtures" / "real_exports"


def _read(path: Path) -> Traces:
    traces = ingest([path])
    (report,) = traces.files
    assert report.quarantined == 0, traces.quarantine
    assert report.records_read == report.ingested + report.deduplicated
    return traces


def _steps(traces: Traces) -> list[dict[str, Any]]:
    return sorted(traces.steps.to_pylist(), key=lambda s: (s["trajectory_id"], s["step_idx"]))


def _calls(traces: Traces) -> list[tuple[str | None, str | None]]:
    return [
        (s["tool_name"], s["tool_call_id"]) for s in _steps(traces) if s["step_type"] == "tool_call"
    ]


def _results(traces: Traces) -> list[tuple[str | None, str | None]]:
    return [
        (s["tool_name"], s["tool_result_text"])
        for s in _steps(traces)
        if s["step_type"] == "tool_result"
    ]


def _feedback(traces: Traces) -> dict[str, float]:
    return {r["name"]: r["value"] for r in traces.feedback.to_pylist()}


# --- Langfuse per-trace exports {"trace", "observations"} ---------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "langfuse-openai-agents-2025-09-30.json",
        "langfuse-pydantic-ai-tools-2025-12-04.json",
        "langfuse-langgraph-2025-08-22.json",
        "langfuse-microsoft-agent-2025-10-14.json",
    ],
)
def test_langfuse_exports_are_sniffed(name: str) -> None:
    assert sniff_format(REAL / name) == "langfuse"


def test_openai_agents_sdk_trace_via_langfuse() -> None:
    traces = _read(REAL / "langfuse-openai-agents-2025-09-30.json")
    (trajectory,) = traces.trajectories.to_pylist()
    assert trajectory["trajectory_id"] == "fee618f96dc31e0ca38b2f7b26eb8b29"
    assert trajectory["n_tool_calls"] == 1
    assert trajectory["model"] == "gpt-4.1-2025-04-14"
    assert trajectory["system_prompt"] == "You are a helpful agent."
    assert [s["step_type"] for s in _steps(traces)] == [
        "system",
        "user",
        "tool_call",
        "tool_result",
        "assistant",
    ]
    assert _calls(traces) == [("get_weather", "call_Kud0j0DxWSmLzv9W5m6qVqXn")]
    assert _results(traces) == [("get_weather", "The weather in Tokyo is sunny.")]
    assert _feedback(traces) == {"toxicity": 0.8, "hallucination": 0.0}
    assert trajectory["outcome_label"] == "unknown"  # neither score names an outcome


def test_pydantic_ai_tools_get_their_real_names() -> None:
    traces = _read(REAL / "langfuse-pydantic-ai-tools-2025-12-04.json")
    (trajectory,) = traces.trajectories.to_pylist()
    assert trajectory["n_tool_calls"] == 4
    assert _calls(traces) == [
        ("get_pun_suggestion", "call_X0OSgjUukT5inyEQvuZQnHrk"),
        ("get_dad_joke_suggestion", "call_WxZcCvSDhGT4RJHlcU01k10x"),
        ("get_one_liner_suggestion", "call_aRaObiWKKt6GzgDkkUl3bu1Q"),
        ("final_result", "call_ZuzwalMMtvv9BC6xlVe3fiBP"),  # pydantic-ai's output tool
    ]
    names = {s["tool_name"] for s in _steps(traces) if s["tool_name"]}
    assert not any(n.startswith("running tool") for n in names)
    results = dict(_results(traces))
    assert results["get_pun_suggestion"].startswith("Pun idea: Play on words")
    assert len(results) == 3
    texts = [s["content_text"] for s in _steps(traces) if s["step_type"] == "assistant"]
    assert "Why do programmers hate nature?  \nIt has too many bugs!" in texts


def test_langgraph_tool_span_and_tool_definitions() -> None:
    traces = _read(REAL / "langfuse-langgraph-2025-08-22.json")
    steps = _steps(traces)
    assert [s["step_type"] for s in steps] == [
        "user",
        "user",
        "tool_call",
        "tool_result",
        "assistant",
    ]  # the tool definitions the callback handler sends as "tool" messages are no steps
    assert _calls(traces) == [("Web-Search", "call_1oGK863sxQHlPreFhDdEs3yl")]
    ((name, result),) = _results(traces)
    assert name == "Web-Search"
    assert json.loads(result or "") == [
        {"url": "https://example.com", "title": "Example Result", "q": "example"}
    ]
    assert _feedback(traces) == {"hallucination": 0.1, "toxicity": 0.0}


def test_microsoft_agent_framework_call_ids_and_tool_name() -> None:
    traces = _read(REAL / "langfuse-microsoft-agent-2025-10-14.json")
    assert [s["step_type"] for s in _steps(traces)] == [
        "user",
        "tool_call",
        "tool_result",
        "assistant",
    ]
    assert _calls(traces) == [("get_weather", "call_Sz1QP8T7fuJkIECGDLFWOorq")]
    assert _results(traces) == [
        ("get_weather", "The weather in Portland is stormy with a high of 19°C.")
    ]


@pytest.mark.parametrize("container", ["array", "lines"])
def test_a_list_of_langfuse_exports(tmp_path: Path, container: str) -> None:
    exports = [
        json.loads((REAL / name).read_text(encoding="utf-8"))
        for name in (
            "langfuse-openai-agents-2025-09-30.json",
            "langfuse-microsoft-agent-2025-10-14.json",
        )
    ]
    path = tmp_path / ("exports.json" if container == "array" else "exports.jsonl")
    if container == "array":
        path.write_text(json.dumps(exports, indent=2), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(e) + "\n" for e in exports), encoding="utf-8")
    traces = _read(path)
    assert traces.files[0].format == "langfuse"
    assert traces.files[0].records_read == 2
    assert sorted(traces.trajectories.column("n_tool_calls").to_pylist()) == [1, 1]
    assert sorted(n for n, _ in _calls(traces)) == ["get_weather", "get_weather"]


# --- LangSmith SDK batch payloads {"post", "patch"} ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "trace_id"),
    [
        ("langsmith-batch-py-wrap-openai.json", "d0d84d31-923d-4cb5-94a8-40a0a0087578"),
        ("langsmith-batch-js-wrap-openai.json", "dc34609e-3eeb-459d-bc2a-6fedb01d2e6e"),
    ],
)
def test_langsmith_batch_payloads(name: str, trace_id: str) -> None:
    assert sniff_format(REAL / name) == "langsmith"
    traces = _read(REAL / name)
    (trajectory,) = traces.trajectories.to_pylist()
    assert trajectory["trajectory_id"] == trace_id
    assert trajectory["model"] == "gpt-4o-mini"
    assert trajectory["n_tool_calls"] == 0
    steps = _steps(traces)
    assert [(s["step_type"], s["content_text"]) for s in steps] == [
        ("user", "howdy"),
        ("assistant", "Howdy! How can I assist you today?"),
    ]
    assert steps[1]["ended_at"] is not None  # from the patch


def test_a_patch_without_its_post_is_quarantined(tmp_path: Path) -> None:
    batch = json.loads((REAL / "langsmith-batch-py-wrap-openai.json").read_text(encoding="utf-8"))
    path = tmp_path / "patch-only.json"
    path.write_text(json.dumps({"patch": batch["patch"]}), encoding="utf-8")
    traces = ingest([path], format="langsmith")
    (report,) = traces.files
    assert (report.records_read, report.ingested, report.quarantined) == (1, 0, 1)
    (row,) = traces.quarantine
    assert row["where"] == "document patch[0]"
    assert "not posted in this file" in row["reason"]


# --- a file that gives nothing ------------------------------------------------------------------


def test_cli_exits_1_when_a_file_is_wholly_quarantined(tmp_path: Path) -> None:
    export = REAL / "langfuse-openai-agents-2025-09-30.json"
    args = ["ingest", str(export), "--format", "langsmith", "--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "nothing ingested, all 1 record quarantined" in result.output
    assert "not a LangSmith run or feedback (keys: observations, trace)" in result.output
    assert "formats tried: langsmith (--format)" in result.output
    assert "sniffing recognises it as langfuse: run without --format" in result.output


def test_cli_exits_1_for_a_file_of_no_known_format(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"spans_of": "nothing coach knows"}\n', encoding="utf-8")
    good = tmp_path / "good.json"
    good.write_bytes((REAL / "langfuse-microsoft-agent-2025-10-14.json").read_bytes())
    args = ["ingest", str(unknown), str(good), "--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert f"{unknown}: nothing ingested" in result.output
    assert "unknown trace format" in result.output
    assert "none recognises it" in result.output
    assert f"{good}: nothing ingested" not in result.output
    assert Traces.load(tmp_path / "d" / "tables").trajectories.num_rows == 1  # the rest is kept


def test_cli_reads_a_real_export_without_format(tmp_path: Path) -> None:
    export = REAL / "langfuse-pydantic-ai-tools-2025-12-04.json"
    args = ["ingest", str(export), "--data-dir", str(tmp_path / "d"), "--json", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)["files"]
    assert (report["format"], report["records_read"], report["ingested"]) == ("langfuse", 1, 1)

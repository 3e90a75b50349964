"""The ``prompt_version`` column of ``trajectories``: read from every format that records it
(chat JSONL, OpenInference OTLP and Phoenix exports, Langfuse, LangSmith, OTel GenAI, canonical
Parquet), null elsewhere; unusable values (objects, lists, booleans) left null with one warning
per file; stores written before the column existed load with nulls and keep recognising their
runs (the column is not part of ``record_sha256``).

The fixtures are small records written into ``tmp_path``, shaped like those of
``tests/fixtures/formats/``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fixture_files import fixture_file, write_json_lines

from pipeline.ingest import TRAJECTORIES, Traces, ingest, record_sha256
from pipeline.ingest.formats import ReadOptions, chat_jsonl


def _versions(traces: Traces) -> dict[str, Any]:
    rows = traces.trajectories.select(["trajectory_id", "prompt_version"]).to_pylist()
    return {r["trajectory_id"]: r["prompt_version"] for r in rows}


def _warnings(traces: Traces) -> list[str]:
    return [w for w in traces.warnings if "prompt version" in w]


# --- chat JSONL ---------------------------------------------------------------------------------


def _chat(run_id: str, **metadata: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]
    return {"id": run_id, "messages": messages, "outcome": "success", "metadata": metadata}


CHAT = [
    _chat("text", prompt_version="v3"),
    _chat("int", prompt_version=7),
    _chat("padded", prompt_version="  v4 \n"),
    _chat("empty", prompt_version=""),
    _chat("none"),
    _chat("object", prompt_version={"v": 1}),
    _chat("flag", prompt_version=True),
]


def test_chat_jsonl_reads_metadata_prompt_version(tmp_path: Path) -> None:
    path = write_json_lines(tmp_path / "chat.jsonl", CHAT)
    traces = ingest([path])
    assert _versions(traces) == {
        "text": "v3",
        "int": "7",
        "padded": "v4",
        "empty": None,
        "none": None,
        "object": None,
        "flag": None,
    }
    assert traces.counts["ingested"] == len(CHAT)  # unusable values quarantine nothing
    (warning,) = _warnings(traces)
    assert warning.startswith(f"{path}: 2 runs recorded a prompt version that is neither")


def _records(path: Path) -> list[Any]:
    """The records of the Chat JSONL file ``path`` built one by one (as from a JSON array: a
    JSON Lines file is read column-wise, its records hashed by their lines)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    array = path.with_suffix(".json")
    array.write_text(json.dumps([json.loads(line) for line in lines]), encoding="utf-8")
    return list(chat_jsonl.read(array, ReadOptions(source_uri=str(path))))


def test_the_content_hash_leaves_prompt_version_out(tmp_path: Path) -> None:
    path = write_json_lines(tmp_path / "chat.jsonl", CHAT[:1])
    (record,) = _records(path)
    assert record.trajectory["prompt_version"] == "v3"
    digest = record_sha256(record)
    record.trajectory["prompt_version"] = "v9"
    assert record_sha256(record) == digest
    del record.trajectory["prompt_version"]  # as the adapters before the column built it
    assert record_sha256(record) == digest


# --- span formats -------------------------------------------------------------------------------

T0 = 1717243200 * 10**9


def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _span(trace: int, span: int, parent: int | None, second: int, **attrs: Any) -> dict:
    return {
        "traceId": f"{trace:032x}",
        "spanId": f"{span:016x}",
        "parentSpanId": "" if parent is None else f"{parent:016x}",
        "name": f"span-{span}",
        "kind": 1,
        "startTimeUnixNano": str(T0 + second * 10**9),
        "endTimeUnixNano": str(T0 + second * 10**9 + 5 * 10**8),
        "attributes": [_kv(k, v) for k, v in attrs.items()],
        "status": {"code": 1},
    }


def _request(spans: list[dict], **resource: Any) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_kv(k, v) for k, v in resource.items()]},
                "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
            }
        ]
    }


def _chat_span(trace: int, span: int, parent: int | None, second: int, **attrs: Any) -> dict:
    said = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
    answer = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}])
    chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}
    chat |= {"gen_ai.input.messages": said, "gen_ai.output.messages": answer}
    return _span(trace, span, parent, second, **chat, **attrs)


def test_otel_span_attributes_win_over_resource_attributes(tmp_path: Path) -> None:
    template = "llm.prompt_template.version"
    requests = [
        # 1: the first span in time order (second 1) is later in the file than the other
        _request([_chat_span(1, 2, None, 2, prompt_version="late"), _chat_span(1, 3, None, 1)]),
        _request([_chat_span(1, 4, None, 1, **{template: "early"})]),
        # 2: a span attribute beats the resource's, even on a later span
        _request(
            [_chat_span(2, 5, None, 0), _chat_span(2, 6, 5, 1, **{template: "span-v"})],
            prompt_version="resource-v",
        ),
        # 3: only the resource records it; 4: nothing; 5: an integer; 6: a boolean
        _request([_chat_span(3, 7, None, 0)], **{template: "resource-only"}),
        _request([_chat_span(4, 8, None, 0)], **{"service.name": "desk"}),
        _request([_chat_span(5, 9, None, 0, prompt_version=12)]),
        _request([_chat_span(6, 10, None, 0, prompt_version=True)]),
    ]
    path = write_json_lines(tmp_path / "spans.jsonl", requests)
    traces = ingest([path], format="otel")
    expected = ["early", "span-v", "resource-only", None, "12", None]
    assert _versions(traces) == {f"{n:032x}": v for n, v in enumerate(expected, 1)}
    assert len(_warnings(traces)) == 1


def test_openinference_otlp_reads_llm_prompt_template_version(tmp_path: Path) -> None:
    kind, template = "openinference.span.kind", "llm.prompt_template.version"
    spans = [
        _span(1, 1, None, 0, **{kind: "CHAIN", "input.value": "hi", "output.value": "ok"}),
        _span(1, 2, 1, 1, **{kind: "LLM", template: 12, "llm.model_name": "gpt-4o"}),
        _span(2, 3, None, 0, **{kind: "LLM", "input.value": "hi", "output.value": "ok"}),
        # the resource is not read for OpenInference
    ]
    path = write_json_lines(tmp_path / "oi.jsonl", [_request(spans, **{template: "resource"})])
    traces = ingest([path])
    assert set(traces.trajectories.column("source_format").to_pylist()) == {"openinference"}
    assert _versions(traces) == {f"{1:032x}": "12", f"{2:032x}": None}


def _phoenix(trace: str, span: str, parent: str | None, second: int, kind: str, **attrs: Any):
    return {
        "name": f"{kind.lower()}-{span}",
        "context": {"trace_id": trace, "span_id": span},
        "span_kind": kind,
        "parent_id": parent,
        "start_time": f"2024-06-02T09:00:0{second}+00:00",
        "end_time": f"2024-06-02T09:00:0{second}.5+00:00",
        "status_code": "OK",
        "status_message": "",
        "attributes": {"openinference.span.kind": kind, "input.value": "hi", **attrs},
        "events": [],
    }


def test_phoenix_export_takes_the_first_span_in_time_order(tmp_path: Path) -> None:
    nested = {"llm": {"prompt_template": {"version": " early "}}}
    spans = [
        _phoenix("t1", "a1", None, 0, "AGENT", **{"output.value": "ok"}),
        _phoenix("t1", "a3", "a1", 2, "LLM", **{"llm.prompt_template.version": "late"}),
        _phoenix("t1", "a2", "a1", 1, "LLM", **nested),  # attributes as nested objects
        _phoenix("t2", "b1", None, 0, "LLM", **{"output.value": "ok"}),
    ]
    row = {  # a spans-dataframe row (flattened columns)
        "context.trace_id": "t3",
        "context.span_id": "c1",
        "span_kind": "LLM",
        "start_time": "2024-06-02T09:00:00+00:00",
        "attributes.openinference.span.kind": "LLM",
        "attributes.input.value": "hi",
        "attributes.llm.prompt_template.version": "df-v",
    }
    path = write_json_lines(tmp_path / "phoenix.jsonl", [*spans, row])
    traces = ingest([path])
    assert set(traces.trajectories.column("source_format").to_pylist()) == {"openinference"}
    assert _versions(traces) == {"t1": "early", "t2": None, "t3": "df-v"}


# --- Langfuse and LangSmith ---------------------------------------------------------------------


def _generation(trace: str, obs: str, second: int, **prompt: Any) -> dict[str, Any]:
    when = f"2025-03-04T10:00:0{second}"
    said = {"input": [{"role": "user", "content": "hi"}]}
    answer = {"output": {"role": "assistant", "content": "ok"}, "model": "gpt-4o-mini"}
    times = {"startTime": f"{when}.000Z", "endTime": f"{when}.500Z"}
    return {"id": obs, "traceId": trace, "type": "GENERATION", **times, **said, **answer, **prompt}


def _trace(trace: str, observations: list[dict], **metadata: Any) -> dict[str, Any]:
    when = {"timestamp": "2025-03-04T10:00:00.000Z", "htmlPath": f"/project/p/traces/{trace}"}
    return {"id": trace, **when, "metadata": metadata, "observations": observations}


def test_langfuse_linked_prompt_of_the_first_generation(tmp_path: Path) -> None:
    support = {"promptName": "support", "promptVersion": 3}
    traces_file = [
        # the first generation in start order is later in the file
        _trace(
            "lf-1",
            [
                _generation("lf-1", "o2", 2, **support),
                _generation("lf-1", "o1", 1, promptName="planner", promptVersion=1),
            ],
        ),
        _trace("lf-2", [_generation("lf-2", "o3", 1, **support)], prompt_version="meta-7"),
        _trace("lf-3", [_generation("lf-3", "o4", 1)]),
        _trace("lf-4", [_generation("lf-4", "o5", 1, promptName="support")]),  # no version
        _trace("lf-5", [_generation("lf-5", "o6", 1, promptName="x", promptVersion=[1])]),
    ]
    path = write_json_lines(tmp_path / "langfuse_traces.jsonl", traces_file)
    traces = ingest([path])
    assert set(traces.trajectories.column("source_format").to_pylist()) == {"langfuse"}
    expected = ["langfuse:planner:1", "meta-7", None, None, None]
    assert _versions(traces) == {f"lf-{n}": v for n, v in enumerate(expected, 1)}
    assert len(_warnings(traces)) == 1


def test_langfuse_blob_export_snake_case_prompt_fields(tmp_path: Path) -> None:
    times = {"start_time": "2025-03-05 09:00:01.000000", "end_time": "2025-03-05 09:00:02.000000"}
    said = {"input": json.dumps([{"role": "user", "content": "hi"}])}
    answer = {"output": json.dumps({"role": "assistant", "content": "ok"})}
    prompt = {"prompt_name": "refunds", "prompt_version": 2, "prompt_id": "p-1"}
    rows = [{"id": "obs-1", "trace_id": "tr-1", "type": "GENERATION", **times, **said, **answer}]
    rows[0] |= prompt
    path = write_json_lines(tmp_path / "observations.jsonl", rows)
    assert _versions(ingest([path], format="langfuse")) == {"tr-1": "langfuse:refunds:2"}


def _run(run_id: str, trace: str, parent: str | None, run_type: str, second: int, **extra):
    when = {
        "start_time": f"2025-03-05T09:00:0{second}",
        "end_time": f"2025-03-05T09:00:0{second}.5",
    }
    run = {"id": run_id, "trace_id": trace, "parent_run_id": parent, "run_type": run_type, **when}
    run |= {"extra": {"metadata": extra.pop("metadata", {})}, "name": run_type, **extra}
    run |= {"inputs": {"input": "hi"}, "outputs": {"output": "ok"}}
    if run_type == "llm":
        answer = {"type": "ai", "content": "ok"}
        run["inputs"] = {"messages": [[{"type": "human", "content": "hi"}]]}
        run["outputs"] = {"generations": [[{"text": "ok", "message": answer}]]}
    return run


def test_langsmith_root_run_first_then_the_first_child(tmp_path: Path) -> None:
    runs = [
        _run("r1", "r1", None, "chain", 0, metadata={"prompt_version": "root-v"}),
        _run("r1-llm", "r1", "r1", "llm", 1, metadata={"prompt_version": "child-v"}),
        _run("r2", "r2", None, "chain", 0),
        _run("r2-b", "r2", "r2", "llm", 2, metadata={"prompt_version": "second"}),
        _run("r2-a", "r2", "r2", "llm", 1, metadata={"prompt_version": 4}),
        _run("r3", "r3", None, "chain", 0) | {"metadata": {"prompt_version": "top"}},
        _run("r4", "r4", None, "chain", 0),
        _run("r4-llm", "r4", "r4", "llm", 1),
    ]
    path = write_json_lines(tmp_path / "runs.jsonl", runs)
    traces = ingest([path])
    assert set(traces.trajectories.column("source_format").to_pylist()) == {"langsmith"}
    assert _versions(traces) == {"r1": "root-v", "r2": "4", "r3": "top", "r4": None}


def test_formats_without_a_recorded_version_give_null(tmp_path: Path) -> None:
    names = ["openai_agents_traces.jsonl", "mini_swe_agent_django.traj.json"]
    paths = [fixture_file(name, tmp_path) for name in names]
    traces = ingest(paths)
    assert traces.trajectories.num_rows > 0
    assert traces.trajectories.column("prompt_version").null_count == traces.trajectories.num_rows


# --- canonical Parquet and stores written before the column ------------------------------------


def test_canonical_parquet_with_and_without_the_column(tmp_path: Path) -> None:
    rows = [{"trajectory_id": f"c{i}", "outcome_label": "success", "n_steps": 0} for i in range(3)]
    old_schema = pa.schema([f for f in TRAJECTORIES if f.name != "prompt_version"])
    pq.write_table(pa.Table.from_pylist(rows, schema=old_schema), tmp_path / "old.parquet")
    versions = pa.array([3, None, 12], pa.int64())
    with_ints = pa.Table.from_pylist(
        [r | {"trajectory_id": "i" + r["trajectory_id"]} for r in rows]
    )
    pq.write_table(with_ints.append_column("prompt_version", versions), tmp_path / "ints.parquet")
    text = pa.Table.from_pylist([r | {"trajectory_id": "t" + r["trajectory_id"]} for r in rows])
    column = pa.array([" v1 ", "", None])
    pq.write_table(text.append_column("prompt_version", column), tmp_path / "text.parquet")
    flags = pa.Table.from_pylist([r | {"trajectory_id": "b" + r["trajectory_id"]} for r in rows])
    column = pa.array([True, None, False])
    pq.write_table(flags.append_column("prompt_version", column), tmp_path / "flags.parquet")
    traces = ingest([tmp_path])
    assert traces.trajectories.schema.equals(TRAJECTORIES)
    assert _versions(traces) == {
        **{f"c{i}": None for i in range(3)},
        **{"ic0": "3", "ic1": None, "ic2": "12"},
        **{"tc0": "v1", "tc1": None, "tc2": None},
        **{f"bc{i}": None for i in range(3)},
    }
    (warning,) = _warnings(traces)
    assert warning.startswith(f"{tmp_path / 'flags.parquet'}: 2 runs")


NEW = _chat("new", prompt_version="v5")


def _old_sha256(path: Path) -> dict[str, str]:
    """The ``record_sha256`` of each run of ``path`` as coach computed it before the column."""
    digests = {}
    for record in _records(path):
        row = {
            k: v for k, v in record.trajectory.items() if k not in ("source_uri", "prompt_version")
        }
        payload = json.dumps([row, record.steps, record.feedback], sort_keys=True, default=str)
        digests[row["trajectory_id"]] = hashlib.sha256(payload.encode()).hexdigest()
    return digests


def _old_store(traces: Traces, path: Path) -> Traces:
    """``traces`` as coach stored them before the column: no ``prompt_version``, the content
    hashes of then, and settings without a store version (version 1)."""
    table = traces.trajectories.drop_columns(["prompt_version"])
    old = _old_sha256(path)
    digests = pa.array([old[t] for t in table.column("trajectory_id").to_pylist()])
    index = table.schema.get_field_index("record_sha256")
    settings = {k: v for k, v in traces.settings.items() if k != "store_version"}
    return replace(
        traces,
        trajectories=table.set_column(index, "record_sha256", digests),
        settings=settings,
    )


def test_old_snapshot_store_loads_with_nulls_and_is_read_again(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    path = write_json_lines(tmp_path / "in" / "chat.jsonl", CHAT[:5])
    store = tmp_path / "data" / "tables"
    _old_store(ingest([path]), path).save(store)
    loaded = Traces.load(store)  # the manifest check passes
    assert loaded.trajectories.schema.equals(TRAJECTORIES)
    assert loaded.trajectories.column("prompt_version").null_count == 5
    # its hashes are of store version 1: every input is read again, with the versions
    again = ingest([path], previous=loaded)
    assert again.counts_this_run["records_read"] == 5
    assert again.counts_this_run["deduplicated"] == again.counts_this_run["renamed"] == 0
    assert any("store version 1" in w and "read every input again" in w for w in again.warnings)
    assert _versions(again) == {
        "text": "v3",
        "int": "7",
        "padded": "v4",
        "empty": None,
        "none": None,
    }
    # the new store round-trips, and a run read again from another file is deduplicated
    again.save(store)
    reloaded = Traces.load(store)
    assert reloaded.trajectories.equals(again.trajectories)
    copy = write_json_lines(tmp_path / "in" / "copy.jsonl", [*CHAT[:5], NEW])
    grown = ingest([copy], previous=reloaded)
    assert grown.counts_this_run["deduplicated"] == 5
    assert grown.counts_this_run["renamed"] == grown.counts_this_run["superseded"] == 0
    assert grown.trajectories.num_rows == 6
    assert _versions(grown)["new"] == "v5"


def test_store_of_the_layout_before_snapshots_without_the_column(tmp_path: Path) -> None:
    path = write_json_lines(tmp_path / "chat.jsonl", CHAT[:3])
    old = _old_store(ingest([path]), path)
    store = tmp_path / "tables"
    store.mkdir()
    for name in ("trajectories", "steps", "feedback"):
        pq.write_table(getattr(old, name), store / f"{name}.parquet")
    (store / "quarantine.jsonl").write_text("", encoding="utf-8")
    report = {"settings": old.settings, "files": [asdict(f) for f in old.files]}
    report |= {"totals": old.counts, "warnings": []}
    (store / "ingest.json").write_text(json.dumps(report), encoding="utf-8")
    loaded = Traces.load(store, steps_in_memory=False)
    assert loaded.trajectories.schema.equals(TRAJECTORIES)
    assert _versions(loaded) == {"text": None, "int": None, "padded": None}
    rebuilt = ingest([path])  # a rebuild reads the versions
    assert _versions(rebuilt) == {"text": "v3", "int": "7", "padded": "v4"}


def test_new_store_round_trips_the_column(tmp_path: Path) -> None:
    traces = ingest([write_json_lines(tmp_path / "chat.jsonl", CHAT)])
    traces.save(tmp_path / "tables")
    loaded = Traces.load(tmp_path / "tables")
    assert loaded.trajectories.equals(traces.trajectories)
    assert _versions(loaded)["text"] == "v3"
    assert _warnings(loaded) == _warnings(traces)


def test_chat_jsonl_runs_are_dated_by_their_own_times(tmp_path: Path) -> None:
    path = tmp_path / "dated.jsonl"
    base = {"outcome": "success", "messages": [{"role": "user", "content": "hi"}]}
    rows = [
        {**base, "id": "a", "started_at": "2026-03-01T10:00:00Z", "ended_at": 1772359260},
        {**base, "id": "b", "metadata": {"started_at": "2026-03-01T11:00:00+01:00"}},
        {**base, "id": "c"},
        {**base, "id": "d", "started_at": "not a date"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    traces = ingest([path], format="chat-jsonl")
    got = dict(
        zip(
            traces.trajectories.column("trajectory_id").to_pylist(),
            traces.trajectories.column("started_at").to_pylist(),
            strict=True,
        )
    )
    assert got["a"].isoformat() == "2026-03-01T10:00:00+00:00"
    assert got["b"].isoformat() == "2026-03-01T10:00:00+00:00"
    assert got["c"] is None
    assert "d" not in got and traces.counts["quarantined"] == 1

"""Ingest against damaged and careless input: a bad value inside a JSON array, an array named
``.jsonl``, skipped files, a bad file in a batch, deep nesting, timestamps that do not parse,
corrected records, and coach's own data directory among the traces. Every record is ingested or
counted, and nothing raises for a problem in the data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixture_files import fixture_file, read_json_lines, write_json_lines

from pipeline.errors import InputError
from pipeline.ingest import Traces, discover, ingest, sniff_format
from pipeline.ingest.discovery import CACHEDIR_SIGNATURE, survey
from pipeline.ingest.formats._io import ReadOptions, iter_json_records, json_container
from pipeline.ingest.formats._jsontext import MAX_DEPTH, loads

N = 40


def _record(number: int, outcome: str = "success") -> dict[str, Any]:
    return {
        "id": f"run-{number:02d}",
        "outcome": outcome,
        "messages": [
            {"role": "user", "content": f"please help with order {number}, thanks"},
            {"role": "assistant", "content": 'done: "quoted", [bracketed] and {braced}'},
        ],
    }


def _array(records: list[dict[str, Any]]) -> bytes:
    return ("[\n" + ",\n".join("  " + json.dumps(r) for r in records) + "\n]\n").encode()


def _ids(traces: Traces) -> list[str]:
    return sorted(traces.trajectories.column("trajectory_id").to_pylist())


def _read(traces: Traces) -> list[Any]:
    return [f for f in traces.files if f.status == "read"]


def _accounted(traces: Traces) -> bool:
    return all(f.records_read == f.ingested + f.deduplicated + f.quarantined for f in traces.files)


def _damage(data: bytes, index: int, kind: str) -> bytes:
    """Damage item ``index`` of a JSON array written by :func:`_array` in one way."""
    lines = data.split(b"\n")
    line = lines[index + 1]
    at = line.index(b"please") + 3
    if kind == "broken_quote":
        line = line.replace(b'"please', b"please", 1)
    elif kind == "flipped_brace":
        line = line.replace(b"{", b"z", 1)
    elif kind == "flipped_separator":
        line = line[:-1] + b"-" if line.endswith(b",") else line
    else:
        insert = {
            "lone_surrogate": b"\\ud800",
            "latin1": b"caf\xe9",
            "control": b"\x01",
            "bad_escape": b"\\q",
            "deep": b'", "x": ' + b"[" * 5000 + b"]" * 5000 + b', "y": "',
        }[kind]
        line = line[:at] + insert + line[at:]
    lines[index + 1] = line
    return b"\n".join(lines)


# --- JSON arrays: a bad item is skipped, counted, and reading goes on ---------------------------


@pytest.mark.parametrize(
    "kind",
    [
        "broken_quote",
        "flipped_brace",
        "lone_surrogate",
        "latin1",
        "control",
        "bad_escape",
        "deep",
    ],
)
def test_a_bad_item_in_a_json_array_is_quarantined_and_reading_goes_on(
    kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "runs.json"
    path.write_bytes(_damage(_array([_record(n) for n in range(N)]), 7, kind))
    traces = ingest([path])
    (report,) = traces.files
    assert (report.records_read, report.ingested, report.quarantined) == (N, N - 1, 1)
    assert "run-07" not in _ids(traces) and len(_ids(traces)) == N - 1
    (row,) = traces.quarantine
    assert row["where"] == "index 7"
    json.dumps(row, ensure_ascii=False).encode("utf-8")  # writable as UTF-8, surrogates or not


def test_a_flipped_separator_costs_the_two_items_it_glues_as_one_unit(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    path.write_bytes(_damage(_array([_record(n) for n in range(N)]), 7, "flipped_separator"))
    traces = ingest([path])
    (report,) = traces.files
    # item 7 is whole and read; "-" glues item 8 to it, and that stretch is one counted unit
    assert (report.records_read, report.ingested, report.quarantined) == (N, N - 1, 1)
    assert "run-07" in _ids(traces) and "run-08" not in _ids(traces)
    assert "'-' after item 7" in traces.quarantine[0]["reason"]


@pytest.mark.parametrize(("value", "label"), [(b"NaN", "unknown"), (b"1e400", "success")])
def test_non_finite_numbers_in_an_array_do_not_stop_it(
    value: bytes, label: str, tmp_path: Path
) -> None:
    records = [_record(n) | {"reward": 0.5} for n in range(N)]
    for record in records:
        del record["outcome"]
    data = _array(records).replace(b'"reward": 0.5}', b'"reward": ' + value + b"}", 1)
    path = tmp_path / "runs.json"
    path.write_bytes(data)
    traces = ingest([path])
    assert traces.counts["ingested"] == N
    labels = dict(
        zip(
            traces.trajectories.column("trajectory_id").to_pylist(),
            traces.trajectories.column("outcome_label").to_pylist(),
            strict=True,
        )
    )
    # NaN is no reward (unknown, not a failure); 1e400 is infinity, above any threshold
    assert labels["run-00"] == label and labels["run-01"] == "failure"


def test_huge_integers_quarantine_their_items_only(tmp_path: Path) -> None:
    records = [_record(n) for n in range(N)]
    records[3]["metadata"] = {"trial": 2**70}
    records[5]["messages"][1]["usage"] = {"prompt_tokens": 2**70}
    path = tmp_path / "runs.json"
    path.write_bytes(_array(records))
    traces = ingest([path])
    # neither a trial nor a token count of 2**70 fits its int64 column: each record is
    # quarantined on its own, the array goes on
    assert traces.counts["ingested"] == N - 2
    assert not {"run-03", "run-05"} & set(_ids(traces))
    assert [q["where"] for q in traces.quarantine] == ["index 3", "index 5"]
    assert all("wrong type" in q["reason"] for q in traces.quarantine)


def test_a_truncated_array_keeps_what_came_before_the_cut(tmp_path: Path) -> None:
    data = _array([_record(n) for n in range(N)])
    path = tmp_path / "runs.json"
    cut = data.index(b'"run-20"') + 20
    path.write_bytes(data[:cut])
    traces = ingest([path])
    (report,) = traces.files
    assert (report.ingested, report.quarantined) == (20, 1)
    (row,) = traces.quarantine
    assert row["where"] == "index 20" and row["reason"].startswith("truncated JSON array")


def test_an_array_cut_between_items_says_so(tmp_path: Path) -> None:
    data = _array([_record(n) for n in range(3)])
    path = tmp_path / "runs.json"
    path.write_bytes(data[: data.rindex(b"}") + 1])
    traces = ingest([path])
    assert traces.counts["ingested"] == 3 and traces.counts["quarantined"] == 1
    assert "before the array is closed" in traces.quarantine[0]["reason"]


def test_when_reading_cannot_resume_the_rest_is_one_explained_unit(tmp_path: Path) -> None:
    # a broken quote in a file cut short: neither direction finds the next item
    data = _damage(_array([_record(n) for n in range(N)]), 7, "broken_quote")
    path = tmp_path / "runs.json"
    path.write_bytes(data[:-20])
    traces = ingest([path])
    (report,) = traces.files
    assert (report.records_read, report.ingested, report.quarantined) == (8, 7, 1)
    (row,) = traces.quarantine
    assert row["where"] == "index 7"
    assert "cannot be read as items" in row["reason"] and "bytes" in row["reason"]


def test_text_after_the_array_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    path.write_bytes(_array([_record(n) for n in range(3)]) + b"[oops]")
    traces = ingest([path])
    assert traces.counts["ingested"] == 3 and traces.counts["quarantined"] == 1
    assert "after the end of the JSON array" in traces.quarantine[0]["reason"]


def test_a_page_envelope_resynchronises_too(tmp_path: Path) -> None:
    items = read_json_lines(fixture_file("langfuse_observations.jsonl", tmp_path))
    page = {"data": items, "meta": {"page": 1}}
    text = json.dumps(page, indent=1).replace('"GENERATION"', '"GENER\\xATION"', 1)
    path = tmp_path / "page.json"
    path.write_text(text, encoding="utf-8")
    traces = ingest([path], format="langfuse")
    assert _accounted(traces)
    reasons = [q["reason"] for q in traces.quarantine]
    assert any("invalid JSON" in r for r in reasons)
    assert traces.files[0].records_read == len(items)


# --- containers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("indent", [True, False])
def test_a_json_array_named_jsonl_is_read_as_an_array_with_a_warning(
    indent: bool, tmp_path: Path
) -> None:
    records = [_record(n) for n in range(N)]
    data = _array(records) if indent else json.dumps(records).encode()
    path = tmp_path / "runs.jsonl"
    path.write_bytes(data)
    assert json_container(path) == "array"
    traces = ingest([path])
    assert traces.counts["ingested"] == N and traces.counts["quarantined"] == 0
    assert any("named as JSON Lines but holds one JSON array" in w for w in traces.warnings)


def test_a_pretty_document_named_jsonl_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text(json.dumps(_record(1), indent=2))
    assert json_container(path) == "document"
    traces = ingest([path])
    assert traces.counts["ingested"] == 1 and traces.counts["quarantined"] == 0
    assert any("one JSON document" in w for w in traces.warnings)


def test_json_lines_with_a_broken_first_line_stay_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    lines = [json.dumps(_record(n)) for n in range(3)]
    path.write_text(lines[0][:30] + "\n" + "\n".join(lines[1:]) + "\n")
    assert json_container(path) == "lines"
    assert [type(i).__name__ for i in iter_json_records(path)] == ["Quarantined", "tuple", "tuple"]


# --- discovery: what is skipped is listed -------------------------------------------------------


def test_skipped_files_are_listed_with_their_reason(tmp_path: Path) -> None:
    write_json_lines(tmp_path / "runs.jsonl", [_record(1)])
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "runs.json.bak").write_text("[]")
    (tmp_path / ".hidden.jsonl").write_text("{}")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.json").write_text("{}")
    traces = ingest([tmp_path])
    skipped = {Path(f.path).name: f.reason for f in traces.files if f.status == "skipped"}
    assert set(skipped) == {"notes.txt", "runs.json.bak", ".hidden.jsonl", ".git"}
    assert skipped[".git"] == "hidden folder" and skipped[".hidden.jsonl"] == "hidden file"
    assert skipped["notes.txt"].startswith("not a trace file name")
    assert all(f.records_read == 0 for f in traces.files if f.status == "skipped")
    assert _ids(traces) == ["run-01"]


def test_a_cache_tagged_data_dir_inside_the_traces_is_never_read(tmp_path: Path) -> None:
    write_json_lines(tmp_path / "runs.jsonl", [_record(1)])
    data_dir = tmp_path / ".coach"
    analysis = tmp_path / "coach-data" / "analysis"
    analysis.mkdir(parents=True)
    (analysis / "clusters.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "coach-data" / "CACHEDIR.TAG").write_bytes(CACHEDIR_SIGNATURE + b"\n# coach\n")
    traces = ingest([tmp_path])
    assert [Path(f.path).name for f in _read(traces)] == ["runs.jsonl"]
    (skipped,) = [f for f in traces.files if f.status == "skipped"]
    assert Path(skipped.path).name == "coach-data" and "CACHEDIR.TAG" in skipped.reason
    # a glob reaching into it, or the file named, is refused as well
    named = survey([str(tmp_path / "**" / "*.parquet"), analysis / "clusters.parquet"])
    assert named.files == [] and len(named.skipped) == 1
    # a tag without the signature does not count
    (tmp_path / "coach-data" / "CACHEDIR.TAG").write_text("not the signature")
    assert analysis / "clusters.parquet" in discover([tmp_path])
    # and an excluded directory is never read, tag or not
    data_dir.mkdir()
    write_json_lines(data_dir / "runs.jsonl", [_record(2)])
    assert discover([tmp_path], exclude=[data_dir, tmp_path / "coach-data"]) == [
        tmp_path / "runs.jsonl"
    ]
    excluded = ingest([tmp_path], exclude=[tmp_path / "coach-data"])
    assert _ids(excluded) == ["run-01"]


def test_a_directory_with_only_skipped_files_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"no trace files .* \(1 other files or folders skipped\)"):
        ingest([tmp_path])


# --- one bad file does not stop the batch -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jsonl", b"\n\n", "empty file"),
        ("cut.json", b'{"info": {"agent_info": {', "truncated JSON"),
        ("notes.json", b"this is not json at all\n", "unknown trace format"),
        ("latin1.json", '{"id": "x", "messages": [], "n": "café"}'.encode("latin-1"), "UTF-8"),
        ("other.jsonl", b'{"hello": "world"}\n{"hello": 2}\n', "unknown trace format"),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "unknown trace format"),
    ],
)
def test_a_bad_file_is_quarantined_and_the_batch_goes_on(
    name: str, content: bytes, reason: str, tmp_path: Path
) -> None:
    good = [_record(n) for n in range(N)]
    write_json_lines(tmp_path / "a.jsonl", good[:20])
    (tmp_path / "b.json").write_bytes(_array(good[20:]))
    (tmp_path / name).write_bytes(content)
    traces = ingest([tmp_path], format="tau2" if name == "cut.json" else None)
    reports = {Path(f.path).name: f for f in traces.files}
    if name != "cut.json":
        assert _ids(traces) == sorted(r["id"] for r in good)
    bad = reports[name]
    assert (bad.records_read, bad.ingested, bad.quarantined) == (1, 0, 1)
    assert reason in bad.reason and str(tmp_path / name) in bad.reason
    assert _accounted(traces)


def test_usage_errors_still_raise(tmp_path: Path) -> None:
    write_json_lines(tmp_path / "a.jsonl", [_record(1)])
    with pytest.raises(InputError, match="no such file"):
        ingest([tmp_path / "missing.jsonl"])
    with pytest.raises(InputError, match="matches no file"):
        ingest([str(tmp_path / "*.parquet")])
    with pytest.raises(InputError, match="unknown format 'nope'"):
        ingest([tmp_path], format="nope")


# --- depth limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [5000, 100_000])
def test_deep_nesting_is_a_clear_reason_never_a_recursion_error(
    levels: int, tmp_path: Path
) -> None:
    deep = "[" * levels + "]" * levels
    with pytest.raises(ValueError, match=f"more than {MAX_DEPTH} levels"):
        loads(deep)
    lines = [json.dumps(_record(n)) for n in range(3)]
    lines[1] = lines[1][:-1] + f', "metadata": {{"x": {deep}}}}}'
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert sniff_format(path) == "chat-jsonl"
    traces = ingest([path])
    assert traces.counts["ingested"] == 2
    (row,) = traces.quarantine
    assert row["where"] == "line 2" and f"more than {MAX_DEPTH} levels deep" in row["reason"]
    # first, as the file's only record: the sniffers see no record, the file is one unit
    only = tmp_path / "deep.jsonl"
    only.write_text(lines[1] + "\n")
    alone = ingest([only])
    assert alone.files[0].quarantined == 1 and "unknown trace format" in alone.files[0].reason
    # nested JSON text inside an attribute is refused the same way
    span = read_json_lines(fixture_file("otel_genai.jsonl", tmp_path))[0]
    attribute = span["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][0]
    attribute["value"] = {"stringValue": deep}
    otel = write_json_lines(tmp_path / "spans.jsonl", [span])
    assert _accounted(ingest([otel], format="otel"))


def test_a_value_nested_just_within_the_limit_is_read(tmp_path: Path) -> None:
    nested: Any = "leaf"
    for _ in range(MAX_DEPTH - 3):
        nested = [nested]
    record = _record(1) | {"metadata": {"deep": nested}}
    path = write_json_lines(tmp_path / "runs.jsonl", [record])
    assert ingest([path]).counts["ingested"] == 1


# --- timestamps ---------------------------------------------------------------------------------


def test_a_langfuse_observation_time_that_is_no_date_quarantines_its_trace(
    tmp_path: Path,
) -> None:
    path = fixture_file("langfuse_observations.jsonl", tmp_path)
    good = ingest([path])
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace('"start_time": "2025-', '"start_time": "not a date", "x": "', 1)
    path.write_text("\n".join(lines) + "\n")
    traces = ingest([path])
    assert _accounted(traces)
    lost = set(_ids(good)) - set(_ids(traces))
    assert len(lost) == 1
    (row,) = [q for q in traces.quarantine if "not a date" in q["reason"]]
    assert row["reason"].endswith("not a date and time: not a date")


@pytest.mark.parametrize(
    ("name", "fmt"), [("otel_genai.jsonl", "otel"), ("openinference_otlp.jsonl", "openinference")]
)
def test_one_bad_span_quarantines_its_whole_trace(name: str, fmt: str, tmp_path: Path) -> None:
    path = fixture_file(name, tmp_path)
    good = ingest([path], format=fmt)
    requests = read_json_lines(path)
    span = requests[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][-1]
    span["startTimeUnixNano"] = "yesterday"
    write_json_lines(path, requests)
    traces = ingest([path], format=fmt)
    assert _accounted(traces)
    (lost,) = set(_ids(good)) - set(_ids(traces))
    assert lost == span["traceId"].lower()
    whole = [q for q in traces.quarantine if "quarantined whole" in q["reason"]]
    assert len(whole) == 1 and "not an integer number of nanoseconds" in whole[0]["reason"]
    # the trace's other spans are counted with it, not ingested with a gap
    spans = sum(1 for r in requests for s in _spans(r) if s["traceId"] == span["traceId"])
    assert traces.counts["quarantined"] == good.counts["quarantined"] + spans


def _spans(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for rs in request["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]


def test_a_phoenix_span_with_a_bad_start_time_quarantines_its_trace(tmp_path: Path) -> None:
    path = fixture_file("openinference_phoenix.jsonl", tmp_path)
    good = ingest([path])
    rows = read_json_lines(path)
    rows[0]["start_time"] = "not a date"
    write_json_lines(path, rows)
    traces = ingest([path])
    assert _accounted(traces)
    assert set(_ids(good)) - set(_ids(traces)) == {rows[0]["context"]["trace_id"]}


# --- corrected records supersede ----------------------------------------------------------------


def test_a_corrected_label_supersedes_the_stored_one(tmp_path: Path) -> None:
    path = tmp_path / "traces" / "runs.jsonl"
    path.parent.mkdir()
    records = [_record(n, "failure") for n in range(N)]
    write_json_lines(path, records)
    first = ingest([path])
    first.save(tmp_path / "tables")
    for record in records[:5]:
        record["outcome"] = "success"
    write_json_lines(path, records)
    traces = ingest([path], previous=Traces.load(tmp_path / "tables"))
    assert traces.trajectories.num_rows == N
    labels = traces.trajectories.column("outcome_label").to_pylist()
    assert labels.count("success") == 5
    assert traces.steps.num_rows == first.steps.num_rows
    read = _read(traces)[0]
    assert (read.records_read, read.ingested, read.deduplicated, read.superseded) == (N, 5, 35, 5)
    assert sum(f.trajectories for f in traces.files) == N
    assert sum("replaces the stored version" in w for w in traces.warnings) == 5
    assert _accounted(traces)


def test_a_superseded_run_keeps_the_feedback_other_files_gave_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    write_json_lines(runs, [_record(1, "unknown")])
    scores = tmp_path / "scores.jsonl"
    score = {"id": "s1", "traceId": "run-01", "name": "resolved", "value": 1, "source": "API"}
    write_json_lines(scores, [score])
    first = ingest([runs, scores], format=None)
    assert first.feedback.num_rows == 1 or first.counts["quarantined"] >= 0
    edited = _record(1, "unknown")
    edited["messages"][0]["content"] = "edited"
    write_json_lines(runs, [edited])
    again = ingest([runs, scores], previous=first)
    assert again.trajectories.num_rows == 1
    assert again.feedback.num_rows == first.feedback.num_rows


def test_the_same_id_from_another_file_is_still_renamed(tmp_path: Path) -> None:
    write_json_lines(tmp_path / "a.jsonl", [_record(1, "failure")])
    first = ingest([tmp_path])
    write_json_lines(tmp_path / "b.jsonl", [_record(1, "success")])
    traces = ingest([tmp_path], previous=first)
    assert len(_ids(traces)) == 2 and any(i.startswith("run-01~") for i in _ids(traces))
    # and editing b again supersedes b's renamed version, not a's
    write_json_lines(tmp_path / "b.jsonl", [_record(1, "partial")])
    again = ingest([tmp_path], previous=traces)
    assert len(_ids(again)) == 2
    assert sorted(again.trajectories.column("outcome_label").to_pylist()) == [
        "failure",
        "partial",
    ]


# --- the readers on their own -------------------------------------------------------------------


def test_array_items_stream_past_many_bad_items(tmp_path: Path) -> None:
    data = _array([_record(n) for n in range(N)])
    for index in (3, 10, 11, 30):
        data = _damage(data, index, "latin1")
    path = tmp_path / "runs.json"
    path.write_bytes(data)
    items = list(iter_json_records(path, ReadOptions(source_uri=str(path))))
    assert len(items) == N
    bad = [i for i, item in enumerate(items) if not isinstance(item, tuple)]
    assert bad == [3, 10, 11, 30]


@pytest.mark.parametrize("container", ["lines", "array"])
def test_a_line_of_spans_that_does_not_parse_quarantines_the_traces_it_names(
    container: str, tmp_path: Path
) -> None:
    path = fixture_file("otel_genai.jsonl", tmp_path)
    requests = read_json_lines(path)
    first = requests[0]
    spans = first["resourceSpans"][0]["scopeSpans"][0]["spans"]
    trace_id = spans[0]["traceId"]
    later = json.loads(json.dumps(first))
    first["resourceSpans"][0]["scopeSpans"][0]["spans"] = spans[:1]
    later["resourceSpans"][0]["scopeSpans"][0]["spans"] = spans[1:]
    texts = [json.dumps(r) for r in [first, later, *requests[1:]]]
    texts[1] = texts[1].replace('"spanId"', '"spanId" "oops"', 1)  # the second line is broken
    if container == "lines":
        path.write_text("\n".join(texts) + "\n")
    else:
        path.write_text("[\n" + ",\n".join(texts) + "\n]\n")
    traces = ingest([path], format="otel")
    assert _accounted(traces)
    assert trace_id.lower() not in _ids(traces)
    whole = [q for q in traces.quarantine if "quarantined whole" in q["reason"]]
    assert len(whole) == 1 and "invalid JSON" in whole[0]["reason"]


def test_naming_the_data_dir_itself_says_why_it_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "CACHEDIR.TAG").write_bytes(CACHEDIR_SIGNATURE)
    write_json_lines(tmp_path / "runs.jsonl", [_record(1)])
    with pytest.raises(InputError, match="CACHEDIR.TAG"):
        ingest([tmp_path])
    with pytest.raises(InputError, match="excluded"):
        ingest([tmp_path / "."], exclude=[tmp_path])


@pytest.mark.parametrize("container", ["lines", "array"])
def test_a_damaged_first_record_does_not_hide_the_format(container: str, tmp_path: Path) -> None:
    records = [_record(n) for n in range(N)]
    if container == "lines":
        text = "\n".join(json.dumps(r) for r in records) + "\n"
        data = text.replace('"please', "please", 1).encode()
    else:
        data = _damage(_array(records), 0, "broken_quote")
    path = tmp_path / "runs.jsonl"
    path.write_bytes(data)
    assert sniff_format(path) == "chat-jsonl"
    traces = ingest([path])
    assert traces.counts["ingested"] == N - 1 and traces.counts["quarantined"] == 1

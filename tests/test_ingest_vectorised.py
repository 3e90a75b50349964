"""JSON Lines read column-wise (:mod:`pipeline.ingest.formats._linebatch`) against the same
records read one by one.

A JSON Lines file and a JSON array of the same records are read by different paths: the lines
in blocks, mapped by DuckDB where their shape allows (else per record), the array item by item.
Both must give the same rows (but for ``source_uri`` and ``record_sha256``), the same counts and
the same quarantine reasons, for hand-made edge cases and for random records (hypothesis). The
column-wise path must be the one taken for the common shape, a bad line must not take the rest
of its block off it, and the line hash must settle repeated ids as the record hash did.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fixture_files import write_json_lines
from hypothesis import HealthCheck, given, settings, strategies as st

import pipeline.ingest._spill as spill_module
from pipeline.ingest import Traces, ingest
from pipeline.ingest.formats import ReadOptions, _linebatch, chat_jsonl
from pipeline.ingest.formats._chat_vector import canonical_json_texts
from pipeline.ingest.formats._common import json_text
from pipeline.ingest.formats._linebatch import RecordBatch, line_digest


def _chat(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"run-{i}",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"task {i} é"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "search", "arguments": '{"q": "x", "a": 1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "Error: down"},
            {"role": "assistant", "content": "done"},
        ],
        "outcome": "success" if i % 2 else "failure",
        "metadata": {"task_id": i, "domain": "d", "agent": "a", "trial": 0, "z": [1, {"b": 2}]},
        **extra,
    }


def _both(tmp_path: Path, lines: list[str]) -> tuple[Traces, Traces]:
    """``lines`` ingested as a JSON Lines file and, parsed, as a JSON array (one by one)."""
    (tmp_path / "lines").mkdir(exist_ok=True)
    (tmp_path / "array").mkdir(exist_ok=True)
    jsonl = tmp_path / "lines" / "runs.jsonl"
    jsonl.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    items = []
    for line in lines:
        try:
            items.append(json.loads(line))
        except ValueError:
            continue
    array = tmp_path / "array" / "runs.json"
    array.write_text(json.dumps(items), encoding="utf-8")
    return ingest([jsonl], format="chat-jsonl"), ingest([array], format="chat-jsonl")


def _rows(traces: Traces) -> dict[str, pa.Table]:
    trajectories = traces.trajectories.drop_columns(["source_uri", "record_sha256"])
    return {"trajectories": trajectories, "steps": traces.steps, "feedback": traces.feedback}


def _assert_same(lines: Traces, array: Traces, bad_lines: int = 0) -> None:
    for name, table in _rows(lines).items():
        # repr: NaN (a reward of NaN) equals itself there
        assert repr(table.to_pylist()) == repr(_rows(array)[name].to_pylist()), name
    counts, expected = lines.counts, array.counts
    assert counts["quarantined"] == expected["quarantined"] + bad_lines
    assert counts["records_read"] == expected["records_read"] + bad_lines
    for key in ("ingested", "deduplicated", "renamed", "trajectories", "steps", "feedback"):
        assert counts[key] == expected[key], key
    # records of the wrong type are quarantined when converted: per batch, not per file
    reasons = sorted(q["reason"] for q in lines.quarantine)
    assert [r for r in reasons if not r.startswith("invalid JSON")] == sorted(
        q["reason"] for q in array.quarantine
    )
    (report,) = lines.files
    assert report.records_read == report.ingested + report.deduplicated + report.quarantined


EDGE_CASES = [
    _chat(1),
    _chat(2, reward=0.5),
    _chat(3, reward=1, outcome=None),
    _chat(4, metadata={"reward": 2, "prompt_version": 7, "cost_usd": 0.25, "task_type": "t"}),
    _chat(5, reward=None, metadata={"reward": 1}),
    _chat(6, metadata=None),
    _chat(7, metadata={"trial": 2**70, "task_id": "x"}),
    _chat(8, metadata={"trial": True}),
    _chat(9, metadata={"prompt_version": " v2 ", "model": "m", "session_id": "s"}),
    _chat(10, metadata={"prompt_version": 3.0}),
    _chat(11, metadata={"prompt_version": {"a": 1}}),
    _chat(12, feedback=[{"name": "score", "value": 0.5}]),
    _chat(13, started_at="2024-06-01T00:00:00Z"),
    _chat(14, outcome="maybe"),
    _chat(15, reward=True),
    _chat(16, messages=[{"role": "robot", "content": "x"}]),
    _chat(17, messages=[{"role": "user", "content": [{"type": "text", "text": "a"}]}]),
    _chat(18, messages=[{"role": "assistant", "tool_calls": [{"function": {"name": ""}}]}]),
    _chat(19, messages=[{"role": "assistant", "content": "", "tool_calls": []}]),
    _chat(20, messages=[{"role": "assistant", "content": "a", "tool_calls": False}]),
    _chat(21, messages=[{"role": "assistant", "content": "a", "tool_calls": "x"}]),
    _chat(22, messages=[{"role": "user", "content": "hi", "timestamp": 1717243200}]),
    _chat(23, messages=[{"role": "assistant", "content": "a", "model": "m2", "usage": {}}]),
    _chat(24, messages=[{"role": "tool", "content": "  exception: boom\nmore", "name": "t"}]),
    _chat(25, messages=[{"role": "tool", "content": "fine", "error": True, "id": "z"}]),
    _chat(26, messages=[{"role": "function", "content": "\u3000Traceback (x)", "error": "no"}]),
    _chat(27, messages=[{"role": "developer", "content": "dev"}, {"role": "user"}]),
    _chat(28, messages=[5]),
    _chat(29, messages="no"),
    _chat(30, id=""),
    _chat(31, id=42),
    _chat(
        32, messages=[{"role": "assistant", "tool_calls": [{"name": "f", "arguments": {"b": 1}}]}]
    ),
    _chat(33, messages=[{"role": "user", "tool_calls": [{"id": "u", "function": {"name": "g"}}]}]),
    _chat(34, metadata={"domain": None, "task_type": "t", "agent_name": "b", "dataset": "ds"}),
    _chat(35, metadata={"cost_usd": "cheap"}),
    _chat(36, metadata=[]),
    _chat(1),  # the same record again: deduplicated
    _chat(2, outcome="partial"),  # the same id from the same file: supersedes
]


def test_edge_cases_match_the_record_by_record_reading(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in EDGE_CASES]
    lines += [json.dumps(_chat(37), ensure_ascii=False), json.dumps(_chat(38), indent=None)]
    lines += ['{"id": "x", "messages": [], "outcome": "success",}']  # Python refuses
    lines += [
        '{"id": "n", "messages": [], "reward": NaN}',
        '{"id": "i", "messages": [], "reward": 1e400}',
    ]
    lines += ['{"id": "s\\ud800", "messages": []}', "", "   ", "not json"]
    by_lines, by_array = _both(tmp_path, lines)
    _assert_same(by_lines, by_array, bad_lines=2)
    assert by_lines.counts["ingested"] > 20


def test_the_common_shape_is_read_column_wise_around_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    good = [json.dumps(_chat(i)) for i in range(10)]
    path.write_text("\n".join([*good[:4], "{broken", *good[4:]]) + "\n", encoding="utf-8")
    items = list(chat_jsonl.read(path, ReadOptions(source_uri=str(path))))
    assert [type(i).__name__ for i in items] == ["RecordBatch", "Quarantined", "RecordBatch"]
    assert [i.records for i in items if isinstance(i, RecordBatch)] == [4, 6]
    assert items[2].where[0] == "line 6"
    digests = items[0].tables["trajectories"].column("record_sha256").to_pylist()
    assert digests[0] == line_digest(good[0].encode())


def test_repeated_ids_across_blocks_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_linebatch, "BLOCK_LINES", 3)
    records = [_chat(i) for i in range(5)] + [_chat(1), _chat(2, outcome="partial"), _chat(3)]
    path = write_json_lines(tmp_path / "a.jsonl", records)
    other = write_json_lines(tmp_path / "b.jsonl", [_chat(4, outcome="partial"), _chat(0)])
    traces = ingest([path, other])
    first, second = traces.files
    assert (first.records_read, first.ingested, first.deduplicated, first.superseded) == (
        8,
        5,
        3,
        1,
    )
    assert (second.records_read, second.ingested, second.deduplicated, second.renamed) == (
        2,
        1,
        1,
        1,
    )
    ids = traces.trajectories.column("trajectory_id").to_pylist()
    digest = line_digest(json.dumps(_chat(4, outcome="partial")).encode())
    assert sorted(ids) == sorted(
        ["run-0", "run-1", "run-2", "run-3", "run-4", f"run-4~{digest[:8]}"]
    )
    labels = dict(zip(ids, traces.trajectories.column("outcome_label").to_pylist(), strict=True))
    assert labels["run-2"] == "partial"
    steps = traces.steps.filter(pa.compute.equal(traces.steps.column("trajectory_id"), "run-2"))
    assert steps.num_rows == 5
    renamed = traces.steps.column("trajectory_id").to_pylist().count(f"run-4~{digest[:8]}")
    assert renamed == 5


_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["Error: x", " traceback", "exception", "ok", "", "\u2028", 'é\\"/']),
)
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**65), st.floats(), _TEXT)
_ARGS = st.one_of(
    st.none(),
    _TEXT,
    st.just('{"b": 1, "a": [1.5, "x"]}'),
    st.dictionaries(_TEXT, _VALUE, max_size=3),
)
_CALL = st.one_of(
    st.fixed_dictionaries(
        {"id": st.one_of(st.none(), _TEXT, st.integers()), "type": st.just("function")},
        optional={
            "function": st.fixed_dictionaries({}, optional={"name": _VALUE, "arguments": _ARGS})
        },
    ),
    st.fixed_dictionaries({}, optional={"id": _TEXT, "name": _VALUE, "arguments": _ARGS}),
    _VALUE,
)
_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(
            ["system", "user", "assistant", "tool", "function", "developer", "x"]
        )
    },
    optional={
        "content": st.one_of(_TEXT, st.none(), st.integers()),
        "tool_calls": st.one_of(st.lists(_CALL, max_size=3), _VALUE),
        "tool_call_id": st.one_of(_TEXT, st.none()),
        "name": st.one_of(_TEXT, st.none()),
        "error": _VALUE,
        "model": st.one_of(_TEXT, st.none()),
    },
)
_META_KEYS = [
    "task_id",
    "domain",
    "task_type",
    "agent",
    "trial",
    "model",
    "prompt_version",
    "cost_usd",
    "reward",
    "user_id",
]
_RECORD = st.fixed_dictionaries(
    {
        "id": st.one_of(st.sampled_from(["a", "b", "c"]), _TEXT, st.integers(0, 3)),
        "messages": st.one_of(st.lists(_MESSAGE, max_size=5), _VALUE),
    },
    optional={
        "outcome": st.one_of(st.sampled_from(["success", "failure", "partial"]), _VALUE),
        "reward": _VALUE,
        "metadata": st.one_of(st.dictionaries(st.sampled_from(_META_KEYS), _VALUE), _VALUE),
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(_RECORD, min_size=1, max_size=8))
def test_random_records_match_the_record_by_record_reading(
    tmp_path: Path, records: list[Any]
) -> None:
    lines = [json.dumps(r) for r in records]
    _assert_same(*_both(tmp_path, lines))


def test_a_spilled_steps_table_equals_the_one_held_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_json_lines(tmp_path / "a.jsonl", [_chat(i) for i in range(6)])
    held = ingest([first])
    held.save(tmp_path / "held")
    more = [_chat(6), _chat(1, outcome="partial"), _chat(7), _chat(7, outcome="partial")]
    write_json_lines(first, [*(_chat(i) for i in range(6)), *more])  # grown in place
    other = write_json_lines(tmp_path / "b.jsonl", [_chat(8), _chat(3)])
    expected = ingest([first, other], previous=Traces.load(tmp_path / "held"))
    monkeypatch.setattr(spill_module, "SPILL_ROWS", 4)
    spilled = ingest([first, other], previous=Traces.load(tmp_path / "held"))
    assert not spilled.steps_in_memory and expected.steps_in_memory
    assert spilled.steps.to_pylist() == expected.steps.to_pylist()
    assert spilled.trajectories.equals(expected.trajectories)
    assert [asdict(f) for f in spilled.files] == [asdict(f) for f in expected.files]
    # run-1 (stored: counted by the new and the storing report) and run-7 (same file)
    assert expected.counts["superseded"] == 3
    spilled.save(tmp_path / "store")
    assert Traces.load(tmp_path / "store").steps.equals(expected.steps)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, as_string=st.booleans())
def test_orjson_writes_what_json_text_writes(value: Any, as_string: bool) -> None:
    """The column-wise reader writes ``metadata`` and ``tool_args`` with orjson where it can;
    the text must be what :func:`json_text` writes, for any JSON value (and for JSON text held
    in a string, as tool arguments are)."""
    text = json.dumps(json.dumps(value) if as_string else value)
    column = pa.array([text, None, text], pa.string())
    expected = json_text(json.loads(text))
    assert canonical_json_texts(column).to_pylist() == [expected, None, expected]


def test_orjson_escapes_every_code_point_as_json_does() -> None:
    text = "".join(chr(c) for c in range(0x10FFFF) if not 0xD800 <= c < 0xE000)
    value = {text[:5000]: [text[i : i + 997] for i in range(0, len(text), 997)]}
    column = pa.array([json.dumps(value)], pa.string())
    assert canonical_json_texts(column).to_pylist() == [json_text(value)]

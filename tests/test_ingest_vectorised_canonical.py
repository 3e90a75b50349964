"""Canonical JSONL read column-wise (:mod:`pipeline.ingest.formats._canonical_vector`) against
the same lines read one by one (the per-record reader, as before), and a column of times read
as :func:`~pipeline.ingest.formats._common.parse_time` reads each.

The per-record reading is had by letting no line reach the column-wise mapper. Both must give
the same tables byte for byte (``record_sha256``, the hash of the rows, included), the same
counts and the same quarantine, for hand-made edge cases and random records (hypothesis).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.ingest import Traces, ingest
from pipeline.ingest.formats import ReadOptions, _linebatch, canonical
from pipeline.ingest.formats._common import parse_time
from pipeline.ingest.formats._linebatch import RecordBatch
from pipeline.ingest.formats._timecol import parse_times


def _canon(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "trajectory_id": f"run-{i}",
        "source_format": "chat-jsonl",
        "dataset": "d",
        "task_id": str(i),
        "trial": 1,
        "model": "m é",
        "outcome_label": "success" if i % 2 else "failure",
        "outcome_score": 1.0 if i % 2 else 0,
        "cost_usd": 0.25,
        "prompt_version": "pv-1",
        "metadata": {"z": [1, 2.5, {"b": "ü"}], "a": None},
        "steps": [
            {"step_type": "system", "role": "system", "content_text": "Be brief.\n\u2028"},
            {
                "step_type": "user",
                "role": "user",
                "content_text": f"task {i} 😀",
                "started_at": "2024-06-01T00:00:01.5Z",
            },
            {
                "step_type": "tool_call",
                "role": "assistant",
                "tool_name": "search",
                "tool_call_id": "c1",
                "tool_args": {"q": "x", "a": 1},
                "input_tokens": 10,
                "output_tokens": 3,
                "started_at": "2024-06-01T00:00:02+02:00",
            },
            {
                "step_type": "tool_result",
                "role": "tool",
                "tool_name": "search",
                "tool_result_text": "Error: down",
                "is_error": True,
                "error_message": "Error: down",
                "started_at": "2024-06-01 00:00:03",
            },
            {"step_type": "assistant", "role": "assistant", "content_text": "done", "step_idx": 9},
        ],
        "feedback": [
            {"name": "reward", "value": 1, "source": "dataset"},
            {"name": "judge", "value_text": "good", "step_idx": 2, "comment": "c"},
        ],
        **extra,
    }


def _tables(traces: Traces) -> dict[str, pa.Table]:
    return {
        "trajectories": traces.trajectories,
        "steps": traces.steps,
        "feedback": traces.feedback,
    }


def _both(
    tmp_path: Path, lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Traces, Traces]:
    """``lines`` as one canonical JSONL file, ingested column-wise and one by one."""
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    fast = ingest([path], format="canonical")
    with monkeypatch.context() as patch:
        patch.setattr(_linebatch, "_candidate", lambda line: False)
        slow = ingest([path], format="canonical")
    return fast, slow


def _assert_same(fast: Traces, slow: Traces, exact: bool = True) -> None:
    """The same tables; the same counts, quarantine and warnings (``exact``), else those but
    for a record of the wrong type that a later version of the same id replaces: read one by
    one it waits to be converted and is dropped as superseded; when a batch follows it, it is
    converted first (ingest converts what waits before it takes a batch) and quarantined."""
    for name, table in _tables(fast).items():
        expected = _tables(slow)[name]
        assert table.schema == expected.schema, name
        # repr: NaN equals itself there
        assert repr(table.to_pylist()) == repr(expected.to_pylist()), name
    quarantine = sorted(fast.quarantine, key=repr)
    if exact:
        assert fast.counts == slow.counts
        # records of the wrong type are quarantined when converted, which a batch does sooner
        assert quarantine == sorted(slow.quarantine, key=repr)
        assert fast.warnings == slow.warnings
    else:
        counts, expected_counts = fast.counts, slow.counts
        for key in ("records_read", "ingested", "renamed", "trajectories", "steps", "feedback"):
            assert counts[key] == expected_counts[key], key
        assert (
            counts["quarantined"] + counts["deduplicated"]
            == expected_counts["quarantined"] + expected_counts["deduplicated"]
        )
        assert all(q in quarantine for q in slow.quarantine)
        extra = [q for q in quarantine if q not in slow.quarantine]
        assert all(q["reason"].startswith("wrong type") for q in extra)
    (report,) = fast.files
    assert report.records_read == report.ingested + report.deduplicated + report.quarantined


EDGE_CASES = [
    _canon(1),
    _canon(2, outcome_label=None, metadata='{"raw": 1}', cost_usd=None),
    _canon(3, outcome_label="", source_format="", source_uri="s3://x", prompt_version=7),
    _canon(4, steps=None, feedback=None, n_steps=12, system_prompt="given"),
    _canon(5, started_at="2024-01-01T00:00:00", ended_at="Mon, 01 Jan 2024 00:00:00 GMT"),
    _canon(6, started_at="not a date"),
    _canon(7, outcome_label="maybe"),
    _canon(8, trajectory_id=""),
    _canon(9, trial=2**70),
    _canon(10, trial=True),
    _canon(11, steps=[5]),
    _canon(12, steps="no"),
    _canon(13, steps=[{"step_type": "user", "is_error": "yes"}]),
    _canon(14, steps=[{"step_type": "user", "content_text": 5}]),
    _canon(15, steps=[{"step_type": "tool_call", "tool_args": [1, "x"]}, {"tool_args": 2.0}]),
    _canon(16, prompt_version={"a": 1}),
    _canon(17, metadata=[1e300, -0.0, 12345678901234567890123]),
    _canon(18, outcome_score=1e400),
    _canon(19, feedback=[{"name": "x", "value": True}]),
    _canon(20, steps=[{"step_type": "user", "started_at": 1717243200}]),
    _canon(21, record_sha256="given", extra_field={"ignored": True}),
    _canon(22, prompt_version=3.0),
    _canon(23, steps=[{"step_type": "assistant", "content_text": ""}, {"step_type": None}]),
    _canon(1),  # the same record again: deduplicated
    _canon(2, outcome_label="partial"),  # a corrected version: supersedes
]


def test_edge_cases_match_the_record_by_record_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [json.dumps(r) for r in EDGE_CASES]
    lines += [json.dumps(_canon(30), ensure_ascii=False), json.dumps(_canon(31), indent=None)]
    lines += ['{"trajectory_id": "x", "steps": [],}', '{"trajectory_id": "n", "cost_usd": NaN}']
    lines += ["", "   ", "not json", "[1, 2]", '{"trajectory_id": "s\\ud800"}']
    fast, slow = _both(tmp_path, lines, monkeypatch)
    _assert_same(fast, slow)
    assert fast.counts["ingested"] > 15


def test_the_common_shape_is_read_column_wise_around_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    good = [json.dumps(_canon(i)) for i in range(10)]
    path.write_text("\n".join([*good[:4], "{broken", *good[4:]]) + "\n", encoding="utf-8")
    items = list(canonical.read(path, ReadOptions(source_uri=str(path))))
    assert [type(i).__name__ for i in items] == ["RecordBatch", "Quarantined", "RecordBatch"]
    assert [i.records for i in items if isinstance(i, RecordBatch)] == [4, 6]


def test_hashes_match_across_blocks_and_a_previous_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_linebatch, "BLOCK_LINES", 3)
    lines = [json.dumps(_canon(i)) for i in range(7)] + [json.dumps(_canon(3))]
    fast, slow = _both(tmp_path, lines, monkeypatch)
    _assert_same(fast, slow)
    fast.save(tmp_path / "store")
    again = ingest([tmp_path / "runs.jsonl"], previous=Traces.load(tmp_path / "store"))
    assert again.counts["superseded"] == 0


_TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["", "Error: x", 'é\\"/', "\u2028"]))
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**65), st.floats(), _TEXT)
_TIME = st.one_of(
    st.none(),
    st.sampled_from(["2024-06-01T00:00:00Z", "2024-06-01 12:30:00.123456", "", "2024-13-01"]),
    st.integers(0, 2_000_000_000),
)
_STEP = st.fixed_dictionaries(
    {},
    optional={
        "step_type": st.sampled_from(["system", "user", "assistant", "tool_call", "tool_result"]),
        "role": _TEXT,
        "content_text": st.one_of(_TEXT, st.none(), st.integers()),
        "tool_args": st.one_of(_VALUE, st.dictionaries(_TEXT, _VALUE, max_size=2)),
        "is_error": _VALUE,
        "step_idx": st.one_of(st.none(), st.integers(0, 9), st.floats()),
        "input_tokens": st.one_of(st.none(), st.integers(0, 100)),
        "started_at": _TIME,
    },
)
_RECORD = st.fixed_dictionaries(
    {"trajectory_id": st.one_of(st.sampled_from(["a", "b", "c"]), _TEXT, st.integers(0, 3))},
    optional={
        "outcome_label": st.one_of(st.sampled_from(["success", "failure", "partial"]), _VALUE),
        "outcome_score": _VALUE,
        "trial": _VALUE,
        "metadata": st.one_of(_VALUE, st.dictionaries(_TEXT, _VALUE, max_size=2)),
        "prompt_version": _VALUE,
        "started_at": _TIME,
        "n_steps": _VALUE,
        "steps": st.one_of(st.lists(_STEP, max_size=4), _VALUE),
        "feedback": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {"name": _TEXT}, optional={"value": _VALUE, "step_idx": _VALUE}
                ),
                max_size=2,
            ),
            _VALUE,
        ),
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(_RECORD, min_size=1, max_size=6))
def test_random_records_match_the_record_by_record_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, records: list[Any]
) -> None:
    _assert_same(*_both(tmp_path, [json.dumps(r) for r in records], monkeypatch), exact=False)


_TIMES = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S")),
    st.sampled_from(["2025-02-30T00:00:00", "2024-06-01T24:00:00", "", " 2024-06-01T00:00:00"]),
    st.text(max_size=30),
    st.none(),
)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(_TIMES, max_size=8))
def test_a_time_column_reads_as_parse_time_reads_each(texts: list[str | None]) -> None:
    expected, refused = [], []
    for text in texts:
        try:
            expected.append(parse_time(text))
            refused.append(False)
        except ValueError:
            expected.append(None)
            refused.append(True)
    times, failed = parse_times(pa.array(texts, pa.string()))
    assert times.to_pylist() == expected
    assert failed.tolist() == refused

"""Fuzzing ingest with damaged copies of every format's fixtures.

The corpus (:mod:`mutations`) damages each fixture, and each JSON Lines fixture rewritten as a
JSON array, in the ways that used to lose records or raise: flipped bytes, a broken quote,
``\\ud800``, ``NaN``, ``1e400``, ``2**70``, a Latin-1 byte, nesting 5,000 and 100,000 deep, a
byte-order mark, cuts at a quarter, half, three quarters and near the end, and timestamps that
do not parse; JSON Lines fixtures also come as arrays named ``.jsonl``. Hypothesis adds random
byte damage (flips, insertions, deletions, cuts, repeats).

Every damaged file is ingested in one batch with good files. Nothing may raise; per file
``records_read == ingested + deduplicated + quarantined``; no file is read only part way
without a count; every quarantine entry can be written as UTF-8 and none comes from the
last-resort "unexpected error" handler; and the good files are read whole, as alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mutations
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.ingest import Traces, ingest
from pipeline.ingest.formats._io import ReadOptions, iter_json_records

GOOD = 30


def _good_files(directory: Path) -> dict[str, list[str]]:
    """Two good files (JSON Lines and a JSON array) in ``directory``: name -> trajectory ids."""
    records = [
        {
            "id": f"good-{n:02d}",
            "outcome": "success" if n % 3 else "failure",
            "messages": [{"role": "user", "content": f"good run {n}"}],
        }
        for n in range(GOOD)
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "good_lines.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:15]))
    (directory / "good_array.json").write_text(json.dumps(records[15:], indent=1))
    return {
        "good_lines.jsonl": [r["id"] for r in records[:15]],
        "good_array.json": [r["id"] for r in records[15:]],
    }


def _variants() -> list[tuple[str, bytes]]:
    """Every fixture's body, and each JSON Lines fixture as a JSON array."""
    out = []
    for source in mutations.sources():
        data = mutations.body(source)
        out.append((source.name, data))
        if mutations.is_json_lines(data):
            out.append((source.name.replace(".jsonl", ".array.json"), mutations.as_array(data)))
    return out


VARIANTS = _variants()


def _check(traces: Traces, good: dict[str, list[str]]) -> None:
    """The properties every ingest of damaged files must have (see the module)."""
    for report in traces.files:
        assert report.records_read == report.ingested + report.deduplicated + report.quarantined, (
            report
        )
        assert report.ingested >= 0 and report.quarantined >= 0
        json.dumps(asdict(report), ensure_ascii=False).encode("utf-8")
    for row in traces.quarantine:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
        assert "unexpected error" not in row["reason"], row
    for warning in traces.warnings:
        warning.encode("utf-8")
    reports = {Path(f.path).name: f for f in traces.files}
    ids = set(traces.trajectories.column("trajectory_id").to_pylist())
    for name, expected in good.items():
        report = reports[name]
        assert (report.records_read, report.ingested, report.quarantined) == (
            len(expected),
            len(expected),
            0,
        )
        assert set(expected) <= ids
    assert set(traces.steps.column("trajectory_id").to_pylist()) <= ids


def _write(directory: Path, name: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("mutation", sorted(mutations.MUTATIONS))
def test_every_format_under_every_mutation_is_accounted_for(mutation: str, tmp_path: Path) -> None:
    good = _good_files(tmp_path / "good")
    damage = mutations.MUTATIONS[mutation]
    for name, data in VARIANTS:
        _write(tmp_path / "bad", name, damage(data))
    _check(ingest([tmp_path]), good)


def test_json_arrays_named_jsonl_are_read_as_arrays(tmp_path: Path) -> None:
    good = _good_files(tmp_path / "good")
    plain = []
    for source in mutations.sources():
        data = mutations.body(source)
        if mutations.is_json_lines(data):
            _write(tmp_path / "bad", source.name, mutations.as_array(data))
            _write(tmp_path / "plain", source.name, data)
            plain.append(source.name)
    traces = ingest([tmp_path / "bad", tmp_path / "good"])
    _check(traces, good)
    expected = {Path(f.path).name: f for f in ingest([tmp_path / "plain"]).files}
    for report in traces.files:
        if report.status == "read" and report.path.startswith(str(tmp_path / "bad")):
            # as many records as the JSON Lines file, never one per line of the array
            assert report.records_read == expected[Path(report.path).name].records_read
    assert sum("named as JSON Lines" in w for w in traces.warnings) == len(plain)


# Mutations of one value inside one array item, after which reading must go on at the next item.
_IN_ONE_ITEM = [
    "flip_separator",
    "flip_text",
    "flip_brace",
    "broken_quote",
    "lone_surrogate",
    "nan",
    "infinity",
    "huge_int",
    "latin1_byte",
    "deep_5000",
    "deep_100000",
]


@pytest.mark.parametrize("mutation", _IN_ONE_ITEM)
def test_one_bad_item_costs_at_most_two_items_of_an_array(mutation: str, tmp_path: Path) -> None:
    for name, data in VARIANTS:
        try:
            items = json.loads(data)
        except ValueError:  # chat_small holds a line that is no JSON, on purpose
            continue
        if not name.endswith(".array.json"):
            continue
        path = _write(tmp_path, name, mutations.MUTATIONS[mutation](data))
        read = list(iter_json_records(path, ReadOptions(source_uri=str(path))))
        values = [item[1] for item in read if isinstance(item, tuple)]
        # a flipped separator glues two items into one bad stretch; otherwise one item is bad
        assert len(read) >= len(items) - 1, (name, read)
        kept = [json.dumps(v, sort_keys=True) for v in values]
        original = [json.dumps(v, sort_keys=True) for v in items]
        assert sum(v in original for v in kept) >= len(items) - 2, name


def _damage(data: bytes, draw: Any) -> bytes:
    """One random kind of damage, drawn with hypothesis."""
    if not data:
        return data
    kind = draw(st.sampled_from(["flip", "insert", "delete", "cut", "repeat"]), label="kind")
    at = draw(st.integers(0, max(0, len(data) - 1)), label="at")
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if kind == "insert":
        junk = draw(
            st.one_of(
                st.binary(min_size=1, max_size=8),
                st.sampled_from([b'"', b"{", b"]", b",", b"\\", b"\\ud800", b"NaN", b"\xff"]),
            ),
            label="junk",
        )
        return data[:at] + junk + data[at:]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 64), label="length") :]
    if kind == "cut":
        return data[:at]
    length = draw(st.integers(1, 200), label="length")
    return data[: at + length] + data[at : at + length] + data[at + length :]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_damage_to_any_fixture_is_accounted_for(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    good = _good_files(directory / "good")
    name, body = data.draw(st.sampled_from(VARIANTS), label="fixture")
    damaged = body
    for _ in range(data.draw(st.integers(1, 3), label="times")):
        damaged = _damage(damaged, data.draw)
    _write(directory / "bad", name, damaged)
    _check(ingest([directory]), good)


def test_a_byte_order_mark_changes_nothing_in_any_format(tmp_path: Path) -> None:
    for name, data in VARIANTS:
        _write(tmp_path / "plain", name, data)
        _write(tmp_path / "marked", name, b"\xef\xbb\xbf" + data)

    def counts(directory: Path) -> dict[str, tuple[str, int, int, int]]:
        return {
            Path(f.path).name: (f.format, f.records_read, f.ingested, f.quarantined)
            for f in ingest([directory]).files
        }

    plain = counts(tmp_path / "plain")
    assert counts(tmp_path / "marked") == plain
    assert all(fmt for fmt, *_ in plain.values())  # every fixture recognised, BOM or not

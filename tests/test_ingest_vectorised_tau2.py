"""tau2 results parsed by orjson (:mod:`pipeline.ingest.formats._document`) against the same
files parsed as before, by ``load_json`` (Python's json and a walk for the depth limit), and
against the record-by-record path (every simulation built into rows and hashed by them,
:func:`~pipeline.ingest.record_sha256`, before its duplicates are recognised).

Parsed by orjson or by ``load_json``, the tables must be the same byte for byte
(``record_sha256`` included), with the same counts, quarantine and warnings, for the shared
tau2 files, the fixture, hand-made edge cases and random simulations (hypothesis). Against the
record-by-record path, every column but ``record_sha256`` (now the hash of the simulation's
source, see :mod:`pipeline.ingest.formats.tau2`) must be the same. The document reader must
give ``load_json``'s value or its error for edge-case documents, and the orjson depth limit it
relies on is checked.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from fixture_files import SHARED_TRACES
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.errors import InputError
from pipeline.ingest import Traces, ingest
from pipeline.ingest.formats import tau2
from pipeline.ingest.formats._document import ORJSON_DEPTH, load_document
from pipeline.ingest.formats._io import load_json
from pipeline.ingest.formats._jsontext import MAX_DEPTH

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tau2_small.json"
SHARED = sorted((SHARED_TRACES / "tau2").glob("*.json"))
_HASH = re.compile(r'"record_sha256": "[0-9a-f]{64}"')


def _old(paths: list[Path], monkeypatch: pytest.MonkeyPatch, *, by_rows: bool = False) -> Traces:
    """``paths`` ingested with documents parsed by ``load_json``; ``by_rows``: and every
    simulation built and hashed by its rows (as before source hashes)."""
    with monkeypatch.context() as patch:
        patch.setattr(tau2, "read_document", lambda path, limit: (load_json(path, limit), False))
        if by_rows:
            patch.setattr(tau2, "_source_digest", lambda *args: None)
        return ingest(paths, format="tau2")


def _rows(traces: Traces, name: str, *, hashes: bool = True) -> list[dict[str, Any]]:
    table = getattr(traces, name)
    if not hashes and "record_sha256" in table.column_names:
        table = table.drop_columns(["record_sha256"])
    return list(table.to_pylist())


def _quarantine(traces: Traces, hashes: bool) -> list[str]:
    """The quarantine, sorted (``hashes`` False: the hashes in its raw rows blanked)."""
    entries = sorted(map(repr, traces.quarantine))
    return entries if hashes else [_HASH.sub("", entry) for entry in entries]


def _assert_same(new: Traces, old: Traces, *, hashes: bool = True) -> None:
    """The same tables (``hashes``: ``record_sha256`` included), counts, quarantine and
    warnings."""
    for name in ("trajectories", "steps", "feedback"):
        assert getattr(new, name).schema == getattr(old, name).schema, name
        # repr: NaN equals itself there
        assert repr(_rows(new, name, hashes=hashes)) == repr(_rows(old, name, hashes=hashes))
    assert new.counts == old.counts
    assert _quarantine(new, hashes) == _quarantine(old, hashes)
    assert new.warnings == old.warnings
    for report in new.files:
        assert report.records_read == report.ingested + report.deduplicated + report.quarantined


def _assert_same_rows(new: Traces, old: Traces) -> None:
    """The same rows but for ``record_sha256``, in any order, and as many ingested: for
    simulations that repeat an id with other source but the same rows (deduplicated by rows,
    a correction by source)."""
    for name in ("trajectories", "steps", "feedback"):
        assert sorted(map(repr, _rows(new, name, hashes=False))) == sorted(
            map(repr, _rows(old, name, hashes=False))
        ), name
    assert new.counts["ingested"] == old.counts["ingested"]
    assert new.counts["quarantined"] == old.counts["quarantined"]


@pytest.mark.skipif(not SHARED, reason="the shared tau2 files are not here")
def test_the_shared_files_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copies = []
    for k, path in enumerate([*SHARED, *SHARED]):  # the second copy: all deduplicated
        copy_path = tmp_path / f"{k}-{path.name}"
        copy_path.write_bytes(path.read_bytes() + b"\n" * k)
        copies.append(copy_path)
    new = ingest(copies, format="tau2")
    _assert_same(new, _old(copies, monkeypatch))
    _assert_same(new, _old(copies, monkeypatch, by_rows=True), hashes=False)
    assert new.counts["deduplicated"] == new.counts["ingested"] == 150


def test_the_fixture_reads_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    new = ingest([FIXTURE], format="tau2")
    _assert_same(new, _old([FIXTURE], monkeypatch))
    _assert_same(new, _old([FIXTURE], monkeypatch, by_rows=True), hashes=False)


def _document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def _write(tmp_path: Path, data: Any, name: str = "run.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _edge_cases() -> list[dict[str, Any]]:
    sim = _document()["simulations"][0]
    cases = []

    def variant(**changes: Any) -> None:
        item = copy.deepcopy(sim)
        item.update(changes)
        item["id"] = f"{sim['id']}-{len(cases)}"
        cases.append(item)

    messages = sim["messages"]
    variant()
    variant(messages=[*messages, {"role": "robot", "content": "x"}])
    variant(messages=[*messages, {"role": "user", "content": [{"type": "text", "text": "a"}]}])
    variant(messages=[*messages, {"role": "assistant", "tool_calls": [{"name": ""}]}])
    variant(messages=[*messages, {"role": "assistant", "content": "", "tool_calls": []}])
    variant(messages=[*messages, {"role": "assistant", "content": "a", "tool_calls": "x"}])
    variant(messages=[*messages, {"role": "user", "content": "hi", "timestamp": 1717243200}])
    variant(messages=[*messages, {"role": "user", "content": "hi", "timestamp": "yesterday"}])
    variant(messages=[*messages, {"role": "assistant", "content": "a", "model": "m2"}])
    variant(messages=[*messages, {"role": "tool", "content": " exception: x\nmore", "id": "q"}])
    variant(messages=[*messages, {"role": "tool", "content": "fine", "error": True, "name": "t"}])
    variant(messages=[*messages, {"role": "function", "content": "Traceback", "error": "no"}])
    variant(messages=[{"role": "developer", "content": "dev"}, {"role": "user"}])
    variant(messages=[*messages, {"role": "assistant", "content": None, "usage": {
        "prompt_tokens": None, "input_tokens": 5}}])  # fmt: skip
    variant(messages=[*messages, {"role": "assistant", "content": "x", "usage": {
        "input_tokens": 5, "output_tokens": 2.0}, "tool_calls": [
        {"id": "a", "function": {"name": "f", "arguments": '{"b": 1.5}'}},
        {"id": None, "name": "g", "arguments": "not json é"}]}])  # fmt: skip
    variant(messages=[*messages, {"role": "tool", "content": "r", "tool_call_id": "", "id": "a"}])
    variant(messages=[5])
    variant(messages="no")
    variant(id="")
    variant(id=42)
    variant(trial=True, seed={"s": [1, 2.5]}, task_id=7, termination_reason=None)
    variant(start_time=None, end_time="2025-01-01T00:00:00Z", agent_cost=None)
    variant(start_time="not a time")
    variant(reward_info={"reward": True})
    variant(reward_info={"reward": 0.5, "reward_breakdown": [1]})
    variant(reward_info={"reward": 2, "nl_assertions": [{"met": 1, "nl_assertion": "x"}, 3]})
    cases.append(5)
    cases.append(copy.deepcopy(cases[0]))  # the same simulation again: deduplicated
    return cases


def test_edge_cases_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _document()
    data["simulations"] = _edge_cases()
    path = _write(tmp_path, data)
    new = ingest([path], format="tau2")
    _assert_same(new, _old([path], monkeypatch))
    _assert_same(new, _old([path], monkeypatch, by_rows=True), hashes=False)
    assert new.counts["ingested"] > 10


def test_a_document_without_policy_or_model_reads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _document()
    data["info"]["environment_info"]["policy"] = None
    data["info"]["agent_info"].pop("llm", None)
    data["simulations"][0]["messages"] = []
    path = _write(tmp_path, data)
    new = ingest([path], format="tau2")
    _assert_same(new, _old([path], monkeypatch))
    _assert_same(new, _old([path], monkeypatch, by_rows=True), hashes=False)


def test_orjson_reads_as_deep_as_the_document_reader_assumes() -> None:
    orjson.loads(b"[" * ORJSON_DEPTH + b"]" * ORJSON_DEPTH)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(b"[" * (ORJSON_DEPTH + 1) + b"]" * (ORJSON_DEPTH + 1))


@pytest.mark.parametrize(
    "text",
    [
        "[" * MAX_DEPTH + "]" * MAX_DEPTH,
        '{"a": ' * MAX_DEPTH + "1" + "}" * MAX_DEPTH,
        '{"a": [1.5, -0, 1e5, "\\u00e9", "\\ud83d\\ude00", 12345678901234567890123, 7.0]}',
        '{"a": -1234567890123456789, "b": 0.1234567890123456789012}',
        '{"a": NaN, "b": Infinity}',
        '{"a": 1e400}',
        '{"a": "\\ud800"}',
        '{"a": 1, "a": 2}',
        "\ufeff" + '{"a": 1}',
        "  [1, 2]  ",
    ],
)
def test_the_document_reader_reads_as_load_json(tmp_path: Path, text: str) -> None:
    path = tmp_path / "doc.json"
    path.write_text(text, encoding="utf-8")
    assert repr(load_document(path, 1 << 20)) == repr(load_json(path, 1 << 20))


@pytest.mark.parametrize(
    "text",
    ["[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "", "  ", '{"a": ', '{"a": 1,}', "[1] x"],
)
def test_the_document_reader_refuses_as_load_json(tmp_path: Path, text: str) -> None:
    path = tmp_path / "doc.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as expected:
        load_json(path, 1 << 20)
    with pytest.raises(InputError) as found:
        load_document(path, 1 << 20)
    assert str(found.value) == str(expected.value)


_TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["", "Error: x", 'é\\"/', "\u2028"]))
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**65), st.floats(), _TEXT)
_CALL = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.none(), _TEXT, st.integers()),
        "name": _VALUE,
        "arguments": st.one_of(_VALUE, st.dictionaries(_TEXT, _VALUE, max_size=2)),
    },
)
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool", "function", "x"])},
    optional={
        "content": st.one_of(_TEXT, st.none(), st.integers()),
        "tool_calls": st.one_of(st.lists(_CALL, max_size=2), _VALUE),
        "id": st.one_of(_TEXT, st.none()),
        "name": st.one_of(_TEXT, st.none()),
        "error": _VALUE,
        "timestamp": st.one_of(
            st.none(), st.sampled_from(["2025-01-01T00:00:00.123456", "", "x", "2025-02-30"])
        ),
        "usage": st.one_of(st.none(), st.dictionaries(
            st.sampled_from(["prompt_tokens", "completion_tokens", "input_tokens"]),
            st.one_of(st.none(), st.integers(0, 9), st.floats(0, 9)))),
        "cost": _VALUE,
    },
)  # fmt: skip
_SIM = st.fixed_dictionaries(
    {
        "id": st.one_of(st.sampled_from(["a", "b"]), _TEXT, st.integers(0, 3)),
        "messages": st.one_of(st.lists(_MESSAGE, max_size=5), _VALUE),
    },
    optional={
        "task_id": _VALUE,
        "trial": _VALUE,
        "start_time": st.one_of(st.none(), st.sampled_from(["2025-01-01T00:00:00", "x"])),
        "agent_cost": _VALUE,
        "seed": _VALUE,
        "reward_info": st.one_of(_VALUE, st.fixed_dictionaries({}, optional={"reward": _VALUE})),
    },
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sims=st.lists(_SIM, min_size=1, max_size=5), policy=st.sampled_from(["Be kind.", None]))
def test_random_simulations_read_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sims: list[Any], policy: str | None
) -> None:
    data = _document()
    data["info"]["environment_info"]["policy"] = policy
    data["simulations"] = sims
    path = _write(tmp_path, data)
    new = ingest([path], format="tau2")
    _assert_same(new, _old([path], monkeypatch))
    _assert_same_rows(new, _old([path], monkeypatch, by_rows=True))

"""tau2 simulations hashed by their source (:mod:`pipeline.ingest.formats.tau2`) and known as
duplicates before their rows are built (:class:`~pipeline.ingest.formats.Pending`,
:func:`pipeline.ingest._run.is_duplicate`).

A duplicate is never built; the hash covers everything the rows are made of (a simulation read
with another policy or task is not a duplicate, one with other unused file fields is); the
rules for repeated ids hold (corrections supersede, other files' versions are renamed); stores
of the earlier store version are read again with a warning; and :func:`canonical_json` gives
different bytes for different values.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import STORE_VERSION, Traces, ingest
from pipeline.ingest.formats import tau2
from pipeline.ingest.formats._pending import canonical_json

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tau2_small.json"


def _document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    data["simulations"] = [s for s in data["simulations"] if s.get("id")]  # sim-0, sim-1
    return data


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _counting_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the simulations built into rows from now on."""
    built: list[str] = []
    record = tau2._record

    def counted(sim: Any, *args: Any) -> Any:
        built.append(str(sim.get("id")))
        return record(sim, *args)

    monkeypatch.setattr(tau2, "_record", counted)
    return built


def _accounted(traces: Traces) -> None:
    for report in traces.files:
        assert report.records_read == report.ingested + report.deduplicated + report.quarantined


def test_duplicates_are_not_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _document()
    paths = [_write(tmp_path / f"{k}.json", data) for k in range(3)]
    paths[1].write_text(json.dumps(data) + "\n", encoding="utf-8")  # other bytes than 0.json
    paths[2].write_text(json.dumps(data, indent=2), encoding="utf-8")
    built = _counting_builds(monkeypatch)
    traces = ingest(paths, format="tau2")
    assert sorted(built) == ["sim-0", "sim-1"]
    assert traces.counts["ingested"] == 2
    assert traces.counts["deduplicated"] == 4
    assert not traces.warnings
    _accounted(traces)


def test_the_hash_covers_the_context_the_rows_are_read_with(tmp_path: Path) -> None:
    data = _document()
    first = _write(tmp_path / "a.json", data)
    unused = copy.deepcopy(data)
    unused["info"]["user_info"]["llm"] = "another-user-llm"  # in no row
    policy = copy.deepcopy(data)
    policy["info"]["environment_info"]["policy"] = "Another policy."
    task = copy.deepcopy(data)
    task["tasks"][0]["description"]["purpose"] = "Another purpose."
    model = copy.deepcopy(data)
    model["info"]["agent_info"]["llm"] = "another-llm"
    paths = [first] + [
        _write(tmp_path / f"{name}.json", value)
        for name, value in (
            ("unused", unused),
            ("policy", policy),
            ("task", task),
            ("model", model),
        )
    ]
    traces = ingest(paths, format="tau2")
    by_file = {Path(r.path).stem: r for r in traces.files}
    assert by_file["unused"].deduplicated == 2
    assert (by_file["policy"].renamed, by_file["model"].renamed) == (2, 2)
    assert (by_file["task"].renamed, by_file["task"].deduplicated) == (1, 1)  # sim-1: task 1
    _accounted(traces)


def test_a_corrected_simulation_supersedes_the_earlier(tmp_path: Path) -> None:
    data = _document()
    corrected = copy.deepcopy(data["simulations"][0])
    corrected["reward_info"]["reward"] = 0.0
    data["simulations"].append(corrected)
    traces = ingest([_write(tmp_path / "run.json", data)], format="tau2")
    assert traces.counts["superseded"] == 1
    assert traces.counts["ingested"] == 2
    rows = {r["trajectory_id"]: r for r in traces.trajectories.to_pylist()}
    assert rows["sim-0"]["outcome_score"] == 0.0
    assert any("replaces the earlier version" in w for w in traces.warnings)
    _accounted(traces)


def test_a_simulation_with_nan_is_not_a_duplicate_of_one_with_null(tmp_path: Path) -> None:
    data = _document()
    with_null = copy.deepcopy(data)
    with_null["simulations"][0]["seed"] = None
    with_nan = copy.deepcopy(data)
    with_nan["simulations"][0]["seed"] = math.nan  # read by Python's json, not orjson
    paths = [_write(tmp_path / "null.json", with_null), _write(tmp_path / "nan.json", with_nan)]
    traces = ingest(paths, format="tau2")
    # sim-0 kept twice (the later one renamed), sim-1 deduplicated
    assert (traces.counts["renamed"], traces.counts["deduplicated"]) == (1, 1)
    assert traces.trajectories.num_rows == 3
    _accounted(traces)


def test_a_store_of_the_earlier_version_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "run.json", _document())
    first = ingest([path], format="tau2")
    older = replace(first, settings=first.settings | {"store_version": STORE_VERSION - 1})
    older.save(tmp_path / "old")
    again = ingest([path], format="tau2", previous=Traces.load(tmp_path / "old"))
    assert again.counts_this_run["ingested"] == 2
    assert any(
        f"store version {STORE_VERSION - 1}" in w and "tau2 simulation" in w for w in again.warnings
    )
    # a store of this version: a copy of the file (other bytes) is deduplicated unbuilt
    first.save(tmp_path / "new")
    copy_path = tmp_path / "copy.json"
    copy_path.write_bytes(path.read_bytes() + b"\n")
    built = _counting_builds(monkeypatch)
    later = ingest([path, copy_path], format="tau2", previous=Traces.load(tmp_path / "new"))
    assert built == []
    assert later.counts_this_run["deduplicated"] == 2
    assert later.trajectories.num_rows == 2
    _accounted(later)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (math.nan, None),
        (math.inf, None),
        (1, 1.0),
        (0.0, -0.0),
        (2**64, float(2**64)),
        ("\ud800", "\\ud800"),
        ({"a": 1, "b": 2}, {"a": 1, "b": 3}),
        ([[]] * 2, [[], []] + [None]),
    ],
)
def test_canonical_json_tells_values_apart(a: Any, b: Any) -> None:
    assert canonical_json(a) != canonical_json(b)
    assert canonical_json(a) == canonical_json(copy.deepcopy(a))


def test_canonical_json_sorts_keys_and_writes_deep_values() -> None:
    assert canonical_json({"b": 1, "a": [1.5, None]}) == b'{"a":[1.5,null],"b":1}'
    assert canonical_json({"b": 1, "a": 2}, finite=True) == canonical_json({"a": 2, "b": 1})
    deep: Any = 1
    for _ in range(300):  # deeper than orjson writes
        deep = [deep]
    shallower: Any = deep[0]
    assert canonical_json(deep) not in (None, canonical_json(shallower))

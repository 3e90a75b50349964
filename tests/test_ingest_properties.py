"""Property-based tests: every adapter, fed mutated and truncated records, never crashes and never
loses a record silently.

For each format fixture (the original ones in ``tests/fixtures/`` and every file in
``tests/fixtures/formats/``), hypothesis picks a node of the parsed JSON and deletes it, gives it
a value of another type, or cuts the file at a byte offset. Ingesting the result with the
fixture's own adapter must either raise :class:`InputError` (the whole file is unusable, e.g. a
truncated single document) or return tables in which, for every file,
``records_read == ingested + deduplicated + quarantined`` and every ingested trajectory id is
unique.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixture_files import FORMATS, fixture_file
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.errors import InputError
from pipeline.ingest import ingest, sniff_format

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ORIGINAL = [
    FIXTURES / "chat_small.jsonl",
    FIXTURES / "testmodel-airline.json",
    FIXTURES / "tau2_small.json",
]
CASES = [p.name for p in ORIGINAL] + sorted(
    p.name for p in FORMATS.glob("*") if p.is_file() and not p.name.endswith(".md")
)

WRONG_VALUES: list[Any] = [None, "", "x", 0, -1, 1e308, True, [], {}, [1, "a"], {"k": None}]


def _materialise(name: str, directory: Path) -> Path:
    original = FIXTURES / name
    if original.exists():
        path = directory / name
        path.write_bytes(original.read_bytes())
        return path
    return fixture_file(name, directory)


class _Raw(str):
    """A JSON Lines line that is not JSON (fixtures hold some on purpose): written back as is."""


def _parse(text: str) -> tuple[str, list[Any]]:
    """(``"lines"`` | ``"document"``, values)."""
    try:
        return "document", [json.loads(text)]
    except ValueError:
        values: list[Any] = []
        for line in text.splitlines():
            if line.strip():
                try:
                    values.append(json.loads(line))
                except ValueError:
                    values.append(_Raw(line))
        return "lines", values


def _dump(value: Any) -> str:
    return str(value) if isinstance(value, _Raw) else json.dumps(value)


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(_nodes(child, (*path, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(_nodes(child, (*path, index)))
    return found


def _mutate(root: Any, path: tuple[Any, ...], op: str, replacement: Any) -> Any:
    if not path:
        return replacement
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if op == "delete":
        del parent[last]
    else:
        parent[last] = replacement
    return root


def _check(path: Path, fmt: str) -> None:
    try:
        traces = ingest([path], format=fmt)
    except InputError:
        return
    for report in traces.files:
        assert report.records_read == report.ingested + report.deduplicated + report.quarantined
        assert report.ingested >= 0
    # one quarantine entry can stand for several records (all the spans of one trace)
    assert (traces.counts["quarantined"] > 0) == (len(traces.quarantine) > 0)
    ids = traces.trajectories.column("trajectory_id").to_pylist()
    assert len(ids) == len(set(ids))
    assert set(traces.steps.column("trajectory_id").to_pylist()) <= set(ids)


@pytest.mark.parametrize("name", CASES)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_records_are_accounted_for(name: str, data: st.DataObject, tmp_path: Path) -> None:
    path = _materialise(name, tmp_path)
    fmt = sniff_format(path)
    kind, values = _parse(path.read_text(encoding="utf-8"))
    parsed = [i for i, v in enumerate(values) if not isinstance(v, _Raw)]
    record = data.draw(st.sampled_from(parsed), label="record")
    nodes = _nodes(values[record])
    node = nodes[data.draw(st.integers(0, len(nodes) - 1), label="node")]
    op = data.draw(st.sampled_from(["delete", "replace"]) if node else st.just("replace"))
    replacement = data.draw(st.sampled_from(WRONG_VALUES), label="replacement")
    values[record] = _mutate(values[record], node, op, replacement)
    if kind == "document":
        path.write_text(json.dumps(values[0]), encoding="utf-8")
    else:
        path.write_text("".join(_dump(v) + "\n" for v in values), encoding="utf-8")
    _check(path, fmt)


@pytest.mark.parametrize("name", CASES)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cut=st.floats(0.05, 0.98))
def test_truncated_files_are_accounted_for(name: str, cut: float, tmp_path: Path) -> None:
    path = _materialise(name, tmp_path)
    fmt = sniff_format(path)
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * cut))])
    _check(path, fmt)

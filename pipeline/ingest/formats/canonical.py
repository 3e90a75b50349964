"""The canonical tables themselves (see :mod:`pipeline.ingest.schema`).

- Parquet: a file holding one of the three tables, recognised by its columns (``step_idx`` ->
  steps, ``outcome_label`` -> trajectories, ``name`` + ``value`` -> feedback). Missing optional
  columns become nulls (a trajectories file written before ``prompt_version`` existed gives
  null versions); ``trajectory_id`` is required. ``prompt_version`` may be text or integers
  (stripped; empty text is null); a column of another type is read as nulls and counted.
- JSONL: one trajectory per line, a ``trajectories`` row with its ``steps`` and ``feedback`` rows
  nested as lists: ``{"trajectory_id": ..., "outcome_label": ..., "steps": [...], "feedback": [...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputError
from pipeline.ingest.formats._canonical_vector import canonical_tables
from pipeline.ingest.formats._common import Parsed, Record, finish_trajectory, parse_time
from pipeline.ingest.formats._io import ReadOptions, first_json_line, read_head
from pipeline.ingest.formats._linebatch import RecordBatch, read_line_batches
from pipeline.ingest.formats._prompt_version import clean_prompt_versions
from pipeline.ingest.schema import OUTCOME_LABELS, TABLES

NAME = "canonical"

_TIME_COLUMNS = ("started_at", "ended_at")


@dataclass
class TableChunk:
    """A whole canonical table read from a Parquet file: ``name`` is a key of ``TABLES`` and
    ``table`` has exactly that schema; ``unusable_prompt_versions``: how many rows had a
    ``prompt_version`` that is neither text nor an integer (read as null)."""

    name: str
    table: pa.Table
    unusable_prompt_versions: int = 0


def table_kind(columns: set[str]) -> str | None:
    """Which canonical table a set of column names is, or ``None``."""
    if "trajectory_id" not in columns:
        return None
    if "step_idx" in columns and "step_type" in columns:
        return "steps"
    if "outcome_label" in columns:
        return "trajectories"
    if {"name", "value"} <= columns:
        return "feedback"
    return None


def _leading_lines(head: bytes, count: int = 16) -> bytes:
    """The first ``count`` lines of ``head`` when they hold the lines
    :func:`~pipeline.ingest.formats._jsontext.first_json_line` looks at (at most five
    non-blank), else all of it: the same answer without splitting a pretty-printed document's
    whole head."""
    end = -1
    for _ in range(count):
        end = head.find(b"\n", end + 1)
        if end < 0:
            return head
    lines = head[: end + 1]
    blank = sum(1 for line in lines.splitlines() if not line.strip())
    return lines if len(lines.splitlines()) - blank >= 5 else head


def sniff(path: Path, head: bytes) -> bool:
    """True for a Parquet file with canonical columns, or JSONL whose first line has
    ``trajectory_id`` and a ``steps`` list."""
    if head.startswith(b"PAR1"):
        try:
            return table_kind(set(pq.read_schema(path).names)) is not None
        except (OSError, pa.ArrowException):
            return False
    first = first_json_line(_leading_lines(head))
    return (
        isinstance(first, dict)
        and "trajectory_id" in first
        and isinstance(first.get("steps"), list)
    )


def table_memory_pool() -> pa.MemoryPool:
    """The Arrow memory pool whole tables are read into: jemalloc where pyarrow has it (it
    returns freed decode buffers to the system, so reading a large table does not leave its
    transient buffers in the resident set, as the default mimalloc pool does), else the
    default pool."""
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.default_memory_pool()


def read_table(path: Path) -> pa.Table:
    """A whole Parquet file as an Arrow table, scanned in record batches into
    :func:`table_memory_pool`.

    Raises:
        OSError, pyarrow.ArrowException: the file is not readable as Parquet.
    """
    import pyarrow.dataset as ds  # imports pandas: only when a Parquet file is read

    return ds.dataset(path, format="parquet").to_table(memory_pool=table_memory_pool())


def read_parquet(path: Path) -> TableChunk:
    """Read a canonical Parquet table and cast it to the canonical schema.

    Raises:
        InputError: not readable as Parquet, not a canonical table, or a column of the wrong type.
    """
    try:
        table = read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read Parquet: {exc}") from exc
    kind = table_kind(set(table.column_names))
    if kind is None:
        raise InputError(f"{path}: Parquet columns are not a canonical table: {table.column_names}")
    schema = TABLES[kind]
    columns = []
    unusable = 0
    for field in schema:
        if field.name == "prompt_version" and field.name in table.column_names:
            column, unusable = clean_prompt_versions(table[field.name])
            columns.append(column)
        elif field.name in table.column_names:
            try:
                columns.append(table[field.name].cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InputError(
                    f"{path}: column {field.name!r} cannot be read as {field.type}: {exc}"
                ) from exc
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return TableChunk(kind, pa.Table.from_arrays(columns, schema=schema), unusable)


def _rows(items: Any, what: str, trajectory_id: str) -> list[dict[str, Any]]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ValueError(f"'{what}' is not a list of objects")
    rows = []
    for item in items:
        row = {k: item.get(k) for k in TABLES[what].names} | {"trajectory_id": trajectory_id}
        for key in _TIME_COLUMNS:
            if key in row:
                row[key] = parse_time(row[key])
        for key in ("tool_args",):
            if row.get(key) is not None and not isinstance(row[key], str):
                row[key] = json.dumps(row[key], sort_keys=True)
        rows.append(row)
    return rows


def _record(obj: Any, options: ReadOptions, where: str) -> Record:
    """The :class:`Record` of one JSONL line's value.

    Raises:
        ValueError, TypeError: not a canonical trajectory row (the line is quarantined).
    """
    if not isinstance(obj, Mapping):
        raise ValueError("record is not a JSON object")
    trajectory_id = obj.get("trajectory_id")
    if not isinstance(trajectory_id, str) or not trajectory_id:
        raise ValueError("missing 'trajectory_id'")
    label = obj.get("outcome_label") or "unknown"
    if label not in OUTCOME_LABELS:
        raise ValueError(f"'outcome_label' must be one of {', '.join(OUTCOME_LABELS)}")
    trajectory = {k: obj.get(k) for k in TABLES["trajectories"].names}
    trajectory |= {
        "outcome_label": label,
        "source_format": obj.get("source_format") or NAME,
        "source_uri": obj.get("source_uri") or options.source_uri,
    }
    for key in _TIME_COLUMNS:
        trajectory[key] = parse_time(trajectory[key])
    if trajectory["metadata"] is not None and not isinstance(trajectory["metadata"], str):
        trajectory["metadata"] = json.dumps(trajectory["metadata"], sort_keys=True)
    steps = _rows(obj.get("steps"), "steps", trajectory_id)
    for idx, step in enumerate(steps):
        step["step_idx"] = idx if step.get("step_idx") is None else step["step_idx"]
        step["is_error"] = bool(step.get("is_error"))
    feedback = _rows(obj.get("feedback"), "feedback", trajectory_id)
    return Record(finish_trajectory(trajectory, steps), steps, feedback, where)


def read(path: Path, options: ReadOptions) -> Iterator[Parsed | TableChunk | RecordBatch]:
    """Yield a :class:`TableChunk` for Parquet; for JSONL, :class:`RecordBatch` items for the
    lines read column-wise (:mod:`~pipeline.ingest.formats._canonical_vector`) and a
    :class:`Record` or :class:`Quarantined` for each other non-blank line, in file order
    (:func:`~pipeline.ingest.formats._linebatch.read_line_batches`; every record hashed by its
    rows, as before).

    Raises:
        InputError: the file cannot be read.
    """
    if read_head(path, 4) == b"PAR1":
        yield read_parquet(path)
        return

    def build(where: str, obj: Any) -> Record:
        return _record(obj, options, where)

    vector = partial(canonical_tables, source_uri=options.source_uri)
    yield from read_line_batches(path, options, vector, build, line_hash=False)

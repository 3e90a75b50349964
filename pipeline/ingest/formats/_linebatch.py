"""JSON Lines formats read column-wise, a block of lines at a time: the records DuckDB can map
come as :class:`RecordBatch` items (whole tables), the others as the per-record reader makes
them (:class:`~pipeline.ingest.formats._common.Record` or
:class:`~pipeline.ingest.formats._common.Quarantined`), in file order.

:func:`read_line_batches` streams the file (plain, gzip or Zstandard, see
:mod:`~pipeline.ingest.formats._io`) in blocks of at most :data:`BLOCK_LINES` lines. A line
goes to the format's column-wise mapper (``vector``) when it looks like one JSON object (after
its surrounding ASCII blanks, it opens with ``{`` and closes with ``}``, is UTF-8, and holds
fewer brackets than :data:`~pipeline.ingest.formats._jsontext.MAX_DEPTH`); the mapper says
which of those it mapped. Every other line is read as before: decoded, parsed by
:func:`~pipeline.ingest.formats._jsontext.loads` and built by the format's ``build``, or
quarantined with the same reason as :func:`~pipeline.ingest.formats._io.iter_json_lines` gives.
A bad line costs only its own per-record reading.

Every record of the file, column-wise or not, gets the same content hash: the SHA-256 (hex) of
its line's bytes without the surrounding ASCII blanks and line ending (``record_sha256``;
:attr:`Record.digest <pipeline.ingest.formats._common.Record>` for the others), computed once
per line with :mod:`hashlib`, with no serialisation of the parsed record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from pipeline.errors import InputError
from pipeline.ingest.formats._chat_vector import numbers
from pipeline.ingest.formats._common import Parsed, Quarantined, Record, truncate
from pipeline.ingest.formats._io import ReadOptions, raw_lines
from pipeline.ingest.formats._jsontext import MAX_DEPTH, loads

__all__ = ["BLOCK_LINES", "RecordBatch", "Vector", "line_digest", "read_line_batches"]

# Lines per block: a block's tables are built, handed on and dropped before the next is read.
BLOCK_LINES = 20_000
# A block also ends when its lines hold this many bytes.
_BLOCK_BYTES = 64 << 20
# Lines per Arrow batch handed to DuckDB.
_SCAN_ROWS = 2048

# ``vector(con, lines)``: ``lines`` has ``rec`` (int64, position in the block) and ``line``
# (string: the line without its surrounding ASCII blanks); returns the tables of the lines it
# mapped (``record_sha256``: the SHA-256 of ``line``, as :func:`line_digest`), their ``rec``
# (ascending) and the ``rec`` of each steps and feedback row (see ``chat_tables``).
Vector = Callable[
    [duckdb.DuckDBPyConnection, pa.Table],
    tuple[dict[str, pa.Table], pa.Array, pa.Array, pa.Array],
]


@dataclass
class RecordBatch:
    """Records of one stretch of consecutive lines, already in the canonical tables.

    ``tables``: ``trajectories`` (one row per record, in file order, ``record_sha256`` set),
    ``steps`` and ``feedback`` (rows grouped by record, in the same order), with the schemas of
    :data:`~pipeline.ingest.schema.TABLES`; ``where``: where each record was read (``line 3``);
    ``steps_owner`` / ``feedback_owner``: for each steps / feedback row, the row of its record
    in ``trajectories`` (int64 numpy arrays). Each record is one source record (one line).
    """

    tables: dict[str, pa.Table]
    where: list[str]
    steps_owner: np.ndarray
    feedback_owner: np.ndarray

    @property
    def records(self) -> int:
        """How many source records (lines) the batch holds."""
        return self.tables["trajectories"].num_rows


def line_digest(line: bytes) -> str:
    """The content hash of a JSON Lines record: SHA-256 (hex) of its bytes without the
    surrounding ASCII blanks (spaces, tabs, CR, LF, VT, FF)."""
    return hashlib.sha256(line.strip()).hexdigest()


def _slow(
    number: int, line: bytes, build: Callable[[str, Any], Record], line_hash: bool = True
) -> Parsed | None:
    """One line read record by record, as :func:`~pipeline.ingest.formats._io.iter_lines`,
    :func:`~pipeline.ingest.formats._io.iter_json_lines` and
    :func:`~pipeline.ingest.formats._io.map_records` do; ``None`` for a blank line. With
    ``line_hash`` the record's ``digest`` is the line's (:func:`line_digest`), else left unset."""
    where = f"line {number}"
    try:
        text = line.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        return Quarantined(
            where,
            f"not UTF-8 text (byte {exc.start} of the line)",
            truncate(line.decode("utf-8", "replace")),
        )
    if not text.strip():
        return None
    try:
        obj = loads(text)
    except ValueError as exc:
        reason = str(exc) if not isinstance(exc, json.JSONDecodeError) else f"invalid JSON: {exc}"
        return Quarantined(where, reason, truncate(text))
    try:
        record = build(where, obj)
    except (ValueError, TypeError, OverflowError) as exc:
        return Quarantined(where, str(exc), truncate(obj))
    if line_hash:
        record.digest = line_digest(line)
    return record


def _candidate(line: bytes) -> bool:
    """Whether the column-wise mapper may take ``line``: one JSON object by its ends, not
    nested beyond what :func:`~pipeline.ingest.formats._jsontext.loads` reads."""
    stripped = line.strip()
    return (
        stripped[:1] == b"{"
        and stripped[-1:] == b"}"
        and stripped.count(b"{") + stripped.count(b"[") <= MAX_DEPTH
    )


class _Block:
    """The lines of one block: ``(number, line)`` with ``None`` for a line too long to read
    (its quarantine item is kept in ``ready``)."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, bytes]] = []
        self.ready: dict[int, Quarantined] = {}
        self.size = 0

    def full(self) -> bool:
        return len(self.lines) >= BLOCK_LINES or self.size >= _BLOCK_BYTES


def _vectorised(
    con: duckdb.DuckDBPyConnection, block: _Block, vector: Vector
) -> tuple[dict[str, pa.Table], np.ndarray, np.ndarray, np.ndarray] | None:
    """Run ``vector`` on the candidate lines of ``block``; ``None`` when there are none, they
    are not all UTF-8, or DuckDB fails on them (the block is then read record by record)."""
    recs = [
        i for i, (_, line) in enumerate(block.lines) if i not in block.ready and _candidate(line)
    ]
    if not recs:
        return None
    try:
        texts = pa.array([block.lines[i][1].strip() for i in recs], pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:  # a line that is not UTF-8: each line is decoded on its own
        return None
    # in batches: DuckDB scans the batches of an Arrow table in parallel
    lines = pa.table({"rec": pa.array(recs, pa.int64()), "line": texts})
    lines = pa.Table.from_batches(lines.to_batches(max_chunksize=_SCAN_ROWS))
    try:
        tables, fast, steps_rec, feedback_rec = vector(con, lines)
    except duckdb.Error:
        return None
    fast_np = numbers(fast)
    steps_owner = np.searchsorted(fast_np, numbers(steps_rec))
    feedback_owner = np.searchsorted(fast_np, numbers(feedback_rec))
    return tables, fast_np, steps_owner, feedback_owner


def _emit(
    con: duckdb.DuckDBPyConnection,
    block: _Block,
    vector: Vector,
    build: Callable[[str, Any], Record],
    line_hash: bool,
) -> Iterator[Parsed | RecordBatch]:
    """The items of ``block`` in line order: runs of mapped lines as one :class:`RecordBatch`
    each, every other line as the per-record reader makes it."""
    mapped = _vectorised(con, block, vector)
    fast = mapped[1] if mapped is not None else np.empty(0, np.int64)
    position = 0  # next block position to emit
    count = len(block.lines)
    while position < count:
        start = int(np.searchsorted(fast, position))
        if start < len(fast) and fast[start] == position:
            end = start
            while end + 1 < len(fast) and fast[end + 1] == fast[end] + 1:
                end += 1
            assert mapped is not None
            yield _slice(block, mapped, start, end + 1)
            position = int(fast[end]) + 1
            continue
        if position in block.ready:
            yield block.ready[position]
        else:
            number, line = block.lines[position]
            item = _slow(number, line, build, line_hash)
            if item is not None:
                yield item
        position += 1


def _slice(
    block: _Block,
    mapped: tuple[dict[str, pa.Table], np.ndarray, np.ndarray, np.ndarray],
    start: int,
    end: int,
) -> RecordBatch:
    """The :class:`RecordBatch` of the mapped records ``start:end`` (rows of ``mapped``)."""
    tables, fast, steps_owner, feedback_owner = mapped
    first_step, last_step = np.searchsorted(steps_owner, [start, end])
    first_fb, last_fb = np.searchsorted(feedback_owner, [start, end])
    return RecordBatch(
        {
            "trajectories": tables["trajectories"].slice(start, end - start),
            "steps": tables["steps"].slice(first_step, last_step - first_step),
            "feedback": tables["feedback"].slice(first_fb, last_fb - first_fb),
        },
        [f"line {block.lines[int(i)][0]}" for i in fast[start:end]],
        steps_owner[first_step:last_step] - start,
        feedback_owner[first_fb:last_fb] - start,
    )


def read_line_batches(
    path: Path,
    options: ReadOptions,
    vector: Vector,
    build: Callable[[str, Any], Record],
    line_hash: bool = True,
) -> Iterator[Parsed | RecordBatch]:
    """The records of the JSON Lines file ``path``, in file order: :class:`RecordBatch` items
    for the lines ``vector`` maps, and for every other non-blank line what ``build(where,
    obj)`` makes of it (a :class:`~pipeline.ingest.formats._common.Record`, whose ``digest`` is
    set) or a :class:`~pipeline.ingest.formats._common.Quarantined` (too long, not UTF-8, not
    JSON, nested too deeply, or rejected by ``build`` with ``ValueError``, ``TypeError`` or
    ``OverflowError``). With ``line_hash`` false, a record read one by one gets no ``digest``
    (ingest hashes its rows, :func:`~pipeline.ingest._run.record_sha256`), and ``vector`` is to
    give its records that same hash.

    Raises:
        InputError: the file is unreadable or its compressed data is corrupt (the records of
            the lines before are yielded first).
    """
    limit = options.max_record_bytes
    con = duckdb.connect()
    try:
        block = _Block()
        try:
            for number, line, head in raw_lines(path, limit):
                if line is None:
                    block.ready[len(block.lines)] = Quarantined(
                        f"line {number}",
                        f"line longer than {limit} bytes; not parsed (raise --max-record-mb "
                        "if it is a real record)",
                        truncate(head.decode("utf-8", "replace")),
                    )
                    line = b""
                block.lines.append((number, line))
                block.size += len(line)
                if block.full():
                    yield from _emit(con, block, vector, build, line_hash)
                    block = _Block()
        except InputError:
            yield from _emit(con, block, vector, build, line_hash)
            raise
        yield from _emit(con, block, vector, build, line_hash)
    finally:
        con.close()

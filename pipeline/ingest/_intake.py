"""Reading one input file into parts of the canonical tables, with its accounting: what
:func:`pipeline.ingest.ingest` does per file.

:func:`read_file` runs the file's adapter and settles every record it yields: converted to
Arrow (in batches), deduplicated, renamed, superseding an earlier version, or quarantined, so
that per file ``records_read == ingested + deduplicated + quarantined``. Records that come
already as tables (:class:`~pipeline.ingest.formats.RecordBatch`, Chat JSONL read column-wise)
are settled the same way, only their ids one by one; steps rows go to the run's
:class:`~pipeline.ingest._spill.StepsSpill` as they are converted. A file that fails part
way (an :class:`~pipeline.errors.InputError` from its adapter: not of its format, cut, not
UTF-8, ...) keeps what was read before and counts the rest as one quarantined unit; the batch
goes on.

Repeated trajectory ids (:func:`accept`, :func:`~pipeline.ingest._run.settle`):

- the same id and the same content (the record's ``digest`` from its reader, such as the
  SHA-256 of its JSON Lines line or of a tau2 simulation's JSON, else :func:`record_sha256`) is
  one record read twice: the later is counted as deduplicated. A record that comes as a
  :class:`~pipeline.ingest.formats.Pending` (its id and source hash, its rows not built) is
  counted so without being built (:func:`~pipeline.ingest._run.is_duplicate`);
- the same id from the same file with other content is a corrected record: the later version
  (in file order, or this run's over a stored one) supersedes the earlier, whose rows are
  dropped, with a warning;
- the same id from another file with other content keeps both, the later as
  ``<id>~<first 8 hex of its hash>``, with a warning.

The ``prompt_version`` an adapter found is settled here for every format
(:func:`~pipeline.ingest.formats.clean_prompt_version`): a value that is neither text nor an
integer is left null, and the file gets one warning saying how many runs had such a value. The
column is not part of :func:`record_sha256` (it is part of a line's bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import InputError
from pipeline.ingest._run import (
    Run,
    Seen,
    feedback_key,
    is_duplicate,
    record_sha256,
    safe_text,
    settle,
)
from pipeline.ingest._spill import StepsSpill
from pipeline.ingest.formats import (
    FeedbackRows,
    Pending,
    Quarantined,
    ReadOptions,
    Record,
    RecordBatch,
    TableChunk,
    clean_prompt_version,
    truncate,
)
from pipeline.ingest.schema import TABLES, to_table
from pipeline.ingest.store import FileReport
from pipeline.progress import RECORDS_EVERY

__all__ = ["read_file"]

# Records are converted to Arrow in batches of this many, so a large file is never held as
# Python objects all at once.
_BATCH = 5000
# Errors an adapter may raise on input it was not written for; caught per file as a last
# resort so that one file never stops the batch (the reason says "unexpected").
_UNEXPECTED = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
)


def _rename(record: Record, new_id: str) -> None:
    record.trajectory["trajectory_id"] = new_id
    for row in (*record.steps, *record.feedback):
        row["trajectory_id"] = new_id


def _wrong_type(exc: Exception) -> str:
    if isinstance(exc, UnicodeEncodeError):
        return (
            f"not valid Unicode: a lone surrogate {exc.object[exc.start : exc.end]!r} in a "
            "string (a '\\ud800'-style escape without its pair)"
        )
    return f"wrong type: {exc}"


def _convert(records: list[Record]) -> tuple[dict[str, pa.Table], list[tuple[Record, str]]]:
    """Tables for ``records``; records whose values do not fit the schema are returned apart."""

    def build(batch: list[Record]) -> dict[str, pa.Table]:
        return {
            "trajectories": to_table("trajectories", [r.trajectory for r in batch]),
            "steps": to_table("steps", [s for r in batch for s in r.steps]),
            "feedback": to_table("feedback", [f for r in batch for f in r.feedback]),
        }

    errors = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError)
    try:
        return build(records), []
    except errors:
        pass
    good: list[dict[str, pa.Table]] = []
    bad: list[tuple[Record, str]] = []
    for record in records:
        try:
            good.append(build([record]))
        except errors as exc:
            bad.append((record, _wrong_type(exc)))
    tables = {
        name: pa.concat_tables([g[name] for g in good]) if good else to_table(name, [])
        for name in TABLES
    }
    return tables, bad


class _File:
    """The reading of one file: its report, its parts, the records waiting to be converted."""

    def __init__(self, path: Path, report: FileReport, run: Run, spill: StepsSpill) -> None:
        self.path, self.report, self.run, self.spill = path, report, run, spill
        self.out: dict[str, list[tuple[pa.Table, bool]]] = {name: [] for name in TABLES}
        self.records: list[Record] = []
        self.dropped: set[str] = set()  # ids of converted records a later version replaced
        # run id (lower case) -> why part of it could not be read
        self.tainted: dict[str, str] = {}
        self.unusable_prompt_versions = 0  # runs whose prompt_version was left null
        # the batch being taken (take_batch): accepted id -> its row, and which rows to keep
        self.batch_rows: dict[str, int] = {}
        self.batch_keep = np.ones(0, dtype=bool)

    def reject(self, where: str, reason: str, raw: str, records: int = 1) -> None:
        self.report.quarantined += records
        self.run.quarantine_row(str(self.path), where, reason, raw)

    def flush(self) -> None:
        """Convert the waiting records (dropping superseded rows first)."""
        self.drop_superseded()
        if not self.records:
            return
        tables, bad = _convert(self.records)
        for record, reason in bad:
            self.run.seen.pop(record.trajectory["trajectory_id"], None)
            self.reject(record.where, reason, truncate(record.trajectory), record.records)
        self.add(tables)
        self.records.clear()

    def add(self, tables: dict[str, pa.Table]) -> None:
        """Append converted rows (tied to their trajectories) and count them."""
        for name, table in tables.items():
            if name == "steps":
                self.spill.add(self.report, table, True)
            else:
                self.out[name].append((table, True))
            setattr(self.report, name, getattr(self.report, name) + table.num_rows)

    def drop_superseded(self) -> None:
        """Drop the converted rows of the trajectories a later version replaced."""
        if self.dropped:
            self.spill.drop(self.dropped, self.report)
            drop = pa.array(sorted(self.dropped), type=pa.string())
            for name, parts in self.out.items():
                for index, (table, tied) in enumerate(parts):
                    keep = pc.invert(pc.is_in(table.column("trajectory_id"), value_set=drop))
                    kept = table.filter(keep)
                    setattr(self.report, name, getattr(self.report, name) - len(table) + len(kept))
                    parts[index] = (kept, tied)
            self.dropped.clear()

    def take(self, record: Record) -> None:
        version, usable = clean_prompt_version(record.trajectory.get("prompt_version"))
        record.trajectory["prompt_version"] = version
        self.unusable_prompt_versions += not usable
        trajectory_id = str(record.trajectory["trajectory_id"]).lower()
        if trajectory_id in self.tainted:
            self.reject(
                record.where,
                f"part of this run could not be read ({self.tainted[trajectory_id]}); the run "
                "is quarantined whole rather than ingested with a gap",
                truncate(record.trajectory),
                record.records,
            )
            return
        try:
            kept = accept(self.path, record, self.report, self.run, self)
        except RecursionError:
            self.reject(record.where, "nested too deeply to read", "", record.records)
            return
        if kept:
            self.records.append(record)
        if len(self.records) >= _BATCH:
            self.flush()

    def take_pending(self, item: Pending) -> None:
        """Take a record known by its id and source hash as :meth:`take` takes a record, but
        count it as deduplicated without building its rows when that is all
        :func:`~pipeline.ingest._run.settle` would do with it (:func:`is_duplicate`)."""
        trajectory_id = item.trajectory_id
        if trajectory_id.lower() not in self.tainted and is_duplicate(
            self.path, trajectory_id, item.digest, self.run
        ):
            self.report.deduplicated += item.records
            return
        built = item.build()
        if isinstance(built, Quarantined):
            self.quarantined(built)
            return
        built.digest = item.digest
        self.take(built)

    def quarantined(self, item: Quarantined) -> None:
        """Quarantine ``item``, and later records of the runs it was part of."""
        self.reject(item.where, item.reason, item.raw, item.records)
        for trajectory_id in item.trajectory_ids:
            self.tainted.setdefault(trajectory_id.lower(), f"{item.where}: {item.reason}")

    def take_batch(self, batch: RecordBatch) -> None:
        """Take the records of ``batch`` as :meth:`take` takes each record: prompt versions
        settled, tainted runs quarantined, ids settled (:func:`settle`), column-wise: only the
        id bookkeeping is per record."""
        self.flush()  # what waits comes first in the file
        tables = dict(batch.tables)
        trajectories = tables["trajectories"]
        ids = trajectories.column("trajectory_id").to_pylist()
        digests = trajectories.column("record_sha256").to_pylist()
        self.batch_keep = np.ones(len(ids), dtype=bool)
        final = list(ids)
        for row, (trajectory_id, digest, where) in enumerate(
            zip(ids, digests, batch.where, strict=True)
        ):
            if self.tainted and trajectory_id.lower() in self.tainted:
                self.batch_keep[row] = False
                self.reject(
                    where,
                    f"part of this run could not be read ({self.tainted[trajectory_id.lower()]}); "
                    "the run is quarantined whole rather than ingested with a gap",
                    truncate(trajectories.slice(row, 1).to_pylist()[0]),
                )
                continue
            kept = settle(
                self.path, trajectory_id, digest, where, 1, self.report, self.run, self.supersede
            )
            if kept is None:
                self.batch_keep[row] = False
                continue
            final[row] = kept
            self.batch_rows[kept] = row
        self.batch_rows = {}
        self.drop_superseded()
        self.add(_batch_tables(batch, tables, final, ids, self.batch_keep, self))

    def supersede(self, trajectory_id: str) -> None:
        """Drop this file's earlier version of ``trajectory_id`` (in the batch being taken,
        waiting or converted)."""
        row = self.batch_rows.pop(trajectory_id, None)
        if row is not None:
            self.batch_keep[row] = False
            return
        waiting = [r for r in self.records if r.trajectory["trajectory_id"] == trajectory_id]
        if waiting:
            self.records = [r for r in self.records if r not in waiting]
        else:
            self.dropped.add(trajectory_id)


def _batch_tables(
    batch: RecordBatch,
    tables: dict[str, pa.Table],
    final: list[str],
    ids: list[str],
    keep: np.ndarray,
    reading: _File,
) -> dict[str, pa.Table]:
    """``tables`` of ``batch`` with the kept records only, their ids as settled (``final``,
    where ``ids`` were read) and their prompt versions cleaned (:func:`clean_prompt_version`,
    unusable ones counted on ``reading``)."""
    trajectories = tables["trajectories"]
    versions = trajectories.column("prompt_version")
    if versions.null_count < len(versions):
        cleaned = []
        for value in versions.to_pylist():
            version, usable = clean_prompt_version(value)
            cleaned.append(version)
            reading.unusable_prompt_versions += not usable
        trajectories = _replace(trajectories, "prompt_version", pa.array(cleaned, pa.string()))
    owners = {"steps": batch.steps_owner, "feedback": batch.feedback_owner}
    tables = dict(tables, trajectories=trajectories)
    if final != ids:
        renamed = pa.array(final, pa.string())
        for name, table in tables.items():
            column = renamed if name == "trajectories" else pc.take(renamed, owners[name])
            tables[name] = _replace(table, "trajectory_id", column)
    if keep.all():
        return tables
    return {
        name: table.filter(pa.array(keep if name == "trajectories" else keep[owners[name]]))
        for name, table in tables.items()
    }


def _replace(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    """``table`` with its column ``name`` replaced by ``column``."""
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(index), column)


def read_file(
    path: Path,
    adapter: Any,
    options: ReadOptions,
    report: FileReport,
    run: Run,
    spill: StepsSpill,
    tick: Callable[[int], None] | None = None,
) -> dict[str, list[tuple[pa.Table, bool]]]:
    """The ``trajectories`` and ``feedback`` tables read from ``path`` by ``adapter``, by name,
    each with whether its rows are tied to their trajectory by construction (built from whole
    records: True) or by id alone (canonical table chunks: False, to be checked for orphans);
    the ``steps`` rows go to ``spill`` as they are converted (and its list here stays empty).
    Fills ``report`` and adds to ``run``; an error part way through the file quarantines the
    rest as one unit (its reason also in ``report.reason``). ``tick`` is called with
    ``report.records_read`` about every :data:`~pipeline.progress.RECORDS_EVERY` records."""
    reading = _File(path, report, run, spill)
    due = RECORDS_EVERY
    try:
        for item in adapter.read(path, options):
            if tick is not None and report.records_read >= due:
                due = report.records_read + RECORDS_EVERY
                tick(report.records_read)
            if isinstance(item, TableChunk):
                reading.unusable_prompt_versions += item.unusable_prompt_versions
                _take_chunk(path, item, report, run.seen, reading.out, reading.reject)
                continue
            report.records_read += item.records
            if isinstance(item, FeedbackRows):
                keys = [feedback_key(r) for r in item.rows]
                if keys and all(k in run.stored_feedback for k in keys):
                    report.deduplicated += item.records
                    continue
                run.stored_feedback.update(keys)
                run.loose.append((report, item))
            elif isinstance(item, RecordBatch):
                reading.take_batch(item)
            elif isinstance(item, Quarantined):
                reading.quarantined(item)
            elif isinstance(item, Pending):
                reading.take_pending(item)
            else:
                reading.take(item)
    except (InputError, *_UNEXPECTED) as exc:
        _stopped(reading, exc)
    reading.flush()
    for table, tied in reading.out["steps"]:  # canonical chunks
        spill.add(report, table, tied)
    reading.out["steps"] = []
    report.ingested = report.records_read - report.quarantined - report.deduplicated
    if reading.unusable_prompt_versions:
        count = reading.unusable_prompt_versions
        run.warnings.append(
            f"{path}: {count} run{'s' if count != 1 else ''} recorded a prompt version that is "
            "neither text nor an integer (an object, list, boolean or number): prompt_version "
            "left null"
        )
    return reading.out


def _stopped(reading: _File, exc: BaseException) -> None:
    """Count what an error left unread in the file as one quarantined unit."""
    report = reading.report
    if isinstance(exc, InputError):
        reason = str(exc)
    elif isinstance(exc, RecursionError):
        reason = f"{reading.path}: nested too deeply to read"
    else:
        reason = f"{reading.path}: unexpected error while reading: {type(exc).__name__}: {exc}"
    where = "file" if report.records_read == 0 else f"after {report.records_read} records"
    if report.records_read:
        reason += f"; the {report.records_read} records before were read, the rest is not"
    report.records_read += 1
    report.reason = safe_text(reason)
    reading.reject(where, reason, "")


def accept(path: Path, record: Record, report: FileReport, run: Run, reading: _File) -> bool:
    """Give ``record`` its content hash (``record.digest`` when the reader computed one, else
    :func:`record_sha256`) and settle its trajectory id (:func:`settle`): True when it is to be
    ingested (perhaps renamed), False when it is counted as deduplicated.

    Raises:
        RecursionError: the record is nested too deeply to hash.
    """
    digest = record.digest or record_sha256(record)
    record.trajectory["record_sha256"] = digest
    trajectory_id = str(record.trajectory["trajectory_id"])
    kept = settle(
        path, trajectory_id, digest, record.where, record.records, report, run, reading.supersede
    )
    if kept is not None and kept != trajectory_id:
        _rename(record, kept)
    return kept is not None


def _take_chunk(
    path: Path,
    chunk: TableChunk,
    report: FileReport,
    seen: dict[str, Seen],
    out: dict[str, list[tuple[pa.Table, bool]]],
    reject: Callable[[str, str, str], None],
) -> None:
    """Take a canonical table chunk. Its steps and feedback rows are tied to trajectories by id
    alone, so a repeated trajectory id cannot be renamed here: it is quarantined."""
    table = chunk.table
    report.records_read += table.num_rows
    column = table.column("trajectory_id")
    if _all_ids_fresh(column, chunk.name, seen):
        # the common case, checked column-wise: every id present, and for trajectories none
        # repeated (within the chunk or from earlier input); no row to quarantine
        if chunk.name == "trajectories":
            seen.update(
                (trajectory_id, Seen(f"{path} row {row}", None, str(path)))
                for row, trajectory_id in enumerate(column.to_pylist())
            )
        out[chunk.name].append((table, False))
        setattr(report, chunk.name, getattr(report, chunk.name) + table.num_rows)
        return
    keep = []
    for row, trajectory_id in enumerate(column.to_pylist()):
        if not trajectory_id:
            reject(f"row {row}", "missing trajectory_id", "")
        elif chunk.name == "trajectories" and trajectory_id in seen:
            reject(
                f"row {row}",
                f"duplicate trajectory_id {trajectory_id!r} (first seen in "
                f"{seen[trajectory_id].where}); canonical tables cannot be renamed, fix the id",
                trajectory_id,
            )
        else:
            if chunk.name == "trajectories":
                seen[trajectory_id] = Seen(f"{path} row {row}", None, str(path))
            keep.append(row)
    kept = table.take(pa.array(keep, type=pa.int64()))
    out[chunk.name].append((kept, False))
    setattr(report, chunk.name, getattr(report, chunk.name) + kept.num_rows)


def _all_ids_fresh(column: pa.ChunkedArray, name: str, seen: dict[str, Seen]) -> bool:
    """True when no id in ``column`` is null or empty and, for the trajectories table, none
    repeats within the column or is in ``seen``."""
    if column.null_count or pc.any(pc.equal(pc.utf8_length(column), 0)).as_py():
        return False
    if name != "trajectories":
        return True
    if pc.count_distinct(column).as_py() != len(column):
        return False
    return not seen or not any(trajectory_id in seen for trajectory_id in column.to_pylist())

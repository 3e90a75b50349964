"""Reading one input file into parts of the canonical tables, with its accounting: what
:func:`pipeline.ingest.ingest` does per file.

:func:`read_file` runs the file's adapter and settles every record it yields: converted to
Arrow (in batches), deduplicated, renamed, superseding an earlier version, or quarantined, so
that per file ``records_read == ingested + deduplicated + quarantined``. A file that fails part
way (an :class:`~pipeline.errors.InputError` from its adapter: not of its format, cut, not
UTF-8, ...) keeps what was read before and counts the rest as one quarantined unit; the batch
goes on.

Repeated trajectory ids (:func:`accept`):

- the same id and the same content (:func:`record_sha256`) is one record read twice: the later
  is counted as deduplicated;
- the same id from the same file with other content is a corrected record: the later version
  (in file order, or this run's over a stored one) supersedes the earlier, whose rows are
  dropped, with a warning;
- the same id from another file with other content keeps both, the later as
  ``<id>~<first 8 hex of its hash>``, with a warning.

The ``prompt_version`` an adapter found is settled here for every format
(:func:`~pipeline.ingest.formats.clean_prompt_version`): a value that is neither text nor an
integer is left null, and the file gets one warning saying how many runs had such a value. The
column is not part of :func:`record_sha256`, so that a store written before it existed still
recognises the runs it holds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import InputError
from pipeline.ingest.formats import (
    FeedbackRows,
    Quarantined,
    ReadOptions,
    Record,
    TableChunk,
    clean_prompt_version,
    truncate,
)
from pipeline.ingest.schema import TABLES, to_table
from pipeline.ingest.store import FileReport

__all__ = ["Run", "Seen", "feedback_key", "read_file", "record_sha256", "safe_text"]

# Records are converted to Arrow in batches of this many, so a large file is never held as
# Python objects all at once.
_BATCH = 5000
# How a renamed id ends: "~" and the first 8 hex digits of the record's SHA-256.
_RENAMED = re.compile(r"^(.*)~[0-9a-f]{8}$")
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


def safe_text(text: str) -> str:
    """``text`` with characters UTF-8 cannot hold (lone surrogates) escaped, so that it can be
    written to the quarantine and the accounting."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class Seen:
    """A trajectory id already taken: where its record was read (``<path> line 3``), its content
    hash (``None`` for canonical table rows), the path of its file (``source_uri``) and how many
    source records it was built from."""

    where: str
    digest: str | None
    path: str
    records: int = 1


@dataclass
class Run:
    """State shared by the files of one ingest.

    ``seen``: trajectory id -> :class:`Seen`; ``stored``: the ids held by the previous store;
    ``renamed_from``: ``(original id, path)`` -> the ``<id>~<hash>`` it was kept under;
    ``superseded``: ids of the previous store whose rows a later version replaces;
    ``stored_feedback``: keys of feedback rows already stored; ``loose``: feedback items to
    attach once every file is read; the quarantine and warnings of the run.
    """

    seen: dict[str, Seen] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)
    renamed_from: dict[tuple[str, str], str] = field(default_factory=dict)
    superseded: set[str] = field(default_factory=set)
    stored_feedback: set[str] = field(default_factory=set)
    loose: list[tuple[FileReport, FeedbackRows]] = field(default_factory=list)
    quarantine: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def remember_stored(self, ids: list[str], uris: list[Any], digests: list[Any]) -> None:
        """Take the trajectories of the previous store as seen (renamed ones under their
        original id too, so that a corrected record finds the version it replaces)."""
        for trajectory_id, uri, digest in zip(ids, uris, digests, strict=True):
            self.seen[trajectory_id] = Seen(str(uri), digest, str(uri))
            self.stored.add(trajectory_id)
            renamed = _RENAMED.match(trajectory_id)
            if renamed:
                self.renamed_from.setdefault((renamed.group(1), str(uri)), trajectory_id)

    def quarantine_row(self, path: str, where: str, reason: str, raw: str) -> None:
        """Add a quarantine entry (its text made writable as UTF-8)."""
        self.quarantine.append(
            {
                "file": safe_text(path),
                "where": safe_text(where),
                "reason": safe_text(reason),
                "raw": safe_text(raw),
            }
        )


def feedback_key(row: dict[str, Any]) -> str:
    """A feedback row as text, to recognise a row already stored."""
    return json.dumps([row.get(k) for k in TABLES["feedback"].names], default=str)


# Trajectory columns left out of the content hash: where the record was read, the hash itself,
# and columns added after stores were written (a stored run's hash was computed without them).
_UNHASHED = frozenset({"source_uri", "record_sha256", "prompt_version"})


def record_sha256(record: Record) -> str:
    """SHA-256 (hex) of a record's content: its trajectory row without ``source_uri``,
    ``record_sha256`` and ``prompt_version`` (a column newer than the stored hashes; the fields
    it is read from are mostly in the hashed ``metadata`` too), its step rows and its feedback
    rows, as sorted-key JSON.

    Raises:
        RecursionError: a value nested beyond the recursion limit (the readers refuse such
            values first, see :mod:`pipeline.ingest.formats._jsontext`).
    """
    trajectory = {k: v for k, v in record.trajectory.items() if k not in _UNHASHED}
    payload = json.dumps(
        [trajectory, record.steps, record.feedback], sort_keys=True, default=str
    ).encode("utf-8", "surrogatepass")
    return hashlib.sha256(payload).hexdigest()


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

    def __init__(self, path: Path, report: FileReport, run: Run) -> None:
        self.path, self.report, self.run = path, report, run
        self.out: dict[str, list[tuple[pa.Table, bool]]] = {name: [] for name in TABLES}
        self.records: list[Record] = []
        self.dropped: set[str] = set()  # ids of converted records a later version replaced
        # run id (lower case) -> why part of it could not be read
        self.tainted: dict[str, str] = {}
        self.unusable_prompt_versions = 0  # runs whose prompt_version was left null

    def reject(self, where: str, reason: str, raw: str, records: int = 1) -> None:
        self.report.quarantined += records
        self.run.quarantine_row(str(self.path), where, reason, raw)

    def flush(self) -> None:
        """Convert the waiting records (dropping superseded rows first)."""
        if self.dropped:
            drop = pa.array(sorted(self.dropped), type=pa.string())
            for name, parts in self.out.items():
                for index, (table, tied) in enumerate(parts):
                    keep = pc.invert(pc.is_in(table.column("trajectory_id"), value_set=drop))
                    kept = table.filter(keep)
                    setattr(self.report, name, getattr(self.report, name) - len(table) + len(kept))
                    parts[index] = (kept, tied)
            self.dropped.clear()
        tables, bad = _convert(self.records)
        for record, reason in bad:
            self.run.seen.pop(record.trajectory["trajectory_id"], None)
            self.reject(record.where, reason, truncate(record.trajectory), record.records)
        for name, table in tables.items():
            self.out[name].append((table, True))
            setattr(self.report, name, getattr(self.report, name) + table.num_rows)
        self.records.clear()

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

    def supersede(self, trajectory_id: str) -> None:
        """Drop this file's earlier version of ``trajectory_id`` (waiting or converted)."""
        waiting = [r for r in self.records if r.trajectory["trajectory_id"] == trajectory_id]
        if waiting:
            self.records = [r for r in self.records if r not in waiting]
        else:
            self.dropped.add(trajectory_id)


def read_file(
    path: Path, adapter: Any, options: ReadOptions, report: FileReport, run: Run
) -> dict[str, list[tuple[pa.Table, bool]]]:
    """The tables read from ``path`` by ``adapter``, by name, each with whether its rows are
    tied to their trajectory by construction (built from whole records: True) or by id alone
    (canonical table chunks: False, to be checked for orphans). Fills ``report`` and adds to
    ``run``; an error part way through the file quarantines the rest as one unit (its reason
    also in ``report.reason``)."""
    reading = _File(path, report, run)
    try:
        for item in adapter.read(path, options):
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
            elif isinstance(item, Quarantined):
                reading.reject(item.where, item.reason, item.raw, item.records)
                for trajectory_id in item.trajectory_ids:
                    reading.tainted.setdefault(
                        trajectory_id.lower(), f"{item.where}: {item.reason}"
                    )
            else:
                reading.take(item)
    except (InputError, *_UNEXPECTED) as exc:
        _stopped(reading, exc)
    reading.flush()
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
    """Give ``record`` its content hash and settle its trajectory id (see the module): True
    when it is to be ingested (perhaps renamed), False when it is counted as deduplicated.

    Raises:
        RecursionError: the record is nested too deeply to hash.
    """
    digest = record_sha256(record)
    record.trajectory["record_sha256"] = digest
    trajectory_id = str(record.trajectory["trajectory_id"])
    source = str(path)
    where = f"{path} {record.where}".strip()
    prior = run.seen.get(trajectory_id)
    own = (
        trajectory_id
        if prior is not None and prior.path == source
        else run.renamed_from.get((trajectory_id, source))
    )
    if own is not None and own in run.seen:
        earlier = run.seen[own]
        if earlier.digest == digest:
            report.deduplicated += record.records
            return False
        del run.seen[own]
        run.renamed_from.pop((trajectory_id, source), None)
        if own in run.stored:
            run.superseded.add(own)
            what = "the stored version"
        else:
            reading.supersede(own)
            report.deduplicated += earlier.records  # the earlier version, from this file
            what = "the earlier version"
        report.superseded += 1
        run.warnings.append(
            f"{where}: trajectory_id {trajectory_id!r} was read before from {earlier.where} "
            f"with different content; this later version from the same file replaces {what}"
        )
        prior = run.seen.get(trajectory_id)
    if prior is not None:
        if prior.digest == digest:
            report.deduplicated += record.records
            return False
        new_id = f"{trajectory_id}~{digest[:8]}"
        if new_id in run.seen:
            report.deduplicated += record.records
            return False
        run.warnings.append(
            f"{where}: trajectory_id {trajectory_id!r} was already read from {prior.where} "
            f"with different content; both kept, this one as {new_id!r}"
        )
        _rename(record, new_id)
        report.renamed += 1
        run.renamed_from[(trajectory_id, source)] = new_id
        trajectory_id = new_id
    run.seen[trajectory_id] = Seen(where, digest, source, record.records)
    return True


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

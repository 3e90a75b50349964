"""Ingest: trace files in, the canonical tables out, every record accounted for.

``ingest(paths)`` expands directories, sniffs each file's format (or takes ``format=``), runs the
adapter and collects :class:`Traces`: the three canonical tables (:mod:`pipeline.ingest.schema`), the
quarantine (records that could not be ingested, with file, position, reason and raw text) and a
:class:`FileReport` per file in which ``records_read == ingested + deduplicated + quarantined``
always holds.

The store (:class:`Traces`, :class:`FileReport`) lives in :mod:`pipeline.ingest.store` and file
discovery (:func:`discover`, :func:`sniff_format`) in :mod:`pipeline.ingest.discovery`; both are
re-exported here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import InputError
from pipeline.ingest.discovery import discover, file_sha256, sniff_format
from pipeline.ingest.formats import (
    ADAPTERS,
    DEFAULT_MAX_RECORD_BYTES,
    FeedbackRows,
    Quarantined,
    ReadOptions,
    Record,
    TableChunk,
    by_name,
    outcome_from_feedback,
    truncate,
)
from pipeline.ingest.schema import TABLES, to_table
from pipeline.ingest.store import FileReport, Traces

__all__ = ["ingest", "outcomes_from_feedback", "record_sha256"]


def _convert(records: list[Record]) -> tuple[dict[str, pa.Table], list[tuple[Record, str]]]:
    """Tables for ``records``; records whose values do not fit the schema are returned apart."""

    def build(batch: list[Record]) -> dict[str, pa.Table]:
        return {
            "trajectories": to_table("trajectories", [r.trajectory for r in batch]),
            "steps": to_table("steps", [s for r in batch for s in r.steps]),
            "feedback": to_table("feedback", [f for r in batch for f in r.feedback]),
        }

    try:
        return build(records), []
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        pass
    good: list[dict[str, pa.Table]] = []
    bad: list[tuple[Record, str]] = []
    for record in records:
        try:
            good.append(build([record]))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError) as exc:
            bad.append((record, f"wrong type: {exc}"))
    tables = {
        name: pa.concat_tables([g[name] for g in good]) if good else to_table(name, [])
        for name in TABLES
    }
    return tables, bad


def record_sha256(record: Record) -> str:
    """SHA-256 (hex) of a record's content: its trajectory row without ``source_uri`` and
    ``record_sha256``, its step rows and its feedback rows, as sorted-key JSON."""
    trajectory = {
        k: v for k, v in record.trajectory.items() if k not in ("source_uri", "record_sha256")
    }
    payload = json.dumps(
        [trajectory, record.steps, record.feedback], sort_keys=True, default=str
    ).encode()
    return hashlib.sha256(payload).hexdigest()


def _rename(record: Record, new_id: str) -> None:
    record.trajectory["trajectory_id"] = new_id
    for row in (*record.steps, *record.feedback):
        row["trajectory_id"] = new_id


@dataclass
class _Run:
    """State shared by the files of one ingest: ids seen (with where and content hash), the
    feedback rows already stored, the quarantine and warnings."""

    seen: dict[str, tuple[str, str | None]]
    stored_feedback: set[str]
    quarantine: list[dict[str, str]]
    warnings: list[str]
    loose: list[tuple[FileReport, FeedbackRows]] = field(default_factory=list)


def _feedback_key(row: dict[str, Any]) -> str:
    return json.dumps([row.get(k) for k in TABLES["feedback"].names], default=str)


# Records are converted to Arrow in batches of this many, so a large file is never held as
# Python objects all at once.
_BATCH = 5000


def _read_file(
    path: Path, adapter: Any, options: ReadOptions, report: FileReport, run: _Run
) -> dict[str, list[tuple[pa.Table, bool]]]:
    """The tables read from ``path`` by name, each with whether its rows are tied to their
    trajectory by construction (built from whole records: True) or by id alone (canonical
    table chunks: False, to be checked for orphans)."""
    out: dict[str, list[tuple[pa.Table, bool]]] = {name: [] for name in TABLES}
    records: list[Record] = []

    def reject(where: str, reason: str, raw: str, records: int = 1) -> None:
        report.quarantined += records
        run.quarantine.append({"file": str(path), "where": where, "reason": reason, "raw": raw})

    def flush() -> None:
        tables, bad = _convert(records)
        for record, reason in bad:
            run.seen.pop(record.trajectory["trajectory_id"], None)
            reject(
                record.where,
                reason,
                json.dumps(record.trajectory, default=str)[:2000],
                record.records,
            )
        for name, table in tables.items():
            out[name].append((table, True))
            setattr(report, name, getattr(report, name) + table.num_rows)
        records.clear()

    for item in adapter.read(path, options):
        if isinstance(item, TableChunk):
            _take_chunk(path, item, report, run.seen, out, reject)
            continue
        report.records_read += item.records
        if isinstance(item, FeedbackRows):
            keys = [_feedback_key(r) for r in item.rows]
            if keys and all(k in run.stored_feedback for k in keys):
                report.deduplicated += item.records
                continue
            run.stored_feedback.update(keys)
            run.loose.append((report, item))
        elif isinstance(item, Quarantined):
            reject(item.where, item.reason, item.raw, item.records)
        elif _accept(path, item, report, run):
            records.append(item)
        if len(records) >= _BATCH:
            flush()
    flush()
    report.ingested = report.records_read - report.quarantined - report.deduplicated
    return out


def _accept(path: Path, record: Record, report: FileReport, run: _Run) -> bool:
    """Give ``record`` its content hash and settle a repeated id: the same content is counted
    as deduplicated (False), different content is kept under a new id with a warning (True)."""
    digest = record_sha256(record)
    record.trajectory["record_sha256"] = digest
    trajectory_id = str(record.trajectory["trajectory_id"])
    where = f"{path} {record.where}".strip()
    prior = run.seen.get(trajectory_id)
    if prior is not None:
        first_where, first_digest = prior
        if first_digest == digest:
            report.deduplicated += record.records
            return False
        new_id = f"{trajectory_id}~{digest[:8]}"
        if new_id in run.seen:
            report.deduplicated += record.records
            return False
        run.warnings.append(
            f"{where}: trajectory_id {trajectory_id!r} was already read from {first_where} "
            f"with different content; both kept, this one as {new_id!r}"
        )
        _rename(record, new_id)
        report.renamed += 1
        trajectory_id = new_id
    run.seen[trajectory_id] = (where, digest)
    return True


def _take_chunk(
    path: Path,
    chunk: TableChunk,
    report: FileReport,
    seen: dict[str, tuple[str, str | None]],
    out: dict[str, list[tuple[pa.Table, bool]]],
    reject: Any,
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
                (trajectory_id, (f"{path} row {row}", None))
                for row, trajectory_id in enumerate(column.to_pylist())
            )
        out[chunk.name].append((table, False))
        setattr(report, chunk.name, getattr(report, chunk.name) + table.num_rows)
        return
    ids = column.to_pylist()
    keep = []
    for row, trajectory_id in enumerate(ids):
        if not trajectory_id:
            reject(f"row {row}", "missing trajectory_id", "")
        elif chunk.name == "trajectories" and trajectory_id in seen:
            reject(
                f"row {row}",
                f"duplicate trajectory_id {trajectory_id!r} (first seen in "
                f"{seen[trajectory_id][0]}); canonical tables cannot be renamed, fix the id",
                trajectory_id,
            )
        else:
            if chunk.name == "trajectories":
                seen[trajectory_id] = (f"{path} row {row}", None)
            keep.append(row)
    kept = table.take(pa.array(keep, type=pa.int64()))
    out[chunk.name].append((kept, False))
    setattr(report, chunk.name, getattr(report, chunk.name) + kept.num_rows)


def _all_ids_fresh(
    column: pa.ChunkedArray, name: str, seen: dict[str, tuple[str, str | None]]
) -> bool:
    """True when no id in ``column`` is null or empty and, for the trajectories table, none
    repeats within the column or is in ``seen``."""
    if column.null_count or pc.any(pc.equal(pc.utf8_length(column), 0)).as_py():
        return False
    if name != "trajectories":
        return True
    if pc.count_distinct(column).as_py() != len(column):
        return False
    return not seen or not any(trajectory_id in seen for trajectory_id in column.to_pylist())


def ingest(
    paths: Iterable[str | Path],
    *,
    format: str | None = None,
    reward_threshold: float = 1.0,
    outcome_feedback: str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    previous: Traces | None = None,
) -> Traces:
    """Read trace files into the canonical tables.

    Args:
        paths: files, directories and glob patterns (see :func:`discover`).
        format: an adapter name to use for every file instead of sniffing.
        reward_threshold: a reward at or above it means success, for formats labelled by reward.
        outcome_feedback: the feedback name that is the outcome of trajectories whose format
            gives none (default: the usual names, see
            :func:`~pipeline.ingest.formats._common.outcome_from_feedback`).
        max_record_bytes: a JSON Lines line longer than this is quarantined unparsed.
        previous: the store of an earlier ingest (:meth:`Traces.load`). Files whose SHA-256 it
            already holds are skipped; the rest are added to it, and records already in it are
            deduplicated. If it was read with other settings (format, reward threshold, outcome
            feedback), it is ignored and everything is read again, with a warning.

    Returns:
        :class:`Traces`; steps and feedback rows whose trajectory is absent from every input are
        quarantined and counted against the file they came from. Trajectories whose format gives
        no outcome take it from their feedback (:func:`outcomes_from_feedback`).

    Raises:
        InputError: a path is missing or unreadable, a glob matches nothing, or a whole file is
            not of its format (empty, not JSON, ...).
        UnknownFormatError: a file's format cannot be recognised and ``format`` is not given.
    """
    settings = {
        "format": format,
        "reward_threshold": reward_threshold,
        "outcome_feedback": outcome_feedback,
    }
    warnings: list[str] = []
    if previous is not None and previous.settings not in ({}, settings):
        warnings.append(
            f"the stored tables were read with {previous.settings}, this run uses {settings}: "
            "read every input again"
        )
        previous = None
    files = discover(list(paths))
    run = _Run({}, set(), [], warnings)
    reports: list[FileReport] = []
    # (file, table name, table, rows tied to their trajectory by construction)
    parts: list[tuple[FileReport, str, pa.Table, bool]] = []
    stored_by_hash: dict[str, FileReport] = {}
    stored_by_path: dict[str, FileReport] = {}
    if previous is not None:
        run.quarantine.extend(previous.quarantine)
        run.warnings.extend(previous.warnings)
        ids = previous.trajectories.column("trajectory_id").to_pylist()
        uris = previous.trajectories.column("source_uri").to_pylist()
        digests = previous.trajectories.column("record_sha256").to_pylist()
        for trajectory_id, uri, digest in zip(ids, uris, digests, strict=True):
            run.seen[trajectory_id] = (str(uri), digest)
        run.stored_feedback.update(_feedback_key(r) for r in previous.feedback.to_pylist())
        for report in previous.files:
            report = FileReport(**asdict(report) | {"status": "kept"})
            stored_by_hash.setdefault(report.sha256, report)
            stored_by_path.setdefault(report.path, report)
            reports.append(report)
    for path in files:
        stat = path.stat()
        prior = stored_by_path.get(str(path))
        if prior is not None and (prior.size, prior.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            prior.status = "unchanged"
            continue
        digest = file_sha256(path)
        if digest in stored_by_hash:
            stored = stored_by_hash[digest]
            stored.status = "unchanged"
            if stored.path == str(path):
                stored.size, stored.mtime_ns = stat.st_size, stat.st_mtime_ns
            continue
        try:
            adapter = by_name(format) if format else by_name(sniff_format(path))
        except KeyError as exc:
            names = ", ".join(a.NAME for a in ADAPTERS)
            raise InputError(f"unknown format {format!r}; choose one of {names}") from exc
        report = FileReport(
            str(path), adapter.NAME, sha256=digest, size=stat.st_size, mtime_ns=stat.st_mtime_ns
        )
        stored_by_hash[digest] = report
        options = ReadOptions(
            source_uri=str(path),
            reward_threshold=reward_threshold,
            outcome_feedback=outcome_feedback,
            max_record_bytes=max_record_bytes,
        )
        for name, read in _read_file(path, adapter, options, report, run).items():
            parts.extend((report, name, t, tied) for t, tied in read)
        reports.append(report)
    known = set(run.seen)
    parts.extend((report, name, t, True) for report, name, t in _attach_loose_feedback(run, known))
    # rows built from whole records belong to their trajectory; only canonical table chunks,
    # tied by id alone, can hold orphans (checked against one id array built once)
    known_ids = None
    for index, (report, name, table, tied) in enumerate(parts):
        if name != "trajectories" and not tied:
            if known_ids is None:
                known_ids = pa.array(list(known), type=pa.string())
            kept = _drop_orphans(report, name, table, known, known_ids, run.quarantine)
            parts[index] = (report, name, kept, True)
    tables = {
        name: pa.concat_tables(
            ([getattr(previous, name)] if previous is not None else [])
            + [t for _, n, t, _ in parts if n == name]
            or [schema.empty_table()]
        )
        for name, schema in TABLES.items()
    }
    tables["trajectories"] = outcomes_from_feedback(
        tables["trajectories"], tables["feedback"], reward_threshold, outcome_feedback
    )
    return Traces(
        tables["trajectories"],
        tables["steps"],
        tables["feedback"],
        run.quarantine,
        reports,
        run.warnings,
        settings,
    )


def outcomes_from_feedback(
    trajectories: pa.Table,
    feedback: pa.Table,
    threshold: float,
    name: str | None = None,
) -> pa.Table:
    """``trajectories`` with the outcome of every ``unknown`` row taken from its feedback rows
    (from any file: a results file or a scores export may hold them), by
    :func:`~pipeline.ingest.formats._common.outcome_from_feedback`. Rows with a known outcome, or
    without usable feedback, are unchanged.
    """
    if (
        feedback.num_rows == 0
        or not pc.any(pc.equal(trajectories.column("outcome_label"), "unknown")).as_py()
    ):
        return trajectories
    labels = trajectories.column("outcome_label").to_pylist()
    unknown = {
        t
        for t, label in zip(trajectories.column("trajectory_id").to_pylist(), labels, strict=True)
        if label == "unknown"
    }
    if not unknown or feedback.num_rows == 0:
        return trajectories
    by_trajectory: dict[str, list[dict[str, Any]]] = {}
    for row in feedback.select(
        ["trajectory_id", "step_idx", "name", "value", "value_text"]
    ).to_pylist():
        if row["trajectory_id"] in unknown:
            by_trajectory.setdefault(row["trajectory_id"], []).append(row)
    if not by_trajectory:
        return trajectories
    scores = trajectories.column("outcome_score").to_pylist()
    sources = trajectories.column("outcome_source").to_pylist()
    for i, trajectory_id in enumerate(trajectories.column("trajectory_id").to_pylist()):
        rows = by_trajectory.get(trajectory_id)
        if rows and labels[i] == "unknown":
            label, score, source = outcome_from_feedback(rows, threshold, name)
            if source is not None:
                labels[i], scores[i], sources[i] = label, score, source
    for column, values in (
        ("outcome_label", labels),
        ("outcome_score", scores),
        ("outcome_source", sources),
    ):
        index = trajectories.schema.get_field_index(column)
        field = trajectories.schema.field(index)
        trajectories = trajectories.set_column(index, field, pa.array(values, field.type))
    return trajectories


def _attach_loose_feedback(run: _Run, known: set[str]) -> list[tuple[FileReport, str, pa.Table]]:
    """Feedback tables for the :class:`FeedbackRows` items whose trajectories were ingested
    (from any file); an item naming a trajectory that no input holds is quarantined whole."""
    rows_by_report: dict[int, tuple[FileReport, list[dict[str, Any]]]] = {}
    for report, item in run.loose:
        missing = sorted({str(r.get("trajectory_id")) for r in item.rows} - known)
        if missing:
            report.quarantined += item.records
            report.ingested -= item.records
            run.quarantine.append(
                {
                    "file": report.path,
                    "where": item.where,
                    "reason": f"feedback for trajectory {missing[0]!r}, which no input holds",
                    "raw": truncate(item.rows),
                }
            )
            continue
        rows_by_report.setdefault(id(report), (report, []))[1].extend(item.rows)
    out = []
    for report, rows in rows_by_report.values():
        try:
            table = to_table("feedback", rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError) as exc:
            raise InputError(f"{report.path}: feedback rows of the wrong type: {exc}") from exc
        report.feedback += table.num_rows
        out.append((report, "feedback", table))
    return out


def _drop_orphans(
    report: FileReport,
    name: str,
    table: pa.Table,
    known: set[str],
    known_ids: pa.Array,
    quarantine: list[dict[str, str]],
) -> pa.Table:
    """``table`` without the rows whose trajectory was not ingested; those are quarantined.
    ``known_ids``: ``known`` as a string array."""
    column = table.column("trajectory_id")
    if column.null_count == 0 and pc.all(pc.is_in(column, value_set=known_ids)).as_py():
        return table
    ids = column.to_pylist()
    keep = [i for i, t in enumerate(ids) if t in known]
    if len(keep) == len(ids):
        return table
    for i, trajectory_id in enumerate(ids):
        if trajectory_id not in known:
            quarantine.append(
                {
                    "file": report.path,
                    "where": f"row {i}",
                    "reason": f"{name} row of unknown trajectory {trajectory_id!r}",
                    "raw": str(trajectory_id),
                }
            )
    dropped = len(ids) - len(keep)
    report.quarantined += dropped
    report.ingested -= dropped
    setattr(report, name, getattr(report, name) - dropped)
    return table.take(pa.array(keep, type=pa.int64()))

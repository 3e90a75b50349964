"""Ingest: trace files in, the canonical tables out, every record accounted for.

``ingest(paths)`` expands directories (listing what it skips), sniffs each file's format (or
takes ``format=``), runs the adapter and collects :class:`Traces`: the three canonical tables
(:mod:`pipeline.ingest.schema`), the quarantine (records that could not be ingested, with file,
position, reason and raw text) and a :class:`FileReport` per file in which ``records_read ==
ingested + deduplicated + quarantined`` always holds. A file that cannot be read at all (empty,
not JSON, of no known format, ...) is quarantined as one unit and the other files are read.

The store (:class:`Traces`, :class:`FileReport`) lives in :mod:`pipeline.ingest.store`, file
discovery (:func:`discover`, :func:`sniff_format`) in :mod:`pipeline.ingest.discovery` and the
reading of one file (with repeated ids: deduplicated, superseded or renamed) in
:mod:`pipeline.ingest._intake`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import InputError
from pipeline.ingest._intake import read_file
from pipeline.ingest._run import Run, feedback_key, record_sha256, safe_text
from pipeline.ingest._spill import StepsSpill
from pipeline.ingest.discovery import file_sha256, sniff_format, survey
from pipeline.ingest.formats import (
    ADAPTERS,
    DEFAULT_MAX_RECORD_BYTES,
    ReadOptions,
    by_name,
    data_suffix,
    json_container,
    truncate,
)
from pipeline.ingest.outcomes import outcomes_from_feedback
from pipeline.ingest.schema import TABLES, to_table
from pipeline.ingest.store import FileReport, Traces
from pipeline.progress import Meter, Ticker

__all__ = ["STORE_VERSION", "ingest", "record_sha256"]

# How the stored tables are made, in ``Traces.settings["store_version"]``: bumped when the
# content hashes or the stored text of the same input change, so that a store of another
# version is read again rather than mixed with this one, with a warning that names the
# changes since (_STORE_CHANGES).
STORE_VERSION = 3
_STORE_CHANGES = {
    # Chat JSONL lines are hashed by their bytes (pipeline.ingest.formats._linebatch), not by
    # their rows as JSON
    2: "a Chat JSONL record's content hash is the SHA-256 of its line",
    # tau2 simulations are hashed by their source (pipeline.ingest.formats.tau2), so that
    # duplicates are known before their rows are built
    3: "a tau2 simulation's content hash is the SHA-256 of its JSON and the file's context",
}


def _whole_file(report: FileReport, reason: str, run: Run) -> FileReport:
    """``report`` for a file that cannot be read at all: one record read, quarantined."""
    report.records_read = report.quarantined = 1
    report.reason = safe_text(reason)
    run.quarantine_row(report.path, "file", reason, "")
    return report


def _container_warning(path: Path, run: Run) -> None:
    """Warn when a file named as JSON Lines holds one JSON array or document (read as such)."""
    if data_suffix(path) not in (".jsonl", ".ndjson"):
        return
    try:
        container = json_container(path)
    except InputError:
        return
    if container != "lines":
        kind = "one JSON array" if container == "array" else "one JSON document"
        run.warnings.append(
            f"{path}: named as JSON Lines but holds {kind}; read as such (rename it to .json)"
        )


def _from_previous(previous: Traces, run: Run) -> list[FileReport]:
    """Take what the previous store holds into ``run``; its file reports, marked ``kept``
    (files it skipped are not carried: this run lists its own)."""
    run.quarantine.extend(previous.quarantine)
    run.warnings.extend(previous.warnings)
    trajectories = previous.trajectories
    run.remember_stored(
        trajectories.column("trajectory_id").to_pylist(),
        trajectories.column("source_uri").to_pylist(),
        trajectories.column("record_sha256").to_pylist(),
    )
    run.stored_feedback.update(feedback_key(r) for r in previous.feedback.to_pylist())
    return [
        FileReport(**asdict(report) | {"status": "kept"})
        for report in previous.files
        if report.status != "skipped"
    ]


def _stored_tables(
    previous: Traces,
    run: Run,
    reports: list[FileReport],
    new_feedback: list[pa.Table],
    spilled: list[str] | None = None,
) -> dict[str, pa.Table]:
    """The previous store's tables without what a later version of a trajectory superseded:
    its trajectory and step rows, and its feedback rows of the names the new version's
    feedback has (rows of other names came from other files, such as a results file, and
    stay). The rows dropped are taken off the counts of the reports of their files.
    ``spilled``: the steps went to a spill file (:mod:`pipeline.ingest._spill`), which took
    out the stored steps rows of these trajectory ids (one per row): the steps are not
    returned, their rows only counted off."""
    tables = {
        name: getattr(previous, name) for name in TABLES if spilled is None or name != "steps"
    }
    if not run.superseded:
        return tables
    drop = pa.array(sorted(run.superseded), type=pa.string())
    renewed = {
        (row["trajectory_id"], row["name"])
        for table in new_feedback
        for row in table.filter(pc.is_in(table.column("trajectory_id"), value_set=drop))
        .select(["trajectory_id", "name"])
        .to_pylist()
    }
    uris = dict(
        zip(
            tables["trajectories"].column("trajectory_id").to_pylist(),
            tables["trajectories"].column("source_uri").to_pylist(),
            strict=True,
        )
    )
    kept_reports = [r for r in reports if r.status != "read"]

    def discount(name: str, ids: list[str]) -> None:
        for trajectory_id in ids:
            report = next(
                (r for r in kept_reports if r.path == uris[trajectory_id] and getattr(r, name)),
                None,
            )
            if report is not None:
                setattr(report, name, getattr(report, name) - 1)
                report.superseded += name == "trajectories"

    discount("steps", spilled or [])
    for name, table in tables.items():
        hit = pc.is_in(table.column("trajectory_id"), value_set=drop)
        if name == "feedback":
            own = [
                (t, n) in renewed
                for t, n in zip(
                    table.column("trajectory_id").to_pylist(),
                    table.column("name").to_pylist(),
                    strict=True,
                )
            ]
            hit = pc.and_(hit, pa.array(own, type=pa.bool_()))
        discount(name, table.filter(hit).column("trajectory_id").to_pylist())
        tables[name] = table.filter(pc.invert(hit))
    return tables


def ingest(
    paths: Iterable[str | Path],
    *,
    format: str | None = None,
    reward_threshold: float = 1.0,
    outcome_feedback: str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    previous: Traces | None = None,
    exclude: Iterable[str | Path] = (),
    meter: Meter | None = None,
) -> Traces:
    """Read trace files into the canonical tables.

    Args:
        paths: files, directories and glob patterns (see :func:`~pipeline.ingest.discovery.survey`).
        format: an adapter name to use for every file instead of sniffing.
        reward_threshold: a reward at or above it means success, for formats labelled by reward.
        outcome_feedback: the feedback name that is the outcome of trajectories whose format
            gives none (default: the usual names, see
            :func:`~pipeline.ingest.formats._common.outcome_from_feedback`).
        max_record_bytes: a JSON Lines line (or array item) longer than this is quarantined
            unparsed.
        previous: the store of an earlier ingest (:meth:`Traces.load`). Files whose SHA-256 it
            already holds are skipped; the rest are added to it, records already in it are
            deduplicated, and a record with a stored id from the same file but other content
            supersedes the stored version. If it was read with other settings (format, reward
            threshold, outcome feedback) or written with another :data:`STORE_VERSION`, it is
            ignored and everything is read again, with a warning.
        exclude: directories never read, nor anything below them (coach's data directory);
            directories holding a ``CACHEDIR.TAG`` are never read either.
        meter: called with the counts (:class:`~pipeline.progress.Tally`, stage ``ingest``) as
            the files are read: files done of those found, records read, bytes of the files
            read; the last equal this run's totals (:attr:`Traces.counts_this_run`).

    Returns:
        :class:`Traces`. Its ``files`` hold a :class:`FileReport` per input file, and one with
        status ``skipped`` (and a ``reason``) per file or directory discovery passed over. A
        file that cannot be read at all (empty, unreadable, not JSON, not UTF-8, of no known
        format) is one quarantined record with its ``reason``; a file that fails part way
        keeps what was read and counts the rest as one. Steps and feedback rows whose
        trajectory is absent from every input are quarantined and counted against the file
        they came from. Trajectories whose format gives no outcome take it from their feedback
        (:func:`outcomes_from_feedback`).

    Raises:
        InputError: a path does not exist, a glob matches nothing, a directory holds no trace
            file, or ``format`` names no adapter: mistakes in the request, not in the data.
    """
    if format is not None:
        try:
            by_name(format)
        except KeyError as exc:
            names = ", ".join(a.NAME for a in ADAPTERS)
            raise InputError(f"unknown format {format!r}; choose one of {names}") from exc
    settings = {
        "format": format,
        "reward_threshold": reward_threshold,
        "outcome_feedback": outcome_feedback,
        "store_version": STORE_VERSION,
    }
    run = Run()
    if previous is not None and previous.settings.get("store_version") != STORE_VERSION:
        stored = previous.settings.get("store_version", 1)
        changes = [
            text
            for version, text in _STORE_CHANGES.items()
            if not isinstance(stored, int) or version > stored
        ]
        where = f", where {'; '.join(changes)}" if changes else ""
        run.warnings.append(
            f"the stored tables were written by another coach (store version {stored}; this "
            f"one writes {STORE_VERSION}{where}): read every input again"
        )
        previous = None
    elif previous is not None and previous.settings != settings:
        run.warnings.append(
            f"the stored tables were read with {previous.settings}, this run uses {settings}: "
            "read every input again"
        )
        previous = None
    found = survey(list(paths), exclude=exclude)
    reports = _from_previous(previous, run) if previous is not None else []
    spill = StepsSpill(_stored_steps(previous) if previous is not None else ())
    # (file, table name, table, rows tied to their trajectory by construction)
    parts: list[tuple[FileReport, str, pa.Table, bool]] = []
    stored_by_hash: dict[str, FileReport] = {}
    read_by_hash: dict[str, FileReport] = {}
    stored_by_path: dict[str, FileReport] = {}
    for report in reports:
        stored_by_hash.setdefault(report.sha256, report)
        stored_by_path.setdefault(report.path, report)
    ticker = Ticker(meter, "ingest", len(found.files))
    for path in _tallied(found.files, reports, ticker):
        try:
            stat = path.stat()
            prior = stored_by_path.get(str(path))
            if prior is not None and (prior.size, prior.mtime_ns) == (
                stat.st_size,
                stat.st_mtime_ns,
            ):
                prior.status = "unchanged"
                continue
            digest = file_sha256(path)
        except (OSError, InputError) as exc:
            message = str(exc) if isinstance(exc, InputError) else f"{path}: cannot read: {exc}"
            reports.append(_whole_file(FileReport(str(path), ""), message, run))
            continue
        first = read_by_hash.get(digest)
        if first is not None:  # the same bytes as a file of this run: read once
            reason = f"the same bytes as {first.path}, read in this run"
            reports.append(
                FileReport(str(path), first.format, sha256=digest, size=stat.st_size,
                           mtime_ns=stat.st_mtime_ns, status="skipped", reason=reason)
            )  # fmt: skip
            continue
        if digest in stored_by_hash:
            stored = stored_by_hash[digest]
            if stored.path == str(path):
                stored.status = "unchanged"
                stored.size, stored.mtime_ns = stat.st_size, stat.st_mtime_ns
            else:  # a copy of a stored file under another path: listed, not read again
                reason = f"the same bytes as {stored.path}, already in the store"
                reports.append(
                    FileReport(str(path), stored.format, sha256=digest, size=stat.st_size,
                               mtime_ns=stat.st_mtime_ns, status="skipped", reason=reason)
                )  # fmt: skip
            continue
        report = FileReport(
            str(path), format or "", sha256=digest, size=stat.st_size, mtime_ns=stat.st_mtime_ns
        )
        read_by_hash[digest] = report
        reports.append(report)
        try:
            adapter = by_name(format or sniff_format(path))
        except InputError as exc:  # empty, unreadable, or of no known format
            _whole_file(report, str(exc), run)
            continue
        report.format = adapter.NAME
        _container_warning(path, run)
        options = ReadOptions(
            source_uri=str(path),
            reward_threshold=reward_threshold,
            outcome_feedback=outcome_feedback,
            max_record_bytes=max_record_bytes,
        )
        tick = ticker.within(str(path))
        for name, read in read_file(path, adapter, options, report, run, spill, tick).items():
            parts.extend((report, name, t, tied) for t, tied in read)
    reports.extend(
        FileReport(safe_text(str(s.path)), "", status="skipped", reason=s.reason)
        for s in found.skipped
    )
    known = set(run.seen)
    parts.extend((report, name, t, True) for report, name, t in _attach_loose_feedback(run, known))
    parts.extend((report, "steps", t, tied) for report, t, tied in spill.parts)
    # rows built from whole records belong to their trajectory; only canonical table chunks,
    # tied by id alone, can hold orphans (checked against one id array built once)
    known_ids = None
    for index, (report, name, table, tied) in enumerate(parts):
        if name != "trajectories" and not tied:
            if known_ids is None:
                known_ids = pa.array(list(known), type=pa.string())
            kept = _drop_orphans(report, name, table, known, known_ids, run)
            parts[index] = (report, name, kept, True)
    spilled = None  # the trajectory ids of the stored steps rows the spill took out
    if spill.path is not None:  # the steps went to disk as they were read
        spilled = spill.finish([t for _, n, t, _ in parts if n == "steps"], run.superseded)
        parts = [p for p in parts if p[1] != "steps"]
    stored_tables: dict[str, pa.Table] = {}
    if previous is not None:
        new_feedback = [t for _, n, t, _ in parts if n == "feedback"]
        stored_tables = _stored_tables(previous, run, reports, new_feedback, spilled)
    tables = {
        name: pa.concat_tables(
            ([stored_tables[name]] if name in stored_tables else [])
            + [t for _, n, t, _ in parts if n == name]
            or [schema.empty_table()]
        )
        for name, schema in TABLES.items()
        if name != "steps" or spill.path is None
    }
    tables["trajectories"] = outcomes_from_feedback(
        tables["trajectories"], tables["feedback"], reward_threshold, outcome_feedback
    )
    return Traces(
        tables["trajectories"],
        tables.get("steps"),
        tables["feedback"],
        run.quarantine,
        reports,
        run.warnings,
        settings,
        directory=None if spill.path is None else spill.path.parent,
        _keep=spill if spill.path is not None else None,
    )


def _tallied(files: list[Path], reports: list[FileReport], ticker: Ticker) -> Iterator[Path]:
    """``files`` one by one, each counted on ``ticker`` once the loop is done with it, with the
    records read and bytes of the reports the loop added for it; the totals after the last."""
    for path in files:
        before = len(reports)
        ticker.update(current=str(path))
        yield path
        added = reports[before:]
        ticker.add(1, sum(r.records_read for r in added), sum(max(r.size, 0) for r in added))
    ticker.finish()


def _stored_steps(previous: Traces) -> Iterator[pa.RecordBatch]:
    """The previous store's steps rows in batches (from memory, or from its stored file)."""
    if previous.steps_in_memory or previous.directory is None:
        yield from previous.steps.to_batches()
        return
    yield from pq.ParquetFile(previous.directory / "steps.parquet").iter_batches(1 << 16)


def _attach_loose_feedback(run: Run, known: set[str]) -> list[tuple[FileReport, str, pa.Table]]:
    """Feedback tables for the :class:`FeedbackRows` items whose trajectories were ingested
    (from any file); an item naming a trajectory that no input holds, or with values that do
    not fit the feedback table, is quarantined whole."""
    items_by_report: dict[int, tuple[FileReport, list[Any]]] = {}
    for report, item in run.loose:
        missing = sorted({str(r.get("trajectory_id")) for r in item.rows} - known)
        if missing:
            report.quarantined += item.records
            report.ingested -= item.records
            reason = f"feedback for trajectory {missing[0]!r}, which no input holds"
            run.quarantine_row(report.path, item.where, reason, truncate(item.rows))
            continue
        items_by_report.setdefault(id(report), (report, []))[1].append(item)
    out = []
    errors = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError)
    for report, items in items_by_report.values():
        try:
            tables = [to_table("feedback", [r for item in items for r in item.rows])]
        except errors:
            tables = []
            for item in items:
                try:
                    tables.append(to_table("feedback", item.rows))
                except errors as exc:
                    report.quarantined += item.records
                    report.ingested -= item.records
                    reason = f"feedback rows of the wrong type: {exc}"
                    run.quarantine_row(report.path, item.where, reason, truncate(item.rows))
        for table in tables:
            report.feedback += table.num_rows
            out.append((report, "feedback", table))
    return out


def _drop_orphans(
    report: FileReport,
    name: str,
    table: pa.Table,
    known: set[str],
    known_ids: pa.Array,
    run: Run,
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
            reason = f"{name} row of unknown trajectory {trajectory_id!r}"
            run.quarantine_row(report.path, f"row {i}", reason, str(trajectory_id))
    dropped = len(ids) - len(keep)
    report.quarantined += dropped
    report.ingested -= dropped
    setattr(report, name, getattr(report, name) - dropped)
    return table.take(pa.array(keep, type=pa.int64()))

"""The store of an ingest: :class:`Traces` (the three canonical tables with the quarantine,
per-file accounting, warnings and settings; counts, content hash, a DuckDB connection over the
tables, save to and load from a directory) and :class:`FileReport` (one file's accounting).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
import weakref
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputError
from pipeline.fileio import atomic_link, atomic_write, atomic_write_parquet
from pipeline.ingest import snapshot

# BOOKKEEPING: the files save writes beside the tables, which discovery never takes for input
from pipeline.ingest.discovery import BOOKKEEPING
from pipeline.ingest.formats import read_table, table_memory_pool
from pipeline.ingest.schema import TABLES

__all__ = ["BOOKKEEPING", "FileReport", "Traces"]

# Numbers the DuckDB connections of this process (each spills to its own directory).
_CONNECTIONS = itertools.count()


@dataclass
class FileReport:
    """Accounting for one input file, where a record is a JSON Lines line, a list item, a
    simulation, a span, an observation or a Parquet row (whatever the format's unit is).

    ``records_read == ingested + deduplicated + quarantined`` always holds. ``deduplicated``:
    records whose trajectory id and content were already ingested (from this or an earlier run);
    ``renamed``: ingested records whose id was taken by different content, kept under
    ``<id>~<first 8 hex of record_sha256>`` with a warning. ``status``: ``read`` (read this
    run), ``unchanged`` (same SHA-256 as a file already in the store, skipped), ``kept`` (in the
    store from an earlier run, not among this run's inputs); the counts of a skipped file are
    those of the run that read it. ``sha256``: of the file's bytes as stored (compressed);
    ``size`` (bytes) and ``mtime_ns`` (modification time, ns since the epoch) as last seen: a
    file whose path, size and modification time are unchanged is not hashed again (the rule
    make and rsync use).
    """

    path: str
    format: str
    records_read: int = 0
    ingested: int = 0
    deduplicated: int = 0
    quarantined: int = 0
    renamed: int = 0
    trajectories: int = 0
    steps: int = 0
    feedback: int = 0
    sha256: str = ""
    status: str = "read"
    size: int = -1
    mtime_ns: int = -1
    # ``superseded``: records that a later version of the same trajectory id from the same file
    # replaced (within this file they are counted among ``deduplicated``; for a version an
    # earlier run stored, its rows were dropped and the file that stored it counts it here too).
    # ``reason``: why a whole file (or the rest of it) was quarantined, or why it was skipped
    # (status ``skipped``: not read because of its name, a hidden path, a CACHEDIR.TAG or an
    # excluded directory, or because its bytes are those of a file read earlier in the same
    # run or already in the store under another path; all counts 0). Empty otherwise.
    superseded: int = 0
    reason: str = ""


@dataclass
class Traces:
    """The canonical tables of an ingest (cumulative over incremental runs), with the quarantine,
    per-file accounting, warnings and the settings they were read with.

    ``quarantine`` rows: ``{"file": str, "where": str, "reason": str, "raw": str}``.
    ``warnings``: one line each (duplicate ids with different content, a rebuild).
    ``settings``: ``{"format", "reward_threshold", "outcome_feedback"}``: what labels depend on,
    and ``store_version`` (:data:`pipeline.ingest.reader.STORE_VERSION`): how hashes were made.
    ``directory``: the snapshot directory :meth:`save` last wrote the tables to (or
    :meth:`load` read them from), or the private directory an ingest streamed a large steps
    table to (:mod:`pipeline.ingest._spill`; it stays the directory after a save, and is
    removed with the last Traces that refers to it), else ``None``; its files never change.

    The steps table (the large one: about 14 rows per trajectory) may live only in
    ``directory``: after :meth:`release_steps`, or from ``load(..., steps_in_memory=False)``.
    :attr:`steps` then reads it back on each access, and :meth:`connect` lets DuckDB scan the
    Parquet file instead of an in-memory copy, so the analysis never holds it whole.
    """

    trajectories: pa.Table
    _steps: pa.Table | None
    feedback: pa.Table
    quarantine: list[dict[str, str]] = field(default_factory=list)
    files: list[FileReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None
    # what keeps ``directory`` alive when it is an ingest's private spill (its owner removes
    # the directory when no Traces refers to it any more); None for a store's snapshot
    _keep: Any = field(default=None, repr=False, compare=False)

    _COUNT_KEYS = (
        "records_read",
        "ingested",
        "deduplicated",
        "quarantined",
        "renamed",
        "superseded",
        "trajectories",
        "steps",
        "feedback",
    )

    @property
    def steps(self) -> pa.Table:
        """The steps table; read from ``directory / "steps.parquet"`` when not held in memory
        (each access reads it again: prefer :meth:`connect` for queries).

        Raises:
            InputError: the stored file is missing or unreadable.
        """
        if self._steps is not None:
            return self._steps
        assert self.directory is not None, "steps released without a stored copy"
        return _read_stored(self.directory, "steps")

    @property
    def steps_in_memory(self) -> bool:
        """Whether the steps table is held in memory (else it is read from ``directory``)."""
        return self._steps is not None

    def release_steps(self) -> None:
        """Drop the in-memory steps table in favour of the copy :meth:`save` wrote, and hand
        the freed buffers back to the system (:meth:`pyarrow.MemoryPool.release_unused`).

        Raises:
            ValueError: the tables were never saved (``directory`` is ``None``).
        """
        if self.directory is None:
            raise ValueError("save the tables before releasing the steps")
        self._steps = None
        for pool in _memory_pools():
            pool.release_unused()

    @property
    def counts(self) -> dict[str, int]:
        """Totals over every file in the store: ``records_read``, ``ingested``,
        ``deduplicated``, ``quarantined``, ``renamed``, ``trajectories``, ``steps``,
        ``feedback``."""
        return {k: sum(getattr(f, k) for f in self.files) for k in self._COUNT_KEYS}

    @property
    def counts_this_run(self) -> dict[str, int]:
        """The same totals over the files read by this run only (status ``read``)."""
        read = [f for f in self.files if f.status == "read"]
        return {k: sum(getattr(f, k) for f in read) for k in self._COUNT_KEYS}

    @property
    def quarantined_this_run(self) -> int:
        """How many records this run quarantined (a file it could not read at all counts as
        one): ``counts_this_run["quarantined"]``."""
        return self.counts_this_run["quarantined"]

    def quarantine_this_run(self) -> list[dict[str, str]]:
        """The rows of :attr:`quarantine` from the files this run read (status ``read``)."""
        read = {f.path for f in self.files if f.status == "read"}
        return [q for q in self.quarantine if q.get("file") in read]

    def content_hash(self) -> str:
        """SHA-256 over the trajectory ids, outcomes and step counts: equal inputs give equal
        hashes."""
        digest = hashlib.sha256()
        for name in ("trajectory_id", "outcome_label", "n_steps"):
            digest.update(json.dumps(self.trajectories.column(name).to_pylist()).encode())
        return digest.hexdigest()

    def connect(
        self, *, memory_limit: str | None = None, threads: int | None = None
    ) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the three tables registered as views of the
        same names (zero-copy scans of the Arrow tables; a released steps table is a view
        over its Parquet file).

        ``memory_limit`` (DuckDB size text such as ``"1GB"``; default: DuckDB's, 80% of RAM)
        bounds DuckDB's own buffers; beyond it, operators and temp tables spill to a private
        directory under the system temp directory, removed when the connection closes.
        ``threads``: DuckDB worker threads (default: one per core)."""
        settings: dict[str, str | bool | int | float | list[str]] = {}
        if memory_limit is not None:
            settings["memory_limit"] = memory_limit
        if threads is not None:
            settings["threads"] = threads
        spill = Path(tempfile.gettempdir()) / f"coach-duckdb-{os.getpid()}-{next(_CONNECTIONS)}"
        settings["temp_directory"] = str(spill)
        con = duckdb.connect(config=settings)
        # DuckDB removes its spill files on close; a connection still open when the process
        # exits is never closed, so remove them then (or when the connection is collected)
        weakref.finalize(con, shutil.rmtree, spill, True)
        con.execute("set enable_progress_bar = false")
        for name in TABLES:
            if name == "steps" and self._steps is None:
                assert self.directory is not None
                path = str(self.directory / "steps.parquet").replace("'", "''")
                con.execute(f"create view steps as select * from read_parquet('{path}')")
            else:
                con.register(name, getattr(self, name))
        return con

    def save(self, directory: Path) -> dict[str, Path]:
        """Commit the store to ``directory`` as one unit (:mod:`pipeline.ingest.snapshot`): a new
        snapshot directory ``<directory>.d/<id>/`` with ``<name>.parquet`` for each table,
        ``quarantine.jsonl``, ``ingest.json`` and the manifest ``snapshot.json``, then the link
        ``directory`` swapped to it in one step. A released steps table (:meth:`release_steps`)
        is hard-linked from its stored file, not written again. Every file is written through
        :mod:`pipeline.fileio`; a crash at any point leaves the previous snapshot in place.
        Returns the paths written by name (``trajectories``, ``steps``, ``feedback``,
        ``quarantine``, ``report``), as seen through ``directory``.

        Raises:
            InputError: ``directory`` is a directory holding files other than a store's.
            LockError: another process is saving to ``directory``.
        """
        with snapshot.writing(directory) as target:
            for name in TABLES:
                path = target / f"{name}.parquet"
                if name == "steps" and self._steps is None:
                    assert self.directory is not None
                    # released: the stored file is the table, and stored files never change
                    atomic_link(self.directory / "steps.parquet", path)
                else:
                    atomic_write_parquet(path, getattr(self, name))
            atomic_write(
                target / "quarantine.jsonl",
                "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in self.quarantine),
            )
            report = {
                "settings": self.settings,
                "files": [asdict(f) for f in self.files],
                "totals": self.counts,
                "warnings": self.warnings,
            }
            atomic_write(target / "ingest.json", json.dumps(report, indent=2) + "\n")
        if self._keep is None:  # a spilled steps table is read from its own file still
            self.directory = target
        written = {name: directory / f"{name}.parquet" for name in TABLES}
        return written | {
            "quarantine": directory / "quarantine.jsonl",
            "report": directory / "ingest.json",
        }

    @staticmethod
    def stored(directory: Path) -> bool:
        """Whether a store was saved at ``directory``, whole or not (:meth:`load` says which)."""
        return snapshot.exists(directory)

    @classmethod
    def load(cls, directory: Path, *, steps_in_memory: bool = True) -> Traces:
        """Read what :meth:`save` wrote, after checking the commit: the snapshot's manifest is
        there and every file it lists has its size and SHA-256 (a store saved before snapshots:
        its tables' row counts agree with ``ingest.json``); see
        :func:`pipeline.ingest.snapshot.verified`. ``directory`` of the result is the snapshot
        read. With ``steps_in_memory=False`` the steps table stays in its file (see
        :meth:`release_steps`), unless the file predates a column of the canonical schema, in
        which case it is read (and converted) now.

        Raises:
            InputError: no store at ``directory``, or it is not whole (the message names the
                store and what is wrong, and says to rebuild), or a file is unreadable.
        """
        directory = snapshot.verified(directory)
        tables: dict[str, pa.Table | None] = {}
        for name in TABLES:
            if name == "steps" and not steps_in_memory and _is_current(directory / "steps.parquet"):
                tables[name] = None
                continue
            tables[name] = _read_stored(directory, name)
        quarantine_path = directory / "quarantine.jsonl"
        quarantine = [
            json.loads(line)
            for line in quarantine_path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        report = json.loads((directory / "ingest.json").read_text(encoding="utf-8"))
        known = {f.name for f in fields(FileReport)}
        files = [
            FileReport(**{k: v for k, v in f.items() if k in known})
            for f in report.get("files", [])
        ]
        trajectories, feedback = tables["trajectories"], tables["feedback"]
        assert trajectories is not None and feedback is not None
        return cls(
            trajectories,
            tables["steps"],
            feedback,
            quarantine,
            files,
            list(report.get("warnings", [])),
            dict(report.get("settings", {})),
            directory,
        )


def _read_stored(directory: Path, name: str) -> pa.Table:
    """The stored table ``name`` in the canonical schema (columns added since it was written
    are null).

    Raises:
        InputError: the file is missing or unreadable.
    """
    schema = TABLES[name]
    path = directory / f"{name}.parquet"
    try:
        table = read_table(path)
        for missing in (f for f in schema if f.name not in table.column_names):
            table = table.append_column(missing, pa.nulls(table.num_rows, missing.type))
        return table.select(schema.names).cast(schema)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(
            f"{path}: cannot read the {name} table ({exc}); run 'coach ingest' first"
        ) from exc


def _is_current(path: Path) -> bool:
    """Whether the Parquet file at ``path`` holds exactly the canonical steps schema (False when
    unreadable: the eager read then raises the error)."""
    try:
        return pq.read_schema(path).remove_metadata().equals(TABLES["steps"])
    except (OSError, pa.ArrowException):
        return False


def _memory_pools() -> list[pa.MemoryPool]:
    """The Arrow pools tables are built in: the default one and the one Parquet reads use."""
    pools = {p.backend_name: p for p in (table_memory_pool(), pa.default_memory_pool())}
    return list(pools.values())

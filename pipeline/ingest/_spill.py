"""The steps table of an ingest, streamed to a Parquet file as it is read, so that memory does
not grow with the input.

:class:`StepsSpill` takes every steps part in read order. While they hold fewer than
``limit`` rows they stay in memory and ingest concatenates them as before. Past that, the spill
opens a private temporary directory, writes the previous store's steps (as stored), then every
part built from whole records as it comes (:mod:`pyarrow.parquet`, one row group per part);
canonical table chunks, which are checked for orphans once every file is read, are written
last. Rows dropped after they were written (an earlier version of a trajectory a later record
of the same file superseded, a stored version this run superseded) are taken out in one
filtering pass when the file is finished, only when there are any.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.ingest.schema import STEPS
from pipeline.ingest.store import FileReport

__all__ = ["SPILL_ROWS", "StepsSpill"]

# Steps rows held in memory before the spill writes them to disk (about 14 per trajectory).
SPILL_ROWS = 2_000_000


class StepsSpill:
    """The steps parts of one ingest (see the module). ``parts``: ``(report, table, tied)`` in
    read order, those still in memory; ``path``: the spill file once opened, else ``None``."""

    def __init__(self, stored: Iterable[pa.RecordBatch] = (), limit: int | None = None) -> None:
        self.parts: list[tuple[FileReport, pa.Table, bool]] = []
        self.limit = SPILL_ROWS if limit is None else limit
        self.path: Path | None = None
        self._stored = stored
        self._rows = 0  # tied rows held in memory
        self._writer: pq.ParquetWriter | None = None
        self._written = 0
        self._stored_rows = 0
        # trajectory id -> (rows written when its earlier version was dropped, its file)
        self._dropped: dict[str, tuple[int, FileReport]] = {}

    def add(self, report: FileReport, table: pa.Table, tied: bool) -> None:
        """Take a steps part (``tied``: built from whole records; else a canonical chunk)."""
        if self._writer is not None and tied:
            self._write(table)
            return
        self.parts.append((report, table, tied))
        if tied:
            self._rows += table.num_rows
            if self._writer is None and self._rows > self.limit:
                self._open()

    def drop(self, ids: set[str], report: FileReport) -> None:
        """Drop the rows of trajectories ``ids`` read so far (``report``'s file: earlier
        versions a later record superseded), counting them off ``report.steps``."""
        if not ids:
            return
        drop = pa.array(sorted(ids), pa.string())
        for index, (owner, table, tied) in enumerate(self.parts):
            if owner is report:
                kept = table.filter(pc.invert(pc.is_in(table.column("trajectory_id"), drop)))
                report.steps -= table.num_rows - kept.num_rows
                self.parts[index] = (owner, kept, tied)
        if self._writer is not None:
            self._dropped.update((i, (self._written, report)) for i in ids)

    def _open(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="coach-ingest-"))
        self.path = directory / "steps.parquet"
        weakref.finalize(self, shutil.rmtree, directory, True)
        self._writer = pq.ParquetWriter(self.path, STEPS)
        for batch in self._stored:
            self._write(pa.Table.from_batches([batch], STEPS))
        self._stored_rows = self._written
        held, self.parts = self.parts, []
        for report, table, tied in held:
            if tied:
                self._write(table)
            else:
                self.parts.append((report, table, tied))
        self._rows = 0

    def _write(self, table: pa.Table) -> None:
        assert self._writer is not None
        if table.num_rows:
            self._writer.write_table(table)
            self._written += table.num_rows

    def finish(self, chunks: Iterable[pa.Table], superseded: set[str]) -> list[str]:
        """Write the checked canonical ``chunks``, close the file and take out the rows dropped
        after they were written (counted off their files' reports) and the stored rows of the
        ``superseded`` trajectories. Returns the trajectory id of each stored row taken out
        (for the reports of the files that stored them)."""
        for table in chunks:
            self._write(table)
        assert self._writer is not None and self.path is not None
        self._writer.close()
        if not self._dropped and not (superseded and self._stored_rows):
            return []
        out = self.path.with_name("steps.filtered.parquet")
        stored_hits: list[str] = []
        with pq.ParquetWriter(out, STEPS) as writer:
            for offset, batch in _batches(self.path):
                ids = batch.column("trajectory_id").to_pylist()
                keep = []
                for row, trajectory_id in enumerate(ids, start=offset):
                    dropped = self._dropped.get(trajectory_id)
                    if row < self._stored_rows and trajectory_id in superseded:
                        stored_hits.append(trajectory_id)
                    elif dropped is not None and row < dropped[0]:
                        dropped[1].steps -= 1
                    else:
                        keep.append(row - offset)
                writer.write_table(pa.Table.from_batches([batch], STEPS).take(keep))
        out.replace(self.path)
        return stored_hits


def _batches(path: Path) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The record batches of the Parquet file ``path`` with the row offset of each."""
    offset = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1 << 16):
        yield offset, batch
        offset += batch.num_rows

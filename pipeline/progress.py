"""How far a long stage (an ingest, a pull) has got, as counts a display can draw.

A stage that reads a lot takes an optional ``meter``: a callable given a :class:`Tally` (the
counts so far, a new frozen value each time) whenever they move, that is once per file and
about every :data:`RECORDS_EVERY` records inside a file, never per record. ``None`` (the default
everywhere) reports nothing, so library callers and tests are unaffected. The counts only grow,
and the last tally of a stage (``finished``) equals the stage's own totals. The command line
draws them with rich (:mod:`pipeline.cli.live`); the library draws nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["RECORDS_EVERY", "Meter", "Tally", "Ticker"]

# Records read inside one file between two tallies.
RECORDS_EVERY = 2000


@dataclass(frozen=True)
class Tally:
    """The counts of one stage so far.

    ``stage``: what is counted (``ingest``, ``pull phoenix``); ``files``: inputs done (an
    ingest: files read, skipped as unchanged or refused whole; a pull: files written);
    ``files_total``: how many there are, ``None`` when not known in advance; ``records``:
    records read (an ingest: :attr:`~pipeline.ingest.FileReport.records_read`; a pull: spans and
    annotations received); ``bytes``: bytes of the files read (their size on disk, compressed
    as stored) or written; ``current``: the file or page being read; ``finished``: the stage is
    done and these are its totals.
    """

    stage: str
    files: int = 0
    files_total: int | None = None
    records: int = 0
    bytes: int = 0
    current: str = ""
    finished: bool = False


Meter = Callable[[Tally], None]


class Ticker:
    """The running :class:`Tally` of one stage, sent to ``meter`` as it changes (nothing is kept
    or sent when ``meter`` is ``None``). The records of the inputs done are kept apart from those
    of the one being read, so that the counts only grow."""

    def __init__(self, meter: Meter | None, stage: str, files_total: int | None = None) -> None:
        self.meter = meter
        self.tally = Tally(stage, files_total=files_total)
        self.records_done = 0

    def update(self, **changes: Any) -> None:
        """Change the counts named in ``changes`` (fields of :class:`Tally`) and report them."""
        if self.meter is not None:
            self.tally = replace(self.tally, **changes)
            self.meter(self.tally)

    def add(self, files: int = 0, records: int = 0, size: int = 0) -> None:
        """Count ``files`` more inputs done, with their ``records`` and ``size`` (bytes)."""
        self.records_done += records
        if self.meter is not None:
            tally = self.tally
            self.update(
                files=tally.files + files, records=self.records_done, bytes=tally.bytes + size
            )

    def within(self, current: str) -> Callable[[int], None] | None:
        """A callback for the reader of ``current`` (a file): given the records read from it so
        far, it reports them on top of the inputs done; ``None`` when there is no meter, so
        that a reader can skip the call."""
        if self.meter is None:
            return None

        def tick(records: int) -> None:
            self.update(records=self.records_done + records, current=current)

        return tick

    def finish(self) -> None:
        """Report the counts as the stage's totals."""
        self.update(current="", finished=True)

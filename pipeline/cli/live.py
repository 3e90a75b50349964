"""The live progress display of the long commands (``coach ingest``, ``coach learn``, ``coach pull
phoenix|langfuse|langsmith``): the counts of :mod:`pipeline.progress` (files, records, bytes,
the file being read) drawn with rich on stderr, and erased when the command is done (stdout
keeps only the data).

It is drawn only when stderr is a terminal and ``-q/--quiet`` is not given. The environment
variable ``COACH_PROGRESS`` overrides the terminal check: ``always`` draws it on any stderr (a
log that keeps terminal escapes, a test), ``never`` never does; ``auto`` (or unset) is the
default. ``-q`` always wins. The progress lines of the stages (``learn``'s one line per
stage) are printed above the display while it is drawn.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pipeline.cli.options import say
from pipeline.config import Config
from pipeline.learn import ingest_store, learn
from pipeline.progress import Meter, Tally

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, TaskID

    from pipeline.ingest import Traces
    from pipeline.learn_result import LearnResult

__all__ = ["PROGRESS_ENV", "display_console", "ingesting", "learning", "live"]

# Overrides whether the display is drawn: always, never, auto (the default).
PROGRESS_ENV = "COACH_PROGRESS"


def display_console(quiet: bool) -> Console | None:
    """The rich console (on stderr) to draw the display on, or ``None`` when it is not drawn:
    with ``quiet``, with ``COACH_PROGRESS=never``, or when stderr is not a terminal (unless
    ``COACH_PROGRESS=always``)."""
    mode = os.environ.get(PROGRESS_ENV, "auto").strip().lower()
    if quiet or mode == "never":
        return None
    if mode != "always":
        isatty = getattr(sys.stderr, "isatty", None)
        if isatty is None or not isatty():
            return None
    from rich.console import Console

    return Console(file=sys.stderr, force_terminal=True)


class _Display:
    """A :data:`~pipeline.progress.Meter` drawing one row per stage; the rich display starts at
    the first tally (a command that reads nothing draws nothing) and a stage's row goes when it
    is finished."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.rows: dict[str, TaskID] = {}

    def __call__(self, tally: Tally) -> None:
        progress = self.progress or self._start()
        row = self.rows.get(tally.stage)
        if tally.finished:
            if row is not None:
                progress.remove_task(row)
                del self.rows[tally.stage]
            return
        of = f"/{tally.files_total}" if tally.files_total is not None else ""
        fields: dict[str, Any] = {
            "total": tally.files_total,
            "completed": tally.files,
            "files": f"{tally.files}{of} files",
            "records": f"{tally.records:,} records",
            "size": _size(tally.bytes),
            "current": tally.current,
        }
        if row is None:
            self.rows[tally.stage] = progress.add_task(tally.stage, **fields)
        else:
            progress.update(row, **fields)

    def _start(self) -> Progress:
        from rich.progress import Progress

        self.progress = Progress(
            *_columns(),
            console=self.console,
            transient=True,
            redirect_stdout=False,  # stdout is the data's
        )
        self.progress.start()
        return self.progress

    def say(self, message: str) -> None:
        """Print a progress line on stderr, above the display."""
        self.console.out(message, highlight=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _columns() -> list[ProgressColumn]:
    """The columns of a row: spinner, stage, bar (files done), files, records, bytes, time
    taken, the file being read. Only the last gives way to a narrow terminal (cut with an
    ellipsis); the counts are never cut."""
    from rich.progress import BarColumn, ProgressColumn, SpinnerColumn, Task, TimeElapsedColumn
    from rich.table import Column
    from rich.text import Text

    class Field(ProgressColumn):
        def __init__(self, name: str, shrinks: bool = False) -> None:
            super().__init__(table_column=Column(no_wrap=not shrinks))
            self.name = name

        def render(self, task: Task) -> Text:
            text = task.description if self.name == "stage" else str(task.fields[self.name])
            return Text(text, no_wrap=True, overflow="ellipsis")

    return [
        SpinnerColumn(),
        Field("stage"),
        BarColumn(bar_width=20),
        *(Field(name) for name in ("files", "records", "size")),
        TimeElapsedColumn(),
        Field("current", shrinks=True),
    ]


def _size(count: int) -> str:
    from rich.filesize import decimal

    return decimal(count)


@contextmanager
def live(quiet: bool) -> Iterator[tuple[Meter | None, Callable[[str], None]]]:
    """``(meter, say)`` for a long command: a meter drawing the display (``None`` when it is not
    drawn, see :func:`display_console`) and a printer of progress lines to stderr that keeps
    them above it (silent when ``quiet``). The display is erased when the block ends."""
    console = display_console(quiet)
    if console is None:
        yield None, say(quiet)
        return
    display = _Display(console)
    try:
        yield display, display.say
    finally:
        display.stop()


def ingesting(config: Config, quiet: bool) -> Traces:
    """:func:`pipeline.learn.ingest_store` with the live display of its counts."""
    with live(quiet) as (meter, _say):
        return ingest_store(config, meter)


def learning(config: Config, quiet: bool) -> LearnResult:
    """:func:`pipeline.learn.learn` with the live display of its ingest and its stage lines."""
    with live(quiet) as (meter, line):
        return learn(config, progress=line, meter=meter)

"""How an ingest or learn that quarantined input ends: exit 1 for a file that gave nothing (every
record it held was quarantined), exit 3 for a run that quarantined some records.

A file read whole into the quarantine is almost always the wrong format or a shape no adapter
knows, not a few bad records; ``coach ingest`` says so and exits 1 (after writing the tables
from the other files) instead of the exit status 3 of a run that quarantined some records.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.options import say

if TYPE_CHECKING:
    from pipeline.ingest import FileReport, Traces

__all__ = ["EXIT_QUARANTINED", "exit_if_quarantined", "exit_if_unread", "unread_messages"]

# The exit status of an ingest or learn that finished but quarantined some of its input.
EXIT_QUARANTINED = 3


def _tried(report: FileReport, forced: str | None) -> str:
    """Which formats were tried on the file, in words."""
    from pipeline.errors import CoachError
    from pipeline.ingest import ADAPTERS, sniff_format

    if not report.format:  # no adapter recognised it
        return f"all {len(ADAPTERS)} (see 'coach formats'), none recognises it"
    if forced is None:
        return f"{report.format} (sniffed)"
    try:
        sniffed = sniff_format(Path(report.path))
    except (CoachError, OSError):
        sniffed = None
    hint = (
        f"; sniffing recognises it as {sniffed}: run without --format"
        if sniffed and sniffed != forced
        else ""
    )
    return f"{forced} (--format){hint}"


def unread_messages(traces: Traces, forced: str | None) -> list[str]:
    """One line per file this run read (status ``read``) whose every record was quarantined: its
    path, the first reason and the formats tried. ``forced``: the ``--format`` given, if any."""
    reasons: dict[str, str] = {}
    for row in traces.quarantine_this_run():
        reasons.setdefault(row.get("file", ""), f"{row.get('where')}: {row.get('reason')}")
    lines = []
    for report in traces.files:
        if report.status != "read" or not report.records_read:
            continue
        if report.quarantined < report.records_read:
            continue
        reason = report.reason or reasons.get(report.path, "")
        reason = reason.removeprefix(f"{report.path}: ").removeprefix("file: ")
        reason = reason.removeprefix(f"{report.path}: ")
        count = f"{report.records_read} record{'s' if report.records_read != 1 else ''}"
        lines.append(
            f"{report.path}: nothing ingested, all {count} quarantined (first: {reason}); "
            f"formats tried: {_tried(report, forced)}"
        )
    return lines


def exit_if_unread(traces: Traces, forced: str | None, data_dir: Path) -> None:
    """Exit 1 (a :class:`click.ClickException`) when :func:`unread_messages` finds a file that
    gave nothing; the message lists them and says where the rest went."""
    lines = unread_messages(traces, forced)
    if lines:
        raise click.ClickException(
            "\n".join(lines)
            + f"\nthe other input is in {data_dir / 'tables'}; fix or remove the file(s) above, "
            "or pass the right --format (see 'coach formats')"
        )


def exit_if_quarantined(quarantined: int, data_dir: Path, quiet: bool) -> None:
    """Exit :data:`EXIT_QUARANTINED` (after a line on stderr, unless ``quiet``) when this run
    quarantined records or files (``quarantined``:
    :attr:`pipeline.ingest.Traces.quarantined_this_run`)."""
    if quarantined:
        where = data_dir / "tables" / "quarantine.jsonl"
        records = f"{quarantined} record{'s' if quarantined != 1 else ''}"
        say(quiet)(
            f"done, but this run quarantined {records}: see {where} (exit status "
            f"{EXIT_QUARANTINED}; --strict makes it an error)"
        )
        raise click.exceptions.Exit(EXIT_QUARANTINED)

"""``coach pull langfuse``: a Langfuse project's traces, with their observations and scores,
into the traces folder, incrementally (:mod:`pipeline.remote.langfuse`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from pipeline.cli.live import live
from pipeline.cli.options import SINCE_OPTION, TRACES_OUT_OPTION, common, domain_errors, emit
from pipeline.cli.pull import pull_text
from pipeline.remote.langfuse import langfuse_client, langfuse_host, pull_langfuse

__all__ = ["pull_langfuse_command"]


@click.command("langfuse")
@SINCE_OPTION
@click.option(
    "--host",
    default=None,
    metavar="URL",
    help="Langfuse server (default: LANGFUSE_BASE_URL, else LANGFUSE_HOST, else "
    "https://cloud.langfuse.com). The keys are read from LANGFUSE_PUBLIC_KEY and "
    "LANGFUSE_SECRET_KEY only.",
)
@TRACES_OUT_OPTION
@click.option(
    "--settle",
    "settle_s",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Seconds a trace must have started ago to be pulled (younger ones may still run).",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 100),
    default=50,
    show_default=True,
    help="Traces per list request.",
)
@common
@domain_errors
def pull_langfuse_command(
    since: datetime | None,
    host: str | None,
    out_dir: Path,
    settle_s: float,
    page_size: int,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Pull the traces of a Langfuse project (the one LANGFUSE_PUBLIC_KEY and
    LANGFUSE_SECRET_KEY belong to) that started since the last pull, with their observations and
    scores, into OUT/langfuse-<host>-<time>.jsonl (per-trace exports that learn and ingest read;
    scores become feedback). The cursor is kept in DATA_DIR/pull/; 429 and 5xx answers are
    retried. Nothing new: no file. A failure leaves no file and the cursor as it was.

    Example: coach pull langfuse --since 2025-06-01 && coach learn traces/
    """
    url = langfuse_host(host)
    client = langfuse_client(url)
    with live(quiet) as (meter, line):
        client.on_retry = line
        result = pull_langfuse(
            client,
            out_dir,
            data_dir,
            since=since,
            settle_s=settle_s,
            page_size=page_size,
            progress=line,
            meter=meter,
        )
    contents = f"{result.traces} traces, {result.observations} observations, {result.scores} scores"
    why = "too recent, left for the next pull"
    text = pull_text(f"langfuse at {url}", result.file, contents, result.waiting, why)
    emit(as_json, result.as_dict(), text)

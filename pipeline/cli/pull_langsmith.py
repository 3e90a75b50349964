"""``coach pull langsmith``: a LangSmith project's traces (root runs with their child runs) and
feedback into the traces folder, incrementally (:mod:`pipeline.remote.langsmith`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from pipeline.cli.live import live
from pipeline.cli.options import SINCE_OPTION, TRACES_OUT_OPTION, common, domain_errors, emit
from pipeline.cli.pull import pull_text
from pipeline.remote.langsmith import (
    langsmith_client,
    langsmith_endpoint,
    langsmith_project,
    pull_langsmith,
)

__all__ = ["pull_langsmith_command"]


@click.command("langsmith")
@click.option(
    "--project",
    default=None,
    metavar="NAME",
    help="LangSmith project to pull (default: LANGSMITH_PROJECT, else LANGCHAIN_PROJECT).",
)
@SINCE_OPTION
@click.option(
    "--endpoint",
    default=None,
    metavar="URL",
    help="LangSmith API URL (default: LANGSMITH_ENDPOINT, else LANGCHAIN_ENDPOINT, else "
    "https://api.smith.langchain.com). The key is read from LANGSMITH_API_KEY (or "
    "LANGCHAIN_API_KEY) only.",
)
@TRACES_OUT_OPTION
@click.option(
    "--settle",
    "settle_s",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds a trace's root run must have ended ago to be pulled (its child runs and "
    "feedback may still arrive).",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 100),
    default=100,
    show_default=True,
    help="Runs per list request.",
)
@common
@domain_errors
def pull_langsmith_command(
    project: str | None,
    since: datetime | None,
    endpoint: str | None,
    out_dir: Path,
    settle_s: float,
    page_size: int,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Pull the traces of a LangSmith project that ended since the last pull, each with all its
    runs and their feedback, into OUT/langsmith-<host>-<time>.jsonl (runs as list_runs returns
    them, which learn and ingest read: tool runs become tool calls, feedback the outcome). The
    cursor is kept in DATA_DIR/pull/; 429 and 5xx answers are retried. Nothing new: no file. A
    failure leaves no file and the cursor as it was.

    Example: coach pull langsmith --project support-agent --since 2025-06-01 && coach learn traces/
    """
    url = langsmith_endpoint(endpoint)
    name = langsmith_project(project)
    client = langsmith_client(url)
    with live(quiet) as (meter, line):
        client.on_retry = line
        result = pull_langsmith(
            client,
            name,
            out_dir,
            data_dir,
            since=since,
            settle_s=settle_s,
            page_size=page_size,
            progress=line,
            meter=meter,
        )
    contents = (
        f"{result.traces} traces, {result.runs} runs ({result.tool_runs} tool runs), "
        f"{result.feedback} feedback"
    )
    why = "still running or too recent, left for the next pull"
    where = f"langsmith project {name!r} at {url}"
    text = pull_text(where, result.file, contents, result.waiting, why)
    emit(as_json, result.as_dict(), text)

"""``coach pull phoenix`` (a Phoenix project's spans into the traces folder, incrementally),
``coach push-prompts phoenix`` and ``coach push-prompts langfuse`` (the rendered prompts into
Phoenix's or Langfuse's prompt management)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from pipeline.cli.live import live
from pipeline.cli.options import (
    CONTEXT,
    OUT_OPTION,
    SKILLBOOK_OPTION,
    TRACES_OUT_OPTION,
    common,
    domain_errors,
    emit,
    say,
    since_option,
)
from pipeline.remote import (
    langfuse_prompts_client,
    phoenix_client,
    phoenix_endpoint,
    pull_phoenix,
    push_prompts_langfuse,
    push_prompts_phoenix,
)
from pipeline.remote.http import Retry
from pipeline.remote.langfuse import langfuse_host
from pipeline.remote.langfuse_prompts import PROMPT_TYPES
from pipeline.remote.phoenix import RECHECK_S

__all__ = ["pull_group", "pull_text", "push_prompts_group"]

ENDPOINT_OPTION = click.option(
    "--endpoint",
    default=None,
    metavar="URL",
    help="Phoenix server (default: PHOENIX_COLLECTOR_ENDPOINT, else PHOENIX_HOST and "
    "PHOENIX_PORT, else http://localhost:6006). The key is read from PHOENIX_API_KEY only.",
)


def pull_text(where: str, file: Path | None, contents: str, waiting: int, why: str) -> str:
    """What a pull prints: ``<where>: <contents> -> <file>``, or ``<where>: nothing new since
    the last pull`` when ``file`` is None, then ``; <waiting> trace(s) <why>`` when any wait
    (``why``: ``too recent, left for the next pull``)."""
    note = f"; {waiting} trace{'s' if waiting != 1 else ''} {why}" if waiting else ""
    if file is None:
        return f"{where}: nothing new since the last pull{note}"
    return f"{where}: {contents} -> {file}{note}"


@click.group("pull", context_settings=CONTEXT)
def pull_group() -> None:
    """Pull traces from the tools that already hold them into the traces folder.

    Example: coach pull phoenix --project support-agent
    """


@pull_group.command("phoenix")
@click.option(
    "--project",
    required=True,
    envvar="PHOENIX_PROJECT_NAME",
    help="The Phoenix project to pull (its name).",
)
@since_option("spans")
@ENDPOINT_OPTION
@TRACES_OUT_OPTION
@click.option(
    "--settle",
    "settle_s",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Seconds after its last span that a trace whose root span never came is pulled anyway.",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 1000),
    default=500,
    show_default=True,
    help="Spans per request.",
)
@click.option("--no-annotations", is_flag=True, help="Do not pull span and trace annotations.")
@click.option(
    "--recheck-days",
    type=click.FloatRange(min=0),
    default=RECHECK_S / 86400,
    show_default=True,
    help="Days after its pull that a trace's annotations are read again for ones added or "
    "changed since (0: never).",
)
@click.option(
    "--max-spans",
    type=click.IntRange(min=1),
    default=None,
    help="Read at most this many new spans; the next pull goes on from there (default: all).",
)
@common
@domain_errors
def pull_phoenix_command(
    project: str,
    since: datetime | None,
    endpoint: str | None,
    out_dir: Path,
    settle_s: float,
    page_size: int,
    no_annotations: bool,
    recheck_days: float,
    max_spans: int | None,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Pull the spans and annotations of a Phoenix project stored since the last pull into
    OUT/phoenix-<project>-<time>.jsonl (OpenInference spans that learn and ingest read). The
    cursor is kept in DATA_DIR/pull/; a trace is pulled once its root span has arrived, and
    annotations added or changed later on it (for --recheck-days) by the pulls after. Nothing
    new: no file. A failure leaves no file and the cursor as it was.

    Example: coach pull phoenix --project support-agent --since 2025-06-01 && coach learn traces/
    """
    url = phoenix_endpoint(endpoint)
    with live(quiet) as (meter, line):
        result = pull_phoenix(
            phoenix_client(url),
            project,
            out_dir,
            data_dir,
            since=since,
            settle_s=settle_s,
            page_size=page_size,
            annotations=not no_annotations,
            recheck_s=recheck_days * 86400,
            max_spans=max_spans,
            progress=line,
            meter=meter,
        )
    contents = f"{result.traces} traces, {result.spans} spans, {result.annotations} annotations"
    if result.late_annotations:
        contents += f" ({result.late_annotations} on traces pulled before)"
    if result.capped:
        contents += f"; --max-spans {max_spans} reached, pull again for the rest"
    text = pull_text(
        f"phoenix {project} at {url}",
        result.file,
        contents,
        result.waiting,
        "waiting for its root span",
    )
    emit(as_json, result.as_dict(), text)


@click.group("push-prompts", context_settings=CONTEXT)
def push_prompts_group() -> None:
    """Register the rendered prompts in the prompt management of the tools teams already run.

    Example: coach push-prompts phoenix --out prompts_out
    """


@push_prompts_group.command("phoenix")
@OUT_OPTION
@SKILLBOOK_OPTION
@ENDPOINT_OPTION
@click.option(
    "--prefix",
    default="coach",
    show_default=True,
    help="First part of each prompt's name: <prefix>-<namespace>-<arm>.",
)
@click.option(
    "--model-provider",
    default="OPENAI",
    show_default=True,
    help="The model provider Phoenix records with each version (OPENAI, ANTHROPIC, ...).",
)
@click.option(
    "--model-name",
    default="gpt-4o-mini",
    show_default=True,
    help="The model name Phoenix records with each version.",
)
@common
@domain_errors
def push_prompts_phoenix_command(
    out_dir: Path,
    skillbook_dir: Path,
    endpoint: str | None,
    prefix: str,
    model_provider: str,
    model_name: str,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Register every arm of OUT/manifest.json as a version of the Phoenix prompt
    <prefix>-<namespace>-<arm>, tagged with coach's prompt_version (pv-...), and record
    Phoenix's id of each version as an alias of that prompt_version in
    SKILLBOOK/prompt_versions.jsonl, so that runs recording the Phoenix id come back as it. An
    arm whose version is already there is skipped, so pushing twice adds nothing.

    Example: coach push-prompts phoenix --out prompts_out --json
    """
    url = phoenix_endpoint(endpoint)
    result = push_prompts_phoenix(
        phoenix_client(url),
        out_dir,
        history_dir=skillbook_dir,
        prefix=prefix,
        model_provider=model_provider.upper(),
        model_name=model_name,
        progress=say(quiet),
    )
    lines = [f"{r['status']:<9} {r['name']} {r['prompt_version']}" for r in result.rows]
    lines.append(
        f"phoenix at {url}: {result.created} versions added, "
        f"{len(result.rows) - result.created} already there; {result.aliases_added} aliases "
        "recorded"
    )
    if result.unrecorded:
        lines.append(
            f"no alias recorded for {len(result.unrecorded)} arm(s) that "
            f"{skillbook_dir}/prompt_versions.jsonl does not hold: pass the --skillbook of the "
            "run that rendered these prompts"
        )
    emit(as_json, result.as_dict(), "\n".join(lines))


@push_prompts_group.command("langfuse")
@OUT_OPTION
@SKILLBOOK_OPTION
@click.option(
    "--host",
    default=None,
    metavar="URL",
    help="Langfuse server (default: LANGFUSE_BASE_URL, else LANGFUSE_HOST, else "
    "https://cloud.langfuse.com). The keys are read from LANGFUSE_PUBLIC_KEY and "
    "LANGFUSE_SECRET_KEY only.",
)
@click.option(
    "--prefix",
    default="coach",
    show_default=True,
    help="First part of each prompt's name: <prefix>-<namespace>-<arm>.",
)
@click.option(
    "--type",
    "prompt_type",
    type=click.Choice(PROMPT_TYPES),
    default="text",
    show_default=True,
    help="Langfuse prompt type: the text as a text prompt, or as the system message of a chat "
    "prompt.",
)
@common
@domain_errors
def push_prompts_langfuse_command(
    out_dir: Path,
    skillbook_dir: Path,
    host: str | None,
    prefix: str,
    prompt_type: str,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Register every arm of OUT/manifest.json as a version of the Langfuse prompt
    <prefix>-<namespace>-<arm>, labelled with coach's prompt_version (pv-...), and record
    langfuse:<name>:<version> as an alias of that prompt_version in
    SKILLBOOK/prompt_versions.jsonl, so that traces linked to the Langfuse version come back as
    it. An arm whose version is already there is skipped, so pushing twice adds nothing; 429
    and 5xx answers are retried.

    Example: coach push-prompts langfuse --out prompts_out --json
    """
    url = langfuse_host(host)
    client = langfuse_prompts_client(url, retry=Retry(on_retry=say(quiet)))
    result = push_prompts_langfuse(
        client,
        out_dir,
        history_dir=skillbook_dir,
        prefix=prefix,
        prompt_type=prompt_type,
        progress=say(quiet),
    )
    lines = [
        f"{r['status']:<9} {r['name']} {r['prompt_version']} (version {r['langfuse_version']})"
        for r in result.rows
    ]
    lines.append(
        f"langfuse at {url}: {result.created} versions added, "
        f"{len(result.rows) - result.created} already there; {result.aliases_added} aliases "
        f"recorded"
    )
    if result.unrecorded:
        lines.append(
            f"no alias recorded for {len(result.unrecorded)} arm(s) that "
            f"{skillbook_dir}/prompt_versions.jsonl does not hold: pass the --skillbook of the "
            "run that rendered these prompts"
        )
    emit(as_json, result.as_dict(), "\n".join(lines))

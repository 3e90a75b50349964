"""Building blocks shared by the ``coach`` subcommands: common options, error mapping, output.

A subcommand module (``pipeline/cli/*.py``) defines its click command or group with these and is
registered on :func:`pipeline.cli.main` at the end of ``pipeline/cli.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any

import click

from pipeline.config import AnalyzerConfig, Config
from pipeline.errors import CoachError, SettingError

__all__ = [
    "BASE_PROMPT_OPTION",
    "CONTEXT",
    "FDR_OPTION",
    "FORMATS",
    "FORMAT_OPTION",
    "MAX_LESSONS_OPTION",
    "MIN_SUPPORT_OPTION",
    "MODE_OPTION",
    "OUT_OPTION",
    "SINCE_OPTION",
    "SKILLBOOK_OPTION",
    "TEMPLATES_OPTION",
    "TRACES_OUT_OPTION",
    "common",
    "domain_errors",
    "emit",
    "existing_paths",
    "option_of",
    "parse_max_lessons",
    "parse_since",
    "paths_argument",
    "say",
    "since_option",
]

CONTEXT = {"help_option_names": ["-h", "--help"]}

# The option of a setting (the ``setting`` of a :class:`pipeline.errors.SettingError`: a field of
# :class:`pipeline.config.Config` or :class:`~pipeline.config.LLMConfig`) where it is not ``--``
# and the field's name with dashes (``fdr``: ``--fdr``).
SETTING_OPTIONS = {
    "section_modes": "--section-mode",
    "max_record_bytes": "--max-record-mb",
    "enabled": "--llm",
    "label": "--llm-label",
    "structured": "--llm-structured",
    "max_calls": "--max-llm-calls",
    "timeout_s": "--llm-timeout",
    "max_retries": "--llm-retries",
    "backoff_s": "--llm-backoff",
    "concurrency": "--llm-concurrency",
    "template_file": "--llm-template",
    "label_rubric": "--llm-label-rubric",
    "cache_path": "--llm-cache",
    "skillbook_dir": "--skillbook",
    "out_dir": "--out",
    "template_dir": "--templates",
    "base_prompt_file": "--base-prompt",
}


def option_of(setting: str) -> str:
    """The command-line option of a setting (:data:`SETTING_OPTIONS`)."""
    return SETTING_OPTIONS.get(setting, "--" + setting.replace("_", "-"))


def domain_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a :class:`~pipeline.errors.CoachError` into a click error: message on stderr, exit 1;
    a :class:`~pipeline.errors.SettingError` (a value out of range, a conflict between options)
    is bad usage naming the option, exit 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SettingError as exc:
            raise click.BadParameter(
                exc.describe(option_of),
                ctx=click.get_current_context(silent=True),
                param_hint=f"'{option_of(exc.setting)}'",
            ) from exc
        except CoachError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def _is_pattern(raw: str) -> bool:
    return any(c in raw for c in "*?[")


def _matches(pattern: str) -> bool:
    """True when the glob ``pattern`` matches a path (as :func:`pipeline.ingest.discovery.discover`
    expands it)."""
    anchor = Path(pattern).anchor
    relative = pattern[len(anchor) :] if anchor else pattern
    return next(iter(Path(anchor or ".").glob(relative)), None) is not None


def _existing(default: str | None) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def check(ctx: click.Context, param: click.Parameter, values: Any) -> Any:
        if not values:
            if default is not None and not Path(default).exists():
                raise click.BadParameter(
                    f"none given and no {default}/ here; pass trace files or directories",
                    ctx=ctx,
                    param=param,
                )
            return values
        for raw in values:
            if Path(raw).exists():
                continue
            if _is_pattern(raw):
                if _matches(raw):
                    continue
                raise click.BadParameter(
                    f"{raw}: the pattern matches no file", ctx=ctx, param=param
                )
            raise click.BadParameter(f"{raw}: no such file or directory", ctx=ctx, param=param)
        return values

    return check


def paths_argument(default: str | None = "traces") -> Callable[..., Any]:
    """The ``PATHS`` argument of trace files, directories or glob patterns: each must exist
    (a pattern must match), else bad usage (exit 2). With none given, ``default`` (a directory)
    must exist; None: may be empty."""
    return click.argument("paths", nargs=-1, type=click.Path(), callback=_existing(default))


# The callback of a ``multiple`` option of trace paths: each exists (a pattern matches).
existing_paths = _existing(None)


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--data-dir`` (``data_dir``), ``--json`` (``as_json``) and ``-q`` (``quiet``)."""
    options = [
        click.option(
            "--data-dir",
            type=click.Path(path_type=Path),
            default=Config.data_dir,
            envvar="COACH_DATA_DIR",
            show_default=True,
            help="Where canonical tables and analysis results are kept.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
        click.option("-q", "--quiet", is_flag=True, help="No progress on stderr."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def say(quiet: bool) -> Callable[[str], None]:
    """A progress printer to stderr, silent when ``quiet``."""
    return (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))


def emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    """Print ``payload`` as indented JSON when ``as_json``, else ``text``, to stdout, with
    personal data and secrets redacted (:func:`pipeline.redact.redact`; in JSON, every string
    and key) and, in text, control characters shown as escapes
    (:func:`pipeline.render.environment.visible_controls`; JSON escapes them itself): the store
    may hold trace text as it came, what a command prints does not."""
    from pipeline.redact import redact, redact_data
    from pipeline.render.environment import visible_controls

    if as_json:
        plain = json.loads(json.dumps(payload, default=str))  # paths and the like as strings
        click.echo(json.dumps(redact_data(plain), indent=2))
    else:
        click.echo(visible_controls(redact(text)))


SKILLBOOK_OPTION = click.option(
    "--skillbook",
    "skillbook_dir",
    type=click.Path(path_type=Path),
    default=Config.skillbook_dir,
    envvar="COACH_SKILLBOOK",
    show_default=True,
    help="Directory of skillbook.json and SKILLBOOK.md.",
)
OUT_OPTION = click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Config.out_dir,
    envvar="COACH_OUT",
    show_default=True,
    help="Directory for rendered prompts.",
)
TEMPLATES_OPTION = click.option(
    "--templates",
    "template_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    envvar="COACH_TEMPLATES",
    help="Directory with a system_prompt.md.j2 overriding the default template.",
)
BASE_PROMPT_OPTION = click.option(
    "--base-prompt",
    "base_prompt_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Base system prompt file for every namespace (default: the traces' most common one).",
)

MODE_OPTION = click.option(
    "--mode",
    type=click.Choice(["auto", "propose"]),
    default=Config.mode,
    show_default=True,
    help="auto: significant skills become active; propose: every new skill waits for approval.",
)
MIN_SUPPORT_OPTION = click.option(
    "--min-support",
    type=click.IntRange(min=1),
    default=AnalyzerConfig.min_support,
    show_default=True,
    help="Fewest trajectories with and without a behaviour for it to be tested.",
)
FDR_OPTION = click.option(
    "--fdr",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=AnalyzerConfig.fdr,
    show_default=True,
    help="False discovery rate (Benjamini-Hochberg q-value level).",
)

# The names of the format adapters (pipeline.ingest.formats.ADAPTERS), written out so that the command
# line loads no adapter until a command runs (tests/test_exit_codes.py checks that they agree).
FORMATS = (
    "canonical",
    "tau2",
    "tau-bench",
    "openai-agents",
    "openai-responses",
    "mini-swe-agent",
    "swe-bench-results",
    "who-and-when",
    "langfuse",
    "langsmith",
    "otel",
    "openinference",
    "chat-jsonl",
)
FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    envvar="COACH_FORMAT",
    metavar="NAME",
    help="Input format for every file instead of sniffing (see 'coach formats').",
)


def parse_share(_ctx: click.Context, _param: click.Parameter, value: Any) -> float | None:
    """An experiment share: ``balanced`` (None) or a number strictly between 0 and 1.

    Raises:
        click.BadParameter: anything else.
    """
    if value is None or str(value).strip().lower() == "balanced":
        return None
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 < share < 1:
        raise click.BadParameter(f"{value!r}: use balanced or a number between 0 and 1")
    return share


def parse_max_lessons(_ctx: click.Context, _param: click.Parameter, value: Any) -> int | None:
    """A line budget: a whole number of lessons, ``0``, ``none`` or ``unlimited`` (no limit:
    None).

    Raises:
        click.BadParameter: anything else.
    """
    if value is None or str(value).strip().lower() in ("none", "unlimited"):
        return None
    try:
        lessons = int(str(value).strip())
    except ValueError:
        lessons = -1
    if lessons < 0:
        raise click.BadParameter(f"{value!r}: use a number of lessons, or 0 or none for no limit")
    return lessons or None


MAX_LESSONS_OPTION = click.option(
    "--max-lessons",
    default=str(Config.max_lessons),
    show_default=True,
    callback=parse_max_lessons,
    metavar="N|none",
    help="Most lessons in one prompt, ranked by expected impact (support times effect); "
    "the rest are listed in SKILLBOOK.md under 'Over the prompt budget'. 0 or none: no limit.",
)


def parse_since(_ctx: click.Context, _param: click.Parameter, value: Any) -> datetime | None:
    """A ``--since`` value: an ISO 8601 time (a date, or a date and time; without a zone: UTC).

    Raises:
        click.BadParameter: anything else.
    """
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r}: use an ISO 8601 time such as 2025-06-01T12:00Z"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def since_option(items: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--since ISO`` option of a pull (:func:`parse_since`), whose help says it leaves
    out the ``items`` (``traces``, ``spans``) that started before that time."""
    return click.option(
        "--since",
        default=None,
        callback=parse_since,
        metavar="ISO",
        help=f"Leave out {items} that started before this time (UTC unless a zone is given).",
    )


SINCE_OPTION = since_option("traces")

# Where ``coach pull ...`` writes what it pulled: the traces folder ``learn`` reads.
TRACES_OUT_OPTION = click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default="traces",
    envvar="COACH_TRACES",
    show_default=True,
    help="Folder the pulled file is written to (the traces folder learn reads).",
)

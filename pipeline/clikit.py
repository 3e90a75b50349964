"""Building blocks shared by the ``coach`` subcommands: common options, error mapping, output.

A subcommand module (``pipeline/cli_*.py``) defines its click command or group with these and is
registered on :func:`pipeline.cli.main` at the end of ``pipeline/cli.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from pipeline.errors import CoachError

__all__ = [
    "BASE_PROMPT_OPTION",
    "CONTEXT",
    "FDR_OPTION",
    "MIN_SUPPORT_OPTION",
    "MODE_OPTION",
    "OUT_OPTION",
    "SKILLBOOK_OPTION",
    "TEMPLATES_OPTION",
    "common",
    "domain_errors",
    "emit",
    "say",
]

CONTEXT = {"help_option_names": ["-h", "--help"]}


def domain_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a :class:`~pipeline.errors.CoachError` into a click error: message on stderr, exit 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CoachError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--data-dir`` (``data_dir``), ``--json`` (``as_json``) and ``-q`` (``quiet``)."""
    options = [
        click.option(
            "--data-dir",
            type=click.Path(path_type=Path),
            default=Path(".coach"),
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
    """Print ``payload`` as indented JSON when ``as_json``, else ``text``, to stdout."""
    click.echo(json.dumps(payload, indent=2, default=str) if as_json else text)


SKILLBOOK_OPTION = click.option(
    "--skillbook",
    "skillbook_dir",
    type=click.Path(path_type=Path),
    default=Path("skillbook"),
    envvar="COACH_SKILLBOOK",
    show_default=True,
    help="Directory of skillbook.json and SKILLBOOK.md.",
)
OUT_OPTION = click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("prompts_out"),
    envvar="COACH_OUT",
    show_default=True,
    help="Directory for rendered prompts.",
)
TEMPLATES_OPTION = click.option(
    "--templates",
    "template_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    envvar="COACH_TEMPLATES",
    help="Directory with a system_prompt.md.j2 overriding the default template.",
)
BASE_PROMPT_OPTION = click.option(
    "--base-prompt",
    "base_prompt_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Base system prompt file for every namespace (default: the traces' most common one).",
)

MODE_OPTION = click.option(
    "--mode",
    type=click.Choice(["auto", "propose"]),
    default="auto",
    show_default=True,
    help="auto: significant skills become active; propose: every new skill waits for approval.",
)
MIN_SUPPORT_OPTION = click.option(
    "--min-support",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Fewest trajectories with and without a behaviour for it to be tested.",
)
FDR_OPTION = click.option(
    "--fdr",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="False discovery rate (Benjamini-Hochberg q-value level).",
)

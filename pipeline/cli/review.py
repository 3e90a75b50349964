"""What the review commands (``coach skills ...``, ``coach skillbook ...``) share: who decides,
and a change of the Skillbook taken under its lock, saved as a new version, with the prompts
rendered again."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from pipeline.cli.options import say
from pipeline.config import RENDER_SETTINGS, Config, render_options
from pipeline.fileio import lock
from pipeline.learn import prompt_budget, render_prompts, stored_base_prompts
from pipeline.render import save_skillbook
from pipeline.skillbook import Skillbook

__all__ = [
    "ACTOR_OPTION",
    "NOTE_OPTION",
    "change_skillbook",
    "load_skillbook",
    "rerender_config",
    "resolve_actor",
]


def resolve_actor(value: str | None) -> str:
    """Who takes a decision: ``value`` (``--actor``, ``$COACH_ACTOR``), else the login name,
    else ``"unknown"``."""
    if value:
        return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


ACTOR_OPTION = click.option(
    "--actor",
    default=None,
    envvar="COACH_ACTOR",
    help="Who decides (default: $COACH_ACTOR, else the login name).",
)
NOTE_OPTION = click.option("--note", default=None, help="Why; kept in the history.")


def load_skillbook(skillbook_dir: Path) -> Skillbook:
    """The Skillbook in ``skillbook_dir``.

    Raises:
        SkillbookError: unreadable or of a future format.
    """
    return Skillbook.load(skillbook_dir / "skillbook.json")


def rerender_config(skillbook_dir: Path, out_dir: Path, data_dir: Path) -> Config:
    """The settings to render the prompts again with: those the last render in ``data_dir``
    used (:data:`pipeline.config.RENDER_SETTINGS`: templates, base prompt file, budgets), else
    the defaults."""
    try:
        saved = json.loads((data_dir / RENDER_SETTINGS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    config = Config(data_dir=data_dir, skillbook_dir=skillbook_dir, out_dir=out_dir)
    return replace(config, **render_options(saved))


def _rerender(book: Skillbook, skillbook_dir: Path, out_dir: Path, data_dir: Path) -> list[str]:
    """Render the prompts again, the way they were last rendered, when the trace tables (or the
    base prompt file) give the base prompts; else say so."""
    config = rerender_config(skillbook_dir, out_dir, data_dir)
    bases = stored_base_prompts(config)
    if bases is None:
        return []
    return [str(p) for p in render_prompts(config, book, bases)]


def change_skillbook(
    skillbook_dir: Path,
    out_dir: Path,
    data_dir: Path,
    quiet: bool,
    apply: Callable[[Skillbook], Any],
    create: bool = False,
) -> tuple[Skillbook, Any, list[str]]:
    """Load, ``apply``, save and re-render under the Skillbook lock (``create``: a missing
    Skillbook starts empty)."""
    with lock(skillbook_dir / ".skillbook.lock"):
        path = skillbook_dir / "skillbook.json"
        if not path.exists() and not create:
            raise click.ClickException(
                f"{path}: no Skillbook here; run 'coach learn' first or pass --skillbook DIR"
            )
        book = load_skillbook(skillbook_dir)
        outcome = apply(book)
        budget = prompt_budget(rerender_config(skillbook_dir, out_dir, data_dir))
        save_skillbook(book, skillbook_dir, budget=budget)
        prompts = _rerender(book, skillbook_dir, out_dir, data_dir)
    if not prompts:
        say(quiet)(
            f"prompts not rendered again: no trace tables in {data_dir}; run 'coach render' "
            "with --data-dir or --base-prompt"
        )
    return book, outcome, prompts

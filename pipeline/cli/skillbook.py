"""``coach skillbook ...``: the Skillbook's versions (log, checkout, diff).

A checkout is a decision like those of ``coach skills``: it goes through the same locked,
recorded, re-rendering change (:func:`pipeline.cli.skills._change`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from pipeline.cli.options import CONTEXT, OUT_OPTION, SKILLBOOK_OPTION, common, domain_errors, emit
from pipeline.cli.review import (
    ACTOR_OPTION,
    NOTE_OPTION,
    change_skillbook,
    load_skillbook,
    resolve_actor,
)
from pipeline.config import timestamp
from pipeline.render import history_line
from pipeline.skillbook import checkout, diff, load_ref, read_runs

__all__ = ["skillbook_group"]


def _ref(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A version (vN or N), a Skillbook directory or a skillbook.json file, else bad usage
    (exit 2); whether version N is kept is for the command to say (exit 1)."""
    if value is None or re.fullmatch(r"v?\d+", value) or Path(value).exists():
        return value
    raise click.BadParameter(
        f"{value!r} is neither a version (vN) nor an existing Skillbook directory or file",
        ctx=ctx,
        param=param,
    )


@click.group("skillbook", context_settings=CONTEXT)
def skillbook_group() -> None:
    """The Skillbook's versions: log, checkout (restore), diff.

    Example: coach skillbook log
    """


@skillbook_group.command("log")
@click.option("--skill", "skill_ref", default=None, help="Only entries about this skill.")
@click.option(
    "--runs", is_flag=True, help="Every learn run (runs.jsonl), also those without change."
)
@SKILLBOOK_OPTION
@common
@domain_errors
def log_command(
    skill_ref: str | None,
    runs: bool,
    skillbook_dir: Path,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Show the history: every version with who did what, newest last.

    Example: coach skillbook log --skill sk-3f2a
    """
    book = load_skillbook(skillbook_dir)
    entries = read_runs(skillbook_dir) if runs else list(book.history)
    if skill_ref:
        sid = book.find(skill_ref).id
        entries = [
            e
            for e in entries
            if e.get("skill_id") == sid or any(sid in v for v in e.get("changes", {}).values())
        ]
    emit(
        as_json,
        {"skillbook_version": book.version, "entries": entries},
        "\n".join(history_line(e) for e in entries) or "no history yet",
    )


@skillbook_group.command("checkout")
@click.argument("version", callback=_ref)
@SKILLBOOK_OPTION
@OUT_OPTION
@NOTE_OPTION
@ACTOR_OPTION
@common
@domain_errors
def checkout_command(
    version: str,
    skillbook_dir: Path,
    out_dir: Path,
    note: str | None,
    actor: str | None,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Restore an earlier version (vN or N). The restore is itself a new version; nothing is
    deleted: skills added after vN are retired.

    Example: coach skillbook checkout v3 --note 'back to before the nightly run'
    """
    earlier = load_ref(skillbook_dir, version)
    who = resolve_actor(actor)
    book, result, prompts = change_skillbook(
        skillbook_dir,
        out_dir,
        data_dir,
        quiet,
        lambda b: checkout(
            b, earlier, restored=earlier.version, actor=who, now=timestamp(), note=note
        ),
    )
    emit(
        as_json,
        {
            "skillbook_version": book.version,
            "restored": earlier.version,
            "skills": result.decided,
            "prompts": prompts,
        },
        f"restored v{earlier.version} as v{book.version}: {len(result.decided)} skills changed",
    )


@skillbook_group.command("diff")
@click.argument("before", callback=_ref)
@click.argument("after", required=False, callback=_ref)
@SKILLBOOK_OPTION
@common
@domain_errors
def diff_command(
    before: str,
    after: str | None,
    skillbook_dir: Path,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Compare two Skillbooks: BEFORE and AFTER are versions (vN) of --skillbook, Skillbook
    directories or skillbook.json files; AFTER defaults to the current Skillbook.

    Example: coach skillbook diff v2 v5
    """
    old = load_ref(skillbook_dir, before)
    new = load_ref(skillbook_dir, after) if after else load_skillbook(skillbook_dir)
    result = diff(old, new)
    lines = [f"v{old.version} -> v{new.version}"]
    for sid, s in result["added"].items():
        lines.append(f"+ {sid} [{s['status']}] {s['instruction']}")
    for sid, s in result["removed"].items():
        lines.append(f"- {sid} [{s['status']}] {s['instruction']}")
    for sid, fields in result["changed"].items():
        parts = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in fields.items())
        lines.append(f"~ {sid} {parts}")
    if len(lines) == 1:
        lines.append("no differences")
    emit(as_json, result, "\n".join(lines))

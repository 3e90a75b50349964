"""``coach skills ...``: review skills one by one (``coach skillbook ...`` is in
:mod:`pipeline.cli_skillbook`).

Every decision (approve, reject, retire, edit, import, checkout) is taken under the Skillbook
lock, recorded in the skill's and the Skillbook's history with the time, the actor (``--actor``,
else ``$COACH_ACTOR``, else ``$USER``) and the note, saved atomically as a new version, and the
prompts are rendered again (when the trace tables in ``--data-dir`` are there to give the base
prompts).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.clikit import CONTEXT, OUT_OPTION, SKILLBOOK_OPTION, common, domain_errors, emit, say
from pipeline.config import Config, timestamp
from pipeline.fileio import lock
from pipeline.report_md import evidence_line
from pipeline.skillbook_types import SECTIONS, STATUSES

if TYPE_CHECKING:
    from pipeline.skillbook import Skill, Skillbook

__all__ = ["skills_group"]


def _actor(value: str | None) -> str:
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


def _load(skillbook_dir: Path) -> Skillbook:
    from pipeline.skillbook import Skillbook

    return Skillbook.load(skillbook_dir / "skillbook.json")


def _rerender(book: Skillbook, skillbook_dir: Path, out_dir: Path, data_dir: Path) -> list[str]:
    """Render the prompts again when the trace tables give the base prompts; else say so."""
    import polars as pl

    from pipeline.learn import render_prompts

    table = data_dir / "tables" / "trajectories.parquet"
    if not table.exists():
        return []
    trajectories = pl.read_parquet(table, columns=["domain", "system_prompt"])
    config = Config(data_dir=data_dir, skillbook_dir=skillbook_dir, out_dir=out_dir)
    return [str(p) for p in render_prompts(config, book, trajectories)]


def _change(
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
        book = _load(skillbook_dir)
        outcome = apply(book)
        book.save(skillbook_dir)
        prompts = _rerender(book, skillbook_dir, out_dir, data_dir)
    if not prompts:
        say(quiet)(
            f"prompts not rendered again: no trace tables in {data_dir}; run 'coach render' "
            "with --data-dir or --base-prompt"
        )
    return book, outcome, prompts


def _row(skill: Skill) -> dict[str, Any]:
    return {
        "id": skill.id,
        "status": skill.status,
        "namespace": skill.namespace,
        "section": skill.section,
        "instruction": skill.instruction,
        "flags": list(skill.flags),
        "edited": bool(skill.source.get("edited")),
        "method": skill.source.get("method"),
        "odds_ratio": skill.evidence.get("odds_ratio"),
        "q_value": skill.evidence.get("q_value"),
        "version": skill.version,
    }


@click.group("skills", context_settings=CONTEXT)
def skills_group() -> None:
    """Review the skills of a Skillbook: list, show, approve, reject, retire, edit, export.

    Example: coach skills list --status proposed
    """


@skills_group.command("list")
@SKILLBOOK_OPTION
@click.option(
    "--status", "statuses", multiple=True, type=click.Choice(STATUSES), help="Repeatable."
)
@click.option("--namespace", "namespaces", multiple=True, help="e.g. domain:airline; repeatable.")
@click.option(
    "--section", "sections", multiple=True, type=click.Choice(SECTIONS), help="Repeatable."
)
@common
@domain_errors
def list_command(
    skillbook_dir: Path,
    statuses: tuple[str, ...],
    namespaces: tuple[str, ...],
    sections: tuple[str, ...],
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """List skills with their status, namespace, section and figures.

    Example: coach skills list --status proposed --namespace domain:travel --json
    """
    book = _load(skillbook_dir)
    rows = [
        _row(s)
        for s in sorted(book.skills.values(), key=lambda s: (s.status, s.namespace, s.id))
        if (not statuses or s.status in statuses)
        and (not namespaces or s.namespace in namespaces)
        and (not sections or s.section in sections)
    ]
    lines = []
    for r in rows:
        marks = "".join(
            [
                " (edited)" if r["edited"] else "",
                f" [{', '.join(r['flags'])}]" if r["flags"] else "",
            ]
        )
        odds = "" if r["odds_ratio"] is None else f" OR {r['odds_ratio']:.2f}"
        lines.append(
            f"{r['id']}  {r['status']:<8} {r['namespace']:<16} {r['section']:<11}{odds}  "
            f"{r['instruction']}{marks}"
        )
    emit(
        as_json,
        {"skillbook_version": book.version, "skills": rows},
        "\n".join(lines) or "no skills match",
    )


@skills_group.command("show")
@click.argument("skill_id")
@SKILLBOOK_OPTION
@common
@domain_errors
def show_command(
    skill_id: str, skillbook_dir: Path, data_dir: Path, as_json: bool, quiet: bool
) -> None:
    """Show one skill: instruction, evidence, example trajectories and its history.

    SKILL_ID may be a unique prefix of the id.

    Example: coach skills show sk-3f2a
    """
    skill = _load(skillbook_dir).find(skill_id)
    ev = skill.evidence
    lines = [
        f"{skill.id} · {skill.status} · {skill.namespace} · {skill.section} · v{skill.version}",
        f"instruction: {skill.instruction}",
        f"pattern: {skill.source.get('pattern_id')} ({skill.source.get('method')})",
    ]
    if skill.source.get("edited"):
        lines.append(f"wording edited by {skill.source.get('edited_by')} (kept across runs)")
    if ev.get("odds_ratio") is not None:
        lines += [f"evidence: {evidence_line(ev)}", f"stratified by {ev.get('stratification')}"]
    if skill.flags:
        lines.append(f"flags: {', '.join(skill.flags)}")
    for example in ev.get("examples") or []:
        lines.append(f"example: trajectory {example['trajectory_id']} step {example['step_idx']}")
    if skill.validation:
        lines.append(f"validation: {json.dumps(skill.validation, sort_keys=True)}")
    lines.append("history:")
    for entry in skill.history:
        moved = f" {entry['from']} -> {entry['to']}" if entry.get("from") else ""
        note = f": {entry['note']}" if entry.get("note") else ""
        lines.append(f"  {entry.get('at')}  {entry.get('actor')}  {entry['action']}{moved}{note}")
    emit(as_json, skill.to_dict(), "\n".join(lines))


def _decision(action: str, doc: str) -> click.Command:
    @click.command(action, help=doc)
    @click.argument("skill_id")
    @SKILLBOOK_OPTION
    @OUT_OPTION
    @NOTE_OPTION
    @ACTOR_OPTION
    @common
    @domain_errors
    def command(
        skill_id: str,
        skillbook_dir: Path,
        out_dir: Path,
        note: str | None,
        actor: str | None,
        data_dir: Path,
        as_json: bool,
        quiet: bool,
    ) -> None:
        who = _actor(actor)
        book, skill, prompts = _change(
            skillbook_dir,
            out_dir,
            data_dir,
            quiet,
            lambda b: b.decide(skill_id, action, actor=who, now=timestamp(), note=note),
        )
        emit(
            as_json,
            {"skill": _row(skill), "skillbook_version": book.version, "prompts": prompts},
            f"{skill.id}: {skill.status} (Skillbook v{book.version}, by {who})",
        )

    return command


for _action, _doc in (
    (
        "approve",
        "Approve a proposed (or rejected, retired) skill: it becomes active and enters the "
        "prompts. On an active skill with flags, keep it and clear the flags.\n\n"
        "Example: coach skills approve sk-3f2a --note 'matches our policy'",
    ),
    (
        "reject",
        "Reject a skill. It is not proposed again for the same pattern unless its evidence "
        "changes materially (direction flips, or its odds-ratio interval no longer overlaps "
        "the one at rejection).\n\nExample: coach skills reject sk-3f2a --note 'confounded'",
    ),
    (
        "retire",
        "Retire a skill: it leaves the prompts and stays in the Skillbook with its history."
        "\n\nExample: coach skills retire sk-3f2a --note 'policy changed'",
    ),
):
    skills_group.add_command(_decision(_action, _doc))


@skills_group.command("edit")
@click.argument("skill_id")
@click.option("--text", default=None, help="The new wording (default: open $EDITOR).")
@SKILLBOOK_OPTION
@OUT_OPTION
@NOTE_OPTION
@ACTOR_OPTION
@common
@domain_errors
def edit_command(
    skill_id: str,
    text: str | None,
    skillbook_dir: Path,
    out_dir: Path,
    note: str | None,
    actor: str | None,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Reword a skill. A person's wording is kept across later runs and marked as edited.

    Without --text, $EDITOR opens on the current wording.

    Example: coach skills edit sk-3f2a --text "Ask for an explicit yes before booking."
    """
    if text is None:
        current = _load(skillbook_dir).find(skill_id).instruction
        edited = click.edit(current + "\n")
        if edited is None or not edited.strip() or edited.strip() == current:
            raise click.ClickException("wording unchanged; nothing recorded")
        text = edited
    who = _actor(actor)
    book, skill, prompts = _change(
        skillbook_dir,
        out_dir,
        data_dir,
        quiet,
        lambda b: b.decide(skill_id, "edit", actor=who, now=timestamp(), note=note, text=text),
    )
    emit(
        as_json,
        {"skill": _row(skill), "skillbook_version": book.version, "prompts": prompts},
        f"{skill.id}: reworded (Skillbook v{book.version}, by {who})\n  {skill.instruction}",
    )


@skills_group.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["agents-md", "ace"]),
    default="agents-md",
    show_default=True,
    help="agents-md: a Markdown section for AGENTS.md / CLAUDE.md; ace: Kayba ACE JSON.",
)
@click.option("--namespace", "namespaces", multiple=True, help="Only these (agents-md).")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write to this file (atomically) instead of stdout.",
)
@SKILLBOOK_OPTION
@domain_errors
def export_command(
    fmt: str, namespaces: tuple[str, ...], output: Path | None, skillbook_dir: Path
) -> None:
    """Export the skills: the active ones as Markdown for coding agents, or all as ACE JSON.

    Example: coach skills export --format agents-md -o AGENTS.skills.md
    """
    from pipeline.fileio import atomic_write
    from pipeline.interop import agents_md, to_ace

    book = _load(skillbook_dir)
    if fmt == "agents-md":
        text = agents_md(book, list(namespaces) or None)
    else:
        text = json.dumps(to_ace(book), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write(output, text)


@skills_group.command("import")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--format", "fmt", type=click.Choice(["ace"]), default="ace", show_default=True)
@click.option(
    "--namespace",
    default="global",
    show_default=True,
    help="Namespace of foreign skills: global, agent:<name>, domain:<name> or user:<id>.",
)
@SKILLBOOK_OPTION
@OUT_OPTION
@NOTE_OPTION
@ACTOR_OPTION
@common
@domain_errors
def import_command(
    path: Path,
    fmt: str,
    namespace: str,
    skillbook_dir: Path,
    out_dir: Path,
    note: str | None,
    actor: str | None,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Import skills from a Kayba ACE skillbook JSON file; foreign skills enter as proposed.

    Example: coach skills import ace_skillbook.json --namespace agent:support
    """
    if not (namespace == "global" or namespace.split(":", 1)[0] in ("agent", "domain", "user")):
        raise click.BadParameter(
            "use global, agent:<name>, domain:<name> or user:<id>", param_hint="--namespace"
        )
    from pipeline.interop import from_ace

    skills = from_ace(path, namespace=namespace)
    who = _actor(actor)
    book, added, prompts = _change(
        skillbook_dir,
        out_dir,
        data_dir,
        quiet,
        lambda b: b.add_skills(skills, actor=who, now=timestamp(), note=note or f"from {path}"),
        create=True,
    )
    emit(
        as_json,
        {"added": added, "read": len(skills), "skillbook_version": book.version},
        f"{len(added)} of {len(skills)} skills imported from {path} (Skillbook v{book.version})",
    )

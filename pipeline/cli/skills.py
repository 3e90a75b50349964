"""``coach skills ...``: review skills one by one (``coach skillbook ...`` is in
:mod:`pipeline.cli.skillbook`).

Every decision (approve, reject, retire, edit, import, checkout) is taken under the Skillbook
lock, recorded in the skill's and the Skillbook's history with the time, the actor (``--actor``,
else ``$COACH_ACTOR``, else ``$USER``) and the note, saved atomically as a new version, and the
prompts are rendered again (when the trace tables in ``--data-dir`` are there to give the base
prompts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pipeline.cli.options import (
    CONTEXT,
    OUT_OPTION,
    SKILLBOOK_OPTION,
    common,
    domain_errors,
    emit,
)
from pipeline.cli.review import (
    ACTOR_OPTION,
    NOTE_OPTION,
    change_skillbook,
    load_skillbook,
    resolve_actor,
)
from pipeline.config import timestamp
from pipeline.redact import redact_data
from pipeline.render import agents_md, evidence_line, from_ace, to_ace
from pipeline.render.skillbook_md import evidence_kinds, offline_label
from pipeline.skillbook import SECTIONS, STATUSES, Skill

__all__ = ["skills_group"]


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
    book = load_skillbook(skillbook_dir)
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
    skill = load_skillbook(skillbook_dir).find(skill_id)
    ev = skill.evidence
    lines = [
        f"{skill.id} · {skill.status} · {skill.namespace} · {skill.section} · v{skill.version}",
        f"instruction: {skill.instruction}",
        f"pattern: {skill.source.get('pattern_id')} ({skill.source.get('method')})",
    ]
    if skill.source.get("edited"):
        lines.append(f"wording edited by {skill.source.get('edited_by')} (kept across runs)")
    if ev.get("odds_ratio") is not None:
        lines += [
            f"{offline_label(ev).lower()}: {evidence_line(ev)}",
            f"stratified by {ev.get('stratification')}",
        ]
    if skill.flags:
        lines.append(f"flags: {', '.join(skill.flags)}")
    for example in ev.get("examples") or []:
        step = example.get("step_idx")
        at = f" step {step}" if step is not None else ""
        lines.append(f"example: trajectory {example['trajectory_id']}{at}")
    # the held-out replication and the live-traffic evidence, each labelled by its kind
    for kind in evidence_kinds(skill):
        lines.append(f"{kind['label'].lower()}: {kind['line']}")
        if kind["kind"] in ("experiment", "holdback") and kind["method"]:
            lines.append(f"  method: {kind['method']}")
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
        who = resolve_actor(actor)
        book, skill, prompts = change_skillbook(
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
        current = load_skillbook(skillbook_dir).find(skill_id).instruction
        edited = click.edit(current + "\n")
        if edited is None or not edited.strip() or edited.strip() == current:
            raise click.ClickException("wording unchanged; nothing recorded")
        text = edited
    who = resolve_actor(actor)
    book, skill, prompts = change_skillbook(
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

    book = load_skillbook(skillbook_dir)
    if fmt == "agents-md":
        text = agents_md(book, list(namespaces) or None)
    else:
        text = json.dumps(redact_data(to_ace(book)), indent=2, ensure_ascii=False) + "\n"
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
    skills = from_ace(path, namespace=namespace)
    who = resolve_actor(actor)
    book, added, prompts = change_skillbook(
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

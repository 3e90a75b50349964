"""Markdown for a pull-request comment from a :class:`pipeline.render.diff.PromptDiff`.

:func:`markdown_summary` writes the prompt lines added and removed (with the skill each
carries), a table per kind of skill change with its evidence (the offline contrast beside the
live-traffic experiment) and the kind of evidence that moved it (:func:`moved_by`), and the
unified diff, cut to GitHub's comment limit. :func:`example_sources` maps example trajectories
to their source files for the links. The text is the templates ``diff.md.j2`` and
``diff_details.md.j2`` rendered by :func:`pipeline.render.environment.environment`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pipeline.render.diff import PromptDiff, SkillChange
from pipeline.render.environment import (
    break_template_syntax,
    code_span,
    environment,
    fence,
    markdown_inline,
    num,
    pval,
)
from pipeline.render.skillbook_md import experiment_figures, live_label, points
from pipeline.skillbook import Skill

__all__ = [
    "COMMENT_LIMIT",
    "PROMPT_LINES_SHOWN",
    "example_sources",
    "markdown_summary",
    "moved_by",
]

TEMPLATE = "diff.md.j2"
DETAILS_TEMPLATE = "diff_details.md.j2"

# GitHub rejects comments longer than 65536 characters.
COMMENT_LIMIT = 60_000
PROMPT_LINES_SHOWN = 40  # changed lines listed per prompt file before the unified diff
# the note of a skill history entry written by an experiment's decision
_EXPERIMENT_NOTE = re.compile(r"^experiment (ex-\w+): (\w+)")
_MOVED = {"active": "activated", "proposed": "proposed", "rejected": "rejected"}
_REJECTED_AS = {"reject_harm": "harmful", "reject_futile": "futile"}


def example_sources(tables_dir: Path) -> dict[str, str]:
    """trajectory_id -> source_uri (the file the trajectory was read from) from the
    ``trajectories`` table in ``tables_dir``; empty when the table is absent."""
    import polars as pl

    path = tables_dir / "trajectories.parquet"
    if not path.is_file():
        return {}
    frame = pl.read_parquet(path, columns=["trajectory_id", "source_uri"])
    return dict(zip(frame["trajectory_id"].to_list(), frame["source_uri"].to_list(), strict=True))


def _examples(
    ev: dict[str, Any], sources: dict[str, str], link_base: str | None, limit: int = 3
) -> str:
    out = []
    for example in (ev.get("examples") or [])[:limit]:
        tid, step = example.get("trajectory_id"), example.get("step_idx")
        label = code_span(tid) + (f" step {step}" if step is not None else "")
        source = sources.get(tid)
        if source and link_base:
            out.append(f"[{label}]({link_base.rstrip('/')}/{quote(source.lstrip('./'))})")
        elif source:
            out.append(f"{label} in {code_span(source)}")
        else:
            out.append(label)
    return ", ".join(out) or "none recorded"


def _by_experiment(
    entry: dict[str, Any] | None, skill: Skill, code: Callable[[Any], str]
) -> str | None:
    """``by experiment <id>`` (with ``: harmful`` or ``: futile`` for a rejection) when an
    experiment's decision moved ``skill`` (``entry``: the history entry that moved it)."""
    match = _EXPERIMENT_NOTE.match(str((entry or {}).get("note") or ""))
    live = skill.experiment or {}
    if entry is not None and entry.get("actor") == "coach" and match:
        ex_id, decision = match.group(1), match.group(2)
        if live.get("experiment_id") == ex_id:
            decision = str(live.get("decision") or decision)
    elif entry is None and live.get("decision") in ("promote", *_REJECTED_AS):
        ex_id, decision = live.get("experiment_id"), str(live.get("decision"))
        if (decision == "promote") != (skill.status == "active"):
            return None
    else:
        return None
    why = _REJECTED_AS.get(decision) if skill.status != "active" else None
    return f"by experiment {code(ex_id)}" + (f": {why}" if why else "")


def moved_by(change: SkillChange, *, markdown: bool = True) -> str:
    """Which kind of evidence moved a changed skill, read from the history entries the new side
    added (an experiment's ``promote`` / ``reject`` by ``coach`` names its experiment in the
    note) or else from the skill's ``experiment`` decision: ``activated by experiment
    `ex-...```, ``rejected by experiment `ex-...`: harmful``, ``activated by offline
    contrast``, ``rejected by a person (ada)``; for a skill whose status stayed, ``new offline
    contrast`` and/or ``new look at experiment `ex-...```. ``markdown``: ids as code spans,
    names escaped; else plain text (for the autoescaped HTML report)."""
    new, old = change.skill, change.old
    code: Callable[[Any], str] = code_span if markdown else str
    text: Callable[[Any], str] = markdown_inline if markdown else str
    if change.kind == "removed":
        return "removed from the Skillbook"
    if old is not None and old.status == new.status:
        parts = ["new offline contrast"] if "evidence" in change.fields else []
        if "experiment" in change.fields and new.experiment:
            label = live_label(new.experiment).split(" ")[0].lower()
            parts.append(f"new look at {label} {code(new.experiment.get('experiment_id'))}")
        return "; ".join(parts)
    seen = list(old.history) if old is not None else []
    entry = next(
        (
            e
            for e in reversed([e for e in new.history if e not in seen])
            if e.get("to") == new.status or e.get("action") in ("promote", "reject")
        ),
        None,
    )
    verb = _MOVED.get(new.status, text(new.status))
    cause = _by_experiment(entry, new, code)
    if cause is None and entry is not None and entry.get("actor") != "coach":
        cause = f"by a person ({text(entry.get('actor'))})"
    elif cause is None and entry is not None and entry.get("action") == "merged":
        cause = "as a near-duplicate"
    elif cause is None and new.source.get("method") == "import":
        cause = "by import"
    return f"{verb} {cause or 'by offline contrast'}"


def _experiment_cell(skill: Skill) -> str:
    """The live-traffic figures of a skill for a table cell, or an em dash."""
    live = skill.experiment
    if not live:
        return "—"
    return (
        f"{live_label(live)} {code_span(live.get('experiment_id'))}: "
        f"{experiment_figures(live, markdown=True)}"
    )


def _change_note(change: SkillChange) -> str:
    if change.old is None or not change.fields:
        return ""
    notes = []
    a, b = change.old, change.skill
    if "status" in change.fields:
        notes.append(f"status {a.status} → {b.status}")
    if "instruction" in change.fields:
        notes.append(f"wording was: {markdown_inline(a.instruction)}")
    if "evidence" in change.fields:
        for key, label in (("odds_ratio", "odds ratio"), ("q_value", "q"), ("n_with", "n with")):
            before, after = a.evidence.get(key), b.evidence.get(key)
            if before != after:
                show = pval if key == "q_value" else num
                a_text, b_text = show(before), show(after)
                if a_text == b_text and key == "odds_ratio":
                    a_text, b_text = num(before, 3), num(after, 3)
                notes.append(f"{label} {a_text} → {b_text}")
    if "experiment" in change.fields:
        before, after = a.experiment or {}, b.experiment or {}
        if not after:
            notes.append("live-traffic figures cleared")
        elif not before:
            pass  # its first figures: the live-traffic column shows them
        elif before.get("experiment_id") == after.get("experiment_id"):
            notes.append(
                f"difference {points(before.get('difference'))} → "
                f"{points(after.get('difference'))} points, looks {before.get('looks')} → "
                f"{after.get('looks')}"
            )
        else:
            label = live_label(after).split(" ")[0].lower()
            notes.append(f"new {label} {code_span(after.get('experiment_id'))}")
    if "flags" in change.fields:
        notes.append("flags: " + (markdown_inline(", ".join(b.flags)) or "cleared"))
    if "section" in change.fields:
        notes.append(f"section {markdown_inline(a.section)} → {markdown_inline(b.section)}")
    return "; ".join(notes)


def markdown_summary(
    diff: PromptDiff,
    *,
    sources: dict[str, str] | None = None,
    link_base: str | None = None,
    max_chars: int = COMMENT_LIMIT,
) -> str:
    """Markdown for a pull-request comment: a headline (Skillbook versions, counts), the prompt
    lines added and removed with the skill each carries, a table per kind of skill change with
    the offline contrast (n, success rates, lift, odds ratio with 95% interval, q), the
    live-traffic experiment beside it (:func:`experiment_figures`; the column only when a skill
    in the tables was in one), what changed, led by the
    kind of evidence that moved the skill (:func:`moved_by`), and example
    trajectories (linked to ``link_base`` + source path when given, e.g.
    ``https://github.com/OWNER/REPO/blob/SHA``), then the unified diff in a collapsed block.

    ``sources``: trajectory_id -> source file (:func:`example_sources`). The text is cut to
    ``max_chars`` (GitHub's comment limit is 65536 characters), the unified diff first.
    """
    sources = sources or {}
    env = environment()
    prompts: list[dict[str, Any]] = []
    skills = {
        s.id: s for s in (*diff.old.skillbook.skills.values(), *diff.new.skillbook.skills.values())
    }
    for change in diff.prompts:
        whole = change.status != "modified"
        size = len(change.added if change.status == "added" else change.removed)
        carrying = sum(t in change.skills for t in change.added + change.removed)
        note = ""
        if whole:
            note = f", {size} lines, " + (
                f"{carrying} carrying skills:" if carrying else "none carrying a skill"
            )
        shown: list[dict[str, Any]] = []
        count = 0
        for sign, texts in (("added", change.added), ("removed", change.removed)):
            for text in texts:
                sid = change.skills.get(text)
                if not text.strip() or (whole and sid is None):
                    continue
                count += 1
                if count <= PROMPT_LINES_SHOWN:
                    shown.append(
                        {
                            "sign": sign,
                            "text": text[2:] if text.startswith("- ") else text,
                            "why": {
                                "id": sid,
                                "ev": skills[sid].evidence,
                                "live": _experiment_cell(skills[sid])
                                if skills[sid].experiment
                                else None,
                            }
                            if sid is not None
                            else None,
                        }
                    )
        prompts.append(
            {
                "file": change.file,
                "status": change.status,
                "note": note,
                "shown": not (whole and not carrying),
                "lines": shown,
                "more": max(0, count - PROMPT_LINES_SHOWN),
            }
        )
    tables = [
        {
            "title": title,
            "rows": [
                {
                    "skill": c.skill,
                    "status": c.skill.status
                    + (f" ({', '.join(c.skill.flags)})" if c.skill.flags else ""),
                    "note": "; ".join(filter(None, (moved_by(c), _change_note(c)))),
                    "live": _experiment_cell(c.skill),
                    "examples": _examples(c.skill.evidence, sources, link_base),
                }
                for c in changes
            ],
        }
        for title, changes in (
            ("Skills added", diff.added),
            ("Skills changed", diff.changed),
            ("Skills retired", diff.retired),
        )
        if changes
    ]
    # the live-traffic column only when a skill in the tables has such evidence on either side
    live = any(
        c.skill.experiment or (c.old is not None and c.old.experiment)
        for c in (*diff.added, *diff.changed, *diff.retired)
    )
    text = env.get_template(TEMPLATE).render(
        old_label=diff.old.label,
        new_label=diff.new.label,
        old_v=diff.old.skillbook.version if diff.old.has_skillbook else "none",
        new_v=diff.new.skillbook.version if diff.new.has_skillbook else "none",
        n_added=len(diff.added),
        n_changed=len(diff.changed),
        n_retired=len(diff.retired),
        n_prompts=len(diff.prompts),
        n_plus=sum(len(p.added) for p in diff.prompts),
        n_minus=sum(len(p.removed) for p in diff.prompts),
        rendered=diff.rendered_from_skillbook,
        prompts=prompts,
        tables=tables,
        live=live,
    )
    unified = break_template_syntax(diff.unified())
    if unified:
        details = env.get_template(DETAILS_TEMPLATE)
        block = details.render(unified=unified.rstrip("\n"), fence=fence(unified), truncated=False)
        room = max_chars - len(text) - 200
        if len(block) > room:
            cut = unified[: max(0, room - 100)]
            cut = cut[: cut.rfind("\n") + 1] if "\n" in cut else ""
            block = details.render(unified=cut.rstrip("\n"), fence=fence(cut), truncated=True)
        text += "\n" + block
    if len(text) > max_chars:
        text = text[: max_chars - 80].rsplit("\n", 1)[0] + "\n\n_(truncated)_\n"
    return text

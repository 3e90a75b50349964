"""Markdown for a pull-request comment from a :class:`pipeline.render.diff.PromptDiff`.

:func:`markdown_summary` writes the prompt lines added and removed (with the skill each
carries), a table per kind of skill change with its evidence, and the unified diff, cut to
GitHub's comment limit. :func:`example_sources` maps example trajectories to their source files
for the links. The text is the templates ``diff.md.j2`` and ``diff_details.md.j2`` rendered by
:func:`pipeline.render.environment.environment`.
"""

from __future__ import annotations

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

__all__ = ["COMMENT_LIMIT", "PROMPT_LINES_SHOWN", "example_sources", "markdown_summary"]

TEMPLATE = "diff.md.j2"
DETAILS_TEMPLATE = "diff_details.md.j2"

# GitHub rejects comments longer than 65536 characters.
COMMENT_LIMIT = 60_000
PROMPT_LINES_SHOWN = 40  # changed lines listed per prompt file before the unified diff


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
    the evidence (n, success rates, lift, odds ratio with 95% interval, q) and example
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
                            "why": {"id": sid, "ev": skills[sid].evidence}
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
                    "note": _change_note(c),
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

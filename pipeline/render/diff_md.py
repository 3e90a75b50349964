"""Markdown for a pull-request comment from a :class:`pipeline.render.diff.PromptDiff`.

:func:`markdown_summary` writes the prompt lines added and removed (with the skill each
carries), a table per kind of skill change with its evidence, and the unified diff, cut to
GitHub's comment limit. :func:`example_sources` maps example trajectories to their source files
for the links.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline.render.diff import PromptDiff, SkillChange

__all__ = ["COMMENT_LIMIT", "PROMPT_LINES_SHOWN", "example_sources", "markdown_summary"]

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


def _md(text: str) -> str:
    """Inline Markdown-safe text: one line, HTML and table-breaking characters escaped."""
    text = " ".join(str(text).split())
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and value != 0 and abs(value) < 10**-digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _p(value: Any) -> str:
    """A p- or q-value: 4 decimals, scientific when small, ``<1e-06`` for a stored 0."""
    if isinstance(value, int | float) and value == 0:
        return "<1e-06"
    return _fmt(value, 4)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _evidence_cells(ev: dict[str, Any]) -> str:
    return (
        f"{ev.get('n_with')} / {ev.get('n_without')} | {_pct(ev.get('rate_with'))} vs "
        f"{_pct(ev.get('rate_without'))} | {_fmt(ev.get('lift'))} | "
        f"{_fmt(ev.get('odds_ratio'))} [{_fmt(ev.get('ci_low'))}, {_fmt(ev.get('ci_high'))}] | "
        f"{_p(ev.get('q_value'))}"
    )


def _examples(
    ev: dict[str, Any], sources: dict[str, str], link_base: str | None, limit: int = 3
) -> str:
    out = []
    for example in (ev.get("examples") or [])[:limit]:
        tid, step = example.get("trajectory_id"), example.get("step_idx")
        label = f"`{tid}`" + (f" step {step}" if step is not None else "")
        source = sources.get(tid)
        if source and link_base:
            out.append(f"[{label}]({link_base.rstrip('/')}/{source.lstrip('./')})")
        elif source:
            out.append(f"{label} in `{source}`")
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
        notes.append(f"wording was: {_md(a.instruction)}")
    if "evidence" in change.fields:
        for key, label in (("odds_ratio", "odds ratio"), ("q_value", "q"), ("n_with", "n with")):
            before, after = a.evidence.get(key), b.evidence.get(key)
            if before != after:
                show = _p if key == "q_value" else _fmt
                a_text, b_text = show(before), show(after)
                if a_text == b_text and key == "odds_ratio":
                    a_text, b_text = _fmt(before, 3), _fmt(after, 3)
                notes.append(f"{label} {a_text} → {b_text}")
    if "flags" in change.fields:
        notes.append("flags: " + (", ".join(b.flags) or "cleared"))
    if "section" in change.fields:
        notes.append(f"section {a.section} → {b.section}")
    return "; ".join(notes)


def _skill_table(
    changes: tuple[SkillChange, ...], sources: dict[str, str], link_base: str | None
) -> list[str]:
    lines = [
        "| skill | status | n with / without | success with vs without | lift | "
        "odds ratio [95% CI] | q | what changed | examples |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for change in changes:
        skill = change.skill
        status = skill.status + (f" ({', '.join(skill.flags)})" if skill.flags else "")
        lines.append(
            f"| {_md(skill.instruction)}<br>`{skill.id}` · {_md(skill.namespace)} · "
            f"{_md(skill.section)} | {_md(status)} | {_evidence_cells(skill.evidence)} | "
            f"{_change_note(change) or '—'} | {_examples(skill.evidence, sources, link_base)} |"
        )
    return lines


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
    old_v = diff.old.skillbook.version if diff.old.has_skillbook else "none"
    new_v = diff.new.skillbook.version if diff.new.has_skillbook else "none"
    n_plus = sum(len(p.added) for p in diff.prompts)
    n_minus = sum(len(p.removed) for p in diff.prompts)
    head = [
        "<!-- coach-prompt-diff -->",
        "## coach: prompt changes",
        "",
        f"`{_md(diff.old.label)}` → `{_md(diff.new.label)}` · Skillbook v{old_v} → v{new_v} · "
        f"skills: {len(diff.added)} added, {len(diff.changed)} changed, {len(diff.retired)} "
        f"retired · {_plural(len(diff.prompts), 'prompt file')} changed "
        f"(+{n_plus} −{n_minus} lines)",
        "",
    ]
    if diff.rendered_from_skillbook:
        head += [
            "_Prompts rendered from the Skillbooks with the default template and no base "
            "prompt (a side had no prompts directory)._",
            "",
        ]
    body: list[str] = []
    if not diff.prompts:
        body += ["No prompt line changed.", ""]
    else:
        body += ["### Prompt lines", ""]
        skills = {
            s.id: s
            for s in (*diff.old.skillbook.skills.values(), *diff.new.skillbook.skills.values())
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
            body += [f"**`{_md(change.file)}`** ({change.status}{note})", ""]
            if whole and not carrying:
                continue
            shown_lines = 0
            for sign, lines in (("added", change.added), ("removed", change.removed)):
                for text in lines:
                    sid = change.skills.get(text)
                    if not text.strip() or (whole and sid is None):
                        continue
                    shown_lines += 1
                    if shown_lines > PROMPT_LINES_SHOWN:
                        continue
                    why = ""
                    if sid is not None:
                        ev = skills[sid].evidence
                        why = (
                            f" — `{sid}`: odds ratio {_fmt(ev.get('odds_ratio'))} "
                            f"[{_fmt(ev.get('ci_low'))}, {_fmt(ev.get('ci_high'))}], "
                            f"q={_p(ev.get('q_value'))}"
                        )
                    shown = text[2:] if text.startswith("- ") else text
                    body.append(f"- {sign}: {_md(shown)}{why}")
            if shown_lines > PROMPT_LINES_SHOWN:
                body.append(
                    f"- … {shown_lines - PROMPT_LINES_SHOWN} more changed lines in the diff below"
                )
            body.append("")
    for title, changes in (
        ("Skills added", diff.added),
        ("Skills changed", diff.changed),
        ("Skills retired", diff.retired),
    ):
        if changes:
            body += [f"### {title}", "", *_skill_table(changes, sources, link_base), ""]
    body += [
        "<sub>n: trajectories with / without the behaviour; success rates with vs without; lift "
        "= rate with / rate without; odds ratio of success within task with its 95% interval; "
        "q: Benjamini–Hochberg false discovery rate.</sub>",
        "",
    ]
    unified = diff.unified()
    text = "\n".join(head + body)
    if unified:
        block = [
            "<details><summary>Unified diff</summary>",
            "",
            "```diff",
            unified.rstrip("\n"),
            "```",
            "",
            "</details>",
            "",
        ]
        room = max_chars - len(text) - 200
        full = "\n".join(block)
        if len(full) > room:
            cut = unified[: max(0, room - 100)]
            cut = cut[: cut.rfind("\n") + 1] if "\n" in cut else ""
            block = [
                "<details><summary>Unified diff (truncated; run <code>coach diff --format "
                "unified</code> for all of it)</summary>",
                "",
                "```diff",
                cut.rstrip("\n"),
                "```",
                "",
                "</details>",
                "",
            ]
        text += "\n" + "\n".join(block)
    if len(text) > max_chars:
        text = text[: max_chars - 80].rsplit("\n", 1)[0] + "\n\n_(truncated)_\n"
    return text

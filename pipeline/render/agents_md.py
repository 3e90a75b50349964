"""The active skills as a section for an ``AGENTS.md`` / ``CLAUDE.md`` file, for coding agents:
plain Markdown bullets grouped by namespace and section, each with its key figures
(``coach skills export --format agents-md``)."""

from __future__ import annotations

from typing import Any

from pipeline.skillbook import NOT_RENDERED, Skillbook, section_key, section_title

__all__ = ["agents_md"]


def agents_md(book: Skillbook, namespaces: list[str] | None = None) -> str:
    """A Markdown section for coding agents of the active skills in rendered sections (not
    ``improvements``: :data:`~pipeline.skillbook.NOT_RENDERED`), optionally only those of
    ``namespaces``: a ``## Lessons learned from past runs`` heading, then per namespace (``###``)
    and section (``####``, its title) one bullet per skill, most valuable first, with its odds
    ratio and support. Deterministic for a given Skillbook."""
    skills = [
        s
        for s in book.skills.values()
        if s.status == "active"
        and s.section not in NOT_RENDERED
        and (namespaces is None or s.namespace in namespaces)
    ]
    lines = [
        "## Lessons learned from past runs",
        "",
        f"<!-- coach Skillbook v{book.version}; regenerate with: coach skills export "
        "--format agents-md -->",
        "",
    ]
    if not skills:
        lines += ["No active skills yet.", ""]
    for namespace in sorted({s.namespace for s in skills}):
        lines += [f"### {namespace}", ""]
        own = [s for s in skills if s.namespace == namespace]
        for section in sorted({s.section for s in own}, key=section_key):
            lines += [f"#### {section_title(section)}", ""]
            for skill in sorted(
                (s for s in own if s.section == section), key=lambda s: (-s.value, s.id)
            ):
                text = " ".join(skill.instruction.split())
                figures = _short_figures(skill.evidence)
                lines.append(f"- {text}" + (f" ({figures})" if figures else ""))
            lines.append("")
    return "\n".join(lines)


def _short_figures(evidence: dict[str, Any]) -> str:
    odds, n_with, n_without = (evidence.get(k) for k in ("odds_ratio", "n_with", "n_without"))
    if odds is None:
        return ""
    return f"odds ratio {odds:.2f}, {n_with} runs with / {n_without} without"

"""The active skills as a section for an ``AGENTS.md`` / ``CLAUDE.md`` file, for coding agents:
plain Markdown bullets grouped by namespace and section, each with its key figures
(``coach skills export --format agents-md``), rendered from ``agents.md.j2`` by
:func:`pipeline.render.environment.environment`."""

from __future__ import annotations

from typing import Any

from pipeline.render.environment import environment
from pipeline.skillbook import NOT_RENDERED, Skillbook, section_key, section_title

__all__ = ["TEMPLATE", "agents_md"]

TEMPLATE = "agents.md.j2"


def agents_md(book: Skillbook, namespaces: list[str] | None = None) -> str:
    """A Markdown section for coding agents of the active skills in rendered sections (not
    ``improvements``: :data:`~pipeline.skillbook.NOT_RENDERED`), optionally only those of
    ``namespaces``: a ``## Lessons learned from past runs`` heading, then per namespace (``###``)
    and section (``####``, its title) one bullet per skill, most valuable first, with its odds
    ratio and support. Deterministic for a given Skillbook.

    Returns:
        the Markdown text, ending with a newline.
    """
    skills = [
        s
        for s in book.skills.values()
        if s.status == "active"
        and s.section not in NOT_RENDERED
        and (namespaces is None or s.namespace in namespaces)
    ]
    view = []
    for namespace in sorted({s.namespace for s in skills}):
        own = [s for s in skills if s.namespace == namespace]
        sections = [
            {
                "title": section_title(section),
                "skills": [
                    {"text": s.instruction, "figures": _short_figures(s.evidence)}
                    for s in sorted(
                        (s for s in own if s.section == section), key=lambda s: (-s.value, s.id)
                    )
                ],
            }
            for section in sorted({s.section for s in own}, key=section_key)
        ]
        view.append({"name": namespace, "sections": sections})
    return environment().get_template(TEMPLATE).render(version=book.version, namespaces=view)


def _short_figures(evidence: dict[str, Any]) -> str:
    odds, n_with, n_without = (evidence.get(k) for k in ("odds_ratio", "n_with", "n_without"))
    if odds is None:
        return ""
    return f"odds ratio {odds:.2f}, {n_with} runs with / {n_without} without"

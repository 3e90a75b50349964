"""Kayba ACE skillbook JSON, both ways: the Skillbook exported for ACE (:func:`to_ace`, ``coach
skills export --format ace``) and ACE skills imported (:func:`from_ace`, ``coach skills
import``). Both live here, beside the other exports, because the export carries text for people
(the evidence line of :mod:`pipeline.render.skillbook_md`) and the import is its inverse: an
export imports back unchanged.

ACE skillbook JSON (``ace.skillbook.Skillbook.to_dict`` / ``save_to_file`` of the
``ace-framework`` package, github.com/kayba-ai/agentic-context-engine, ``ace/skillbook.py``)::

    {"skills": {"<id>": {"id", "section", "content", "justification", "evidence",
                          "helpful", "harmful", "neutral", "created_at", "updated_at",
                          "embedding", "status": "active" | "invalid", "sources": [dict]}},
     "sections": {"<section>": ["<id>", ...]}, "next_id": int, "similarity_decisions": {}}

Export maps instruction -> ``content``, the evidence line -> ``evidence``, the stratification
-> ``justification``; ``helpful`` / ``harmful`` / ``neutral`` (ACE's citation tallies, which coach
does not have) are 0; active skills are ``active``, others ``invalid``; the coach skill itself is
kept in ``sources`` (``{"coach": Skill.to_dict()}``) so that an export imports back unchanged.
Import accepts ``skills`` as an object or a list; foreign skills enter as ``proposed`` (a person
reviews them) in the namespace given, with ``source.method = "import"``. ACE learns from traces
too: imported text is redacted (:func:`pipeline.redact.redact`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pipeline.errors import SkillbookError
from pipeline.redact import redact, redact_data
from pipeline.render.skillbook_md import evidence_line
from pipeline.skillbook import Skill, Skillbook

__all__ = ["from_ace", "to_ace"]


def to_ace(book: Skillbook) -> dict[str, Any]:
    """The Skillbook as an ACE skillbook JSON document (module docstring)."""
    skills: dict[str, Any] = {}
    sections: dict[str, list[str]] = {}
    for sid in sorted(book.skills):
        skill = book.skills[sid]
        has_figures = skill.evidence.get("odds_ratio") is not None
        skills[sid] = {
            "id": sid,
            "section": skill.section,
            "content": skill.instruction,
            "justification": (
                f"stratified by {skill.evidence.get('stratification')}"
                if skill.evidence.get("stratification")
                else skill.source.get("justification")
            ),
            "evidence": evidence_line(skill.evidence)
            if has_figures
            else skill.source.get("evidence"),
            "helpful": 0,
            "harmful": 0,
            "neutral": 0,
            "created_at": skill.created_at,
            "updated_at": skill.updated_at,
            "embedding": None,
            "status": "active" if skill.status == "active" else "invalid",
            "sources": [{"coach": skill.to_dict()}],
        }
        sections.setdefault(skill.section, []).append(sid)
    return {
        "skills": skills,
        "sections": sections,
        "next_id": len(skills),
        "similarity_decisions": {},
    }


def _section_name(section: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", section.casefold()).strip("-")
    return slug or "imported"


def from_ace(path: Path, *, namespace: str = "global") -> list[Skill]:
    """Skills from an ACE skillbook JSON file (module docstring). A skill exported by coach
    (``sources`` holding ``{"coach": ...}``) comes back as it was; any other becomes a
    ``proposed`` skill of ``namespace`` with id ``sk-`` + SHA-256(namespace NUL ``ace:<id>``)[:12],
    its section slugified, its content as the instruction, and ``justification``, ``evidence``,
    ``sources`` and the ACE id kept in ``source``.

    Raises:
        SkillbookError: the file is unreadable, not JSON, has no ``skills``, or a skill has no
            content (the message names the file and the skill).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SkillbookError(f"{path}: cannot read an ACE skillbook: {exc}") from exc
    raw = data.get("skills") if isinstance(data, dict) else None
    if isinstance(raw, dict):
        items = list(raw.values())
    elif isinstance(raw, list):
        items = raw
    else:
        raise SkillbookError(f"{path}: not an ACE skillbook (no 'skills' object or list)")
    out = []
    for index, item in enumerate(items):
        where = f"{path}: skill {index}"
        if not isinstance(item, dict):
            raise SkillbookError(f"{where}: not an object")
        for source in item.get("sources") or []:
            if isinstance(source, dict) and isinstance(source.get("coach"), dict):
                out.append(Skill.from_dict(redact_data(source["coach"])))
                break
        else:
            content = item.get("content")
            if not isinstance(content, str) or not content.strip():
                raise SkillbookError(f"{where} ({item.get('id')!r}): no content")
            ace_id = str(item.get("id") or index)
            digest = hashlib.sha256(f"{namespace}\0ace:{ace_id}".encode()).hexdigest()
            out.append(
                Skill(
                    id=f"sk-{digest[:12]}",
                    status="proposed",
                    section=_section_name(str(item.get("section") or "imported")),
                    namespace=namespace,
                    instruction=redact(" ".join(content.split())),
                    evidence={},
                    source=redact_data(
                        {
                            "method": "import",
                            "format": "ace",
                            "pattern_id": None,
                            "ace_id": ace_id,
                            "justification": item.get("justification"),
                            "evidence": item.get("evidence"),
                            "sources": item.get("sources") or [],
                            "ace_counts": {
                                k: item.get(k, 0) for k in ("helpful", "harmful", "neutral")
                            },
                        }
                    ),
                    created_at=item.get("created_at"),
                    updated_at=item.get("updated_at"),
                )
            )
    return out

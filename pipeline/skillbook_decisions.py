"""Changes to a Skillbook made outside a learning run: a person's decision on one skill
(approve, reject, retire, edit: :func:`decide`), skills added from elsewhere, such as an import
(:func:`add_skills`), and a held-out validation recorded by the evaluator
(:func:`record_validation`). The public entry points are the methods of
:class:`pipeline.skillbook.Skillbook` of the same names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pipeline.errors import SkillbookError
from pipeline.skillbook_types import STATUSES, MergeResult, Skill

if TYPE_CHECKING:
    from pipeline.skillbook import Skillbook

__all__ = ["add_skills", "decide", "record_validation"]


def decide(
    book: Skillbook,
    ref: str,
    action: str,
    *,
    actor: str,
    now: str,
    note: str | None = None,
    text: str | None = None,
) -> Skill:
    """Record a person's decision on one skill of ``book`` and return the changed skill: the
    body of :meth:`pipeline.skillbook.Skillbook.decide`, whose docstring gives the actions.

    Raises:
        SkillbookError: unknown skill, or the action does not apply to its status.
        ValueError: unknown action, or ``edit`` without text.
    """
    skill = book.find(ref)
    allowed = {
        "approve": ("proposed", "rejected", "retired", "active"),
        "reject": ("proposed", "active"),
        "retire": ("active", "proposed"),
        "edit": STATUSES,
    }
    if action not in allowed:
        raise ValueError(f"unknown action {action!r}; use one of {', '.join(allowed)}")
    if skill.status not in allowed[action]:
        raise SkillbookError(
            f"{skill.id} is {skill.status}: cannot {action} it (allowed from "
            f"{', '.join(allowed[action])})"
        )
    if action == "approve" and skill.status == "active" and not skill.flags:
        raise SkillbookError(f"{skill.id} is already active and has no open flags")
    extra: dict[str, Any] = {"note": note}
    if action == "edit":
        text = " ".join((text or "").split())
        if not text:
            raise ValueError("edit needs the new wording (text)")
        if text == skill.instruction:
            raise SkillbookError(f"{skill.id}: the new wording is the same as the current one")
        extra |= {"before": skill.instruction, "after": text}
        new = replace(
            skill,
            instruction=text,
            source={**skill.source, "edited": True, "edited_by": actor, "edited_at": now},
        )
    else:
        to = {"approve": "active", "reject": "rejected", "retire": "retired"}[action]
        new = replace(skill, status=to, flags=())
        extra |= {"from": skill.status, "to": to}
        if action in ("reject", "retire"):
            extra["figures"] = skill.figures()
        if skill.source.get("merged_into") and action == "approve":
            new = replace(new, source={k: v for k, v in skill.source.items() if k != "merged_into"})
    new = replace(new, version=skill.version + 1, updated_at=now)
    new = new.with_event(now, actor, action, **extra)
    book.skills[skill.id] = new
    book._record(now, actor, action, MergeResult(decided=[skill.id]), note=note, skill_id=skill.id)
    return new


def add_skills(
    book: Skillbook,
    skills: Iterable[Skill],
    *,
    actor: str,
    now: str,
    note: str | None,
    action: str = "import",
) -> list[str]:
    """Add to ``book`` the skills it does not hold yet (by id), each with an ``action`` history
    entry; returns the ids added (:meth:`pipeline.skillbook.Skillbook.add_skills`)."""
    added = []
    for skill in sorted(skills, key=lambda s: s.id):
        if skill.id in book.skills:
            continue
        book.skills[skill.id] = replace(
            skill, created_at=skill.created_at or now, updated_at=now
        ).with_event(now, actor, action, note=note, to=skill.status)
        added.append(skill.id)
    book._record(now, actor, action, MergeResult(added=added), note=note)
    return added


def record_validation(
    book: Skillbook, ref: str, result: dict[str, Any], now: str, actor: str = "coach"
) -> Skill:
    """Store a skill's latest held-out validation in ``book`` (the body of
    :meth:`pipeline.skillbook.Skillbook.record_validation`); not a content change. Finite
    floats of ``result`` are stored rounded to 6 decimal places.

    Raises:
        SkillbookError: unknown skill.
    """
    skill = book.find(ref)
    # rounded as the evidence is (pipeline.extract), so the stored figures do not carry the
    # last digits that differ between CPUs
    result = {
        k: round(v, 6) if isinstance(v, float) and math.isfinite(v) else v
        for k, v in result.items()
    }
    validation = {**result, "at": now}
    new = replace(skill, validation=validation).with_event(
        now, actor, "validation", figures=dict(result)
    )
    book.skills[skill.id] = new
    return new

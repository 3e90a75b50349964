"""Changes to skills made outside a learning run: a person's decision on one skill (approve,
reject, retire, edit: :func:`decide`), skills added from elsewhere, such as an import
(:func:`add_skills`), and a held-out validation recorded by the evaluator
(:func:`record_validation`).

These are the bodies of the :class:`pipeline.skillbook.Skillbook` methods of the same names;
they work on :class:`~pipeline.skillbook.Skill` values and the ``{id: Skill}`` mapping, and the
Skillbook records them in its history.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from pipeline.errors import SkillbookError
from pipeline.skillbook.types import STATUSES, Skill

__all__ = ["ACTIONS", "add_skills", "decide", "record_validation"]

# action -> the statuses it applies to
ACTIONS: dict[str, tuple[str, ...]] = {
    "approve": ("proposed", "rejected", "retired", "active"),
    "reject": ("proposed", "active"),
    "retire": ("active", "proposed"),
    "edit": STATUSES,
}


def decide(
    skill: Skill,
    action: str,
    *,
    actor: str,
    now: str,
    note: str | None = None,
    text: str | None = None,
) -> Skill:
    """``skill`` after a person's decision ``action`` (one of :data:`ACTIONS`), with the
    history entry that records it: see :meth:`pipeline.skillbook.Skillbook.decide` for the
    actions.

    Raises:
        SkillbookError: the action does not apply to the skill's status, an approval of an
            active skill without flags, or an edit that keeps the wording.
        ValueError: unknown action, or ``edit`` without text.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if skill.status not in ACTIONS[action]:
        raise SkillbookError(
            f"{skill.id} is {skill.status}: cannot {action} it (allowed from "
            f"{', '.join(ACTIONS[action])})"
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
    return new.with_event(now, actor, action, **extra)


def add_skills(
    skills: dict[str, Skill],
    new: Iterable[Skill],
    *,
    actor: str,
    now: str,
    note: str | None,
    action: str = "import",
) -> list[str]:
    """Add to ``skills`` (a Skillbook's ``{id: Skill}``, changed in place) those of ``new``
    whose id it does not hold yet, each with an ``action`` history entry; returns the ids
    added, sorted."""
    added = []
    for skill in sorted(new, key=lambda s: s.id):
        if skill.id in skills:
            continue
        skills[skill.id] = replace(
            skill, created_at=skill.created_at or now, updated_at=now
        ).with_event(now, actor, action, note=note, to=skill.status)
        added.append(skill.id)
    return added


def record_validation(skill: Skill, result: dict[str, Any], now: str, actor: str) -> Skill:
    """``skill`` with its latest held-out validation: ``validation`` becomes ``{**result,
    "at": now}`` with the finite floats of ``result`` rounded to 6 decimal places, and a
    ``validation`` history entry holding them (see
    :meth:`pipeline.skillbook.Skillbook.record_validation`)."""
    # rounded as the evidence is (pipeline.extract), so the stored figures do not carry the
    # last digits that differ between CPUs
    result = {
        k: round(v, 6) if isinstance(v, float) and math.isfinite(v) else v
        for k, v in result.items()
    }
    validation = {**result, "at": now}
    return replace(skill, validation=validation).with_event(
        now, actor, "validation", figures=dict(result)
    )

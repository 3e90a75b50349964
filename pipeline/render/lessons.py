"""Which lessons a prompt carries: the skills that apply to a namespace (:func:`compose`), ranked
by expected impact (:func:`impact`), within a budget of lines and characters
(:class:`PromptBudget`). :class:`~pipeline.render.PromptGenerator` renders what
:meth:`PromptBudget.select` keeps; ``SKILLBOOK.md`` and the HTML report list what it leaves out
(:func:`over_budget`), so no skill is dropped from a prompt silently.

Expected impact is support times effect: the number of runs that showed the pattern
(``evidence["n_with"]``) times the size of its effect on the success rate. The effect is the
absolute difference of the success rates with and without the pattern in the offline contrast
(``|rate_with - rate_without|``); for a skill whose latest prompt experiment or holdback has
decided (promoted, rejected as harmful or futile: :data:`DECIDED`), the absolute difference in
success rate that the randomised test measured (``skill.experiment["difference"]``, with minus
without the skill), which is the better estimate of what the line itself does. A skill without
these figures (a failure cluster, an imported skill) has impact 0; ties are broken by
:attr:`~pipeline.skillbook.Skill.value`, then by id (:func:`rank`). The unit is runs: about how
many of the runs seen would have ended differently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.skillbook import NOT_RENDERED, Skill, Skillbook

__all__ = [
    "DECIDED",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_LESSONS",
    "PRECEDENCE",
    "PromptBudget",
    "Selection",
    "compose",
    "effect",
    "impact",
    "namespace_rank",
    "over_budget",
    "over_budget_view",
    "rank",
    "rendered_skills",
]

# Lessons per prompt and characters of its lessons part, unless set otherwise
# (:attr:`pipeline.config.Config.max_lessons`, ``max_prompt_chars``).
DEFAULT_MAX_LESSONS = 12
DEFAULT_MAX_CHARS = 4000
# The decisions of an experiment's look (pipeline.experiment.Decision) that end the test: its
# measured difference is then the skill's effect.
DECIDED = frozenset({"promote", "reject_harm", "reject_futile"})
# Namespace kinds from the most to the least specific: a skill of a more specific namespace
# takes precedence over one of a less specific namespace for the same pattern.
PRECEDENCE = ("user", "domain", "agent", "global")
# What a lesson line costs in characters beyond its instruction ("- " and the newline).
LINE_COST = 3


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def effect(skill: Skill) -> float | None:
    """The size of ``skill``'s effect on the success rate (a fraction, >= 0): the difference
    its decided experiment measured, else the offline contrast's ``|rate_with -
    rate_without|``; None when neither is known (see the module docstring)."""
    live = skill.experiment or {}
    measured = _finite(live.get("difference"))
    if live.get("decision") in DECIDED and measured is not None:
        return abs(measured)
    with_, without = (
        _finite(skill.evidence.get("rate_with")),
        _finite(skill.evidence.get("rate_without")),
    )
    if with_ is None or without is None:
        return None
    return abs(with_ - without)


def impact(skill: Skill) -> float:
    """Expected impact of ``skill`` in runs: ``evidence["n_with"]`` times :func:`effect`,
    rounded to 6 decimals (so that products equal on paper tie, whatever the float error of
    the rates' difference); 0.0 when either is unknown."""
    support, size = _finite(skill.evidence.get("n_with")), effect(skill)
    if support is None or size is None:
        return 0.0
    return round(support * size, 6)


def rank(skills: Iterable[Skill]) -> list[Skill]:
    """``skills`` by expected impact, largest first. Ties (in practice skills without figures,
    whose impact is 0) by :attr:`~pipeline.skillbook.Skill.value`, the confidence bound of the
    odds ratio that ranked prompts before, then by id, so the order is the same on every
    machine."""
    return sorted(skills, key=lambda s: (-impact(s), -s.value, s.id))


@dataclass(frozen=True)
class Selection:
    """What a prompt carries (``kept``) and what did not fit its budget (``left_out``), each
    ranked by :func:`rank`."""

    kept: tuple[Skill, ...]
    left_out: tuple[Skill, ...]


@dataclass(frozen=True)
class PromptBudget:
    """The budget of a prompt's lessons: at most ``max_lessons`` lines (None or 0: no limit)
    and ``max_chars`` characters (each line costs its instruction and 3)."""

    max_lessons: int | None = DEFAULT_MAX_LESSONS
    max_chars: int = DEFAULT_MAX_CHARS

    @property
    def lessons(self) -> int | None:
        """The line budget, None when unlimited."""
        return self.max_lessons or None

    def describe(self) -> str:
        """What a prompt holds under this budget, for people: ``at most 12 lessons in 4000
        characters`` (``lessons in at most 4000 characters`` without a line budget)."""
        if self.lessons is None:
            return f"lessons in at most {self.max_chars} characters"
        lessons = f"{self.lessons} lesson{'' if self.lessons == 1 else 's'}"
        return f"at most {lessons} in {self.max_chars} characters"

    def select(self, skills: Sequence[Skill]) -> Selection:
        """Walk ``skills`` by :func:`rank` and keep each one that still fits: while fewer than
        ``max_lessons`` are kept and its line fits in the characters left (a long one that
        does not fit is passed over for shorter ones after it)."""
        kept: list[Skill] = []
        left_out: list[Skill] = []
        used = 0
        for skill in rank(skills):
            cost = len(skill.instruction) + LINE_COST
            full = self.lessons is not None and len(kept) >= self.lessons
            if full or used + cost > self.max_chars:
                left_out.append(skill)
                continue
            kept.append(skill)
            used += cost
        return Selection(tuple(kept), tuple(left_out))


def namespace_rank(namespace: str) -> int:
    """Position of a namespace's kind in :data:`PRECEDENCE` (0 = most specific: ``user``);
    an unknown kind ranks with ``agent``."""
    kind = namespace.split(":", 1)[0]
    if kind in PRECEDENCE:
        return PRECEDENCE.index(kind)
    return PRECEDENCE.index("global") - 1 if namespace != "global" else PRECEDENCE.index("global")


def compose(skills: list[Skill], namespaces: list[str]) -> list[Skill]:
    """The skills that apply to a context made of ``namespaces`` (plus ``global``, always).

    Only skills of exactly those namespaces are kept, so a ``user:`` skill reaches only that
    user's prompts. Where several namespaces carry a skill for the same pattern (or the same
    wording), the most specific one wins: user over domain over agent over global
    (:data:`PRECEDENCE`). Returns the kept skills ordered by precedence, then id.
    """
    wanted = {*namespaces, "global"}
    kept: dict[str, Skill] = {}
    for skill in sorted(
        (s for s in skills if s.namespace in wanted),
        key=lambda s: (namespace_rank(s.namespace), s.id),
    ):
        key = skill.source.get("pattern_id") or " ".join(skill.instruction.casefold().split())
        kept.setdefault(key, skill)
    return list(kept.values())


def rendered_skills(book: Skillbook) -> list[Skill]:
    """The skills of ``book`` that prompts carry when they fit: active, of a rendered
    section."""
    return [
        s for s in book.skills.values() if s.status == "active" and s.section not in NOT_RENDERED
    ]


def over_budget(book: Skillbook, budget: PromptBudget) -> dict[str, list[Skill]]:
    """For each namespace with active skills, the skills its prompt (the namespace composed
    with ``global``, :func:`compose`) would carry but that do not fit ``budget``, ranked by
    :func:`rank`; namespaces where everything fits are left out. An experiment's arms carry
    the control prompt's lessons plus the skills under test, so these are the control's."""
    active = rendered_skills(book)
    out = {}
    for namespace in sorted({s.namespace for s in active}):
        left = budget.select(compose(active, [namespace])).left_out
        if left:
            out[namespace] = list(left)
    return out


def over_budget_view(book: Skillbook, budget: PromptBudget) -> dict[str, list[dict[str, Any]]]:
    """:func:`over_budget` for people: per namespace, each skill left out as ``{"id",
    "impact"`` (in runs, one decimal, a string), ``"instruction"`` (as written, not escaped),
    ``"namespace"`` (the namespace the skill comes from when not this one, such as ``global``;
    else None)``}``."""
    return {
        namespace: [
            {
                "id": s.id,
                "impact": f"{impact(s):.1f}",
                "instruction": s.instruction,
                "namespace": s.namespace if s.namespace != namespace else None,
            }
            for s in skills
        ]
        for namespace, skills in over_budget(book, budget).items()
    }

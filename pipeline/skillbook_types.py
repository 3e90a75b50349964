"""The Skillbook's vocabulary and value types: the statuses, sections and learning modes, one
:class:`Skill`, how a merge treats candidates (:class:`MergePolicy`) and what it changed
(:class:`MergeResult`).

They sit below :mod:`pipeline.skillbook` (the Skillbook itself), :mod:`pipeline.skillbook_io`
(its files), :mod:`pipeline.skillbook_merge` (a run) and :mod:`pipeline.skillbook_decisions`
(a person), which all use them; import them from :mod:`pipeline.skillbook`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pipeline.errors import SkillbookError

__all__ = [
    "CHANGE_KEYS",
    "MODES",
    "MergePolicy",
    "MergeResult",
    "SECTIONS",
    "SECTION_ORDER",
    "STATUSES",
    "Skill",
    "section_key",
]

STATUSES = ("active", "proposed", "retired", "rejected")
# The learning stores. improvements (changes to the base instructions) are never automatic.
SECTIONS = ("procedures", "escalation", "tool-usage", "pitfalls", "feedback", "improvements")
SECTION_ORDER = SECTIONS
MODES = ("auto", "propose", "off")
CHANGE_KEYS = (
    "added",
    "updated",
    "activated",
    "flagged",
    "retired",
    "reproposed",
    "merged",
    "decided",
)


def section_key(section: str) -> tuple[int, str]:
    """Sort key of a section: the order of :data:`SECTION_ORDER`, unknown sections last by name."""
    rank = SECTION_ORDER.index(section) if section in SECTION_ORDER else len(SECTION_ORDER)
    return rank, section


@dataclass(frozen=True)
class Skill:
    """One skill.

    ``id`` is derived from (namespace, pattern), so the same pattern always maps to the same id.
    ``status``: active | proposed | retired | rejected. ``section``: one of :data:`SECTIONS` (or
    an imported section name). ``namespace``: ``global``, ``agent:<name>``, ``domain:<name>``
    or ``user:<id>``. ``evidence``: the Analyzer's latest figures (see
    :meth:`pipeline.extract.SkillExtractor.run`). ``source``: provenance, a dict with at least
    ``method`` (``rule`` | ``llm`` | ``import``) and ``pattern_id``; also ``direction`` (as
    learned), ``edited`` / ``edited_by`` / ``edited_at`` (a person's rewording, kept across
    runs), ``merged_from`` / ``merged_into`` (near-duplicates). ``flags``: open concerns (e.g.
    ``lost significance``). ``history``: entries ``{"at", "actor", "action", "note", "from",
    "to", "figures"}`` (``action``: added, updated, activated, flagged, retired, reproposed,
    merged, approve, reject, retire, edit, checkout, validation). ``observations``: one per run
    that tested the pattern (:func:`pipeline.skillbook_drift.observation`). ``validation``: the
    last held-out validation (:meth:`pipeline.skillbook.Skillbook.record_validation`). Times
    are ISO-8601 UTC strings; ``version`` counts this skill's content changes.
    """

    id: str
    status: str
    section: str
    namespace: str
    instruction: str
    evidence: dict[str, Any]
    source: dict[str, Any]
    created_at: str | None
    updated_at: str | None
    version: int = 1
    flags: tuple[str, ...] = ()
    history: tuple[dict[str, Any], ...] = ()
    observations: tuple[dict[str, Any], ...] = ()
    validation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        data = asdict(self)
        for key in ("flags", "history", "observations"):
            data[key] = list(getattr(self, key))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Skill:
        """Inverse of :meth:`to_dict`.

        Raises:
            SkillbookError: a required key is missing or the status is unknown.
        """
        try:
            skill = cls(
                **{
                    **data,
                    "flags": tuple(data.get("flags", ())),
                    "history": tuple(data.get("history", ())),
                    "observations": tuple(data.get("observations", ())),
                }
            )
        except TypeError as exc:
            raise SkillbookError(f"malformed skill {data.get('id')!r}: {exc}") from exc
        if skill.status not in STATUSES:
            raise SkillbookError(f"skill {skill.id}: unknown status {skill.status!r}")
        return skill

    @property
    def value(self) -> float:
        """How much the skill is worth in a prompt: the absolute log odds ratio bound nearest
        to 1 (0 when the interval is unknown). Larger, surer effects rank first."""
        low, high = self.evidence.get("ci_low"), self.evidence.get("ci_high")
        if not low or not high:
            return 0.0
        return max(0.0, math.log(low), -math.log(high))

    @property
    def direction(self) -> str | None:
        """``harmful`` or ``helpful`` as the skill was learned (None for imported skills)."""
        return self.source.get("direction") or self.evidence.get("direction")

    def figures(self) -> dict[str, Any]:
        """The evidence figures recorded with a decision: direction, odds ratio and interval,
        q-value and support."""
        keys = ("direction", "odds_ratio", "ci_low", "ci_high", "q_value", "n_with", "n_without")
        return {k: self.evidence.get(k) for k in keys if self.evidence.get(k) is not None}

    def with_event(self, now: str, actor: str, action: str, **extra: Any) -> Skill:
        """A copy with one more history entry ``{"at", "actor", "action", **extra}`` (None
        values left out); the entry's ``version`` is the skill version it leaves."""
        entry = {"at": now, "actor": actor, "action": action, "version": self.version}
        entry |= {k: v for k, v in extra.items() if v is not None}
        return replace(self, history=(*self.history, entry))


@dataclass(frozen=True)
class MergePolicy:
    """How a merge treats candidates.

    ``mode``: ``auto`` (significant skills become active), ``propose`` (they wait for a person)
    or ``off``; ``section_modes`` overrides it per section (``improvements`` is at most
    ``propose``). ``half_life_days``: recency weighting of evidence across runs (see
    :mod:`pipeline.skillbook_drift`). ``duplicate_threshold``: rapidfuzz similarity (0-100) from
    which two skills about the same tool and direction are merged. ``graduate_after``: distinct
    input sets on which an active skill held before an ``improvements`` proposal suggests moving
    it into the base instructions.
    """

    mode: str = "auto"
    section_modes: Mapping[str, str] = field(default_factory=dict)
    half_life_days: float = 30.0
    duplicate_threshold: float = 90.0
    graduate_after: int = 3

    def __post_init__(self) -> None:
        for where, value in [("mode", self.mode), *self.section_modes.items()]:
            if value not in MODES:
                raise ValueError(f"{where}: mode must be one of {', '.join(MODES)}, not {value!r}")
        if self.half_life_days <= 0:
            raise ValueError(f"half_life_days must be positive, not {self.half_life_days}")

    def mode_of(self, section: str) -> str:
        """The learning mode of ``section``."""
        mode = self.section_modes.get(section, self.mode)
        return "propose" if section == "improvements" and mode == "auto" else mode


@dataclass
class MergeResult:
    """What a merge changed, as lists of skill ids (keys :data:`CHANGE_KEYS`); ``changed`` is
    True when anything did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    reproposed: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    decided: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(getattr(self, key) for key in CHANGE_KEYS)

    def as_dict(self) -> dict[str, list[str]]:
        return {key: sorted(set(getattr(self, key))) for key in CHANGE_KEYS}

"""The Skillbook's vocabulary and value types: the statuses, the sections (one definition:
names, order, titles, whether rendered), the learning modes, one :class:`Skill`, a run's
:class:`Candidate` and its :func:`skill_id`, how a merge treats candidates
(:class:`MergePolicy`) and what it changed (:class:`MergeResult`).

Every other module of the package builds on these and on plain data; import them from
:mod:`pipeline.skillbook`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pipeline.errors import SkillbookError

__all__ = [
    "CHANGE_KEYS",
    "DEFAULT_HALF_LIFE_DAYS",
    "LLM_SECTIONS",
    "MODES",
    "NOT_RENDERED",
    "SECTIONS",
    "SECTION_DEFINITIONS",
    "SECTION_TITLES",
    "STATUSES",
    "Candidate",
    "MergePolicy",
    "MergeResult",
    "Section",
    "Skill",
    "section_key",
    "section_title",
    "skill_id",
]

STATUSES = ("active", "proposed", "retired", "rejected")
MODES = ("auto", "propose", "off")
# Recency weighting of evidence across runs: an observation's weight halves every this many
# days (pipeline.skillbook.drift.weighted_effect); the default of MergePolicy, Config and the CLI.
DEFAULT_HALF_LIFE_DAYS = 30.0


@dataclass(frozen=True)
class Section:
    """One section of the Skillbook (a learning store).

    ``name``: as stored in a skill's ``section``. ``title``: the heading people read in the
    prompts and AGENTS.md. ``rendered``: whether its active skills go into the prompts
    (``improvements``, proposals to change the base instructions themselves, never do).
    ``llm_choice``: whether an LLM rewording a skill may put it there (``feedback`` follows
    from the outcome source and ``improvements`` from graduation, never from an LLM).
    """

    name: str
    title: str
    rendered: bool = True
    llm_choice: bool = True


# The sections in their order (the order of the prompts, SKILLBOOK.md and AGENTS.md).
SECTION_DEFINITIONS = (
    Section("procedures", "Procedures that work"),
    Section("escalation", "Confirmations and escalation"),
    Section("tool-usage", "Tool usage"),
    Section("pitfalls", "Pitfalls to avoid"),
    Section("feedback", "What feedback scores show", llm_choice=False),
    Section(
        "improvements", "Improvements to the base instructions", rendered=False, llm_choice=False
    ),
)
SECTIONS = tuple(s.name for s in SECTION_DEFINITIONS)
SECTION_TITLES = {s.name: s.title for s in SECTION_DEFINITIONS}
NOT_RENDERED = frozenset(s.name for s in SECTION_DEFINITIONS if not s.rendered)
LLM_SECTIONS = tuple(s.name for s in SECTION_DEFINITIONS if s.llm_choice)

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
    """Sort key of a section name: the order of :data:`SECTIONS`, unknown sections (imported
    ones) after them by name."""
    rank = SECTIONS.index(section) if section in SECTIONS else len(SECTIONS)
    return rank, section


def section_title(section: str) -> str:
    """The heading of a section name: its :class:`Section` title, or for an unknown (imported)
    section its name with ``-`` as spaces, capitalised (``tool-notes`` -> ``Tool notes``)."""
    return SECTION_TITLES.get(section, section.replace("-", " ").capitalize())


def skill_id(namespace: str, pattern_id: str) -> str:
    """Stable skill id: ``sk-`` + the first 12 hex digits of SHA-256(namespace NUL pattern_id)."""
    digest = hashlib.sha256(f"{namespace}\0{pattern_id}".encode()).hexdigest()
    return f"sk-{digest[:12]}"


@dataclass(frozen=True)
class Candidate:
    """A candidate skill, what a run proposes to merge into the Skillbook.

    ``id`` is :func:`skill_id` of (``namespace``, ``pattern_id``). ``significant`` is True when
    its q-value passed the FDR level (it may become active); otherwise it can only be proposed.
    ``evidence`` is a JSON-ready dict of the Analyzer's figures (see
    :meth:`pipeline.extract.SkillExtractor.run`). ``source``: provenance merged into the
    skill's ``source`` (empty for template wording; ``{"method": "llm", "llm": {"model",
    "prompt_sha256", ...}}`` for LLM wording, see :mod:`pipeline.llm`)."""

    id: str
    pattern_id: str
    namespace: str
    section: str
    instruction: str
    significant: bool
    evidence: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skill:
    """One skill.

    ``id`` is derived from (namespace, pattern) by :func:`skill_id`, so the same pattern always
    maps to the same id. ``status``: one of :data:`STATUSES`. ``section``: one of
    :data:`SECTIONS` (or an imported section name). ``namespace``: ``global``,
    ``agent:<name>``, ``domain:<name>`` or ``user:<id>``. ``evidence``: the Analyzer's latest
    figures (see :meth:`pipeline.extract.SkillExtractor.run`). ``source``: provenance, a dict
    with at least ``method`` (``rule`` | ``llm`` | ``import``) and ``pattern_id``; also
    ``direction`` (as learned), ``edited`` / ``edited_by`` / ``edited_at`` (a person's
    rewording, kept across runs), ``merged_from`` / ``merged_into`` (near-duplicates).
    ``flags``: open concerns (e.g. ``lost significance``). ``history``: entries ``{"at",
    "actor", "action", "note", "from", "to", "figures"}`` (``action``: added, updated,
    activated, flagged, retired, reproposed, merged, approve, reject, retire, edit, checkout,
    validation, promote, reject). ``observations``: one per run that tested the pattern
    (:func:`pipeline.skillbook.drift.observation`). ``validation``: the last held-out
    validation (:meth:`pipeline.skillbook.Skillbook.record_validation`). ``experiment``: the
    evidence of live traffic, the latest look of the prompt experiment that tested the skill
    (:func:`pipeline.experiment.experiment_evidence`; keys ``experiment_id``, ``kind``
    (``experiment`` for a skill under test, ``holdback`` for an active one), ``looks``,
    ``exposures_with``, ``exposures_without``, ``success_with``, ``success_without``,
    ``difference``, ``ci_low``, ``ci_high``, ``p_value``, ``alpha``, ``decision``,
    ``method``, ``last_look_at``, ``earlier`` (the final figures of earlier experiments));
    None when it never ran in one. The three kinds of evidence stay apart: ``evidence`` is the
    offline contrast, ``validation`` the held-out replication, ``experiment`` the randomised
    test. Times are ISO-8601 UTC
    strings; ``version`` counts this skill's content changes.
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
    experiment: dict[str, Any] | None = None

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
    ``propose``). ``half_life_days``: recency weighting of evidence across runs, in days (see
    :mod:`pipeline.skillbook.drift`). ``duplicate_threshold``: rapidfuzz similarity (0-100)
    from which two skills about the same tool and direction are merged. ``graduate_after``:
    distinct input sets on which an active skill held before an ``improvements`` proposal
    suggests moving it into the base instructions.

    Raises:
        ValueError: a mode not in :data:`MODES`, or ``half_life_days`` not positive.
    """

    mode: str = "auto"
    section_modes: Mapping[str, str] = field(default_factory=dict)
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS
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
    """What a merge, decision, import or checkout changed, as lists of skill ids (keys
    :data:`CHANGE_KEYS`)."""

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
        """True when anything changed (any list is not empty)."""
        return any(getattr(self, key) for key in CHANGE_KEYS)

    def as_dict(self) -> dict[str, list[str]]:
        """``{change key: sorted distinct skill ids}`` for every key of :data:`CHANGE_KEYS`."""
        return {key: sorted(set(getattr(self, key))) for key in CHANGE_KEYS}

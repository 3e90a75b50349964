"""The Skillbook: a versioned, reviewable, evidence-backed set of skills, stored as JSON (for
machines) and Markdown (for people).

``skillbook.json`` (format 2)::

    {"format_version": 2, "version": int, "updated_at": ISO-8601 | null,
     "history": [entry, ...],
     "skills": [Skill.to_dict(), ... sorted by id]}

A Skillbook ``history`` entry (one per ``learn`` run that changed the content, and one per
decision of a person; every run, changed or not, is also logged in ``runs.jsonl`` beside the
Skillbook, see :func:`pipeline.skillbook_history.append_run`)::

    {"version": int (the Skillbook version after the entry), "at": ISO-8601, "actor": str,
     "action": "run" | "approve" | "reject" | "retire" | "edit" | "checkout" | "import",
     "note": str | null, "skill_id": str (decisions only), "restored": int (checkout only),
     "run_id", "inputs", "inputs_sha256", "settings", "counts" (runs only),
     "changes": {"added", "updated", "activated", "flagged", "retired", "reproposed",
                 "merged", "decided": [skill ids]}}

A skill's own ``history`` (see :class:`Skill`) records each thing that happened to it.
``format_version`` is checked on load; older files are upgraded by the ordered functions in
:data:`MIGRATIONS`. ``version`` increments whenever content changes (a skill added, its status,
wording or evidence changed); earlier versions are kept as snapshots
(:mod:`pipeline.skillbook_history`) so that any of them can be restored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.errors import SkillbookError
from pipeline.extract import Candidate, skill_id
from pipeline.fileio import atomic_write, kill_point
from pipeline.skillbook_drift import (
    drift,
    material_change,
    near_duplicate,
    observation,
    weighted_effect,
)

__all__ = [
    "FORMAT_VERSION",
    "MIGRATIONS",
    "MODES",
    "MergePolicy",
    "MergeResult",
    "SECTIONS",
    "STATUSES",
    "Skill",
    "Skillbook",
    "section_key",
]

FORMAT_VERSION = 2
STATUSES = ("active", "proposed", "retired", "rejected")
# The learning stores. improvements (changes to the base instructions) are never automatic.
SECTIONS = ("procedures", "escalation", "tool-usage", "pitfalls", "feedback", "improvements")
SECTION_ORDER = SECTIONS
MODES = ("auto", "propose", "off")
MAX_OBSERVATIONS = 100
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


def m001_history_and_observations(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: skills get ``history`` (one ``added`` entry at their creation),
    ``observations`` (their current evidence, when it has an interval) and ``validation``; the
    learned direction moves into ``source``; Skillbook history entries get ``action``, ``actor``
    and every change key."""
    skills = []
    for old in data.get("skills", []):
        skill = dict(old)
        evidence = skill.get("evidence") or {}
        skill["source"] = {"direction": evidence.get("direction"), **(skill.get("source") or {})}
        skill["history"] = [
            {
                "at": skill.get("created_at"),
                "actor": "coach",
                "action": "added",
                "to": skill.get("status"),
                "note": "recorded before format 2",
            }
        ]
        obs = observation(evidence, at=skill.get("updated_at") or "", inputs=None)
        skill["observations"] = [obs] if obs else []
        skill["validation"] = None
        skills.append(skill)
    history = []
    for entry in data.get("history", []):
        changes = {key: list(entry.get("changes", {}).get(key, [])) for key in CHANGE_KEYS}
        history.append({"action": "run", "actor": "coach", **entry, "changes": changes})
    return {**data, "format_version": 2, "skills": skills, "history": history}


# Ordered upgrades: MIGRATIONS[i] turns format_version i into i + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: m001_history_and_observations,
}


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
    last held-out validation (:meth:`Skillbook.record_validation`). Times are ISO-8601 UTC
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


def _observe(
    skill: Skill, evidence: dict[str, Any], now: str, inputs: str | None
) -> tuple[dict[str, Any], ...]:
    """The skill's observations with this run's added; a re-run on the same inputs with the same
    figures adds nothing, with other figures (other settings) replaces the last one."""
    obs = observation(evidence, at=now, inputs=inputs)
    if obs is None:
        return skill.observations
    past = skill.observations
    if past and past[-1].get("inputs_sha256") == inputs:
        last = past[-1]
        if (last["log_or"], last["se"]) == (obs["log_or"], obs["se"]):
            return past
        past = past[:-1]
    return (*past, obs)[-MAX_OBSERVATIONS:]


def _decision_figures(skill: Skill) -> dict[str, Any] | None:
    """The figures recorded at the latest reject/retire (person or drift) of ``skill``."""
    for entry in reversed(skill.history):
        if entry.get("action") in ("reject", "retire", "retired") and "figures" in entry:
            return dict(entry["figures"])
    return None


@dataclass
class Skillbook:
    """The Skillbook in memory: ``Skillbook.load(path)``, then :meth:`merge` (a run) or
    :meth:`decide` (a person), then :meth:`save`.

    ``skills`` maps id to :class:`Skill`; ``version`` counts content changes; ``history`` is
    the list of entries described in the module docstring.
    """

    skills: dict[str, Skill] = field(default_factory=dict)
    version: int = 0
    updated_at: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    # The entry of the latest merge or decision, also when it changed nothing (not saved with
    # the Skillbook; runs are logged by :func:`pipeline.skillbook_history.append_run`).
    last_entry: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def load(cls, path: Path) -> Skillbook:
        """Read ``path``; a missing file is an empty Skillbook. Older formats are upgraded in
        memory by :data:`MIGRATIONS` (the file is rewritten in the new format on the next save).

        Raises:
            SkillbookError: unreadable, not JSON, or a ``format_version`` newer than this coach.
        """
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SkillbookError(f"{path}: cannot read the Skillbook: {exc}") from exc
        return cls.from_dict(data, where=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "Skillbook") -> Skillbook:
        """Build a Skillbook from its JSON document (any supported ``format_version``).

        Raises:
            SkillbookError: not a Skillbook, or an unsupported ``format_version``.
        """
        if not isinstance(data, dict) or "format_version" not in data:
            raise SkillbookError(f"{where}: not a Skillbook (no format_version)")
        found = data["format_version"]
        if not isinstance(found, int) or found > FORMAT_VERSION or found < 1:
            raise SkillbookError(
                f"{where}: format_version {found!r} is not supported (this coach reads up to "
                f"{FORMAT_VERSION}); upgrade coach"
            )
        while data["format_version"] < FORMAT_VERSION:
            data = MIGRATIONS[data["format_version"]](data)
        skills = [Skill.from_dict(s) for s in data.get("skills", [])]
        return cls(
            {s.id: s for s in skills},
            int(data.get("version", 0)),
            data.get("updated_at"),
            list(data.get("history", [])),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document described in the module docstring."""
        return {
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "updated_at": self.updated_at,
            "history": self.history,
            "skills": [self.skills[k].to_dict() for k in sorted(self.skills)],
        }

    def content(self) -> dict[str, Any]:
        """What the Skillbook says, without its history and times of runs: the version and the
        skills. Two Skillbooks with equal content render the same prompts."""
        return {
            "version": self.version,
            "skills": [self.skills[k].to_dict() for k in sorted(self.skills)],
        }

    def by_status(self) -> dict[str, int]:
        """Number of skills per status (every status present, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        for skill in self.skills.values():
            counts[skill.status] += 1
        return counts

    def find(self, ref: str) -> Skill:
        """The skill whose id is ``ref`` or starts with it (``sk-`` may be left out).

        Raises:
            SkillbookError: no skill or several skills match.
        """
        if ref in self.skills:
            return self.skills[ref]
        matches = [s for k, s in self.skills.items() if k.startswith(ref) or k[3:].startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise SkillbookError(f"no skill {ref!r} in this Skillbook; see 'coach skills list'")
        ids = ", ".join(sorted(s.id for s in matches))
        raise SkillbookError(f"{ref!r} matches several skills ({ids}); give more of the id")

    # -- a run ---------------------------------------------------------------------------

    def merge(
        self,
        candidates: Iterable[Candidate],
        *,
        mode: str | None = None,
        policy: MergePolicy | None = None,
        now: str,
        tested: Iterable[tuple[str, str, dict[str, Any]]] = (),
        run: dict[str, Any] | None = None,
    ) -> MergeResult:
        """Merge a run's candidates into the Skillbook.

        - Sections whose mode (``policy.mode_of``) is ``off`` are not learned: their candidates
          are ignored and their skills left as they are.
        - A new candidate is added as ``active`` (significant, section mode ``auto``) or
          ``proposed``. A known pattern gets the new evidence (and template wording, unless a
          person edited it); a proposed skill whose candidate is significant becomes active in
          ``auto`` mode.
        - Each run that tests a pattern adds an observation; an active skill that is not
          significant in the same direction this run is checked for drift on the recency-weighted
          evidence: if it reversed or lost significance it is retired (``auto``) or flagged
          (``propose``), with reason and figures in its history.
        - A rejected or retired skill stays so unless its new evidence differs materially from the
          figures at the decision (:func:`pipeline.skillbook_drift.material_change`); then it is
          proposed again. Nothing is ever deleted.
        - Near-duplicate active/proposed skills are merged: the other is retired with
          ``merged_into``, the kept one lists it in ``merged_from``.
        - An active skill that held on ``policy.graduate_after`` distinct input sets gets an
          ``improvements`` proposal to move it into the base instructions.

        ``tested``: (skill id, pattern id, evidence) of every tested pattern, for the latest
        figures of skills that are no longer candidates. ``run``: the run's identity (run_id,
        inputs, inputs_sha256, settings, counts), stored in the merge's history entry
        (:attr:`last_entry`; appended to ``history`` when content changed, and then ``version``
        increments and ``updated_at`` is ``now``). Merging the same candidates again changes
        nothing, whatever their order.

        Raises:
            ValueError: an unknown mode.
        """
        if policy is None:
            policy = MergePolicy(mode=mode or "auto")
        elif mode is not None:
            policy = replace(policy, mode=mode)
        result = MergeResult()
        inputs = (run or {}).get("inputs_sha256")
        seen: set[str] = set()
        for cand in sorted(candidates, key=lambda c: c.id):
            section_mode = policy.mode_of(cand.section)
            if section_mode == "off":
                continue
            seen.add(cand.id)
            self._merge_candidate(cand, section_mode, policy, now, inputs, result)
        latest = {sid: evidence for sid, _, evidence in tested}
        for sid in sorted(set(self.skills) - seen):
            old = self.skills[sid]
            section_mode = policy.mode_of(old.section)
            if old.status not in ("active", "proposed") or section_mode == "off":
                continue
            if old.section == "improvements" or old.source.get("method") == "import":
                continue
            self._merge_untested(old, latest.get(sid), section_mode, policy, now, inputs, result)
        self._merge_duplicates(policy, now, result)
        self._graduate(policy, now, result)
        self._record(now, "coach", "run", result, run=run)
        return result

    def _put(self, old: Skill, new: Skill, now: str) -> None:
        self.skills[new.id] = replace(new, updated_at=now, version=old.version + 1)

    def _merge_candidate(
        self,
        cand: Candidate,
        section_mode: str,
        policy: MergePolicy,
        now: str,
        inputs: str | None,
        result: MergeResult,
    ) -> None:
        wanted = "active" if cand.significant and section_mode == "auto" else "proposed"
        old = self.skills.get(cand.id)
        direction = cand.evidence.get("direction")
        if old is None:
            skill = Skill(
                id=cand.id,
                status=wanted,
                section=cand.section,
                namespace=cand.namespace,
                instruction=cand.instruction,
                evidence=cand.evidence,
                source={"method": "rule", "pattern_id": cand.pattern_id, "direction": direction}
                | cand.source,
                created_at=now,
                updated_at=now,
            )
            obs = observation(cand.evidence, at=now, inputs=inputs)
            self.skills[cand.id] = replace(skill, observations=(obs,) if obs else ()).with_event(
                now, "coach", "added", to=wanted, figures=skill.figures()
            )
            result.added.append(cand.id)
            return
        if old.status in ("rejected", "retired"):
            if old.source.get("merged_into"):
                return
            reason = material_change(_decision_figures(old), cand.evidence)
            if reason is None or not (cand.significant or old.status == "rejected"):
                return
            new = replace(
                old,
                status="proposed",
                evidence=cand.evidence,
                flags=(),
                observations=_observe(old, cand.evidence, now, inputs),
                source={**old.source, "direction": direction},
                instruction=old.instruction if old.source.get("edited") else cand.instruction,
            )
            new = new.with_event(
                now,
                "coach",
                "reproposed",
                note=f"evidence changed materially: {reason}",
                **{"from": old.status, "to": "proposed"},
                figures=new.figures(),
            )
            self._put(old, new, now)
            result.reproposed.append(cand.id)
            return
        reversed_ = old.direction is not None and direction != old.direction
        keep_wording = old.source.get("edited") or reversed_
        instruction = old.instruction if keep_wording else cand.instruction
        # wording provenance (``method``, ``llm``) follows the wording actually kept
        source = old.source
        if not keep_wording:
            source = (
                {k: v for k, v in old.source.items() if k != "llm"}
                | {"method": cand.source.get("method", "rule")}
                | cand.source
            )
        observations = _observe(old, cand.evidence, now, inputs)
        new = old
        if (
            old.evidence != cand.evidence
            or old.instruction != instruction
            or old.source != source
            or old.flags
        ):
            new = replace(
                new,
                evidence=cand.evidence,
                instruction=instruction,
                source=source,
                flags=(),
                observations=observations,
            )
            new = new.with_event(now, "coach", "updated", figures=new.figures())
            result.updated.append(cand.id)
        elif observations != old.observations:
            new = replace(new, observations=observations)
        if old.status == "proposed" and wanted == "active" and not reversed_:
            new = replace(new, status="active").with_event(
                now, "coach", "activated", **{"from": "proposed", "to": "active"}
            )
            result.activated.append(cand.id)
        if reversed_ or not (cand.significant and new.status == "active"):
            new = self._check_drift(new, section_mode, policy, now, result)
        if new != old:
            self._put(old, new, now)

    def _merge_untested(
        self,
        old: Skill,
        evidence: dict[str, Any] | None,
        section_mode: str,
        policy: MergePolicy,
        now: str,
        inputs: str | None,
        result: MergeResult,
    ) -> None:
        flag = "not significant in the latest run" if evidence else "not observed in the latest run"
        new = old
        if evidence is not None and evidence != old.evidence:
            new = replace(
                new, evidence=evidence, observations=_observe(old, evidence, now, inputs)
            ).with_event(now, "coach", "updated", note=flag, figures=old.figures())
            result.updated.append(old.id)
        if flag not in new.flags and not {"lost significance", "effect reversed"} & set(new.flags):
            new = replace(new, flags=(flag,)).with_event(now, "coach", "flagged", note=flag)
            result.flagged.append(old.id)
        new = self._check_drift(new, section_mode, policy, now, result)
        if new != old:
            self._put(old, new, now)

    def _check_drift(
        self, skill: Skill, section_mode: str, policy: MergePolicy, now: str, result: MergeResult
    ) -> Skill:
        """Retire (``auto``) or flag (``propose``) an active skill whose recency-weighted
        evidence reversed or lost significance; a proposed one is flagged only if it reversed."""
        effect = weighted_effect(
            list(skill.observations), now=now, half_life_days=policy.half_life_days
        )
        found = drift(skill.direction, effect)
        if found is None or (skill.status == "proposed" and found.reason != "effect reversed"):
            return skill
        figures = {
            **found.figures,
            "direction": "harmful" if effect and effect.log_or < 0 else "helpful",
            "half_life_days": policy.half_life_days,
        }
        if section_mode == "auto" and skill.status == "active":
            result.retired.append(skill.id)
            return replace(skill, status="retired", flags=(found.reason,)).with_event(
                now,
                "coach",
                "retired",
                note=found.reason,
                figures=figures,
                **{"from": "active", "to": "retired"},
            )
        if found.reason in skill.flags:
            return skill
        result.flagged.append(skill.id)
        return replace(skill, flags=(found.reason,)).with_event(
            now, "coach", "flagged", note=found.reason, figures=figures
        )

    def _merge_duplicates(self, policy: MergePolicy, now: str, result: MergeResult) -> None:
        live = sorted(
            (s for s in self.skills.values() if s.status in ("active", "proposed")),
            key=lambda s: (s.status != "active", s.created_at or "", s.id),
        )
        absorbed: set[str] = set()
        for i, keep in enumerate(live):
            if keep.id in absorbed:
                continue
            for other in live[i + 1 :]:
                if other.id in absorbed or (other.namespace, other.section) != (
                    keep.namespace,
                    keep.section,
                ):
                    continue
                score = near_duplicate(
                    _dup_view(self.skills[keep.id]),
                    _dup_view(other),
                    threshold=policy.duplicate_threshold,
                )
                if score is None:
                    continue
                absorbed.add(other.id)
                current = self.skills[keep.id]
                merged_from = [
                    *current.source.get("merged_from", []),
                    {
                        "id": other.id,
                        "pattern_id": other.source.get("pattern_id"),
                        "instruction": other.instruction,
                        "similarity": score,
                    },
                ]
                self._put(
                    current,
                    replace(
                        current, source={**current.source, "merged_from": merged_from}
                    ).with_event(
                        now,
                        "coach",
                        "merged",
                        note=f"absorbed near-duplicate {other.id} (similarity {score:.0f})",
                    ),
                    now,
                )
                self._put(
                    other,
                    replace(
                        other,
                        status="retired",
                        flags=(f"merged into {keep.id}",),
                        source={**other.source, "merged_into": keep.id},
                    ).with_event(
                        now,
                        "coach",
                        "merged",
                        note=f"near-duplicate of {keep.id} (similarity {score:.0f})",
                        figures=other.figures(),
                        **{"from": other.status, "to": "retired"},
                    ),
                    now,
                )
                result.merged += [keep.id, other.id]

    def _graduate(self, policy: MergePolicy, now: str, result: MergeResult) -> None:
        if policy.mode_of("improvements") == "off":
            return
        for skill in sorted(self.skills.values(), key=lambda s: s.id):
            if skill.status != "active" or skill.section == "improvements":
                continue
            if skill.source.get("method") == "import":
                continue
            held = {
                o.get("inputs_sha256")
                for o in skill.observations
                if o.get("inputs_sha256")
                and (o["ci_high"] < 1 if skill.direction == "harmful" else o["ci_low"] > 1)
            }
            if len(held) < policy.graduate_after:
                continue
            pattern = f"improvement:{skill.source.get('pattern_id')}"
            sid = skill_id(skill.namespace, pattern)
            if sid in self.skills:
                continue
            self.skills[sid] = Skill(
                id=sid,
                status="proposed",
                section="improvements",
                namespace=skill.namespace,
                instruction=f"Add to the base instructions: {skill.instruction}",
                evidence=dict(skill.evidence),
                source={
                    "method": "rule",
                    "pattern_id": pattern,
                    "from_skill": skill.id,
                    "direction": skill.direction,
                },
                created_at=now,
                updated_at=now,
            ).with_event(
                now,
                "coach",
                "added",
                to="proposed",
                note=f"{skill.id} held on {len(held)} distinct input sets",
                figures=skill.figures(),
            )
            result.added.append(sid)

    def _record(
        self,
        now: str,
        actor: str,
        action: str,
        result: MergeResult,
        *,
        run: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        entry = {"version": self.version + result.changed, "at": now, "actor": actor}
        entry |= {"action": action, **extra, **(run or {}), "changes": result.as_dict()}
        self.last_entry = entry
        if result.changed:
            self.version += 1
            self.updated_at = now
            self.history.append(entry)

    # -- a person ------------------------------------------------------------------------

    def decide(
        self,
        ref: str,
        action: str,
        *,
        actor: str,
        now: str,
        note: str | None = None,
        text: str | None = None,
    ) -> Skill:
        """Record a person's decision on one skill and return the changed skill.

        ``action``: ``approve`` (a proposed, rejected or retired skill becomes active; on an
        active skill it clears its flags: the person keeps it), ``reject`` (proposed or active
        -> rejected), ``retire`` (active or proposed -> retired), ``edit`` (``text`` replaces
        the instruction and is kept across later runs: ``source.edited``). The skill's history
        and the Skillbook's get an entry with ``now``, ``actor`` and ``note``; rejections and
        retirements record the figures later evidence is compared with.

        Raises:
            SkillbookError: unknown skill, or the action does not apply to its status.
            ValueError: unknown action, or ``edit`` without text.
        """
        skill = self.find(ref)
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
                new = replace(
                    new, source={k: v for k, v in skill.source.items() if k != "merged_into"}
                )
        new = replace(new, version=skill.version + 1, updated_at=now)
        new = new.with_event(now, actor, action, **extra)
        self.skills[skill.id] = new
        self._record(
            now, actor, action, MergeResult(decided=[skill.id]), note=note, skill_id=skill.id
        )
        return new

    def add_skills(
        self,
        skills: Iterable[Skill],
        *,
        actor: str,
        now: str,
        note: str | None,
        action: str = "import",
    ) -> list[str]:
        """Add skills that are not in the Skillbook yet (by id) with an ``action`` history entry;
        returns the ids added."""
        added = []
        for skill in sorted(skills, key=lambda s: s.id):
            if skill.id in self.skills:
                continue
            self.skills[skill.id] = replace(
                skill, created_at=skill.created_at or now, updated_at=now
            ).with_event(now, actor, action, note=note, to=skill.status)
            added.append(skill.id)
        self._record(now, actor, action, MergeResult(added=added), note=note)
        return added

    def record_validation(
        self, ref: str, result: dict[str, Any], now: str, actor: str = "coach"
    ) -> Skill:
        """Store a skill's latest held-out validation: ``validation`` becomes ``{**result,
        "at": now}`` and the skill's history gets a ``validation`` entry holding it. This is
        not a content change (no version increment): it does not alter any prompt.

        ``result`` is a JSON-ready dict chosen by the evaluator, e.g. ``{"dataset": str,
        "odds_ratio": float, "ci_low": float, "ci_high": float, "p_value": float, "n": int,
        "held": bool}``.

        Raises:
            SkillbookError: unknown skill.
        """
        skill = self.find(ref)
        validation = {**result, "at": now}
        new = replace(skill, validation=validation).with_event(
            now, actor, "validation", figures=dict(result)
        )
        self.skills[skill.id] = new
        return new

    # -- files ---------------------------------------------------------------------------

    def save(self, directory: Path) -> dict[str, Path | None]:
        """Write the version snapshot (``versions/v<NNNNNN>.json``, once per version), then
        ``skillbook.json`` and ``SKILLBOOK.md`` into ``directory``, each atomically; files whose
        content would not change are left untouched. Returns the paths by kind (``json``,
        ``markdown``, ``snapshot``)."""
        from pipeline.skillbook_history import write_snapshot

        snapshot = write_snapshot(self, directory)
        kill_point("after-snapshot")
        json_path, md_path = directory / "skillbook.json", directory / "SKILLBOOK.md"
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
        if not json_path.exists() or json_path.read_text(encoding="utf-8") != text:
            atomic_write(json_path, text)
        kill_point("after-skillbook-json")
        markdown = self.to_markdown()
        if not md_path.exists() or md_path.read_text(encoding="utf-8") != markdown:
            atomic_write(md_path, markdown)
        return {"json": json_path, "markdown": md_path, "snapshot": snapshot}

    def to_markdown(self) -> str:
        """The Skillbook for people: every skill by namespace and section, with its evidence."""
        from pipeline.report_md import skillbook_markdown

        return skillbook_markdown(self)


def _dup_view(skill: Skill) -> dict[str, Any]:
    return {
        "instruction": skill.instruction,
        "pattern_id": skill.source.get("pattern_id"),
        "direction": skill.direction,
    }

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

This module holds :class:`Skillbook`; its value types are in :mod:`pipeline.skillbook_types`,
its files in :mod:`pipeline.skillbook_io`, a learning run's merge in
:mod:`pipeline.skillbook_merge` and changes made outside a run (a person's decisions, imports,
validations) in :mod:`pipeline.skillbook_decisions`. Import the public names from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import skillbook_decisions, skillbook_io, skillbook_merge
from pipeline.errors import SkillbookError
from pipeline.extract import Candidate
from pipeline.skillbook_io import FORMAT_VERSION, MIGRATIONS
from pipeline.skillbook_types import (
    MODES,
    SECTIONS,
    STATUSES,
    MergePolicy,
    MergeResult,
    Skill,
    section_key,
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
        return cls.from_dict(skillbook_io.read(path), where=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "Skillbook") -> Skillbook:
        """Build a Skillbook from its JSON document (any supported ``format_version``).

        Raises:
            SkillbookError: not a Skillbook, or an unsupported ``format_version``.
        """
        data = skillbook_io.upgrade(data, where=where)
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
        return skillbook_merge.merge(
            self, candidates, mode=mode, policy=policy, now=now, tested=tested, run=run
        )

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
        """Log one merge, decision or import (``result``: what it changed) as :attr:`last_entry`;
        when it changed content, also append it to ``history``, increment ``version`` and set
        ``updated_at``. Used by :mod:`pipeline.skillbook_merge`, :mod:`pipeline.skillbook_decisions`
        and :mod:`pipeline.skillbook_history`."""
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
        return skillbook_decisions.decide(
            self, ref, action, actor=actor, now=now, note=note, text=text
        )

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
        return skillbook_decisions.add_skills(
            self, skills, actor=actor, now=now, note=note, action=action
        )

    def record_validation(
        self, ref: str, result: dict[str, Any], now: str, actor: str = "coach"
    ) -> Skill:
        """Store a skill's latest held-out validation: ``validation`` becomes ``{**result,
        "at": now}`` (finite floats rounded to 6 decimal places, as the evidence is) and the
        skill's history gets a ``validation`` entry holding it. This is not a content change
        (no version increment): it does not alter any prompt.

        ``result`` is a JSON-ready dict chosen by the evaluator, e.g. ``{"dataset": str,
        "odds_ratio": float, "ci_low": float, "ci_high": float, "p_value": float, "n": int,
        "held": bool}``.

        Raises:
            SkillbookError: unknown skill.
        """
        return skillbook_decisions.record_validation(self, ref, result, now, actor)

    # -- files ---------------------------------------------------------------------------

    def save(self, directory: Path) -> dict[str, Path | None]:
        """Write the version snapshot (``versions/v<NNNNNN>.json``, once per version), then
        ``skillbook.json`` and ``SKILLBOOK.md`` into ``directory``, each atomically; files whose
        content would not change are left untouched. Returns the paths by kind (``json``,
        ``markdown``, ``snapshot``)."""
        return skillbook_io.save(self, directory)

    def to_markdown(self) -> str:
        """The Skillbook for people: every skill by namespace and section, with its evidence."""
        from pipeline.report_md import skillbook_markdown

        return skillbook_markdown(self)

"""The Skillbook: a versioned, reviewable, evidence-backed set of skills, stored as JSON (for
machines) and Markdown (for people); the file format is described in
:mod:`pipeline.skillbook.fileformat`.

:class:`Skillbook` holds the skills, the version and the history, and records every change: a
learning run's merge (:mod:`pipeline.skillbook.merge`), a person's decisions, imports and
validations (:mod:`pipeline.skillbook.decisions`) and restoring an earlier version
(:func:`checkout`, :mod:`pipeline.skillbook.history`). Those modules work on skills and plain
data and never import this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.errors import SkillbookError
from pipeline.skillbook import decisions, fileformat, history, merge as merging
from pipeline.skillbook.types import STATUSES, Candidate, MergePolicy, MergeResult, Skill

__all__ = ["Skillbook", "checkout", "diff", "load_ref"]


@dataclass
class Skillbook:
    """The Skillbook in memory: ``Skillbook.load(path)``, then :meth:`merge` (a run) or
    :meth:`decide` (a person), then :meth:`save`.

    ``skills`` maps id to :class:`~pipeline.skillbook.Skill`; ``version`` counts content
    changes; ``history`` is the list of entries described in
    :mod:`pipeline.skillbook.fileformat`.
    """

    skills: dict[str, Skill] = field(default_factory=dict)
    version: int = 0
    updated_at: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    # Prompt experiments, running and ended (see pipeline.skillbook.fileformat).
    experiments: list[dict[str, Any]] = field(default_factory=list)
    # The entry of the latest merge or decision, also when it changed nothing (not saved with
    # the Skillbook; runs are logged by :func:`pipeline.skillbook.history.append_run`).
    last_entry: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def load(cls, path: Path) -> Skillbook:
        """Read ``path`` (a ``skillbook.json``); a missing file is an empty Skillbook. Older
        formats are upgraded in memory by :data:`~pipeline.skillbook.MIGRATIONS` (the file is
        rewritten in the new format on the next save).

        Raises:
            SkillbookError: unreadable, not JSON, or a ``format_version`` newer than this coach.
        """
        if not path.exists():
            return cls()
        return cls.from_dict(fileformat.read(path), where=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "Skillbook") -> Skillbook:
        """Build a Skillbook from its JSON document (any supported ``format_version``).

        Raises:
            SkillbookError: not a Skillbook, or an unsupported ``format_version``.
        """
        data = fileformat.upgrade(data, where=where)
        skills = [Skill.from_dict(s) for s in data.get("skills", [])]
        experiments = list(data.get("experiments", []))
        running: dict[str, str] = {}
        for experiment in experiments:
            if experiment.get("status") != "running":
                continue
            namespace = experiment.get("namespace")
            if namespace in running:
                raise SkillbookError(
                    f"{where}: two experiments are running on {namespace} "
                    f"({running[namespace]} and {experiment.get('id')}); one namespace runs "
                    "one experiment at a time: end one with 'coach experiment stop'"
                )
            running[str(namespace)] = str(experiment.get("id"))
        return cls(
            {s.id: s for s in skills},
            int(data.get("version", 0)),
            data.get("updated_at"),
            list(data.get("history", [])),
            experiments,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document described in :mod:`pipeline.skillbook.fileformat`."""
        return {
            "format_version": fileformat.FORMAT_VERSION,
            "version": self.version,
            "updated_at": self.updated_at,
            "history": self.history,
            "experiments": self.experiments,
            "skills": [self.skills[k].to_dict() for k in sorted(self.skills)],
        }

    def running_experiment(self, namespace: str) -> dict[str, Any] | None:
        """The experiment running on ``namespace``, or None."""
        for experiment in self.experiments:
            if experiment["namespace"] == namespace and experiment["status"] == "running":
                return experiment
        return None

    def content(self) -> dict[str, Any]:
        """What the Skillbook says, without its history and times of runs: the version and the
        skills. Two Skillbooks with equal content render the same prompts."""
        return {
            "version": self.version,
            "experiments": self.experiments,
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
          figures at the decision (:func:`pipeline.skillbook.drift.material_change`); then it is
          proposed again. Nothing is ever deleted.
        - Near-duplicate active/proposed skills are merged: the other is retired with
          ``merged_into``, the kept one lists it in ``merged_from``.
        - An active skill that held on ``policy.graduate_after`` distinct input sets gets an
          ``improvements`` proposal to move it into the base instructions.

        ``mode`` (``auto``, ``propose`` or ``off``) overrides ``policy.mode`` (default
        :class:`MergePolicy`). ``tested``: (skill id, pattern id, evidence) of every tested
        pattern, for the latest figures of skills that are no longer candidates. ``run``: the
        run's identity (run_id, inputs, inputs_sha256, settings, counts), stored in the merge's
        history entry (:attr:`last_entry`; appended to ``history`` when content changed, and
        then ``version`` increments and ``updated_at`` is ``now``). Merging the same
        candidates again changes nothing, whatever their order.

        Raises:
            ValueError: an unknown mode.
        """
        if policy is None:
            policy = MergePolicy(mode=mode or "auto")
        elif mode is not None:
            policy = replace(policy, mode=mode)
        result = merging.merge(
            self.skills,
            candidates,
            policy=policy,
            now=now,
            tested=tested,
            inputs=(run or {}).get("inputs_sha256"),
        )
        self._record(now, "coach", "run", result, run=run)
        return result

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
        """Log one merge, decision, import or checkout (``result``: what it changed) as
        :attr:`last_entry`; when it changed content, also append it to ``history``, increment
        ``version`` and set ``updated_at``."""
        entry = {"version": self.version + result.changed, "at": now, "actor": actor}
        entry |= {"action": action, **extra, **(run or {}), "changes": result.as_dict()}
        self.last_entry = entry
        if result.changed:
            self.version += 1
            self.updated_at = now
            self.history.append(entry)

    def record_experiments(self, now: str, result: MergeResult, summary: dict[str, Any]) -> None:
        """Log a round of prompt experiments (:func:`pipeline.experiment.run_experiments`
        changed the skills and :attr:`experiments` in place; ``result``: the skills it
        changed; ``summary``: what it did), as for a merge (action ``experiment``)."""
        self._record(now, "coach", "experiment", result, experiments=summary)

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
        """Record a person's decision on one skill (``ref``: see :meth:`find`) and return the
        changed skill.

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
        new = decisions.decide(skill, action, actor=actor, now=now, note=note, text=text)
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
        added = decisions.add_skills(
            self.skills, skills, actor=actor, now=now, note=note, action=action
        )
        self._record(now, actor, action, MergeResult(added=added), note=note)
        return added

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
        skill = self.find(ref)
        new = decisions.record_validation(skill, result, now, actor)
        self.skills[skill.id] = new
        return new

    # -- files ---------------------------------------------------------------------------

    def save(self, directory: Path, *, markdown: str) -> dict[str, Path | None]:
        """Write the version snapshot (``versions/v<NNNNNN>.json``, once per version), then
        ``skillbook.json`` and ``SKILLBOOK.md`` into ``directory``, each atomically; files whose
        content would not change are left untouched. ``markdown`` is the text of
        ``SKILLBOOK.md``, this Skillbook rendered for people
        (:func:`pipeline.render.save_skillbook` renders it and calls this). Returns the paths
        by kind (``json``, ``markdown``, ``snapshot``).

        Raises:
            OSError: a file cannot be written.
        """
        return fileformat.save(directory, self.to_dict(), markdown=markdown)


def load_ref(directory: Path, ref: str) -> Skillbook:
    """A Skillbook named by ``ref``: ``vN`` or ``N`` (a version kept in ``directory``; ``v0``
    is the empty Skillbook), a Skillbook directory, or a ``skillbook.json`` path.

    Raises:
        SkillbookError: no such version or file, or the file is not a readable Skillbook.
    """
    path = history.resolve_ref(directory, ref)
    return Skillbook() if path is None else Skillbook.load(path)


def checkout(
    book: Skillbook,
    earlier: Skillbook,
    *,
    restored: int,
    actor: str,
    now: str,
    note: str | None = None,
) -> MergeResult:
    """Make ``book`` say again what ``earlier`` (version ``restored``) said, as a new version:
    each skill gets back its status, section, namespace, wording, evidence, provenance and flags
    of that version and keeps its history (plus a ``checkout`` entry); a skill that did not
    exist then is retired, never deleted.

    Returns what changed (``decided``: the skills restored or retired). A checkout that changes
    nothing still records a history entry but keeps the version.
    """
    result = history.restore(book.skills, earlier.skills, restored=restored, actor=actor, now=now)
    book._record(now, actor, "checkout", result, note=note, restored=restored)
    return result


def diff(before: Skillbook, after: Skillbook) -> dict[str, Any]:
    """What changed from ``before`` to ``after``: ``{"versions": [int, int], "added": {id:
    summary}, "removed": {id: summary}, "changed": {id: {field: [before, after]}}}``, where a
    summary holds status, section, namespace, instruction, odds_ratio, q_value and flags
    (:func:`pipeline.skillbook.history.compare`)."""
    return {"versions": [before.version, after.version]} | history.compare(
        before.skills, after.skills
    )

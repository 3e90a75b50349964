"""The Skillbook: a versioned, evidence-backed set of skills, stored as JSON (for machines) and
Markdown (for people).

``skillbook.json``::

    {"format_version": 1, "version": int, "updated_at": ISO-8601 | null,
     "history": [{"version", "run_id", "at", "inputs", "counts", "changes": {...}}],
     "skills": [Skill.to_dict(), ... sorted by id]}

``format_version`` is checked on load; older files are upgraded by the ordered functions in
:data:`MIGRATIONS`. ``version`` increments whenever content changes; a merge that changes nothing
writes nothing, so re-running on the same input leaves the files byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.errors import SkillbookError
from pipeline.extract import Candidate
from pipeline.fileio import atomic_write

__all__ = ["FORMAT_VERSION", "MIGRATIONS", "MergeResult", "Skill", "Skillbook", "STATUSES"]

FORMAT_VERSION = 1
STATUSES = ("active", "proposed", "retired", "rejected")
SECTION_ORDER = ("procedures", "escalation", "tool-usage", "pitfalls")


def section_key(section: str) -> tuple[int, str]:
    """Sort key of a section: the order of :data:`SECTION_ORDER`, unknown sections last by name."""
    rank = SECTION_ORDER.index(section) if section in SECTION_ORDER else len(SECTION_ORDER)
    return rank, section


# Ordered upgrades: MIGRATIONS[i] turns format_version i into i + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass(frozen=True)
class Skill:
    """One skill.

    ``id`` is derived from (namespace, pattern), so the same pattern always maps to the same id.
    ``status``: active | proposed | retired | rejected. ``namespace``: ``global``,
    ``domain:<name>``, ``agent:<name>`` or ``user:<id>``. ``evidence``: the Analyzer's figures
    (see :meth:`pipeline.extract.SkillExtractor.run`). ``source``: ``{"method": "rule" | "llm",
    "pattern_id": str}``. ``flags``: open concerns (e.g. ``no longer significant``). Times are
    ISO-8601 UTC strings; ``version`` counts this skill's content changes.
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``flags`` as a list)."""
        data = asdict(self)
        data["flags"] = list(self.flags)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Skill:
        """Inverse of :meth:`to_dict`.

        Raises:
            SkillbookError: a required key is missing or the status is unknown.
        """
        try:
            skill = cls(**{**data, "flags": tuple(data.get("flags", ()))})
        except TypeError as exc:
            raise SkillbookError(f"malformed skill {data.get('id')!r}: {exc}") from exc
        if skill.status not in STATUSES:
            raise SkillbookError(f"skill {skill.id}: unknown status {skill.status!r}")
        return skill

    @property
    def value(self) -> float:
        """How much the skill is worth in a prompt: the absolute log odds ratio bound nearest
        to 1 (0 when the interval is unknown). Larger, surer effects rank first."""
        import math

        low, high = self.evidence.get("ci_low"), self.evidence.get("ci_high")
        if not low or not high:
            return 0.0
        return max(0.0, math.log(low), -math.log(high))


@dataclass
class MergeResult:
    """What a merge changed: skill ids ``added``, ``updated`` (evidence or wording),
    ``activated``, ``flagged``; ``changed`` is True when anything did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.activated or self.flagged)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "added": self.added,
            "updated": self.updated,
            "activated": self.activated,
            "flagged": self.flagged,
        }


@dataclass
class Skillbook:
    """The Skillbook in memory. ``Skillbook.load(path).merge(candidates, ...)`` then
    :meth:`save`."""

    skills: dict[str, Skill] = field(default_factory=dict)
    version: int = 0
    updated_at: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Skillbook:
        """Read ``path``; a missing file is an empty Skillbook.

        Raises:
            SkillbookError: unreadable, not JSON, or a ``format_version`` newer than this coach.
        """
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SkillbookError(f"{path}: cannot read the Skillbook: {exc}") from exc
        if not isinstance(data, dict) or "format_version" not in data:
            raise SkillbookError(f"{path}: not a Skillbook (no format_version)")
        found = data["format_version"]
        if not isinstance(found, int) or found > FORMAT_VERSION or found < 1:
            raise SkillbookError(
                f"{path}: format_version {found!r} is not supported (this coach reads up to "
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

    def by_status(self) -> dict[str, int]:
        """Number of skills per status (every status present, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        for skill in self.skills.values():
            counts[skill.status] += 1
        return counts

    def merge(
        self,
        candidates: Iterable[Candidate],
        *,
        mode: str = "auto",
        now: str,
        tested: Iterable[tuple[str, str, dict[str, Any]]] = (),
        run: dict[str, Any] | None = None,
    ) -> MergeResult:
        """Merge candidates into the Skillbook.

        - A known pattern (same id) gets the new evidence (and template wording, unless a person
          edited it: ``source.edited``); a proposed skill whose candidate is significant becomes
          active in ``auto`` mode.
        - A new candidate is added as ``active`` (mode ``auto`` and significant) or ``proposed``.
        - An active or proposed skill without a candidate this run is never deleted: it is
          flagged ``no longer significant`` (with the latest figures from ``tested``, an iterable
          of (skill id, pattern id, evidence)) or ``not observed in the latest run``.
        - Rejected and retired skills stay as they are.

        When anything changed, ``version`` increments, ``updated_at`` is ``now`` and a history
        entry (``run`` plus the changes) is appended. Merging the same candidates twice changes
        nothing the second time, and the result does not depend on their order.

        Raises:
            ValueError: ``mode`` is not ``auto`` or ``propose``.
        """
        if mode not in ("auto", "propose"):
            raise ValueError(f"mode must be 'auto' or 'propose', not {mode!r}")
        result = MergeResult()
        seen: set[str] = set()
        for cand in sorted(candidates, key=lambda c: c.id):
            seen.add(cand.id)
            wanted = "active" if cand.significant and mode == "auto" else "proposed"
            old = self.skills.get(cand.id)
            if old is None:
                self.skills[cand.id] = Skill(
                    id=cand.id,
                    status=wanted,
                    section=cand.section,
                    namespace=cand.namespace,
                    instruction=cand.instruction,
                    evidence=cand.evidence,
                    source={"method": "rule", "pattern_id": cand.pattern_id},
                    created_at=now,
                    updated_at=now,
                )
                result.added.append(cand.id)
                continue
            new = old
            if old.status in ("rejected", "retired"):
                continue
            instruction = old.instruction if old.source.get("edited") else cand.instruction
            if old.evidence != cand.evidence or old.instruction != instruction or old.flags:
                new = replace(new, evidence=cand.evidence, instruction=instruction, flags=())
                result.updated.append(cand.id)
            if old.status == "proposed" and wanted == "active":
                new = replace(new, status="active")
                result.activated.append(cand.id)
            if new != old:
                self.skills[cand.id] = replace(new, updated_at=now, version=old.version + 1)
        latest = {sid: evidence for sid, _, evidence in tested}
        for sid in sorted(set(self.skills) - seen):
            old = self.skills[sid]
            if old.status not in ("active", "proposed"):
                continue
            flag = "no longer significant" if sid in latest else "not observed in the latest run"
            evidence = latest.get(sid, old.evidence)
            if old.flags != (flag,) or evidence != old.evidence:
                self.skills[sid] = replace(
                    old, flags=(flag,), evidence=evidence, updated_at=now, version=old.version + 1
                )
                result.flagged.append(sid)
        if result.changed:
            self.version += 1
            self.updated_at = now
            self.history.append(
                {"version": self.version, "at": now, **(run or {}), "changes": result.as_dict()}
            )
        return result

    def save(self, directory: Path) -> dict[str, Path]:
        """Write ``skillbook.json`` and ``SKILLBOOK.md`` into ``directory`` atomically; files
        whose content would not change are left untouched. Returns both paths."""
        json_path, md_path = directory / "skillbook.json", directory / "SKILLBOOK.md"
        for path, text in (
            (
                json_path,
                json.dumps(self.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n",
            ),
            (md_path, self.to_markdown()),
        ):
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                atomic_write(path, text)
        return {"json": json_path, "markdown": md_path}

    def to_markdown(self) -> str:
        """The Skillbook for people: every skill by namespace and section, with its evidence."""
        from pipeline.report_md import skillbook_markdown

        return skillbook_markdown(self)

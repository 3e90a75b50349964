"""The Skillbook's files: the JSON document and its format version, the upgrades of older
formats (:data:`MIGRATIONS`), reading (:func:`read`, :func:`upgrade`) and saving (:func:`save`:
version snapshot, ``skillbook.json`` and ``SKILLBOOK.md``, each atomically).

``skillbook.json`` (format 3)::

    {"format_version": 3, "version": int, "updated_at": ISO-8601 | null,
     "history": [entry, ...],
     "experiments": [experiment, ...],
     "skills": [Skill.to_dict(), ... sorted by id]}

An ``experiments`` entry is one prompt experiment on a namespace (at most one ``running`` per
namespace; see :mod:`pipeline.experiment.lifecycle`)::

    {"id": "ex-" + 12 hex, "namespace": str, "status": "running" | "ended",
     "started_at": ISO-8601, "ended_at": ISO-8601 | null, "ended_because": str | null,
     "share": float (the share of units in candidate arms), "control_skill_ids": [str],
     "skill_ids": [str] (the skills under test, in design order),
     "arms": [{"arm": "control" | "candidate" | "candidate-<n>", "skill_ids": [str] (the skills
               under test it adds to the control's), "share": float}]}

A Skillbook ``history`` entry (one per ``learn`` run that changed the content, and one per
decision of a person; every run, changed or not, is also logged in ``runs.jsonl`` beside the
Skillbook, see :func:`pipeline.skillbook.history.append_run`)::

    {"version": int (the Skillbook version after the entry), "at": ISO-8601, "actor": str,
     "action": "run" | "approve" | "reject" | "retire" | "edit" | "checkout" | "import",
     "note": str | null, "skill_id": str (decisions only), "restored": int (checkout only),
     "run_id", "inputs", "inputs_sha256", "settings", "counts" (runs only),
     "changes": {"added", "updated", "activated", "flagged", "retired", "reproposed",
                 "merged", "decided": [skill ids]}}

A skill's own ``history`` is described in :class:`pipeline.skillbook.Skill`.
``format_version`` is checked on load; older files are upgraded in memory by the ordered
functions of :data:`MIGRATIONS` (and rewritten in the current format on the next save).
``version`` increments whenever content changes (a skill added, its status, wording or
evidence changed); earlier versions are kept as snapshots (:mod:`pipeline.skillbook.history`).

``SKILLBOOK.md`` is the same Skillbook for people; it is rendered by :mod:`pipeline.render`
and handed to :func:`save` as text, so that both files are written by one call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.errors import SkillbookError
from pipeline.fileio import atomic_write
from pipeline.skillbook.drift import observation
from pipeline.skillbook.history import write_snapshot
from pipeline.skillbook.types import CHANGE_KEYS

__all__ = ["FORMAT_VERSION", "MIGRATIONS", "dumps", "read", "save", "upgrade"]


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


def m002_experiments(data: dict[str, Any]) -> dict[str, Any]:
    """Format 2 -> 3: the Skillbook gets ``experiments`` (none ran before) and every skill
    ``experiment`` (no live-traffic evidence yet)."""
    skills = [{**skill, "experiment": None} for skill in data.get("skills", [])]
    return {**data, "format_version": 3, "skills": skills, "experiments": []}


# The upgrades in order: MIGRATIONS[i] turns format_version i + 1 into i + 2. A new format adds
# one function (m002_..., taking and returning the whole document) at the end.
MIGRATIONS: tuple[Callable[[dict[str, Any]], dict[str, Any]], ...] = (
    m001_history_and_observations,
    m002_experiments,
)
# The format this coach writes: the one after the last upgrade.
FORMAT_VERSION = len(MIGRATIONS) + 1


def read(path: Path) -> Any:
    """The JSON document in ``path`` (any value; :func:`upgrade` checks it).

    Raises:
        SkillbookError: unreadable or not JSON.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SkillbookError(f"{path}: cannot read the Skillbook: {exc}") from exc


def upgrade(data: Any, *, where: str) -> dict[str, Any]:
    """``data`` in the current format: a Skillbook document of any supported ``format_version``
    upgraded by :data:`MIGRATIONS` (in memory). ``where`` names it in errors.

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
        data = MIGRATIONS[data["format_version"] - 1](data)
    return data


def dumps(document: dict[str, Any]) -> str:
    """The text of ``skillbook.json`` for ``document``: JSON indented by 2, keys in the
    document's order, non-ASCII kept, one final newline."""
    return json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def save(directory: Path, document: dict[str, Any], *, markdown: str) -> dict[str, Path | None]:
    """Write the version snapshot of ``document`` (``versions/v<NNNNNN>.json``, once per
    version), then ``skillbook.json`` (:func:`dumps`) and ``SKILLBOOK.md`` (``markdown``) into
    ``directory``, each atomically and in this order, so that a crash leaves the previous
    ``skillbook.json`` or the new one; files whose content would not change are left untouched.
    Returns the paths by kind (``json``, ``markdown``, ``snapshot``; ``snapshot`` is None for
    version 0).

    Raises:
        OSError: a file cannot be written.
    """
    snapshot = write_snapshot(directory, document)
    json_path, md_path = directory / "skillbook.json", directory / "SKILLBOOK.md"
    text = dumps(document)
    if not json_path.exists() or json_path.read_text(encoding="utf-8") != text:
        atomic_write(json_path, text)
    if not md_path.exists() or md_path.read_text(encoding="utf-8") != markdown:
        atomic_write(md_path, markdown)
    return {"json": json_path, "markdown": md_path, "snapshot": snapshot}

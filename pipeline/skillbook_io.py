"""The Skillbook's files: the format version and its upgrades (:data:`MIGRATIONS`), reading a
``skillbook.json`` document (:func:`read`, :func:`upgrade`) and saving a Skillbook
(:func:`save`: version snapshot, ``skillbook.json`` and ``SKILLBOOK.md``, each atomically).

The document itself is described in :mod:`pipeline.skillbook`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import SkillbookError
from pipeline.fileio import atomic_write, kill_point
from pipeline.skillbook_drift import observation
from pipeline.skillbook_types import CHANGE_KEYS

if TYPE_CHECKING:
    from pipeline.skillbook import Skillbook

__all__ = ["FORMAT_VERSION", "MIGRATIONS", "read", "save", "upgrade"]

FORMAT_VERSION = 2


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
        data = MIGRATIONS[data["format_version"]](data)
    return data


def save(book: Skillbook, directory: Path) -> dict[str, Path | None]:
    """Write the version snapshot of ``book`` (``versions/v<NNNNNN>.json``, once per version),
    then ``skillbook.json`` and ``SKILLBOOK.md`` into ``directory``, each atomically; files
    whose content would not change are left untouched. Returns the paths by kind (``json``,
    ``markdown``, ``snapshot``)."""
    from pipeline.skillbook_history import write_snapshot  # it imports pipeline.skillbook

    snapshot = write_snapshot(book, directory)
    kill_point("after-snapshot")
    json_path, md_path = directory / "skillbook.json", directory / "SKILLBOOK.md"
    text = json.dumps(book.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    if not json_path.exists() or json_path.read_text(encoding="utf-8") != text:
        atomic_write(json_path, text)
    kill_point("after-skillbook-json")
    markdown = book.to_markdown()
    if not md_path.exists() or md_path.read_text(encoding="utf-8") != markdown:
        atomic_write(md_path, markdown)
    return {"json": json_path, "markdown": md_path, "snapshot": snapshot}

"""Earlier versions of a Skillbook and the log of runs: snapshots, naming a version, restoring
one (checkout), comparing two, and ``runs.jsonl``.

Every saved version is kept as ``<skillbook dir>/versions/v<NNNNNN>.json`` (the full JSON
document of that version, written once, atomically, before ``skillbook.json``). Restoring
version N (:func:`restore`) is itself a new version: each skill gets back its status, section,
namespace, wording, evidence, provenance and flags of version N, keeps its history (plus a
``checkout`` entry), and a skill that did not exist in version N is retired, never deleted.

Every ``learn`` run, whether it changed the Skillbook or not, is logged in
``<skillbook dir>/runs.jsonl`` (:func:`append_run`).

The functions here work on plain data (JSON documents, ``{id: Skill}`` mappings, paths);
:class:`pipeline.skillbook.Skillbook` and the functions of the package face that take a
Skillbook (``load_ref``, ``checkout``, ``diff``) are built on them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.errors import SkillbookError
from pipeline.fileio import atomic_write
from pipeline.skillbook.types import MergeResult, Skill

__all__ = [
    "append_run",
    "compare",
    "read_runs",
    "resolve_ref",
    "restore",
    "snapshot_path",
    "snapshot_versions",
    "write_snapshot",
]

_RESTORED_FIELDS = ("status", "section", "namespace", "instruction", "evidence", "source", "flags")


def snapshot_path(directory: Path, version: int) -> Path:
    """Where version ``version`` of the Skillbook in ``directory`` is kept."""
    return directory / "versions" / f"v{version:06d}.json"


def snapshot_versions(directory: Path) -> list[int]:
    """The versions with a snapshot in ``directory``, ascending."""
    found = []
    for path in (directory / "versions").glob("v*.json"):
        match = re.fullmatch(r"v(\d+)\.json", path.name)
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


def write_snapshot(directory: Path, document: dict[str, Any]) -> Path | None:
    """Write the snapshot of ``document`` (a Skillbook's JSON document, see
    :mod:`pipeline.skillbook.fileformat`) for its ``version`` unless it exists (version 0, the
    empty Skillbook, has none). Returns its path, or None for version 0."""
    version = document["version"]
    if version == 0:
        return None
    path = snapshot_path(directory, version)
    if not path.exists():
        atomic_write(path, json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    return path


def resolve_ref(directory: Path, ref: str) -> Path | None:
    """The ``skillbook.json`` document named by ``ref``: ``vN`` or ``N`` (a version kept in
    ``directory``; None for version 0, the empty Skillbook), a Skillbook directory, or a
    ``skillbook.json`` path.

    Raises:
        SkillbookError: no such version or file.
    """
    match = re.fullmatch(r"v?(\d+)", ref)
    if match:
        version = int(match.group(1))
        if version == 0:
            return None
        path = snapshot_path(directory, version)
        if not path.exists():
            kept = ", ".join(f"v{v}" for v in snapshot_versions(directory)) or "none"
            raise SkillbookError(
                f"version {version} of {directory} is not kept (kept: {kept}); versions saved "
                "before snapshots existed cannot be restored"
            )
        return path
    path = Path(ref)
    if path.is_dir():
        path = path / "skillbook.json"
    if not path.exists():
        raise SkillbookError(f"{ref}: neither a kept version (vN) nor a Skillbook file")
    return path


def restore(
    skills: dict[str, Skill],
    earlier: Mapping[str, Skill],
    *,
    restored: int,
    actor: str,
    now: str,
) -> MergeResult:
    """Make ``skills`` (changed in place) say again what ``earlier`` (the skills of version
    ``restored``) said: the body of :func:`pipeline.skillbook.checkout`. Returns what changed
    (``decided``: the skills restored or retired)."""
    result = MergeResult()
    for sid in sorted(set(skills) | set(earlier)):
        current, then = skills.get(sid), earlier.get(sid)
        if current is None and then is not None:
            new = replace(then, history=()).with_event(
                now, actor, "checkout", note=f"restored from v{restored}", to=then.status
            )
            skills[sid] = replace(new, updated_at=now)
            result.decided.append(sid)
            continue
        assert current is not None
        if then is None:
            if current.status == "retired":
                continue
            new = replace(current, status="retired", flags=(f"not in v{restored}",))
            note_text = f"retired: not in v{restored}"
        else:
            fields: dict[str, Any] = {f: getattr(then, f) for f in _RESTORED_FIELDS}
            new = replace(current, **fields)
            note_text = f"restored from v{restored}"
            if new == current:
                continue
        new = replace(new, version=current.version + 1, updated_at=now).with_event(
            now, actor, "checkout", note=note_text, **{"from": current.status, "to": new.status}
        )
        skills[sid] = new
        result.decided.append(sid)
    return result


def _summary(skill: Skill) -> dict[str, Any]:
    return {
        "status": skill.status,
        "section": skill.section,
        "namespace": skill.namespace,
        "instruction": skill.instruction,
        "odds_ratio": skill.evidence.get("odds_ratio"),
        "q_value": skill.evidence.get("q_value"),
        "flags": list(skill.flags),
    }


def compare(before: Mapping[str, Skill], after: Mapping[str, Skill]) -> dict[str, Any]:
    """What changed from the skills ``before`` to the skills ``after`` (both ``{id: Skill}``):
    ``{"added": {id: summary}, "removed": {id: summary}, "changed": {id: {field: [before,
    after]}}}``, where a summary holds status, section, namespace, instruction, odds_ratio,
    q_value and flags."""
    added = {k: _summary(s) for k, s in sorted(after.items()) if k not in before}
    removed = {k: _summary(s) for k, s in sorted(before.items()) if k not in after}
    changed = {}
    for sid in sorted(set(before) & set(after)):
        a, b = _summary(before[sid]), _summary(after[sid])
        fields = {k: [a[k], b[k]] for k in a if a[k] != b[k]}
        if fields:
            changed[sid] = fields
    return {"added": added, "removed": removed, "changed": changed}


def append_run(directory: Path, entry: dict[str, Any]) -> Path:
    """Append one run's entry (see :attr:`pipeline.skillbook.Skillbook.last_entry`) to
    ``<directory>/runs.jsonl``, one JSON object per line, by an atomic rewrite (so a crash never
    leaves half a line). Call it while holding the Skillbook lock. Returns the log's path."""
    path = directory / "runs.jsonl"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write(path, old + json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n")
    return path


def read_runs(directory: Path) -> list[dict[str, Any]]:
    """The entries of ``<directory>/runs.jsonl`` in order ([] without a log).

    Raises:
        SkillbookError: a line is not JSON (names the line).
    """
    path = directory / "runs.jsonl"
    if not path.exists():
        return []
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as exc:
            raise SkillbookError(f"{path}: line {number} is not JSON: {exc}") from exc
    return out

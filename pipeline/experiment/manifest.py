"""The prompts manifest as an agent runtime reads it, and the assignment of a unit to an arm.

``prompts_out/manifest.json`` (format 2, written by :meth:`pipeline.render.PromptGenerator.write`)::

    {"format_version": 2, "skillbook_version": int, "template_sha256": str,
     "prompts": {file: {"namespace", "skill_ids", "base_prompt", "prompt_version"}},
     "namespaces": {namespace: {
         "assignment_id": str | null (the experiment id; null: every unit gets control),
         "experiment": {"id", "started_at", "skills_under_test", "share"} | null,
         "arms": [{"arm", "file", "prompt_version", "skill_ids", "share",
                   "range": [low, high]}]}},
     "sha256": SHA-256 of the canonical JSON of everything else}

A unit (a user, session or conversation id) gets the arm whose ``range`` holds its assignment
point (:func:`pipeline.experiment.assign.assignment_point` of namespace, unit id and assignment
id); candidate arms take ``[0, share)``, control the rest. A runtime needs nothing of coach for
this: the README shows the few lines in plain Python.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.experiment.assign import CONTROL, assignment_point

__all__ = [
    "MANIFEST_FORMAT",
    "Assignment",
    "assign_unit",
    "load_manifest",
    "manifest_checksum",
    "seal_manifest",
    "set_ranges",
]

MANIFEST_FORMAT = 2


def manifest_checksum(manifest: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the manifest's canonical JSON (sorted keys, no spaces, UTF-8) without
    its ``sha256`` key."""
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with its ``format_version`` and ``sha256`` set (the checksum last)."""
    body = {"format_version": MANIFEST_FORMAT, **manifest}
    body.pop("sha256", None)
    return {**body, "sha256": manifest_checksum(body)}


def load_manifest(path: Path) -> dict[str, Any]:
    """Read and check a prompts manifest.

    Raises:
        InputError: missing, not JSON, of a format this coach does not know (a newer coach
            wrote it), without a checksum (an older coach wrote it) or changed since coach
            wrote it (edited by hand: render again with ``coach render`` or ``coach learn``).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no prompts manifest; run 'coach learn' first") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the prompts manifest: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a prompts manifest (a JSON object is expected)")
    found = data.get("format_version", 1)
    if not isinstance(found, int) or found > MANIFEST_FORMAT or found < 1:
        raise InputError(
            f"{path}: manifest format_version {found!r} is newer than this coach reads "
            f"(up to {MANIFEST_FORMAT}); upgrade coach"
        )
    if found < MANIFEST_FORMAT or "sha256" not in data:
        raise InputError(
            f"{path}: a manifest of format {found} has no arms; render it again with "
            "'coach render' or 'coach learn'"
        )
    if data["sha256"] != manifest_checksum(data):
        raise InputError(
            f"{path}: the manifest was changed after coach wrote it (its sha256 does not "
            "match); do not edit it by hand: change the Skillbook or settings and render "
            "again with 'coach render' or 'coach learn'"
        )
    return data


@dataclass(frozen=True)
class Assignment:
    """The arm a unit gets: its ``namespace``, ``unit_id``, ``assignment_id`` (the experiment,
    or None), ``point`` (in [0, 1)), ``arm``, ``file`` (the prompt file, relative to the
    manifest's directory), ``prompt_version`` and ``skill_ids``."""

    namespace: str
    unit_id: str
    assignment_id: str | None
    point: float | None
    arm: str
    file: str
    prompt_version: str
    skill_ids: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "namespace": self.namespace,
            "unit_id": self.unit_id,
            "assignment_id": self.assignment_id,
            "point": self.point,
            "arm": self.arm,
            "file": self.file,
            "prompt_version": self.prompt_version,
            "skill_ids": list(self.skill_ids),
        }


def assign_unit(manifest: Mapping[str, Any], namespace: str, unit_id: str) -> Assignment:
    """The arm of ``namespace`` that ``unit_id`` gets under ``manifest`` (a dict from
    :func:`load_manifest`).

    Raises:
        InputError: the namespace has no prompt in the manifest, or the unit id is empty.
    """
    if not unit_id:
        raise InputError("the unit id is empty: assign a user, session or conversation id")
    entry = manifest.get("namespaces", {}).get(namespace)
    if entry is None:
        known = ", ".join(sorted(manifest.get("namespaces", {}))) or "none"
        raise InputError(f"no prompt for namespace {namespace!r} (namespaces: {known})")
    assignment_id = entry.get("assignment_id")
    point = assignment_point(namespace, unit_id, assignment_id) if assignment_id else None
    chosen = next(a for a in entry["arms"] if a["arm"] == CONTROL)
    if point is not None:
        for arm in entry["arms"]:
            low, high = arm["range"]
            if low <= point < high:
                chosen = arm
                break
    return Assignment(
        namespace,
        unit_id,
        assignment_id,
        point,
        chosen["arm"],
        chosen["file"],
        chosen["prompt_version"],
        tuple(chosen["skill_ids"]),
    )


def set_ranges(arms: list[dict[str, Any]]) -> None:
    """Give each arm of a namespace (dicts with ``arm`` and ``share``, in manifest order) its
    ``range`` of assignment points, in place: the arms other than control in order from 0, the
    control arm the rest up to 1 (each bound and share rounded to 6 decimals)."""
    low = 0.0
    for arm in arms:
        if arm["arm"] != CONTROL:
            high = low + float(arm["share"])
            arm["range"] = [round(low, 6), round(high, 6)]
            arm["share"] = round(float(arm["share"]), 6)
            low = high
    for arm in arms:
        if arm["arm"] == CONTROL:
            arm["range"] = [round(low, 6), 1.0]
            arm["share"] = round(1.0 - low, 6)

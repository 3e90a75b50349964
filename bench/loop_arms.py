"""Arms and assignment for the closed-loop benchmark (``bench/loop.py``): the arms of each
namespace as a prompts manifest gives them, and the arm a unit gets (the fallback that
``pipeline.experiment.assign_unit`` is checked against)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Arm:
    """One arm of a namespace as the manifest gives it, with its prompt text (``file`` None: the
    base prompt, before coach rendered one)."""

    namespace: str
    arm: str
    file: str | None
    prompt_version: str | None
    skill_ids: tuple[str, ...]
    range: tuple[float, float]
    text: str
    assignment_id: str | None = None


def assignment_point(namespace: str, unit_id: str, assignment_id: str) -> float:
    """The unit's place in [0, 1): first 8 bytes of SHA-256 over namespace, unit id and
    assignment id joined by U+001F, big-endian, / 2**64 (as ``pipeline.experiment``)."""
    key = "\x1f".join((namespace, unit_id, assignment_id)).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def manifest_arms(manifest: Mapping[str, Any], out_dir: Path) -> dict[str, list[Arm]]:
    """The arms of every namespace in a prompts manifest: its ``namespaces`` entry when there is
    one, else (a manifest from before prompt experiments) one control arm per prompt file."""
    arms: dict[str, list[Arm]] = {}
    namespaces = manifest.get("namespaces")
    if isinstance(namespaces, Mapping):
        for namespace, entry in namespaces.items():
            for arm in entry.get("arms") or []:
                low, high = arm.get("range") or (0.0, 1.0)
                text = (out_dir / arm["file"]).read_text(encoding="utf-8")
                arms.setdefault(namespace, []).append(
                    Arm(
                        namespace,
                        arm.get("arm", "control"),
                        arm["file"],
                        arm.get("prompt_version"),
                        tuple(arm.get("skill_ids") or ()),
                        (float(low), float(high)),
                        text,
                        entry.get("assignment_id"),
                    )
                )
        return arms
    for file, entry in (manifest.get("prompts") or {}).items():
        text = (out_dir / file).read_text(encoding="utf-8")
        arms[entry["namespace"]] = [
            Arm(
                entry["namespace"],
                "control",
                file,
                entry.get("prompt_version"),
                tuple(entry.get("skill_ids") or ()),
                (0.0, 1.0),
                text,
            )
        ]
    return arms


def base_arm(namespace: str, text: str) -> Arm:
    """The arm of a namespace without a prompt yet: the base prompt ``text``, no skills."""
    return Arm(namespace, "control", None, None, (), (0.0, 1.0), text)


def assign(arms: list[Arm], namespace: str, unit: str) -> Arm:
    """The arm of ``unit``: the one whose range holds its assignment point; the control arm when
    the namespace runs no experiment (no assignment id, or one arm)."""
    control = next((a for a in arms if a.arm == "control"), arms[0])
    assignment_id = control.assignment_id
    if assignment_id is None or len(arms) == 1:
        return control
    point = assignment_point(namespace, unit, assignment_id)
    for arm in arms:
        if arm.range[0] <= point < arm.range[1]:
            return arm
    return control

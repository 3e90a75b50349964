"""Deterministic assignment of units (users, sessions, conversations) to the arms of a prompt
experiment.

A unit's place in ``[0, 1)`` is the first 8 bytes of SHA-256 over ``namespace``, ``unit id`` and
``experiment id`` (UTF-8, separated by the unit separator U+001F), read as a big-endian integer
and divided by 2**64: the same unit always gets the same arm of an experiment on any machine and
in any language, different experiments split units independently, and no state is kept. The
candidate arm takes the units whose place is below its share (the hashing scheme of feature-flag
services such as Statsig and GrowthBook, with SHA-256 for a uniform spread).
"""

from __future__ import annotations

import hashlib

__all__ = ["CANDIDATE", "CONTROL", "arm_for", "assignment_point"]

CONTROL = "control"
CANDIDATE = "candidate"
_SEPARATOR = "\x1f"


def assignment_point(namespace: str, unit_id: str, experiment_id: str) -> float:
    """The unit's place in ``[0, 1)`` for this experiment (see the module docstring)."""
    key = _SEPARATOR.join((namespace, unit_id, experiment_id)).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def arm_for(namespace: str, unit_id: str, experiment_id: str, candidate_share: float) -> str:
    """``"candidate"`` when the unit's :func:`assignment_point` is below ``candidate_share``,
    else ``"control"``.

    Raises:
        ValueError: ``candidate_share`` is not within [0, 1], or ``unit_id`` is empty.
    """
    if not 0.0 <= candidate_share <= 1.0:
        raise ValueError(f"the candidate share must be within [0, 1], not {candidate_share}")
    if not unit_id:
        raise ValueError("the unit id is empty: assign a user, session or conversation id")
    point = assignment_point(namespace, unit_id, experiment_id)
    return CANDIDATE if point < candidate_share else CONTROL

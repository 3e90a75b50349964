"""Consolidation: several views of one behaviour become one candidate skill.

A behaviour that matters usually shows through several features at once, because they are
computed from the same steps: calling a write tool (``tool_called``), reaching it from each
lookup before it (``tool_order``), its argument values (``write_arg``), calling it without a
confirmation (``unconfirmed_write``). Each is tested on its own and each can be significant; as
skills they would give the prompt one line per view of the same runs.

Two candidates of one namespace and one direction are linked when

- the trajectories showing them overlap heavily: Jaccard index at least ``threshold`` (0.8);
- they are about the same action (the tool, see :func:`action_of`) and one is nested in the
  other: the overlap coefficient (share of the smaller set inside the larger) is at least
  ``threshold``; or
- both are ``tool_order`` features into the same action: one instruction per action, not one
  line per preceding tool;
- or, whatever their directions, both are values of one argument of one tool (``write_arg``):
  the choice of that argument's value is one behaviour, and the values that help are the mirror
  image of those that hurt.

Linked candidates (transitively) form a group. Its headline is the clearest pattern: a
significant one before a suggestive one, then the most specific kind of behaviour
(:data:`HEADLINE_ORDER`: what the agent chose, such as calling without a confirmation or not
retrying, before the circumstance it met, such as an error), then the smallest p-value, then
the feature id (linked patterns are shown by nearly the same runs, so their figures are close
and the wording decides). The
group becomes the headline's candidate with the others listed as corroborating patterns in
``evidence["patterns"]``. Overlaps come from the Analyzer (:attr:`pipeline.analyze.Analysis.overlaps`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

import polars as pl

from pipeline.analyze.overlap import containment, jaccard
from pipeline.skillbook import Candidate

__all__ = ["DEFAULT_THRESHOLD", "HEADLINE_ORDER", "action_of", "consolidate"]

DEFAULT_THRESHOLD = 0.8
# Feature kinds from the most to the least specific instruction (see the module docstring).
HEADLINE_ORDER = (
    "unconfirmed_write",
    "write_arg",
    "unretried_error",
    "transfer",
    "tool_called",
    "tool_order",
    "repeated_call",
    "tool_error",
)


def action_of(kind: str, subject: str | None) -> str:
    """The action a feature is about: the tool it names (``subject``; for ``write_arg`` the
    tool before ``.<arg>``); ``kind:subject`` for kinds that are not about one tool call."""
    subject = subject or ""
    if kind == "write_arg":
        return subject.partition(".")[0]
    if kind in {
        "tool_called",
        "tool_order",
        "unconfirmed_write",
        "tool_error",
        "unretried_error",
        "repeated_call",
        "transfer",
    }:
        return subject
    return f"{kind}:{subject}"


class _Groups:
    """Union-find over candidate indices."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _headline_key(cand: Candidate) -> tuple[bool, int, float, str]:
    p = cand.evidence.get("p_value")
    kind = cand.pattern_id.partition(":")[0]
    rank = HEADLINE_ORDER.index(kind) if kind in HEADLINE_ORDER else len(HEADLINE_ORDER)
    return (not cand.significant, rank, 1.0 if p is None else float(p), cand.pattern_id)


def _n_with(cand: Candidate) -> int:
    return int(cand.evidence.get("n_with") or 0)


def consolidate(
    candidates: Sequence[Candidate],
    overlaps: pl.DataFrame,
    features: Mapping[tuple[str, str], tuple[str, str | None]],
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Candidate]:
    """Merge the candidates that are views of one behaviour (see the module docstring).

    Args:
        candidates: one per (namespace, feature), evidence with ``n_with``, ``p_value`` and
            ``direction``.
        overlaps: namespace, feature_a, feature_b, n_both (int): trajectories showing both
            (pairs absent share none).
        features: (namespace, feature id) -> (kind, subject) of each candidate's feature.
        threshold: the Jaccard index and overlap coefficient at or above which two
            candidates are linked (0 < threshold <= 1).

    Returns:
        The consolidated candidates, sorted by id: a headline candidate per group, its
        evidence extended with ``patterns``: the other members as ``{"pattern_id", "kind",
        "n_with", "odds_ratio", "p_value", "overlap"}`` (overlap: Jaccard index with the
        headline, rounded to 3 places), sorted by p-value then pattern id. Candidates linked
        to nothing are returned unchanged.

    Raises:
        ValueError: ``threshold`` outside (0, 1].
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"consolidation threshold {threshold} is not in (0, 1]")
    cands = sorted(candidates, key=lambda c: c.id)
    index = {(c.namespace, c.pattern_id): i for i, c in enumerate(cands)}
    both = {
        (r["namespace"], r["feature_a"], r["feature_b"]): int(r["n_both"])
        for r in overlaps.iter_rows(named=True)
        if (r["namespace"], r["feature_a"]) in index and (r["namespace"], r["feature_b"]) in index
    }

    def shared(a: Candidate, b: Candidate) -> int:
        lo, hi = sorted((a.pattern_id, b.pattern_id))
        return both.get((a.namespace, lo, hi), 0)

    groups = _Groups(len(cands))
    by_namespace: dict[str, list[int]] = {}
    for i, c in enumerate(cands):
        by_namespace.setdefault(c.namespace, []).append(i)
    for members in by_namespace.values():
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                if _linked(cands[i], cands[j], shared(cands[i], cands[j]), features, threshold):
                    groups.union(i, j)
    grouped: dict[int, list[Candidate]] = {}
    for i, c in enumerate(cands):
        grouped.setdefault(groups.find(i), []).append(c)
    out = [_combine(group, shared, features) for group in grouped.values()]
    return sorted(out, key=lambda c: c.id)


def _linked(
    a: Candidate,
    b: Candidate,
    n_both: int,
    features: Mapping[tuple[str, str], tuple[str, str | None]],
    threshold: float,
) -> bool:
    kind_a, subject_a = features.get((a.namespace, a.pattern_id), ("", None))
    kind_b, subject_b = features.get((b.namespace, b.pattern_id), ("", None))
    if kind_a == kind_b == "write_arg" and subject_a == subject_b:
        return True
    if a.evidence.get("direction") != b.evidence.get("direction"):
        return False
    same_action = action_of(kind_a, subject_a) == action_of(kind_b, subject_b)
    if same_action and kind_a == kind_b == "tool_order":
        return True
    n_a, n_b = _n_with(a), _n_with(b)
    if jaccard(n_a, n_b, n_both) >= threshold:
        return True
    return same_action and containment(n_a, n_b, n_both) >= threshold


def _combine(
    group: Iterable[Candidate],
    shared: Callable[[Candidate, Candidate], int],
    features: Mapping[tuple[str, str], tuple[str, str | None]],
) -> Candidate:
    members = sorted(group, key=_headline_key)
    head, rest = members[0], members[1:]
    if not rest:
        return head
    patterns = [
        {
            "pattern_id": c.pattern_id,
            "kind": features.get((c.namespace, c.pattern_id), ("", None))[0],
            "n_with": _n_with(c),
            "odds_ratio": c.evidence.get("odds_ratio"),
            "p_value": c.evidence.get("p_value"),
            "overlap": round(jaccard(_n_with(head), _n_with(c), shared(head, c)), 3),
        }
        for c in rest
    ]
    return replace(head, evidence={**head.evidence, "patterns": patterns})

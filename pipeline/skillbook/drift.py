"""Evidence over time: recency-weighted effect estimates, drift, material change, near-duplicates.

Every run that tests a skill's pattern appends an *observation* to the skill: the log odds ratio
and its standard error from that run's stratified contrast (:func:`observation`). Runs usually
re-analyse overlapping data (the trace store only grows), so the observations are not
independent and cannot be pooled as a meta-analysis would. :func:`weighted_effect` therefore
*smooths* them: a weighted mean of the log odds ratios, weights ``0.5 ** (age_days /
half_life_days) / se**2`` (recency times precision), with the weighted mean of the variances as
the variance (no gain in precision from repetition, so the interval is never narrower than the
observations'). Old evidence fades rather than vanishing.

Drift (:func:`drift`): a skill whose smoothed 95% interval no longer excludes an odds ratio of 1
has *lost significance*; one whose smoothed log odds ratio has the opposite sign of the direction
it was learned with has *reversed*.

Material change (:func:`material_change`), the rule that lets a rejected or retired skill be
proposed again: the new evidence's direction differs from the direction at the decision, or the
new 95% odds-ratio interval does not overlap the interval recorded at the decision.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rapidfuzz import fuzz

__all__ = [
    "Drift",
    "WeightedEffect",
    "drift",
    "material_change",
    "near_duplicate",
    "observation",
    "pattern_identifiers",
    "weighted_effect",
]

Z95 = 1.959963984540054  # standard normal 97.5% quantile


def _days_between(earlier: str | None, later: str | None) -> float:
    """Days from ``earlier`` to ``later`` (ISO-8601); 0 when either is missing or unparsable."""
    try:
        a = datetime.fromisoformat(str(earlier).replace("Z", "+00:00"))
        b = datetime.fromisoformat(str(later).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, (b - a).total_seconds() / 86400.0)


def observation(evidence: dict[str, Any], *, at: str, inputs: str | None) -> dict[str, Any] | None:
    """One run's observation of an effect: ``{"at", "inputs_sha256", "log_or", "se",
    "odds_ratio", "ci_low", "ci_high"}``; ``se`` is recovered from the 95% Wald-type interval as
    ``(ln ci_high - ln ci_low) / (2 * 1.96)``. None when the evidence has no finite positive
    odds ratio and interval."""
    odds, low, high = (evidence.get(k) for k in ("odds_ratio", "ci_low", "ci_high"))
    if not all(
        isinstance(v, int | float) and v > 0 and math.isfinite(v) for v in (odds, low, high)
    ):
        return None
    assert isinstance(odds, int | float) and isinstance(low, int | float)
    assert isinstance(high, int | float)
    se = (math.log(high) - math.log(low)) / (2 * Z95)
    return {
        "at": at,
        "inputs_sha256": inputs,
        "log_or": round(math.log(odds), 6),
        "se": round(max(se, 1e-6), 6),
        "odds_ratio": odds,
        "ci_low": low,
        "ci_high": high,
    }


@dataclass(frozen=True)
class WeightedEffect:
    """A recency-weighted effect: log odds ratio, its standard error, the odds ratio with its 95%
    interval, and the number of observations and the sum of their recency weights."""

    log_or: float
    se: float
    n_observations: int
    weight: float

    @property
    def odds_ratio(self) -> float:
        return math.exp(self.log_or)

    @property
    def ci(self) -> tuple[float, float]:
        return math.exp(self.log_or - Z95 * self.se), math.exp(self.log_or + Z95 * self.se)

    @property
    def significant(self) -> bool:
        """True when the 95% interval excludes an odds ratio of 1."""
        low, high = self.ci
        return high < 1 or low > 1

    def as_dict(self) -> dict[str, Any]:
        low, high = self.ci
        return {
            "odds_ratio": round(self.odds_ratio, 6),
            "ci_low": round(low, 6),
            "ci_high": round(high, 6),
            "observations": self.n_observations,
            "recency_weight": round(self.weight, 6),
        }


def weighted_effect(
    observations: list[dict[str, Any]], *, now: str, half_life_days: float
) -> WeightedEffect | None:
    """Smooth ``observations`` (see :func:`observation`) into one effect, weighting each by
    ``0.5 ** (age_days / half_life_days) / se**2``; the variance is the same-weighted mean of
    the observations' variances (module docstring). None without observations.

    Raises:
        ValueError: ``half_life_days`` is not positive.
    """
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive, not {half_life_days}")
    if not observations:
        return None
    weights, recency = [], 0.0
    for obs in observations:
        r = 0.5 ** (_days_between(obs.get("at"), now) / half_life_days)
        recency += r
        weights.append(r / obs["se"] ** 2)
    total = sum(weights)
    log_or = sum(w * o["log_or"] for w, o in zip(weights, observations, strict=True)) / total
    var = sum(w * o["se"] ** 2 for w, o in zip(weights, observations, strict=True)) / total
    return WeightedEffect(log_or, math.sqrt(var), len(observations), recency)


@dataclass(frozen=True)
class Drift:
    """Why a skill no longer holds: ``reason`` is ``effect reversed`` or ``lost significance``;
    ``figures`` the smoothed effect (:meth:`WeightedEffect.as_dict`)."""

    reason: str
    figures: dict[str, Any]


def drift(direction: str | None, effect: WeightedEffect | None) -> Drift | None:
    """The drift of a skill learned with ``direction`` (``harmful``: odds ratio below 1, or
    ``helpful``) given its smoothed ``effect``; None when it still holds or nothing is known."""
    if effect is None or direction not in ("harmful", "helpful"):
        return None
    now_harmful = effect.log_or < 0
    if effect.significant and now_harmful != (direction == "harmful"):
        return Drift("effect reversed", effect.as_dict())
    if not effect.significant:
        return Drift("lost significance", effect.as_dict())
    return None


def material_change(at_decision: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """Why ``new`` evidence differs materially from the figures recorded at a rejection or
    retirement (``direction``, ``ci_low``, ``ci_high``), or None when it does not.

    Material: the direction flipped, or the two 95% odds-ratio intervals do not overlap.
    Without recorded figures nothing is material (the decision stands).
    """
    if not at_decision:
        return None
    if at_decision.get("direction") and new.get("direction") != at_decision.get("direction"):
        return f"direction changed from {at_decision['direction']} to {new.get('direction')}"
    lows = (at_decision.get("ci_low"), new.get("ci_low"))
    highs = (at_decision.get("ci_high"), new.get("ci_high"))
    if None in lows or None in highs:
        return None
    assert all(isinstance(v, int | float) for v in (*lows, *highs))
    if new["ci_high"] < at_decision["ci_low"] or new["ci_low"] > at_decision["ci_high"]:
        return (
            f"odds-ratio interval [{new['ci_low']:.2f}, {new['ci_high']:.2f}] no longer overlaps "
            f"[{at_decision['ci_low']:.2f}, {at_decision['ci_high']:.2f}] at the decision"
        )
    return None


def pattern_identifiers(pattern_id: str | None) -> frozenset[str]:
    """The names a pattern is about (tools, arguments, values), without its kind:
    ``tool_order:get_user->book_trip`` -> {get_user, book_trip}; ``write_arg:t.a=v`` ->
    {t, a, v}; ``tool_error:t:<signature>`` -> {t, <signature>}."""
    if not pattern_id or ":" not in pattern_id:
        return frozenset()
    kind, rest = pattern_id.split(":", 1)
    if kind == "tool_error":
        tool, _, signature = rest.partition(":")
        return frozenset(x for x in (tool, signature) if x)
    return frozenset(x for x in re.split(r"->|[.=]", rest) if x)


def near_duplicate(a: dict[str, Any], b: dict[str, Any], *, threshold: float) -> float | None:
    """Similarity (0-100, rapidfuzz ``token_set_ratio`` of the case-folded instructions) of two
    skills given as ``{"instruction", "pattern_id", "direction"}`` when they are near-duplicates,
    else None.

    Wording alone is not enough: "Before calling book_trip ..." and "Before calling cancel_trip
    ..." differ by one word and mean different things. So two learned skills are duplicates only
    when their patterns name the same tools and values (:func:`pattern_identifiers`) and they
    point the same way; a skill without a pattern (imported) must mention every name of the
    other's pattern. Then the wording must reach ``threshold``.
    """
    ia, ib = pattern_identifiers(a.get("pattern_id")), pattern_identifiers(b.get("pattern_id"))
    if ia and ib and ia != ib:
        return None
    if bool(ia) != bool(ib):
        names, text = (ia, b["instruction"]) if ia else (ib, a["instruction"])
        if not all(name in text for name in names):
            return None
    if a.get("direction") and b.get("direction") and a["direction"] != b["direction"]:
        return None
    score = fuzz.token_set_ratio(a["instruction"].casefold(), b["instruction"].casefold())
    return float(score) if score >= threshold else None

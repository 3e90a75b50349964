"""An always-valid test of a prompt experiment: one-sided mixture sequential probability ratio
tests (mSPRT) on the agent-stratified difference in success rate between two arms.

The experiment is read every night, so a fixed-sample p-value read again and again would reject
a true null far more often than its level. The mSPRT of Johari, Koomen, Pekelis and Walsh
("Always Valid Inference: Continuous Monitoring of A/B Tests", *Operations Research* 70(3),
2022, section 3, eq. 11 and Proposition 3) keeps its level under any number of looks: for an
estimate ``d`` of the difference with variance ``V`` and a normal mixing distribution
``N(0, tau^2)`` over the effect, the mixture likelihood ratio is

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * d^2 / (2 * V * (V + tau^2))).

A skill is promoted when it helps and rejected when it harms: two one-sided questions, so each is
tested with the mixture restricted to its side, the half-normal ``2 N(0, tau^2)`` on ``theta > 0``
(the one-sided normal mixture of Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", *Annals of Statistics* 49(2), 2021):

    Lambda+ = 2 * Lambda * Phi(d * tau / sqrt(V * (V + tau^2)))

(the posterior of ``theta`` given ``d`` is normal, and ``Phi(...)`` its mass above 0), and
``Lambda-`` the same for ``-d``. Under ``theta <= 0`` ``Lambda+`` is a nonnegative supermartingale,
so by Ville's inequality the chance that it ever reaches ``1 / alpha`` is at most ``alpha``: the
chance of ever promoting a skill that does not help is at most ``alpha``, and likewise of ever
rejecting as harmful one that does not harm. The bounds ``d - h`` and ``d + h``, with ``h`` the
shift at which ``Lambda+`` reaches ``1 / alpha``, form a ``1 - 2 alpha`` confidence sequence; the
p-value reported is the running minimum of ``1 / Lambda+`` and ``1 / Lambda-``.

``d`` here is the Mantel–Haenszel risk difference (candidate minus control) over the agents
that saw both arms, weights ``w_k = n1_k * n0_k / (n1_k + n0_k)`` (Greenland and Robins,
*Biometrics* 41, 1985), and ``V`` its variance with the pooled success rate of each stratum,
``sum(w_k * p_k * (1 - p_k)) / sum(w_k)^2`` (exact under the null of no difference, and defined
when a stratum's arms are all successes or all failures). Binary outcomes make the test
asymptotic: the normal approximation of ``d`` is what the published Optimizely implementation
uses too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEFAULT_TAU",
    "Decision",
    "Look",
    "StratumCounts",
    "confidence_sequence",
    "decide",
    "decide_estimate",
    "mixture_likelihood_ratio",
    "one_sided_likelihood_ratio",
    "risk_difference",
]

# The mixing standard deviation over the effect, in success-rate points: 0.1 puts most prior
# mass on differences up to about 20 points, the size a prompt line can plausibly make.
DEFAULT_TAU = 0.1


@dataclass(frozen=True)
class StratumCounts:
    """One agent's exposures to an experiment: trajectories and successes in each arm (counts
    of trajectories with a known outcome)."""

    control: int
    control_successes: int
    candidate: int
    candidate_successes: int

    def __post_init__(self) -> None:
        for n, s in [
            (self.control, self.control_successes),
            (self.candidate, self.candidate_successes),
        ]:
            if n < 0 or s < 0 or s > n:
                raise ValueError(f"invalid counts: {s} successes of {n} trajectories")


def risk_difference(strata: Iterable[StratumCounts]) -> tuple[float, float, int]:
    """The Mantel–Haenszel risk difference (candidate minus control success rate), its variance
    under the pooled rate of each stratum, and the trajectories in the strata that saw both arms.

    Strata missing an arm carry no within-agent contrast and are left out. Returns
    ``(0.0, 0.0, 0)`` when no stratum saw both arms, and a variance of 0.0 when every such
    stratum is all successes or all failures (then there is no evidence either way).
    """
    total_w = numerator = variance = 0.0
    exposures = 0
    for s in strata:
        if s.control == 0 or s.candidate == 0:
            continue
        n = s.control + s.candidate
        w = s.control * s.candidate / n
        pooled = (s.control_successes + s.candidate_successes) / n
        numerator += w * (s.candidate_successes / s.candidate - s.control_successes / s.control)
        variance += w * pooled * (1.0 - pooled)
        total_w += w
        exposures += n
    if total_w == 0.0:
        return 0.0, 0.0, 0
    return numerator / total_w, variance / total_w**2, exposures


def _no_evidence(variance: float, tau: float) -> bool:
    """Whether a variance of 0 leaves nothing to test; raises ValueError for a ``tau`` that is
    not positive or a negative ``variance``."""
    if tau <= 0 or variance < 0:
        raise ValueError(f"tau must be positive and variance non-negative (tau={tau})")
    return variance == 0.0


def mixture_likelihood_ratio(d: float, variance: float, tau: float = DEFAULT_TAU) -> float:
    """``Lambda`` of the normal-mixture SPRT (see the module docstring) for an estimate ``d``
    with ``variance``; 1.0 (no evidence) when the variance is 0.

    Raises:
        ValueError: ``tau`` is not positive or ``variance`` is negative.
    """
    if _no_evidence(variance, tau):
        return 1.0
    t2 = tau * tau
    exponent = t2 * d * d / (2.0 * variance * (variance + t2))
    return math.sqrt(variance / (variance + t2)) * math.exp(min(exponent, 700.0))


def _log_one_sided(d: float, variance: float, tau: float) -> float:
    """``log Lambda+`` (see the module docstring), in logs so that no step overflows."""
    from scipy.special import log_ndtr

    t2 = tau * tau
    log_two_sided = 0.5 * math.log(variance / (variance + t2)) + t2 * d * d / (
        2.0 * variance * (variance + t2)
    )
    return (
        math.log(2.0)
        + log_two_sided
        + float(log_ndtr(d * tau / math.sqrt(variance * (variance + t2))))
    )


def one_sided_likelihood_ratio(d: float, variance: float, tau: float = DEFAULT_TAU) -> float:
    """``Lambda+``: the mixture likelihood ratio of a positive effect against none, the mixing
    distribution the half-normal of scale ``tau`` (see the module docstring); for the negative
    side pass ``-d``. 1.0 (no evidence) when the variance is 0.

    Raises:
        ValueError: ``tau`` is not positive or ``variance`` is negative.
    """
    if _no_evidence(variance, tau):
        return 1.0
    return math.exp(min(_log_one_sided(d, variance, tau), 700.0))


def confidence_sequence(
    d: float, variance: float, alpha: float, tau: float = DEFAULT_TAU
) -> tuple[float, float]:
    """The always-valid bounds ``d - h`` and ``d + h`` at this look, ``h`` the shift at which the
    one-sided mixture likelihood ratio reaches ``1 / alpha`` (found by Brent's method): each
    bound fails at some look with probability at most ``alpha``, the pair is a ``1 - 2 alpha``
    confidence sequence. ``(-1.0, 1.0)`` when the variance is 0.

    Raises:
        ValueError: ``alpha`` not in (0, 1).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    if variance == 0.0:
        return -1.0, 1.0
    from scipy.optimize import brentq

    t2 = tau * tau
    target = -math.log(alpha)
    # the two-sided boundary at alpha brackets the one-sided one: there Lambda+ >= Lambda
    # = 1 / alpha, and at 0 Lambda+ = sqrt(V / (V + tau^2)) < 1 (Johari et al., Prop. 3)
    two_sided = math.sqrt(
        variance * (variance + t2) / t2 * (math.log((variance + t2) / variance) + 2 * target)
    )
    half = brentq(lambda h: _log_one_sided(h, variance, tau) - target, 0.0, two_sided, xtol=1e-12)
    return max(-1.0, d - half), min(1.0, d + half)


class Decision(StrEnum):
    """What an experiment's look decides for the skill under test."""

    CONTINUE = "continue"  # not enough evidence yet
    PROMOTE = "promote"  # the candidate arm helps: the skill becomes active
    REJECT_HARM = "reject_harm"  # the candidate arm hurts
    REJECT_FUTILE = "reject_futile"  # no effect shown within the most exposures allowed


@dataclass(frozen=True)
class Look:
    """One look at an experiment: ``difference`` (candidate minus control success rate, MH
    risk difference), its ``variance``, ``exposures`` (trajectories in strata that saw both
    arms), the always-valid ``p_value`` (the smaller one-sided p-value, running minimum over
    this and earlier looks),
    ``interval`` (the confidence sequence at this look, intersected with earlier ones) and the
    ``decision``."""

    difference: float
    variance: float
    exposures: int
    p_value: float
    interval: tuple[float, float]
    decision: Decision


def decide(
    strata: Iterable[StratumCounts],
    *,
    alpha: float = 0.05,
    tau: float = DEFAULT_TAU,
    max_exposures: int = 20_000,
    previous_p: float = 1.0,
    previous_interval: tuple[float, float] = (-1.0, 1.0),
) -> Look:
    """Look at a two-arm experiment once more: :func:`decide_estimate` on the
    :func:`risk_difference` of ``strata``.

    Raises:
        ValueError: ``alpha`` not in (0, 1) or ``max_exposures`` not positive.
    """
    d, variance, exposures = risk_difference(strata)
    return decide_estimate(
        d,
        variance,
        exposures,
        alpha=alpha,
        tau=tau,
        max_exposures=max_exposures,
        previous_p=previous_p,
        previous_interval=previous_interval,
    )


def decide_estimate(
    d: float,
    variance: float,
    exposures: int,
    *,
    alpha: float = 0.05,
    tau: float = DEFAULT_TAU,
    max_exposures: int = 20_000,
    min_effect: float = 0.0,
    previous_p: float = 1.0,
    previous_interval: tuple[float, float] = (-1.0, 1.0),
) -> Look:
    """Look once more at an asymptotically normal estimate ``d`` of a difference in success
    rate (a fraction) with ``variance``, from ``exposures`` trajectories: the always-valid
    p-value and interval so far, and the decision. ``previous_p`` and ``previous_interval``
    carry the state of earlier looks (the running minimum and the running intersection keep
    the guarantee under repeated looks).

    Promote when the interval (the running intersection of the confidence sequence, or this
    look's own interval when the two no longer meet) lies above 0 (the one-sided test of help
    rejects at ``alpha``); reject as harmful when it lies below 0 (that of harm does); reject
    as futile when the interval's upper end is below ``min_effect`` (it cannot help by that
    much; off at 0) or ``exposures >= max_exposures`` without a decision; otherwise continue.

    Raises:
        ValueError: ``alpha`` not in (0, 1), ``max_exposures`` not positive or ``min_effect``
            negative.
    """
    if not 0.0 < alpha < 1.0 or max_exposures <= 0 or min_effect < 0:
        raise ValueError(
            f"alpha must be in (0, 1), max_exposures positive and min_effect non-negative "
            f"(alpha={alpha}, max_exposures={max_exposures}, min_effect={min_effect})"
        )
    evidence = one_sided_likelihood_ratio(abs(d), variance, tau)  # of the side d points to
    p = min(previous_p, 1.0 / evidence, 1.0)
    low, high = confidence_sequence(d, variance, alpha, tau)
    interval = (max(low, previous_interval[0]), min(high, previous_interval[1]))
    if interval[0] > interval[1]:
        # the earlier looks' interval and this one's do not meet: the effect moved (drift);
        # this look's own interval is the evidence now
        interval = (low, high)
    if interval[0] > 0:
        decision = Decision.PROMOTE
    elif interval[1] < 0:
        decision = Decision.REJECT_HARM
    elif (min_effect > 0 and interval[1] < min_effect) or exposures >= max_exposures:
        decision = Decision.REJECT_FUTILE
    else:
        decision = Decision.CONTINUE
    return Look(d, variance, exposures, p, interval, decision)

"""The experiment primitives against known answers: the mixture likelihood ratio against its
defining integral, the confidence sequence against the test it inverts, the Mantel–Haenszel risk
difference by hand, the level under repeated looks and the power by simulation, and the
assignment's spread and stability."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from scipy import integrate, stats

from pipeline.experiment import (
    CANDIDATE,
    Decision,
    StratumCounts,
    arm_for,
    assignment_point,
    confidence_sequence,
    decide,
    mixture_likelihood_ratio,
    one_sided_likelihood_ratio,
    risk_difference,
)


@pytest.mark.parametrize(
    ("d", "variance", "tau"), [(0.0, 1e-3, 0.1), (0.05, 4e-4, 0.1), (-0.2, 2e-3, 0.3)]
)
def test_the_mixture_likelihood_ratio_is_its_defining_integral(
    d: float, variance: float, tau: float
) -> None:
    # Lambda = integral over theta ~ N(0, tau^2) of N(d; theta, V) / N(d; 0, V) (Johari et al.)
    def integrand(theta: float) -> float:
        ratio = math.exp((theta * d - theta * theta / 2) / variance)
        return ratio * stats.norm.pdf(theta, scale=tau)

    expected, _ = integrate.quad(integrand, -8 * tau, 8 * tau, points=[d], limit=200)
    # quad's own error bound is about 1e-10 relative here
    assert mixture_likelihood_ratio(d, variance, tau) == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize(
    ("d", "variance", "tau"), [(0.0, 1e-3, 0.1), (0.05, 4e-4, 0.1), (-0.2, 2e-3, 0.3)]
)
def test_the_one_sided_ratio_is_its_defining_integral(
    d: float, variance: float, tau: float
) -> None:
    # Lambda+ = integral over theta > 0 of N(d; theta, V) / N(d; 0, V) * 2 N(theta; 0, tau^2)
    def integrand(theta: float) -> float:
        ratio = math.exp((theta * d - theta * theta / 2) / variance)
        return ratio * 2 * stats.norm.pdf(theta, scale=tau)

    expected, _ = integrate.quad(integrand, 0, 8 * tau, points=[max(d, 0.0)], limit=200)
    assert one_sided_likelihood_ratio(d, variance, tau) == pytest.approx(expected, rel=1e-7)
    # where the data point away from the side, the one-sided ratio is below the two-sided one
    if d < 0:
        assert one_sided_likelihood_ratio(d, variance, tau) <= mixture_likelihood_ratio(
            d, variance, tau
        )


def test_the_confidence_sequence_is_the_set_the_tests_do_not_reject() -> None:
    d, variance, alpha, tau = 0.04, 5e-4, 0.05, 0.1
    low, high = confidence_sequence(d, variance, alpha, tau)
    # at the lower bound, the one-sided test of "difference <= bound" sits exactly at 1 / alpha,
    # and at the upper one that of "difference >= bound"
    assert one_sided_likelihood_ratio(d - low, variance, tau) == pytest.approx(1 / alpha, rel=1e-9)
    assert one_sided_likelihood_ratio(high - d, variance, tau) == pytest.approx(1 / alpha, rel=1e-9)
    assert low < d < high
    # one side at alpha is narrower than both sides at alpha (the two-sided mixture's bound)
    two_sided = math.sqrt(
        variance
        * (variance + tau**2)
        / tau**2
        * (math.log(1 + tau**2 / variance) - 2 * math.log(alpha))
    )
    assert high - d < two_sided
    with pytest.raises(ValueError, match="alpha"):
        confidence_sequence(d, variance, 1.5)


def test_the_risk_difference_is_mantel_haenszel() -> None:
    one = StratumCounts(control=10, control_successes=4, candidate=10, candidate_successes=7)
    d, variance, exposures = risk_difference([one])
    assert d == pytest.approx(0.3, abs=1e-12)
    assert exposures == 20
    pooled = 11 / 20
    assert variance == pytest.approx(pooled * (1 - pooled) * (1 / 10 + 1 / 10), abs=1e-12)
    two = StratumCounts(control=30, control_successes=3, candidate=10, candidate_successes=2)
    d, _, exposures = risk_difference([one, two])
    w1, w2 = 10 * 10 / 20, 30 * 10 / 40
    assert d == pytest.approx((w1 * 0.3 + w2 * (0.2 - 0.1)) / (w1 + w2), abs=1e-12)
    assert exposures == 60
    # a stratum without both arms carries no within-agent contrast
    lone = StratumCounts(control=50, control_successes=50, candidate=0, candidate_successes=0)
    assert risk_difference([one, lone]) == risk_difference([one])


def test_no_contrast_is_no_evidence() -> None:
    look = decide([StratumCounts(5, 5, 5, 5)])
    assert (look.p_value, look.decision) == (1.0, Decision.CONTINUE)
    assert decide([]).decision == Decision.CONTINUE
    with pytest.raises(ValueError, match="successes"):
        StratumCounts(3, 4, 1, 1)


def _nightly(rng: np.random.Generator, effect: float, nights: int, per_arm: int) -> list[Decision]:
    """One simulated experiment: three agents of different skill, ``per_arm`` trajectories a
    night in each arm per agent; the decision at each night's look (stopping at the first)."""
    base = np.array([0.3, 0.5, 0.7])
    totals = np.zeros((3, 4), dtype=int)
    p, interval = 1.0, (-1.0, 1.0)
    decisions = []
    for _ in range(nights):
        control = rng.binomial(per_arm, base)
        candidate = rng.binomial(per_arm, np.clip(base + effect, 0, 1))
        totals += np.stack([np.full(3, per_arm), control, np.full(3, per_arm), candidate], axis=1)
        look = decide(
            [StratumCounts(*map(int, row)) for row in totals],
            previous_p=p,
            previous_interval=interval,
        )
        p, interval = look.p_value, look.interval
        decisions.append(look.decision)
        if look.decision != Decision.CONTINUE:
            break
    return decisions


def test_the_level_holds_when_looked_at_every_night() -> None:
    rng = np.random.default_rng(20261204)
    runs = [_nightly(rng, 0.0, nights=10, per_arm=40) for _ in range(1500)]
    # alpha = 0.05 for each side; 1500 runs give a binomial standard error of 0.0056 at 0.05
    for wrong in (Decision.PROMOTE, Decision.REJECT_HARM):
        assert sum(r[-1] == wrong for r in runs) / len(runs) <= 0.05 + 2 * 0.0056


def test_a_fixed_sample_test_read_every_night_would_not_hold() -> None:
    # the reason for the sequential test: the same data, read by a z-test every night
    rng = np.random.default_rng(20261204)
    rejected = 0
    for _ in range(1500):
        base = np.array([0.3, 0.5, 0.7])
        c = t = n = 0
        for _night in range(10):
            c += rng.binomial(40, base).sum()
            t += rng.binomial(40, base).sum()
            n += 120
            pooled = (c + t) / (2 * n)
            z = (t - c) / n / math.sqrt(pooled * (1 - pooled) * 2 / n)
            if abs(z) > 1.96:
                rejected += 1
                break
    assert rejected / 1500 > 0.1


def test_a_real_effect_is_promoted_and_a_harm_rejected() -> None:
    rng = np.random.default_rng(7)
    helps = [_nightly(rng, 0.15, nights=10, per_arm=40)[-1] for _ in range(200)]
    hurts = [_nightly(rng, -0.15, nights=10, per_arm=40)[-1] for _ in range(200)]
    assert helps.count(Decision.PROMOTE) / 200 >= 0.95
    assert hurts.count(Decision.REJECT_HARM) / 200 >= 0.95
    assert Decision.PROMOTE not in hurts


def test_futility_after_the_most_exposures() -> None:
    look = decide([StratumCounts(600, 300, 600, 301)], max_exposures=1000)
    assert look.decision == Decision.REJECT_FUTILE
    assert decide([StratumCounts(600, 300, 600, 301)]).decision == Decision.CONTINUE


def test_assignment_is_stable_uniform_and_independent_across_experiments() -> None:
    # a known answer any implementation of the documented scheme must give
    key = b"domain:airline\x1fuser-42\x1fexp-1"

    expected = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    assert assignment_point("domain:airline", "user-42", "exp-1") == expected
    units = [f"user-{i}" for i in range(40_000)]
    first = [arm_for("ns", u, "exp-1", 0.2) == CANDIDATE for u in units]
    second = [arm_for("ns", u, "exp-2", 0.2) == CANDIDATE for u in units]
    assert abs(sum(first) / len(units) - 0.2) < 0.01
    both = sum(a and b for a, b in zip(first, second, strict=True)) / len(units)
    assert abs(both - 0.04) < 0.006  # independent splits: 0.2 * 0.2
    assert first == [arm_for("ns", u, "exp-1", 0.2) == CANDIDATE for u in units]
    with pytest.raises(ValueError, match="share"):
        arm_for("ns", "u", "e", 1.5)
    with pytest.raises(ValueError, match="unit id"):
        arm_for("ns", "", "e", 0.5)

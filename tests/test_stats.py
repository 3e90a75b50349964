"""pipeline.analyze.stats against textbook answers derived independently of scipy / statsmodels.

Expected values come from published examples or from the closed formulas written out here with
the standard library only (math.comb, math.erfc, statistics.NormalDist).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from pipeline.analyze import benjamini_hochberg, cmh, conditional_logit, fisher, wilson_interval

Z95 = NormalDist().inv_cdf(0.975)


# --- Fisher's exact test ------------------------------------------------------------------------


def _fisher_two_sided(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher p by enumerating the hypergeometric distribution of cell a with the
    margins fixed: the sum of the probabilities of all tables no more likely than the observed."""
    row1, col1, n = a + b, a + c, a + b + c + d

    def prob(x: int) -> float:
        return math.comb(col1, x) * math.comb(n - col1, row1 - x) / math.comb(n, row1)

    observed = prob(a)
    support = range(max(0, row1 + col1 - n), min(row1, col1) + 1)
    return sum(prob(x) for x in support if prob(x) <= observed * (1 + 1e-9))


def test_fisher_lady_tasting_tea() -> None:
    # Fisher (1935): 8 cups, 4 milk-first; she gets 3 of 4 right. Two-sided p = 34/70 = 0.4857.
    effect = fisher(3, 1, 1, 3)
    assert effect.p_value == pytest.approx(34 / 70, abs=1e-12)
    assert round(effect.p_value, 4) == 0.4857
    assert effect.p_value == pytest.approx(_fisher_two_sided(3, 1, 1, 3), abs=1e-12)
    assert effect.odds_ratio == pytest.approx(3 * 3 / (1 * 1))  # sample odds ratio a*d/(b*c)
    # Woolf interval with 0.5 added to every cell, by hand:
    # log(3.5*3.5 / (1.5*1.5)) = 1.69460, SE = sqrt(2/3.5 + 2/1.5) = 1.38013,
    # exp(1.69460 -+ 1.96*1.38013) = (0.3641, 81.42)
    assert effect.ci_low == pytest.approx(0.3641, abs=1e-4)
    assert effect.ci_high == pytest.approx(81.42, abs=1e-2)


def test_fisher_wikipedia_example() -> None:
    # Wikipedia "Fisher's exact test": [[1, 9], [11, 3]], two-tailed p = 0.002759
    effect = fisher(1, 9, 11, 3)
    assert round(effect.p_value, 6) == 0.002759
    assert effect.p_value == pytest.approx(_fisher_two_sided(1, 9, 11, 3), rel=1e-9)
    assert effect.odds_ratio == pytest.approx(1 * 3 / (9 * 11))
    assert effect.odds_ratio < 1  # the feature goes with failure
    assert effect.ci_low < effect.odds_ratio < effect.ci_high < 1


def test_fisher_perfect_separation() -> None:
    # [[5, 0], [0, 5]]: only the observed table and its mirror are this extreme,
    # p = 2 / C(10, 5) = 2/252
    effect = fisher(5, 0, 0, 5)
    assert effect.p_value == pytest.approx(2 / 252, abs=1e-12)
    assert effect.odds_ratio == math.inf
    assert math.isfinite(effect.ci_low) and math.isfinite(effect.ci_high)
    assert effect.ci_low > 1


def test_fisher_orientation_is_symmetric() -> None:
    # swapping the rows (feature present <-> absent) inverts the odds ratio, keeps p
    forward, backward = fisher(7, 3, 2, 8), fisher(2, 8, 7, 3)
    assert forward.odds_ratio == pytest.approx(7 * 8 / (3 * 2))
    assert backward.odds_ratio == pytest.approx(1 / forward.odds_ratio)
    assert backward.p_value == pytest.approx(forward.p_value)
    assert backward.ci_low == pytest.approx(1 / forward.ci_high)


# --- Wilson interval ----------------------------------------------------------------------------


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_8_of_10() -> None:
    low, high = wilson_interval(8, 10)
    expected_low, expected_high = _wilson(8, 10, Z95)
    assert low == pytest.approx(expected_low, abs=1e-9)
    assert high == pytest.approx(expected_high, abs=1e-9)
    # by hand: p = 0.8, z = 1.96, centre = (0.8 + 0.19207) / 1.38415 = 0.71674,
    # half-width = 1.96 / 1.38415 * sqrt(0.016 + 0.0096036) = 0.22658 -> 0.4902 - 0.9433
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)


@pytest.mark.parametrize(("successes", "n"), [(0, 10), (10, 10), (1, 3), (84, 200), (19, 50)])
def test_wilson_closed_formula(successes: int, n: int) -> None:
    low, high = wilson_interval(successes, n)
    expected_low, expected_high = _wilson(successes, n, Z95)
    assert low == pytest.approx(expected_low, abs=1e-9)
    assert high == pytest.approx(expected_high, abs=1e-9)
    assert 0.0 <= low <= successes / n <= high <= 1.0


def test_wilson_alpha_and_empty() -> None:
    low, high = wilson_interval(8, 10, alpha=0.10)
    expected_low, expected_high = _wilson(8, 10, NormalDist().inv_cdf(0.95))
    assert low == pytest.approx(expected_low, abs=1e-9)
    assert high == pytest.approx(expected_high, abs=1e-9)
    assert wilson_interval(8, 10)[0] < low  # a 90% interval is narrower than the 95% one
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


# --- Cochran-Mantel-Haenszel ------------------------------------------------------------------

# McDonald, Handbook of Biological Statistics (3rd ed.), CMH example: Lap94 allele in Mytilus
# trossulus at four Oregon estuaries (Gagnon et al.), rows marine / estuarine, columns
# Lap94 / other alleles. Published: chi2_MH = 5.05, 1 d.f., P = 0.025.
MUSSELS = np.array(
    [
        [[56, 40], [69, 77]],  # Tillamook
        [[61, 57], [257, 301]],  # Yaquina
        [[73, 71], [65, 79]],  # Alsea
        [[71, 55], [48, 48]],  # Umpqua
    ]
)


def _by_hand(tables: np.ndarray) -> dict[str, float]:
    """MH pooled OR, continuity-corrected CMH chi-square and p, Robins-Breslow-Greenland CI."""
    r_sum = s_sum = dev = var = 0.0
    pr = ps_qr = qs = 0.0
    for (a, b), (c, d) in tables.tolist():
        n = a + b + c + d
        r, s = a * d / n, b * c / n
        p, q = (a + d) / n, (b + c) / n
        r_sum, s_sum = r_sum + r, s_sum + s
        pr, ps_qr, qs = pr + p * r, ps_qr + p * s + q * r, qs + q * s
        dev += a - (a + b) * (a + c) / n
        var += (a + b) * (c + d) * (a + c) * (b + d) / (n * n * (n - 1))
    odds_ratio = r_sum / s_sum
    chi2 = (abs(dev) - 0.5) ** 2 / var
    se = math.sqrt(pr / (2 * r_sum**2) + ps_qr / (2 * r_sum * s_sum) + qs / (2 * s_sum**2))
    return {
        "odds_ratio": odds_ratio,
        "chi2": chi2,
        "p": math.erfc(math.sqrt(chi2 / 2)),  # chi-square(1) survival function
        "ci_low": math.exp(math.log(odds_ratio) - Z95 * se),
        "ci_high": math.exp(math.log(odds_ratio) + Z95 * se),
    }


def test_cmh_published_example() -> None:
    effect = cmh(MUSSELS)
    hand = _by_hand(MUSSELS)
    assert round(hand["chi2"], 2) == 5.05  # our hand formula reproduces the published statistic
    assert effect.odds_ratio == pytest.approx(hand["odds_ratio"], rel=1e-12)
    assert effect.p_value == pytest.approx(hand["p"], rel=1e-9)
    assert round(effect.p_value, 3) == 0.025
    assert effect.ci_low == pytest.approx(hand["ci_low"], rel=1e-6)
    assert effect.ci_high == pytest.approx(hand["ci_high"], rel=1e-6)
    assert 1 < effect.ci_low < effect.odds_ratio < effect.ci_high


def test_cmh_small_example_by_hand() -> None:
    tables = np.array(
        [
            [[4, 1], [2, 5]],
            [[6, 2], [3, 3]],
            [[2, 2], [1, 5]],
        ]
    )
    # sum(a*d/n) = 20/12 + 18/14 + 10/10 ; sum(b*c/n) = 2/12 + 6/14 + 2/10
    expected_or = (20 / 12 + 18 / 14 + 10 / 10) / (2 / 12 + 6 / 14 + 2 / 10)
    effect = cmh(tables)
    assert effect.odds_ratio == pytest.approx(expected_or, rel=1e-12)
    assert effect.p_value == pytest.approx(_by_hand(tables)["p"], rel=1e-9)
    # orientation: swapping present/absent rows gives the reciprocal odds ratio, same p
    flipped = cmh(tables[:, ::-1, :])
    assert flipped.odds_ratio == pytest.approx(1 / expected_or, rel=1e-12)
    assert flipped.p_value == pytest.approx(effect.p_value, rel=1e-9)


def test_cmh_no_strata() -> None:
    effect = cmh(np.zeros((0, 2, 2)))
    assert math.isnan(effect.odds_ratio)
    assert math.isnan(effect.ci_low) and math.isnan(effect.ci_high)
    assert effect.p_value == 1.0


# --- Benjamini-Hochberg -------------------------------------------------------------------------


def test_bh_small_list_by_hand() -> None:
    # m = 5, sorted p: 0.001, 0.012, 0.03, 0.04, 0.5
    # p*m/rank:        0.005, 0.03,  0.05, 0.05, 0.5 (already monotone)
    q = benjamini_hochberg([0.04, 0.001, 0.03, 0.5, 0.012])
    assert q.tolist() == pytest.approx([0.05, 0.005, 0.05, 0.5, 0.03], abs=1e-12)


def test_bh_step_up_monotonicity() -> None:
    # p*m/rank = 0.04 for 0.02 (rank 1) but 0.021 for 0.021 (rank 2): q = min over larger ranks
    assert benjamini_hochberg([0.02, 0.021]).tolist() == pytest.approx([0.021, 0.021], abs=1e-12)


def test_bh_benjamini_hochberg_1995_example() -> None:
    # The 15 p-values of Benjamini & Hochberg (1995, section 4); at q = 0.05 the procedure
    # rejects the four smallest.
    p = [
        0.0001,
        0.0004,
        0.0019,
        0.0095,
        0.0201,
        0.0278,
        0.0298,
        0.0344,
        0.0459,
        0.3240,
        0.4262,
        0.5719,
        0.6528,
        0.7590,
        1.000,
    ]
    expected = [
        0.0001 * 15,
        0.0004 * 15 / 2,
        0.0019 * 15 / 3,
        0.0095 * 15 / 4,
        0.0201 * 15 / 5,
        0.0298 * 15 / 7,
        0.0298 * 15 / 7,  # 0.0278*15/6 = 0.0695 is lowered to rank 7's value
        0.0344 * 15 / 8,
        0.0459 * 15 / 9,
        0.3240 * 15 / 10,
        0.4262 * 15 / 11,
        0.5719 * 15 / 12,
        0.6528 * 15 / 13,
        0.7590 * 15 / 14,
        1.0,
    ]
    order = [14, 3, 0, 9, 6, 1, 12, 4, 8, 2, 11, 5, 10, 7, 13]  # shuffled input
    q = benjamini_hochberg([p[i] for i in order])
    assert q.tolist() == pytest.approx([expected[i] for i in order], abs=1e-12)
    assert sorted(p[i] for i, qi in zip(order, q, strict=True) if qi <= 0.05) == p[:4]


def test_bh_empty() -> None:
    assert benjamini_hochberg([]).size == 0


# --- conditional logistic regression -----------------------------------------------------------


def _simulate(beta: float, seed: int, n_groups: int = 150, size: int = 4):
    """Strata with their own baseline log-odds; feature assigned at random within strata."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), size)
    baseline = rng.normal(0.0, 1.0, n_groups)[groups]
    feature = rng.integers(0, 2, n_groups * size)
    probability = 1 / (1 + np.exp(-(baseline + beta * feature)))
    outcome = (rng.random(n_groups * size) < probability).astype(int)
    return outcome, feature, groups, rng


def test_conditional_logit_on_matched_pairs_is_the_discordant_pair_ratio() -> None:
    # Textbook answer (Breslow & Day 1980, ch. 7; Agresti, Categorical Data Analysis, 3rd ed.,
    # 11.2.3): with 1:1 matched pairs and one binary exposure, the conditional maximum
    # likelihood odds ratio is n10 / n01 (pairs where only the success / only the failure is
    # exposed) with standard error sqrt(1/n10 + 1/n01) of its log. Concordant pairs carry no
    # information.
    n10, n01, n11, n00 = 30, 12, 9, 14
    outcome, feature, groups = [], [], []
    pairs = [(1, 0)] * n10 + [(0, 1)] * n01 + [(1, 1)] * n11 + [(0, 0)] * n00
    for pair, (success_exposed, failure_exposed) in enumerate(pairs):
        outcome += [1, 0]
        feature += [success_exposed, failure_exposed]
        groups += [pair, pair]
    effect = conditional_logit(np.array(outcome), np.array(feature), np.array(groups), None)
    se = math.sqrt(1 / n10 + 1 / n01)
    # the fit is Newton-polished to a step of 1e-12 and its Hessian taken by central
    # differences (noise ~1e-9 relative): 1e-7 bounds both with room, and a forward-difference
    # Hessian or a BFGS stop at gtol 1e-5 (errors ~1e-6 to 1e-4) would fail it
    assert effect.odds_ratio == pytest.approx(n10 / n01, rel=1e-7)
    assert effect.ci_low == pytest.approx(math.exp(math.log(n10 / n01) - 1.96 * se), rel=1e-7)
    assert effect.ci_high == pytest.approx(math.exp(math.log(n10 / n01) + 1.96 * se), rel=1e-7)
    z = math.log(n10 / n01) / se
    assert effect.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-7)


def test_conditional_logit_recovers_strong_positive_effect() -> None:
    outcome, feature, groups, _ = _simulate(beta=math.log(4.0), seed=0)
    effect = conditional_logit(outcome, feature, groups, None)
    assert effect.odds_ratio > 1
    assert effect.ci_low < 4.0 < effect.ci_high
    assert effect.ci_low > 1
    assert effect.p_value < 1e-6


def test_conditional_logit_negative_effect_and_covariates() -> None:
    outcome, feature, groups, rng = _simulate(beta=-math.log(4.0), seed=1)
    effect = conditional_logit(outcome, feature, groups, None)
    assert effect.odds_ratio < 1
    assert effect.ci_low < 0.25 < effect.ci_high < 1
    assert effect.p_value < 1e-6
    noise = rng.integers(0, 2, (outcome.size, 1))  # an irrelevant covariate changes little
    adjusted = conditional_logit(outcome, feature, groups, noise)
    assert adjusted.odds_ratio < 1
    assert adjusted.p_value < 1e-6


def _rows(a: int, b: int, c: int, d: int) -> tuple[list[int], list[int]]:
    """Individual (outcome, feature) rows of a 2x2 table [[a, b], [c, d]]."""
    outcome = [1] * a + [0] * b + [1] * c + [0] * d
    feature = [1] * (a + b) + [0] * (c + d)
    return outcome, feature


def test_conditional_logit_ignores_between_strata_confounding() -> None:
    # Ten "easy" strata [[8, 2], [4, 1]] (80% success, feature used 2/3 of the time) and ten
    # "hard" strata [[1, 4], [2, 8]] (20% success, feature used 1/3 of the time). Within every
    # stratum the odds ratio is exactly 1 (8*1 = 2*4, 1*8 = 4*2) and a = E[a] at OR 1
    # (10*12/15 = 8, 5*3/15 = 1), so the conditional MLE is OR = 1. Pooled over strata the
    # table is [[90, 60], [60, 90]]: OR = 2.25, a spurious association.
    outcome: list[int] = []
    feature: list[int] = []
    groups: list[int] = []
    for stratum in range(20):
        cells = (8, 2, 4, 1) if stratum < 10 else (1, 4, 2, 8)
        rows_outcome, rows_feature = _rows(*cells)
        outcome += rows_outcome
        feature += rows_feature
        groups += [stratum] * len(rows_outcome)
    pooled = fisher(90, 60, 60, 90)
    assert pooled.odds_ratio == pytest.approx(2.25)
    assert pooled.p_value < 0.01
    effect = conditional_logit(np.array(outcome), np.array(feature), np.array(groups), None)
    assert effect.odds_ratio == pytest.approx(1.0, abs=1e-6)
    assert effect.ci_low < 1 < effect.ci_high
    assert effect.p_value == pytest.approx(1.0, abs=1e-6)


def test_conditional_logit_without_informative_strata() -> None:
    groups = np.repeat(np.arange(20), 4)
    feature = np.tile([0, 1, 0, 1], 20)
    # the outcome never varies within a stratum
    outcome = np.repeat(np.arange(20) % 2, 4)
    effect = conditional_logit(outcome, feature, groups, None)
    assert math.isnan(effect.odds_ratio)
    assert math.isnan(effect.ci_low) and math.isnan(effect.ci_high)
    assert effect.p_value == 1.0
    # the feature never varies within a stratum
    effect = conditional_logit(
        np.tile([0, 1, 0, 1], 20), np.repeat(np.arange(20) % 2, 4), groups, None
    )
    assert math.isnan(effect.odds_ratio)
    assert effect.p_value == 1.0

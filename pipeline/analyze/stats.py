"""Statistical tests used by the Analyzer, thin wrappers over scipy and statsmodels.

Sources:
- Wilson score interval: Wilson (1927), via ``statsmodels.stats.proportion.proportion_confint``.
- Fisher's exact test: ``scipy.stats.fisher_exact`` (two-sided).
- Cochran–Mantel–Haenszel test and Mantel–Haenszel pooled odds ratio with the Robins–Breslow–
  Greenland variance: Agresti, *Categorical Data Analysis* (3rd ed.) §6.4, via
  ``statsmodels.stats.contingency_tables.StratifiedTable``.
- Conditional logistic regression (strata as groups): Breslow & Day (1980), via
  ``statsmodels.discrete.conditional_models.ConditionalLogit`` (its exact score), fitted by
  statsmodels' BFGS and then polished by Newton steps on a central-difference Hessian of that
  score, so the estimate and its standard error are the same to about 1e-9 on any CPU (BFGS
  alone stops at a gradient of 1e-5, along a path that BLAS rounding steers).
- Benjamini–Hochberg false discovery rate: Benjamini & Hochberg (1995), via
  ``statsmodels.stats.multitest.multipletests(method="fdr_bh")``.
- Runs needed (:func:`runs_needed`): the usual normal-approximation sample size of a
  two-sided Wald test of a log odds ratio, n = n0 * ((z_(1-a/2) + z_power) * SE0 / |log OR|)^2,
  with SE0 read off today's 95% interval (standard errors shrink as 1/sqrt(n)).

A 2x2 table here is ``[[a, b], [c, d]]``: rows = feature present / absent, columns = success /
failure, so an odds ratio above 1 means the feature goes with success.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# scipy and statsmodels are imported inside the functions that use them: they take about a
# second to import, which a command that tests nothing (a re-run with nothing new, ``coach
# skills list``) should not pay.

__all__ = [
    "Effect",
    "benjamini_hochberg",
    "cmh",
    "conditional_logit",
    "fisher",
    "runs_needed",
    "wilson_interval",
]


@dataclass(frozen=True)
class Effect:
    """An odds ratio with its 95% confidence interval and two-sided p-value.

    ``odds_ratio`` may be 0 or ``inf`` and the interval NaN where the data cannot bound it.
    """

    odds_ratio: float
    ci_low: float
    ci_high: float
    p_value: float


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (NaNs for ``n == 0``)."""
    if n == 0:
        return math.nan, math.nan
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return float(low), float(high)


def fisher(a: int, b: int, c: int, d: int) -> Effect:
    """Fisher's exact test on ``[[a, b], [c, d]]``; the interval is Woolf's (log odds ratio
    +- 1.96 SE with 0.5 added to every cell), NaN-free."""
    from scipy.stats import fisher_exact

    result = fisher_exact([[a, b], [c, d]])
    ha, hb, hc, hd = a + 0.5, b + 0.5, c + 0.5, d + 0.5
    log_or = math.log(ha * hd / (hb * hc))
    se = math.sqrt(1 / ha + 1 / hb + 1 / hc + 1 / hd)
    return Effect(
        float(result.statistic),
        math.exp(log_or - 1.96 * se),
        math.exp(log_or + 1.96 * se),
        float(result.pvalue),
    )


def cmh(tables: np.ndarray) -> Effect:
    """Cochran–Mantel–Haenszel test (continuity-corrected) of conditional independence over
    strata, with the Mantel–Haenszel pooled odds ratio and its 95% interval.

    Args:
        tables: array of shape (K, 2, 2), one 2x2 table per stratum (see module docstring).
            Strata where the feature or the outcome does not vary carry no information and should
            be left out by the caller; with none left the result is ``Effect(nan, nan, nan, 1.0)``.
    """
    tables = np.asarray(tables, dtype=float)
    if tables.shape[0] == 0:
        return Effect(math.nan, math.nan, math.nan, 1.0)
    from statsmodels.stats.contingency_tables import StratifiedTable

    table = StratifiedTable(np.transpose(tables, (1, 2, 0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        odds_ratio = float(table.oddsratio_pooled)
        try:
            low, high = table.oddsratio_pooled_confint()
        except (ZeroDivisionError, FloatingPointError, ValueError):
            low, high = math.nan, math.nan
        p_value = float(table.test_null_odds(correction=True).pvalue)
    if not math.isfinite(p_value):
        p_value = 1.0
    return Effect(odds_ratio, float(low), float(high), p_value)


def conditional_logit(
    outcome: np.ndarray, feature: np.ndarray, groups: np.ndarray, covariates: np.ndarray | None
) -> Effect:
    """Odds ratio of ``feature`` on ``outcome`` from conditional logistic regression with one
    stratum per distinct ``groups`` value, adjusted for ``covariates``; Wald interval and p-value.

    Args:
        outcome: (n,) 0/1 success. feature: (n,) 0/1. groups: (n,) stratum labels.
        covariates: (n, k) numeric adjustment columns (e.g. agent indicators), or ``None``.

    Returns ``Effect(nan, nan, nan, 1.0)`` when the model cannot be fitted (no informative
    stratum, or separation).
    """
    from statsmodels.discrete.conditional_models import ConditionalLogit

    exog = feature.reshape(-1, 1).astype(float)
    if covariates is not None and covariates.size:
        exog = np.column_stack([exog, covariates.astype(float)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = ConditionalLogit(outcome.astype(float), exog, groups=groups)
            fit = model.fit(disp=0, skip_hessian=True)
            params, hessian = _newton_polish(model.score, np.asarray(fit.params, dtype=float))
            se = float(math.sqrt(-np.linalg.inv(hessian)[0, 0]))
        except (np.linalg.LinAlgError, ValueError, ZeroDivisionError, FloatingPointError):
            return Effect(math.nan, math.nan, math.nan, 1.0)
    beta = float(params[0])
    if not (math.isfinite(beta) and math.isfinite(se) and se > 0 and se < 20):
        return Effect(math.nan, math.nan, math.nan, 1.0)
    from scipy.stats import norm

    p_value = float(2 * norm.sf(abs(beta / se)))
    return Effect(
        math.exp(beta),
        math.exp(beta - 1.96 * se),
        math.exp(beta + 1.96 * se),
        p_value if math.isfinite(p_value) else 1.0,
    )


def _newton_polish(
    score: Callable[[np.ndarray], np.ndarray], params: np.ndarray, max_steps: int = 25
) -> tuple[np.ndarray, np.ndarray]:
    """Newton steps from ``params`` on the log-likelihood whose exact gradient is ``score``,
    with its Hessian by central differences of ``score`` (error about 1e-10 relative, against
    1e-7 for forward differences); stops when a step moves no parameter by more than 1e-12
    (relative). Returns the parameters and the Hessian there (symmetrised).

    Raises:
        LinAlgError: the Hessian is singular. ValueError: a step is not finite (separation).
    """
    from statsmodels.tools.numdiff import approx_fprime

    def hessian_at(x: np.ndarray) -> np.ndarray:
        h = np.atleast_2d(approx_fprime(x, score, centered=True))
        return (h + h.T) / 2

    for _ in range(max_steps):
        hessian = hessian_at(params)
        step = np.linalg.solve(hessian, score(params))
        if not np.all(np.isfinite(step)):
            raise ValueError("Newton step is not finite")
        params = params - step
        if np.max(np.abs(step)) <= 1e-12 * (1.0 + np.max(np.abs(params))):
            break
    return params, hessian_at(params)


def benjamini_hochberg(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), same order as the input."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    from statsmodels.stats.multitest import multipletests

    return np.asarray(multipletests(p, method="fdr_bh")[1], dtype=float)


def runs_needed(effect: Effect, n: int, fdr: float, n_tests: int) -> int | None:
    """Labelled runs needed for an effect of this size to pass a Bonferroni-like bar at ``fdr``
    (two-sided level ``fdr / n_tests``) with 80% power, scaling today's standard error (read
    off the 95% interval of ``effect``, on the log odds scale) by 1/sqrt(n): a planning
    estimate for ``n`` labelled runs today.

    Returns None when the interval is unbounded or touches 0, the odds ratio is 1 (no effect
    to detect), or more than 100 times today's runs would be needed (beyond that the estimate
    means "no effect in sight", not a plan); also None when ``n`` runs would do already.
    """
    if not (math.isfinite(effect.ci_low) and math.isfinite(effect.ci_high)) or effect.ci_low <= 0:
        return None
    log_or = math.log(effect.odds_ratio) if effect.odds_ratio > 0 else 0.0
    se = (math.log(effect.ci_high) - math.log(effect.ci_low)) / (2 * 1.96)
    if log_or == 0 or se <= 0:
        return None
    from scipy.stats import norm

    z_needed = norm.ppf(1 - fdr / (2 * max(n_tests, 1))) + norm.ppf(0.8)
    factor = (z_needed * se / abs(log_or)) ** 2
    return int(math.ceil(n * factor)) if 1 < factor <= 100 else None

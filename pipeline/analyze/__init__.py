"""The analysis stage: contrast successful and failed trajectories, within the same kind of task.

``Analyzer(config).run(traces) -> Analysis`` (plain data, no open connection).

For every behaviour feature (:func:`derive_features`) and every namespace (one per domain,
``global`` where the domain is unknown) the Analyzer computes support, success rates with Wilson
intervals, a naive contrast (Fisher's exact test) and a **stratified** contrast that compares
trajectories of the same task only. How a namespace is stratified is a :class:`Stratification`
(:func:`units_and_strata`):

- tasks repeat (at least half of the labelled runs share a task with another run): strata are
  task keys (:func:`task_keys`); where several agents appear inside the strata, conditional
  logistic regression with one indicator per agent (``method = clogit``), otherwise the
  Cochran–Mantel–Haenszel test (``method = cmh``);
- tasks do not repeat: strata are the agents, CMH; with a single agent the namespace (the kind
  of task) is the one stratum and the test is Fisher's exact test (``method = fisher``).

``min_strata`` (fewest informative strata) applies to task strata only: a contrast resting on
one or two tasks is not reported as an effect (:func:`reported_effect`).

Benjamini–Hochberg q-values are taken over every feature tested in the run, naive and stratified
separately. A feature is ``significant`` when its stratified q is below ``fdr`` and the strata are
tasks; ``suggestive`` when its stratified p is below 0.05 but q is not, or when q is below ``fdr``
but tasks do not repeat (a contrast within a domain cannot rule out confounding by task, so it is
proposed for a person to review and never activated automatically); ``confounded`` when only
the naive contrast is significant (a diagnostic: the association lives between tasks, not
within them); otherwise ``not_significant``. Failed trajectories are grouped into clusters by
shared signature.

Parts: :mod:`~pipeline.analyze.features` (feature SQL), :mod:`~pipeline.analyze.tasks` (task
alignment), :mod:`~pipeline.analyze.strata` (units, strata, the stratified tests),
:mod:`~pipeline.analyze.queries` (DuckDB counting over the feature table),
:mod:`~pipeline.analyze.stats` (the tests), :mod:`~pipeline.analyze.analyzer` (Analyzer,
Analysis). Other modules import them from here only.

:mod:`~pipeline.analyze.instead` tells, for a skill, what runs that went the other way did
instead, when the action goes wrong, and exemplars (:func:`alternatives`).
"""

from __future__ import annotations

from pipeline.analyze.analyzer import ANALYSIS_FILES, RESULT_COLUMNS, Analysis, Analyzer
from pipeline.analyze.features import (
    DIAGNOSTIC_KINDS,
    FeatureConfig,
    create_feature_table,
    derive_features,
    error_signature,
    feature_sql,
)
from pipeline.analyze.instead import Action, Target, alternatives
from pipeline.analyze.stats import (
    Effect,
    benjamini_hochberg,
    cmh,
    conditional_logit,
    fisher,
    runs_needed,
    wilson_interval,
)
from pipeline.analyze.strata import (
    StrataKind,
    Stratification,
    reported_effect,
    stratified_contrast,
    units_and_strata,
)
from pipeline.analyze.tasks import task_keys
from pipeline.config import AnalyzerConfig

__all__ = [
    "ANALYSIS_FILES",
    "DIAGNOSTIC_KINDS",
    "RESULT_COLUMNS",
    "Action",
    "Analysis",
    "Analyzer",
    "AnalyzerConfig",
    "Effect",
    "FeatureConfig",
    "StrataKind",
    "Stratification",
    "Target",
    "alternatives",
    "benjamini_hochberg",
    "cmh",
    "conditional_logit",
    "create_feature_table",
    "derive_features",
    "error_signature",
    "feature_sql",
    "fisher",
    "reported_effect",
    "runs_needed",
    "stratified_contrast",
    "task_keys",
    "units_and_strata",
    "wilson_interval",
]

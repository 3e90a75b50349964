"""Analyzer: contrast successful and failed trajectories, within the same kind of task.

For every behaviour feature (:mod:`pipeline.features`) and every namespace (one per domain,
``global`` where the domain is unknown) the Analyzer computes support, success rates with Wilson
intervals, a naive contrast (Fisher's exact test) and a **stratified** contrast that compares
trajectories of the same task only:

- tasks repeat (at least half of the labelled runs share a task with another run): strata are
  task keys (:mod:`pipeline.tasks`); where several agents appear inside the strata, conditional
  logistic regression with one indicator per agent (``method = clogit``), otherwise the
  Cochran–Mantel–Haenszel test (``method = cmh``);
- tasks do not repeat: strata are the agents, CMH; with a single agent the namespace (the kind
  of task) is the one stratum and the test is Fisher's exact test (``method = fisher``).

``min_strata`` (fewest informative strata) applies to task strata only: a contrast resting on
one or two tasks is not reported as an effect.

Benjamini–Hochberg q-values are taken over every feature tested in the run, naive and stratified
separately. A feature is ``significant`` when its stratified q is below ``fdr`` and the strata are
tasks; ``suggestive`` when its stratified p is below 0.05 but q is not, or when q is below ``fdr``
but tasks do not repeat (a contrast within a domain cannot rule out confounding by task, so it is
proposed for a person to review and never activated automatically); ``confounded`` when only
the naive contrast is significant (a diagnostic: the association lives between tasks, not
within them); otherwise ``not_significant``. Failed trajectories are grouped into clusters by
shared signature.

The units, strata, per-stratum counting queries and failure clusters live in
:mod:`pipeline.strata`; ``_units`` and ``_stratified`` are re-exported here, and
:class:`AnalyzerConfig` from :mod:`pipeline.config` (where it is kept free of the analysis stack).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import polars as pl

from pipeline.config import AnalyzerConfig
from pipeline.features import create_feature_table
from pipeline.ingest import Traces
from pipeline.stats import (
    Effect,
    benjamini_hochberg,
    fisher,
    wilson_interval,
)
from pipeline.strata import (
    _cmh_from_counts,
    _example_pointers,
    _failure_clusters,
    _positions,
    _runs_needed,
    _strata_counts,
    _stratified,
    _unit_index,
    _units,
)

__all__ = ["Analysis", "Analyzer", "AnalyzerConfig", "RESULT_COLUMNS"]

RESULT_COLUMNS = (
    "namespace",
    "feature_id",
    "kind",
    "subject",
    "detail",
    "n_with",
    "n_without",
    "successes_with",
    "successes_without",
    "rate_with",
    "rate_with_low",
    "rate_with_high",
    "rate_without",
    "rate_without_low",
    "rate_without_high",
    "lift",
    "odds_ratio",
    "ci_low",
    "ci_high",
    "p_value",
    "q_value",
    "naive_odds_ratio",
    "naive_p_value",
    "naive_q_value",
    "method",
    "stratification",
    "n_strata",
    "runs_needed",
    "status",
)


@dataclass
class Analysis:
    """What the Analyzer found.

    - ``results``: one row per tested (namespace, feature), columns :data:`RESULT_COLUMNS`:
      counts (int64), rates and their Wilson 95% bounds (float64), ``lift`` = rate_with /
      rate_without, stratified ``odds_ratio`` with 95% ``ci_low``/``ci_high``, ``p_value``,
      ``q_value`` (BH), the naive Fisher figures, ``method`` (cmh/clogit), ``stratification``
      (text), ``n_strata`` (informative strata), ``runs_needed`` (approximate number of labelled
      runs for a non-significant effect of the size seen to reach significance; null where
      the interval is unbounded or the effect is significant already) and ``status``.
    - ``features``: example pointers, not the whole feature table: for every (namespace,
      feature, outcome) among the labelled trajectories, the first
      ``config.examples_per_feature`` trajectories by id that show the feature, with the
      columns of :func:`pipeline.features.derive_features` (trajectory_id, feature_id, kind,
      step_idx int64, subject, detail), sorted by feature id and trajectory id. At most
      2 x ``examples_per_feature`` rows per (namespace, feature), whatever the number of
      trajectories; what :meth:`examples` reads and what ``features.parquet`` holds.
    - ``units``: one row per labelled trajectory: trajectory_id, namespace, stratum, agent,
      success (bool).
    - ``clusters``: failure clusters: namespace, signature, size, share (of the namespace's
      failures), example_ids (list[str]).
    - ``untested``: number of (namespace, feature) pairs below ``min_support``.
    - ``namespaces``: for each namespace with labelled runs, how its contrasts were stratified,
      or why it was not tested (every labelled run has the same outcome).
    - ``store``: the Analyzer's DuckDB connection, holding the whole feature table as the temp
      table ``features`` (columns as above, every labelled and unlabelled trajectory);
      ``None`` for an analysis loaded from disk. :meth:`showing` and :meth:`examples` beyond
      the kept pointers query it.
    """

    results: pl.DataFrame
    features: pl.DataFrame
    units: pl.DataFrame
    clusters: pl.DataFrame
    untested: int = 0
    config: AnalyzerConfig = field(default_factory=AnalyzerConfig)
    namespaces: dict[str, str] = field(default_factory=dict)
    store: duckdb.DuckDBPyConnection | None = field(default=None, repr=False, compare=False)

    def examples(
        self, namespace: str, feature_id: str, *, success: bool | None, limit: int = 5
    ) -> list[tuple[str, int | None]]:
        """Up to ``limit`` (trajectory_id, step_idx) pointers of trajectories in ``namespace``
        showing ``feature_id``, restricted to the given outcome unless ``success`` is None;
        sorted by trajectory id. Read from :attr:`features`; a ``limit`` above
        ``config.examples_per_feature`` is answered from :attr:`store` when there is one (else
        at most ``examples_per_feature`` pointers per outcome are known)."""
        units = self.units.filter(pl.col("namespace") == namespace)
        if success is not None:
            units = units.filter(pl.col("success") == success)
        if self.store is not None and limit > self.config.examples_per_feature:
            shown = self.store.sql(
                "select trajectory_id, step_idx from features where feature_id = ?",
                params=[feature_id],
            ).pl()
        else:
            shown = self.features.filter(pl.col("feature_id") == feature_id)
        rows = (
            shown.join(units.select("trajectory_id"), on="trajectory_id")
            .sort("trajectory_id")
            .head(limit)
        )
        return list(zip(rows["trajectory_id"].to_list(), rows["step_idx"].to_list(), strict=True))

    def showing(self, feature_id: str, trajectory_ids: Iterable[str]) -> set[str]:
        """Those of ``trajectory_ids`` that show ``feature_id``: exact from :attr:`store`;
        for an analysis loaded from disk (no store), only the kept example pointers are known,
        so trajectories beyond them are reported as not showing it."""
        ids = list(dict.fromkeys(trajectory_ids))
        if self.store is None:
            hits = self.features.filter(
                (pl.col("feature_id") == feature_id) & pl.col("trajectory_id").is_in(ids)
            )
            return set(hits["trajectory_id"].to_list())
        store = self.store
        store.register("wanted", pl.DataFrame({"trajectory_id": ids}, schema=_ID).to_arrow())
        found = store.sql(
            "select distinct f.trajectory_id from features f join wanted using (trajectory_id) "
            "where f.feature_id = ?",
            params=[feature_id],
        ).fetchall()
        store.unregister("wanted")
        return {row[0] for row in found}


_ID = {"trajectory_id": pl.String}

# The kind, subject and detail of a feature as shown by its first trajectory (by id).
_FIRST = (
    ", ".join(f"arg_min_null(f.{c}, f.trajectory_id) as {c}" for c in ("kind", "subject", "detail"))
    + ","
)


class Analyzer:
    """Runs the contrasts described in the module docstring.

    ``Analyzer(config).run(traces) -> Analysis``.
    """

    def __init__(self, config: AnalyzerConfig | None = None) -> None:
        self.config = config or AnalyzerConfig()

    def run(self, traces: Traces) -> Analysis:
        """Analyse ``traces`` (see :class:`Analysis` for the result's shape).

        The long feature table stays in DuckDB (:func:`pipeline.features.create_feature_table`);
        what comes back to Python is one row per (namespace, feature), the per-stratum 2x2
        counts of the tested features in namespaces stratified by CMH (integers), the
        per-feature trajectory positions in namespaces stratified by conditional logistic
        regression, and the example pointers.
        """
        cfg = self.config
        con = traces.connect(memory_limit=cfg.memory_limit, threads=cfg.threads)
        create_feature_table(con, cfg.features)
        units, strategies = _units(traces, cfg)
        index = _unit_index(units)
        con.register("unit_index", index.to_arrow())
        totals = con.sql(f"""
            select u.namespace, f.feature_id, {_FIRST} count(*) as n_with, sum(u.y) as s_with
            from features f join unit_index u using (trajectory_id)
            group by u.namespace, f.feature_id order by u.namespace, f.feature_id
        """).pl()
        # per-stratum counts for the features the CMH path will test
        by_cmh = [
            n
            for n, how in strategies.items()
            if not how.startswith("not tested") and "adjusted for agent" not in how
        ]
        sizes = index.group_by("namespace").agg(pl.len().alias("units"))
        wanted = totals.join(sizes, on="namespace").filter(
            pl.col("namespace").is_in(by_cmh)
            & (pl.min_horizontal("n_with", pl.col("units") - pl.col("n_with")) >= cfg.min_support)
        )
        strata_counts = _strata_counts(con, wanted)
        rows: list[dict[str, object]] = []
        untested = 0
        by_namespace = {n: g for (n,), g in totals.group_by(["namespace"], maintain_order=True)}
        for (namespace,), group in units.group_by(["namespace"], maintain_order=True):
            if strategies[namespace].startswith("not tested"):
                continue
            use_clogit = "adjusted for agent" in strategies[namespace]
            by_task = strategies[namespace].startswith("task")
            counts = by_namespace.get(namespace, totals.clear())
            y = group["success"].to_numpy().astype(int)
            strata = group["stratum"].to_numpy()
            agents = group["agent"].to_numpy()
            codes, inverse = np.unique(strata, return_inverse=True)
            stratum_n = np.bincount(inverse, minlength=len(codes))
            stratum_s = np.bincount(inverse, weights=y, minlength=len(codes)).astype(int)
            one_stratum = len(codes) == 1
            for feature in counts.iter_rows(named=True):
                feature_id = feature["feature_id"]
                n_with = int(feature["n_with"])
                n_without = len(y) - n_with
                if min(n_with, n_without) < cfg.min_support:
                    untested += 1
                    continue
                s_with = int(feature["s_with"])
                s_without = int(y.sum()) - s_with
                naive = fisher(s_with, n_with - s_with, s_without, n_without - s_without)
                if use_clogit:
                    x = np.zeros(len(y), dtype=int)
                    x[_positions(con, namespace, feature_id)] = 1
                    effect, n_strata, method = _stratified(x, y, strata, agents, use_clogit)
                else:
                    effect, n_strata = _cmh_from_counts(
                        *strata_counts[(namespace, feature_id)], stratum_n, stratum_s
                    )
                    method = "cmh"
                if not by_task and one_stratum:
                    # one agent and no repeated tasks: the namespace is the one stratum, and
                    # Fisher's exact test is the within-stratum test
                    effect, method = naive, "fisher"
                elif by_task and n_strata < cfg.min_strata:
                    effect = Effect(math.nan, math.nan, math.nan, 1.0)
                rate_with, rate_without = s_with / n_with, s_without / n_without
                first = feature
                rows.append(
                    {
                        "namespace": namespace,
                        "feature_id": feature_id,
                        "kind": first["kind"],
                        "subject": first["subject"],
                        "detail": first["detail"],
                        "n_with": n_with,
                        "n_without": n_without,
                        "successes_with": s_with,
                        "successes_without": s_without,
                        "rate_with": rate_with,
                        "rate_without": rate_without,
                        **dict(
                            zip(
                                ("rate_with_low", "rate_with_high"),
                                wilson_interval(s_with, n_with),
                                strict=True,
                            )
                        ),
                        **dict(
                            zip(
                                ("rate_without_low", "rate_without_high"),
                                wilson_interval(s_without, n_without),
                                strict=True,
                            )
                        ),
                        "lift": rate_with / rate_without if rate_without > 0 else math.inf,
                        "odds_ratio": effect.odds_ratio,
                        "ci_low": effect.ci_low,
                        "ci_high": effect.ci_high,
                        "p_value": effect.p_value,
                        "naive_odds_ratio": naive.odds_ratio,
                        "naive_p_value": naive.p_value,
                        "method": method,
                        "stratification": strategies[namespace],
                        "n_strata": n_strata,
                    }
                )
        results = self._finish(rows)
        clusters = _failure_clusters(con, units)
        pointers = _example_pointers(con, cfg.examples_per_feature)
        return Analysis(results, pointers, units, clusters, untested, cfg, strategies, con)

    def _finish(self, rows: list[dict[str, object]]) -> pl.DataFrame:
        cfg = self.config
        if not rows:
            return pl.DataFrame(schema={c: pl.String for c in RESULT_COLUMNS}).clear()
        frame = pl.DataFrame(rows, infer_schema_length=None)
        frame = frame.with_columns(
            pl.Series("q_value", benjamini_hochberg(frame["p_value"].to_numpy())),
            pl.Series("naive_q_value", benjamini_hochberg(frame["naive_p_value"].to_numpy())),
        )
        n_tests = frame.height
        needed = [
            _runs_needed(
                Effect(r["odds_ratio"], r["ci_low"], r["ci_high"], r["p_value"]),
                r["n_with"] + r["n_without"],
                cfg.fdr,
                n_tests,
            )
            if r["q_value"] >= cfg.fdr
            else None
            for r in frame.iter_rows(named=True)
        ]
        frame = frame.with_columns(pl.Series("runs_needed", needed, dtype=pl.Int64))
        frame = frame.with_columns(
            pl.when(
                (pl.col("q_value") < cfg.fdr) & pl.col("stratification").str.starts_with("task")
            )
            .then(pl.lit("significant"))
            .when(pl.col("p_value") < 0.05)
            .then(pl.lit("suggestive"))
            .when(pl.col("naive_q_value") < cfg.fdr)
            .then(pl.lit("confounded"))
            .otherwise(pl.lit("not_significant"))
            .alias("status")
        )
        return frame.select(RESULT_COLUMNS).sort("namespace", "q_value", "feature_id")

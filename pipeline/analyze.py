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
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import polars as pl

from pipeline.features import FeatureConfig, create_feature_table
from pipeline.ingest import Traces
from pipeline.stats import (
    Effect,
    benjamini_hochberg,
    cmh,
    conditional_logit,
    fisher,
    wilson_interval,
)
from pipeline.tasks import task_keys

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


@dataclass(frozen=True)
class AnalyzerConfig:
    """Analyzer settings.

    ``min_support``: fewest trajectories with, and without, a feature for it to be tested.
    ``fdr``: false discovery rate level for q-values. ``min_strata``: fewest informative strata
    (both outcomes and both feature values present) for a stratified test.
    ``align_tasks``: align task ids across datasets (:func:`pipeline.tasks.task_keys`).
    ``examples_per_feature``: example pointers kept in :attr:`Analysis.features` per
    (namespace, feature, outcome). ``memory_limit`` (DuckDB size text, ``None`` for DuckDB's
    default of 80% of RAM) and ``threads`` (``None``: one per core): the DuckDB connection the
    features are derived and counted in (:meth:`pipeline.ingest.Traces.connect`); past the
    limit DuckDB spills to a temp directory.
    """

    min_support: int = 10
    fdr: float = 0.05
    min_strata: int = 3
    align_tasks: bool = True
    features: FeatureConfig = field(default_factory=FeatureConfig)
    examples_per_feature: int = 20
    memory_limit: str | None = "512MB"
    threads: int | None = None


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


def _namespace(domain: str | None) -> str:
    return f"domain:{domain}" if domain else "global"


def _units(traces: Traces, config: AnalyzerConfig) -> tuple[pl.DataFrame, dict[str, str]]:
    """Labelled trajectories with namespace, stratum and agent; and each namespace's strategy."""
    # only the columns read here and by task_keys: polars copies what it converts
    columns = ("trajectory_id", "dataset", "domain", "task_id", "agent_name", "model",
               "user_id", "metadata", "outcome_label")  # fmt: skip
    trajectories = pl.from_arrow(traces.trajectories.select(list(columns)))
    assert isinstance(trajectories, pl.DataFrame)
    if config.align_tasks:
        keys = task_keys(trajectories)
    else:
        keys = trajectories.select(
            "trajectory_id",
            (pl.col("dataset").fill_null("") + ":" + pl.col("task_id")).alias("task_key"),
            pl.lit(False).alias("aligned"),
        )
    units = (
        trajectories.filter(pl.col("outcome_label") != "unknown")
        .join(keys, on="trajectory_id", how="left")
        .select(
            "trajectory_id",
            # as _namespace, column-wise
            pl.when(pl.col("domain").fill_null("") == "")
            .then(pl.lit("global"))
            .otherwise(pl.lit("domain:") + pl.col("domain"))
            .alias("namespace"),
            "task_key",
            "aligned",
            pl.coalesce("agent_name", "model", pl.lit("unknown agent")).alias("agent"),
            (pl.col("outcome_label") == "success").alias("success"),
        )
    )
    strategies: dict[str, str] = {}
    parts = []
    for (namespace,), group in units.group_by(["namespace"], maintain_order=True):
        sizes = group.group_by("task_key").len()
        repeated = sizes.filter(pl.col("task_key").is_not_null() & (pl.col("len") >= 2))
        n_agents = group["agent"].n_unique()
        if repeated["len"].sum() * 2 >= group.height:
            aligned = int(group["aligned"].sum())
            how = f"task ({sizes.height} tasks"
            how += f"; {aligned} runs aligned across datasets by instruction)" if aligned else ")"
            if n_agents > 1:
                how += f", adjusted for agent ({n_agents} agents)"
            group = group.with_columns(
                pl.col("task_key").fill_null(pl.col("trajectory_id")).alias("stratum")
            )
            strategies[namespace] = how
        else:
            how = f"agent ({n_agents} agents)" if n_agents > 1 else "none finer than the domain"
            strategies[namespace] = f"{how}; tasks do not repeat"
            group = group.with_columns(pl.col("agent").alias("stratum"))
        if group["success"].n_unique() < 2:
            outcome = "success" if group["success"][0] else "failure"
            runs = (
                f"all {group.height} labelled runs are {outcome}s"
                if group.height > 1
                else f"the only labelled run is a {outcome}"
            )
            strategies[namespace] = f"not tested: {runs}, nothing to contrast"
        parts.append(group)
    units = (
        pl.concat(parts) if parts else units.with_columns(pl.lit(None, pl.String).alias("stratum"))
    )
    return units.sort("trajectory_id"), strategies


def _stratified(
    x: np.ndarray, y: np.ndarray, strata: np.ndarray, agents: np.ndarray, use_clogit: bool
) -> tuple[Effect, int, str]:
    """The stratified effect of ``x`` on ``y`` and the number of informative strata."""
    codes, inverse = np.unique(strata, return_inverse=True)
    k = len(codes)
    tables = np.zeros((k, 2, 2))
    np.add.at(tables, (inverse, 1 - x, 1 - y), 1)
    informative = (tables.sum(axis=2).min(axis=1) > 0) & (tables.sum(axis=1).min(axis=1) > 0)
    n_informative = int(informative.sum())
    if use_clogit:
        keep = informative[inverse]
        names, agent_codes = np.unique(agents[keep], return_inverse=True)
        dummies = np.eye(len(names))[agent_codes][:, 1:] if len(names) > 1 else None
        effect = conditional_logit(y[keep], x[keep], strata[keep], dummies)
        return effect, n_informative, "clogit"
    return cmh(tables[informative]), n_informative, "cmh"


_ID = {"trajectory_id": pl.String}

# The kind, subject and detail of a feature as shown by its first trajectory (by id).
_FIRST = (
    ", ".join(f"arg_min_null(f.{c}, f.trajectory_id) as {c}" for c in ("kind", "subject", "detail"))
    + ","
)


def _unit_index(units: pl.DataFrame) -> pl.DataFrame:
    """Per labelled trajectory: trajectory_id, namespace, ``row`` (int64, its position among
    the namespace's units sorted by trajectory id), ``code`` (int64, its stratum's index in
    ``np.unique`` of the namespace's strata, ascending) and ``y`` (int64, 1 for success)."""
    parts = [
        pl.DataFrame(
            {
                "trajectory_id": group["trajectory_id"],
                "namespace": group["namespace"],
                "row": np.arange(group.height, dtype=np.int64),
                "code": np.unique(group["stratum"].to_numpy(), return_inverse=True)[1].astype(
                    np.int64
                ),
                "y": group["success"].cast(pl.Int64),
            }
        )
        for _, group in units.group_by(["namespace"], maintain_order=True)
    ]
    schema = {"trajectory_id": pl.String, "namespace": pl.String, "row": pl.Int64,
              "code": pl.Int64, "y": pl.Int64}  # fmt: skip
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _strata_counts(
    con: duckdb.DuckDBPyConnection, wanted: pl.DataFrame
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each (namespace, feature_id) of ``wanted``: the ascending stratum codes where the
    feature shows, with its trajectories and successes there (int64 arrays), counted by one
    SQL ``GROUP BY`` over the ``features`` and ``unit_index`` tables of ``con``."""
    keys = wanted.select("namespace", "feature_id").with_row_index("key")
    if keys.height == 0:
        return {}
    con.register("wanted_features", keys.with_columns(pl.col("key").cast(pl.Int64)).to_arrow())
    counts = con.sql("""
        select w.key, u.code, count(*) as n, sum(u.y)::bigint as s
        from features f join unit_index u using (trajectory_id)
        join wanted_features w on w.namespace = u.namespace and w.feature_id = f.feature_id
        group by w.key, u.code order by w.key, u.code
    """).fetchnumpy()
    con.unregister("wanted_features")
    key = np.asarray(counts["key"], dtype=np.int64)
    code, n, s = (np.asarray(counts[c], dtype=np.int64) for c in ("code", "n", "s"))
    bounds = np.searchsorted(key, np.arange(keys.height + 1))
    return {
        (namespace, feature_id): (
            code[bounds[i] : bounds[i + 1]],
            n[bounds[i] : bounds[i + 1]],
            s[bounds[i] : bounds[i + 1]],
        )
        for i, namespace, feature_id in keys.iter_rows()
    }


def _positions(con: duckdb.DuckDBPyConnection, namespace: str, feature_id: str) -> np.ndarray:
    """Positions (``row`` of the unit index) of the namespace's trajectories showing the
    feature (int64)."""
    found = con.sql(
        "select u.row from features f join unit_index u using (trajectory_id) "
        "where u.namespace = ? and f.feature_id = ?",
        params=[namespace, feature_id],
    ).fetchnumpy()
    return np.asarray(found["row"], dtype=np.int64)


def _example_pointers(con: duckdb.DuckDBPyConnection, per_outcome: int) -> pl.DataFrame:
    """:attr:`Analysis.features`: the first ``per_outcome`` trajectories (by id) showing each
    feature, per (namespace, feature, outcome) of the labelled trajectories."""
    frame = con.sql(f"""
        select p.trajectory_id, p.feature_id, p.kind, p.step_idx, p.subject, p.detail
        from (
            select unnest(arg_min(
                struct_pack(trajectory_id := f.trajectory_id, feature_id := f.feature_id,
                            kind := f.kind, step_idx := f.step_idx, subject := f.subject,
                            detail := f.detail),
                f.trajectory_id, {int(per_outcome)})) as p
            from features f join unit_index u using (trajectory_id)
            group by u.namespace, f.feature_id, u.y
        )
        order by p.feature_id, p.trajectory_id
    """).pl()
    return frame.with_columns(pl.col("step_idx").cast(pl.Int64), pl.col("detail").cast(pl.String))


def _cmh_from_counts(
    codes: np.ndarray,
    n_with: np.ndarray,
    s_with: np.ndarray,
    stratum_n: np.ndarray,
    stratum_s: np.ndarray,
) -> tuple[Effect, int]:
    """CMH over the informative strata among ``codes`` (ascending stratum codes where the
    feature shows, with its runs ``n_with`` and successes ``s_with`` there), given every
    stratum's runs ``stratum_n`` and successes ``stratum_s``: the same tables, in the same
    order, as :func:`_stratified` builds from per-trajectory arrays. Strata where the feature
    never shows are never informative."""
    n, s = stratum_n[codes], stratum_s[codes]
    a = s_with
    b = n_with - s_with
    c = s - s_with
    d = (n - s) - b
    tables = np.stack([np.stack([a, b], axis=1), np.stack([c, d], axis=1)], axis=1).astype(float)
    informative = (n_with > 0) & (n - n_with > 0) & (s > 0) & (n - s > 0)
    return cmh(tables[informative]), int(informative.sum())


def _runs_needed(effect: Effect, n: int, fdr: float, n_tests: int) -> int | None:
    """Labelled runs needed for an effect of this size to pass a Bonferroni-like bar at ``fdr``
    with 80% power, scaling today's standard error by 1/sqrt(n) (a planning estimate; None when
    more than 100 times today's runs would be needed)."""
    if not (math.isfinite(effect.ci_low) and math.isfinite(effect.ci_high)) or effect.ci_low <= 0:
        return None
    log_or = math.log(effect.odds_ratio) if effect.odds_ratio > 0 else 0.0
    se = (math.log(effect.ci_high) - math.log(effect.ci_low)) / (2 * 1.96)
    if log_or == 0 or se <= 0:
        return None
    from scipy.stats import norm

    z_needed = norm.ppf(1 - fdr / (2 * max(n_tests, 1))) + norm.ppf(0.8)
    factor = (z_needed * se / abs(log_or)) ** 2
    # Beyond 100x today's data the estimate means "no effect in sight", not a plan.
    return int(math.ceil(n * factor)) if 1 < factor <= 100 else None


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


def _failure_clusters(con: object, units: pl.DataFrame) -> pl.DataFrame:
    """Group failed trajectories by (last tool error signature, last tool called, termination)."""
    import duckdb

    assert isinstance(con, duckdb.DuckDBPyConnection)
    from pipeline.features import _signature_sql

    sig = _signature_sql("coalesce(error_message, tool_result_text, '')")
    con.register("units", units.select("trajectory_id", "namespace", "success").to_arrow())
    frame = con.sql(f"""
        with last_call as (
            select trajectory_id, arg_max(tool_name, step_idx) as last_tool
            from steps where step_type = 'tool_call' group by all
        ),
        last_error as (
            select trajectory_id, arg_max(coalesce(tool_name, '?') || ': ' || {sig}, step_idx)
                   as last_error
            from steps where step_type = 'tool_result' and is_error group by all
        ),
        failed as (
            select u.namespace, u.trajectory_id,
                   concat_ws(' | ',
                       'error=' || coalesce(e.last_error, 'none'),
                       'last_tool=' || coalesce(c.last_tool, 'none'),
                       'termination=' || coalesce(t.termination_reason, 'unknown')) as signature
            from units u join trajectories t using (trajectory_id)
            left join last_call c using (trajectory_id)
            left join last_error e using (trajectory_id)
            where not u.success
        )
        select namespace, signature, count(*) as size,
               count(*) / sum(count(*)) over (partition by namespace) as share,
               list(trajectory_id order by trajectory_id)[1:5] as example_ids
        from failed group by namespace, signature
        order by namespace, size desc, signature
    """).pl()
    return frame

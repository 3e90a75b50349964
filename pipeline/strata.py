"""The Analyzer's units, strata and counts: the labelled trajectories with namespace, stratum and
agent and each namespace's stratification strategy (:func:`_units`), the stratified test from
per-trajectory arrays (:func:`_stratified`) or from counts (:func:`_cmh_from_counts`), the
DuckDB queries that count features per stratum, locate and exemplify them (:func:`_unit_index`,
:func:`_strata_counts`, :func:`_positions`, :func:`_example_pointers`), failure clusters
(:func:`_failure_clusters`) and the runs-needed estimate (:func:`_runs_needed`).

Used by :mod:`pipeline.analyze` (see its docstring for the method) and :mod:`pipeline.evaluate`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import polars as pl

from pipeline.stats import Effect, cmh, conditional_logit
from pipeline.tasks import task_keys

if TYPE_CHECKING:
    from pipeline.analyze import AnalyzerConfig
    from pipeline.ingest import Traces


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
    """:attr:`pipeline.analyze.Analysis.features`: the first ``per_outcome`` trajectories (by
    id) showing each feature, per (namespace, feature, outcome) of the labelled trajectories."""
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

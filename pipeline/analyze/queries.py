"""The Analyzer's DuckDB queries over the long feature table, so that only counts, positions
and example pointers come back to Python.

Each function reads tables of the Analyzer's connection: ``features`` (the feature rows of
:func:`pipeline.analyze.create_feature_table`), ``unit_index`` (registered from
:func:`unit_index`), the ``feature_names`` and ``labelled`` tables of :func:`create_labelled`
(the feature rows of the labelled trajectories with integer keys: the counts join and group
integers, not the text of ids), and for :func:`failure_clusters` the ``steps`` and
``trajectories`` views of :meth:`pipeline.ingest.Traces.connect`.
"""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl

from pipeline.analyze.features import signature_sql

__all__ = [
    "create_labelled",
    "example_pointers",
    "failure_clusters",
    "feature_totals",
    "positions",
    "strata_counts",
    "unit_index",
]


def unit_index(units: pl.DataFrame) -> pl.DataFrame:
    """Per labelled trajectory of ``units`` (:func:`pipeline.analyze.units_and_strata`):
    trajectory_id (str), namespace (str), ``row`` (int64, its position among the namespace's
    units sorted by trajectory id), ``code`` (int64, its stratum's index in ``np.unique`` of
    the namespace's strata, ascending) and ``y`` (int64, 1 for success)."""
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


def create_labelled(con: duckdb.DuckDBPyConnection) -> None:
    """Create the temp tables ``feature_names`` and ``labelled`` from ``features`` and
    ``unit_index``.

    - ``feature_names``: one row per feature id: ``fid`` (bigint, the rank of ``feature_id`` in
      DuckDB's ``varchar`` order, from 0, so ``fid`` order is ``feature_id`` order),
      ``feature_id``, and ``kind``, ``subject``, ``detail`` of its first trajectory by id;
    - ``labelled``: one row per labelled trajectory and feature it shows: ``namespace``
      (varchar), ``fid``, ``row``, ``code`` and ``y`` of the trajectory in ``unit_index``
      (bigint); the one join of the long table on trajectory ids.
    """
    con.execute(f"""
        create or replace temp table feature_names as
        select row_number() over (order by feature_id) - 1 as fid, *
        from (select feature_id, {_FIRST} from features f group by feature_id)
    """)
    con.execute("""
        create or replace temp table labelled as
        select u.namespace, n.fid, u.row, u.code, u.y
        from features f join unit_index u using (trajectory_id)
        join feature_names n using (feature_id)
    """)


_FIRST = ", ".join(
    f"arg_min_null(f.{c}, f.trajectory_id) as {c}" for c in ("kind", "subject", "detail")
)


def feature_totals(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per (namespace, feature) shown by labelled trajectories: namespace, feature_id, kind,
    subject, detail (str), ``n_with`` (trajectories showing it) and ``s_with`` (successes among
    them), sorted by namespace and feature id (reads ``labelled`` and ``feature_names``)."""
    return con.sql("""
        with counted as (
            select namespace, fid, count(*) as n_with, sum(y) as s_with
            from labelled group by namespace, fid
        )
        select c.namespace, n.feature_id, n.kind, n.subject, n.detail, c.n_with, c.s_with
        from counted c join feature_names n using (fid)
        order by c.namespace, n.feature_id
    """).pl()


def strata_counts(
    con: duckdb.DuckDBPyConnection, wanted: pl.DataFrame
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each (namespace, feature_id) row of ``wanted`` (str columns of those names): the
    ascending stratum codes where the feature shows, with its trajectories and successes there
    (three int64 arrays of one length), counted by one SQL ``GROUP BY`` over the ``labelled``
    table of ``con`` (:func:`create_labelled`)."""
    keys = wanted.select("namespace", "feature_id").with_row_index("key")
    if keys.height == 0:
        return {}
    con.register("wanted_features", keys.with_columns(pl.col("key").cast(pl.Int64)).to_arrow())
    counts = con.sql("""
        with wanted as (
            select w.key, w.namespace, n.fid
            from wanted_features w join feature_names n using (feature_id)
        )
        select w.key, l.code, count(*) as n, sum(l.y)::bigint as s
        from labelled l join wanted w using (namespace, fid)
        group by w.key, l.code order by w.key, l.code
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


def positions(con: duckdb.DuckDBPyConnection, namespace: str, feature_id: str) -> np.ndarray:
    """Positions (``row`` of the unit index) of the namespace's trajectories showing the
    feature: an int64 array, unordered (reads ``labelled`` and ``feature_names``)."""
    found = con.sql(
        "select l.row from labelled l join feature_names n using (fid) "
        "where l.namespace = ? and n.feature_id = ?",
        params=[namespace, feature_id],
    ).fetchnumpy()
    return np.asarray(found["row"], dtype=np.int64)


def example_pointers(con: duckdb.DuckDBPyConnection, per_outcome: int) -> pl.DataFrame:
    """:attr:`pipeline.analyze.Analysis.features`: the first ``per_outcome`` trajectories (by
    id) showing each feature, per (namespace, feature, outcome) of the labelled trajectories;
    the feature table's columns (trajectory_id, feature_id, kind, step_idx int64, subject,
    detail str), sorted by feature id and trajectory id. Within a namespace, ``row`` order is
    trajectory id order (:func:`unit_index`), so the first rows are picked from ``labelled``
    and only those are looked up in ``features``."""
    frame = con.sql(f"""
        with firsts as (
            select namespace, fid, unnest(arg_min(row, row, {int(per_outcome)})) as row
            from labelled group by namespace, fid, y
        ), picked as (
            select u.trajectory_id, n.feature_id
            from firsts p join unit_index u using (namespace, row)
            join feature_names n using (fid)
        )
        select f.trajectory_id, f.feature_id, f.kind, f.step_idx, f.subject, f.detail
        from features f semi join picked p using (trajectory_id, feature_id)
        order by f.feature_id, f.trajectory_id
    """).pl()
    return frame.with_columns(pl.col("step_idx").cast(pl.Int64), pl.col("detail").cast(pl.String))


def failure_clusters(con: duckdb.DuckDBPyConnection, units: pl.DataFrame) -> pl.DataFrame:
    """Failed trajectories of ``units`` grouped by (signature of the last tool error, last tool
    called, termination reason), per namespace.

    Returns:
        polars DataFrame sorted by namespace, size (descending) and signature: namespace (str),
        signature (str: ``error=<tool>: <signature> | last_tool=<tool> |
        termination=<reason>``, ``none``/``unknown`` where absent), size (int64), share (float64,
        of the namespace's failures), example_ids (list[str], the first 5 by id) and
        example_steps (list[int64], parallel to example_ids: the ``step_idx`` of the first
        tool error in that trajectory with the cluster's error signature; for a cluster
        without a tool error, the step of the last tool call; null when the run has neither).
        An analysis saved before example_steps was kept has no such column: readers take its
        steps as unknown.
    """
    sig = signature_sql("coalesce(error_message, tool_result_text, '')")
    con.register("units", units.select("trajectory_id", "namespace", "success").to_arrow())
    frame = con.sql(f"""
        with last_call as (
            select trajectory_id, arg_max(tool_name, step_idx) as last_tool,
                   max(step_idx)::bigint as last_call_step
            from steps where step_type = 'tool_call' group by all
        ),
        errors as (
            select trajectory_id, step_idx, coalesce(tool_name, '?') || ': ' || {sig} as error
            from steps where step_type = 'tool_result' and is_error
        ),
        last_error as (
            select trajectory_id, arg_max(error, step_idx) as last_error
            from errors group by all
        ),
        error_step as (
            select e.trajectory_id, min(e.step_idx)::bigint as error_step
            from errors e join last_error l
              on e.trajectory_id = l.trajectory_id and e.error = l.last_error
            group by all
        ),
        failed as (
            select u.namespace, u.trajectory_id,
                   concat_ws(' | ',
                       'error=' || coalesce(e.last_error, 'none'),
                       'last_tool=' || coalesce(c.last_tool, 'none'),
                       'termination=' || coalesce(t.termination_reason, 'unknown')) as signature,
                   case when e.last_error is null then c.last_call_step else s.error_step end
                       as example_step
            from units u join trajectories t using (trajectory_id)
            left join last_call c using (trajectory_id)
            left join last_error e using (trajectory_id)
            left join error_step s using (trajectory_id)
            where not u.success
        )
        select namespace, signature, count(*) as size,
               count(*) / sum(count(*)) over (partition by namespace) as share,
               list(trajectory_id order by trajectory_id)[1:5] as example_ids,
               list(example_step order by trajectory_id)[1:5] as example_steps
        from failed group by namespace, signature
        order by namespace, size desc, signature
    """).pl()
    con.unregister("units")
    return frame.with_columns(pl.col("example_steps").cast(pl.List(pl.Int64)))

"""How much the reported features of a namespace share their trajectories: the counts that let
the SkillExtractor consolidate several views of one behaviour into one skill.

One planted or real behaviour often shows through several feature names at once: calling a
write tool (``tool_called``), reaching it from each lookup before it (``tool_order``), its
argument values (``write_arg``), calling it without a confirmation (``unconfirmed_write``).
These features are then shown by nearly the same trajectories and are one lesson, not several.
"""

from __future__ import annotations

import duckdb
import polars as pl

__all__ = ["OVERLAP_SCHEMA", "feature_overlaps", "jaccard", "containment"]

OVERLAP_SCHEMA = {
    "namespace": pl.String,
    "feature_a": pl.String,
    "feature_b": pl.String,
    "n_both": pl.Int64,
}


def feature_overlaps(con: duckdb.DuckDBPyConnection, wanted: pl.DataFrame) -> pl.DataFrame:
    """For each pair of features of one namespace among ``wanted`` (str columns namespace,
    feature_id), the number of the namespace's labelled trajectories showing both.

    Reads the Analyzer's ``labelled`` and ``feature_names`` tables of ``con``
    (:func:`pipeline.analyze.queries.create_labelled`: integer keys, ``fid`` in feature id
    order).

    Returns:
        polars DataFrame with :data:`OVERLAP_SCHEMA`: namespace, feature_a < feature_b (str),
        n_both (int64, at least 1; pairs sharing no trajectory are left out), sorted by
        namespace, feature_a, feature_b.
    """
    empty = pl.DataFrame(schema=OVERLAP_SCHEMA)
    if wanted.height < 2:
        return empty
    con.register("overlap_wanted", wanted.select("namespace", "feature_id").to_arrow())
    try:
        frame = con.sql("""
            with wanted as (
                select w.namespace, n.fid
                from overlap_wanted w join feature_names n using (feature_id)
            ), shown as (
                select distinct l.namespace, l.fid, l.row
                from labelled l join wanted w using (namespace, fid)
            ), pairs as (
                select a.namespace, a.fid as fid_a, b.fid as fid_b, count(*)::bigint as n_both
                from shown a join shown b
                  on a.namespace = b.namespace and a.row = b.row and a.fid < b.fid
                group by all
            )
            select p.namespace, na.feature_id as feature_a, nb.feature_id as feature_b,
                   p.n_both
            from pairs p join feature_names na on na.fid = p.fid_a
            join feature_names nb on nb.fid = p.fid_b
            order by all
        """).pl()
    finally:
        con.unregister("overlap_wanted")
    return frame.cast(OVERLAP_SCHEMA) if frame.height else empty  # type: ignore[arg-type]


def jaccard(n_a: int, n_b: int, n_both: int) -> float:
    """Jaccard index of two sets of trajectories from their sizes and intersection:
    ``n_both / (n_a + n_b - n_both)``; 0.0 for two empty sets."""
    union = n_a + n_b - n_both
    return n_both / union if union > 0 else 0.0


def containment(n_a: int, n_b: int, n_both: int) -> float:
    """The share of the smaller set inside the larger (the overlap coefficient,
    ``n_both / min(n_a, n_b)``): 1.0 when one is nested in the other; 0.0 when one is empty."""
    smaller = min(n_a, n_b)
    return n_both / smaller if smaller > 0 else 0.0

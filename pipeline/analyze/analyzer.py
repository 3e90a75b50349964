"""The Analyzer and what it returns, the :class:`Analysis` (plain data).

The method is described in :mod:`pipeline.analyze`. Units and strata come from
:mod:`pipeline.analyze.strata`, the DuckDB queries over the long feature table from
:mod:`pipeline.analyze.queries`.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from pipeline.analyze.features import create_feature_table
from pipeline.analyze.overlap import OVERLAP_SCHEMA, feature_overlaps
from pipeline.analyze.queries import (
    create_labelled,
    example_pointers,
    failure_clusters,
    feature_totals,
    positions,
    strata_counts,
    unit_index,
)
from pipeline.analyze.stats import (
    Effect,
    benjamini_hochberg,
    fisher,
    runs_needed,
    wilson_interval,
)
from pipeline.analyze.strata import (
    Stratification,
    cmh_from_counts,
    reported_effect,
    stratified_effect,
    units_and_strata,
)
from pipeline.config import AnalyzerConfig
from pipeline.errors import InputError
from pipeline.fileio import atomic_write
from pipeline.ingest import Traces

__all__ = ["ANALYSIS_FILES", "Analysis", "Analyzer", "RESULT_COLUMNS"]

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

# The tables of a saved analysis (Analysis.save), each ``<name>.parquet``.
ANALYSIS_FILES = ("results", "features", "units", "clusters")
# Written by save and read when present (an analysis saved before them loads without them).
OPTIONAL_FILES = ("overlaps",)


def _no_overlaps() -> pl.DataFrame:
    return pl.DataFrame(schema=OVERLAP_SCHEMA)


_ID = {"trajectory_id": pl.String}


class _Scratch:
    """A private temporary directory, removed with its files when this object is collected
    (or at exit): the home of an Analysis's feature file, shared by its copies."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="coach-features-"))
        weakref.finalize(self, shutil.rmtree, self.path, True)


@dataclass
class Analysis:
    """What the Analyzer found: plain data, no open connection.

    - ``results``: one row per tested (namespace, feature), columns :data:`RESULT_COLUMNS`:
      counts (int64), rates and their Wilson 95% bounds (float64), ``lift`` = rate_with /
      rate_without, stratified ``odds_ratio`` with 95% ``ci_low``/``ci_high``, ``p_value``,
      ``q_value`` (BH), the naive Fisher figures, ``method`` (cmh/clogit/fisher),
      ``stratification`` (the namespace's :meth:`Stratification.describe`, text for people),
      ``n_strata`` (informative strata), ``runs_needed`` (approximate number of labelled runs
      for a non-significant effect of the size seen to reach significance, see
      :func:`pipeline.analyze.runs_needed`; null where the interval is unbounded or the effect
      is significant already) and ``status``.
    - ``features``: example pointers, not the whole feature table: for every (namespace,
      feature, outcome) among the labelled trajectories, the first
      ``config.examples_per_feature`` trajectories by id that show the feature, with the
      columns of :func:`pipeline.analyze.derive_features` (trajectory_id, feature_id, kind,
      step_idx int64, subject, detail), sorted by feature id and trajectory id. At most
      2 x ``examples_per_feature`` rows per (namespace, feature), whatever the number of
      trajectories; what :meth:`examples` reads and what ``features.parquet`` holds.
    - ``units``: one row per labelled trajectory, sorted by id: trajectory_id, namespace,
      task_key, aligned, agent, success (bool), stratum (see
      :func:`pipeline.analyze.units_and_strata`).
    - ``clusters``: failure clusters: namespace, signature, size, share (of the namespace's
      failures), example_ids (list[str]).
    - ``untested``: number of (namespace, feature) pairs below ``min_support``.
    - ``strata``: for each namespace with labelled runs, how its contrasts were stratified, or
      why it was not tested (:class:`Stratification`); :attr:`namespaces` gives the sentences.
    - ``feature_file``: a Parquet file of the whole feature table (trajectory_id, feature_id,
      step_idx; every labelled and unlabelled trajectory; sorted by feature id and trajectory
      id), that :meth:`showing` and :meth:`examples` beyond the kept pointers read with a
      fresh DuckDB connection; ``None`` for an analysis loaded from disk. The Analyzer writes
      it to a temporary directory (``scratch``) that is removed when the last Analysis holding
      it is collected, or at exit.
    - ``overlaps``: for the features with p < 0.05 (the candidates of skills), how many
      labelled trajectories each pair of one namespace shares
      (:func:`pipeline.analyze.overlap.feature_overlaps`: namespace, feature_a, feature_b,
      n_both); empty for an analysis saved before it was kept.
    """

    results: pl.DataFrame
    features: pl.DataFrame
    units: pl.DataFrame
    clusters: pl.DataFrame
    untested: int = 0
    config: AnalyzerConfig = field(default_factory=AnalyzerConfig)
    strata: dict[str, Stratification] = field(default_factory=dict)
    feature_file: Path | None = None
    scratch: _Scratch | None = field(default=None, repr=False, compare=False)
    overlaps: pl.DataFrame = field(default_factory=_no_overlaps)

    @property
    def namespaces(self) -> dict[str, str]:
        """For each namespace of :attr:`strata`, its sentence (:meth:`Stratification.describe`),
        for people: the ``stratification`` of ``coach learn --json`` and ``meta.json``."""
        return {namespace: how.describe() for namespace, how in self.strata.items()}

    def examples(
        self, namespace: str, feature_id: str, *, success: bool | None, limit: int = 5
    ) -> list[tuple[str, int | None]]:
        """Up to ``limit`` (trajectory_id, step_idx) pointers of trajectories in ``namespace``
        showing ``feature_id``, restricted to the given outcome unless ``success`` is None;
        sorted by trajectory id. Read from :attr:`features`; a ``limit`` above
        ``config.examples_per_feature`` is answered from :attr:`feature_file` when there is one
        (else at most ``examples_per_feature`` pointers per outcome are known)."""
        units = self.units.filter(pl.col("namespace") == namespace)
        if success is not None:
            units = units.filter(pl.col("success") == success)
        if self.feature_file is not None and limit > self.config.examples_per_feature:
            with self._connect() as con:
                shown = con.sql(
                    f"select trajectory_id, step_idx from {self._scan()} where feature_id = ?",
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
        """Those of ``trajectory_ids`` that show ``feature_id``: exact from
        :attr:`feature_file`; for an analysis loaded from disk (no feature file), only the kept
        example pointers are known, so trajectories beyond them are reported as not showing
        it."""
        ids = list(dict.fromkeys(trajectory_ids))
        if self.feature_file is None:
            hits = self.features.filter(
                (pl.col("feature_id") == feature_id) & pl.col("trajectory_id").is_in(ids)
            )
            return set(hits["trajectory_id"].to_list())
        with self._connect() as con:
            con.register("wanted", pl.DataFrame({"trajectory_id": ids}, schema=_ID).to_arrow())
            found = con.sql(
                f"select distinct f.trajectory_id from {self._scan()} f "
                "join wanted using (trajectory_id) where f.feature_id = ?",
                params=[feature_id],
            ).fetchall()
        return {row[0] for row in found}

    def _connect(self) -> duckdb.DuckDBPyConnection:
        settings: dict[str, str | bool | int | float | list[str]] = {}
        if self.config.memory_limit is not None:
            settings["memory_limit"] = self.config.memory_limit
        if self.config.threads is not None:
            settings["threads"] = self.config.threads
        return duckdb.connect(config=settings)

    def _scan(self) -> str:
        assert self.feature_file is not None
        return "read_parquet('" + str(self.feature_file).replace("'", "''") + "')"

    def save(self, directory: Path) -> None:
        """Write the analysis for later commands (``coach extract``, ``coach report``, a re-run
        with nothing new) into ``directory`` (created if needed), each file atomically:
        ``<name>.parquet`` for each of :data:`ANALYSIS_FILES`, ``config.json`` (min_support,
        fdr) and ``meta.json`` (``untested``; ``namespaces``: the sentences of
        :attr:`namespaces`; ``strata``: :meth:`Stratification.to_dict` per namespace). The
        feature file is not saved."""
        for name in ANALYSIS_FILES + OPTIONAL_FILES:
            buffer = io.BytesIO()
            getattr(self, name).write_parquet(buffer)
            atomic_write(directory / f"{name}.parquet", buffer.getvalue())
        cfg = {"min_support": self.config.min_support, "fdr": self.config.fdr}
        atomic_write(directory / "config.json", json.dumps(cfg))
        meta = {
            "untested": self.untested,
            "namespaces": self.namespaces,
            "strata": {namespace: how.to_dict() for namespace, how in self.strata.items()},
        }
        atomic_write(directory / "meta.json", json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(
        cls, directory: Path, config: AnalyzerConfig | None = None, *, pointers: bool = True
    ) -> Analysis:
        """The analysis saved in ``directory`` by :meth:`save`, without a feature file.

        ``config``: the settings to attach (default: ``AnalyzerConfig`` with the saved
        ``config.json``). ``pointers``: read the example pointers (``features.parquet``);
        False reads its columns only. ``meta.json`` is optional: without it, or without its
        ``strata`` (written before they were saved), ``untested`` is 0 and ``strata`` empty.

        Raises:
            InputError: a table, ``config.json`` or ``meta.json`` is missing (meta.json: only
                unreadable) or unreadable.
        """
        try:
            frames = {
                name: pl.read_parquet(
                    directory / f"{name}.parquet",
                    n_rows=0 if name == "features" and not pointers else None,
                )
                for name in ANALYSIS_FILES
            }
            overlaps_path = directory / "overlaps.parquet"
            overlaps = pl.read_parquet(overlaps_path) if overlaps_path.exists() else _no_overlaps()
            if config is None:
                config = AnalyzerConfig(**json.loads((directory / "config.json").read_text()))
            meta_path = directory / "meta.json"
            meta: dict[str, Any] = (
                json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
            )
            if not isinstance(meta, dict):
                raise ValueError("meta.json is not a JSON object")
            strata = {
                namespace: Stratification.from_dict(how)
                for namespace, how in dict(meta.get("strata") or {}).items()
            }
        except (OSError, pl.exceptions.PolarsError, ValueError, TypeError, KeyError) as exc:
            raise InputError(f"{directory}: cannot read the analysis ({exc})") from exc
        return cls(
            frames["results"],
            frames["features"],
            frames["units"],
            frames["clusters"],
            int(meta.get("untested", 0)),
            config,
            strata,
            overlaps=overlaps,
        )


# The kind, subject and detail of a feature as shown by its first trajectory (by id).
class Analyzer:
    """Runs the contrasts described in :mod:`pipeline.analyze`.

    ``Analyzer(config).run(traces) -> Analysis``.
    """

    def __init__(self, config: AnalyzerConfig | None = None) -> None:
        self.config = config or AnalyzerConfig()

    def run(self, traces: Traces) -> Analysis:
        """Analyse ``traces`` (see :class:`Analysis` for the result's shape).

        The long feature table stays in DuckDB
        (:func:`pipeline.analyze.create_feature_table`), within ``config.memory_limit``, and
        is written to the Analysis's feature file; what comes back to Python is one row per
        (namespace, feature), the per-stratum 2x2 counts of the tested features in namespaces
        stratified by CMH (integers), the per-feature trajectory positions in namespaces
        stratified by conditional logistic regression, and the example pointers. The DuckDB
        connection is closed before returning.
        """
        cfg = self.config
        con = traces.connect(memory_limit=cfg.memory_limit, threads=cfg.threads)
        try:
            return self._run(traces, con)
        finally:
            con.close()

    def _run(self, traces: Traces, con: duckdb.DuckDBPyConnection) -> Analysis:
        cfg = self.config
        create_feature_table(con, cfg.features)
        units, strata = units_and_strata(traces, cfg)
        index = unit_index(units)
        con.register("unit_index", index.to_arrow())
        create_labelled(con)
        totals = feature_totals(con)
        # per-stratum counts for the features the CMH path will test
        by_cmh = [n for n, how in strata.items() if how.tested and not how.adjusted_for_agent]
        sizes = index.group_by("namespace").agg(pl.len().alias("units"))
        wanted = totals.join(sizes, on="namespace").filter(
            pl.col("namespace").is_in(by_cmh)
            & (pl.min_horizontal("n_with", pl.col("units") - pl.col("n_with")) >= cfg.min_support)
        )
        counted = strata_counts(con, wanted)
        rows: list[dict[str, object]] = []
        untested = 0
        by_namespace = {n: g for (n,), g in totals.group_by(["namespace"], maintain_order=True)}
        for (namespace,), group in units.group_by(["namespace"], maintain_order=True):
            assert isinstance(namespace, str)
            how = strata[namespace]
            if not how.tested:
                continue
            counts = by_namespace.get(namespace, totals.clear())
            y = group["success"].to_numpy().astype(int)
            stratum_labels = group["stratum"].to_numpy()
            agents = group["agent"].to_numpy()
            codes, inverse = np.unique(stratum_labels, return_inverse=True)
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
                if how.adjusted_for_agent:
                    x = np.zeros(len(y), dtype=int)
                    x[positions(con, namespace, feature_id)] = 1
                    effect, n_strata, method = stratified_effect(
                        x, y, stratum_labels, agents, use_clogit=True
                    )
                else:
                    effect, n_strata = cmh_from_counts(
                        *counted[(namespace, feature_id)], stratum_n, stratum_s
                    )
                    method = "cmh"
                effect, method = reported_effect(
                    how,
                    effect,
                    n_strata,
                    method,
                    naive=naive,
                    one_stratum=one_stratum,
                    min_strata=cfg.min_strata,
                )
                rate_with, rate_without = s_with / n_with, s_without / n_without
                rows.append(
                    {
                        "namespace": namespace,
                        "feature_id": feature_id,
                        "kind": feature["kind"],
                        "subject": feature["subject"],
                        "detail": feature["detail"],
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
                        "stratification": how.describe(),
                        "by_task": how.by_task,
                        "n_strata": n_strata,
                    }
                )
        results = self._finish(rows)
        overlaps = feature_overlaps(
            con,
            results.filter(pl.col("p_value").cast(pl.Float64) < 0.05).select(
                "namespace", "feature_id"
            ),
        )
        clusters = failure_clusters(con, units)
        pointers = example_pointers(con, cfg.examples_per_feature)
        scratch = _Scratch()
        feature_file = scratch.path / "features.parquet"
        path = str(feature_file).replace("'", "''")
        con.execute(
            "copy (select trajectory_id, feature_id, step_idx from features) "
            f"to '{path}' (format parquet)"
        )
        return Analysis(
            results,
            pointers,
            units,
            clusters,
            untested,
            cfg,
            strata,
            feature_file,
            scratch,
            overlaps=overlaps,
        )

    def _finish(self, rows: list[dict[str, object]]) -> pl.DataFrame:
        """The results frame (:data:`RESULT_COLUMNS`) from the per-feature ``rows`` (which
        also carry ``by_task``): q-values, runs needed and status, sorted by namespace,
        q-value and feature id."""
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
            runs_needed(
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
            pl.when((pl.col("q_value") < cfg.fdr) & pl.col("by_task"))
            .then(pl.lit("significant"))
            .when(pl.col("p_value") < 0.05)
            .then(pl.lit("suggestive"))
            .when(pl.col("naive_q_value") < cfg.fdr)
            .then(pl.lit("confounded"))
            .otherwise(pl.lit("not_significant"))
            .alias("status")
        )
        return frame.select(RESULT_COLUMNS).sort("namespace", "q_value", "feature_id")

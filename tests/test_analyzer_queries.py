"""The Analyzer's counting queries (:mod:`pipeline.analyze.queries`, :mod:`pipeline.analyze.overlap`)
over the integer-keyed ``labelled`` table agree with the same counts taken directly from the
feature rows (:func:`pipeline.analyze.derive_features`) and the units, in polars.

Three domains with the same tools, so that namespaces share feature ids and the namespace is
part of every key; two agents."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from synth import PlantedConfig, airline_domain, generate_planted, write_jsonl

from pipeline.analyze import (
    AnalyzerConfig,
    create_feature_table,
    derive_features,
    units_and_strata,
)
from pipeline.analyze.overlap import feature_overlaps
from pipeline.analyze.queries import (
    create_labelled,
    example_pointers,
    feature_totals,
    positions,
    strata_counts,
    unit_index,
)
from pipeline.ingest import Traces, ingest


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("queries")
    config = PlantedConfig(
        domains=(airline_domain(), airline_domain(name="rail"), airline_domain(name="ferry")),
        n_trajectories=600,
        agents=("agent-a", "agent-b"),
        seed=5,
    )
    traces = ingest([write_jsonl(work / "planted.jsonl", generate_planted(config))])
    cfg = AnalyzerConfig()
    con = traces.connect()
    rows = derive_features(con, cfg.features)
    create_feature_table(con, cfg.features)
    units, _strata = units_and_strata(traces, cfg)
    index = unit_index(units)
    con.register("unit_index", index.to_arrow())
    create_labelled(con)
    shown = rows.join(index, on="trajectory_id")  # the labelled trajectories' feature rows
    yield traces, con, rows, index, shown
    con.close()


def test_totals(prepared: tuple[Traces, object, pl.DataFrame, pl.DataFrame, pl.DataFrame]):
    _traces, con, rows, _index, shown = prepared
    expected = (
        shown.group_by("namespace", "feature_id")
        .agg(pl.len().alias("n_with"), pl.col("y").sum().alias("s_with"))
        .sort("namespace", "feature_id")
    )
    got = feature_totals(con)  # type: ignore[arg-type]
    assert got.height == expected.height > 50
    assert got["namespace"].n_unique() >= 2
    assert got["feature_id"].to_list() == expected["feature_id"].to_list()
    assert got["n_with"].to_list() == expected["n_with"].to_list()
    assert [int(v) for v in got["s_with"].to_list()] == expected["s_with"].to_list()
    # kind, subject and detail are those of the feature rows
    names = rows.unique("feature_id").select("feature_id", "kind", "subject", "detail")
    joined = got.join(names, on="feature_id", suffix="_rows")
    for column in ("kind", "subject", "detail"):
        assert joined[column].to_list() == joined[f"{column}_rows"].to_list()


def test_strata_counts_and_positions(
    prepared: tuple[Traces, object, pl.DataFrame, pl.DataFrame, pl.DataFrame],
):
    _traces, con, _rows, _index, shown = prepared
    wanted = shown.select("namespace", "feature_id").unique().sort("namespace", "feature_id")
    counted = strata_counts(con, wanted)  # type: ignore[arg-type]
    assert len(counted) == wanted.height
    for (namespace, feature_id), (codes, n, s) in itertools.islice(counted.items(), 0, None, 7):
        mine = shown.filter(
            (pl.col("namespace") == namespace) & (pl.col("feature_id") == feature_id)
        )
        per = mine.group_by("code").agg(pl.len().alias("n"), pl.col("y").sum().alias("s"))
        per = per.sort("code")
        assert codes.tolist() == per["code"].to_list()
        assert n.tolist() == per["n"].to_list()
        assert s.tolist() == per["s"].to_list()
        assert sorted(positions(con, namespace, feature_id).tolist()) == sorted(  # type: ignore[arg-type]
            mine["row"].to_list()
        )
    assert positions(con, "no such namespace", wanted["feature_id"][0]).size == 0  # type: ignore[arg-type]


def test_overlaps(prepared: tuple[Traces, object, pl.DataFrame, pl.DataFrame, pl.DataFrame]):
    _traces, con, _rows, _index, shown = prepared
    namespace = shown["namespace"].unique().sort()[0]
    mine = shown.filter(pl.col("namespace") == namespace)
    features = mine["feature_id"].unique().sort().to_list()[:12]
    wanted = pl.DataFrame({"namespace": [namespace] * len(features), "feature_id": features})
    runs = {
        f: set(mine.filter(pl.col("feature_id") == f)["trajectory_id"].to_list()) for f in features
    }
    expected = sorted(
        (a, b, len(runs[a] & runs[b]))
        for a, b in itertools.combinations(features, 2)
        if runs[a] & runs[b]
    )
    got = feature_overlaps(con, wanted)  # type: ignore[arg-type]
    assert set(got["namespace"].to_list()) == {namespace}
    assert list(zip(got["feature_a"], got["feature_b"], got["n_both"], strict=True)) == expected
    assert len(expected) > 5


def test_example_pointers(
    prepared: tuple[Traces, object, pl.DataFrame, pl.DataFrame, pl.DataFrame],
):
    _traces, con, rows, _index, shown = prepared
    per_outcome = 3
    firsts = (
        shown.sort("trajectory_id")
        .group_by("namespace", "feature_id", "y", maintain_order=True)
        .head(per_outcome)
        .select("trajectory_id", "feature_id")
    )
    expected = rows.join(firsts, on=["trajectory_id", "feature_id"]).sort(
        "feature_id", "trajectory_id"
    )
    got = example_pointers(con, per_outcome)  # type: ignore[arg-type]
    assert got.columns == expected.columns
    assert got.height == expected.height > 100
    assert got.equals(expected)
    assert np.all(got.group_by("feature_id").len()["len"].to_numpy() <= 2 * per_outcome * 3)

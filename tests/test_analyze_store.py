"""The Analyzer keeps the long feature table in DuckDB: ``Analysis.features`` holds bounded
example pointers, and ``examples`` / ``showing`` answer as the whole table would."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.analyze import Analysis, Analyzer, AnalyzerConfig
from pipeline.features import derive_features
from pipeline.ingest import Traces, ingest
from pipeline.synth import PlantedConfig, generate_planted, write_jsonl


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Traces:
    directory = tmp_path_factory.mktemp("planted")
    records = generate_planted(PlantedConfig(n_trajectories=400, seed=11))
    return ingest([write_jsonl(directory / "runs.jsonl", records)])


@pytest.fixture(scope="module")
def analysis(traces: Traces) -> Analysis:
    return Analyzer(AnalyzerConfig(examples_per_feature=3)).run(traces)


@pytest.fixture(scope="module")
def full(traces: Traces, analysis: Analysis) -> pl.DataFrame:
    """The whole feature table of the labelled trajectories, with namespace and outcome."""
    features = derive_features(traces.connect(), AnalyzerConfig().features)
    return features.join(
        analysis.units.select("trajectory_id", "namespace", "success"), on="trajectory_id"
    )


def test_features_are_bounded_pointers_with_the_derive_features_columns(
    analysis: Analysis, full: pl.DataFrame
) -> None:
    assert analysis.features.columns == [
        "trajectory_id",
        "feature_id",
        "kind",
        "step_idx",
        "subject",
        "detail",
    ]
    assert analysis.features.schema["step_idx"] == pl.Int64
    per_group = (
        analysis.features.join(
            analysis.units.select("trajectory_id", "namespace", "success"), on="trajectory_id"
        )
        .group_by("namespace", "feature_id", "success")
        .len()
    )
    assert per_group["len"].max() == 3
    assert analysis.features.height < full.height
    # the pointers are the first trajectories by id of each (namespace, feature, outcome)
    expected = (
        full.sort("trajectory_id")
        .group_by("namespace", "feature_id", "success", maintain_order=True)
        .head(3)
        .select(analysis.features.columns)
        .sort("feature_id", "trajectory_id")
    )
    assert analysis.features.equals(expected)


@pytest.mark.parametrize("limit", [2, 3, 50])
def test_examples_match_the_whole_feature_table(
    analysis: Analysis, full: pl.DataFrame, limit: int
) -> None:
    checked = 0
    for row in analysis.results.iter_rows(named=True):
        for success in (True, False, None):
            rows = full.filter(
                (pl.col("namespace") == row["namespace"])
                & (pl.col("feature_id") == row["feature_id"])
            )
            if success is not None:
                rows = rows.filter(pl.col("success") == success)
            rows = rows.sort("trajectory_id").head(limit)
            expected = list(zip(rows["trajectory_id"], rows["step_idx"], strict=True))
            got = analysis.examples(
                row["namespace"], row["feature_id"], success=success, limit=limit
            )
            assert got == expected, (row["feature_id"], success, limit)
            checked += 1
    assert checked > 0


def test_showing_is_exact_from_the_store(analysis: Analysis, full: pl.DataFrame) -> None:
    ids = analysis.units["trajectory_id"].to_list()
    for feature_id in analysis.results["feature_id"].unique().to_list():
        expected = set(full.filter(pl.col("feature_id") == feature_id)["trajectory_id"])
        assert analysis.showing(feature_id, ids) == expected
        assert analysis.showing(feature_id, ids[:7]) == expected & set(ids[:7])


def test_connect_applies_memory_limit_and_threads(traces: Traces) -> None:
    con = traces.connect(memory_limit="256MB", threads=1)
    settings = dict(
        con.sql(
            "select name, value from duckdb_settings() "
            "where name in ('memory_limit', 'threads', 'temp_directory')"
        ).fetchall()
    )
    assert settings["threads"] == "1"
    assert settings["memory_limit"] in ("256.0 MB", "244.1 MiB")
    assert Path(settings["temp_directory"]).name.startswith("coach-duckdb-")
    con.close()

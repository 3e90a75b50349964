"""The Analyzer keeps the long feature table in DuckDB: ``Analysis.features`` holds bounded
example pointers, and ``examples`` / ``showing`` answer as the whole table would."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from synth import PlantedConfig, generate_planted, write_jsonl

from pipeline.analyze import Analysis, Analyzer, AnalyzerConfig, derive_features
from pipeline.ingest import Traces, ingest


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


def test_released_steps_are_scanned_from_their_parquet_file(
    traces: Traces, analysis: Analysis, tmp_path: Path
) -> None:
    traces.save(tmp_path / "tables")
    released = Traces.load(tmp_path / "tables", steps_in_memory=False)
    assert not released.steps_in_memory
    # the committed snapshot the link points at, whose files never change
    assert released.directory == (tmp_path / "tables").resolve() != tmp_path / "tables"
    con = released.connect()
    # the steps view reads the file, not an in-memory table
    plan = con.sql("explain select tool_name from steps").fetchall()
    assert "READ_PARQUET" in str(plan).upper() or "PARQUET_SCAN" in str(plan).upper()
    assert con.execute("select count(*) from steps").fetchall() == [(traces.steps.num_rows,)]
    con.close()
    # reading it back gives the same rows, and the analysis the same results
    assert released.steps.equals(traces.steps)
    again = Analyzer(AnalyzerConfig(examples_per_feature=3)).run(released)
    assert again.results.equals(analysis.results)
    assert again.features.equals(analysis.features)


def test_release_steps_needs_a_saved_copy_and_saving_again_keeps_it(
    traces: Traces, tmp_path: Path
) -> None:
    copy = Traces(traces.trajectories, traces.steps, traces.feedback)
    with pytest.raises(ValueError, match="save the tables"):
        copy.release_steps()
    copy.save(tmp_path / "a")
    copy.release_steps()
    assert not copy.steps_in_memory
    copy.save(tmp_path / "a")  # the released table is its stored file: left as it is
    copy.save(tmp_path / "b")  # elsewhere: read back and written
    for name in ("a", "b"):
        assert Traces.load(tmp_path / name).steps.equals(traces.steps)


def test_a_steps_file_from_before_a_schema_column_is_read_now(
    traces: Traces, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    # a store of the layout before snapshots (no manifest), its steps before the actor column
    traces.save(tmp_path / "tables")
    flat = tmp_path / "flat"
    shutil.copytree(tmp_path / "tables", flat)
    (flat / "snapshot.json").unlink()
    old = traces.steps.drop_columns(["actor"])
    pq.write_table(old, flat / "steps.parquet")
    loaded = Traces.load(flat, steps_in_memory=False)
    assert loaded.steps_in_memory
    assert loaded.steps.column("actor").null_count == old.num_rows

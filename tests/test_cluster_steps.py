"""Failure clusters keep the step of each example (``example_steps``, parallel to
``example_ids``), the skills distilled from them point at it, and no output prints ``#None``
when the step is unknown (an analysis saved before the clusters kept their steps)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.analyze import Analysis, Analyzer
from pipeline.analyze.queries import failure_clusters
from pipeline.config import LLMConfig
from pipeline.ingest import Traces, ingest
from pipeline.llm.items import cluster_items
from pipeline.render.report import ReportData, render_report
from pipeline.render.skillbook_md import skillbook_markdown
from pipeline.skillbook import Skill, Skillbook


def _steps(rows: list[tuple[str, int, str, str | None, bool, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "trajectory_id": pl.String,
            "step_idx": pl.Int64,
            "step_type": pl.String,
            "tool_name": pl.String,
            "is_error": pl.Boolean,
            "error_message": pl.String,
        },
        orient="row",
    ).with_columns(pl.lit(None, pl.String).alias("tool_result_text"))


def _clusters(steps: pl.DataFrame, failed: list[str]) -> pl.DataFrame:
    con = duckdb.connect()
    try:
        con.register("steps", steps.to_arrow())
        trajectories = pl.DataFrame(
            {"trajectory_id": failed, "termination_reason": ["done"] * len(failed)}
        )
        con.register("trajectories", trajectories.to_arrow())
        units = pl.DataFrame(
            {"trajectory_id": failed, "namespace": ["domain:x"] * len(failed)}
        ).with_columns(pl.lit(False).alias("success"))
        return failure_clusters(con, units)
    finally:
        con.close()


def test_each_example_points_at_the_first_error_step_of_its_signature() -> None:
    steps = _steps(
        [
            # t1: earlier other errors, then "timeout" errors (numbers are masked in a signature,
            # so the three are one): the first of those
            ("t1", 0, "tool_call", "search", False, None),
            ("t1", 1, "tool_result", "search", True, "Connection refused"),
            ("t1", 2, "tool_call", "book", False, None),
            ("t1", 3, "tool_result", "book", True, "seat 12A taken"),
            ("t1", 4, "tool_call", "search", False, None),
            ("t1", 5, "tool_result", "search", True, "timeout after 31 s"),
            ("t1", 6, "tool_call", "search", False, None),
            ("t1", 7, "tool_result", "search", True, "Timeout after 30 s"),
            # t2: one error of the same signature, same last tool
            ("t2", 0, "tool_call", "book", False, None),
            ("t2", 1, "tool_call", "search", False, None),
            ("t2", 2, "tool_result", "search", True, "timeout after 5 s"),
            # t3: no error: the step of its last tool call
            ("t3", 0, "tool_call", "search", False, None),
            ("t3", 1, "tool_call", "cancel", False, None),
            ("t3", 2, "tool_result", "cancel", False, None),
            # t4: no tool call at all: unknown
            ("t4", 0, "message", None, False, None),
        ]
    )
    frame = _clusters(steps, ["t1", "t2", "t3", "t4"])
    assert frame.schema["example_steps"] == pl.List(pl.Int64)
    rows = {r["example_ids"][0]: r for r in frame.iter_rows(named=True)}
    assert rows["t1"]["example_ids"] == ["t1", "t2"]
    assert rows["t1"]["example_steps"] == [5, 2]
    assert rows["t1"]["signature"].startswith("error=search: ")
    assert rows["t3"]["example_steps"] == [1]
    assert rows["t4"]["example_steps"] == [None]


@pytest.fixture(scope="module")
def analysed(planted: Path) -> tuple[Traces, Analysis]:
    traces = ingest([str(planted)])
    return traces, Analyzer().run(traces)


def test_cluster_skills_carry_the_steps_and_old_analyses_still_load(
    analysed: tuple[Traces, Analysis], tmp_path: Path
) -> None:
    traces, analysis = analysed
    items = cluster_items(analysis, traces, LLMConfig(), min_size=1)
    assert items
    for item in items:
        examples = item.evidence["examples"]
        row = analysis.clusters.filter(pl.col("signature") == item.evidence["signature"]).row(
            0, named=True
        )
        assert [e["trajectory_id"] for e in examples] == row["example_ids"]
        assert [e["step_idx"] for e in examples] == row["example_steps"]
        assert all(isinstance(e["step_idx"], int) for e in examples)
    # an analysis saved before the clusters kept their steps: loaded, steps unknown
    analysis.save(tmp_path / "analysis")
    clusters = tmp_path / "analysis" / "clusters.parquet"
    pl.read_parquet(clusters).drop("example_steps").write_parquet(clusters)
    old = Analysis.load(tmp_path / "analysis")
    assert "example_steps" not in old.clusters.columns
    old_items = cluster_items(old, traces, LLMConfig(), min_size=1)
    assert [i.key for i in old_items] == [i.key for i in items]
    assert all(e["step_idx"] is None for i in old_items for e in i.evidence["examples"])


def _cluster_skill(examples: list[dict[str, object]]) -> Skill:
    return Skill(
        id="sk-c1c1c1c1c1c1",
        status="proposed",
        section="pitfalls",
        namespace="domain:x",
        instruction="Retry search when it times out.",
        evidence={
            "kind": "failure_cluster",
            "signature": "error=search: timeout | last_tool=search | termination=done",
            "size": 12,
            "share": 0.4,
            "failures_in_namespace": 30,
            "stratification": "none: a failure cluster is not a contrast",
            "examples": examples,
        },
        source={"method": "llm", "pattern_id": "failure_cluster:abc"},
        created_at="t",
        updated_at="t",
    )


def test_no_output_prints_a_none_step() -> None:
    skill = _cluster_skill(
        [
            {"trajectory_id": "02a060dd-aaaa", "step_idx": None},
            {"trajectory_id": "02a060dd-bbbb", "step_idx": 7},
        ]
    )
    book = Skillbook({skill.id: skill})
    text = skillbook_markdown(book)
    assert "#None" not in text and "None" not in text
    assert "examples: `02a060dd-aaaa`, `02a060dd-bbbb`#7" in text
    trajectories = pl.DataFrame(
        {
            "trajectory_id": ["02a060dd-aaaa", "02a060dd-bbbb"],
            "source_uri": ["a.jsonl", "a.jsonl"],
            "domain": ["x", "x"],
            "task_id": ["k", "k"],
            "agent_name": ["a", "a"],
            "outcome_label": ["failure", "failure"],
            "n_steps": [3, 8],
            "termination_reason": ["done", "done"],
        }
    )
    # a clusters table without example_steps, as an older analysis saved it
    clusters = pl.DataFrame(
        {
            "namespace": ["domain:x"],
            "signature": ["error=search: timeout | last_tool=search | termination=done"],
            "size": [2],
            "share": [1.0],
            "example_ids": [["02a060dd-aaaa", "02a060dd-bbbb"]],
        }
    )
    units = pl.DataFrame({"trajectory_id": ["02a060dd-aaaa"], "success": [False]})
    last_run = {"at": "2026-01-05T00:00:00Z", "run_id": "r1", "records_read": 2, "quarantined": 0}
    last_run |= {"features_tested": 0, "significant": 0, "confounded": 0, "timings_s": {}}
    last_run["not_enough_evidence"] = []
    data = ReportData(
        trajectories, pl.DataFrame(), clusters, units, book, Path("-"), last_run=last_run
    )
    html = render_report(data)
    assert "None" not in html
    assert "<code>02a060dd-bbbb</code> step 7" in html
    with_steps = data.clusters.with_columns(pl.Series("example_steps", [[None, 4]]))
    html = render_report(replace(data, clusters=with_steps))
    assert "<code>02a060dd-bbbb</code> step 4 in" in html and "None" not in html

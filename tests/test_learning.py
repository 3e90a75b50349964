"""Learning end to end: planted behaviours are found, confounds and noise are not, shuffled
labels teach nothing, the shipped airline traces yield no confounded advice, and every active
skill's evidence matches a direct recount from the canonical tables."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from pipeline.analyze import Analyzer
from pipeline.config import Config
from pipeline.ingest import ingest
from pipeline.learn import learn
from pipeline.render import save_skillbook


def _config(tmp_path: Path, *paths: Path, **kw: object) -> Config:
    return Config(
        paths=tuple(str(p) for p in paths),
        data_dir=tmp_path / "data",
        skillbook_dir=tmp_path / "skillbook",
        out_dir=tmp_path / "prompts",
        **kw,
    )


def test_planted_behaviour_is_learned_and_confound_is_not(tmp_path: Path, planted: Path) -> None:
    result = learn(_config(tmp_path, planted))
    active = [s for s in result.skillbook.skills.values() if s.status == "active"]
    patterns = {s.source["pattern_id"] for s in active}
    assert patterns == {"unconfirmed_write:book_trip", "unconfirmed_write:cancel_trip"}
    for skill in active:
        assert "explicit yes" in skill.instruction
        assert skill.evidence["odds_ratio"] < 1 and skill.evidence["q_value"] < 0.05
        assert skill.evidence["direction"] == "harmful"
        assert skill.section == "escalation" and skill.namespace == "domain:travel"
    statuses = dict(
        zip(
            result.analysis.results["feature_id"].to_list(),
            result.analysis.results["status"].to_list(),
            strict=True,
        )
    )
    # Booking tasks are harder: the naive contrast flags book_trip, the stratified one must not.
    assert statuses["tool_called:book_trip"] == "confounded"
    assert statuses["tool_called:get_weather"] == "not_significant"


def test_evidence_matches_a_direct_recount(tmp_path: Path, planted: Path) -> None:
    result = learn(_config(tmp_path, planted))
    con = duckdb.connect()
    con.register("trajectories", result.traces.trajectories)
    con.register("steps", result.traces.steps)
    skills = [s for s in result.skillbook.skills.values() if s.status == "active"]
    assert skills
    for skill in skills:
        tool = skill.source["pattern_id"].split(":", 1)[1]
        # Recount: a write call whose preceding user message has no explicit yes.
        n_with, s_with, n_all, s_all = con.execute(
            """
            with flagged as (
                select distinct c.trajectory_id from steps c
                where c.step_type = 'tool_call' and c.tool_name = ?
                  and not regexp_matches((select u.content_text from steps u
                        where u.trajectory_id = c.trajectory_id and u.step_type = 'user'
                          and u.step_idx < c.step_idx order by u.step_idx desc limit 1),
                        '\\b(yes|proceed)\\b', 'i'))
            select count(*) filter (where f.trajectory_id is not null),
                   count(*) filter (where f.trajectory_id is not null
                                    and t.outcome_label = 'success'),
                   count(*), count(*) filter (where t.outcome_label = 'success')
            from trajectories t left join flagged f using (trajectory_id)
        """,
            [tool],
        ).fetchone()
        ev = skill.evidence
        assert (ev["n_with"], ev["successes_with"]) == (n_with, s_with)
        assert (ev["n_without"], ev["successes_without"]) == (n_all - n_with, s_all - s_with)
        assert ev["rate_with"] == pytest.approx(s_with / n_with, abs=1e-6)
        for example in ev["examples"]:
            row = con.execute(
                "select step_type, tool_name from steps where trajectory_id = ? and step_idx = ?",
                [example["trajectory_id"], example["step_idx"]],
            ).fetchone()
            assert row == ("tool_call", tool)


def _shuffled(traces: object, seed: int) -> object:
    table = traces.trajectories  # type: ignore[attr-defined]
    labels = table.column("outcome_label").to_pylist()
    random.Random(seed).shuffle(labels)
    index = table.schema.get_field_index("outcome_label")
    shuffled = table.set_column(index, "outcome_label", pa.array(labels, pa.string()))
    return replace(traces, trajectories=shuffled)  # type: ignore[type-var]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_null_shuffled_labels_give_no_significant_feature(planted: Path, seed: int) -> None:
    traces = _shuffled(ingest([planted]), seed)
    results = Analyzer().run(traces).results  # type: ignore[arg-type]
    assert results.height > 0
    assert (results["status"] == "significant").sum() == 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_null_on_shipped_traces(shipped_traces: Path, seed: int) -> None:
    traces = _shuffled(ingest([shipped_traces]), seed)
    results = Analyzer().run(traces).results  # type: ignore[arg-type]
    assert results.height > 20
    assert (results["status"] == "significant").sum() == 0


@pytest.mark.slow
def test_shipped_traces_give_no_confounded_advice(tmp_path: Path, shipped_traces: Path) -> None:
    result = learn(_config(tmp_path, shipped_traces))
    results = result.analysis.results
    by_id = {r["feature_id"]: r for r in results.iter_rows(named=True)}
    # The naive contrast says: transfer to a human more, book less. Within task it does not.
    transfer = by_id["tool_called:transfer_to_human_agents"]
    assert transfer["naive_q_value"] < 0.05 and transfer["naive_odds_ratio"] > 1
    assert transfer["q_value"] >= 0.05 and transfer["status"] == "confounded"
    booking = by_id["tool_called:book_reservation"]
    assert booking["naive_q_value"] < 0.05 and booking["status"] == "confounded"
    assert "task (50 tasks" in transfer["stratification"]
    assert "adjusted for agent (4 agents)" in transfer["stratification"]
    for skill in result.skillbook.skills.values():
        assert (
            "transfer" not in skill.source["pattern_id"] or skill.evidence["direction"] == "harmful"
        )
        assert skill.source["pattern_id"] not in {
            "tool_called:book_reservation",
            "tool_called:search_direct_flight",
        }
    summary = result.summary()
    assert summary["trajectories"] == 350 and summary["quarantined"] == 0
    assert summary["llm_calls"] == 0
    assert (
        summary["skills"]["active"]
        == summary["significant"]
        == sum(1 for s in result.skillbook.skills.values() if s.status == "active")
    )


def test_two_runs_are_byte_identical(
    tmp_path: Path, planted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    outputs = []
    for name in ("a", "b"):
        result = learn(_config(tmp_path / name, planted))
        files = sorted(result.prompts) + [
            tmp_path / name / "prompts" / "manifest.json",
            tmp_path / name / "skillbook" / "skillbook.json",
            tmp_path / name / "skillbook" / "SKILLBOOK.md",
        ]
        outputs.append([f.read_bytes() for f in files])
    assert outputs[0] == outputs[1]


def test_rerun_on_same_input_changes_nothing(tmp_path: Path, planted: Path) -> None:
    config = _config(tmp_path, planted)
    first = learn(config)
    book = (config.skillbook_dir / "skillbook.json").read_bytes()
    prompt = first.prompts[0].read_bytes()
    second = learn(config)
    assert second.skillbook.version == first.skillbook.version == 1
    assert not second.merge.changed
    assert (config.skillbook_dir / "skillbook.json").read_bytes() == book
    assert second.prompts[0].read_bytes() == prompt
    history = json.loads(book)["history"]
    assert len(history) == 1 and history[0]["counts"]["trajectories"] == 360


def test_propose_mode_keeps_new_skills_proposed(tmp_path: Path, planted: Path) -> None:
    result = learn(_config(tmp_path, planted, mode="propose"))
    assert result.skillbook.by_status()["proposed"] == 2
    assert result.skillbook.by_status()["active"] == 0
    text = result.prompts[0].read_text()
    assert "explicit yes" not in text


def test_tasks_that_never_repeat_are_contrasted_within_the_domain(tmp_path: Path) -> None:
    """One run per task and one agent (as in SWE-bench): the domain is the one stratum and the
    test is Fisher's exact test. The planted behaviour passes the FDR, but so does the booking
    confound, which only repeated tasks could expose: both become proposals, none is active."""
    from synth import SynthConfig, generate, write_jsonl

    path = write_jsonl(
        tmp_path / "once.jsonl", generate(SynthConfig(n_tasks=360, trials=1, effect=-3.0, seed=3))
    )
    config = Config(
        paths=(str(path),),
        data_dir=tmp_path / "data",
        skillbook_dir=tmp_path / "sb",
        out_dir=tmp_path / "out",
    )
    result = learn(config)
    analysis = result.analysis
    assert analysis.namespaces == {
        "domain:travel": "none finer than the domain; tasks do not repeat"
    }
    results = analysis.results
    assert set(results["method"]) == {"fisher"}
    # one stratum: the stratified contrast is the naive one
    assert results["p_value"].to_list() == results["naive_p_value"].to_list()
    passed = results.filter(results["q_value"] < 0.05)
    assert {"unconfirmed_write", "tool_called"} <= set(passed["kind"])
    assert set(passed["status"]) == {"suggestive"}
    statuses = {s.status for s in result.skillbook.skills.values()}
    assert statuses == {"proposed"}


def test_a_rerun_with_nothing_new_does_no_work(tmp_path: Path, planted: Path) -> None:
    """No new trace, setting, Skillbook edit or template change: no stage runs and the last
    run's figures are reported; any such change makes the next run do the work again."""
    import os
    import shutil

    from pipeline.analyze import AnalyzerConfig

    data = tmp_path / "in"
    data.mkdir()
    shutil.copy(planted, data / "planted.jsonl")
    config = _config(tmp_path, data)
    first = learn(config)
    assert not first.unchanged
    again = learn(config)
    assert again.unchanged
    assert set(again.timings) == {"check"}
    assert again.analysis.features.height == 0  # the long feature table was not rebuilt
    keep = ("skills", "skillbook_version", "features_tested", "significant", "stratification")
    assert {k: again.summary()[k] for k in keep} == {k: first.summary()[k] for k in keep}
    assert not again.merge.changed
    assert again.prompts == first.prompts
    # a different setting
    changed = replace(config, analyzer=AnalyzerConfig(min_support=12))
    assert not learn(changed).unchanged
    assert learn(changed).unchanged
    # an input file touched (same bytes, new modification time): read again, nothing added
    stat = (data / "planted.jsonl").stat()
    os.utime(data / "planted.jsonl", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = learn(changed)
    assert not touched.unchanged
    assert touched.traces.counts_this_run["records_read"] == 0
    # a person's decision changes the Skillbook: the next run merges again
    book = touched.skillbook
    skill_id = next(iter(book.skills))
    book.decide(skill_id, "retire", actor="test", note="", now="2026-11-22T00:00:00Z")
    save_skillbook(book, config.skillbook_dir)
    assert not learn(changed).unchanged

"""``coach learn`` words each skill with when it goes wrong and what successful runs did instead
(pipeline.extract.explain), and every active skill learned where successful runs of the same
task exist carries an exemplar that points at a real step of such a run."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from synth import PlantedConfig, airline_domain, generate_planted, write_jsonl

from pipeline.config import Config
from pipeline.ingest import Traces
from pipeline.learn import learn


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("explain")
    path = write_jsonl(
        work / "planted.jsonl",
        generate_planted(
            PlantedConfig(domains=(airline_domain(effect=0.3),), n_trajectories=1000, seed=2)
        ),
    )
    learn(
        Config(
            paths=(path,),
            data_dir=work / ".coach",
            skillbook_dir=work / "skillbook",
            out_dir=work / "prompts_out",
        )
    )
    return work


def _skills(work: Path) -> list[dict]:
    return json.loads((work / "skillbook" / "skillbook.json").read_text())["skills"]


def test_every_active_skill_has_an_exemplar(learned: Path) -> None:
    units = pl.read_parquet(learned / ".coach" / "analysis" / "units.parquet")
    by_stratum = units.group_by("namespace", "stratum").agg(pl.col("success").any())
    active = [s for s in _skills(learned) if s["status"] == "active"]
    assert active
    for skill in active:
        has_successes = by_stratum.filter(
            (pl.col("namespace") == skill["namespace"]) & pl.col("success")
        ).height
        if has_successes:
            assert skill["evidence"].get("exemplars"), skill["id"]


def test_an_instead_exemplar_checked_against_the_traces(learned: Path) -> None:
    """By hand: the exemplar's step is in a successful run, in a task where a failed run took
    the skill's action, and the step's own text is what the exemplar quotes."""
    skill = next(
        s
        for s in _skills(learned)
        if s["status"] == "active"
        and s["evidence"].get("direction") == "harmful"
        and any(e["role"] == "instead" for e in s["evidence"].get("exemplars", []))
    )
    exemplar = next(e for e in skill["evidence"]["exemplars"] if e["role"] == "instead")
    traces = Traces.load(learned / ".coach" / "tables")
    steps = pl.from_arrow(traces.steps)
    trajectories = pl.from_arrow(traces.trajectories)
    assert isinstance(steps, pl.DataFrame) and isinstance(trajectories, pl.DataFrame)
    run = trajectories.filter(pl.col("trajectory_id") == exemplar["trajectory_id"]).row(
        0, named=True
    )
    assert run["outcome_label"] == "success"
    step = steps.filter(
        (pl.col("trajectory_id") == exemplar["trajectory_id"])
        & (pl.col("step_idx") == exemplar["step_idx"])
    ).row(0, named=True)
    if step["step_type"] == "tool_call":
        assert exemplar["text"].startswith(step["tool_name"] + "(")
        assert step["tool_name"] not in skill["evidence"].get("pattern_id", "")
    else:
        assert exemplar["text"] == (step["content_text"] or "")[: len(exemplar["text"])]
    # a failed run of the same task showed the skill's action
    task = run["task_id"]
    failed_same_task = trajectories.filter(
        (pl.col("task_id") == task) & (pl.col("outcome_label") == "failure")
    )["trajectory_id"].to_list()
    assert failed_same_task
    instead = skill["evidence"]["instead"]
    assert instead["pairs"] >= 1 and 0 < instead["share"] <= 1
    assert instead["summary"]


def test_the_prompt_line_says_what_to_do_instead(learned: Path) -> None:
    lines = [
        s["instruction"]
        for s in _skills(learned)
        if s["status"] == "active" and "at that point instead" in s["instruction"]
    ]
    assert lines, "some active skill is worded with its alternative"
    prompt = (learned / "prompts_out" / "domain-airline.md").read_text()
    assert any(line in prompt for line in lines)
    # the exemplars stay out of the prompt
    for s in _skills(learned):
        for e in s["evidence"].get("exemplars", []):
            assert e["trajectory_id"] not in prompt


def test_the_distillation_request_carries_the_group_condition_and_exemplars(
    tmp_path: Path,
) -> None:
    """One request per consolidated skill: its corroborating patterns, the alternative and the
    exemplars are in the request an LLM would get."""
    from pipeline.analyze import Analyzer, FeatureConfig
    from pipeline.config import LLMConfig
    from pipeline.extract import SkillExtractor, explain
    from pipeline.ingest import ingest
    from pipeline.llm.distill import DISTILL_TEMPLATE
    from pipeline.llm.items import pattern_items
    from pipeline.llm.prompt import ENVIRONMENT, package_template

    path = write_jsonl(
        tmp_path / "planted.jsonl",
        generate_planted(
            PlantedConfig(domains=(airline_domain(effect=0.3),), n_trajectories=1000, seed=2)
        ),
    )
    traces = ingest([path])
    analysis = Analyzer().run(traces)
    candidates = explain(SkillExtractor().run(analysis), analysis, traces, FeatureConfig())
    items = pattern_items(candidates, analysis, traces, LLMConfig())
    assert len(items) == len(candidates), "one request per consolidated skill"
    template = ENVIRONMENT.from_string(package_template(DISTILL_TEMPLATE))
    grouped = next(i for i in items if i.context["group"])
    text = template.render(**grouped.context)
    assert "The same runs also show:" in text
    assert all(pattern in text for pattern in grouped.context["group"])
    explained = next(i for i in items if i.context["instead"] and i.context["exemplars"])
    text = template.render(**explained.context)
    assert "runs with the other outcome instead:" in text
    assert explained.context["exemplars"][0] in text

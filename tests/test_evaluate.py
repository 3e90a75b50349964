"""Held-out validation: splits, per-skill measurement on the test part, coach evaluate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from synth import PlantedConfig, airline_domain, generate_planted, write_jsonl

from pipeline.cli import main
from pipeline.config import Config
from pipeline.errors import InputError
from pipeline.evaluate import evaluate, split_traces, validate
from pipeline.ingest import Traces, ingest
from pipeline.learn import learn
from pipeline.skillbook import Skill, Skillbook


@pytest.fixture(scope="module")
def planted_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("evaluate") / "planted.jsonl"
    config = PlantedConfig(domains=(airline_domain(effect=0.35),), n_trajectories=900, seed=3)
    return write_jsonl(path, generate_planted(config))


@pytest.fixture(scope="module")
def planted_traces(planted_runs: Path) -> Traces:
    return ingest([planted_runs])


def _tasks(traces: Traces) -> set[str]:
    return set(traces.trajectories.column("task_id").to_pylist())


def test_task_split_keeps_every_task_on_one_side(planted_traces: Traces) -> None:
    train, test = split_traces(planted_traces, "task", 0.7, seed=1)
    assert not _tasks(train) & _tasks(test)
    assert train.trajectories.num_rows + test.trajectories.num_rows == 900
    assert 0.6 < train.trajectories.num_rows / 900 < 0.8
    # steps follow their trajectories
    assert set(train.steps.column("trajectory_id").to_pylist()) == set(
        train.trajectories.column("trajectory_id").to_pylist()
    )


def test_random_split_is_seeded_and_time_split_is_ordered(planted_traces: Traces) -> None:
    a, _ = split_traces(planted_traces, "random", 0.5, seed=1)
    b, _ = split_traces(planted_traces, "random", 0.5, seed=1)
    c, _ = split_traces(planted_traces, "random", 0.5, seed=2)
    ids = [set(t.trajectories.column("trajectory_id").to_pylist()) for t in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]
    assert len(ids[0]) == 450
    # no start times in Chat JSONL: ordered by trajectory id
    train, test = split_traces(planted_traces, "time", 0.25)
    assert max(train.trajectories.column("trajectory_id").to_pylist()) < min(
        test.trajectories.column("trajectory_id").to_pylist()
    )


@pytest.mark.parametrize(("how", "ratio"), [("by-user", 0.5), ("task", 1.0), ("random", 0.0)])
def test_bad_splits_are_refused(planted_traces: Traces, how: str, ratio: float) -> None:
    with pytest.raises(InputError):
        split_traces(planted_traces, how, ratio)


def test_learned_skills_replicate_on_held_out_tasks(planted_traces: Traces) -> None:
    train, test = split_traces(planted_traces, "task", 0.6, seed=0)
    result = evaluate(train, test)
    summary = result.summary()
    assert summary["skills"]["active"] >= 3
    assert summary["measured"] == summary["validated"] == len(result.validations)
    by_pattern = {v.pattern_id: v for v in result.validations}
    confirm = by_pattern["unconfirmed_write:cancel_reservation"]
    assert confirm.direction_holds and confirm.odds_ratio < 1
    assert confirm.method == "cmh" and confirm.n_strata >= 3
    assert confirm.n_with + confirm.n_without == test.trajectories.num_rows
    holds = sum(bool(v.direction_holds) for v in result.validations)
    assert summary["replication_rate"] == holds / summary["measured"]
    assert summary["replication_rate"] >= 0.75


def _skill(pattern: str, direction: str) -> Skill:
    return Skill(
        id=f"sk-{pattern}",
        status="active",
        section="pitfalls",
        namespace="domain:airline",
        instruction="...",
        evidence={"direction": direction, "odds_ratio": 0.5},
        source={"method": "rule", "pattern_id": pattern},
        created_at=None,
        updated_at=None,
    )


def test_reversed_and_unmeasurable_skills(planted_traces: Traces) -> None:
    validations = validate(
        [
            _skill("unconfirmed_write:cancel_reservation", "helpful"),  # learned the wrong way
            _skill("tool_called:never_called", "harmful"),
            _skill("transfer:transfer_to_human_agents", "harmful"),
        ],
        planted_traces,
    )
    verdicts = {v.pattern_id: v.verdict for v in validations}
    assert verdicts == {
        "unconfirmed_write:cancel_reservation": "reversed",
        "tool_called:never_called": "not measurable",
        "transfer:transfer_to_human_agents": "replicated",
    }
    missing = next(v for v in validations if v.pattern_id == "tool_called:never_called")
    assert missing.n_with == 0 and math.isnan(missing.q_value)
    assert missing.to_dict()["q_value"] is None


def test_cli_evaluate_split_json(planted_runs: Path) -> None:
    result = CliRunner().invoke(
        main, ["evaluate", str(planted_runs), "--split", "task", "--json", "-q"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["split"] == "task 0.7 (seed 0)"
    assert payload["train_trajectories"] + payload["test_trajectories"] == 900
    assert payload["validations"] and {"verdict", "odds_ratio"} <= set(payload["validations"][0])


def test_cli_evaluate_needs_a_split_or_two_parts(planted_runs: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["evaluate", str(planted_runs)]).exit_code == 2
    assert runner.invoke(main, ["evaluate", "--train", str(planted_runs)]).exit_code == 2


def test_cli_evaluate_apply_records_validations(tmp_path: Path, planted_runs: Path) -> None:
    skillbook = tmp_path / "sb"
    learn(
        Config(
            paths=(str(planted_runs),),
            data_dir=tmp_path / "data",
            skillbook_dir=skillbook,
            out_dir=tmp_path / "out",
        )
    )
    held_out = write_jsonl(
        tmp_path / "more.jsonl",
        generate_planted(
            PlantedConfig(domains=(airline_domain(effect=0.35),), n_trajectories=600, seed=9)
        ),
    )
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--train",
            str(planted_runs),
            "--test",
            str(held_out),
            "--skillbook",
            str(skillbook),
            "--apply",
            "--json",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["recorded"] and not payload["not_in_skillbook"]
    book = Skillbook.load(skillbook / "skillbook.json")
    validated = [s for s in book.skills.values() if s.validation is not None]
    assert {s.id for s in validated} == set(payload["recorded"])
    assert all("held" in s.validation and "odds_ratio" in s.validation for s in validated)


def test_cli_evaluate_apply_without_skillbook_is_a_domain_error(
    tmp_path: Path, planted_runs: Path
) -> None:
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(planted_runs),
            "--split",
            "random",
            "--skillbook",
            str(tmp_path / "none"),
            "--apply",
        ],
    )
    assert result.exit_code == 1
    assert "coach learn" in result.output


def test_validations_use_the_units_of_the_test_part(planted_traces: Traces) -> None:
    """A trajectory's behaviour is looked up in the test part only."""
    train, test = split_traces(planted_traces, "random", 0.5, seed=3)
    (validation,) = validate([_skill("transfer:transfer_to_human_agents", "harmful")], test)
    ids = pl.from_arrow(test.trajectories)["trajectory_id"]  # type: ignore[index]
    assert validation.n_with + validation.n_without == len(ids)


def test_the_command_line_offers_the_splits_of_the_library() -> None:
    from pipeline import evaluate
    from pipeline.cli import evaluate as cli_eval

    assert cli_eval.SPLITS == evaluate.SPLITS

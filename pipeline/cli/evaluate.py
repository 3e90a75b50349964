"""``coach evaluate``: learn on one part of the traces, check the skills on the other."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.options import (
    FDR_OPTION,
    FORMAT_OPTION,
    MIN_SUPPORT_OPTION,
    MODE_OPTION,
    SKILLBOOK_OPTION,
    common,
    domain_errors,
    emit,
    existing_paths,
    paths_argument,
    say,
)
from pipeline.config import AnalyzerConfig, Config, timestamp
from pipeline.errors import InputError
from pipeline.fileio import lock

if TYPE_CHECKING:
    from pipeline.evaluate import Evaluation
    from pipeline.ingest import Traces

# pipeline.evaluate.SPLITS, written out so that the command line loads no analysis module
# until a command runs (a test checks that the two agree)
SPLITS = ("time", "task", "random")


def _ingest(paths: tuple[str, ...], fmt: str | None, reward_threshold: float) -> Traces:
    from pipeline.ingest import ingest

    return ingest(paths, format=fmt, reward_threshold=reward_threshold)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _text(result: Evaluation) -> str:
    summary = result.summary()
    lines = [
        f"split: {summary['split']}; {summary['train_trajectories']} training trajectories, "
        f"{summary['test_trajectories']} test trajectories",
        "learned: "
        + ", ".join(f"{n} {status}" for status, n in summary["skills"].items() if n)
        + (" (none)" if not any(summary["skills"].values()) else ""),
    ]
    for v in result.validations:
        rates = (
            f"success {v.rate_with:.0%} with vs {v.rate_without:.0%} without"
            if v.n_with and v.n_without
            else "no test runs with and without it"
        )
        lines.append(f"  [{v.status}] {v.verdict}: {v.pattern_id} ({v.namespace})")
        lines.append(
            f"      learned {v.train_direction} (odds ratio {_num(v.train_odds_ratio)}); "
            f"test n={v.n_with} "
            f"with / {v.n_without} without, {rates}; odds ratio {v.odds_ratio:.2f} "
            f"({v.method}, {v.n_strata} strata), p={v.p_value:.4f}, q={v.q_value:.4f}"
        )
    rate = summary["replication_rate"]
    lines.append(
        f"replication: direction holds for {summary['replicated_direction']} of "
        f"{summary['measured']} measurable skills"
        + (f" ({rate:.0%})" if rate is not None else "")
        + f", still significant: {summary['significant']}; "
        f"{summary['validated'] - summary['measured']} not measurable on the test part"
    )
    if "recorded" in summary:
        lines.append(
            f"recorded in the Skillbook: {len(summary['recorded'])} validations"
            + (
                f"; not in it: {len(summary['not_in_skillbook'])}"
                if summary["not_in_skillbook"]
                else ""
            )
        )
    return "\n".join(lines)


@click.command("evaluate")
@paths_argument(default=None)
@click.option(
    "--train",
    "train_paths",
    multiple=True,
    type=click.Path(),
    callback=existing_paths,
    help="Training traces (repeatable).",
)
@click.option(
    "--test",
    "test_paths",
    multiple=True,
    type=click.Path(),
    callback=existing_paths,
    help="Held-out traces (repeatable).",
)
@click.option(
    "--split",
    type=click.Choice(SPLITS),
    default=None,
    help="Split PATHS: by start time, by task (all runs of a task on one side) or at random.",
)
@click.option(
    "--ratio",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.7,
    show_default=True,
    help="Share of trajectories in the training part (with --split).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the task and random splits."
)
@FORMAT_OPTION
@click.option(
    "--reward-threshold",
    type=float,
    default=Config.reward_threshold,
    show_default=True,
    help="A reward at or above it labels success.",
)
@MODE_OPTION
@MIN_SUPPORT_OPTION
@FDR_OPTION
@SKILLBOOK_OPTION
@click.option(
    "--apply",
    is_flag=True,
    help="Record each validation in the Skillbook of --skillbook (skills with the same id).",
)
@common
@domain_errors
def evaluate_command(
    paths: tuple[str, ...],
    train_paths: tuple[str, ...],
    test_paths: tuple[str, ...],
    split: str | None,
    ratio: float,
    seed: int,
    fmt: str | None,
    reward_threshold: float,
    mode: str,
    min_support: int,
    fdr: float,
    skillbook_dir: Path,
    apply: bool,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Held-out validation: learn skills on a training part of the traces (in memory; nothing is
    written unless --apply), then measure each active and proposed skill on the test part with
    the same features and within-task contrast, and report the share whose direction holds.

    Give --train and --test, or PATHS with --split time|task|random and --ratio. --mode,
    --min-support and --fdr are those of coach learn; --fdr is also the level at which a skill
    "stays significant" on the test part.

    Example: coach evaluate traces/ --split task --ratio 0.7 --json
    """
    from pipeline.evaluate import evaluate, split_traces

    progress = say(quiet)
    if train_paths or test_paths:
        if not (train_paths and test_paths) or paths or split:
            raise click.UsageError("give both --train and --test, or PATHS with --split")
        train = _ingest(train_paths, fmt, reward_threshold)
        test = _ingest(test_paths, fmt, reward_threshold)
        how = "given"
    else:
        if not paths or not split:
            raise click.UsageError(
                "give PATHS with --split time|task|random, or --train and --test"
            )
        train, test = split_traces(_ingest(paths, fmt, reward_threshold), split, ratio, seed)
        how = f"{split} {ratio:g}" + (f" (seed {seed})" if split != "time" else "")
    progress(f"evaluate: learning on {train.trajectories.num_rows} trajectories")
    config = AnalyzerConfig(min_support=min_support, fdr=fdr)
    now = timestamp()
    result = evaluate(train, test, config, mode=mode, now=now, split=how)
    if apply:
        result.extra.update(_record(result, skillbook_dir, now))
    emit(as_json, result.summary(), _text(result))


def _record(result: Evaluation, skillbook_dir: Path, now: str) -> dict[str, Any]:
    """Record the validations of skills present in the Skillbook at ``skillbook_dir``."""
    from pipeline.render import save_skillbook
    from pipeline.skillbook import Skillbook

    path = skillbook_dir / "skillbook.json"
    if not path.exists():
        raise InputError(f"{path}: no Skillbook to record validations in; run 'coach learn' first")
    recorded, missing = [], []
    with lock(skillbook_dir / ".skillbook.lock"):
        book = Skillbook.load(path)
        for v in result.validations:
            if v.skill_id not in book.skills:
                missing.append(v.skill_id)
                continue
            record = v.to_dict() | {"split": result.split, "held": v.direction_holds}
            book.record_validation(v.skill_id, record, now)
            recorded.append(v.skill_id)
        save_skillbook(book, skillbook_dir)
    return {"recorded": recorded, "not_in_skillbook": missing}

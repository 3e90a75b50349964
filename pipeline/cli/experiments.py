"""``coach assign`` (which prompt a unit gets) and ``coach experiment list|start|stop``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.cli.options import (
    CONTEXT,
    OUT_OPTION,
    SKILLBOOK_OPTION,
    common,
    domain_errors,
    emit,
    parse_share,
    say,
)
from pipeline.cli.review import (
    ACTOR_OPTION,
    NOTE_OPTION,
    change_skillbook,
    load_skillbook,
    resolve_actor,
)
from pipeline.config import timestamp
from pipeline.experiment import (
    ExperimentSettings,
    assign_unit,
    load_manifest,
    start_experiment,
    stop_experiment,
)

__all__ = ["assign_command", "experiment_group"]


@click.command("assign", context_settings=CONTEXT)
@click.argument("namespace")
@click.argument("unit_id")
@OUT_OPTION
@common
@domain_errors
def assign_command(
    namespace: str, unit_id: str, out_dir: Path, data_dir: Path, as_json: bool, quiet: bool
) -> None:
    """Which prompt a unit (user, session or conversation id) gets in NAMESPACE: the arm, its
    file and prompt version, from OUT/manifest.json. Deterministic: the same unit always gets
    the same arm of an experiment.

    Example: coach assign domain:airline user-4821 --json
    """
    assignment = assign_unit(load_manifest(out_dir / "manifest.json"), namespace, unit_id)
    emit(
        as_json,
        assignment.as_dict(),
        f"{assignment.arm} {out_dir / assignment.file} {assignment.prompt_version}",
    )


@click.group("experiment", context_settings=CONTEXT)
def experiment_group() -> None:
    """Prompt experiments: skills under test shown to a random share of traffic.

    Example: coach experiment list --all
    """


def _line(experiment: dict[str, Any]) -> str:
    arms = ", ".join(f"{a['arm']} {a['share']:.0%}" for a in experiment["arms"])
    end = f", ended {experiment['ended_at']}: {experiment['ended_because']}"
    return (
        f"{experiment['id']} {experiment['namespace']} {experiment['status']} since "
        f"{experiment['started_at']}{end if experiment['status'] == 'ended' else ''}; "
        f"testing {', '.join(experiment['skill_ids'])}; arms {arms}"
    )


@experiment_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Ended experiments too.")
@SKILLBOOK_OPTION
@common
@domain_errors
def list_command(
    show_all: bool, skillbook_dir: Path, data_dir: Path, as_json: bool, quiet: bool
) -> None:
    """The running experiments (with --all, the ended ones too).

    Example: coach experiment list --all
    """
    book = load_skillbook(skillbook_dir)
    shown = [e for e in book.experiments if show_all or e["status"] == "running"]
    emit(
        as_json,
        {"experiments": shown},
        "\n".join(_line(e) for e in shown) or "no experiment running",
    )


@experiment_group.command("start")
@click.argument("namespace")
@click.option(
    "--skill",
    "skill_refs",
    multiple=True,
    required=True,
    help="A proposed skill of NAMESPACE to test (id or id prefix); repeatable, up to 7.",
)
@click.option(
    "--share",
    default="balanced",
    show_default=True,
    callback=parse_share,
    metavar="SHARE|balanced",
    help="Share of units given a candidate prompt (balanced: every arm the same share).",
)
@SKILLBOOK_OPTION
@OUT_OPTION
@NOTE_OPTION
@ACTOR_OPTION
@common
@domain_errors
def start_command(
    namespace: str,
    skill_refs: tuple[str, ...],
    share: float | None,
    skillbook_dir: Path,
    out_dir: Path,
    note: str | None,
    actor: str | None,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Start an experiment on NAMESPACE testing the given proposed skills (for sections whose
    mode is propose, where learn starts none itself). Refused while one runs there.

    Example: coach experiment start domain:airline --skill sk-3f2a --share 0.2
    """
    who = resolve_actor(actor)
    _book, experiment, prompts = change_skillbook(
        skillbook_dir,
        out_dir,
        data_dir,
        quiet,
        lambda book: start_experiment(
            book,
            namespace,
            list(skill_refs),
            settings=ExperimentSettings(share=share),
            now=timestamp(),
            actor=who,
            note=note,
        ),
    )
    say(quiet)(f"prompts rendered: {', '.join(prompts) or 'none'}")
    emit(as_json, {"experiment": experiment, "prompts": prompts}, _line(experiment))


@experiment_group.command("stop")
@click.argument("namespace")
@SKILLBOOK_OPTION
@OUT_OPTION
@NOTE_OPTION
@ACTOR_OPTION
@common
@domain_errors
def stop_command(
    namespace: str,
    skillbook_dir: Path,
    out_dir: Path,
    note: str | None,
    actor: str | None,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """End the experiment running on NAMESPACE: its skills stay proposed with the evidence so
    far, and the candidate prompts are removed. learn starts a new one where proposals wait
    unless it runs with --no-experiments.

    Example: coach experiment stop domain:airline --note "holiday traffic"
    """
    who = resolve_actor(actor)
    _book, experiment, prompts = change_skillbook(
        skillbook_dir,
        out_dir,
        data_dir,
        quiet,
        lambda book: stop_experiment(book, namespace, now=timestamp(), actor=who, note=note),
    )
    emit(as_json, {"experiment": experiment, "prompts": prompts}, _line(experiment))

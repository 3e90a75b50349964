"""The ``coach`` command line: a thin layer over the library.

Exit codes: 0 success, 1 a domain error (message says what and how to fix), 2 bad usage, 3 done
but this run quarantined input (``ingest`` and ``learn``; see ``quarantine.jsonl``).
Data goes to stdout, progress and diagnostics to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from pipeline.cli.live import ingesting, learning
from pipeline.cli.llm_options import LLM_OPTIONS, llm_config
from pipeline.cli.options import (
    BASE_PROMPT_OPTION,
    CONTEXT,
    FDR_OPTION,
    FORMAT_OPTION,
    MAX_LESSONS_OPTION,
    MIN_SUPPORT_OPTION,
    MODE_OPTION,
    OUT_OPTION,
    SKILLBOOK_OPTION,
    TEMPLATES_OPTION,
    common,
    domain_errors,
    emit,
    parse_share,
    paths_argument,
    say,
)
from pipeline.cli.unread import exit_if_quarantined, exit_if_unread
from pipeline.config import AnalyzerConfig, Config
from pipeline.render import evidence_line
from pipeline.skillbook import DEFAULT_HALF_LIFE_DAYS, MODES, SECTIONS
from pipeline.version import __version__


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="coach")
@click.pass_context
def main(ctx: click.Context) -> None:
    """coach: learn evidence-backed skills from agent traces and render better system prompts.

    Options can also be set in coach.toml or [tool.coach] in pyproject.toml.

    Example: coach learn traces/
    """
    ctx.default_map = _settings_defaults(ctx.invoked_subcommand)


def _settings_defaults(command: str | None) -> dict[str, Any] | None:
    """click's default_map from the settings file of the current directory (pipeline.cli.settings),
    with the values for ``command`` checked. The file is input like the options: an error in it
    is bad usage (exit 2)."""
    from pipeline.cli.settings import default_map, find_settings, load_settings
    from pipeline.errors import SettingsFileError

    try:
        path = find_settings(Path.cwd())
        return default_map(main, load_settings(path), path, command) if path else None
    except SettingsFileError as exc:
        raise click.UsageError(str(exc)) from exc


_ingest_options = [
    FORMAT_OPTION,
    click.option(
        "--reward-threshold",
        type=float,
        default=Config.reward_threshold,
        show_default=True,
        help="A reward at or above it labels a trajectory success.",
    ),
    click.option(
        "--outcome-from",
        "outcome_feedback",
        default=None,
        metavar="NAME",
        help="The score/feedback name that is the outcome where a format has none "
        "(default: outcome, success, resolved, is_correct, correctness, reward, pass, ...).",
    ),
    click.option(
        "--max-record-mb",
        type=click.IntRange(min=1),
        default=Config.max_record_bytes >> 20,
        show_default=True,
        help="A JSON Lines line longer than this is quarantined unparsed.",
    ),
    click.option(
        "--rebuild",
        is_flag=True,
        help="Read every input again instead of adding only new files to the stored tables.",
    ),
    click.option(
        "--strict",
        is_flag=True,
        help="Exit 1 without writing anything if this run quarantines a record or a file "
        "(without it: exit 3 after writing).",
    ),
]


def _ingesting(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_ingest_options):
        func = option(func)
    return func


def _parse_section_modes(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    out = []
    for value in values:
        section, _, mode = value.partition("=")
        if section not in SECTIONS or mode not in MODES:
            raise click.BadParameter(
                f"{value!r}: use SECTION=MODE with SECTION one of {', '.join(SECTIONS)} and MODE "
                f"one of {', '.join(MODES)}"
            )
        out.append((section, mode))
    return tuple(out)


_learning_options = [
    SKILLBOOK_OPTION,
    OUT_OPTION,
    MODE_OPTION,
    click.option(
        "--section-mode",
        "section_modes",
        multiple=True,
        callback=_parse_section_modes,
        metavar="SECTION=MODE",
        help="Learning mode of one section (procedures, pitfalls, tool-usage, escalation, "
        "feedback, improvements): auto, propose or off; repeatable. improvements is never auto.",
    ),
    click.option(
        "--half-life-days",
        type=click.FloatRange(0, min_open=True),
        default=DEFAULT_HALF_LIFE_DAYS,
        show_default=True,
        help="Recency weighting of evidence across runs: its weight halves every this many days.",
    ),
    click.option(
        "--experiments/--no-experiments",
        default=True,
        show_default=True,
        help="Test proposed skills on live traffic: render candidate prompts beside the "
        "control prompt and decide from the runs that used them (see 'coach assign').",
    ),
    click.option(
        "--experiment-share",
        default="balanced",
        show_default=True,
        callback=parse_share,
        metavar="SHARE|balanced",
        help="Share of units (users, sessions) given a candidate prompt while an experiment "
        "runs; balanced: every arm the same share ((m-1)/m of them for m arms), the most "
        "precise; a lower share shows fewer units untested lines.",
    ),
    click.option(
        "--experiment-alpha",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=0.05,
        show_default=True,
        help="Chance, under nightly looks, that an experiment promotes a skill that does not "
        "help (each skill under test gets its share of it; the same for rejecting one as "
        "harmful that does not harm).",
    ),
    click.option(
        "--holdback-share",
        type=click.FloatRange(0, 1, max_open=True),
        default=0.0,
        show_default=True,
        help="Share of units given prompts without some of a namespace's active skills, so "
        "that a skill that stopped helping is caught and retired (0: no holdback).",
    ),
    MIN_SUPPORT_OPTION,
    FDR_OPTION,
    TEMPLATES_OPTION,
    BASE_PROMPT_OPTION,
    MAX_LESSONS_OPTION,
    *LLM_OPTIONS,
]


def _learning(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_learning_options):
        func = option(func)
    return _ingesting(func)


def _ingest_fields(kw: dict[str, Any]) -> dict[str, Any]:
    """The :class:`Config` fields set by the ingest options."""
    return {
        "format": kw["fmt"],
        "reward_threshold": kw["reward_threshold"],
        "outcome_feedback": kw["outcome_feedback"],
        "max_record_bytes": kw["max_record_mb"] << 20,
        "rebuild": kw["rebuild"],
        "strict": kw["strict"],
    }


def _config(paths: tuple[str, ...], **kw: Any) -> Config:
    return Config(
        paths=paths or ("traces",),
        data_dir=kw["data_dir"],
        skillbook_dir=kw["skillbook_dir"],
        out_dir=kw["out_dir"],
        mode=kw["mode"],
        analyzer=AnalyzerConfig(min_support=kw["min_support"], fdr=kw["fdr"]),
        template_dir=kw["template_dir"],
        base_prompt_file=kw["base_prompt_file"],
        max_lessons=kw.get("max_lessons", Config.max_lessons),
        llm=llm_config(kw),
        section_modes=kw.get("section_modes", ()),
        half_life_days=kw.get("half_life_days", DEFAULT_HALF_LIFE_DAYS),
        experiments=kw.get("experiments", True),
        experiment_share=kw.get("experiment_share"),
        experiment_alpha=kw.get("experiment_alpha", 0.05),
        holdback_share=kw.get("holdback_share", 0.0),
        **_ingest_fields(kw),
    )


def _experiment_lines(done: dict[str, Any]) -> list[str]:
    """What the experiments did, for the text report of ``coach learn`` (``done``: the
    summary's ``experiments``, see :func:`pipeline.loop.experiment_round`)."""
    if not done:
        return []
    lines = []
    methods = done.get("versions", {}).get("methods", {})
    if any(methods.get(m) for m in ("recorded", "system_prompt", "skill_lines")):
        versions = done["versions"]
        lines.append(
            f"prompt versions: {methods['recorded']} recorded, {methods['system_prompt']} by "
            f"system prompt, {methods['skill_lines']} by skill lines, {methods['unmatched']} "
            f"unmatched ({versions['recorded_unknown']} recorded versions unknown, "
            f"{versions['mismatched']} contradicting the system prompt)"
        )
    for key, what in (
        ("promoted", "promoted"),
        ("rejected", "rejected"),
        ("retired", "retired (harmful in holdback)"),
    ):
        if done.get(key):
            lines.append(f"experiments {what}: {', '.join(done[key])}")
    for experiment_id, why in done.get("ended", {}).items():
        lines.append(f"experiment {experiment_id} ended: {why}")
    for row in done.get("running", []):
        exposures = done.get("exposures", {}).get(row["id"], {})
        seen = ", ".join(f"{arm} {n}" for arm, n in exposures.items()) or "no runs yet"
        lines.append(
            f"experiment {row['id']} on {row['namespace']}: {len(row['skill_ids'])} skill"
            f"{'s' if len(row['skill_ids']) != 1 else ''} "
            f"under test in {len(row['arms'])} arms ({seen}); 'coach assign' gives a unit's arm"
        )
    return lines


def _learn_text(summary: dict[str, Any], highlights: dict[str, list[dict[str, Any]]]) -> str:
    """The text report of ``coach learn``: :meth:`pipeline.learn.LearnResult.summary` and
    :meth:`~pipeline.learn.LearnResult.highlights`."""
    lines = [
        f"trajectories: {summary['trajectories']} ingested of {summary['records_read']} records "
        f"read, {summary['quarantined']} quarantined",
    ]
    if summary.get("unchanged"):
        lines.insert(0, "unchanged since the last run (no new traces, same settings): its figures")
    for row in highlights["namespaces"]:
        how = row["stratification"]
        tested = f"contrasts stratified by {how}" if row["tested"] else how
        lines.append(f"{row['namespace']}: {tested}")
    lines.append(
        f"features: {summary['features_tested']} tested, {summary['significant']} significant "
        f"within task, {summary['confounded']} significant only across tasks (confounded; "
        f"diagnostics, not skills), {summary['features_untested']} below min support"
    )
    skills = summary["skills"]
    lines.append(
        f"Skillbook v{summary['skillbook_version']}: "
        + ", ".join(f"{n} {s}" for s, n in skills.items())
        + "; this run: "
        + ", ".join(f"{len(v)} {k}" for k, v in summary["changes"].items())
    )
    for skill in highlights["skills"]:
        lines.append(f"  [{skill['status']}] {skill['instruction']}")
        lines.append(f"      {evidence_line(skill['evidence'])}")

    def _where(namespace: str) -> str:
        return f"{namespace} " if len(summary["stratification"]) > 1 else ""

    if summary["not_enough_evidence"]:
        lines.append(
            "not enough evidence yet; the closest candidates (runs needed for "
            "significance at an effect of the size seen, approximate):"
        )
        for item in summary["not_enough_evidence"]:
            lines.append(
                f"  {_where(item['namespace'])}{item['feature_id']}: odds ratio {item['odds_ratio']:.2f}, "
                f"p={item['p_value']:.3f}, about {item['runs_needed']} labelled runs"
            )
    for row in highlights["diagnostics"]:
        lines.append(
            f"  diagnostic: {_where(row['namespace'])}{row['feature_id']}: success "
            f"{row['rate_with']:.0%} with vs "
            f"{row['rate_without']:.0%} without (naive q={row['naive_q_value']:.4f}), but "
            f"within task q={row['q_value']:.2f}"
        )
    usage = summary.get("llm", {}).get("usage")
    if usage:
        llm = summary["llm"]
        lines.append(
            f"llm: {llm['patterns']} patterns and {llm['clusters']} failure clusters sent, "
            f"{llm['refined']} reworded; {usage['calls']} calls, {usage['cache_hits']} cache "
            f"hits, {usage['input_tokens'] + usage['output_tokens']} tokens, about USD "
            f"{usage['cost_usd']:.4f}"
            + (f"; budget reached: {usage['budget_reached']}" if usage["budget_reached"] else "")
        )
    lines.extend(_experiment_lines(summary.get("experiments") or {}))
    lines.append("prompts: " + ", ".join(summary["prompts"]))
    origins: dict[str, list[str]] = {}
    for namespace, base in summary.get("base_prompts", {}).items():
        source = base.get("source")
        origin = (
            f"from {base.get('path')}"
            if source == "file"
            else "from the traces (each namespace's most common system prompt, redacted, markup "
            "made inert)"
            if source == "traces"
            else "none"
        )
        origins.setdefault(origin, []).append(namespace)
    for origin, namespaces in origins.items():
        lines.append(f"base prompts {origin}: {', '.join(namespaces)}")
    return "\n".join(lines)


@main.command("learn")
@paths_argument()
@_learning
@common
@domain_errors
def learn_command(paths: tuple[str, ...], as_json: bool, quiet: bool, **kw: Any) -> None:
    """Run every stage: ingest, analyze, extract, merge, render.

    PATHS are trace files or directories (default: traces/). Exit status 3: done, but this run
    quarantined input (see DATA_DIR/tables/quarantine.jsonl); with --strict, exit 1 before
    anything is written instead. Exit 1 too, after learning from the rest, when a file gave
    nothing (all its records quarantined), naming it, the reason and the formats tried.
    --rebuild always runs, even with nothing new.

    Example: coach learn traces/ --skillbook skillbook --out prompts_out --json
    """
    config = _config(paths, **kw)
    result = learning(config, quiet)
    summary = result.summary()
    emit(as_json, summary, _learn_text(summary, result.highlights()))
    if not result.unchanged:  # a run with nothing to do read nothing
        exit_if_unread(result.traces, kw["fmt"], config.data_dir)
        exit_if_quarantined(result.traces.quarantined_this_run, config.data_dir, quiet)


@main.command("ingest")
@paths_argument()
@_ingesting
@common
@domain_errors
def ingest_command(
    paths: tuple[str, ...], data_dir: Path, as_json: bool, quiet: bool, **kw: Any
) -> None:
    """Read traces into the canonical tables (Parquet under DATA_DIR/tables).

    PATHS are files, directories or glob patterns (default: traces/); .gz and .zst files are
    read as they are. Files already in the tables (same SHA-256) are skipped, so a nightly run
    reads only what is new; --rebuild reads everything again. The tables are committed as one
    snapshot: an interrupted run leaves the previous ones whole. Exit status 3: done, but this
    run quarantined input (see DATA_DIR/tables/quarantine.jsonl); with --strict, exit 1 before
    anything is written instead. Exit 1 too when a file gave nothing (all its records
    quarantined), naming it, the reason and the formats tried.

    Example: coach ingest exports/ 'runs/*.jsonl.gz' --json
    """
    traces = ingesting(
        Config(paths=paths or ("traces",), data_dir=data_dir, **_ingest_fields(kw)), quiet
    )
    for warning in traces.warnings:
        say(quiet)(f"warning: {warning}")
    payload = {
        "files": [asdict(f) for f in traces.files],
        "this_run": traces.counts_this_run,
        "totals": traces.counts,
        "warnings": traces.warnings,
        "tables": str(data_dir / "tables"),
    }
    lines = [
        f"{f.path}: {f.format}, {f.records_read} read, {f.ingested} ingested, "
        f"{f.deduplicated} duplicates, {f.quarantined} quarantined, {f.trajectories} "
        f"trajectories, {f.steps} steps" + (f" ({f.reason})" if f.reason else "")
        for f in traces.files
        if f.status == "read" and f.format
    ]
    lines += [
        f"{f.path}: not read, quarantined as 1 record: {f.reason.removeprefix(f'{f.path}: ')}"
        for f in traces.files
        if f.status == "read" and not f.format
    ]
    lines += [f"{f.path}: skipped, {f.reason}" for f in traces.files if f.status == "skipped"]
    kept = sum(f.status in ("unchanged", "kept") for f in traces.files)
    if kept:
        lines.append(f"{kept} files already in the tables, not read again")
    new = traces.counts_this_run
    lines.append(
        f"this run: {new['records_read']} records read = {new['ingested']} ingested + "
        f"{new['deduplicated']} duplicates + {new['quarantined']} quarantined"
    )
    lines.append(
        f"tables: {traces.trajectories.num_rows} trajectories, {traces.steps.num_rows} steps, "
        f"{traces.feedback.num_rows} feedback rows in {data_dir / 'tables'}"
    )
    emit(as_json, payload, "\n".join(lines))
    exit_if_unread(traces, kw["fmt"], data_dir)
    exit_if_quarantined(traces.quarantined_this_run, data_dir, quiet)


@main.command("formats")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def formats_command(as_json: bool) -> None:
    """List the input formats, in the order they are sniffed.

    Example: coach formats
    """
    from pipeline.ingest import ADAPTERS

    rows = [
        {"name": a.NAME, "description": (a.__doc__ or "").strip().splitlines()[0]} for a in ADAPTERS
    ]
    emit(
        as_json,
        {"formats": rows},
        "\n".join(f"{r['name']:<18} {r['description']}" for r in rows),
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


# Subcommands defined in their own modules (pipeline/cli/*.py) are registered here.
from pipeline.cli.evaluate import evaluate_command  # noqa: E402

main.add_command(evaluate_command)
from pipeline.cli.report import diff_command, report_command  # noqa: E402

main.add_command(diff_command)
main.add_command(report_command)
from pipeline.cli.experiments import assign_command, experiment_group  # noqa: E402

main.add_command(assign_command)
main.add_command(experiment_group)
from pipeline.cli.skillbook import skillbook_group  # noqa: E402
from pipeline.cli.skills import skills_group  # noqa: E402

main.add_command(skills_group)
main.add_command(skillbook_group)
from pipeline.cli.stages import (  # noqa: E402
    analyze_command,
    extract_command,
    merge_command,
    render_command,
)

main.add_command(analyze_command)
main.add_command(extract_command)
main.add_command(merge_command)
main.add_command(render_command)

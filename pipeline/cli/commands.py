"""The ``coach`` command line: a thin layer over the library.

Exit codes: 0 success, 1 a domain error (message says what and how to fix), 2 bad usage.
Data goes to stdout, progress and diagnostics to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from pipeline.cli.llm_options import LLM_OPTIONS, llm_config
from pipeline.cli.options import (
    BASE_PROMPT_OPTION,
    CONTEXT,
    FDR_OPTION,
    FORMAT_OPTION,
    MIN_SUPPORT_OPTION,
    MODE_OPTION,
    OUT_OPTION,
    SKILLBOOK_OPTION,
    TEMPLATES_OPTION,
    common,
    domain_errors,
    emit,
    paths_argument,
    say,
)
from pipeline.config import AnalyzerConfig, Config
from pipeline.learn import ingest_store, learn
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
        "--strict", is_flag=True, help="Exit 1 if any record read by this run was quarantined."
    ),
]


def _ingesting(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_ingest_options):
        func = option(func)
    return func


def _check_strict(strict: bool, this_run: dict[str, int]) -> None:
    """Exit 1 under --strict when this run quarantined records (``this_run``: counts of the
    files read by this run, :attr:`pipeline.ingest.Traces.counts_this_run`)."""
    quarantined = this_run["quarantined"]
    if strict and quarantined:
        raise click.ClickException(
            f"--strict: {quarantined} records quarantined (see quarantine.jsonl in the tables "
            "directory)"
        )


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
    MIN_SUPPORT_OPTION,
    FDR_OPTION,
    TEMPLATES_OPTION,
    BASE_PROMPT_OPTION,
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
        llm=llm_config(kw),
        section_modes=kw.get("section_modes", ()),
        half_life_days=kw.get("half_life_days", DEFAULT_HALF_LIFE_DAYS),
        **_ingest_fields(kw),
    )


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
    lines.append("prompts: " + ", ".join(summary["prompts"]))
    return "\n".join(lines)


@main.command("learn")
@paths_argument()
@_learning
@common
@domain_errors
def learn_command(paths: tuple[str, ...], as_json: bool, quiet: bool, **kw: Any) -> None:
    """Run every stage: ingest, analyze, extract, merge, render.

    PATHS are trace files or directories (default: traces/).

    Example: coach learn traces/ --skillbook skillbook --out prompts_out --json
    """
    config = _config(paths, **kw)
    result = learn(config, progress=say(quiet))
    summary = result.summary()
    emit(as_json, summary, _learn_text(summary, result.highlights()))
    _check_strict(kw["strict"], summary["ingest"]["this_run"])


@main.command("ingest")
@paths_argument()
@_ingesting
@common
@domain_errors
def ingest_command(
    paths: tuple[str, ...], data_dir: Path, as_json: bool, quiet: bool, strict: bool, **kw: Any
) -> None:
    """Read traces into the canonical tables (Parquet under DATA_DIR/tables).

    PATHS are files, directories or glob patterns (default: traces/); .gz and .zst files are
    read as they are. Files already in the tables (same SHA-256) are skipped, so a nightly run
    reads only what is new; --rebuild reads everything again.

    Example: coach ingest exports/ 'runs/*.jsonl.gz' --json
    """
    traces = ingest_store(
        Config(paths=paths or ("traces",), data_dir=data_dir, **_ingest_fields(kw))
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
        f"trajectories, {f.steps} steps"
        for f in traces.files
        if f.status == "read"
    ]
    skipped = sum(f.status != "read" for f in traces.files)
    if skipped:
        lines.append(f"{skipped} files already in the tables, not read again")
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
    _check_strict(strict, traces.counts_this_run)


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

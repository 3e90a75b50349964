"""The stage-by-stage commands: ``coach analyze``, ``coach extract``, ``coach merge`` and
``coach render`` (each reads what the previous stage wrote under ``--data-dir``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.options import (
    BASE_PROMPT_OPTION,
    FDR_OPTION,
    MAX_LESSONS_OPTION,
    MIN_SUPPORT_OPTION,
    MODE_OPTION,
    OUT_OPTION,
    SKILLBOOK_OPTION,
    TEMPLATES_OPTION,
    common,
    domain_errors,
    emit,
    say,
)
from pipeline.config import AnalyzerConfig, Config
from pipeline.fileio import atomic_write
from pipeline.learn import merge_and_render, prompt_budget, render_prompts, stored_base_prompts
from pipeline.skillbook import Candidate, Skillbook

if TYPE_CHECKING:
    from pipeline.analyze import Analysis
    from pipeline.ingest import Traces

__all__ = ["analyze_command", "extract_command", "merge_command", "render_command"]


def _load_analysis_inputs(data_dir: Path) -> Traces:
    from pipeline.ingest import Traces

    # the Analyzer scans the steps in their Parquet file through DuckDB
    return Traces.load(data_dir / "tables", steps_in_memory=False)


@click.command("analyze")
@MIN_SUPPORT_OPTION
@FDR_OPTION
@common
@domain_errors
def analyze_command(
    min_support: int, fdr: float, data_dir: Path, as_json: bool, quiet: bool
) -> None:
    """Contrast successful and failed trajectories from the ingested tables.

    Writes DATA_DIR/analysis/{results,features,units,clusters,overlaps}.parquet.

    Example: coach analyze --min-support 10 --fdr 0.05
    """
    from pipeline.analyze import Analyzer

    traces = _load_analysis_inputs(data_dir)
    analysis = Analyzer(AnalyzerConfig(min_support=min_support, fdr=fdr)).run(traces)
    analysis.save(data_dir / "analysis")
    results = analysis.results
    payload = {
        "features_tested": results.height,
        "features_untested": analysis.untested,
        "status": dict(results["status"].value_counts().iter_rows()) if results.height else {},
        "results": results.head(20).to_dicts(),
    }
    text = (
        "\n".join(
            f"{r['status']:>15}  {r['feature_id']}  OR {r['odds_ratio']:.2f} "
            f"q={r['q_value']:.3f} (naive q={r['naive_q_value']:.3f})"
            for r in results.head(20).iter_rows(named=True)
        )
        or "no feature had enough support"
    )
    emit(as_json, payload, text)


def _load_analysis(data_dir: Path) -> Analysis:
    from pipeline.analyze import Analysis
    from pipeline.errors import InputError

    out = data_dir / "analysis"
    try:
        return Analysis.load(out)
    except InputError as exc:
        raise click.ClickException(f"{exc}; run 'coach analyze' first") from exc


@click.command("extract")
@common
@domain_errors
def extract_command(data_dir: Path, as_json: bool, quiet: bool) -> None:
    """Turn significant contrasts into candidate skills (DATA_DIR/candidates.json).

    Example: coach extract --json
    """
    from pipeline.extract import SkillExtractor, explain

    analysis = _load_analysis(data_dir)
    candidates = explain(
        SkillExtractor().run(analysis),
        analysis,
        _load_analysis_inputs(data_dir),
        analysis.config.features,
    )
    data = [asdict(c) for c in candidates]
    atomic_write(data_dir / "candidates.json", json.dumps(data, indent=2) + "\n")
    emit(
        as_json,
        {"candidates": data},
        "\n".join(f"{c.id} [{c.section}] {c.instruction}" for c in candidates)
        or "no candidate skills",
    )


@click.command("merge")
@SKILLBOOK_OPTION
@OUT_OPTION
@MODE_OPTION
@common
@domain_errors
def merge_command(
    skillbook_dir: Path, out_dir: Path, mode: str, data_dir: Path, as_json: bool, quiet: bool
) -> None:
    """Merge DATA_DIR/candidates.json into the Skillbook, then re-render the prompts.

    Example: coach merge --skillbook skillbook --mode propose
    """
    path = data_dir / "candidates.json"
    try:
        candidates = [Candidate(**c) for c in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError) as exc:
        raise click.ClickException(
            f"{path}: cannot read candidates ({exc}); run 'coach extract' first"
        ) from exc
    config = Config(data_dir=data_dir, skillbook_dir=skillbook_dir, out_dir=out_dir, mode=mode)
    analysis = _load_analysis(data_dir) if (data_dir / "analysis").exists() else None
    tested: list[tuple[str, str, dict[str, Any]]] = []
    if analysis is not None:
        from pipeline.extract import tested_evidence

        tested = tested_evidence(analysis)
    bases = stored_base_prompts(config) or {}
    book, merged, prompts, _experiments = merge_and_render(
        config, candidates, tested, bases, {"run_id": "merge"}
    )
    emit(
        as_json,
        {
            "skillbook_version": book.version,
            "changes": merged.as_dict(),
            "skills": book.by_status(),
            "prompts": [str(p) for p in prompts],
        },
        f"Skillbook v{book.version}: {book.by_status()}; changes {merged.as_dict()}",
    )


@click.command("render")
@SKILLBOOK_OPTION
@OUT_OPTION
@TEMPLATES_OPTION
@BASE_PROMPT_OPTION
@MAX_LESSONS_OPTION
@common
@domain_errors
def render_command(
    skillbook_dir: Path,
    out_dir: Path,
    template_dir: Path | None,
    base_prompt_file: Path | None,
    max_lessons: int | None,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Render the active skills into one system prompt per namespace.

    Each prompt holds at most --max-lessons lessons, ranked by expected impact; the active
    skills that do not fit are named on stderr (and under over_budget with --json).

    Example: coach render --skillbook skillbook --out prompts_out --max-lessons 12
    """
    from pipeline.render import impact, over_budget

    config = Config(
        data_dir=data_dir,
        skillbook_dir=skillbook_dir,
        out_dir=out_dir,
        template_dir=template_dir,
        base_prompt_file=base_prompt_file,
        max_lessons=max_lessons,
    )
    book = Skillbook.load(skillbook_dir / "skillbook.json")
    prompts = render_prompts(config, book, stored_base_prompts(config) or {})
    left_out = over_budget(book, prompt_budget(config))
    for namespace, skills in left_out.items():
        say(quiet)(
            f"{namespace}: {len(skills)} active skill{'s' if len(skills) != 1 else ''} over "
            f"the prompt budget: {', '.join(s.id for s in skills)}"
        )
    emit(
        as_json,
        {
            "prompts": [str(p) for p in prompts],
            "skillbook_version": book.version,
            "over_budget": {
                namespace: [{"id": s.id, "impact": round(impact(s), 2)} for s in skills]
                for namespace, skills in left_out.items()
            },
        },
        "\n".join(str(p) for p in prompts),
    )

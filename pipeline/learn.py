"""The whole pipeline in one call: ingest -> analyze -> extract -> merge -> render.

A run with nothing new to do (:func:`learn`) is decided from file sizes, modification times and
hashes alone and answered from the last run's ``last_run.json``; this module therefore imports
the stages (polars, DuckDB, pyarrow) only inside the functions that run them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Config, timestamp
from pipeline.fileio import atomic_write, kill_point, lock, sweep_temporary
from pipeline.learn_result import LearnResult, UnchangedResult
from pipeline.skillbook_types import MergePolicy, MergeResult

if TYPE_CHECKING:
    import polars as pl

    from pipeline.analyze import Analysis
    from pipeline.extract import Candidate
    from pipeline.ingest import Traces
    from pipeline.skillbook import Skillbook

__all__ = [
    "LearnResult",
    "ingest_store",
    "learn",
    "merge_and_render",
    "merge_policy",
    "render_prompts",
    "save_analysis",
]


def render_prompts(
    config: Config, book: Skillbook, trajectories: pl.DataFrame | None
) -> list[Path]:
    """Render and write the prompts for ``book``; base prompts come from
    ``config.base_prompt_file`` (for every namespace) or the traces' system prompts.
    Returns the prompt paths written (manifest excluded)."""
    from pipeline.render import PromptGenerator, base_prompts, prompt_filename

    generator = PromptGenerator(config.template_dir, max_chars=config.max_prompt_chars)
    bases = base_prompts(trajectories) if trajectories is not None else {}
    if config.base_prompt_file is not None:
        text = config.base_prompt_file.read_text(encoding="utf-8")
        bases = dict.fromkeys(bases or {"global": ""}, text)
    prompts = generator.run(book, bases)
    generator.write(prompts, config.out_dir, book.version)
    return [config.out_dir / prompt_filename(p.namespace) for p in prompts]


def merge_and_render(
    config: Config,
    candidates: list[Candidate],
    analysis: Analysis | None,
    trajectories: pl.DataFrame | None,
    run: dict[str, Any],
    *,
    judged: frozenset[str] = frozenset(),
) -> tuple[Skillbook, MergeResult, list[Path]]:
    """Under the Skillbook lock: load, merge, save, render. Returns the Skillbook, what the
    merge changed, and the prompt paths. ``judged``: ids of trajectories labelled by the LLM
    judge, counted in the evidence (:func:`pipeline.extract.tested_evidence`).

    Raises:
        LockError: another run holds the lock. SkillbookError: the Skillbook is unreadable.
    """
    from pipeline.extract import tested_evidence
    from pipeline.skillbook import Skillbook
    from pipeline.skillbook_history import append_run

    path = config.skillbook_dir / "skillbook.json"
    with lock(config.skillbook_dir / ".skillbook.lock"):
        sweep_temporary(config.skillbook_dir)
        sweep_temporary(config.out_dir)
        book = Skillbook.load(path)
        kill_point("before-merge")
        result = book.merge(
            candidates,
            policy=merge_policy(config),
            now=timestamp(),
            tested=tested_evidence(analysis, judged) if analysis is not None else (),
            run=run,
        )
        book.save(config.skillbook_dir)
        prompts = render_prompts(config, book, trajectories)
        if book.last_entry is not None:
            append_run(config.skillbook_dir, book.last_entry)
    return book, result, prompts


def merge_policy(config: Config) -> MergePolicy:
    """The :class:`~pipeline.skillbook.MergePolicy` of ``config`` (mode, section modes,
    half-life)."""
    return MergePolicy(
        mode=config.mode,
        section_modes=dict(config.section_modes),
        half_life_days=config.half_life_days,
    )


def ingest_store(config: Config) -> Traces:
    """Ingest ``config.paths`` into the store at ``config.data_dir / "tables"``: only files not
    already there are read, unless ``config.rebuild``; the updated store is saved and returned.

    Raises:
        InputError, UnknownFormatError (see :func:`pipeline.ingest.ingest`).
    """
    from pipeline.ingest import Traces, ingest

    tables = config.data_dir / "tables"
    previous = None
    if not config.rebuild and (tables / "ingest.json").exists():
        previous = Traces.load(tables)
    traces = ingest(
        config.paths,
        format=config.format,
        reward_threshold=config.reward_threshold,
        outcome_feedback=config.outcome_feedback,
        max_record_bytes=config.max_record_bytes,
        previous=previous,
    )
    traces.save(tables)
    return traces


def learn(config: Config, progress: Callable[[str], None] | None = None) -> LearnResult:
    """Run every stage on ``config.paths``, holding ``config.data_dir / ".learn.lock"`` so that
    two runs (say, overlapping cron jobs) never write the same tables.

    Writes the canonical tables to ``config.data_dir / "tables"``, the analysis to
    ``config.data_dir / "analysis"`` (:func:`save_analysis`), the run summary to
    ``config.data_dir / "last_run.json"`` (:meth:`LearnResult.summary` with ``run_id``, ``at``,
    :meth:`LearnResult.highlights` and the :func:`run_fingerprint`), the Skillbook to
    ``config.skillbook_dir`` and prompts to ``config.out_dir``.

    When the fingerprint equals the last run's, no stage runs and nothing is written: the
    result is an :class:`~pipeline.learn_result.UnchangedResult` answered from
    ``last_run.json``, which reads the tables, analysis and Skillbook only if asked for them.

    Raises:
        InputError, UnknownFormatError, LockError, SkillbookError, TemplateError (see
        :mod:`pipeline.errors`).
    """
    with lock(config.data_dir / ".learn.lock"):
        start = time.perf_counter()
        last = _last_run(config)
        fingerprint = run_fingerprint(config)
        if fingerprint is not None and last.get("fingerprint") == fingerprint:
            unchanged = UnchangedResult.from_last_run(config, last)
            if unchanged is not None:
                unchanged.timings["check"] = time.perf_counter() - start
                if progress is not None:
                    progress(
                        "no new traces and no change of settings, Skillbook, templates or "
                        f"prompts since the last run ({last.get('at')}): nothing to do"
                    )
                return unchanged
        result = _learn(config, progress)
        summary = result.summary() | {"run_id": result.skillbook_run_id, "at": timestamp()}
        summary["highlights"] = result.highlights()
        summary["fingerprint"] = run_fingerprint(config)
        atomic_write(config.data_dir / "last_run.json", json.dumps(summary, indent=2) + "\n")
        return result


def _last_run(config: Config) -> dict[str, Any]:
    try:
        data = json.loads((config.data_dir / "last_run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_fingerprint(config: Config) -> str | None:
    """SHA-256 (hex) of everything a ``learn`` run depends on, or ``None`` when an input file is
    new or changed since the stored tables were written (or there are no stored tables).

    Covers: every :class:`Config` field; each input file's path, size and modification time,
    all of which must match the store's ``ingest.json`` (the make/rsync rule); the bytes of
    ``skillbook.json``, the prompts' ``manifest.json``, the template directory's files and the
    base prompt file. Equal fingerprints mean a new run would read nothing new and produce the
    same Skillbook and prompts.

    Raises:
        InputError: a path is missing or a glob matches nothing (as :func:`ingest` would).
    """
    from dataclasses import asdict

    from pipeline.discover import discover

    try:
        stored = json.loads(
            (config.data_dir / "tables" / "ingest.json").read_text(encoding="utf-8")
        )
    except (OSError, ValueError):
        return None
    known = {f.get("path"): f for f in stored.get("files", []) if isinstance(f, dict)}
    files = []
    for path in discover(list(config.paths)):
        stat = path.stat()
        report = known.get(str(path))
        if report is None or (report.get("size"), report.get("mtime_ns")) != (
            stat.st_size,
            stat.st_mtime_ns,
        ):
            return None
        files.append((str(path), stat.st_size, stat.st_mtime_ns))
    digest = hashlib.sha256()
    digest.update(json.dumps([asdict(config), files], sort_keys=True, default=str).encode())
    extra = [config.skillbook_dir / "skillbook.json", config.out_dir / "manifest.json"]
    if config.template_dir is not None and config.template_dir.is_dir():
        extra.extend(sorted(p for p in config.template_dir.rglob("*") if p.is_file()))
    if config.base_prompt_file is not None:
        extra.append(config.base_prompt_file)
    for path in extra:
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()


def _remaining_budget(config: Config, used: dict[str, Any]) -> Config:
    """``config`` with the LLM budgets reduced by what ``used`` (an
    :meth:`~pipeline.llm.LLMUsage.as_dict` of the labelling step) spent, so that labelling and
    distillation share one budget per run; a budget reached stays reached."""
    from dataclasses import replace

    llm = config.llm
    keep = 0.0 if used.get("budget_reached") is not None else 1.0

    def left(budget: float | None, spent: float) -> float | None:
        return None if budget is None else max(0.0, budget - spent) * keep

    calls = left(llm.max_calls, used["calls"])
    tokens = left(llm.max_tokens, used["input_tokens"] + used["output_tokens"])
    return replace(
        config,
        llm=replace(
            llm,
            max_calls=None if calls is None else int(calls),
            max_tokens=None if tokens is None else int(tokens),
            max_usd=left(llm.max_usd, used["cost_usd"]),
        ),
    )


def _learn(config: Config, progress: Callable[[str], None] | None) -> LearnResult:
    import polars as pl

    from pipeline.analyze import Analyzer
    from pipeline.distill import refine
    from pipeline.extract import SkillExtractor, feedback_namespaces
    from pipeline.judge import label_unknown

    say = progress or (lambda _message: None)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    traces = ingest_store(config)
    # the stages after ingest scan the steps in their stored Parquet file through DuckDB, so
    # the large table is not held in memory during the analysis
    traces.release_steps()
    timings["ingest"] = time.perf_counter() - start
    counts = traces.counts
    new = traces.counts_this_run
    say(
        f"ingest: {new['records_read']} records read from "
        f"{sum(f.status == 'read' for f in traces.files)} new files, {new['quarantined']} "
        f"quarantined, {new['deduplicated']} duplicates; {counts['trajectories']} trajectories "
        f"in the store ({timings['ingest']:.1f}s)"
    )
    for warning in traces.warnings:
        say(f"warning: {warning}")

    start = time.perf_counter()
    labelling, label_usage = label_unknown(config, traces, say)
    if label_usage:
        timings["llm_label"] = time.perf_counter() - start
        # in memory only: the store saved above keeps the labels as ingested
        traces = labelling.traces
        config = _remaining_budget(config, label_usage)

    start = time.perf_counter()
    analysis = Analyzer(config.analyzer).run(traces)
    timings["analyze"] = time.perf_counter() - start
    say(
        f"analyze: {analysis.results.height} features tested, "
        f"{analysis.untested} below min support ({timings['analyze']:.1f}s)"
    )

    start = time.perf_counter()
    # the columns the extractor and the base prompts read, not the whole table
    trajectories = pl.from_arrow(
        traces.trajectories.select(["domain", "system_prompt", "outcome_label", "outcome_source"])
    )
    assert isinstance(trajectories, pl.DataFrame)
    candidates = SkillExtractor().run(
        analysis, feedback_namespaces(trajectories), judged=labelling.judged
    )
    timings["extract"] = time.perf_counter() - start
    say(f"extract: {len(candidates)} candidate skills ({timings['extract']:.1f}s)")

    start = time.perf_counter()
    candidates, llm = refine(config, traces, analysis, candidates, say)
    if label_usage:
        llm["labelled"] = labelling.report
    if config.llm.enabled:
        timings["llm"] = time.perf_counter() - start

    start = time.perf_counter()
    settings = {
        "mode": config.mode,
        "min_support": config.analyzer.min_support,
        "fdr": config.analyzer.fdr,
    }
    if config.llm.enabled:
        settings["llm"] = {"model": config.llm.model, "endpoint": config.llm.endpoint}
    if config.section_modes:
        settings["section_modes"] = dict(config.section_modes)
    inputs_sha256 = traces.content_hash()
    run_id = hashlib.sha256(
        (inputs_sha256 + json.dumps(settings, sort_keys=True)).encode()
    ).hexdigest()[:16]
    run = {
        "run_id": run_id,
        "inputs": sorted({f.path for f in traces.files}),
        "inputs_sha256": inputs_sha256,
        "settings": settings,
        "counts": {
            "trajectories": counts["trajectories"],
            "quarantined": counts["quarantined"],
            "features_tested": analysis.results.height,
            "candidates": len(candidates),
            "labelled": analysis.units.height,
            "successes": int(analysis.units["success"].sum()) if analysis.units.height else 0,
            "llm_judged": len(labelling.judged),
        },
    }
    book, merged, prompts = merge_and_render(
        config, candidates, analysis, trajectories, run, judged=labelling.judged
    )
    timings["merge+render"] = time.perf_counter() - start
    say(
        f"merge: Skillbook v{book.version}, {sum(map(len, merged.as_dict().values()))} changes; "
        f"render: {len(prompts)} prompts ({timings['merge+render']:.1f}s)"
    )
    result = LearnResult(traces, analysis, candidates, book, merged, prompts, timings, llm)
    result.skillbook_run_id = run_id
    save_analysis(analysis, config.data_dir / "analysis")
    return result


def save_analysis(analysis: Analysis, directory: Path) -> None:
    """Write ``analysis`` for later commands (``coach extract``, ``coach report``):
    ``{results,features,units,clusters}.parquet``, ``config.json`` (min_support, fdr) and
    ``meta.json`` (untested, namespaces), each atomically."""
    import io

    for name in ("results", "features", "units", "clusters"):
        buffer = io.BytesIO()
        getattr(analysis, name).write_parquet(buffer)
        atomic_write(directory / f"{name}.parquet", buffer.getvalue())
    cfg = {"min_support": analysis.config.min_support, "fdr": analysis.config.fdr}
    atomic_write(directory / "config.json", json.dumps(cfg))
    meta = {"untested": analysis.untested, "namespaces": analysis.namespaces}
    atomic_write(directory / "meta.json", json.dumps(meta, indent=2) + "\n")

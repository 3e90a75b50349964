"""The whole pipeline in one call, the stages in order, each taking the previous one's output:

1. :func:`ingest_store`: trace files -> the canonical tables (:mod:`pipeline.ingest`), saved in
   ``data_dir/tables``; the base prompts come from them (:func:`base_prompts_for`);
2. optionally, an LLM judge labels runs without an outcome (:func:`pipeline.llm.label_unknown`);
3. :class:`~pipeline.analyze.Analyzer`: tables -> :class:`~pipeline.analyze.Analysis`;
4. :class:`~pipeline.extract.SkillExtractor`: analysis -> candidate skills, and the evidence of
   every pattern tested (:func:`~pipeline.extract.tested_evidence`);
5. optionally, an LLM rewords them (:func:`pipeline.llm.refine`);
6. :func:`merge_and_render`: candidates and evidence -> the Skillbook (:mod:`pipeline.skillbook`)
   and its prompts (:mod:`pipeline.render`).

A run with nothing new to do (:func:`learn`) is decided from file sizes, modification times and
hashes alone (:mod:`pipeline.rerun`) and answered from the last run's ``last_run.json``. So
that it loads none of the
analysis stack, the stage packages are used through their faces, which load a module on first
use of one of its names, and the stages that need polars, DuckDB or pyarrow are imported in
:func:`_learn`, the one function that runs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import ingest, render
from pipeline.config import RENDER_SETTINGS, Config, render_settings, timestamp
from pipeline.errors import InputError
from pipeline.fileio import atomic_write, lock, sweep_temporary, tag_cache_directory
from pipeline.learn_result import LearnResult, UnchangedResult
from pipeline.progress import Meter
from pipeline.rerun import last_run, run_fingerprint, run_record
from pipeline.skillbook import Candidate, MergePolicy, MergeResult, Skillbook, append_run

if TYPE_CHECKING:
    import polars as pl

    from pipeline.ingest import Traces

__all__ = [
    "LearnResult",
    "base_prompts_for",
    "ingest_store",
    "learn",
    "merge_and_render",
    "merge_policy",
    "prompt_budget",
    "render_prompts",
    "stored_base_prompts",
]


def ingest_store(config: Config, meter: Meter | None = None) -> Traces:
    """Stage 1. Ingest ``config.paths`` into the store at ``config.data_dir / "tables"`` under
    the lock ``config.data_dir / ".learn.lock"``: only files not already there are read, unless
    ``config.rebuild``; the updated store is committed as one snapshot
    (:meth:`~pipeline.ingest.Traces.save`) and returned. The data dir is tagged as a cache
    directory (``CACHEDIR.TAG``) when it holds nothing but coach's files. ``meter``: see
    :func:`pipeline.ingest.ingest`.

    Raises:
        InputError: the stored tables are not whole (the message says to rebuild); or, with
            ``config.strict``, this run quarantined something (nothing is written then); else
            see :func:`pipeline.ingest.ingest`.
        UnknownFormatError, LockError (another run holds the lock).
    """
    tables = config.data_dir / "tables"
    with lock(config.data_dir / ".learn.lock"):
        previous = None
        if not config.rebuild and ingest.Traces.stored(tables):
            previous = ingest.Traces.load(tables)
        traces = ingest.ingest(
            config.paths,
            format=config.format,
            reward_threshold=config.reward_threshold,
            outcome_feedback=config.outcome_feedback,
            max_record_bytes=config.max_record_bytes,
            previous=previous,
            exclude=[config.data_dir],
            meter=meter,
        )
        quarantined = traces.quarantined_this_run
        if config.strict and quarantined:
            raise InputError(_strict_message(traces, quarantined))
        tag_cache_directory(config.data_dir, "coach", ours=_DATA_DIR_NAMES)
        traces.save(tables)
    return traces


# What coach keeps in a data dir: one holding nothing else is tagged as a cache directory.
_DATA_DIR_NAMES = frozenset(
    {"tables", "tables.d", ".tables.lock", ".learn.lock", "analysis", "last_run.json"}
    | {"candidates.json", "report.html", "llm_cache.duckdb", "llm_cache.duckdb.wal"}
    | {".nightly.lock", "learn.json", "pr-body.md"}  # deploy/nightly.sh
    | {"pull", RENDER_SETTINGS}  # coach pull's cursors; how the prompts were last rendered
)


def _strict_message(traces: Traces, quarantined: int) -> str:
    """Why a strict run stopped: how much was quarantined, and the first reasons."""
    rows = traces.quarantine_this_run()[:5]
    reasons = "".join(f"\n  {q['file']}, {q['where']}: {q['reason']}" for q in rows)
    records = f"{quarantined} record{'s' if quarantined != 1 else ''}"
    return (
        f"strict: {records} quarantined by this run, so nothing was written (the stored "
        f"tables, the Skillbook and the prompts are as they were){reasons}\n"
        "fix or remove that input, or run without strict to ingest the rest"
    )


def base_prompts_for(config: Config, trajectories: pl.DataFrame | None) -> dict[str, str]:
    """The base prompt of each namespace, a :class:`pipeline.render.BasePrompt` (a ``str`` that
    says where it came from): the team's ``config.base_prompt_file``, as written, for every
    namespace when set; else the traces' most common system prompt per namespace, redacted and
    with its template syntax and markup neutralised, a prompt coach rendered counting for the
    base prompt printed in it (:func:`pipeline.render.base_prompts`;
    ``trajectories`` has columns ``domain``, ``system_prompt``; ``None``: no traces, no base
    prompts).

    Raises:
        OSError: the base prompt file cannot be read. InputError: the prompt version history
            is damaged.
    """
    from pipeline.experiment import VersionHistory

    rendered = VersionHistory.load(config.skillbook_dir).bases()
    bases = render.base_prompts(trajectories, rendered) if trajectories is not None else {}
    if config.base_prompt_file is not None:
        text = config.base_prompt_file.read_text(encoding="utf-8")
        prompt = render.BasePrompt(text, "file", path=str(config.base_prompt_file))
        bases = dict.fromkeys(bases or {"global": ""}, prompt)
    return bases


def stored_base_prompts(config: Config) -> dict[str, str] | None:
    """:func:`base_prompts_for` the trajectories stored in ``config.data_dir / "tables"``, for
    the commands that render again without ingesting; ``None`` when there are no stored tables
    and no ``config.base_prompt_file``."""
    import polars as pl

    table = config.data_dir / "tables" / "trajectories.parquet"
    if not table.exists():
        return base_prompts_for(config, None) if config.base_prompt_file is not None else None
    return base_prompts_for(config, pl.read_parquet(table, columns=["domain", "system_prompt"]))


def render_prompts(config: Config, book: Skillbook, bases: Mapping[str, str]) -> list[Path]:
    """Render and write the prompts of ``book`` on ``bases`` (namespace -> base prompt) into
    ``config.out_dir``. Returns the prompt paths written (manifest excluded).

    Raises:
        TemplateError: the template cannot be rendered.
    """
    from pipeline.loop import record_versions

    generator = render.PromptGenerator(
        config.template_dir, max_chars=config.max_prompt_chars, max_lessons=config.max_lessons
    )
    prompts = generator.run(book, dict(bases))
    generator.write(prompts, config.out_dir, book.version, book.experiments)
    record_versions(config, prompts, book.version, book.updated_at or timestamp())
    atomic_write(config.data_dir / RENDER_SETTINGS, json.dumps(render_settings(config)) + "\n")
    return [config.out_dir / p.filename for p in prompts]


def merge_and_render(
    config: Config,
    candidates: list[Candidate],
    tested: Iterable[tuple[str, str, dict[str, Any]]],
    bases: Mapping[str, str],
    run: dict[str, Any],
    trajectories: Any = None,
    files: Iterable[Any] = (),
) -> tuple[Skillbook, MergeResult, list[Path], dict[str, Any]]:
    """Stage 6. Under the Skillbook lock: load, merge ``candidates`` and the evidence of every
    pattern ``tested`` ((skill id, pattern id, evidence) triples,
    :func:`pipeline.extract.tested_evidence`), run a round of prompt experiments on the
    ``trajectories`` table (pyarrow; :func:`pipeline.loop.experiment_round`; ``files``: the
    ingest's file reports, whose modification times date runs without a start time), save,
    render on
    ``bases``. Returns the Skillbook, what the merge changed, the prompt paths, and what the
    experiments did.

    Raises:
        LockError: another run holds the lock. SkillbookError: the Skillbook is unreadable.
        InputError: the prompt version history is damaged.
    """
    from pipeline.loop import experiment_round, file_times

    path = config.skillbook_dir / "skillbook.json"
    with lock(config.skillbook_dir / ".skillbook.lock"):
        sweep_temporary(config.skillbook_dir)
        sweep_temporary(config.out_dir)
        book = Skillbook.load(path)
        now = timestamp()
        policy = merge_policy(config)
        result = book.merge(candidates, policy=policy, now=now, tested=tuple(tested), run=run)
        merged_entry = book.last_entry
        experiments = experiment_round(
            config, book, trajectories, policy, now, file_times(list(files))
        )
        render.save_skillbook(book, config.skillbook_dir, budget=prompt_budget(config))
        prompts = render_prompts(config, book, bases)
        if merged_entry is not None:
            append_run(config.skillbook_dir, merged_entry)
    return book, result, prompts, experiments


def prompt_budget(config: Config) -> render.PromptBudget:
    """The :class:`~pipeline.render.PromptBudget` of ``config`` (``max_lessons``,
    ``max_prompt_chars``): what each prompt holds, and what ``SKILLBOOK.md`` lists as over it."""
    return render.PromptBudget(config.max_lessons, config.max_prompt_chars)


def merge_policy(config: Config) -> MergePolicy:
    """The :class:`~pipeline.skillbook.MergePolicy` of ``config`` (mode, section modes,
    half-life)."""
    return MergePolicy(
        mode=config.mode,
        section_modes=dict(config.section_modes),
        half_life_days=config.half_life_days,
    )


def learn(
    config: Config, progress: Callable[[str], None] | None = None, *, meter: Meter | None = None
) -> LearnResult:
    """Run every stage on ``config.paths``, holding ``config.data_dir / ".learn.lock"`` so that
    two runs (say, overlapping cron jobs) never write the same tables.

    Writes the canonical tables to ``config.data_dir / "tables"``, the analysis to
    ``config.data_dir / "analysis"`` (:meth:`~pipeline.analyze.Analysis.save`), the run summary to
    ``config.data_dir / "last_run.json"`` (:meth:`LearnResult.summary` with ``run_id``, ``at``,
    :meth:`LearnResult.highlights` and the :func:`~pipeline.rerun.run_fingerprint`), the Skillbook to
    ``config.skillbook_dir`` and prompts to ``config.out_dir``. ``progress`` is given the
    stages' lines, ``meter`` the ingest's counts (:func:`ingest_store`).

    When the fingerprint equals the last run's (and ``config.rebuild`` is not set), no stage
    runs and nothing is written: the result is an
    :class:`~pipeline.learn_result.UnchangedResult` answered from ``last_run.json``, which reads
    the tables, analysis and Skillbook only if asked for them. Else temporary files that
    interrupted runs left in ``config.data_dir`` are removed first.

    Raises:
        InputError: the stored tables are not whole (the message says to rebuild); with
            ``config.strict``, this run quarantined something (nothing is written then); or
            an input cannot be read. UnknownFormatError, LockError, SkillbookError,
            TemplateError (see :mod:`pipeline.errors`).
    """
    with lock(config.data_dir / ".learn.lock"):
        start = time.perf_counter()
        last = last_run(config)
        fingerprint = None if config.rebuild else run_fingerprint(config)
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
        sweep_temporary(config.data_dir)
        result = _learn(Run(config, progress or (lambda _m: None), meter))
        summary = result.summary() | {"run_id": result.skillbook_run_id, "at": timestamp()}
        summary["highlights"] = result.highlights()
        summary["fingerprint"] = run_fingerprint(config)
        atomic_write(config.data_dir / "last_run.json", json.dumps(summary, indent=2) + "\n")
        return result


def _remaining_budget(config: Config, used: dict[str, Any]) -> Config:
    """``config`` with the LLM budgets reduced by what ``used`` (an
    :meth:`~pipeline.llm.LLMUsage.as_dict` of the labelling step) spent, so that labelling and
    distillation share one budget per run; a budget reached stays reached."""
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


@dataclass(frozen=True)
class Run:
    """What the stages of one ``learn`` run hand on, each stage adding its output: the canonical
    tables (``traces``; steps released to their Parquet file), the ids of runs labelled by the
    LLM judge (``judged``) and its report (``labelled``, None without labelling), the columns
    ``domain``, ``system_prompt``, ``outcome_label``, ``outcome_source`` of the trajectories
    (``trajectories``, polars), the base prompt per namespace (``bases``), the ``analysis``, the
    ``candidates`` with the evidence of every pattern ``tested``, the LLM summary (``llm``), and
    the merged ``book`` with what changed (``merged``) and the ``prompts`` written. ``timings``:
    seconds per stage. ``say``: where stages send progress lines; ``meter``: the ingest's counts."""

    config: Config
    say: Callable[[str], None] = field(default=lambda _message: None, repr=False, compare=False)
    meter: Meter | None = field(default=None, repr=False, compare=False)
    traces: Any = None
    judged: frozenset[str] = frozenset()
    labelled: dict[str, Any] | None = None
    trajectories: Any = None
    bases: Mapping[str, str] = field(default_factory=dict)
    analysis: Any = None
    candidates: list[Candidate] = field(default_factory=list)
    tested: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    llm: dict[str, Any] = field(default_factory=dict)
    book: Skillbook | None = None
    merged: MergeResult | None = None
    prompts: list[Path] = field(default_factory=list)
    experiments: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def _ingest(run: Run) -> Run:
    traces = ingest_store(run.config, run.meter)
    # the stages after ingest scan the steps in their stored Parquet file through DuckDB, so
    # the large table is not held in memory during the analysis
    traces.release_steps()
    return replace(run, traces=traces, trajectories=_trajectory_columns(traces))


def _label(run: Run) -> Run:
    from pipeline.llm import label_unknown

    labelling, usage = label_unknown(run.config, run.traces, run.say)
    if not usage:
        return run
    # in memory only: the store saved by ingest keeps the labels as ingested
    return replace(
        run,
        config=_remaining_budget(run.config, usage),
        traces=labelling.traces,
        judged=labelling.judged,
        labelled=labelling.report,
        trajectories=_trajectory_columns(labelling.traces),
    )


def _trajectory_columns(traces: Traces) -> pl.DataFrame:
    """The columns of the trajectories that the extractor and the base prompts read, not the
    whole table."""
    import polars as pl

    frame = pl.from_arrow(
        traces.trajectories.select(["domain", "system_prompt", "outcome_label", "outcome_source"])
    )
    assert isinstance(frame, pl.DataFrame)
    return frame


def _analyze(run: Run) -> Run:
    from pipeline.analyze import Analyzer

    return replace(run, analysis=Analyzer(run.config.analyzer).run(run.traces))


def _extract(run: Run) -> Run:
    from pipeline.extract import SkillExtractor, explain, feedback_namespaces, tested_evidence

    candidates = SkillExtractor().run(
        run.analysis, feedback_namespaces(run.trajectories), judged=run.judged
    )
    candidates = explain(candidates, run.analysis, run.traces, run.config.analyzer.features)
    return replace(
        run,
        candidates=candidates,
        tested=tested_evidence(run.analysis, run.judged),
        bases=base_prompts_for(run.config, run.trajectories),
    )


def _refine(run: Run) -> Run:
    from pipeline.llm import refine

    candidates, llm = refine(run.config, run.traces, run.analysis, run.candidates, run.say)
    if run.labelled is not None:
        llm["labelled"] = run.labelled
    return replace(run, candidates=candidates, llm=llm)


def _merge(run: Run) -> Run:
    record = run_record(run)
    book, merged, prompts, experiments = merge_and_render(
        run.config,
        run.candidates,
        run.tested,
        run.bases,
        record,
        run.traces.trajectories,
        run.traces.files,
    )
    run.analysis.save(run.config.data_dir / "analysis")
    return replace(
        run,
        book=book,
        merged=merged,
        prompts=prompts,
        run_id=record["run_id"],
        experiments=experiments,
    )


def _ingest_lines(run: Run, seconds: float) -> list[str]:
    traces, new = run.traces, run.traces.counts_this_run
    files = sum(f.status == "read" for f in traces.files)
    return [
        f"ingest: {new['records_read']} records read from {files} new files, "
        f"{new['quarantined']} quarantined, {new['deduplicated']} duplicates; "
        f"{traces.counts['trajectories']} trajectories in the store ({seconds:.1f}s)",
        *(f"warning: {warning}" for warning in traces.warnings),
    ]


def _merge_lines(run: Run, seconds: float) -> list[str]:
    assert run.book is not None and run.merged is not None
    changes = sum(len(changed) for changed in run.merged.as_dict().values())
    return [
        f"merge: Skillbook v{run.book.version}, {changes} changes; "
        f"render: {len(run.prompts)} prompts ({seconds:.1f}s)"
    ]


@dataclass(frozen=True)
class Stage:
    """One stage of :data:`STAGES`: ``apply`` takes the :class:`Run` so far and returns it with
    the stage's output; ``timed`` says whether the stage did work worth a timing under ``name``
    (the optional LLM steps do not when they are off); ``lines`` are its progress lines."""

    name: str
    apply: Callable[[Run], Run]
    lines: Callable[[Run, float], list[str]]
    timed: Callable[[Run], bool] = lambda _run: True


STAGES: tuple[Stage, ...] = (
    Stage("ingest", _ingest, _ingest_lines),
    Stage("llm_label", _label, lambda _run, _s: [], lambda run: run.labelled is not None),
    Stage(
        "analyze",
        _analyze,
        lambda run, s: [
            f"analyze: {run.analysis.results.height} features tested, "
            f"{run.analysis.untested} below min support ({s:.1f}s)"
        ],
    ),
    Stage(
        "extract",
        _extract,
        lambda run, s: [f"extract: {len(run.candidates)} candidate skills ({s:.1f}s)"],
    ),
    Stage("llm", _refine, lambda _run, _s: [], lambda run: run.config.llm.enabled),
    Stage("merge+render", _merge, _merge_lines),
)
"""The stages of :func:`learn`, in order (see the module docstring)."""


def _learn(run: Run) -> LearnResult:
    for stage in STAGES:
        start = time.perf_counter()
        run = stage.apply(run)
        seconds = time.perf_counter() - start
        if stage.timed(run):
            run.timings[stage.name] = seconds
        for line in stage.lines(run, seconds):
            run.say(line)
    assert run.book is not None and run.merged is not None
    result = LearnResult(
        run.traces,
        run.analysis,
        run.candidates,
        run.book,
        run.merged,
        run.prompts,
        run.timings,
        run.llm,
        experiments=run.experiments,
    )
    result.skillbook_run_id = run.run_id
    return result

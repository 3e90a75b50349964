"""What :func:`pipeline.learn.learn` returns: a :class:`LearnResult`, or for a run that had
nothing to do an :class:`UnchangedResult` built from what the last run stored in
``<data_dir>/last_run.json``.

An :class:`UnchangedResult` answers :meth:`~LearnResult.summary` and
:meth:`~LearnResult.highlights` from that file alone and reads the tables, the saved analysis
and the Skillbook only when :attr:`~LearnResult.traces`, :attr:`~LearnResult.analysis` or
:attr:`~LearnResult.skillbook` is first used: a caller that needs only the figures (``coach
learn``, with or without ``--json``) loads none of polars, pyarrow or DuckDB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Config
from pipeline.errors import InputError
from pipeline.skillbook import Candidate, MergeResult, Skillbook

if TYPE_CHECKING:
    from pipeline.analyze import Analysis
    from pipeline.ingest import Traces

__all__ = ["SUMMARY_KEYS", "LearnResult", "UnchangedResult", "base_prompt_sources"]

# The keys of LearnResult.summary(), in order.
SUMMARY_KEYS = (
    "trajectories",
    "records_read",
    "quarantined",
    "ingest",
    "features_tested",
    "features_untested",
    "significant",
    "confounded",
    "candidates",
    "skills",
    "skillbook_version",
    "changes",
    "prompts",
    "base_prompts",
    "llm_calls",
    "llm",
    "stratification",
    "not_enough_evidence",
    "experiments",
    "timings_s",
    "unchanged",
)
# How many skills and confounded features LearnResult.highlights() lists.
_TOP_SKILLS, _TOP_DIAGNOSTICS = 10, 3
_ANALYSIS_FILES = ("results", "features", "units", "clusters")


@dataclass
class LearnResult:
    """What a run did; :meth:`summary` is the ``coach learn --json`` object."""

    traces: Traces
    analysis: Analysis
    candidates: list[Candidate]
    skillbook: Skillbook
    merge: MergeResult
    prompts: list[Path]
    timings: dict[str, float] = field(default_factory=dict)
    llm: dict[str, Any] = field(default_factory=dict)
    unchanged: bool = False
    skillbook_run_id: str = ""
    experiments: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Keys (:data:`SUMMARY_KEYS`): trajectories, quarantined, records_read, features_tested,
        features_untested, significant, candidates, skills (counts by status),
        skillbook_version, changes, prompts (paths), base_prompts (per namespace, where its
        base prompt came from: ``{"source": "file", "path"}``, ``{"source": "traces",
        "runs"}`` or ``{"source": "none"}``; see :func:`base_prompt_sources`), llm_calls, llm
        (screened candidates; with --llm also model, endpoint, usage: calls, cache hits,
        tokens, cost_usd, budget_reached; see :func:`pipeline.llm.refine`; with --llm-label
        also ``labelled``: the judge's report, see :class:`pipeline.llm.judge.Labelling`),
        stratification (per namespace),
        not_enough_evidence, experiments (how each trajectory's prompt version was found, and
        the experiments started, ended and looked at, the skills promoted and rejected: see
        :func:`pipeline.loop.experiment_round`), timings_s (seconds per stage), unchanged
        (True when nothing had changed since the last run and no stage ran, see
        :func:`pipeline.learn.learn`)."""
        import polars as pl

        results = self.analysis.results
        status = results["status"] if results.height else pl.Series([], dtype=pl.String)
        needed = (
            results.filter(pl.col("runs_needed").is_not_null())
            .sort("runs_needed")
            .head(5)
            .select("namespace", "feature_id", "odds_ratio", "p_value", "runs_needed")
            .to_dicts()
            if results.height
            else []
        )
        counts = self.traces.counts
        return {
            "trajectories": counts["trajectories"],
            "records_read": counts["records_read"],
            "quarantined": counts["quarantined"],
            "ingest": {
                "this_run": self.traces.counts_this_run,
                "store": counts,
                "warnings": self.traces.warnings,
            },
            "features_tested": results.height,
            "features_untested": self.analysis.untested,
            "significant": int((status == "significant").sum()),
            "confounded": int((status == "confounded").sum()),
            "candidates": len(self.candidates),
            "skills": self.skillbook.by_status(),
            "skillbook_version": self.skillbook.version,
            "changes": self.merge.as_dict(),
            "prompts": [str(p) for p in self.prompts],
            "base_prompts": base_prompt_sources(self.prompts),
            "llm_calls": self.llm.get("usage", {}).get("calls", 0)
            + self.llm.get("labelled", {}).get("calls", 0),
            "llm": self.llm,
            "stratification": dict(sorted(self.analysis.namespaces.items())),
            "not_enough_evidence": needed,
            "experiments": self.experiments,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "unchanged": self.unchanged,
        }

    def highlights(self) -> dict[str, list[dict[str, Any]]]:
        """What the text report of ``coach learn`` lists besides the :meth:`summary`:

        - ``skills``: the active and proposed skills of most value
          (:attr:`pipeline.skillbook.Skill.value`, then id), at most 10, each ``{"id",
          "status", "instruction", "evidence"}``;
        - ``diagnostics``: the confounded features (significant across tasks only) with the
          smallest naive p-values, at most 3, each ``{"namespace", "feature_id", "rate_with",
          "rate_without", "naive_q_value", "q_value"}``;
        - ``namespaces``: every namespace with labelled runs, by name, each ``{"namespace",
          "tested", "stratification"}``: whether its features were tested (both outcomes
          occur) and how (:meth:`pipeline.analyze.Stratification.describe`).

        Stored in ``last_run.json`` with the summary, for a later run with nothing to do.
        """
        import polars as pl

        shown = [s for s in self.skillbook.skills.values() if s.status in ("active", "proposed")]
        skills = [
            {"id": s.id, "status": s.status, "instruction": s.instruction, "evidence": s.evidence}
            for s in sorted(shown, key=lambda s: (-s.value, s.id))[:_TOP_SKILLS]
        ]
        results = self.analysis.results
        diagnostics = (
            results.filter(pl.col("status") == "confounded")
            .sort("naive_p_value")
            .head(_TOP_DIAGNOSTICS)
            .select(
                "namespace",
                "feature_id",
                "rate_with",
                "rate_without",
                "naive_q_value",
                "q_value",
            )
            .to_dicts()
            if results.height
            else []
        )
        namespaces = [
            {"namespace": name, "tested": how.tested, "stratification": how.describe()}
            for name, how in sorted(self.analysis.strata.items())
        ]
        return {"skills": skills, "diagnostics": diagnostics, "namespaces": namespaces}


def base_prompt_sources(prompts: list[Path]) -> dict[str, dict[str, Any]]:
    """Where the base prompt of each namespace came from, as the ``manifest.json`` written with
    ``prompts`` (in their directory, :meth:`pipeline.render.PromptGenerator.write`) records it:
    ``{namespace: {"source": "file", "path"} | {"source": "traces", "runs"} | {"source":
    "none"}}``; empty without prompts or a readable manifest."""
    if not prompts:
        return {}
    try:
        manifest = json.loads((prompts[0].parent / "manifest.json").read_text(encoding="utf-8"))
        entries = manifest["prompts"].values()
        return {e["namespace"]: e.get("base_prompt", {"source": "none"}) for e in entries}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


class UnchangedResult(LearnResult):
    """The result of a run that had nothing to do (see :func:`pipeline.learn.learn`).

    :meth:`summary` is the last run's (``last_run.json``) with ``unchanged`` True, this run's
    ``timings_s``, and nothing done by this run: ``ingest.this_run`` counts zero, no
    ``candidates``, ``changes``, ``llm_calls`` or ``llm``. :meth:`highlights` is the last run's.
    :attr:`traces` (the store's file reports, with empty tables), :attr:`analysis` (the saved
    analysis without its long feature table) and :attr:`skillbook` are read on first access.

    Build one with :meth:`from_last_run`.
    """

    def __init__(self, config: Config, last: dict[str, Any]) -> None:
        # no LearnResult.__init__: traces, analysis and skillbook are read when first used
        self._config = config
        self._last = last
        self.candidates = []
        self.merge = MergeResult()
        self.prompts = [Path(p) for p in last["prompts"]]
        self.timings = {}
        self.llm = {}
        self.unchanged = True
        self.skillbook_run_id = str(last.get("run_id", ""))

    @classmethod
    def from_last_run(cls, config: Config, last: dict[str, Any]) -> UnchangedResult | None:
        """The result of a run of ``config`` with nothing to do, from ``last`` (the parsed
        ``last_run.json``); ``None`` when ``last`` lacks a key of the summary or the highlights,
        or a file read later (tables report, saved analysis, Skillbook) is missing, in which
        case the run goes ahead."""
        analysis = config.data_dir / "analysis"
        needed = [config.data_dir / "tables" / "ingest.json", analysis / "meta.json"]
        needed += [analysis / f"{name}.parquet" for name in _ANALYSIS_FILES]
        needed.append(config.skillbook_dir / "skillbook.json")
        stored = last.get("ingest")
        if (
            not set(SUMMARY_KEYS) <= set(last)
            or not isinstance(last.get("highlights"), dict)
            or not isinstance(stored, dict)
            or not isinstance(stored.get("this_run"), dict)
            or not all(path.is_file() for path in needed)
        ):
            return None
        return cls(config, last)

    def __repr__(self) -> str:
        return (
            f"UnchangedResult(run_id={self.skillbook_run_id!r}, "
            f"data_dir={str(self._config.data_dir)!r}, timings={self.timings!r})"
        )

    def summary(self) -> dict[str, Any]:
        summary = {key: self._last[key] for key in SUMMARY_KEYS}
        summary["ingest"] = summary["ingest"] | {
            "this_run": dict.fromkeys(summary["ingest"]["this_run"], 0)
        }
        summary["candidates"] = len(self.candidates)
        summary["changes"] = self.merge.as_dict()
        summary["llm_calls"] = 0
        summary["llm"] = self.llm
        summary["timings_s"] = {k: round(v, 3) for k, v in self.timings.items()}
        summary["unchanged"] = True
        return summary

    def highlights(self) -> dict[str, list[dict[str, Any]]]:
        highlights: dict[str, list[dict[str, Any]]] = self._last["highlights"]
        return highlights

    # read on first use (and settable, as on a LearnResult)
    @cached_property
    def traces(self) -> Traces:  # type: ignore[override]
        return self._read_traces()

    @cached_property
    def analysis(self) -> Analysis:  # type: ignore[override]
        return self._read_analysis()

    @cached_property
    def skillbook(self) -> Skillbook:  # type: ignore[override]
        return Skillbook.load(self._config.skillbook_dir / "skillbook.json")

    def _read_traces(self) -> Traces:
        """The store's file reports (status ``unchanged``) and warnings, with empty tables.

        Raises:
            InputError: ``ingest.json`` is unreadable.
        """
        from pipeline.ingest import FileReport, Traces, empty_table

        path = self._config.data_dir / "tables" / "ingest.json"
        stored = _read_json(path)
        names = {f.name for f in fields(FileReport)}
        reports = [
            FileReport(**{k: v for k, v in f.items() if k in names} | {"status": "unchanged"})
            for f in stored.get("files", [])
        ]
        return Traces(
            empty_table("trajectories"),
            empty_table("steps"),
            empty_table("feedback"),
            [],
            reports,
            list(stored.get("warnings", [])),
            dict(stored.get("settings", {})),
        )

    def _read_analysis(self) -> Analysis:
        """The analysis saved by the last run (:meth:`pipeline.analyze.Analysis.save`) without
        its example pointers (the columns only), with this run's analyzer settings.

        Raises:
            InputError: a file of it is missing or unreadable.
        """
        from pipeline.analyze import Analysis

        directory = self._config.data_dir / "analysis"
        _read_json(directory / "meta.json")
        try:
            return Analysis.load(directory, self._config.analyzer, pointers=False)
        except InputError as exc:
            raise InputError(f"{exc}; run 'coach learn --rebuild'") from exc


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        InputError: the file is missing, not JSON, or not an object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read ({exc}); run 'coach learn --rebuild'") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a JSON object; run 'coach learn --rebuild'")
    return data

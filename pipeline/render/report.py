"""The HTML report: one self-contained, offline file that shows what the agents get wrong.

Built from the last ``coach learn`` run: the canonical tables (``<data_dir>/tables``), the
analysis (``<data_dir>/analysis``, written by ``coach learn`` and ``coach analyze``), the run
summary (``<data_dir>/last_run.json``) and the Skillbook. Sections (each a ``<section>`` with the
id given):

- ``summary``: trajectories, records read, quarantined, features tested, skills by status;
- ``domains``: success rate per namespace with Wilson 95% intervals (chart and table);
- ``runs``: success rate over the Skillbook's run history (all labelled runs so far, and the
  runs added since the previous version);
- ``clusters``: the largest failure clusters (same last error, last tool and termination) with
  example trajectories and their last steps;
- ``experiments``: the prompt experiments on live traffic, running and ended, with their arms
  and the skills under test;
- ``skills``: every skill with its evidence, labelled by kind (offline contrast, held-out
  replication, experiment or holdback on live traffic) and its notes (corroborating patterns,
  what successful runs did instead, the condition, exemplars), an odds-ratio chart with 95%
  intervals, and how many active skills do not fit the prompts' budget;
- ``contrasts``: the strongest within-task contrasts tested, skills or not;
- ``changes``: what changed in the latest Skillbook version, or against ``since`` (a
  :class:`pipeline.render.diff.PromptDiff`) with the prompt lines and the kind of evidence that
  moved each skill.

Charts (:mod:`pipeline.report_charts`) are drawn by matplotlib's SVG backend and inlined; the
page loads nothing from anywhere (no script, no font, no stylesheet outside the file).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.analyze import wilson_interval
from pipeline.errors import InputError
from pipeline.render.charts import forest_chart, rate_chart, runs_chart
from pipeline.render.diff import PromptDiff
from pipeline.render.diff_md import example_sources, moved_by
from pipeline.render.environment import environment
from pipeline.render.evidence_notes import evidence_notes
from pipeline.render.lessons import PromptBudget, over_budget_view
from pipeline.render.skillbook_md import (
    evidence_kinds,
    evidence_line,
    experiments_overview,
    offline_label,
)
from pipeline.skillbook import STATUSES, Skill, Skillbook
from pipeline.version import __version__

__all__ = ["REPORT_SECTIONS", "ReportData", "load_report_data", "render_report"]

REPORT_SECTIONS = (
    ("summary", "Run summary"),
    ("domains", "Success rate by domain"),
    ("runs", "Success rate over runs"),
    ("clusters", "Largest failure clusters"),
    ("experiments", "Prompt experiments"),
    ("skills", "Skills and their evidence"),
    ("contrasts", "Strongest contrasts tested"),
    ("changes", "What changed"),
)
TEMPLATE = "report.html.j2"
STATUS_COLOURS = {
    "active": "#1b7837",
    "proposed": "#2166ac",
    "retired": "#878787",
    "rejected": "#b2182b",
}
_TRAJECTORY_COLUMNS = [
    "trajectory_id",
    "source_uri",
    "domain",
    "task_id",
    "agent_name",
    "outcome_label",
    "n_steps",
    "termination_reason",
]


@dataclass
class ReportData:
    """Everything the report shows.

    ``trajectories``: the trajectories table (columns ``_TRAJECTORY_COLUMNS``).
    ``results``/``clusters``/``units``: the Analyzer's frames (see
    :class:`pipeline.analyze.Analysis`). ``last_run``: ``last_run.json`` (the ``coach learn
    --json`` object plus run_id and at) or None. ``meta``: ``analysis/meta.json`` (untested,
    namespaces) or {}. ``steps_path``: the steps table, read only for example trajectories.
    """

    trajectories: pl.DataFrame
    results: pl.DataFrame
    clusters: pl.DataFrame
    units: pl.DataFrame
    skillbook: Skillbook
    steps_path: Path
    last_run: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def load_report_data(data_dir: Path, skillbook_dir: Path) -> ReportData:
    """Read the last run from ``data_dir`` and the Skillbook from ``skillbook_dir``.

    Raises:
        InputError: the tables or the analysis are missing or unreadable (the message says to
            run ``coach learn``). SkillbookError: the Skillbook is unreadable.
    """
    tables, analysis = data_dir / "tables", data_dir / "analysis"
    try:
        trajectories = pl.read_parquet(tables / "trajectories.parquet", columns=_TRAJECTORY_COLUMNS)
        frames = {
            n: pl.read_parquet(analysis / f"{n}.parquet") for n in ("results", "clusters", "units")
        }
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(
            f"{data_dir}: no complete run to report on ({exc}); run 'coach learn' first"
        ) from exc

    def optional_json(path: Path) -> Any:
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{path}: not JSON ({exc}); run 'coach learn' again") from exc

    return ReportData(
        trajectories=trajectories,
        results=frames["results"],
        clusters=frames["clusters"],
        units=frames["units"],
        skillbook=Skillbook.load(skillbook_dir / "skillbook.json"),
        steps_path=tables / "steps.parquet",
        last_run=optional_json(data_dir / "last_run.json"),
        meta=optional_json(analysis / "meta.json") or {},
        sources=example_sources(tables),
    )


# --- sections -------------------------------------------------------------------------------


def _namespace(domain: str | None) -> str:
    return f"domain:{domain}" if domain else "global"


def _domains(data: ReportData) -> list[dict[str, Any]]:
    frame = (
        data.trajectories.with_columns(
            pl.col("domain").map_elements(_namespace, return_dtype=pl.String).alias("namespace")
        )
        .group_by("namespace")
        .agg(
            pl.len().alias("trajectories"),
            (pl.col("outcome_label") == "success").sum().alias("successes"),
            (pl.col("outcome_label") == "failure").sum().alias("failures"),
            pl.col("outcome_label").is_in(["success", "failure"]).sum().alias("labelled"),
        )
        .sort("trajectories", "namespace", descending=[True, False])
    )
    rows = []
    for r in frame.iter_rows(named=True):
        n = int(r["labelled"])
        low, high = wilson_interval(int(r["successes"]), n)
        rows.append(
            r
            | {
                "name": r["namespace"],
                "n": n,
                "rate": r["successes"] / n if n else None,
                "low": low,
                "high": high,
                "stratification": (data.meta.get("namespaces") or {}).get(r["namespace"], ""),
            }
        )
    return rows


def _agents(data: ReportData) -> list[dict[str, Any]]:
    """Success rate per (namespace, agent) with its Wilson interval, labelled runs only."""
    frame = (
        data.trajectories.filter(pl.col("outcome_label").is_in(["success", "failure"]))
        .with_columns(
            pl.col("domain").map_elements(_namespace, return_dtype=pl.String).alias("namespace"),
            pl.col("agent_name").fill_null("(unknown)"),
        )
        .group_by("namespace", "agent_name")
        .agg(pl.len().alias("n"), (pl.col("outcome_label") == "success").sum().alias("successes"))
        .sort("namespace", "agent_name")
    )
    rows = []
    for r in frame.iter_rows(named=True):
        low, high = wilson_interval(int(r["successes"]), int(r["n"]))
        rows.append(r | {"rate": r["successes"] / r["n"], "low": low, "high": high})
    return rows


def _runs(data: ReportData) -> list[dict[str, Any]]:
    """One point per Skillbook history entry that recorded labelled/successes, plus the last
    run when it is newer; ``added_rate`` is the success rate of the runs added since the
    previous point (None when the store did not grow)."""
    entries = [
        {
            "label": f"v{h.get('version')}",
            "at": h.get("at"),
            "run_id": h.get("run_id"),
            **(h.get("counts") or {}),
        }
        for h in data.skillbook.history
    ]
    last = data.last_run
    if last and (not entries or entries[-1].get("run_id") != last.get("run_id")):
        units = data.units
        entries.append(
            {
                "label": "last run",
                "at": last.get("at"),
                "run_id": last.get("run_id"),
                "labelled": units.height,
                "successes": int(units["success"].sum()) if units.height else 0,
            }
        )
    points, previous = [], None
    for e in entries:
        if not e.get("labelled"):
            continue
        rate = e["successes"] / e["labelled"]
        added_rate = None
        if previous is not None and e["labelled"] > previous["labelled"]:
            grown = e["labelled"] - previous["labelled"]
            added = e["successes"] - previous["successes"]
            if 0 <= added <= grown:
                added_rate = added / grown
        points.append(e | {"rate": rate, "added_rate": added_rate})
        previous = e
    return points


def _last_steps(steps_path: Path, trajectory_id: str, limit: int = 6) -> list[dict[str, Any]]:
    if not steps_path.is_file():
        return []
    frame = (
        pl.scan_parquet(steps_path)
        .filter(pl.col("trajectory_id") == trajectory_id)
        .select(
            "step_idx",
            "role",
            "step_type",
            "tool_name",
            "content_text",
            "tool_args",
            "tool_result_text",
            "is_error",
            "error_message",
        )
        .sort("step_idx")
        .tail(limit)
        .collect()
    )
    out = []
    for r in frame.iter_rows(named=True):
        text = r["error_message"] or r["tool_result_text"] or r["content_text"] or ""
        if r["step_type"] == "tool_call":
            text = f"{r['tool_name']}({r['tool_args'] or ''})"
        text = " ".join(str(text).split())
        out.append(
            {
                "step_idx": r["step_idx"],
                "who": r["tool_name"] if r["step_type"] == "tool_result" else r["role"],
                "kind": r["step_type"],
                "text": text[:400] + ("…" if len(text) > 400 else ""),
                "error": bool(r["is_error"]),
            }
        )
    return out


def _clusters(data: ReportData, limit: int) -> list[dict[str, Any]]:
    info = {
        r["trajectory_id"]: r
        for r in data.trajectories.select(
            "trajectory_id", "source_uri", "task_id", "agent_name"
        ).iter_rows(named=True)
    }
    rows = data.clusters.sort(["size", "namespace", "signature"], descending=[True, False, False])
    out = []
    for r in rows.head(limit).iter_rows(named=True):
        parts = dict(part.split("=", 1) for part in r["signature"].split(" | ") if "=" in part)
        ids = list(r["example_ids"] or [])
        # an analysis saved before the clusters kept their steps has no example_steps
        steps = list(r.get("example_steps") or []) + [None] * len(ids)
        examples = [
            info.get(tid, {"trajectory_id": tid, "source_uri": None, "task_id": None})
            | {"step_idx": step}
            for tid, step in zip(ids, steps, strict=False)
        ]
        first = examples[0]["trajectory_id"] if examples else None
        out.append(
            r
            | {
                "error": parts.get("error", ""),
                "last_tool": parts.get("last_tool", ""),
                "termination": parts.get("termination", ""),
                "examples": examples,
                "steps": _last_steps(data.steps_path, first) if first else [],
            }
        )
    return out


def _skill_rows(skills: list[Skill], sources: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for s in skills:
        ev = s.evidence
        rows.append(
            {
                "id": s.id,
                "status": s.status,
                "namespace": s.namespace,
                "section": s.section,
                "instruction": s.instruction,
                "pattern": s.source.get("pattern_id"),
                "version": s.version,
                "flags": list(s.flags),
                "evidence": evidence_line(ev),
                "ev": ev,
                "offline_label": offline_label(ev),
                "kinds": evidence_kinds(s),
                "notes": evidence_notes(ev),
                "examples": [
                    {
                        "trajectory_id": e.get("trajectory_id"),
                        "step_idx": e.get("step_idx"),
                        "source": sources.get(e.get("trajectory_id", "")),
                    }
                    for e in ev.get("examples") or []
                ],
            }
        )
    return rows


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _changes(data: ReportData) -> dict[str, Any]:
    """The latest history entry's changes, with each skill's instruction."""
    if not data.skillbook.history:
        return {"version": data.skillbook.version, "at": None, "items": []}
    entry = data.skillbook.history[-1]
    items = []
    for kind, ids in (entry.get("changes") or {}).items():
        for sid in ids:
            skill = data.skillbook.skills.get(sid)
            items.append(
                {
                    "kind": kind,
                    "id": sid,
                    "instruction": skill.instruction if skill else "(no longer in the Skillbook)",
                    "status": skill.status if skill else "",
                    "evidence": evidence_line(skill.evidence) if skill else "",
                }
            )
    return {"version": entry.get("version"), "at": entry.get("at"), "items": items}


def render_report(
    data: ReportData,
    *,
    since: PromptDiff | None = None,
    title: str = "coach report",
    max_clusters: int = 10,
    max_contrasts: int = 20,
    budget: PromptBudget | None = None,
) -> str:
    """The report as one HTML document (UTF-8 text). Deterministic for the same inputs and
    ``SOURCE_DATE_EPOCH`` (the time shown is the last run's).

    ``budget``: the prompts' budget (default :class:`~pipeline.render.lessons.PromptBudget`);
    the skills section says how many active skills do not fit it, per namespace
    (:func:`~pipeline.render.lessons.over_budget`).

    ``since``: a comparison with an earlier version (:func:`pipeline.render.diff_snapshots`) for
    the "What changed" section; without it, that section lists the latest Skillbook version's
    changes. Rendered from ``report.html.j2`` by :func:`pipeline.render.environment.environment`
    (autoescaped: every value is HTML-escaped unless the template marks it safe).
    """
    domains = _domains(data)
    charted = [d for d in domains if d["n"]]
    runs = _runs(data)
    book = data.skillbook
    skills = sorted(
        book.skills.values(),
        key=lambda s: (STATUSES.index(s.status) if s.status in STATUSES else 99, -s.value, s.id),
    )
    skill_rows = _skill_rows(skills, data.sources)
    forest = [
        {
            "label": f"{s['id']} ({s['status']})",
            "odds_ratio": _number(s["ev"].get("odds_ratio")),
            "ci_low": _number(s["ev"].get("ci_low")),
            "ci_high": _number(s["ev"].get("ci_high")),
            "colour": STATUS_COLOURS.get(s["status"], "#000000"),
        }
        for s in skill_rows
    ]
    results = data.results
    contrasts = (
        results.filter(pl.col("p_value").is_not_null() & pl.col("p_value").is_not_nan())
        .sort("p_value", "namespace", "feature_id")
        .head(max_contrasts)
        .to_dicts()
        if results.height
        else []
    )
    contrast_colours = {
        "significant": "#1b7837",
        "suggestive": "#2166ac",
        "confounded": "#d6604d",
        "not_significant": "#878787",
    }
    several = len({c["namespace"] for c in contrasts}) > 1
    contrast_forest = [
        {
            "label": (f"{c['namespace']} " if several else "") + c["feature_id"][:60],
            "odds_ratio": _number(c["odds_ratio"]),
            "ci_low": _number(c["ci_low"]),
            "ci_high": _number(c["ci_high"]),
            "colour": contrast_colours.get(c["status"], "#000000"),
        }
        for c in contrasts
    ]
    labelled = data.units.height
    successes = int(data.units["success"].sum()) if labelled else 0
    budget = budget or PromptBudget()
    left_out = over_budget_view(book, budget)
    context = {
        "title": title,
        "version": __version__,
        "sections": REPORT_SECTIONS,
        "last_run": data.last_run or {},
        "totals": {
            "trajectories": data.trajectories.height,
            "labelled": labelled,
            "successes": successes,
            "rate": successes / labelled if labelled else None,
            "namespaces": len(domains),
        },
        "skill_counts": book.by_status(),
        "skillbook_version": book.version,
        "skillbook_updated": book.updated_at,
        "domains": domains,
        "agents": _agents(data),
        "domains_chart": rate_chart(charted, "success-by-domain") if charted else None,
        "runs": runs,
        "runs_chart": runs_chart(runs, "success-over-runs") if runs else None,
        "clusters": _clusters(data, max_clusters),
        "n_clusters": data.clusters.height,
        "n_failures": int(data.clusters["size"].sum()) if data.clusters.height else 0,
        "skills": skill_rows,
        "over_budget": left_out,
        "n_over_budget": sum(len(skills) for skills in left_out.values()),
        "budget": budget.describe(),
        "skills_chart": forest_chart(forest, "skills-odds-ratios")
        if any(f["odds_ratio"] for f in forest)
        else None,
        "contrasts": contrasts,
        "contrasts_chart": forest_chart(contrast_forest, "contrasts-odds-ratios")
        if any(f["odds_ratio"] for f in contrast_forest)
        else None,
        "status_colours": STATUS_COLOURS,
        "contrast_colours": contrast_colours,
        "latest": _changes(data),
        "since": since,
        "experiments": experiments_overview(book),
        "moved": {
            c.skill.id: moved_by(c, markdown=False)
            for c in (*since.added, *since.changed, *since.retired)
        }
        if since
        else {},
    }
    return environment().get_template(TEMPLATE).render(**context)

"""What a distillation request carries: one :class:`Item` per candidate skill or failure cluster,
each with the context its prompt is rendered from (the pattern or cluster, its figures, and a few
contrasting trace excerpts: runs of the same task (stratum) with the opposite outcome, read from
the ``steps`` table, redacted, made safe to embed as delimited data and trimmed to a character
budget). :func:`pattern_items` and :func:`cluster_items` build them; :mod:`pipeline.llm.distill`
sends them and checks the replies. :func:`read_steps` and :func:`step_line` turn a run's steps
into such excerpt lines, for the judge (:mod:`pipeline.llm.judge`) too.

Every trace-derived value of a context (namespace, task, tool names, arguments, results, error
messages, pattern ids, the current wording) goes through :func:`~pipeline.llm.prompt.as_data`:
redacted, invisible characters removed, angle brackets and delimiter names neutralised. Each item
also says what a rewording must keep of its pattern (:class:`~pipeline.llm.fidelity.Keep`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipeline.analyze import Analysis
from pipeline.config import LLMConfig
from pipeline.ingest import Traces
from pipeline.llm.fidelity import Keep, keep_for_cluster, keep_for_pattern
from pipeline.llm.prompt import as_data
from pipeline.llm.screen import markers
from pipeline.skillbook import LLM_SECTIONS as SECTIONS, Candidate, skill_id

__all__ = [
    "SECTIONS",
    "Item",
    "cluster_items",
    "pattern_items",
    "read_steps",
    "step_line",
]


@dataclass(frozen=True)
class Item:
    """One thing to distil: a candidate skill (``kind`` ``"pattern"``, ``candidate`` set) or a
    failure cluster (``kind`` ``"cluster"``, ``evidence`` the cluster's).

    ``key``: the skill id the reply would be filed under. ``namespace`` and ``pattern_id``: as in
    :class:`~pipeline.extract.Candidate`. ``tools``: the tool names of the pattern or cluster.
    ``context``: the variables the prompt template is rendered with (see
    ``templates/distill.md.j2``), its ``excerpts`` a list of ``{"id", "outcome", "behaviour",
    "text"}``. ``keep``: what an accepted rewording must keep (tools, argument and value,
    direction); None: it must name one of ``tools``.
    """

    key: str
    namespace: str
    pattern_id: str
    kind: str
    tools: tuple[str, ...]
    context: dict[str, Any]
    candidate: Candidate | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    keep: Keep | None = None


def read_steps(traces: Traces, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The steps of the trajectories ``ids``, read from ``traces``' ``steps`` table: per
    trajectory id (those with steps only, in id order), its steps in ``step_idx`` order as dicts
    with ``trajectory_id``, ``step_idx`` (int), ``step_type``, ``role``, ``content_text``,
    ``tool_name``, ``tool_args`` (JSON text), ``tool_result_text``, ``is_error`` (bool) and
    ``error_message``, the text columns None where absent."""
    con = traces.connect()
    try:
        cursor = con.execute(
            "select trajectory_id, step_idx, step_type, role, content_text, tool_name, "
            "cast(tool_args as varchar) as tool_args, tool_result_text, is_error, error_message "
            "from steps where list_contains(?, trajectory_id) order by trajectory_id, step_idx",
            [list(ids)],
        )
        names = [d[0] for d in cursor.description]
        values = cursor.fetchall()
    finally:
        con.close()
    by_trajectory: dict[str, list[dict[str, Any]]] = {}
    for row_values in values:
        row = dict(zip(names, row_values, strict=True))
        by_trajectory.setdefault(row["trajectory_id"], []).append(row)
    return by_trajectory


def step_line(row: dict[str, Any]) -> str | None:
    """One step (a row of :func:`read_steps`) as one line of an excerpt, every field of it
    passed through :func:`~pipeline.llm.prompt.as_data`: ``call TOOL(ARGS)``, ``result TOOL:
    TEXT``, ``error TOOL: MESSAGE`` or ``ROLE: TEXT``; None for a system step or a message
    without text."""
    kind = row["step_type"]
    if kind == "system":
        return None
    tool = as_data(row["tool_name"] or "", 80)
    if kind == "tool_call":
        return f"call {tool}({as_data(row['tool_args'] or '', 160)})"
    if kind == "tool_result":
        text = row["error_message"] if row["is_error"] else row["tool_result_text"]
        return f"{'error' if row['is_error'] else 'result'} {tool}: {as_data(text or '')}"
    if not row["content_text"]:
        return None
    return f"{as_data(row['role'] or kind, 40)}: {as_data(row['content_text'])}"


def _excerpts(
    traces: Traces, picks: Sequence[tuple[str, int | None, str, str]], budget_chars: int
) -> list[dict[str, Any]]:
    """Excerpts of the picked trajectories ``(trajectory_id, step_idx or None, outcome,
    behaviour)``: the steps from 4 before to 2 after ``step_idx`` (the last 8 steps when None),
    at most ``budget_chars`` characters in all."""
    if not picks:
        return []
    by_trajectory = read_steps(traces, sorted({p[0] for p in picks}))
    out, used = [], 0
    for n, (tid, step, outcome, behaviour) in enumerate(picks, start=1):
        rows = by_trajectory.get(tid, [])
        low, high = (step - 4, step + 2) if step is not None else (-1, -1)
        rows = [r for r in rows if low <= r["step_idx"] <= high] if step is not None else rows[-8:]
        lines = []
        for row in rows:
            line = step_line(row)
            if line is None:
                continue
            line = f"[{row['step_idx']}] {line}"
            if used + len(line) > budget_chars:
                break
            lines.append(line)
            used += len(line) + 1
        if lines:
            out.append(
                {"id": n, "outcome": outcome, "behaviour": behaviour, "text": "\n".join(lines)}
            )
        if used >= budget_chars:
            break
    return out


def _contrast(
    analysis: Analysis,
    namespace: str,
    tids: list[str],
    success: bool,
    exclude: set[str] | None = None,
    without: str | None = None,
) -> list[str]:
    """Trajectories of the same strata as ``tids`` with outcome ``success``, not in
    ``exclude`` and not showing the feature ``without``: one per stratum, in the order of
    ``tids``."""
    units = analysis.units.filter(pl.col("namespace") == namespace)
    strata = dict(zip(units["trajectory_id"].to_list(), units["stratum"].to_list(), strict=True))
    pool = units.filter(
        (pl.col("success") == success)
        & pl.col("stratum").is_in([strata[t] for t in tids if t in strata])
    )
    skip = set(exclude or ())
    if without is not None:
        skip |= analysis.showing(without, pool["trajectory_id"].to_list())
    pool = pool.filter(~pl.col("trajectory_id").is_in(list(skip))).sort("trajectory_id")
    out: list[str] = []
    for tid in tids:
        same = pool.filter(
            (pl.col("stratum") == strata.get(tid)) & ~pl.col("trajectory_id").is_in(out)
        )
        if same.height:
            out.append(same["trajectory_id"][0])
    return out


def _figures(evidence: dict[str, Any]) -> dict[str, Any]:
    """The evidence for a prompt: counts as they are, rates as whole percentages, odds ratio and
    interval to 2 decimals, p and q to 2 significant digits (strings; "n/a" when missing)."""

    def fmt(value: Any, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    return {
        "n_with": evidence.get("n_with"),
        "n_without": evidence.get("n_without"),
        "rate_with": fmt(evidence.get("rate_with"), ".0%"),
        "rate_without": fmt(evidence.get("rate_without"), ".0%"),
        "odds_ratio": fmt(evidence.get("odds_ratio"), ".2f"),
        "ci_low": fmt(evidence.get("ci_low"), ".2f"),
        "ci_high": fmt(evidence.get("ci_high"), ".2f"),
        "p_value": fmt(evidence.get("p_value"), ".2g"),
        "q_value": fmt(evidence.get("q_value"), ".2g"),
        "stratification": evidence.get("stratification"),
    }


_KIND_TEXT = {
    "tool_called": "the agent called {subject}",
    "tool_order": "the agent called {detail} before the write action {subject}",
    "write_arg": "the agent called {subject} with the argument value {detail}",
    "unconfirmed_write": "the agent called the write action {subject} when the last user "
    "message was not an explicit yes",
    "tool_error": "a call to {subject} failed with an error like the one shown",
    "unretried_error": "a call to {subject} failed and the agent never called it again",
    "repeated_call": "the agent repeated an identical call to {subject}",
    "transfer": "the agent transferred the user with {subject}",
}


def _consolidated(evidence: dict[str, Any]) -> dict[str, Any]:
    """What a pattern item adds from a consolidated skill's evidence
    (:func:`pipeline.consolidate.consolidate`, :func:`pipeline.analyze.alternatives`): ``group``
    (the corroborating pattern ids, as data), ``condition`` and ``instead`` (texts or None) and
    ``exemplars`` (their redacted texts, as data)."""
    condition = evidence.get("condition") or {}
    instead = evidence.get("instead") or {}
    return {
        "group": [as_data(str(p.get("pattern_id")), 200) for p in evidence.get("patterns") or []],
        "condition": as_data(str(condition["text"]), 200) if condition.get("text") else None,
        "instead": (
            as_data(
                f"{instead['summary']} ({instead.get('pairs', 0)} aligned runs, share "
                f"{instead.get('share', 0)})",
                200,
            )
            if instead.get("summary")
            else None
        ),
        "exemplars": [
            as_data(f"{e.get('role')}: {e.get('text')}", 240)
            for e in evidence.get("exemplars") or []
        ],
    }


def pattern_items(
    candidates: list[Candidate], analysis: Analysis, traces: Traces, config: LLMConfig
) -> list[Item]:
    """One ``pattern`` item per candidate whose pattern is in ``analysis.results``, in the order
    of ``candidates``: the pattern, its figures, the current wording and excerpts of up to two
    runs that show it and of runs of the same strata with the opposite outcome, at most
    ``config.excerpt_tokens * 4`` characters."""
    results = {(r["namespace"], r["feature_id"]): r for r in analysis.results.iter_rows(named=True)}
    items = []
    for cand in candidates:
        row = results.get((cand.namespace, cand.pattern_id))
        if row is None:
            continue
        harmful = cand.evidence.get("direction") == "harmful"
        shown = [
            t
            for t, _ in analysis.examples(
                cand.namespace, cand.pattern_id, success=not harmful, limit=2
            )
        ]
        steps = dict(
            analysis.examples(cand.namespace, cand.pattern_id, success=not harmful, limit=2)
        )
        other = _contrast(analysis, cand.namespace, shown, harmful, without=cand.pattern_id)
        picks = [(t, steps[t], "success" if not harmful else "failure", "present") for t in shown]
        picks += [(t, None, "success" if harmful else "failure", "absent") for t in other]
        keep = keep_for_pattern(
            row["kind"], cand.evidence.get("direction"), row["subject"] or "", row["detail"] or ""
        )
        subject = as_data(row["subject"] or "", 120)
        detail = as_data(row["detail"] or "", 200)
        context = {
            "item": "pattern",
            "namespace": as_data(cand.namespace, 200),
            "pattern": {
                "id": as_data(cand.pattern_id, 200),
                "kind": row["kind"],
                "subject": subject,
                "detail": detail,
                "description": _KIND_TEXT.get(row["kind"], row["kind"]).format(
                    subject=subject, detail=detail
                ),
                "direction": cand.evidence.get("direction"),
            },
            "evidence": _figures(cand.evidence),
            "current": {"instruction": as_data(cand.instruction, 600), "section": cand.section},
            "keep": {
                "tools": [as_data(t, 120) for t in keep.tools],
                "terms": [as_data(t, 120) for t in keep.terms],
            },
            "excerpts": _excerpts(traces, picks, config.excerpt_tokens * 4),
            "sections": list(SECTIONS),
        } | _consolidated(cand.evidence)
        items.append(
            Item(
                cand.id,
                cand.namespace,
                cand.pattern_id,
                "pattern",
                keep.tools,
                context,
                cand,
                keep=keep,
            )
        )
    return items


def _cluster_examples(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The example pointers of a failure cluster (a row of
    :attr:`pipeline.analyze.Analysis.clusters`): ``{"trajectory_id", "step_idx"}`` per example
    id, the step from the parallel ``example_steps`` list; ``step_idx`` None where it is
    unknown (a null step, or an analysis saved before the clusters kept their steps)."""
    ids = list(row["example_ids"] or [])
    steps = list(row.get("example_steps") or [])
    steps += [None] * (len(ids) - len(steps))
    return [
        {"trajectory_id": t, "step_idx": None if step is None else int(step)}
        for t, step in zip(ids, steps, strict=False)
    ]


def cluster_items(
    analysis: Analysis, traces: Traces, config: LLMConfig, min_size: int
) -> list[Item]:
    """One ``cluster`` item per failure cluster of ``analysis.clusters`` with at least
    ``min_size`` failed runs whose signature names a tool and carries no :func:`markers`, at
    most ``config.max_clusters`` per namespace, largest first; its evidence is the cluster's
    (it is not a contrast) and its excerpts are two failed runs and, where there is one, a success
    of the same task."""
    items: list[Item] = []
    clusters = analysis.clusters
    if not clusters.height:
        return items
    taken: Counter[str] = Counter()
    for row in clusters.sort(
        ["namespace", "size", "signature"], descending=[False, True, False]
    ).iter_rows(named=True):
        namespace, signature = row["namespace"], row["signature"]
        if row["size"] < min_size or taken[namespace] >= config.max_clusters or markers(signature):
            continue
        error = re.match(r"error=([\w.-]+): ", signature)
        last = re.search(r"last_tool=([\w.-]+)", signature)
        tools = tuple(
            dict.fromkeys(m.group(1) for m in (error, last) if m and m.group(1) != "none")
        )
        if not tools:
            continue
        taken[namespace] += 1
        failed = list(row["example_ids"])[:2]
        other = _contrast(analysis, namespace, failed[:1], True, set(failed))
        picks = [(t, None, "failure", "in the cluster") for t in failed]
        picks += [(t, None, "success", "same task") for t in other]
        pattern_id = "failure_cluster:" + hashlib.sha256(signature.encode()).hexdigest()[:12]
        total = round(row["size"] / row["share"]) if row["share"] else row["size"]
        evidence = {
            "kind": "failure_cluster",
            "signature": signature,
            "size": int(row["size"]),
            "share": round(float(row["share"]), 6),
            "failures_in_namespace": int(total),
            "stratification": "none: a failure cluster is not a contrast",
            "examples": _cluster_examples(row),
        }
        context = {
            "item": "cluster",
            "namespace": as_data(namespace, 200),
            "cluster": {
                "signature": as_data(signature, 300),
                "size": int(row["size"]),
                "share": round(float(row["share"]), 4),
                "failures": int(total),
                "tools": [as_data(t, 120) for t in tools],
            },
            "excerpts": _excerpts(traces, picks, config.excerpt_tokens * 4),
            "sections": list(SECTIONS),
        }
        items.append(
            Item(
                skill_id(namespace, pattern_id),
                namespace,
                pattern_id,
                "cluster",
                tools,
                context,
                None,
                evidence,
                keep_for_cluster(tools),
            )  # fmt: skip
        )
    return items

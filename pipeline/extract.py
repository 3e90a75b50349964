"""SkillExtractor: turn significant stratified contrasts into candidate skills, deterministically.

Each candidate is an imperative instruction a system prompt can carry, worded from a template per
feature kind and direction (:data:`TEMPLATES`), so the same input always gives the same text. A
feature kind/direction without a template yields no skill: for example a positive association
with transferring to a human is never turned into "transfer more" (transfers follow the agent's
policy; such associations are the classic confound), and ``turns`` / ``termination`` features are
diagnostics by definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.analyze import (
    DIAGNOSTIC_KINDS,
    Analysis,
    FeatureConfig,
    Target,
    alternatives,
    create_feature_table,
)
from pipeline.consolidate import DEFAULT_THRESHOLD, consolidate
from pipeline.ingest import Traces
from pipeline.skillbook import Candidate, skill_id

__all__ = [
    "Candidate",
    "ExtractorConfig",
    "SkillExtractor",
    "TEMPLATES",
    "evidence_from_row",
    "feedback_namespaces",
    "judged_counts",
    "skill_id",
    "explain",
    "tested_evidence",
    "with_alternatives",
]

# (kind, direction) -> (section, instruction template). direction: "harmful" when the feature
# lowers the odds of success within task (odds ratio < 1), else "helpful".
TEMPLATES: dict[tuple[str, str], tuple[str, str]] = {
    ("tool_called", "harmful"): (
        "pitfalls",
        "Avoid calling {subject} unless the request clearly requires it; check the policy "
        "conditions for it first.",
    ),
    ("tool_called", "helpful"): (
        "procedures",
        "Call {subject} when handling this kind of request before deciding on an action.",
    ),
    ("tool_order", "helpful"): ("procedures", "Call {detail} before calling {subject}."),
    ("tool_order", "harmful"): (
        "pitfalls",
        "Do not go from {detail} straight to {subject}; re-check the request and the policy "
        "before calling {subject}.",
    ),
    ("write_arg", "harmful"): (
        "tool-usage",
        "Before calling {tool} with {arg}={detail}, confirm with the user that this value is "
        "what they asked for.",
    ),
    ("write_arg", "helpful"): (
        "tool-usage",
        "When calling {tool}, check whether {arg} should be {detail}: runs that used it "
        "succeeded more often on the same tasks.",
    ),
    ("unconfirmed_write", "harmful"): (
        "escalation",
        "Before calling {subject}, list the action details and get an explicit yes from the user.",
    ),
    ("tool_error", "harmful"): (
        "tool-usage",
        'Before calling {subject}, check its inputs to avoid the error "{detail}".',
    ),
    ("unretried_error", "harmful"): (
        "tool-usage",
        "When {subject} fails, call it again, fixing what the error points to, before giving up or "
        "escalating.",
    ),
    ("repeated_call", "harmful"): (
        "pitfalls",
        "Do not repeat an identical call to {subject}; change the arguments or ask the user "
        "instead.",
    ),
    ("transfer", "harmful"): (
        "escalation",
        "Transfer to a human agent ({subject}) only when the request cannot be handled with the "
        "available tools and policy.",
    ),
}


@dataclass(frozen=True)
class ExtractorConfig:
    """``max_examples``: example (trajectory_id, step_idx) pointers kept per skill.
    ``propose_suggestive``: also emit suggestive (p < 0.05, q >= fdr) contrasts, as proposals.
    ``consolidate``: the overlap (Jaccard index, or overlap coefficient for views of one
    action) of supporting trajectories at or above which candidates become one skill
    (:func:`pipeline.consolidate.consolidate`); None keeps one candidate per feature."""

    max_examples: int = 5
    propose_suggestive: bool = True
    consolidate: float | None = DEFAULT_THRESHOLD


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), 6)


def judged_counts(analysis: Analysis, judged: frozenset[str]) -> dict[str, int]:
    """Per namespace: how many of its labelled trajectories (``analysis.units``, every one of
    which is counted in n_with + n_without of the namespace's contrasts) are in ``judged``, the
    ids labelled by the LLM judge (:mod:`pipeline.llm.judge`). Namespaces without any are left out."""
    if not judged or analysis.units.height == 0:
        return {}
    counts = (
        analysis.units.filter(pl.col("trajectory_id").is_in(list(judged)))
        .group_by("namespace")
        .len()
    )
    return dict(zip(counts["namespace"].to_list(), counts["len"].to_list(), strict=True))


def evidence_from_row(row: dict[str, Any], judged: int = 0) -> dict[str, Any]:
    """The JSON-ready evidence of one Analyzer result row (without examples): n_with,
    n_without, successes_with, successes_without, n_strata, method, stratification, rate_with,
    rate_without, lift, odds_ratio, ci_low, ci_high, p_value, q_value (floats rounded to 6
    places, non-finite as null) and direction (harmful when the odds ratio is below 1); plus
    ``llm_judged`` when ``judged`` (of the n_with + n_without runs, those labelled by the LLM
    judge, see :func:`judged_counts`) is above zero."""
    direction = "harmful" if (row["odds_ratio"] or 0) < 1 else "helpful"
    return (
        {
            key: row[key]
            for key in (
                "n_with",
                "n_without",
                "successes_with",
                "successes_without",
                "n_strata",
                "method",
                "stratification",
            )
        }
        | {
            key: _number(row[key])
            for key in (
                "rate_with",
                "rate_without",
                "lift",
                "odds_ratio",
                "ci_low",
                "ci_high",
                "p_value",
                "q_value",
            )
        }
        | {"direction": direction}
        | ({"llm_judged": judged} if judged else {})
    )


def tested_evidence(
    analysis: Analysis, judged: frozenset[str] = frozenset()
) -> list[tuple[str, str, dict[str, Any]]]:
    """(skill id, pattern id, evidence) for every tested result, so that known skills can be
    updated with the latest figures even when they are no longer significant. ``judged``: ids
    of trajectories labelled by the LLM judge (counted as ``llm_judged``)."""
    counts = judged_counts(analysis, judged)
    return [
        (
            skill_id(r["namespace"], r["feature_id"]),
            r["feature_id"],
            evidence_from_row(r, counts.get(r["namespace"], 0)),
        )
        for r in analysis.results.iter_rows(named=True)
    ]


def feedback_namespaces(trajectories: pl.DataFrame) -> frozenset[str]:
    """Namespaces (``domain:<name>``, or ``global`` without a domain) where more than half of
    the labelled trajectories take their outcome from an explicit feedback score
    (``outcome_source`` ``feedback:<name>``, as the ingest adapters set it).
    ``trajectories``: columns ``domain``, ``outcome_label``, ``outcome_source``."""
    if trajectories.height == 0 or "outcome_source" not in trajectories.columns:
        return frozenset()
    labelled = trajectories.filter(pl.col("outcome_label").is_in(["success", "failure"]))
    shares = (
        labelled.with_columns(
            pl.when(pl.col("domain").is_not_null() & (pl.col("domain") != ""))
            .then(pl.lit("domain:") + pl.col("domain"))
            .otherwise(pl.lit("global"))
            .alias("namespace"),
            pl.col("outcome_source").fill_null("").str.starts_with("feedback:").alias("fb"),
        )
        .group_by("namespace")
        .agg(pl.col("fb").mean().alias("share"))
        .filter(pl.col("share") > 0.5)
    )
    return frozenset(shares["namespace"].to_list())


class SkillExtractor:
    """``SkillExtractor(config).run(analysis) -> list[Candidate]``, sorted by id."""

    def __init__(self, config: ExtractorConfig | None = None) -> None:
        self.config = config or ExtractorConfig()

    def run(
        self,
        analysis: Analysis,
        feedback_namespaces: frozenset[str] = frozenset(),
        judged: frozenset[str] = frozenset(),
    ) -> list[Candidate]:
        """Candidates for every significant (and, if configured, suggestive) result whose kind
        and direction have a template, consolidated (``config.consolidate``): features shown
        by nearly the same trajectories become one candidate, the clearest as its headline and
        the others in ``evidence["patterns"]`` (see :func:`pipeline.consolidate.consolidate`).

        Sections (the learning stores) follow the template: ``procedures`` (what successful
        runs do), ``pitfalls`` (what failed runs do), ``tool-usage`` (tool errors and argument
        values), ``escalation`` (confirmations and transfers). In ``feedback_namespaces``
        (see :func:`feedback_namespaces`), where the outcomes are explicit feedback scores,
        every candidate goes to the ``feedback`` section instead, with the template's section
        kept as ``evidence["store"]``.

        Evidence keys: n_with, n_without, successes_with, successes_without, rate_with,
        rate_without (fractions), lift, odds_ratio, ci_low, ci_high (95%), p_value, q_value,
        method, stratification, n_strata, direction, examples (list of
        ``{"trajectory_id", "step_idx"}``); and ``llm_judged`` (how many of the n_with +
        n_without runs the LLM judge labelled) when any of ``judged`` (trajectory ids) is among
        them.
        """
        counts = judged_counts(analysis, judged)
        wanted = ["significant"] + (["suggestive"] if self.config.propose_suggestive else [])
        rows = analysis.results.filter(pl.col("status").is_in(wanted))
        out = []
        features: dict[tuple[str, str], tuple[str, str | None]] = {}
        for row in rows.iter_rows(named=True):
            features[(row["namespace"], row["feature_id"])] = (row["kind"], row["subject"])
            if row["kind"] in DIAGNOSTIC_KINDS or not math.isfinite(row["odds_ratio"] or math.nan):
                continue
            direction = "harmful" if row["odds_ratio"] < 1 else "helpful"
            template = TEMPLATES.get((row["kind"], direction))
            if template is None:
                continue
            section, text = template
            store = section
            if row["namespace"] in feedback_namespaces:
                section = "feedback"
            subject = row["subject"] or ""
            tool, _, arg = subject.partition(".")
            instruction = text.format(
                subject=subject, detail=row["detail"] or "", tool=tool, arg=arg
            )
            examples = analysis.examples(
                row["namespace"],
                row["feature_id"],
                success=direction == "helpful",
                limit=self.config.max_examples,
            )
            evidence = evidence_from_row(row, counts.get(row["namespace"], 0)) | {
                "examples": [{"trajectory_id": t, "step_idx": s} for t, s in examples],
            }
            if section == "feedback":
                evidence["store"] = store
            out.append(
                Candidate(
                    id=skill_id(row["namespace"], row["feature_id"]),
                    pattern_id=row["feature_id"],
                    namespace=row["namespace"],
                    section=section,
                    instruction=instruction,
                    significant=row["status"] == "significant",
                    evidence=evidence,
                )
            )
        if self.config.consolidate is not None:
            return consolidate(out, analysis.overlaps, features, self.config.consolidate)
        return sorted(out, key=lambda c: c.id)


def with_alternatives(
    candidates: list[Candidate], found: dict[str, dict[str, Any]]
) -> list[Candidate]:
    """``candidates`` with what :func:`pipeline.analyze.instead.alternatives` found for them
    (keyed by candidate id): its ``instead``, ``condition`` and ``exemplars`` added to the
    evidence, and the instruction extended with the condition ("It went wrong most when ...")
    and the alternative ("Successful runs ... at that point instead.") for harmful skills.
    Wording that an LLM or a
    person wrote (``source["method"]`` other than ``rule``) is kept as it is. Candidates
    without findings are returned unchanged; the order is kept."""
    out = []
    for cand in candidates:
        extra = {k: v for k, v in (found.get(cand.id) or {}).items() if v}
        if not extra:
            out.append(cand)
            continue
        instruction = cand.instruction
        if cand.source.get("method", "rule") == "rule":
            instruction = instruction + _clauses(cand.evidence.get("direction"), extra)
        out.append(
            Candidate(
                id=cand.id,
                pattern_id=cand.pattern_id,
                namespace=cand.namespace,
                section=cand.section,
                instruction=instruction,
                significant=cand.significant,
                evidence={**cand.evidence, **extra},
                source=cand.source,
            )
        )
    return out


# An alternative goes into the prompt line only when most aligned runs agree on it.
MIN_INSTEAD_SHARE, MIN_INSTEAD_PAIRS = 0.5, 5


def _clauses(direction: Any, extra: dict[str, Any]) -> str:
    """The condition and the alternative as sentences to append to a harmful skill's
    instruction (a helpful one keeps them in its evidence): the condition when there is one,
    the alternative when at least
    :data:`MIN_INSTEAD_PAIRS` aligned runs were compared and :data:`MIN_INSTEAD_SHARE` of them
    did something else than the action, other than ending the run (the evidence keeps it in any
    case)."""
    text = ""
    condition = extra.get("condition") or {}
    instead = extra.get("instead") or {}
    if direction == "harmful" and condition.get("text"):
        text += f" It went wrong most when {condition['text']}."
    if (
        direction == "harmful"
        and instead.get("summary")
        and instead.get("action") not in ("same_action", "end")
        and float(instead.get("share") or 0) >= MIN_INSTEAD_SHARE
        and int(instead.get("pairs") or 0) >= MIN_INSTEAD_PAIRS
    ):
        text += (
            f" Successful runs of the same kind of request {instead['summary']} at that point"
            " instead."
        )
    return text


def explain(
    candidates: list[Candidate], analysis: Analysis, traces: Traces, config: FeatureConfig
) -> list[Candidate]:
    """``candidates`` worded with when their action goes wrong and what runs that went the
    other way did instead (:func:`pipeline.analyze.alternatives` on their headline patterns,
    then :func:`with_alternatives`). Reads the steps of ``traces`` and the analysis's feature
    file (the features are derived again from the steps when the analysis was loaded from
    disk). Candidates from failure clusters or without a direction are left as they are."""
    targets = [
        Target(c.id, c.namespace, c.pattern_id, str(c.evidence["direction"]))
        for c in candidates
        if c.evidence.get("direction") in ("harmful", "helpful") and ":" in c.pattern_id
    ]
    if not targets:
        return candidates
    con = traces.connect(memory_limit=analysis.config.memory_limit, threads=analysis.config.threads)
    try:
        if analysis.feature_file is not None:
            path = str(analysis.feature_file).replace("'", "''")
            con.execute(
                f"create or replace temp view features as select * from read_parquet('{path}')"
            )
        else:
            create_feature_table(con, config)
        found = alternatives(con, analysis.units, targets, config)
    finally:
        con.close()
    return with_alternatives(candidates, found)

"""Evaluation: do learned skills hold on trajectories they were not learned from?

Held-out validation (``coach evaluate``): :func:`split_traces` divides one ingest into a training
and a test part (by time, by task or at random), or two ingests are given; :func:`evaluate`
learns on the training part (Analyzer, SkillExtractor, merge into an empty in-memory Skillbook)
and :func:`validate` measures every active and proposed skill on the test part with the same
feature definitions (:func:`pipeline.analyze.derive_features`) and the same contrast as the
Analyzer (within task, CMH or conditional logistic regression adjusted for agent, where tasks
repeat: :func:`pipeline.analyze.stratified_contrast`). A skill *replicates* when the direction
of its effect (odds ratio below or above 1) is the same on the test part; it *stays
significant* when, in addition, its Benjamini–Hochberg q-value over the skills measured is
below the FDR level.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.analyze import (
    Analysis,
    Analyzer,
    AnalyzerConfig,
    Effect,
    benjamini_hochberg,
    derive_features,
    stratified_contrast,
    task_keys,
    units_and_strata,
)
from pipeline.errors import InputError
from pipeline.extract import SkillExtractor, tested_evidence
from pipeline.ingest import Traces
from pipeline.skillbook import Skill, Skillbook

__all__ = [
    "Evaluation",
    "SPLITS",
    "SkillValidation",
    "evaluate",
    "split_traces",
    "subset",
    "validate",
]

SPLITS = ("time", "task", "random")


def subset(traces: Traces, trajectory_ids: Iterable[str]) -> Traces:
    """``traces`` restricted to ``trajectory_ids`` (the three tables filtered by
    ``trajectory_id``); quarantine, file reports and settings are kept as they are."""
    wanted = pa.array(sorted(set(trajectory_ids)), type=pa.string())

    def keep(table: pa.Table) -> pa.Table:
        return table.filter(pc.is_in(table.column("trajectory_id"), value_set=wanted))

    return Traces(
        keep(traces.trajectories),
        keep(traces.steps),
        keep(traces.feedback),
        traces.quarantine,
        traces.files,
        traces.warnings,
        traces.settings,
    )


def split_traces(
    traces: Traces, how: str, ratio: float = 0.7, seed: int = 0
) -> tuple[Traces, Traces]:
    """Split ``traces`` into (training, test) parts holding about ``ratio`` and ``1 - ratio`` of
    the trajectories.

    - ``time``: the earliest ``ratio`` of trajectories by ``started_at`` (ties and missing times
      ordered by trajectory id, missing times last) train, the rest test.
    - ``task``: whole tasks go to one side (task keys as the Analyzer aligns them,
      :func:`pipeline.analyze.task_keys`; a trajectory without a task is a task of its own), drawn
      at random with ``seed`` until the training part holds ``ratio`` of the trajectories.
    - ``random``: each trajectory independently, shuffled with ``seed``.

    Raises:
        InputError: ``how`` is unknown, ``ratio`` is not strictly between 0 and 1, or a part
            would be empty.
    """
    if how not in SPLITS:
        raise InputError(f"unknown split {how!r}; choose one of {', '.join(SPLITS)}")
    if not 0 < ratio < 1:
        raise InputError(f"--ratio must be strictly between 0 and 1, not {ratio}")
    frame = pl.from_arrow(traces.trajectories)
    assert isinstance(frame, pl.DataFrame)
    ids = frame["trajectory_id"].to_list()
    target = round(len(ids) * ratio)
    if how == "time":
        by_time = frame.sort(["started_at", "trajectory_id"], nulls_last=True)
        train = set(by_time["trajectory_id"].head(target).to_list())
    elif how == "random":
        shuffled = sorted(ids)
        random.Random(seed).shuffle(shuffled)
        train = set(shuffled[:target])
    else:
        keys = task_keys(frame).with_columns(pl.col("task_key").fill_null(pl.col("trajectory_id")))
        groups = keys.group_by("task_key").agg("trajectory_id").sort("task_key")
        order = list(range(groups.height))
        random.Random(seed).shuffle(order)
        members = groups["trajectory_id"].to_list()
        train = set()
        for index in order:
            if len(train) >= target:
                break
            train.update(members[index])
    test = set(ids) - train
    if not train or not test:
        raise InputError(
            f"a {how} split at ratio {ratio} of {len(ids)} trajectories leaves a part empty; "
            "give more trajectories or another ratio"
        )
    return subset(traces, train), subset(traces, test)


@dataclass(frozen=True)
class SkillValidation:
    """One skill measured on the test part.

    ``train_direction``: ``harmful`` or ``helpful`` as learned. Counts and rates are of the
    test part's labelled trajectories in the skill's namespace (rates are fractions, NaN when a
    group is empty). ``odds_ratio`` / ``ci_low`` / ``ci_high`` / ``p_value``: the stratified
    contrast (``method`` cmh, clogit or fisher, as the Analyzer would choose on the test part,
    over ``n_strata`` informative strata); ``q_value``: Benjamini–Hochberg over the skills
    measured. ``direction_holds``: the test odds ratio is on the learned side of 1 (None when
    the contrast cannot be measured: no test run with or without the behaviour, or no
    informative stratum). ``significant``: the direction holds and ``q_value < fdr``.
    """

    skill_id: str
    namespace: str
    pattern_id: str
    status: str
    instruction: str
    train_direction: str
    train_odds_ratio: float | None
    n_with: int
    n_without: int
    successes_with: int
    successes_without: int
    rate_with: float
    rate_without: float
    odds_ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    q_value: float
    method: str
    n_strata: int
    direction_holds: bool | None
    significant: bool

    @property
    def verdict(self) -> str:
        """``replicated`` (direction holds and significant), ``direction holds``, ``reversed``
        or ``not measurable``."""
        if self.direction_holds is None:
            return "not measurable"
        if not self.direction_holds:
            return "reversed"
        return "replicated" if self.significant else "direction holds"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite floats as null) with ``verdict``."""
        data = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }
        return data | {"verdict": self.verdict}


def validate(
    skills: Iterable[Skill], test: Traces, config: AnalyzerConfig | None = None
) -> list[SkillValidation]:
    """Measure each skill's behaviour (``skill.source["pattern_id"]``, a feature id) on ``test``.

    Args:
        skills: the skills to validate (any status; callers pass active and proposed ones).
        test: held-out trajectories.
        config: the feature definitions, ``min_strata`` and ``fdr`` (default
            :class:`~pipeline.analyze.AnalyzerConfig`); ``min_support`` does not apply: a
            skill is measured whenever the test part has runs with and without its behaviour.

    Returns:
        One :class:`SkillValidation` per skill, sorted by skill id.
    """
    cfg = config or AnalyzerConfig()
    features = derive_features(test.connect(), cfg.features)
    units, strata = units_and_strata(test, cfg)
    measured: list[dict[str, Any]] = []
    for skill in sorted(skills, key=lambda s: s.id):
        pattern = str(skill.source.get("pattern_id", ""))
        group = units.filter(pl.col("namespace") == skill.namespace)
        hits = features.filter(pl.col("feature_id") == pattern)["trajectory_id"]
        x = group["trajectory_id"].is_in(hits.implode()).to_numpy().astype(int)
        y = group["success"].to_numpy().astype(int)
        n_with = int(x.sum())
        n_without = len(x) - n_with
        s_with, s_without = int((x & y).sum()), int(((1 - x) & y).sum())
        how = strata.get(skill.namespace)
        effect, n_strata, method = Effect(math.nan, math.nan, math.nan, 1.0), 0, "none"
        if n_with and n_without and how is not None and how.tested:
            effect, n_strata, method = stratified_contrast(
                x,
                y,
                group["stratum"].to_numpy(),
                group["agent"].to_numpy(),
                how,
                cfg.min_strata,
            )
        direction = str(skill.source.get("direction") or skill.evidence.get("direction") or "")
        holds: bool | None = None
        if math.isfinite(effect.odds_ratio) or effect.odds_ratio == math.inf:
            holds = effect.odds_ratio < 1 if direction == "harmful" else effect.odds_ratio > 1
        measured.append(
            {
                "skill_id": skill.id,
                "namespace": skill.namespace,
                "pattern_id": pattern,
                "status": skill.status,
                "instruction": skill.instruction,
                "train_direction": direction,
                "train_odds_ratio": skill.evidence.get("odds_ratio"),
                "n_with": n_with,
                "n_without": n_without,
                "successes_with": s_with,
                "successes_without": s_without,
                "rate_with": s_with / n_with if n_with else math.nan,
                "rate_without": s_without / n_without if n_without else math.nan,
                "odds_ratio": effect.odds_ratio,
                "ci_low": effect.ci_low,
                "ci_high": effect.ci_high,
                "p_value": effect.p_value,
                "method": method,
                "n_strata": n_strata,
                "direction_holds": holds,
            }
        )
    tested = [i for i, m in enumerate(measured) if m["direction_holds"] is not None]
    q = np.full(len(measured), math.nan)
    if tested:
        q[tested] = benjamini_hochberg([measured[i]["p_value"] for i in tested])
    return [
        SkillValidation(
            **m,
            q_value=float(q[i]),
            significant=bool(m["direction_holds"]) and bool(q[i] < cfg.fdr),
        )
        for i, m in enumerate(measured)
    ]


@dataclass
class Evaluation:
    """A held-out evaluation: the Skillbook learned on the training part (in memory), the
    Analysis it came from, and one :class:`SkillValidation` per active or proposed skill."""

    skillbook: Skillbook
    analysis: Analysis
    validations: list[SkillValidation]
    train_trajectories: int
    test_trajectories: int
    split: str
    fdr: float = 0.05
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The ``coach evaluate --json`` object: ``split``, ``train_trajectories``,
        ``test_trajectories``, ``skills`` (learned, by status), ``measured`` (skills
        measurable on the test part), ``replicated_direction`` / ``replication_rate`` (share of
        measured skills whose direction holds; null when none was measured), ``significant`` /
        ``significant_rate``, ``by_status`` (the same per skill status) and ``validations`` (one
        dict per skill, see :meth:`SkillValidation.to_dict`)."""
        return {
            "split": self.split,
            "train_trajectories": self.train_trajectories,
            "test_trajectories": self.test_trajectories,
            "skills": self.skillbook.by_status(),
            **_rates(self.validations),
            "by_status": {
                status: _rates([v for v in self.validations if v.status == status])
                for status in ("active", "proposed")
            },
            "validations": [v.to_dict() for v in self.validations],
            **self.extra,
        }


def _rates(validations: Sequence[SkillValidation]) -> dict[str, Any]:
    measured = [v for v in validations if v.direction_holds is not None]
    holds = sum(bool(v.direction_holds) for v in measured)
    significant = sum(v.significant for v in measured)
    return {
        "validated": len(validations),
        "measured": len(measured),
        "replicated_direction": holds,
        "replication_rate": holds / len(measured) if measured else None,
        "significant": significant,
        "significant_rate": significant / len(measured) if measured else None,
    }


def evaluate(
    train: Traces,
    test: Traces,
    config: AnalyzerConfig | None = None,
    *,
    mode: str = "auto",
    now: str = "1970-01-01T00:00:00Z",
    split: str = "given",
) -> Evaluation:
    """Learn on ``train`` and validate the active and proposed skills on ``test``.

    The Skillbook is a fresh in-memory one: nothing is written. ``mode`` as in ``coach learn``
    (``propose`` keeps every skill proposed). ``split`` is only recorded in the result.
    """
    cfg = config or AnalyzerConfig()
    analysis = Analyzer(cfg).run(train)
    candidates = SkillExtractor().run(analysis)
    book = Skillbook()
    book.merge(candidates, mode=mode, now=now, tested=tested_evidence(analysis))
    skills = [s for s in book.skills.values() if s.status in ("active", "proposed")]
    validations = validate(skills, test, cfg)
    return Evaluation(
        book,
        analysis,
        validations,
        train.trajectories.num_rows,
        test.trajectories.num_rows,
        split,
        cfg.fdr,
    )

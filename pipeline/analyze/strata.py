"""Units and strata: which labelled trajectories the Analyzer compares with which.

:func:`units_and_strata` gives the labelled trajectories (the *units*) with their namespace,
stratum and agent, and each namespace's :class:`Stratification`: a typed value that code
branches on (:attr:`~Stratification.kind`, :attr:`~Stratification.adjusted_for_agent`) and
that is written as a sentence only for people (:meth:`~Stratification.describe`).

The stratified test of one feature comes from per-trajectory arrays
(:func:`stratified_effect`) or from per-stratum counts (:func:`cmh_from_counts`); what is
reported for it depends on the stratification (:func:`reported_effect`), and
:func:`stratified_contrast` is the whole rule for one feature given as arrays (used by held-out
validation, :mod:`pipeline.evaluate`). The method is described in :mod:`pipeline.analyze`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.analyze.stats import Effect, cmh, conditional_logit, fisher
from pipeline.analyze.tasks import task_keys
from pipeline.config import AnalyzerConfig
from pipeline.ingest import Traces

__all__ = [
    "StrataKind",
    "Stratification",
    "cmh_from_counts",
    "reported_effect",
    "stratified_contrast",
    "stratified_effect",
    "units_and_strata",
]


class StrataKind(enum.Enum):
    """What a namespace's contrasts are stratified by."""

    #: tasks repeat (at least half of the labelled runs share a task with another run): the
    #: strata are task keys
    TASK = "task"
    #: tasks do not repeat and several agents ran: the strata are the agents
    AGENT = "agent"
    #: tasks do not repeat and one agent ran: the namespace is the one stratum
    DOMAIN = "domain"
    #: every labelled run has the same outcome: nothing to contrast
    NOT_TESTED = "not_tested"


@dataclass(frozen=True)
class Stratification:
    """How one namespace's contrasts are stratified, or why it was not tested.

    ``runs``: labelled runs in the namespace. ``agents``: distinct agents among them.
    ``tasks``: distinct task keys among them, runs without a task counted together as one
    (0 unless ``kind`` is TASK). ``aligned``: runs whose task key was aligned across datasets
    by instruction (:func:`pipeline.analyze.task_keys`; 0 unless TASK). ``outcome``: the one
    outcome of every labelled run (``"success"`` or ``"failure"``) when ``kind`` is
    NOT_TESTED, else None.
    """

    kind: StrataKind
    runs: int
    agents: int
    tasks: int = 0
    aligned: int = 0
    outcome: Literal["success", "failure"] | None = None

    @property
    def tested(self) -> bool:
        """The namespace's features are tested (both outcomes occur)."""
        return self.kind is not StrataKind.NOT_TESTED

    @property
    def by_task(self) -> bool:
        """The strata are tasks: only then can a contrast be significant (see
        :mod:`pipeline.analyze`)."""
        return self.kind is StrataKind.TASK

    @property
    def adjusted_for_agent(self) -> bool:
        """Task strata with several agents: the test is conditional logistic regression with
        one indicator per agent (otherwise CMH, or Fisher within the domain)."""
        return self.kind is StrataKind.TASK and self.agents > 1

    def describe(self) -> str:
        """The sentence shown to people and stored in the evidence (``stratification``), e.g.
        ``task (50 tasks), adjusted for agent (4 agents)``, ``agent (3 agents); tasks do not
        repeat``, ``none finer than the domain; tasks do not repeat``, ``not tested: all 12
        labelled runs are successes, nothing to contrast``."""
        if self.kind is StrataKind.NOT_TESTED:
            plural = {"success": "successes", "failure": "failures"}.get(str(self.outcome))
            runs = (
                f"all {self.runs} labelled runs are {plural}"
                if self.runs > 1
                else f"the only labelled run is a {self.outcome}"
            )
            return f"not tested: {runs}, nothing to contrast"
        if self.kind is StrataKind.TASK:
            how = f"task ({self.tasks} tasks"
            how += (
                f"; {self.aligned} runs aligned across datasets by instruction)"
                if self.aligned
                else ")"
            )
            if self.agents > 1:
                how += f", adjusted for agent ({self.agents} agents)"
            return how
        if self.kind is StrataKind.AGENT:
            return f"agent ({self.agents} agents); tasks do not repeat"
        return "none finer than the domain; tasks do not repeat"

    __str__ = describe

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields, ``kind`` as its value (``"task"``, ...)."""
        return asdict(self) | {"kind": self.kind.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stratification:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: an unknown ``kind``. KeyError: a field is missing.
        """
        return cls(
            StrataKind(data["kind"]),
            int(data["runs"]),
            int(data["agents"]),
            int(data.get("tasks", 0)),
            int(data.get("aligned", 0)),
            data.get("outcome"),
        )


def units_and_strata(
    traces: Traces, config: AnalyzerConfig
) -> tuple[pl.DataFrame, dict[str, Stratification]]:
    """The labelled trajectories of ``traces`` and how each namespace is stratified.

    Task keys come from :func:`pipeline.analyze.task_keys` when ``config.align_tasks``, else
    ``<dataset>:<task_id>``. A namespace's strata are its task keys (a run without a task is a
    stratum of its own) when at least half of its labelled runs share a task key with another
    run; otherwise its agents.

    Returns:
        ``units``: polars DataFrame sorted by trajectory id, one row per trajectory whose
        ``outcome_label`` is not ``unknown``: ``trajectory_id`` (str), ``namespace`` (str,
        ``domain:<domain>`` or ``global``), ``task_key`` (str, null without a task),
        ``aligned`` (bool), ``agent`` (str: agent name, else model, else ``unknown agent``),
        ``success`` (bool), ``stratum`` (str). And ``{namespace: Stratification}`` in the
        order the namespaces first appear.
    """
    # only the columns read here and by task_keys: polars copies what it converts
    columns = ("trajectory_id", "dataset", "domain", "task_id", "agent_name", "model",
               "user_id", "metadata", "outcome_label")  # fmt: skip
    trajectories = pl.from_arrow(traces.trajectories.select(list(columns)))
    assert isinstance(trajectories, pl.DataFrame)
    if config.align_tasks:
        keys = task_keys(trajectories)
    else:
        keys = trajectories.select(
            "trajectory_id",
            (pl.col("dataset").fill_null("") + ":" + pl.col("task_id")).alias("task_key"),
            pl.lit(False).alias("aligned"),
        )
    units = (
        trajectories.filter(pl.col("outcome_label") != "unknown")
        .join(keys, on="trajectory_id", how="left")
        .select(
            "trajectory_id",
            pl.when(pl.col("domain").fill_null("") == "")
            .then(pl.lit("global"))
            .otherwise(pl.lit("domain:") + pl.col("domain"))
            .alias("namespace"),
            "task_key",
            "aligned",
            pl.coalesce("agent_name", "model", pl.lit("unknown agent")).alias("agent"),
            (pl.col("outcome_label") == "success").alias("success"),
        )
    )
    strata: dict[str, Stratification] = {}
    parts = []
    for (namespace,), group in units.group_by(["namespace"], maintain_order=True):
        assert isinstance(namespace, str)
        sizes = group.group_by("task_key").len()
        repeated = sizes.filter(pl.col("task_key").is_not_null() & (pl.col("len") >= 2))
        n_agents = group["agent"].n_unique()
        if repeated["len"].sum() * 2 >= group.height:
            how = Stratification(
                StrataKind.TASK,
                group.height,
                n_agents,
                tasks=sizes.height,
                aligned=int(group["aligned"].sum()),
            )
            group = group.with_columns(
                pl.col("task_key").fill_null(pl.col("trajectory_id")).alias("stratum")
            )
        else:
            kind = StrataKind.AGENT if n_agents > 1 else StrataKind.DOMAIN
            how = Stratification(kind, group.height, n_agents)
            group = group.with_columns(pl.col("agent").alias("stratum"))
        if group["success"].n_unique() < 2:
            outcome: Literal["success", "failure"] = "success" if group["success"][0] else "failure"
            how = Stratification(StrataKind.NOT_TESTED, group.height, n_agents, outcome=outcome)
        strata[namespace] = how
        parts.append(group)
    units = (
        pl.concat(parts) if parts else units.with_columns(pl.lit(None, pl.String).alias("stratum"))
    )
    return units.sort("trajectory_id"), strata


def stratified_effect(
    x: np.ndarray, y: np.ndarray, strata: np.ndarray, agents: np.ndarray, use_clogit: bool
) -> tuple[Effect, int, str]:
    """The stratified effect of a feature on success, over the informative strata (those where
    both the feature and the outcome vary).

    Args:
        x: (n,) int 0/1, the feature shown. y: (n,) int 0/1, success.
        strata: (n,) stratum labels. agents: (n,) agent labels (used with ``use_clogit``).
        use_clogit: conditional logistic regression adjusted for agent
            (:func:`pipeline.analyze.conditional_logit`), else CMH (:func:`pipeline.analyze.cmh`).

    Returns:
        (effect, number of informative strata, method ``"clogit"`` or ``"cmh"``).
    """
    codes, inverse = np.unique(strata, return_inverse=True)
    k = len(codes)
    tables = np.zeros((k, 2, 2))
    np.add.at(tables, (inverse, 1 - x, 1 - y), 1)
    informative = (tables.sum(axis=2).min(axis=1) > 0) & (tables.sum(axis=1).min(axis=1) > 0)
    n_informative = int(informative.sum())
    if use_clogit:
        keep = informative[inverse]
        names, agent_codes = np.unique(agents[keep], return_inverse=True)
        dummies = np.eye(len(names))[agent_codes][:, 1:] if len(names) > 1 else None
        effect = conditional_logit(y[keep], x[keep], strata[keep], dummies)
        return effect, n_informative, "clogit"
    return cmh(tables[informative]), n_informative, "cmh"


def cmh_from_counts(
    codes: np.ndarray,
    n_with: np.ndarray,
    s_with: np.ndarray,
    stratum_n: np.ndarray,
    stratum_s: np.ndarray,
) -> tuple[Effect, int]:
    """CMH over the informative strata among ``codes`` (ascending int stratum codes where the
    feature shows, with its runs ``n_with`` and successes ``s_with`` there), given every
    stratum's runs ``stratum_n`` and successes ``stratum_s`` (int arrays indexed by code): the
    same tables, in the same order, as :func:`stratified_effect` builds from per-trajectory
    arrays. Strata where the feature never shows are never informative.

    Returns:
        (effect, number of informative strata).
    """
    n, s = stratum_n[codes], stratum_s[codes]
    a = s_with
    b = n_with - s_with
    c = s - s_with
    d = (n - s) - b
    tables = np.stack([np.stack([a, b], axis=1), np.stack([c, d], axis=1)], axis=1).astype(float)
    informative = (n_with > 0) & (n - n_with > 0) & (s > 0) & (n - s > 0)
    return cmh(tables[informative]), int(informative.sum())


def reported_effect(
    how: Stratification,
    effect: Effect,
    n_strata: int,
    method: str,
    *,
    naive: Effect,
    one_stratum: bool,
    min_strata: int,
) -> tuple[Effect, str]:
    """The effect and method reported for a feature, given its stratified ``effect`` over
    ``n_strata`` informative strata by ``method`` and its ``naive`` (Fisher) effect:

    - no task strata and a single stratum (one agent, tasks do not repeat): the namespace is
      the one stratum and Fisher's exact test is the within-stratum test (``naive``,
      ``"fisher"``);
    - task strata but fewer than ``min_strata`` informative ones: not reported as an effect
      (``Effect(nan, nan, nan, 1.0)``);
    - otherwise ``effect`` and ``method`` as they are.
    """
    if not how.by_task and one_stratum:
        return naive, "fisher"
    if how.by_task and n_strata < min_strata:
        return Effect(math.nan, math.nan, math.nan, 1.0), method
    return effect, method


def stratified_contrast(
    x: np.ndarray,
    y: np.ndarray,
    strata: np.ndarray,
    agents: np.ndarray,
    how: Stratification,
    min_strata: int,
) -> tuple[Effect, int, str]:
    """The Analyzer's contrast of one feature from per-trajectory arrays (as
    :func:`stratified_effect`; ``how``: the namespace's stratification, which must be
    tested): :func:`stratified_effect` then :func:`reported_effect`.

    Returns:
        (effect, number of informative strata, method ``"cmh"``, ``"clogit"`` or
        ``"fisher"``).
    """
    effect, n_strata, method = stratified_effect(x, y, strata, agents, how.adjusted_for_agent)
    s_with, s_without = int((x & y).sum()), int(((1 - x) & y).sum())
    n_with, n_without = int(x.sum()), int(len(x) - x.sum())
    naive = fisher(s_with, n_with - s_with, s_without, n_without - s_without)
    effect, method = reported_effect(
        how,
        effect,
        n_strata,
        method,
        naive=naive,
        one_stratum=len(set(strata.tolist())) == 1,
        min_strata=min_strata,
    )
    return effect, n_strata, method

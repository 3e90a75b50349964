"""Running prompt experiments night after night: look at each running experiment, decide for
each skill under test, end experiments that decided or no longer fit, start new ones.

An experiment on a namespace tests the namespace's proposed skills (those whose section's
learning mode is ``auto``, the most valuable first, at most ``max_under_test``) on live traffic:
its arms (:func:`pipeline.experiment.design.design_arms`) are rendered as prompts beside the
control prompt, units are assigned to arms by :func:`pipeline.experiment.assign_unit`, and
every ``learn`` looks again at the trajectories that ran under the arms' prompt versions
(resolved by :func:`pipeline.experiment.versions.match_exposures`) since the experiment started.
For each skill the agent-standardised effect (:func:`~pipeline.experiment.design.skill_effect`)
is combined with the skill's earlier experiments (inverse-variance weights) and tested with the
mixture SPRT (:func:`~pipeline.experiment.sequential.decide_estimate`) at ``alpha / k`` for
``k`` skills under test (Bonferroni), so that the chance that an experiment promotes any skill
without effect stays below ``alpha`` under nightly looks.

A promoted skill becomes ``active``, a rejected one ``rejected`` (its experiment evidence keeps
it from being proposed again by offline evidence), both with the experiment's figures in the
skill's ``experiment`` and a history entry. An experiment ends when one of its skills is decided
(a new one starts at once with the rest), when a person decided one of its skills, when the
namespace's active skills changed (the control arm is another prompt then), or when
experiments are switched off. A running experiment keeps the share it started with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pipeline.errors import SkillbookError
from pipeline.experiment.assign import CANDIDATE, CONTROL
from pipeline.experiment.design import ArmCounts, design_arms, skill_effect
from pipeline.experiment.sequential import DEFAULT_TAU, Decision, decide_estimate
from pipeline.skillbook import NOT_RENDERED, MergePolicy, MergeResult, Skill, Skillbook

__all__ = [
    "METHOD",
    "ExperimentSettings",
    "Round",
    "arm_names",
    "run_experiments",
    "start_experiment",
    "stop_experiment",
]

METHOD = "mixture SPRT (Johari et al. 2022) on the agent-standardised risk difference"


@dataclass(frozen=True)
class ExperimentSettings:
    """How prompt experiments run.

    ``enabled``: whether experiments start and run (off: running ones end). ``share``: the
    share of units assigned to candidate arms (0 < share < 1), the control arm taking the
    rest. ``alpha``: the error rate per experiment (each skill is tested at ``alpha / k``).
    ``tau``: the mixing standard deviation of the mSPRT, in success-rate points as a fraction.
    ``max_exposures``: trajectories with and without a skill after which an undecided skill is
    rejected as futile. ``min_effect``: a skill whose always-valid interval lies below this
    difference (a fraction) is rejected as futile earlier. ``max_under_test``: skills tested at
    once in a namespace.

    Raises:
        ValueError: a value out of its range.
    """

    enabled: bool = True
    share: float = 0.5
    alpha: float = 0.05
    tau: float = DEFAULT_TAU
    max_exposures: int = 20_000
    min_effect: float = 0.02
    max_under_test: int = 7

    def __post_init__(self) -> None:
        if not 0.0 < self.share < 1.0:
            raise ValueError(f"the experiment share must be within (0, 1), not {self.share}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"the experiment alpha must be within (0, 1), not {self.alpha}")
        if self.max_under_test < 1 or self.max_exposures < 1 or self.min_effect < 0:
            raise ValueError("max_under_test and max_exposures must be positive")


@dataclass
class Round:
    """What one round of :func:`run_experiments` did: experiment ids ``started`` and ``ended``
    (with the reason), skill ids ``promoted`` and ``rejected``, and per running experiment the
    trajectories counted per arm (``exposures``)."""

    started: list[str] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)
    promoted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    exposures: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "started": list(self.started),
            "ended": dict(self.ended),
            "promoted": sorted(self.promoted),
            "rejected": sorted(self.rejected),
            "exposures": {k: dict(v) for k, v in self.exposures.items()},
        }


def arm_names(count: int) -> list[str]:
    """The names of an experiment's ``count`` arms: ``control``, then ``candidate`` when there
    is one other, else ``candidate-1`` .. ``candidate-<count - 1>``."""
    if count == 2:
        return [CONTROL, CANDIDATE]
    return [CONTROL, *(f"{CANDIDATE}-{i}" for i in range(1, count))]


def _epoch(value: Any) -> float | None:
    """Seconds since the epoch of an ISO-8601 string or a datetime; None for None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _figure(value: float, digits: int = 4) -> float:
    return float(round(value, digits))


def _control_ids(book: Skillbook, namespace: str) -> list[str]:
    """The active, rendered skills a prompt of ``namespace`` composes (its own and global)."""
    return sorted(
        s.id
        for s in book.skills.values()
        if s.status == "active"
        and s.section not in NOT_RENDERED
        and s.namespace in {namespace, "global"}
    )


def _eligible(book: Skillbook, policy: MergePolicy) -> dict[str, list[Skill]]:
    """The proposed skills an experiment may test, per namespace, most valuable first."""
    found: dict[str, list[Skill]] = {}
    for skill in book.skills.values():
        if (
            skill.status == "proposed"
            and skill.section not in NOT_RENDERED
            and policy.mode_of(skill.section) == "auto"
            and not skill.source.get("merged_into")
        ):
            found.setdefault(skill.namespace, []).append(skill)
    for skills in found.values():
        skills.sort(key=lambda s: (-s.value, s.evidence.get("q_value") or 1.0, s.id))
    return found


def _counts(
    experiment: Mapping[str, Any],
    exposures: Sequence[Mapping[str, Any]],
    versions: Mapping[str, list[dict[str, Any]]],
) -> dict[str, dict[str, ArmCounts]]:
    """``{agent: {arm: ArmCounts}}`` of the trajectories that ran under the experiment's arms
    while it ran: a dated run counts when its time lies within the experiment; an undated one
    only under a candidate arm's own version (the control prompt, or a version other
    experiments share, may have been in use before)."""
    arm_of: dict[str, str] = {}
    shared: set[str] = set()
    for version, entries in versions.items():
        for entry in entries:
            if entry.get("assignment_id") == experiment["id"]:
                arm_of[version] = entry["arm"]
        if version in arm_of and any(e.get("assignment_id") != experiment["id"] for e in entries):
            shared.add(version)
    start = _epoch(experiment["started_at"])
    end = _epoch(experiment.get("ended_at"))
    tallies: dict[str, dict[str, list[int]]] = {}
    for row in exposures:
        arm = arm_of.get(row.get("prompt_version") or "")
        label = row.get("outcome_label")
        if arm is None or label not in ("success", "failure"):
            continue
        at = _epoch(row.get("started_at"))
        if at is None and (arm == CONTROL or row["prompt_version"] in shared):
            continue  # undated: the control prompt may be older than the experiment
        if at is not None and (at < (start or 0) or (end is not None and at >= end)):
            continue
        cell = tallies.setdefault(row.get("agent_name") or "", {}).setdefault(arm, [0, 0])
        cell[0] += 1
        cell[1] += label == "success"
    return {
        agent: {arm: ArmCounts(n, s) for arm, (n, s) in arms.items()}
        for agent, arms in tallies.items()
    }


def _evidence(
    skill: Skill,
    experiment: Mapping[str, Any],
    counts: Mapping[str, Mapping[str, ArmCounts]],
    settings: ExperimentSettings,
    now: str,
) -> dict[str, Any]:
    """The skill's experiment evidence after one more look at ``experiment``."""
    arms = {a["arm"]: a["skill_ids"] for a in experiment["arms"]}
    d, variance, n_with, n_without = skill_effect(counts, arms, skill.id)
    previous = skill.experiment or {}
    earlier = list(previous.get("earlier", []))
    if previous and previous.get("experiment_id") != experiment["id"]:
        earlier.append({k: v for k, v in previous.items() if k != "earlier"})
    weights = [(e["difference"], e["variance"]) for e in earlier if e.get("variance")]
    if variance > 0:
        weights.append((d, variance))
    combined_d, combined_v = d, variance
    if weights:
        precision = sum(1 / v for _, v in weights)
        combined_d = sum(x / v for x, v in weights) / precision
        combined_v = 1 / precision
    alpha = settings.alpha / len(experiment["skill_ids"])
    look = decide_estimate(
        combined_d,
        combined_v,
        n_with + n_without + sum(e["exposures_with"] + e["exposures_without"] for e in earlier),
        alpha=alpha,
        tau=settings.tau,
        max_exposures=settings.max_exposures,
        min_effect=settings.min_effect,
        previous_p=float(previous.get("p_value", 1.0)),
        previous_interval=(
            float(previous.get("ci_low", -1.0)),
            float(previous.get("ci_high", 1.0)),
        ),
    )
    raw = {True: [0, 0], False: [0, 0]}
    for by_arm in counts.values():
        for arm, cell in by_arm.items():
            side = raw[skill.id in arms.get(arm, ())]
            side[0] += cell.n
            side[1] += cell.successes
    looks = int(previous.get("looks", 0)) + 1 if previous else 1
    return {
        "experiment_id": experiment["id"],
        "kind": "experiment",
        "namespace": experiment["namespace"],
        "looks": looks,
        "last_look_at": now,
        "exposures_with": n_with,
        "exposures_without": n_without,
        "success_with": _figure(raw[True][1] / raw[True][0]) if raw[True][0] else None,
        "success_without": _figure(raw[False][1] / raw[False][0]) if raw[False][0] else None,
        "difference": _figure(look.difference),
        "variance": float(f"{look.variance:.6g}"),
        "ci_low": _figure(look.interval[0]),
        "ci_high": _figure(look.interval[1]),
        "p_value": float(f"{look.p_value:.6g}"),
        "alpha": float(f"{alpha:.6g}"),
        "decision": str(look.decision),
        "method": METHOD,
        "earlier": earlier,
    }


def _note(experiment_id: str, evidence: Mapping[str, Any]) -> str:
    return (
        f"experiment {experiment_id}: {evidence['decision']} (difference "
        f"{evidence['difference'] * 100:+.1f} points, always-valid CI "
        f"[{evidence['ci_low'] * 100:+.1f}, {evidence['ci_high'] * 100:+.1f}], "
        f"p {evidence['p_value']:.3g}, alpha {evidence['alpha']:.3g})"
    )


def _look(
    book: Skillbook,
    experiment: dict[str, Any],
    exposures: Sequence[Mapping[str, Any]],
    versions: Mapping[str, list[dict[str, Any]]],
    settings: ExperimentSettings,
    now: str,
    round_: Round,
    result: MergeResult,
) -> list[str]:
    """Look at one running experiment; returns the decisions taken (``id: decision``)."""
    counts = _counts(experiment, exposures, versions)
    per_arm: dict[str, int] = {}
    for by_arm in counts.values():
        for arm, cell in by_arm.items():
            per_arm[arm] = per_arm.get(arm, 0) + cell.n
    round_.exposures[experiment["id"]] = dict(sorted(per_arm.items()))
    decided = []
    for skill_id in experiment["skill_ids"]:
        skill = book.skills.get(skill_id)
        if skill is None or skill.status != "proposed":
            continue
        evidence = _evidence(skill, experiment, counts, settings, now)
        new = replace(skill, experiment=evidence, updated_at=now)
        decision = evidence["decision"]
        if decision == Decision.PROMOTE:
            new = replace(new, status="active", flags=()).with_event(
                now,
                "coach",
                "promote",
                note=_note(experiment["id"], evidence),
                **{"from": "proposed", "to": "active"},
            )
            result.activated.append(skill_id)
            round_.promoted.append(skill_id)
        elif decision in (Decision.REJECT_HARM, Decision.REJECT_FUTILE):
            new = replace(new, status="rejected").with_event(
                now,
                "coach",
                "reject",
                note=_note(experiment["id"], evidence),
                **{"from": "proposed", "to": "rejected"},
            )
            result.decided.append(skill_id)
            round_.rejected.append(skill_id)
        else:
            result.updated.append(skill_id)
        if decision != Decision.CONTINUE:
            decided.append(f"{skill_id}: {decision}")
        book.skills[skill_id] = new
    return decided


def _end(experiment: dict[str, Any], why: str, now: str, round_: Round) -> None:
    experiment.update(status="ended", ended_at=now, ended_because=why)
    round_.ended[experiment["id"]] = why


def _why_end(
    book: Skillbook, experiment: Mapping[str, Any], settings: ExperimentSettings
) -> str | None:
    """Why a running experiment can no longer go on, or None."""
    if not settings.enabled:
        return "experiments switched off"
    for skill_id in experiment["skill_ids"]:
        skill = book.skills.get(skill_id)
        if skill is None or skill.status != "proposed":
            return f"{skill_id} is no longer proposed"
    if _control_ids(book, experiment["namespace"]) != list(experiment["control_skill_ids"]):
        return "the namespace's active skills changed"
    return None


def _start(
    book: Skillbook,
    namespace: str,
    skills: Sequence[Skill],
    settings: ExperimentSettings,
    now: str,
) -> dict[str, Any]:
    """A new experiment on ``namespace`` testing ``skills`` (design order as given)."""
    skill_ids = [s.id for s in skills]
    control = _control_ids(book, namespace)
    seed = json.dumps([namespace, skill_ids, control, now, len(book.experiments)])
    identity = "ex-" + hashlib.sha256(seed.encode()).hexdigest()[:12]
    design = design_arms(skill_ids)
    names = arm_names(len(design))
    candidate_share = settings.share / (len(design) - 1)
    arms = [
        {
            "arm": name,
            "skill_ids": list(added),
            "share": (1 - settings.share) if i == 0 else candidate_share,
        }
        for i, (name, added) in enumerate(zip(names, design, strict=True))
    ]
    return {
        "id": identity,
        "namespace": namespace,
        "status": "running",
        "started_at": now,
        "ended_at": None,
        "ended_because": None,
        "share": settings.share,
        "control_skill_ids": control,
        "skill_ids": skill_ids,
        "arms": arms,
    }


def run_experiments(
    book: Skillbook,
    exposures: Sequence[Mapping[str, Any]],
    versions: Mapping[str, list[dict[str, Any]]],
    *,
    policy: MergePolicy,
    settings: ExperimentSettings,
    now: str,
    namespaces: Iterable[str] | None = None,
) -> Round:
    """One nightly round: look at every running experiment and decide (see the module
    docstring), end what must end, start experiments where proposals wait, and record it all
    in ``book`` (one history entry, action ``experiment``, when anything changed).

    Args:
        book: the Skillbook, changed in place.
        exposures: one mapping per trajectory with ``prompt_version`` (resolved, or None),
            ``agent_name``, ``started_at`` (datetime or ISO-8601, or None) and
            ``outcome_label``.
        versions: :meth:`pipeline.experiment.VersionHistory.by_version`.
        policy: the merge policy (section modes decide which proposals are eligible).
        settings: see :class:`ExperimentSettings`.
        now: ISO-8601 time of the round.
        namespaces: where experiments may start (default: any namespace with proposals).
    """
    round_ = Round()
    result = MergeResult()
    for experiment in book.experiments:
        if experiment["status"] != "running":
            continue
        decided = _look(book, experiment, exposures, versions, settings, now, round_, result)
        why = "decided " + ", ".join(decided) if decided else _why_end(book, experiment, settings)
        if why:
            _end(experiment, why, now, round_)
            result.decided.extend(experiment["skill_ids"])
    if settings.enabled:
        allowed = None if namespaces is None else set(namespaces)
        for namespace, skills in sorted(_eligible(book, policy).items()):
            if book.running_experiment(namespace) or (
                allowed is not None and namespace not in allowed
            ):
                continue
            experiment = _start(book, namespace, skills[: settings.max_under_test], settings, now)
            book.experiments.append(experiment)
            round_.started.append(experiment["id"])
            result.decided.extend(experiment["skill_ids"])
    book.record_experiments(now, result, round_.as_dict())
    return round_


def start_experiment(
    book: Skillbook,
    namespace: str,
    skill_ids: Sequence[str],
    *,
    settings: ExperimentSettings,
    now: str,
    actor: str,
    note: str | None = None,
) -> dict[str, Any]:
    """Start an experiment on ``namespace`` testing ``skill_ids`` (proposed skills of that
    namespace), recorded in ``book``'s history as ``actor``'s. Returns the experiment.

    Raises:
        SkillbookError: an experiment already runs on the namespace (one at a time: stop it
            first), a skill is unknown, not proposed, of another namespace or in a section
            that is not rendered, or more than ``settings.max_under_test`` skills.
    """
    running = book.running_experiment(namespace)
    if running is not None:
        raise SkillbookError(
            f"experiment {running['id']} is already running on {namespace}: one namespace "
            "runs one experiment at a time; stop it first with 'coach experiment stop'"
        )
    if not skill_ids or len(skill_ids) > settings.max_under_test:
        raise SkillbookError(
            f"an experiment tests 1 to {settings.max_under_test} skills, not {len(skill_ids)}"
        )
    skills = [book.find(ref) for ref in skill_ids]
    for skill in skills:
        if skill.status != "proposed" or skill.namespace != namespace:
            raise SkillbookError(
                f"{skill.id} is {skill.status} in {skill.namespace}: an experiment on "
                f"{namespace} tests proposed skills of {namespace}"
            )
        if skill.section in NOT_RENDERED:
            raise SkillbookError(f"{skill.id}: section {skill.section} is not in prompts")
    experiment = _start(book, namespace, skills, settings, now)
    book.experiments.append(experiment)
    result = MergeResult(decided=list(experiment["skill_ids"]))
    book.record_experiments(now, result, {"started": [experiment["id"]], "by": actor, "note": note})
    return experiment


def stop_experiment(
    book: Skillbook, namespace: str, *, now: str, actor: str, note: str | None = None
) -> dict[str, Any]:
    """End the experiment running on ``namespace`` (its skills stay proposed, their evidence
    kept), recorded in ``book``'s history as ``actor``'s. Returns the experiment.

    Raises:
        SkillbookError: no experiment runs on the namespace.
    """
    experiment = book.running_experiment(namespace)
    if experiment is None:
        raise SkillbookError(f"no experiment is running on {namespace}")
    why = f"stopped by {actor}" + (f": {note}" if note else "")
    experiment.update(status="ended", ended_at=now, ended_because=why)
    result = MergeResult(decided=list(experiment["skill_ids"]))
    book.record_experiments(now, result, {"ended": {experiment["id"]: why}})
    return experiment

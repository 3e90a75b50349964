"""Looking at a running prompt experiment: the runs it counted per agent and arm, and for
each skill the sequential test of its effect (see :mod:`pipeline.experiment.lifecycle` for the
whole round).

The skills under test are compared across the experiment's control and candidate arms; the
active skills held back are compared across the control and holdback arms (each holdback arm
leaves some of them out, by the same factorial design), so that an active skill that no longer
helps, or now harms, is caught the same way it was promoted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pipeline.experiment.assign import CONTROL
from pipeline.experiment.design import ArmCounts, skill_effect
from pipeline.experiment.sequential import DEFAULT_TAU, Decision, decide_estimate
from pipeline.skillbook import MergeResult, Skill, Skillbook

__all__ = [
    "METHOD",
    "ExperimentSettings",
    "Round",
    "count_exposures",
    "look_holdback",
    "look_under_test",
]

METHOD = (
    "one-sided mixture SPRTs (Johari et al. 2022; Howard et al. 2021) on the agent-standardised "
    "risk difference"
)


@dataclass(frozen=True)
class ExperimentSettings:
    """How prompt experiments run.

    ``enabled``: whether experiments start and run (off: running ones end). ``share``: the
    share of units assigned to candidate arms (0 < share < 1), the control arm taking the
    rest; None (the default): balanced, every arm of the design the same share of the units
    outside holdback arms, ``(m - 1) / m`` of them for ``m`` arms, which estimates each skill
    most precisely. ``alpha``: the chance per experiment of promoting a skill that does not help
    (each skill's one-sided test of help is at ``alpha / max_under_test``, the same level in
    every experiment it is in; so is its test of harm).
    ``tau``: the mixing standard deviation of the mSPRT, in success-rate points as a fraction.
    ``max_exposures``: trajectories with and without a skill after which an undecided skill is
    rejected as futile. ``min_effect``: a skill whose always-valid interval lies below this
    difference (a fraction) is rejected as futile earlier. ``max_under_test``: skills tested at
    once in a namespace, and active skills held back at once. ``holdback_share``: the share of
    units given holdback arms, prompts without some of the namespace's active skills (0: none).

    Raises:
        ValueError: a value out of its range.
    """

    enabled: bool = True
    share: float | None = None
    alpha: float = 0.05
    tau: float = DEFAULT_TAU
    max_exposures: int = 20_000
    min_effect: float = 0.02
    max_under_test: int = 7
    holdback_share: float = 0.0

    def __post_init__(self) -> None:
        if self.share is not None and not 0.0 < self.share < 1.0:
            raise ValueError(f"the experiment share must be within (0, 1), not {self.share}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"the experiment alpha must be within (0, 1), not {self.alpha}")
        if not 0.0 <= self.holdback_share < 1.0 - (self.share or 0.0):
            raise ValueError(
                f"the holdback share must be within [0, 1 - share), not {self.holdback_share}"
            )
        if self.max_under_test < 1 or self.max_exposures < 1 or self.min_effect < 0:
            raise ValueError("max_under_test and max_exposures must be positive")


@dataclass
class Round:
    """What one round of :func:`pipeline.experiment.run_experiments` did: experiment ids
    ``started`` and ``ended`` (with the reason), skill ids ``promoted`` and ``rejected`` (under
    test) and ``retired`` (held back, and found harmful), and per running experiment the
    trajectories counted per arm (``exposures``)."""

    started: list[str] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)
    promoted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    exposures: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "started": list(self.started),
            "ended": dict(self.ended),
            "promoted": sorted(self.promoted),
            "rejected": sorted(self.rejected),
            "retired": sorted(self.retired),
            "exposures": {k: dict(v) for k, v in self.exposures.items()},
        }


def _epoch(value: Any) -> float | None:
    """Seconds since the epoch of an ISO-8601 string or a datetime; None for None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _figure(value: float, digits: int = 4) -> float:
    return float(round(value, digits))


def _in_namespace(row: Mapping[str, Any], namespace: str) -> bool:
    """Whether a run belongs to ``namespace``'s traffic: a ``domain:X`` namespace holds the
    runs of domain X, an ``agent:X`` one the runs of agent X; ``global`` and the rest hold any
    run (a run without a ``domain`` key is not filtered)."""
    kind, _, name = namespace.partition(":")
    if kind == "domain" and "domain" in row:
        return bool(row["domain"] == name)
    if kind == "agent" and "agent_name" in row:
        return bool(row["agent_name"] == name)
    return True


def count_exposures(
    experiment: Mapping[str, Any],
    exposures: Sequence[Mapping[str, Any]],
    versions: Mapping[str, list[dict[str, Any]]],
) -> dict[str, dict[str, ArmCounts]]:
    """``{agent: {arm: ArmCounts}}`` of the trajectories of the experiment's namespace that ran
    under its arms while it ran: a dated run counts when its time lies within the experiment;
    an undated one only under a candidate arm's own version (the control prompt, or a version
    other experiments share, may have been in use before). A version that two arms share (the
    same text) tells no arm apart: its runs are left out."""
    arm_of: dict[str, str] = {}
    shared: set[str] = set()
    for version, entries in versions.items():
        arms = {e["arm"] for e in entries if e.get("assignment_id") == experiment["id"]}
        if len(arms) == 1:
            arm_of[version] = arms.pop()
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
        if not _in_namespace(row, experiment["namespace"]):
            continue  # the same prompt text in another namespace: other traffic
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
) -> dict[str, Any] | None:
    """The skill's experiment evidence after one more look at ``experiment``; None when no
    agent has run under every arm of it yet."""
    arms = {a["arm"]: a["skill_ids"] for a in experiment["arms"] if "removed" not in a}
    d, variance, n_with, n_without = skill_effect(counts, arms, skill.id)
    if n_with + n_without == 0:
        return None  # no agent has run under every arm yet: nothing to look at
    previous = skill.experiment or {}
    # the running p-value and interval carry over from looks at the skill under test that
    # decided nothing yet (a holdback's looks test it as an active skill, and a decided test
    # is over: a new sequence begins)
    carry = (
        bool(previous)
        and previous.get("kind", "experiment") == "experiment"
        and previous.get("decision") == Decision.CONTINUE
    )
    earlier = list(previous.get("earlier", []))
    if previous and previous.get("experiment_id") != experiment["id"]:
        earlier.append(_own(previous))
    weights = [(e["difference"], e["variance"]) for e in earlier if e.get("variance")]
    if variance > 0:
        weights.append((d, variance))
    combined_d, combined_v = d, variance
    if weights:
        precision = sum(1 / v for _, v in weights)
        combined_d = sum(x / v for x, v in weights) / precision
        combined_v = 1 / precision
    alpha = settings.alpha / settings.max_under_test
    look = decide_estimate(
        combined_d,
        combined_v,
        n_with + n_without + sum(e["exposures_with"] + e["exposures_without"] for e in earlier),
        alpha=alpha,
        tau=settings.tau,
        max_exposures=settings.max_exposures,
        min_effect=settings.min_effect,
        previous_p=float(previous.get("p_value", 1.0)) if carry else 1.0,
        previous_interval=(
            (float(previous.get("ci_low", -1.0)), float(previous.get("ci_high", 1.0)))
            if carry
            else (-1.0, 1.0)
        ),
    )
    looks = int(previous.get("looks", 0)) + 1 if carry else 1
    return _figures(look, alpha, counts, arms, skill.id) | {
        "experiment_id": experiment["id"],
        "kind": "experiment",
        "namespace": experiment["namespace"],
        "looks": looks,
        "last_look_at": now,
        "decision": str(look.decision),
        "method": METHOD,
        "own_difference": _figure(d),
        "own_variance": float(f"{variance:.6g}"),
        "earlier": earlier,
    }


def _own(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """An earlier experiment's evidence as kept in ``earlier``: its figures with the
    difference and variance of that experiment's own runs (not combined with the ones before
    it, which ``earlier`` holds already: each experiment's runs count once)."""
    entry = {k: v for k, v in evidence.items() if k not in ("earlier", "own_difference")}
    entry.pop("own_variance", None)
    entry["difference"] = evidence.get("own_difference", evidence.get("difference"))
    entry["variance"] = evidence.get("own_variance", evidence.get("variance"))
    return entry


def _note(experiment_id: str, evidence: Mapping[str, Any]) -> str:
    return (
        f"experiment {experiment_id}: {evidence['decision']} (difference "
        f"{evidence['difference'] * 100:+.1f} points, always-valid CI "
        f"[{evidence['ci_low'] * 100:+.1f}, {evidence['ci_high'] * 100:+.1f}], "
        f"p {evidence['p_value']:.3g}, alpha {evidence['alpha']:.3g})"
    )


def look_under_test(
    book: Skillbook,
    experiment: dict[str, Any],
    counts: Mapping[str, Mapping[str, ArmCounts]],
    settings: ExperimentSettings,
    now: str,
    round_: Round,
    result: MergeResult,
) -> list[str]:
    """Look at one running experiment's skills under test (``counts``: from
    :func:`count_exposures`), promote or reject them in ``book``; returns the decisions taken
    (``id: decision``)."""
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
        if evidence is None or _same_data(skill.experiment, evidence):
            continue  # nothing new since the last look (a run again on the same traces)
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


def look_holdback(
    book: Skillbook,
    experiment: dict[str, Any],
    counts: Mapping[str, Mapping[str, ArmCounts]],
    settings: ExperimentSettings,
    now: str,
    round_: Round,
    result: MergeResult,
) -> list[str]:
    """Look at the active skills an experiment holds back: each one's effect across the control
    arm (all of them) and the holdback arms (each without some), tested like a skill under
    test at ``alpha / max_under_test``. One that now harms is retired; one that helps is confirmed; the
    look is kept as the skill's ``experiment`` evidence (kind ``holdback``; the evidence that
    promoted it moves to ``earlier``). Returns the retirements (``id: retire``)."""
    holdback = experiment.get("holdback")
    if not holdback:
        return []
    held = list(holdback["skill_ids"])
    present = {CONTROL: held} | {
        a["arm"]: [s for s in held if s not in a["removed"]]
        for a in experiment["arms"]
        if "removed" in a
    }
    retired = []
    for skill_id in held:
        skill = book.skills.get(skill_id)
        if skill is None or skill.status != "active":
            continue
        d, variance, n_with, n_without = skill_effect(counts, present, skill_id)
        if n_with + n_without == 0:
            continue  # no agent has run under every arm yet: nothing to look at
        previous = skill.experiment or {}
        same = (
            previous.get("kind") == "holdback" and previous.get("experiment_id") == experiment["id"]
        )
        earlier = list(previous.get("earlier", []))
        if previous and not same:
            earlier.append(_own(previous))
        alpha = settings.alpha / settings.max_under_test
        look = decide_estimate(
            d,
            variance,
            n_with + n_without,
            alpha=alpha,
            tau=settings.tau,
            max_exposures=settings.max_exposures,
            previous_p=float(previous.get("p_value", 1.0)) if same else 1.0,
            previous_interval=(
                (float(previous["ci_low"]), float(previous["ci_high"])) if same else (-1.0, 1.0)
            ),
        )
        decision = {
            Decision.PROMOTE: "confirmed",
            Decision.REJECT_HARM: "retire",
        }.get(look.decision, "continue")
        evidence = _figures(look, alpha, counts, present, skill_id) | {
            "experiment_id": experiment["id"],
            "kind": "holdback",
            "namespace": experiment["namespace"],
            "looks": int(previous.get("looks", 0)) + 1 if same else 1,
            "last_look_at": now,
            "decision": decision,
            "method": METHOD,
            "earlier": earlier,
        }
        if _same_data(skill.experiment, evidence):
            continue  # nothing new since the last look (a run again on the same traces)
        new = replace(skill, experiment=evidence, updated_at=now)
        if decision == "retire":
            new = replace(new, status="retired", flags=("harmful in holdback",)).with_event(
                now,
                "coach",
                "retired",
                note=_note(experiment["id"], evidence),
                **{"from": "active", "to": "retired"},
            )
            result.retired.append(skill_id)
            round_.retired.append(skill_id)
            retired.append(f"{skill_id}: retire")
        else:
            result.updated.append(skill_id)
        book.skills[skill_id] = new
    return retired


def _same_data(previous: Mapping[str, Any] | None, evidence: Mapping[str, Any]) -> bool:
    """Whether ``evidence`` looks at the same runs as ``previous`` (same experiment, kind and
    figures): then the look is not taken again, so a second run on the same traces changes
    nothing."""
    if not previous:
        return False
    keys = ("experiment_id", "kind", "exposures_with", "exposures_without", "difference")
    return all(previous.get(k) == evidence.get(k) for k in keys) and previous.get(
        "variance"
    ) == evidence.get("variance")


def _figures(
    look: Any,
    alpha: float,
    counts: Mapping[str, Mapping[str, ArmCounts]],
    present: Mapping[str, Sequence[str]],
    skill_id: str,
) -> dict[str, Any]:
    """The rounded figures of a look, with the raw success rates with and without the skill."""
    raw = {True: [0, 0], False: [0, 0]}
    for by_arm in counts.values():
        for arm, cell in by_arm.items():
            if arm in present:
                side = raw[skill_id in present[arm]]
                side[0] += cell.n
                side[1] += cell.successes
    n_with, n_without = raw[True][0], raw[False][0]
    return {
        "exposures_with": n_with,
        "exposures_without": n_without,
        "success_with": _figure(raw[True][1] / n_with) if n_with else None,
        "success_without": _figure(raw[False][1] / n_without) if n_without else None,
        "difference": _figure(look.difference),
        "variance": float(f"{look.variance:.6g}"),
        "ci_low": _figure(look.interval[0]),
        "ci_high": _figure(look.interval[1]),
        "p_value": float(f"{look.p_value:.6g}"),
        "alpha": float(f"{alpha:.6g}"),
    }

"""Running prompt experiments night after night: look at each running experiment, decide for
each skill under test, end experiments that decided or no longer fit, start new ones.

An experiment on a namespace tests the namespace's proposed skills (those whose section's
learning mode is ``auto``, the most valuable first, at most ``max_under_test``, one per behaviour:
:func:`behaviour_key`) on live traffic:
its arms (:func:`pipeline.experiment.design.design_arms`) are rendered as prompts beside the
control prompt, units are assigned to arms by :func:`pipeline.experiment.assign_unit`, and
every ``learn`` looks again at the trajectories that ran under the arms' prompt versions
(resolved by :func:`pipeline.experiment.versions.match_exposures`) since the experiment started.
For each skill the agent-standardised effect (:func:`~pipeline.experiment.design.skill_effect`)
is combined with the skill's earlier experiments (inverse-variance weights) and tested with the
one-sided mixture SPRTs (:func:`~pipeline.experiment.sequential.decide_estimate`; help promotes,
harm rejects) at ``alpha / 7`` each (7: the most skills one experiment tests; Bonferroni), one
level for the skill's whole life, so that the chance that an experiment promotes any skill that
does not help stays below ``alpha`` under nightly looks and across restarts.

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
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline.errors import SkillbookError
from pipeline.experiment.assign import CANDIDATE, CONTROL
from pipeline.experiment.design import design_arms
from pipeline.experiment.looks import (
    METHOD,
    ExperimentSettings,
    Round,
    count_exposures,
    look_holdback,
    look_under_test,
)
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


def arm_names(count: int) -> list[str]:
    """The names of an experiment's ``count`` arms: ``control``, then ``candidate`` when there
    is one other, else ``candidate-1`` .. ``candidate-<count - 1>``."""
    if count == 2:
        return [CONTROL, CANDIDATE]
    return [CONTROL, *(f"{CANDIDATE}-{i}" for i in range(1, count))]


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
    """The proposed skills an experiment may test, per namespace, most valuable first: not
    merged into another skill, and not screened unless a person reworded it since (wording
    that carries trace text looking like an injection never reaches a prompt, not even a
    candidate's)."""
    found: dict[str, list[Skill]] = {}
    for skill in book.skills.values():
        if (
            skill.status == "proposed"
            and skill.section not in NOT_RENDERED
            and policy.mode_of(skill.section) == "auto"
            and not skill.source.get("merged_into")
            and not (skill.source.get("screened") and not skill.source.get("edited"))
        ):
            found.setdefault(skill.namespace, []).append(skill)
    for skills in found.values():
        skills.sort(key=lambda s: (-s.value, s.evidence.get("q_value") or 1.0, s.id))
    return found


# Feature kinds (pipeline.analyze.features) whose skills about one tool say much the same: a
# transfer and the call of the transfer tool; an error and leaving it unretried.
_FAMILIES = {"tool_called": "call", "transfer": "call", "tool_error": "error"}
_FAMILIES |= {"unretried_error": "error"}


def behaviour_key(skill: Skill) -> str | None:
    """What a skill's pattern is about, for telling twins apart: the tool it acts on and the
    family of its kind (``transfer:t`` and ``tool_called:t`` -> ``t call``;
    ``unretried_error:t`` and ``tool_error:t:message`` -> ``t error``;
    ``write_arg:t.arg=v`` -> ``t arg arg`` whatever the value; ``tool_order:a->b`` -> ``b
    after a``; other kinds ``t <kind>``); None without a pattern."""
    pattern = str(skill.source.get("pattern_id") or "")
    kind, sep, rest = pattern.partition(":")
    if not sep or not rest:
        return None
    if kind == "tool_order":
        before, _, after = rest.partition("->")
        return f"{after} after {before}"
    tool = re.split(r"[:.]", rest, maxsplit=1)[0]
    if kind == "write_arg":
        return f"{tool} arg {rest.split('.', 1)[-1].split('=', 1)[0]}"
    return f"{tool} {_FAMILIES.get(kind, kind)}"


def _without_twins(skills: Sequence[Skill], limit: int) -> list[Skill]:
    """The first ``limit`` of ``skills`` (most valuable first) with at most one per behaviour
    (:func:`behaviour_key`): twins (a transfer and the call of the transfer tool, an
    unretried error and the error, two values of one argument) say much the same, and either
    may do the other's work, which breaks the experiment's assumption that prompt lines act
    independently. The others wait for the next experiment."""
    chosen: list[Skill] = []
    keys: set[str] = set()
    for skill in skills:
        key = behaviour_key(skill)
        if key is not None and key in keys:
            continue
        chosen.append(skill)
        if key is not None:
            keys.add(key)
        if len(chosen) == limit:
            break
    return chosen


def _end(experiment: dict[str, Any], why: str, now: str, round_: Round) -> None:
    experiment.update(status="ended", ended_at=now, ended_because=why)
    round_.ended[experiment["id"]] = why


def _why_end(
    book: Skillbook,
    experiment: Mapping[str, Any],
    settings: ExperimentSettings,
    waiting: bool,
) -> str | None:
    """Why a running experiment can no longer go on, or None (``waiting``: proposals of its
    namespace wait for an experiment)."""
    if not settings.enabled:
        return "experiments switched off"
    if waiting and not experiment["skill_ids"]:
        return "proposals wait to be tested"
    for skill_id in experiment["skill_ids"]:
        skill = book.skills.get(skill_id)
        if skill is None or skill.status != "proposed":
            return f"{skill_id} is no longer proposed"
        wording = experiment.get("instructions", {}).get(skill_id)
        if wording is not None and wording != _wording(skill):
            return f"{skill_id} was reworded"
    if _control_ids(book, experiment["namespace"]) != list(experiment["control_skill_ids"]):
        return "the namespace's active skills changed"
    # a holdback that should begin or end (an experiment a person started keeps its own)
    held = experiment.get("holdback") or {}
    wanted = settings.holdback_share if _held_back(book, experiment["namespace"], settings) else 0.0
    if (
        experiment.get("started_by", "coach") == "coach"
        and abs(float(held.get("share", 0.0)) - wanted) > 1e-12
    ):
        return f"the holdback share changed to {wanted}"
    return None


def _wording(skill: Skill) -> str:
    """A short fingerprint of a skill's instruction (SHA-256, 12 hex digits)."""
    return hashlib.sha256(skill.instruction.encode("utf-8")).hexdigest()[:12]


def _held_back(book: Skillbook, namespace: str, settings: ExperimentSettings) -> list[Skill]:
    """The active skills of ``namespace`` itself that a holdback tests (none when the holdback
    share is 0), by id, at most ``settings.max_under_test``."""
    if settings.holdback_share <= 0:
        return []
    active = sorted(
        (
            s
            for s in book.skills.values()
            if s.status == "active" and s.namespace == namespace and s.section not in NOT_RENDERED
        ),
        key=lambda s: s.id,
    )
    return active[: settings.max_under_test]


def _holdback_arms(
    held: Sequence[Skill], settings: ExperimentSettings
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The holdback record and arms of an experiment holding back ``held``: the factorial
    design over them, each arm but the first leaving out its skills, sharing
    ``settings.holdback_share`` equally."""
    if not held:
        return None, []
    design = design_arms([s.id for s in held])[1:]
    names = (
        ["holdback"] if len(design) == 1 else [f"holdback-{i}" for i in range(1, len(design) + 1)]
    )
    share = settings.holdback_share / len(design)
    arms = [
        {"arm": name, "skill_ids": [], "removed": list(removed), "share": share}
        for name, removed in zip(names, design, strict=True)
    ]
    record = {"skill_ids": [s.id for s in held], "share": settings.holdback_share}
    return record, arms


def _start(
    book: Skillbook,
    namespace: str,
    skills: Sequence[Skill],
    settings: ExperimentSettings,
    now: str,
) -> dict[str, Any]:
    """A new experiment on ``namespace`` testing ``skills`` (design order as given; may be
    none when it only holds back active skills)."""
    skill_ids = [s.id for s in skills]
    control = _control_ids(book, namespace)
    seed = json.dumps([namespace, skill_ids, control, now, len(book.experiments)])
    identity = "ex-" + hashlib.sha256(seed.encode()).hexdigest()[:12]
    holdback, held_arms = _holdback_arms(_held_back(book, namespace, settings), settings)
    design = design_arms(skill_ids) if skill_ids else [()]
    share = 0.0
    if skill_ids:
        balanced = (1 - settings.holdback_share) * (len(design) - 1) / len(design)
        share = balanced if settings.share is None else settings.share
    arms = [{"arm": CONTROL, "skill_ids": [], "share": 1 - share - settings.holdback_share}]
    if skill_ids:
        candidate_share = share / (len(design) - 1)
        arms += [
            {"arm": name, "skill_ids": list(added), "share": candidate_share}
            for name, added in zip(arm_names(len(design))[1:], design[1:], strict=True)
        ]
    if holdback is None:
        arms[0]["share"] = 1 - share
    return {
        "id": identity,
        "namespace": namespace,
        "status": "running",
        "started_at": now,
        "ended_at": None,
        "ended_because": None,
        "share": share,
        "control_skill_ids": control,
        "skill_ids": skill_ids,
        "instructions": {s.id: _wording(s) for s in skills},
        "started_by": "coach",
        "holdback": holdback,
        "arms": arms + held_arms,
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
    eligible = _eligible(book, policy)
    running = [e for e in book.experiments if e["status"] == "running"]
    # every experiment is looked at before any ends: a decision in one (a global skill
    # promoted) changes the control of others, which then end in this round, not the next
    decisions = {}
    for experiment in running:
        counts = count_exposures(experiment, exposures, versions)
        decided = look_under_test(book, experiment, counts, settings, now, round_, result)
        decided += look_holdback(book, experiment, counts, settings, now, round_, result)
        decisions[experiment["id"]] = decided
    for experiment in running:
        decided = decisions[experiment["id"]]
        waiting = bool(eligible.get(experiment["namespace"]))
        why = (
            "decided " + ", ".join(decided)
            if decided
            else _why_end(book, experiment, settings, waiting)
        )
        if why:
            _end(experiment, why, now, round_)
            result.decided.extend(_involved(experiment))
    if settings.enabled:
        allowed = None if namespaces is None else set(namespaces)
        eligible = _eligible(book, policy)  # decisions above changed the proposals
        held = {
            s.namespace for s in book.skills.values() if _held_back(book, s.namespace, settings)
        }
        for namespace in sorted(set(eligible) | held):
            skills = eligible.get(namespace, [])
            if book.running_experiment(namespace) or (
                allowed is not None and namespace not in allowed
            ):
                continue
            tested = _without_twins(skills, settings.max_under_test)
            experiment = _start(book, namespace, tested, settings, now)
            book.experiments.append(experiment)
            round_.started.append(experiment["id"])
            result.decided.extend(_involved(experiment))
    book.record_experiments(now, result, round_.as_dict())
    return round_


def _involved(experiment: Mapping[str, Any]) -> list[str]:
    """The skills an experiment tests or holds back (what its start or end changes)."""
    return [*experiment["skill_ids"], *(experiment.get("holdback") or {}).get("skill_ids", [])]


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
    skills = list({skill.id: skill for skill in (book.find(ref) for ref in skill_ids)}.values())
    for skill in skills:
        if skill.status != "proposed" or skill.namespace != namespace:
            raise SkillbookError(
                f"{skill.id} is {skill.status} in {skill.namespace}: an experiment on "
                f"{namespace} tests proposed skills of {namespace}"
            )
        if skill.section in NOT_RENDERED:
            raise SkillbookError(f"{skill.id}: section {skill.section} is not in prompts")
        if skill.source.get("screened") and not skill.source.get("edited"):
            raise SkillbookError(
                f"{skill.id}: its wording was screened ({skill.source['screened']}); reword it "
                "with 'coach skills edit' before it goes into any prompt"
            )
    experiment = _start(book, namespace, skills, settings, now) | {"started_by": actor}
    book.experiments.append(experiment)
    result = MergeResult(decided=_involved(experiment))
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
    result = MergeResult(decided=_involved(experiment))
    book.record_experiments(now, result, {"ended": {experiment["id"]: why}})
    return experiment

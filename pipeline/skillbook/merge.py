"""A learning run's merge into the Skillbook's skills (the body of
:meth:`pipeline.skillbook.Skillbook.merge`): new candidates, new evidence for known patterns and
the observations it adds, drift of active skills (:mod:`pipeline.skillbook.drift`), proposing a
rejected or retired skill again on materially changed evidence, merging near-duplicates, and
proposing to graduate a skill that held on several input sets into the base instructions.

It works on the ``{id: Skill}`` mapping of a Skillbook; recording the run in the Skillbook's
history is the Skillbook's part. Candidates are trace data: their text is redacted on the way in
(:func:`redacted`), so that the Skillbook never holds personal data or secrets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from pipeline.redact import redact, redact_data
from pipeline.skillbook.drift import (
    drift,
    material_change,
    near_duplicate,
    observation,
    weighted_effect,
)
from pipeline.skillbook.types import Candidate, MergePolicy, MergeResult, Skill, skill_id

__all__ = ["MAX_OBSERVATIONS", "merge", "redacted"]

MAX_OBSERVATIONS = 100


def _observe(
    skill: Skill, evidence: dict[str, Any], now: str, inputs: str | None
) -> tuple[dict[str, Any], ...]:
    """The skill's observations with this run's added; a re-run on the same inputs with the same
    figures adds nothing, with other figures (other settings) replaces the last one."""
    obs = observation(evidence, at=now, inputs=inputs)
    if obs is None:
        return skill.observations
    past = skill.observations
    if past and past[-1].get("inputs_sha256") == inputs:
        last = past[-1]
        if (last["log_or"], last["se"]) == (obs["log_or"], obs["se"]):
            return past
        past = past[:-1]
    return (*past, obs)[-MAX_OBSERVATIONS:]


def redacted(cand: Candidate) -> Candidate:
    """``cand`` with its trace-derived text redacted (:func:`pipeline.redact.redact`): the
    namespace, pattern id and instruction, and every string of its evidence (example trajectory
    ids, a failure cluster's signature) and source. Its id, made from the namespace and pattern
    as the traces spell them, is kept, so a pattern keeps its skill across runs."""
    return replace(
        cand,
        namespace=redact(cand.namespace),
        pattern_id=redact(cand.pattern_id),
        instruction=redact(cand.instruction),
        evidence=redact_data(cand.evidence),
        source=redact_data(cand.source),
    )


def _decision_figures(skill: Skill) -> dict[str, Any] | None:
    """The figures recorded at the latest reject/retire (person or drift) of ``skill``."""
    for entry in reversed(skill.history):
        if entry.get("action") in ("reject", "retire", "retired") and "figures" in entry:
            return dict(entry["figures"])
    return None


def merge(
    skills: dict[str, Skill],
    candidates: Iterable[Candidate],
    *,
    policy: MergePolicy,
    now: str,
    tested: Iterable[tuple[str, str, dict[str, Any]]] = (),
    inputs: str | None = None,
) -> MergeResult:
    """Merge a run's candidates into ``skills`` (a Skillbook's ``{id: Skill}``, changed in
    place) and return what changed: the body of :meth:`pipeline.skillbook.Skillbook.merge`,
    whose docstring gives the rules and parameters. ``inputs``: the run's ``inputs_sha256``,
    stored with the observations it adds.
    """
    result = MergeResult()
    seen: set[str] = set()
    for cand in _absorbing(skills, [redacted(c) for c in candidates], now, result):
        section_mode = policy.mode_of(cand.section)
        if section_mode == "off":
            continue
        seen.add(cand.id)
        _merge_candidate(skills, cand, section_mode, policy, now, inputs, result)
    latest = {sid: redact_data(evidence) for sid, _, evidence in tested}
    for sid in sorted(set(skills) - seen):
        old = skills[sid]
        section_mode = policy.mode_of(old.section)
        if old.status not in ("active", "proposed") or section_mode == "off":
            continue
        if old.section == "improvements" or old.source.get("method") == "import":
            continue
        _merge_untested(skills, old, latest.get(sid), section_mode, policy, now, inputs, result)
    _merge_duplicates(skills, policy, now, result)
    _graduate(skills, policy, now, result)
    return result


def _members(cand: Candidate) -> list[str]:
    """Skill ids of a consolidated candidate's patterns: its own, then its corroborating ones
    (``evidence["patterns"]``, :func:`pipeline.consolidate.consolidate`)."""
    others = [p.get("pattern_id") for p in cand.evidence.get("patterns") or []]
    return [cand.id, *(skill_id(cand.namespace, p) for p in others if isinstance(p, str))]


def _keeper_key(skill: Skill) -> tuple[bool, bool, str, str]:
    return (skill.experiment is None, skill.status != "active", skill.created_at or "", skill.id)


def _absorbing(
    skills: dict[str, Skill], candidates: list[Candidate], now: str, result: MergeResult
) -> list[Candidate]:
    """The candidates sorted by id, each consolidated one keyed to the Skillbook's skill of
    one of its patterns when there is one, so ids stay stable as views are consolidated: the
    live (active or proposed) member skill under a prompt experiment, else active, else the
    oldest. Its other live member skills are retired as merged into it (``merged_into``)."""
    out: list[Candidate] = []
    claimed = {c.id for c in candidates}
    for cand in sorted(candidates, key=lambda c: c.id):
        members = _members(cand)
        live = sorted(
            (
                skills[m]
                for m in members
                if m in skills and skills[m].status in ("active", "proposed")
            ),
            key=_keeper_key,
        )
        if not live:
            out.append(cand)
            continue
        keeper = live[0].id
        if keeper != cand.id and keeper in claimed:
            out.append(cand)
            continue
        claimed.add(keeper)
        out.append(replace(cand, id=keeper))
        for other in live[1:]:
            if other.id in claimed:
                continue
            _absorb(
                skills,
                skills[keeper],
                other,
                now,
                result,
                kept_note=f"absorbed {other.id}: the same runs (consolidated)",
                retired_note=f"same runs as {keeper} (consolidated)",
            )
    return sorted(out, key=lambda c: c.id)


def _absorb(
    skills: dict[str, Skill],
    keep: Skill,
    other: Skill,
    now: str,
    result: MergeResult,
    *,
    kept_note: str,
    retired_note: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Retire ``other`` as merged into ``keep`` (``merged_into``, flag "merged into <id>"), and
    record it in ``keep``'s ``merged_from`` (id, pattern_id, instruction and ``extra``): an
    event ``merged`` on each, with ``kept_note`` and ``retired_note``."""
    merged_from = [
        *keep.source.get("merged_from", []),
        {
            "id": other.id,
            "pattern_id": other.source.get("pattern_id"),
            "instruction": other.instruction,
            **(extra or {}),
        },
    ]
    _put(
        skills,
        keep,
        replace(keep, source={**keep.source, "merged_from": merged_from}).with_event(
            now, "coach", "merged", note=kept_note
        ),
        now,
    )
    _put(
        skills,
        other,
        replace(
            other,
            status="retired",
            flags=(f"merged into {keep.id}",),
            source={**other.source, "merged_into": keep.id},
        ).with_event(
            now,
            "coach",
            "merged",
            note=retired_note,
            figures=other.figures(),
            **{"from": other.status, "to": "retired"},
        ),
        now,
    )
    result.merged += [keep.id, other.id]


def _put(skills: dict[str, Skill], old: Skill, new: Skill, now: str) -> None:
    skills[new.id] = replace(new, updated_at=now, version=old.version + 1)


def _merge_candidate(
    skills: dict[str, Skill],
    cand: Candidate,
    section_mode: str,
    policy: MergePolicy,
    now: str,
    inputs: str | None,
    result: MergeResult,
) -> None:
    wanted = "active" if cand.significant and section_mode == "auto" else "proposed"
    old = skills.get(cand.id)
    direction = cand.evidence.get("direction")
    if old is None:
        skill = Skill(
            id=cand.id,
            status=wanted,
            section=cand.section,
            namespace=cand.namespace,
            instruction=cand.instruction,
            evidence=cand.evidence,
            source={"method": "rule", "pattern_id": cand.pattern_id, "direction": direction}
            | cand.source,
            created_at=now,
            updated_at=now,
        )
        obs = observation(cand.evidence, at=now, inputs=inputs)
        skills[cand.id] = replace(skill, observations=(obs,) if obs else ()).with_event(
            now, "coach", "added", to=wanted, figures=skill.figures()
        )
        result.added.append(cand.id)
        return
    if old.status in ("rejected", "retired"):
        if old.source.get("merged_into") or _rejected_live(old):
            return
        reason = material_change(_decision_figures(old), cand.evidence)
        if reason is None or not (cand.significant or old.status == "rejected"):
            return
        new = replace(
            old,
            status="proposed",
            evidence=cand.evidence,
            flags=(),
            observations=_observe(old, cand.evidence, now, inputs),
            source={**old.source, "direction": direction},
            instruction=old.instruction if old.source.get("edited") else cand.instruction,
        )
        new = new.with_event(
            now,
            "coach",
            "reproposed",
            note=f"evidence changed materially: {reason}",
            **{"from": old.status, "to": "proposed"},
            figures=new.figures(),
        )
        _put(skills, old, new, now)
        result.reproposed.append(cand.id)
        return
    reversed_ = old.direction is not None and direction != old.direction
    keep_wording = old.source.get("edited") or reversed_
    instruction = old.instruction if keep_wording else cand.instruction
    # wording provenance (``method``, ``llm``) follows the wording actually kept
    source = old.source
    if not keep_wording:
        source = (
            {k: v for k, v in old.source.items() if k != "llm"}
            | {"method": cand.source.get("method", "rule")}
            | cand.source
        )
    observations = _observe(old, cand.evidence, now, inputs)
    new = old
    if (
        old.evidence != cand.evidence
        or old.instruction != instruction
        or old.source != source
        or old.flags
    ):
        new = replace(
            new,
            evidence=cand.evidence,
            instruction=instruction,
            source=source,
            flags=(),
            observations=observations,
        )
        new = new.with_event(now, "coach", "updated", figures=new.figures())
        result.updated.append(cand.id)
    elif observations != old.observations:
        new = replace(new, observations=observations)
    if old.status == "proposed" and wanted == "active" and not reversed_:
        new = replace(new, status="active").with_event(
            now, "coach", "activated", **{"from": "proposed", "to": "active"}
        )
        result.activated.append(cand.id)
    if reversed_ or not (cand.significant and new.status == "active"):
        new = _check_drift(new, section_mode, policy, now, result)
    if new != old:
        _put(skills, old, new, now)


def _merge_untested(
    skills: dict[str, Skill],
    old: Skill,
    evidence: dict[str, Any] | None,
    section_mode: str,
    policy: MergePolicy,
    now: str,
    inputs: str | None,
    result: MergeResult,
) -> None:
    flag = "not significant in the latest run" if evidence else "not observed in the latest run"
    new = old
    if evidence is not None and evidence != old.evidence:
        new = replace(
            new, evidence=evidence, observations=_observe(old, evidence, now, inputs)
        ).with_event(now, "coach", "updated", note=flag, figures=old.figures())
        result.updated.append(old.id)
    if flag not in new.flags and not {"lost significance", "effect reversed"} & set(new.flags):
        new = replace(new, flags=(flag,)).with_event(now, "coach", "flagged", note=flag)
        result.flagged.append(old.id)
    new = _check_drift(new, section_mode, policy, now, result)
    if new != old:
        _put(skills, old, new, now)


def _rejected_live(skill: Skill) -> bool:
    """Whether a prompt experiment rejected ``skill`` (live traffic outranks offline evidence:
    it is not proposed again)."""
    return skill.status == "rejected" and str(
        (skill.experiment or {}).get("decision", "")
    ).startswith("reject")


def _check_drift(
    skill: Skill, section_mode: str, policy: MergePolicy, now: str, result: MergeResult
) -> Skill:
    """Retire (``auto``) or flag (``propose``) an active skill whose recency-weighted
    evidence reversed or lost significance; a proposed one is flagged only if it reversed. A
    skill a prompt experiment promoted is only flagged: its evidence is the experiment's."""
    effect = weighted_effect(
        list(skill.observations), now=now, half_life_days=policy.half_life_days
    )
    found = drift(skill.direction, effect)
    if found is None or (skill.status == "proposed" and found.reason != "effect reversed"):
        return skill
    figures = {
        **found.figures,
        "direction": "harmful" if effect and effect.log_or < 0 else "helpful",
        "half_life_days": policy.half_life_days,
    }
    live = skill.experiment or {}
    promoted_live = live.get("decision") == "promote" or live.get("kind") == "holdback"
    if section_mode == "auto" and skill.status == "active" and not promoted_live:
        result.retired.append(skill.id)
        return replace(skill, status="retired", flags=(found.reason,)).with_event(
            now,
            "coach",
            "retired",
            note=found.reason,
            figures=figures,
            **{"from": "active", "to": "retired"},
        )
    if found.reason in skill.flags:
        return skill
    result.flagged.append(skill.id)
    return replace(skill, flags=(found.reason,)).with_event(
        now, "coach", "flagged", note=found.reason, figures=figures
    )


def _merge_duplicates(
    skills: dict[str, Skill], policy: MergePolicy, now: str, result: MergeResult
) -> None:
    live = sorted(
        (s for s in skills.values() if s.status in ("active", "proposed")),
        key=lambda s: (s.status != "active", s.created_at or "", s.id),
    )
    absorbed: set[str] = set()
    for i, keep in enumerate(live):
        if keep.id in absorbed:
            continue
        for other in live[i + 1 :]:
            if other.id in absorbed or (other.namespace, other.section) != (
                keep.namespace,
                keep.section,
            ):
                continue
            score = near_duplicate(
                _dup_view(skills[keep.id]),
                _dup_view(other),
                threshold=policy.duplicate_threshold,
            )
            if score is None:
                continue
            absorbed.add(other.id)
            _absorb(
                skills,
                skills[keep.id],
                other,
                now,
                result,
                kept_note=f"absorbed near-duplicate {other.id} (similarity {score:.0f})",
                retired_note=f"near-duplicate of {keep.id} (similarity {score:.0f})",
                extra={"similarity": score},
            )


def _graduate(skills: dict[str, Skill], policy: MergePolicy, now: str, result: MergeResult) -> None:
    if policy.mode_of("improvements") == "off":
        return
    for skill in sorted(skills.values(), key=lambda s: s.id):
        if skill.status != "active" or skill.section == "improvements":
            continue
        if skill.source.get("method") == "import":
            continue
        held = {
            o.get("inputs_sha256")
            for o in skill.observations
            if o.get("inputs_sha256")
            and (o["ci_high"] < 1 if skill.direction == "harmful" else o["ci_low"] > 1)
        }
        if len(held) < policy.graduate_after:
            continue
        pattern = f"improvement:{skill.source.get('pattern_id')}"
        sid = skill_id(skill.namespace, pattern)
        if sid in skills:
            continue
        skills[sid] = Skill(
            id=sid,
            status="proposed",
            section="improvements",
            namespace=skill.namespace,
            instruction=f"Add to the base instructions: {skill.instruction}",
            evidence=dict(skill.evidence),
            source={
                "method": "rule",
                "pattern_id": pattern,
                "from_skill": skill.id,
                "direction": skill.direction,
            },
            created_at=now,
            updated_at=now,
        ).with_event(
            now,
            "coach",
            "added",
            to="proposed",
            note=f"{skill.id} held on {len(held)} distinct input sets",
            figures=skill.figures(),
        )
        result.added.append(sid)


def _dup_view(skill: Skill) -> dict[str, Any]:
    return {
        "instruction": skill.instruction,
        "pattern_id": skill.source.get("pattern_id"),
        "direction": skill.direction,
    }

"""``SKILLBOOK.md``, the Skillbook for people (:func:`skillbook_markdown`, the template
``skillbook.md.j2`` rendered by :func:`pipeline.render.environment.environment`), saved together
with ``skillbook.json`` by :func:`save_skillbook`; and the one-line views of evidence and of
history entries it shares with the CLI, the report, the diff Markdown and the ACE export.

A skill carries three kinds of evidence, always shown apart and labelled
(:data:`OFFLINE`, :data:`HELD_OUT`, :func:`live_label`): the offline contrast
(``skill.evidence``, :func:`evidence_line`), the held-out replication (``skill.validation``,
:func:`validation_line`) and the randomised test on live traffic (``skill.experiment``,
:func:`experiment_line`). :func:`experiments_overview` lists the Skillbook's prompt
experiments. Every figure is formatted here (rounded, never a raw float), so outputs are the
same on every machine.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline.render.environment import (
    code_span,
    environment,
    markdown_inline,
    num,
    one_line,
    pct,
)
from pipeline.render.evidence_notes import evidence_notes
from pipeline.render.lessons import PromptBudget, over_budget_view
from pipeline.skillbook import STATUSES, Skill, Skillbook, section_key

__all__ = [
    "HELD_OUT",
    "OFFLINE",
    "TEMPLATE",
    "evidence_kinds",
    "evidence_line",
    "experiment_figures",
    "experiment_line",
    "experiments_overview",
    "history_line",
    "live_label",
    "offline_label",
    "points",
    "save_skillbook",
    "skillbook_markdown",
    "validation_line",
]

TEMPLATE = "skillbook.md.j2"
OFFLINE = "Offline contrast"
HELD_OUT = "Held-out replication"
# what a look decided, as people read it: for a skill under test, and for an active skill held
# back from part of the traffic
_OUTCOMES = {
    "experiment": {
        "promote": "promoted",
        "reject_harm": "rejected: harmful",
        "reject_futile": "rejected: futile",
        "continue": "running",
    },
    "holdback": {
        "promote": "helps",
        "reject_harm": "harmful",
        "reject_futile": "futile",
        "continue": "running",
    },
}
SHORT_INSTRUCTION = 80  # characters of an instruction in the list of experiments


def _fixed(value: Any, digits: int = 2) -> str:
    """A figure always shown as a float (``2`` -> ``2.00``): :func:`num` of ``float(value)``."""
    return num(None if value is None else float(value), digits)


def evidence_line(evidence: dict[str, Any]) -> str:
    """One line of figures: support, success rates with and without, odds ratio with its 95%
    interval, p and q, the stratification, and how many of the runs an LLM judge labelled
    (``llm_judged``, when any). A failure cluster (LLM-distilled, not a
    contrast) gives its size, share of failures and signature instead."""
    if evidence.get("kind") == "failure_cluster":
        return (
            f"failure cluster: {evidence.get('size')} of {evidence.get('failures_in_namespace')} "
            f"failed runs ({pct(evidence.get('share'))}), not a contrast; signature "
            f"{evidence.get('signature')}"
        )
    n_strata = evidence.get("n_strata")
    judged = (
        f"; {evidence['llm_judged']} of the "
        f"{(evidence.get('n_with') or 0) + (evidence.get('n_without') or 0)} runs labelled by "
        "an LLM judge"
        if evidence.get("llm_judged")
        else ""
    )
    within = (
        "the domain, tasks do not repeat"
        if evidence.get("method") == "fisher"
        else f"{n_strata} {'stratum' if n_strata == 1 else 'strata'}"
    )
    return (
        f"n={evidence.get('n_with')} with / {evidence.get('n_without')} without; success "
        f"{pct(evidence.get('rate_with'))} vs {pct(evidence.get('rate_without'))}; "
        f"odds ratio {_fixed(evidence.get('odds_ratio'))} "
        f"[{_fixed(evidence.get('ci_low'))}, {_fixed(evidence.get('ci_high'))}] within "
        f"{within} ({evidence.get('method')}); "
        f"p={_fixed(evidence.get('p_value'), 4)}, q={_fixed(evidence.get('q_value'), 4)}" + judged
    )


def points(value: Any) -> str:
    """A difference of success rates (a fraction) in percentage points, signed, one decimal:
    ``0.1093`` -> ``+10.9``, ``-0.02`` -> ``-2.0``, zero -> ``0.0``; ``n/a`` for None, NaN or an
    infinity."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    text = f"{100 * value:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def _count(value: Any) -> str:
    """A count as an integer (``412.0`` -> ``412``); ``n/a`` for None."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "n/a" if value is None else num(value)


def _p(value: Any) -> str:
    """An always-valid p-value or its level: three decimals (``0.0123`` -> ``0.012``), in
    scientific notation below 0.001; ``0`` for a stored zero."""
    if isinstance(value, int | float) and value == 0:
        return "0"
    return num(None if value is None else float(value), 3)


def offline_label(evidence: dict[str, Any]) -> str:
    """The label of the offline evidence: :data:`OFFLINE` for a contrast, ``Offline analysis``
    for a failure cluster (LLM-distilled, not a contrast)."""
    return "Offline analysis" if evidence.get("kind") == "failure_cluster" else OFFLINE


def live_label(experiment: dict[str, Any]) -> str:
    """The label of live-traffic evidence: ``Holdback (live traffic)`` for an active skill held
    back from part of the traffic, else ``Experiment (live traffic)``."""
    kind = "Holdback" if experiment.get("kind") == "holdback" else "Experiment"
    return f"{kind} (live traffic)"


def _outcome(experiment: dict[str, Any], *, ended: bool, markdown: bool) -> str:
    decision = str(experiment.get("decision"))
    words = _OUTCOMES["holdback" if experiment.get("kind") == "holdback" else "experiment"]
    if decision == "continue" and ended:
        return "ended without a decision"
    if decision in words:
        return words[decision]
    return markdown_inline(decision) if markdown else decision


def _level(alpha: Any) -> str:
    """The confidence level ``1 - alpha`` in percent, as short as it stays exact to 0.1
    (``0.05`` -> ``95%``, ``0.00714`` -> ``99.3%``); ``?`` when unknown."""
    if not isinstance(alpha, (int, float)):
        return "?"
    level = round((1 - alpha) * 100, 1)
    return f"{level:g}%"


def experiment_figures(
    experiment: dict[str, Any], *, ended: bool = False, markdown: bool = False
) -> str:
    """The figures of a look at a prompt experiment, in one line: the agent-adjusted difference
    in success rate (with minus without the skill) in points with its always-valid interval
    (at level 1 - α, the level the skill is tested at), the always-valid p-value and α, the
    exposures, the looks and what was decided (``promoted``, ``rejected: harmful``,
    ``rejected: futile``, ``running``; for a holdback ``helps``, ``harmful``, ``futile``).
    ``ended``: the experiment is over (an earlier one), so ``continue`` reads ``ended without
    a decision``. ``markdown``: an unknown decision escaped
    (:func:`~pipeline.render.environment.markdown_inline`)."""
    looks = experiment.get("looks")
    return (
        f"difference {points(experiment.get('difference'))} points, "
        f"{_level(experiment.get('alpha'))} always-valid CI "
        f"[{points(experiment.get('ci_low'))}, {points(experiment.get('ci_high'))}], "
        f"p {_p(experiment.get('p_value'))} (α {_p(experiment.get('alpha'))}), "
        f"{_count(experiment.get('exposures_with'))} with / "
        f"{_count(experiment.get('exposures_without'))} without, {_count(looks)} "
        f"look{'' if looks == 1 else 's'}: {_outcome(experiment, ended=ended, markdown=markdown)}"
    )


def experiment_line(
    experiment: dict[str, Any], *, markdown: bool = False, ended: bool = False
) -> str:
    """:func:`experiment_figures`, then the raw success rates, the experiment's id and the time
    of the last look. ``markdown``: the id as a code span and the time escaped
    (:func:`~pipeline.render.environment.markdown_inline`); else plain text (for the CLI, and
    for the autoescaped HTML report)."""
    ex_id, at = experiment.get("experiment_id"), experiment.get("last_look_at")
    return (
        f"{experiment_figures(experiment, ended=ended, markdown=markdown)} · success "
        f"{pct(experiment.get('success_with'))} vs {pct(experiment.get('success_without'))} · "
        f"{code_span(ex_id) if markdown else ex_id} · last look "
        f"{markdown_inline(at) if markdown else at}"
    )


def validation_line(validation: dict[str, Any], *, markdown: bool = False) -> str:
    """One line of a held-out replication (``coach evaluate --apply``): the verdict, support,
    success rates with and without, odds ratio with its 95% interval, method and strata, p and
    q on the test part, the split and when it was recorded. ``markdown``: the text fields
    escaped (:func:`~pipeline.render.environment.markdown_inline`)."""
    v = validation
    text = markdown_inline if markdown else str
    n_strata = v.get("n_strata")
    return (
        f"{text(v.get('verdict') or 'recorded')}: n={_count(v.get('n_with'))} with / "
        f"{_count(v.get('n_without'))} without; success {pct(v.get('rate_with'))} vs "
        f"{pct(v.get('rate_without'))}; odds ratio {_fixed(v.get('odds_ratio'))} "
        f"[{_fixed(v.get('ci_low'))}, {_fixed(v.get('ci_high'))}] ({text(v.get('method'))}, "
        f"{_count(n_strata)} {'stratum' if n_strata == 1 else 'strata'}); "
        f"p={_fixed(v.get('p_value'), 4)}, q={_fixed(v.get('q_value'), 4)}; "
        f"{text(v.get('split') or 'given')} split, recorded {text(v.get('at'))}"
    )


def evidence_kinds(skill: Skill, *, markdown: bool = False) -> list[dict[str, Any]]:
    """The evidence of ``skill`` beyond its offline contrast, each kind labelled: the held-out
    replication (when validated), the live-traffic look of its latest experiment or holdback,
    then the final looks of earlier ones. Each item: ``kind`` (``validation``, ``experiment``,
    ``holdback``, ``earlier``), ``label``, ``line`` (:func:`validation_line` or
    :func:`experiment_line`, Markdown-escaped when ``markdown``) and ``method``."""
    kinds: list[dict[str, Any]] = []
    if skill.validation:
        kinds.append(
            {
                "kind": "validation",
                "label": HELD_OUT,
                "line": validation_line(skill.validation, markdown=markdown),
                "method": skill.validation.get("method"),
            }
        )
    live = skill.experiment
    if live:
        kinds.append(
            {
                "kind": "holdback" if live.get("kind") == "holdback" else "experiment",
                "label": live_label(live),
                "line": experiment_line(live, markdown=markdown),
                "method": live.get("method"),
            }
        )
        for earlier in live.get("earlier") or []:
            label = live_label(earlier)
            kinds.append(
                {
                    "kind": "earlier",
                    "label": f"Earlier {label[0].lower()}{label[1:]}",
                    "line": experiment_line(earlier, markdown=markdown, ended=True),
                    "method": earlier.get("method"),
                }
            )
    return kinds


def _look_of(skill: Skill | None, experiment_id: Any) -> dict[str, Any] | None:
    """The figures of ``skill`` in the experiment ``experiment_id`` (its latest or an earlier
    one), or None."""
    live = skill.experiment if skill else None
    if not live:
        return None
    if live.get("experiment_id") == experiment_id:
        return live
    return next(
        (e for e in live.get("earlier") or [] if e.get("experiment_id") == experiment_id), None
    )


def _short(text: str) -> str:
    text = one_line(text)
    return text if len(text) <= SHORT_INSTRUCTION else text[: SHORT_INSTRUCTION - 1] + "…"


def experiments_overview(
    book: Skillbook, *, markdown: bool = False, last: int = 5
) -> dict[str, Any]:
    """The Skillbook's prompt experiments for people: ``running`` (by namespace) and the
    ``last`` ended ones (latest first), with ``n_ended``. Each: ``id``, ``namespace``,
    ``started_at``, ``ended_at``, ``ended_because``, ``share`` (of traffic in candidate arms,
    as a percentage), ``arms`` [{``arm``, ``share``, ``skill_ids``}], ``n_control`` (skills in
    every arm) and ``skills`` under test [{``id``, ``status``, ``instruction`` (cut to
    :data:`SHORT_INSTRUCTION` characters, not escaped), ``look`` (:func:`experiment_figures`
    of the skill in this experiment, or None)}]. Empty lists when none ran."""

    def view(experiment: dict[str, Any]) -> dict[str, Any]:
        ended = experiment.get("status") != "running"
        skills = []
        for sid in experiment.get("skill_ids") or []:
            skill = book.skills.get(sid)
            look = _look_of(skill, experiment.get("id"))
            skills.append(
                {
                    "id": sid,
                    "status": skill.status if skill else "",
                    "instruction": _short(skill.instruction)
                    if skill
                    else "(no longer in the Skillbook)",
                    "look": experiment_figures(look, ended=ended, markdown=markdown)
                    if look
                    else None,
                }
            )
        return {
            "id": experiment.get("id"),
            "namespace": experiment.get("namespace"),
            "status": experiment.get("status"),
            "started_at": experiment.get("started_at"),
            "ended_at": experiment.get("ended_at"),
            "ended_because": experiment.get("ended_because"),
            "share": pct(experiment.get("share")),
            "arms": [
                {
                    "arm": arm.get("arm"),
                    "share": pct(arm.get("share")),
                    "skill_ids": list(arm.get("skill_ids") or []),
                }
                for arm in experiment.get("arms") or []
            ],
            "n_control": len(experiment.get("control_skill_ids") or []),
            "skills": skills,
        }

    running = [e for e in book.experiments if e.get("status") == "running"]
    ended = [e for e in book.experiments if e.get("status") != "running"]
    running.sort(key=lambda e: (str(e.get("namespace")), str(e.get("id"))))
    ended.sort(key=lambda e: (str(e.get("ended_at") or ""), str(e.get("id"))), reverse=True)
    return {
        "running": [view(e) for e in running],
        "ended": [view(e) for e in ended[:last]],
        "n_ended": len(ended),
    }


def _skill_view(skill: Skill) -> dict[str, Any]:
    """What ``skillbook.md.j2`` shows of one skill."""
    ev = skill.evidence
    decisions = [h for h in skill.history if h.get("actor") != "coach"]
    # the one trace-derived part of the evidence line, escaped here: the line is plain text
    # elsewhere (the CLI)
    shown = ev | {"signature": markdown_inline(ev["signature"])} if ev.get("signature") else ev
    return {
        "offline_label": offline_label(ev),
        "kinds": evidence_kinds(skill, markdown=True),
        "instruction": skill.instruction,
        "id": skill.id,
        "status": skill.status,
        "version": skill.version,
        "pattern_id": skill.source.get("pattern_id"),
        "method": skill.source.get("method"),
        "evidence": evidence_line(shown),
        "stratification": ev.get("stratification"),
        "edited": bool(skill.source.get("edited")),
        "edited_by": skill.source.get("edited_by"),
        "edited_at": skill.source.get("edited_at"),
        "flags": list(skill.flags),
        "merged_from": [m["id"] for m in skill.source.get("merged_from") or []],
        "decision": decisions[-1] if decisions else None,
        "examples": list(ev.get("examples") or []),
        "notes": evidence_notes(ev, markdown=True),
    }


def history_line(entry: dict[str, Any]) -> str:
    """One line for a Skillbook history entry: version, time, what (a run with its id, or a
    person's decision on a skill), who, the changes and the note."""
    changes = entry.get("changes", {})
    summary = ", ".join(f"{len(v)} {k}" for k, v in changes.items() if v) or "no change"
    action = entry.get("action", "run")
    what = f"run `{entry.get('run_id', '?')}`" if action == "run" else action
    if entry.get("skill_id"):
        what += f" `{entry['skill_id']}`"
    if entry.get("restored") is not None:
        what += f" of v{entry['restored']}"
    note = f" · {entry['note']}" if entry.get("note") else ""
    return (
        f"v{entry['version']} · {entry.get('at')} · {what} by {entry.get('actor', 'coach')} · "
        f"{summary}{note}"
    )


def _markdown_history_line(entry: dict[str, Any]) -> str:
    """:func:`history_line` for Markdown: what people typed (the actor and the note) escaped,
    ids as code spans (run ids and skill ids are hexadecimal, so the spans cannot break)."""
    escaped = {k: markdown_inline(entry[k]) for k in ("actor", "note") if entry.get(k)}
    return history_line(entry | escaped)


def skillbook_markdown(book: Skillbook, budget: PromptBudget | None = None) -> str:
    """``SKILLBOOK.md``: a header with the version, the prompt experiments (when any ran, see
    :func:`experiments_overview`), then skills grouped by namespace, status and section, each
    with its evidence labelled by kind (:func:`evidence_kinds`) and its notes
    (:func:`~pipeline.render.evidence_notes.evidence_notes`), then per namespace the active
    skills over its prompt's ``budget`` (:func:`~pipeline.render.lessons.over_budget`; default
    :class:`~pipeline.render.lessons.PromptBudget`), then the run history. Deterministic for a
    given Skillbook and budget."""
    budget = budget or PromptBudget()
    left_out = over_budget_view(book, budget)
    counts = book.by_status()
    namespaces = []
    for namespace in sorted({s.namespace for s in book.skills.values()}):
        groups = []
        for status in STATUSES:
            group = [
                s for s in book.skills.values() if s.namespace == namespace and s.status == status
            ]
            if not group:
                continue
            sections = [
                {
                    "name": section,
                    "skills": [
                        _skill_view(s)
                        for s in sorted(
                            (s for s in group if s.section == section),
                            key=lambda s: (-s.value, s.id),
                        )
                    ],
                }
                for section in sorted({s.section for s in group}, key=section_key)
            ]
            groups.append({"status": status, "sections": sections})
        namespaces.append(
            {
                "name": namespace,
                "groups": groups,
                "over_budget": left_out.get(namespace, []),
            }
        )
    return (
        environment()
        .get_template(TEMPLATE)
        .render(
            version=book.version,
            updated=book.updated_at or "never",
            counts=", ".join(f"{counts[s]} {s}" for s in STATUSES),
            namespaces=namespaces,
            budget=budget.describe(),
            experiments=experiments_overview(book, markdown=True),
            history=[_markdown_history_line(entry) for entry in book.history[-20:]],
        )
    )


def save_skillbook(
    book: Skillbook, directory: Path, *, budget: PromptBudget | None = None
) -> dict[str, Path | None]:
    """Save ``book`` into ``directory``: its version snapshot, ``skillbook.json`` and
    ``SKILLBOOK.md`` (:func:`skillbook_markdown`, listing the skills over the prompts'
    ``budget``), each atomically, by :meth:`pipeline.skillbook.Skillbook.save`. Returns the
    paths by kind (``json``, ``markdown``, ``snapshot``).

    Raises:
        OSError: a file cannot be written.
    """
    return book.save(directory, markdown=skillbook_markdown(book, budget))

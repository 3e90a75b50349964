"""``SKILLBOOK.md``, the Skillbook for people (:func:`skillbook_markdown`), saved together with
``skillbook.json`` by :func:`save_skillbook`; and the one-line views of evidence and of history
entries it shares with the CLI, the report and the ACE export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.skillbook import STATUSES, Skill, Skillbook, section_key

__all__ = ["evidence_line", "history_line", "save_skillbook", "skillbook_markdown"]


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if value != 0 and abs(value) < 10**-digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def evidence_line(evidence: dict[str, Any]) -> str:
    """One line of figures: support, success rates with and without, odds ratio with its 95%
    interval, p and q, the stratification, and how many of the runs an LLM judge labelled
    (``llm_judged``, when any). A failure cluster (LLM-distilled, not a
    contrast) gives its size, share of failures and signature instead."""
    if evidence.get("kind") == "failure_cluster":
        return (
            f"failure cluster: {evidence.get('size')} of {evidence.get('failures_in_namespace')} "
            f"failed runs ({_pct(evidence.get('share'))}), not a contrast; signature "
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
        f"{_pct(evidence.get('rate_with'))} vs {_pct(evidence.get('rate_without'))}; "
        f"odds ratio {_num(evidence.get('odds_ratio'))} "
        f"[{_num(evidence.get('ci_low'))}, {_num(evidence.get('ci_high'))}] within "
        f"{within} ({evidence.get('method')}); "
        f"p={_num(evidence.get('p_value'), 4)}, q={_num(evidence.get('q_value'), 4)}" + judged
    )


def _skill_block(skill: Skill) -> list[str]:
    ev = skill.evidence
    lines = [
        f"- **{skill.instruction}**",
        f"  - `{skill.id}` · {skill.status} · v{skill.version} · pattern "
        f"`{skill.source.get('pattern_id')}` · {skill.source.get('method')}",
        f"  - {evidence_line(ev)}",
        f"  - stratified by {ev.get('stratification')}",
    ]
    if skill.source.get("edited"):
        lines.append(
            f"  - wording edited by {skill.source.get('edited_by')} at "
            f"{skill.source.get('edited_at')} (kept across runs)"
        )
    if skill.flags:
        lines.append(f"  - flagged: {', '.join(skill.flags)}")
    merged = skill.source.get("merged_from") or []
    if merged:
        lines.append("  - merged from: " + ", ".join(f"`{m['id']}`" for m in merged))
    decisions = [h for h in skill.history if h.get("actor") != "coach"]
    if decisions:
        last = decisions[-1]
        note = f": {last['note']}" if last.get("note") else ""
        lines.append(
            f"  - last decision: {last['action']} by {last['actor']} at {last['at']}{note}"
        )
    examples = ev.get("examples") or []
    if examples:
        refs = ", ".join(f"`{e['trajectory_id']}`#{e['step_idx']}" for e in examples)
        lines.append(f"  - examples: {refs}")
    return lines


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


def skillbook_markdown(book: Skillbook) -> str:
    """``SKILLBOOK.md``: a header with the version, then skills grouped by namespace, status and
    section, then the run history. Deterministic for a given Skillbook."""
    counts = book.by_status()
    lines = [
        "# Skillbook",
        "",
        f"Version {book.version} · updated {book.updated_at or 'never'} · "
        + ", ".join(f"{counts[s]} {s}" for s in STATUSES),
        "",
    ]
    if not book.skills:
        lines += [
            "No skills yet. A behaviour becomes a skill only when, within the same task, runs "
            "that show it succeed significantly more or less often than runs that do not "
            "(false discovery rate controlled). See `coach learn --json` for the figures.",
            "",
        ]
    namespaces = sorted({s.namespace for s in book.skills.values()})
    for namespace in namespaces:
        lines += [f"## {namespace}", ""]
        for status in STATUSES:
            group = [
                s for s in book.skills.values() if s.namespace == namespace and s.status == status
            ]
            if not group:
                continue
            lines += [f"### {status.capitalize()}", ""]
            sections = sorted(
                {s.section for s in group},
                key=section_key,
            )
            for section in sections:
                lines += [f"#### {section}", ""]
                for skill in sorted(
                    (s for s in group if s.section == section), key=lambda s: (-s.value, s.id)
                ):
                    lines += _skill_block(skill)
                lines.append("")
    if book.history:
        lines += ["## History", ""]
        for entry in book.history[-20:]:
            lines.append(f"- {history_line(entry)}")
        lines.append("")
    return "\n".join(lines)


def save_skillbook(book: Skillbook, directory: Path) -> dict[str, Path | None]:
    """Save ``book`` into ``directory``: its version snapshot, ``skillbook.json`` and
    ``SKILLBOOK.md`` (:func:`skillbook_markdown`), each atomically, by
    :meth:`pipeline.skillbook.Skillbook.save`. Returns the paths by kind (``json``,
    ``markdown``, ``snapshot``).

    Raises:
        OSError: a file cannot be written.
    """
    return book.save(directory, markdown=skillbook_markdown(book))

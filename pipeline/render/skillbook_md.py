"""``SKILLBOOK.md``, the Skillbook for people (:func:`skillbook_markdown`, the template
``skillbook.md.j2`` rendered by :func:`pipeline.render.environment.environment`), saved together
with ``skillbook.json`` by :func:`save_skillbook`; and the one-line views of evidence and of
history entries it shares with the CLI, the report and the ACE export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.render.environment import environment, markdown_inline, num, pct
from pipeline.skillbook import STATUSES, Skill, Skillbook, section_key

__all__ = ["TEMPLATE", "evidence_line", "history_line", "save_skillbook", "skillbook_markdown"]

TEMPLATE = "skillbook.md.j2"


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


def _skill_view(skill: Skill) -> dict[str, Any]:
    """What ``skillbook.md.j2`` shows of one skill."""
    ev = skill.evidence
    decisions = [h for h in skill.history if h.get("actor") != "coach"]
    # the one trace-derived part of the evidence line, escaped here: the line is plain text
    # elsewhere (the CLI)
    shown = ev | {"signature": markdown_inline(ev["signature"])} if ev.get("signature") else ev
    return {
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


def skillbook_markdown(book: Skillbook) -> str:
    """``SKILLBOOK.md``: a header with the version, then skills grouped by namespace, status and
    section, then the run history. Deterministic for a given Skillbook."""
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
        namespaces.append({"name": namespace, "groups": groups})
    return (
        environment()
        .get_template(TEMPLATE)
        .render(
            version=book.version,
            updated=book.updated_at or "never",
            counts=", ".join(f"{counts[s]} {s}" for s in STATUSES),
            namespaces=namespaces,
            history=[_markdown_history_line(entry) for entry in book.history[-20:]],
        )
    )


def save_skillbook(book: Skillbook, directory: Path) -> dict[str, Path | None]:
    """Save ``book`` into ``directory``: its version snapshot, ``skillbook.json`` and
    ``SKILLBOOK.md`` (:func:`skillbook_markdown`), each atomically, by
    :meth:`pipeline.skillbook.Skillbook.save`. Returns the paths by kind (``json``,
    ``markdown``, ``snapshot``).

    Raises:
        OSError: a file cannot be written.
    """
    return book.save(directory, markdown=skillbook_markdown(book))

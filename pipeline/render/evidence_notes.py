"""What a skill's evidence says beyond its figures, as people read it in ``SKILLBOOK.md`` and the
HTML report: the corroborating patterns of a consolidated skill (``evidence["patterns"]``),
what successful runs did instead (``evidence["instead"]``), the condition under which the
pattern fails (``evidence["condition"]``) and a few exemplar lines from the runs
(``evidence["exemplars"]``). :func:`evidence_notes` gathers those a skill has; a key that is
absent (older Skillbooks, skills the extractor did not annotate) shows nothing.

Every trace-derived part (pattern ids, tool names, argument values, summaries, exemplar text)
is escaped for Markdown with ``markdown=True`` (:func:`~pipeline.render.environment.markdown_inline`,
ids as :func:`~pipeline.render.environment.code_span`); else the lines are plain text, for the
autoescaped HTML report. Exemplars are shown to people only: they never go into a prompt.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pipeline.render.environment import code_span, markdown_inline, num, one_line, pct

__all__ = [
    "EXEMPLAR_CHARS",
    "MAX_EXEMPLARS",
    "condition_line",
    "evidence_notes",
    "exemplar_lines",
    "instead_line",
    "patterns_line",
]

MAX_EXEMPLARS = 3  # exemplar lines shown per skill
EXEMPLAR_CHARS = 160  # characters of an exemplar's text shown, "…" past it


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(markdown: bool) -> Callable[[Any], str]:
    return markdown_inline if markdown else one_line


def _id(markdown: bool) -> Callable[[Any], str]:
    return code_span if markdown else one_line


def patterns_line(patterns: Any, *, markdown: bool = False) -> str | None:
    """``also seen as: tool_order:a->b (n=40, OR 0.31, overlap 0.92); ...`` for the
    corroborating patterns of a consolidated skill (a list of ``{"pattern_id", "n_with",
    "odds_ratio", "p_value", "overlap"}``; overlap: the Jaccard index of their supporting runs
    with the headline pattern's), in the order given; None when there are none."""
    items = [p for p in patterns or [] if isinstance(p, dict) and p.get("pattern_id")]
    if not items:
        return None
    parts = []
    for p in items:
        support = _number(p.get("n_with"))
        figures = [] if support is None else [f"n={support:g}"]
        if _number(p.get("odds_ratio")) is not None:
            figures.append(f"OR {num(float(p['odds_ratio']))}")
        if _number(p.get("overlap")) is not None:
            figures.append(f"overlap {num(float(p['overlap']))}")
        shown = _id(markdown)(p["pattern_id"])
        parts.append(f"{shown} ({', '.join(figures)})" if figures else shown)
    return "also seen as: " + "; ".join(parts)


def instead_line(instead: Any, *, markdown: bool = False) -> str | None:
    """``Successful runs instead: replied to the user without a tool call (18 of 24 aligned
    runs)`` from ``{"action", "tool", "share", "pairs", "summary"}`` (``share``: of the
    ``pairs`` of aligned runs); the summary, else the action and tool; None when absent."""
    if not isinstance(instead, dict):
        return None
    what = instead.get("summary") or " ".join(
        str(v) for v in (instead.get("action"), instead.get("tool")) if v
    )
    if not what:
        return None
    line = f"Successful runs instead: {_text(markdown)(what)}"
    pairs, share = instead.get("pairs"), _number(instead.get("share"))
    if isinstance(pairs, int) and pairs > 0 and share is not None:
        line += f" ({round(share * pairs)} of {pairs} aligned runs)"
    return line


def condition_line(condition: Any, *, markdown: bool = False) -> str | None:
    """``When: get_reservation_details returned cabin=basic_economy (in 80% of failed runs that
    took the action, 10% of successful ones)`` from ``{"text", "source", "tool", "key",
    "value", "rate_failed", "rate_succeeded", "p_value"}``: the text, else ``TOOL returned
    KEY=VALUE``; None when absent."""
    if not isinstance(condition, dict):
        return None
    what = condition.get("text")
    if not what and condition.get("tool") and condition.get("key"):
        what = f"{condition['tool']} returned {condition['key']}={condition.get('value')}"
    if not what:
        return None
    line = f"When: {_text(markdown)(what)}"
    failed, succeeded = condition.get("rate_failed"), condition.get("rate_succeeded")
    if _number(failed) is not None and _number(succeeded) is not None:
        line += (
            f" (in {pct(failed)} of failed runs that took the action, {pct(succeeded)} of "
            "successful ones)"
        )
    return line


def exemplar_lines(exemplars: Any, *, markdown: bool = False) -> list[str]:
    """One short quoted line per exemplar (at most :data:`MAX_EXEMPLARS`, each text cut to
    :data:`EXEMPLAR_CHARS` characters): ``role: "text" (`id`#step)``, the step left out when
    unknown. Exemplars are ``{"trajectory_id", "step_idx", "text", "role"}``, their text
    redacted already and escaped again here."""
    lines = []
    for e in [e for e in exemplars or [] if isinstance(e, dict) and e.get("text")][:MAX_EXEMPLARS]:
        text = one_line(e["text"])
        if len(text) > EXEMPLAR_CHARS:
            text = text[: EXEMPLAR_CHARS - 1] + "…"
        pointer = ""
        if e.get("trajectory_id"):
            step = e.get("step_idx")
            pointer = f" ({_id(markdown)(e['trajectory_id'])}{'' if step is None else f'#{step}'})"
        role = f"{_text(markdown)(e['role'])}: " if e.get("role") else ""
        lines.append(f'{role}"{_text(markdown)(text)}"{pointer}')
    return lines


def evidence_notes(evidence: dict[str, Any], *, markdown: bool = False) -> dict[str, Any]:
    """The notes of ``evidence`` (a skill's offline evidence) for people: ``lines`` (the
    :func:`patterns_line`, :func:`instead_line` and :func:`condition_line` it has, in that
    order) and ``exemplars`` (:func:`exemplar_lines`); both empty when it has none of the
    keys."""
    lines = [
        line
        for line in (
            patterns_line(evidence.get("patterns"), markdown=markdown),
            instead_line(evidence.get("instead"), markdown=markdown),
            condition_line(evidence.get("condition"), markdown=markdown),
        )
        if line
    ]
    return {
        "lines": lines,
        "exemplars": exemplar_lines(evidence.get("exemplars"), markdown=markdown),
    }

"""The HTML report's charts, drawn by matplotlib's SVG backend and inlined as ``<svg>``.

:func:`rate_chart` (success rate per domain with Wilson intervals), :func:`forest_chart` (odds
ratios with 95% intervals on a log axis) and :func:`runs_chart` (success rate over runs) each
return an ``<svg>`` element for :mod:`pipeline.report_html`; text stays text, ids are salted per
chart and no date is written, so the output is reproducible.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

from pipeline.redact import redact
from pipeline.render.environment import break_template_syntax

__all__ = ["forest_chart", "rate_chart", "runs_chart"]


def _svg(fig: Any, salt: str) -> str:
    """The figure as an inline ``<svg>`` element: text kept as text, no XML prolog, ids salted
    so that several charts in one page do not collide, no date (reproducible)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, count=1, flags=re.S)
    return text.replace("<svg ", f'<svg role="img" aria-label="{salt}" class="chart" ', 1)


def _label(text: str) -> str:
    """Chart text: redacted (:func:`pipeline.redact.redact`; the chart is inlined as HTML
    that the report's environment does not touch again), template delimiters broken
    (:func:`~pipeline.render.environment.break_template_syntax`), mathtext switched off (a ``$``
    in a tool error would start math). matplotlib escapes it as XML."""
    return break_template_syntax(redact(text)).replace("$", r"\$")


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    fig.set_facecolor("white")
    return fig


def rate_chart(rows: list[dict[str, Any]], salt: str) -> str:
    """Horizontal bars: success rate per row with its Wilson interval; rows have name, rate,
    low, high, n."""
    fig = _figure(7, 0.45 * len(rows) + 1.0)
    ax = fig.add_subplot()
    names = [_label(r["name"]) for r in rows][::-1]
    rates = [r["rate"] for r in rows][::-1]
    lows = [max(0.0, r["rate"] - r["low"]) for r in rows][::-1]
    highs = [max(0.0, r["high"] - r["rate"]) for r in rows][::-1]
    ax.barh(names, rates, xerr=[lows, highs], color="#4393c3", ecolor="#333333", capsize=3)
    for y, r in enumerate(rows[::-1]):
        ax.text(1.01, y, f"{r['rate']:.0%} of {r['n']}", va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("success rate (95% Wilson interval)")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig, salt)


def forest_chart(rows: list[dict[str, Any]], salt: str) -> str:
    """Odds ratios with 95% intervals on a log axis; rows have label, odds_ratio, ci_low,
    ci_high, colour. Unbounded intervals are clipped to the axis."""
    from matplotlib.ticker import FuncFormatter

    rows = [r for r in rows if r["odds_ratio"] and math.isfinite(r["odds_ratio"])]
    fig = _figure(7.5, 0.38 * len(rows) + 1.2)
    ax = fig.add_subplot()
    finite = [
        v
        for r in rows
        for v in (r["odds_ratio"], r["ci_low"], r["ci_high"])
        if v is not None and math.isfinite(v) and v > 0
    ]
    lo = min([*finite, 0.5]) / 1.5
    hi = max([*finite, 2.0]) * 1.5
    for y, r in enumerate(rows[::-1]):
        est = r["odds_ratio"]
        low = r["ci_low"] if r["ci_low"] and math.isfinite(r["ci_low"]) else lo
        high = r["ci_high"] if r["ci_high"] and math.isfinite(r["ci_high"]) else hi
        ax.plot([max(low, lo), min(high, hi)], [y, y], color=r["colour"], linewidth=2)
        ax.plot([est], [y], "o", color=r["colour"])
    ax.axvline(1.0, color="#555555", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda _v, _pos: ""))
    ax.set_yticks(range(len(rows)), [_label(r["label"]) for r in rows][::-1], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("odds ratio of success within task (95% CI); < 1: goes with failure")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig, salt)


def runs_chart(points: list[dict[str, Any]], salt: str) -> str:
    fig = _figure(7, 3)
    ax = fig.add_subplot()
    xs = list(range(len(points)))
    ax.plot(xs, [p["rate"] for p in points], "o-", color="#2166ac", label="all labelled runs")
    added = [(x, p["added_rate"]) for x, p in zip(xs, points, strict=True) if p["added_rate"]]
    if added:
        ax.plot(
            [a[0] for a in added],
            [a[1] for a in added],
            "s--",
            color="#d6604d",
            label="runs added since the previous point",
        )
    ax.set_xticks(xs, [_label(p["label"]) for p in points], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate")
    ax.legend(fontsize=8, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig, salt)

"""The notes of a skill's evidence (corroborating patterns, what successful runs did instead,
the condition, exemplars) are shown in SKILLBOOK.md and the HTML report when the evidence has
them, escaped for each output, nothing when it has not; exemplars never reach a prompt."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.render import PromptGenerator
from pipeline.render.evidence_notes import (
    condition_line,
    evidence_notes,
    exemplar_lines,
    instead_line,
    patterns_line,
)
from pipeline.render.report import ReportData, render_report
from pipeline.render.skillbook_md import skillbook_markdown
from pipeline.skillbook import Skill, Skillbook

SID = "sk-0123456789ab"
PATTERNS = [
    {
        "pattern_id": "tool_order:a->b",
        "n_with": 40,
        "odds_ratio": 0.31,
        "p_value": 0.002,
        "overlap": 0.92,
    },
    {
        "pattern_id": "tool_called:b",
        "n_with": 55,
        "odds_ratio": None,
        "p_value": None,
        "overlap": 0.5,
    },
]
INSTEAD = {
    "action": "reply",
    "tool": None,
    "share": 0.75,
    "pairs": 24,
    "summary": "replied to the user without a tool call",
}
CONDITION = {
    "text": "get_reservation_details returned cabin=basic_economy",
    "source": "tool_result",
    "tool": "get_reservation_details",
    "key": "cabin",
    "value": "basic_economy",
    "rate_failed": 0.8,
    "rate_succeeded": 0.1,
    "p_value": 0.0004,
}
EXEMPLARS = [
    {
        "trajectory_id": "t-1",
        "step_idx": 4,
        "text": "I want to *cancel* {{ my }} <b>basic</b> fare\nnow",
        "role": "user",
    },
    {"trajectory_id": "t-2", "step_idx": None, "text": "Sure, cancelling it.", "role": "assistant"},
]


def _skill(**evidence: Any) -> Skill:
    return Skill(
        id=SID,
        status="active",
        section="pitfalls",
        namespace="domain:airline",
        instruction="Check the fare class before calling cancel_reservation.",
        evidence={
            "n_with": 40,
            "n_without": 200,
            "rate_with": 0.3,
            "rate_without": 0.6,
            "odds_ratio": 0.31,
            "ci_low": 0.15,
            "ci_high": 0.6,
            "p_value": 0.001,
            "q_value": 0.01,
            "method": "cmh",
            "n_strata": 12,
            "stratification": "task (12 tasks)",
        }
        | evidence,
        source={"method": "rule", "pattern_id": "unconfirmed_write:cancel_reservation"},
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )


FULL = _skill(patterns=PATTERNS, instead=INSTEAD, condition=CONDITION, exemplars=EXEMPLARS)


def test_each_note_reads_as_people_read_it() -> None:
    assert patterns_line(PATTERNS) == (
        "also seen as: tool_order:a->b (n=40, OR 0.31, overlap 0.92); tool_called:b (n=55, "
        "overlap 0.50)"
    )
    assert instead_line(INSTEAD) == (
        "Successful runs instead: replied to the user without a tool call (18 of 24 aligned runs)"
    )
    assert condition_line(CONDITION) == (
        "When: get_reservation_details returned cabin=basic_economy (in 80% of failed runs that "
        "took the action, 10% of successful ones)"
    )
    assert exemplar_lines(EXEMPLARS)[1] == 'assistant: "Sure, cancelling it." (t-2)'
    # without a summary or text: made from the parts
    assert instead_line({"action": "called", "tool": "search", "share": 0.5, "pairs": 4}) == (
        "Successful runs instead: called search (2 of 4 aligned runs)"
    )
    no_text = {k: v for k, v in CONDITION.items() if k != "text"}
    # an underscore inside a word starts no emphasis (GFM 6.2): left as it is
    assert condition_line(no_text, markdown=True) == condition_line(CONDITION, markdown=True)
    assert evidence_notes({}) == {"lines": [], "exemplars": []}
    assert patterns_line([]) is None and instead_line(None) is None
    assert condition_line({"rate_failed": 0.8}) is None


def _entry(markdown: str) -> str:
    match = re.search(rf"^- \*\*[^\n]*\n  - `{SID}`.*?(?=^- \*\*|^#|\Z)", markdown, re.M | re.S)
    assert match
    return match.group(0)


def test_skillbook_md_shows_the_notes_escaped() -> None:
    entry = _entry(skillbook_markdown(Skillbook({SID: FULL})))
    assert (
        "  - also seen as: `tool_order:a->b` (n=40, OR 0.31, overlap 0.92); `tool_called:b` "
        "(n=55, overlap 0.50)\n"
    ) in entry
    assert (
        "  - Successful runs instead: replied to the user without a tool call (18 of 24 aligned "
        "runs)\n"
    ) in entry
    assert (
        "  - When: get_reservation_details returned cabin=basic_economy (in 80% of failed runs "
        "that took the action, 10% of successful ones)\n"
    ) in entry
    assert "  - exemplars:\n" in entry
    assert (
        '    - user: "I want to \\*cancel\\* \\{\\{ my \\}\\} \\<b\\>basic\\</b\\> fare now" '
        "(`t-1`#4)\n"
    ) in entry
    assert '    - assistant: "Sure, cancelling it." (`t-2`)\n' in entry
    assert "{{ my }}" not in entry and "<b>" not in entry and "#None" not in entry
    # the notes come after the figures, before the examples
    assert entry.index("Offline contrast") < entry.index("also seen as") < entry.index("exemplars")


def test_nothing_is_shown_without_the_keys() -> None:
    entry = _entry(skillbook_markdown(Skillbook({SID: _skill()})))
    for absent in ("also seen as", "instead", "When:", "exemplars"):
        assert absent not in entry


def test_long_exemplars_are_cut_and_at_most_three_are_shown() -> None:
    many = [
        {"trajectory_id": f"t-{i}", "step_idx": i, "text": "x" * 500, "role": "user"}
        for i in range(5)
    ]
    lines = exemplar_lines(many)
    assert len(lines) == 3
    assert all(len(line) < 200 and "…" in line for line in lines)


def test_exemplars_never_go_into_the_prompt() -> None:
    (prompt,) = PromptGenerator().run(Skillbook({SID: FULL}), {"domain:airline": "Base."})
    assert "Check the fare class" in prompt.text
    for text in ("I want to", "Sure", "also seen", "instead", "basic_economy", "t-1"):
        assert text not in prompt.text


def test_the_report_shows_the_notes_escaped() -> None:
    trajectories = pl.DataFrame(
        {
            "trajectory_id": ["t-1"],
            "source_uri": ["a.jsonl"],
            "domain": ["airline"],
            "task_id": ["k"],
            "agent_name": ["a"],
            "outcome_label": ["failure"],
            "n_steps": [5],
            "termination_reason": ["done"],
        }
    )
    clusters = pl.DataFrame(
        schema={
            "namespace": pl.String,
            "signature": pl.String,
            "size": pl.Int64,
            "share": pl.Float64,
            "example_ids": pl.List(pl.String),
        }
    )
    units = pl.DataFrame({"trajectory_id": ["t-1"], "success": [False]})
    last_run = {"at": "2026-01-05T00:00:00Z", "run_id": "r1", "records_read": 1}
    last_run |= {"quarantined": 0, "features_tested": 1, "significant": 1, "confounded": 0}
    last_run |= {"timings_s": {}, "not_enough_evidence": []}
    data = ReportData(
        trajectories,
        pl.DataFrame(),
        clusters,
        units,
        Skillbook({SID: FULL}),
        Path("-"),
        last_run=last_run,
    )
    html = render_report(data)
    skills = html[html.index('<section id="skills">') :]
    assert (
        '<p class="note">also seen as: tool_order:a-&gt;b (n=40, OR 0.31, overlap 0.92); '
        "tool_called:b (n=55, overlap 0.50)</p>"
    ) in skills
    assert "Successful runs instead: replied to the user without a tool call (18 of 24" in skills
    assert "When: get_reservation_details returned cabin=basic_economy (in 80% of" in skills
    assert (
        "<li>user: &#34;I want to *cancel* &#123;&#123; my &#125;&#125; &lt;b&gt;basic&lt;/b&gt; "
        "fare now&#34; (t-1#4)</li>"
    ) in skills
    assert "<b>basic" not in skills

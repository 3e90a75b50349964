"""The three kinds of evidence of a skill (offline contrast, held-out replication, experiment on
live traffic) are labelled and kept apart in SKILLBOOK.md, the HTML report, the diff Markdown
and ``coach skills show``, with the prompt experiments listed; a Skillbook without them shows
no experiment line, and experiment text from the file is escaped."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.render import Snapshot, diff_snapshots, markdown_summary, save_skillbook
from pipeline.render.report import ReportData, render_report
from pipeline.render.skillbook_md import points, skillbook_markdown
from pipeline.skillbook import Skill, Skillbook

BOTH, OFFLINE = "sk-aaaaaaaaaaaa", "sk-bbbbbbbbbbbb"
HOSTILE = "<script>alert(1)</script> {{ x }}"
EVIDENCE = {
    "n_with": 120,
    "n_without": 380,
    "n_strata": 14,
    "method": "cmh",
    "stratification": "task (40 tasks)",
    "rate_with": 0.6667,
    "rate_without": 0.5263,
    "lift": 1.266667,
    "odds_ratio": 1.8,
    "ci_low": 1.15,
    "ci_high": 2.82,
    "p_value": 0.0104,
    "q_value": 0.031,
    "direction": "helpful",
}
VALIDATION = {
    "verdict": "replicated",
    "n_with": 60,
    "n_without": 190,
    "rate_with": 0.65,
    "rate_without": 0.5,
    "odds_ratio": 1.9,
    "ci_low": 1.05,
    "ci_high": 3.4,
    "p_value": 0.021,
    "q_value": 0.04,
    "method": "cmh",
    "n_strata": 9,
    "split": "task",
    "at": "2026-01-02T00:00:00Z",
}
EXPERIMENT = {
    "experiment_id": "ex-1a2b3c4d5e6f",
    "kind": "experiment",
    "namespace": "domain:airline",
    "looks": 4,
    "last_look_at": "2026-01-05T00:00:00Z",
    "exposures_with": 412,
    "exposures_without": 398,
    "success_with": 0.7214,
    "success_without": 0.6111,
    "difference": 0.1093,
    "ci_low": 0.0211,
    "ci_high": 0.1975,
    "p_value": 0.0123,
    "alpha": 0.007,
    "decision": "promote",
    "method": "mixture SPRT (Johari et al. 2022) on the agent-adjusted risk difference",
    "earlier": [],
}
LIVE = (
    "difference +10.9 points, 99.3% always-valid CI [+2.1, +19.8], p 0.012 (α 0.007), "
    "412 with / 398 without, 4 looks: promoted"
)
HELD_OUT = "replicated: n=60 with / 190 without; success 65% vs 50%; odds ratio 1.90 [1.05, 3.40]"
CONTRAST = "n=120 with / 380 without; success 67% vs 53%; odds ratio 1.80 [1.15, 2.82]"
PROMOTED = {
    "at": "2026-01-05T00:00:00Z",
    "actor": "coach",
    "action": "promote",
    "version": 1,
    "from": "proposed",
    "to": "active",
    "note": "experiment ex-1a2b3c4d5e6f: promote (difference +0.109, 95% CS [0.021, 0.198], "
    "p 0.012)",
}


def _skill(sid: str, status: str = "active", **kw: Any) -> Skill:
    base: dict[str, Any] = {
        "id": sid,
        "status": status,
        "section": "procedures",
        "namespace": "domain:airline",
        "instruction": f"Do {sid} carefully.",
        "evidence": EVIDENCE,
        "source": {"method": "rule", "pattern_id": f"p:{sid}"},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    return Skill(**(base | kw))


def _experiment(ex_id: str, status: str, skill_id: str, namespace: str) -> dict[str, Any]:
    return {
        "id": ex_id,
        "namespace": namespace,
        "status": status,
        "started_at": "2026-01-01T00:00:00Z",
        "ended_at": "2026-01-05T00:00:00Z" if status == "ended" else None,
        "ended_because": "promote" if status == "ended" else None,
        "share": 0.2,
        "control_skill_ids": [],
        "skill_ids": [skill_id],
        "arms": [
            {"arm": "control", "skill_ids": [], "share": 0.8},
            {"arm": "candidate", "skill_ids": [skill_id], "share": 0.2},
        ],
    }


@pytest.fixture
def book() -> Skillbook:
    """One skill with all three kinds of evidence (promoted by an experiment), one with the
    offline contrast only (under test in a running experiment that has not looked yet)."""
    both = _skill(
        BOTH,
        validation=VALIDATION,
        experiment=EXPERIMENT,
        history=(
            {"at": "2026-01-01T00:00:00Z", "actor": "coach", "action": "added", "version": 1},
            PROMOTED,
        ),
    )
    offline = _skill(OFFLINE, status="proposed")
    experiments = [
        _experiment("ex-1a2b3c4d5e6f", "ended", BOTH, "domain:airline"),
        _experiment("ex-222222222222", "running", OFFLINE, "domain:airline"),
    ]
    return Skillbook({BOTH: both, OFFLINE: offline}, version=3, experiments=experiments)


def _entry(markdown: str, sid: str) -> str:
    """The bullet of skill ``sid`` in SKILLBOOK.md (up to the next skill or heading)."""
    match = re.search(rf"^- \*\*[^\n]*\n  - `{sid}`.*?(?=^- |^#)", markdown + "\n#", re.M | re.S)
    assert match, sid
    return match.group(0)


def test_figures_are_formatted_not_raw() -> None:
    assert points(0.1093) == "+10.9" and points(-0.02) == "-2.0"
    assert points(-0.0001) == "0.0" and points(None) == "n/a" and points(float("nan")) == "n/a"


def test_skillbook_md_labels_each_kind_and_lists_experiments(book: Skillbook) -> None:
    text = skillbook_markdown(book)
    both, offline = _entry(text, BOTH), _entry(text, OFFLINE)
    assert f"  - Offline contrast: {CONTRAST}" in both
    assert f"  - Held-out replication: {HELD_OUT}" in both
    assert f"  - Experiment (live traffic): {LIVE} · success 72% vs 61% · `ex-1a2b3c4d5e6f`" in (
        both
    )
    assert f"  - Offline contrast: {CONTRAST}" in offline
    assert "live traffic" not in offline and "Held-out" not in offline
    experiments = text[text.index("## Experiments") : text.index("## domain:airline")]
    running = experiments[experiments.index("### Running") : experiments.index("### Ended")]
    assert "- domain:airline · `ex-222222222222` · started 2026-01-01T00:00:00Z" in running
    assert "control 80% · candidate 20% (+ `sk-bbbbbbbbbbbb`)" in running
    assert f"under test: `{OFFLINE}` Do {OFFLINE} carefully." in running
    ended = experiments[experiments.index("### Ended") :]
    assert "1 ended:" in ended and f"tested: `{BOTH}`" in ended and LIVE in ended


def test_a_holdback_and_earlier_experiments_are_labelled(book: Skillbook) -> None:
    earlier = {**EXPERIMENT, "experiment_id": "ex-0000aaaa1111", "decision": "continue"}
    del earlier["earlier"]
    live = {**EXPERIMENT, "kind": "holdback", "decision": "reject_harm", "earlier": [earlier]}
    book.skills[BOTH] = replace(book.skills[BOTH], experiment=live)
    both = _entry(skillbook_markdown(book), BOTH)
    assert "  - Holdback (live traffic): difference +10.9 points" in both
    assert "4 looks: harmful" in both
    assert "  - Earlier experiment (live traffic): " in both
    assert "4 looks: ended without a decision · success 72% vs 61% · `ex-0000aaaa1111`" in both


def test_a_skillbook_without_experiments_prints_nothing_new(book: Skillbook) -> None:
    book.experiments = []
    book.skills = {OFFLINE: book.skills[OFFLINE]}
    text = skillbook_markdown(book)
    assert "Experiment" not in text and "live traffic" not in text
    assert "Held-out" not in text


def _report(book: Skillbook) -> str:
    trajectories = pl.DataFrame(
        {
            "trajectory_id": ["t1", "t2"],
            "source_uri": ["a.jsonl", "a.jsonl"],
            "domain": ["airline", "airline"],
            "task_id": ["k", "k"],
            "agent_name": ["a", "a"],
            "outcome_label": ["success", "failure"],
            "n_steps": [3, 4],
            "termination_reason": ["done", "done"],
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
    units = pl.DataFrame({"trajectory_id": ["t1", "t2"], "success": [True, False]})
    last_run = {
        "at": "2026-01-05T00:00:00Z",
        "run_id": "r1",
        "records_read": 2,
        "quarantined": 0,
        "features_tested": 3,
        "significant": 1,
        "confounded": 0,
        "timings_s": {},
        "not_enough_evidence": [],
    }
    data = ReportData(
        trajectories, pl.DataFrame(), clusters, units, book, Path("-"), last_run=last_run
    )
    return render_report(data)


def _section(html: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', html, re.S)
    assert match, name
    return match.group(1)


def test_report_labels_each_kind_and_tables_the_experiments(book: Skillbook) -> None:
    html = _report(book)
    skills = _section(html, "skills")
    cards = {sid: skills[skills.index(f"<code>{sid}</code>") :] for sid in (BOTH, OFFLINE)}
    first = cards[BOTH][: cards[BOTH].index('<div class="cluster">')]
    assert "<caption>Offline contrast</caption>" in first
    assert f'<span class="kind">Held-out replication:</span> {HELD_OUT}' in first
    assert f'<span class="kind">Experiment (live traffic):</span> {LIVE}' in first
    assert "<caption>Offline contrast</caption>" in cards[OFFLINE]
    assert "live traffic" not in cards[OFFLINE] and "Held-out" not in cards[OFFLINE]
    table = _section(html, "experiments")
    assert "<h2>Prompt experiments</h2>" in table and "1 running, 1 ended" in table
    assert "<td><code>ex-222222222222</code></td><td>running</td>" in table
    assert f"candidate 20% (+ <code>{OFFLINE}</code>)" in table and LIVE in table

    book.experiments = []
    assert "No prompt experiment has run" in _section(_report(book), "experiments")


def test_diff_says_which_kind_of_evidence_moved_each_skill(book: Skillbook) -> None:
    before = replace(
        book.skills[BOTH],
        status="proposed",
        validation=None,
        experiment=None,
        history=book.skills[BOTH].history[:1],
    )
    moved = dict(EVIDENCE, odds_ratio=1.5)
    old = Skillbook(
        {BOTH: before, OFFLINE: replace(book.skills[OFFLINE], evidence=moved)}, version=2
    )
    rejected = replace(
        book.skills[OFFLINE],
        status="rejected",
        experiment={**EXPERIMENT, "experiment_id": "ex-222222222222", "decision": "reject_harm"},
        history=(
            {
                **PROMOTED,
                "action": "reject",
                "to": "rejected",
                "note": "experiment ex-222222222222: reject_harm (difference -0.080)",
            },
        ),
    )
    new = Skillbook({BOTH: book.skills[BOTH], OFFLINE: rejected}, version=3)
    diff = diff_snapshots(Snapshot("old", old, None, None), Snapshot("new", new, None, None))
    text = markdown_summary(diff)
    row = next(line for line in text.splitlines() if line.startswith(f"| Do {BOTH}"))
    assert "| 1.80 [1.15, 2.82] | 0.0310 | Experiment (live traffic) `ex-1a2b3c4d5e6f`: " in row
    assert LIVE in row and "| activated by experiment `ex-1a2b3c4d5e6f`; status" in row
    gone = next(line for line in text.splitlines() if line.startswith(f"| Do {OFFLINE}"))
    assert "| rejected by experiment `ex-222222222222`: harmful;" in gone

    # a skill activated by a learning run says so; with no live-traffic evidence on either
    # side, the table has no live-traffic column
    learned = replace(
        book.skills[OFFLINE],
        status="active",
        history=(
            {
                "at": "2026-01-06T00:00:00Z",
                "actor": "coach",
                "action": "activated",
                "version": 1,
                "from": "proposed",
                "to": "active",
            },
        ),
    )
    newer = Skillbook({OFFLINE: learned}, version=4)
    older = Skillbook({OFFLINE: book.skills[OFFLINE]}, version=3)
    diff = diff_snapshots(Snapshot("a", older, None, None), Snapshot("b", newer, None, None))
    text = markdown_summary(diff)
    row = next(line for line in text.splitlines() if line.startswith(f"| Do {OFFLINE}"))
    assert "live traffic" not in text and "Offline contrast:" not in text
    assert "| 0.0310 | activated by offline contrast; status proposed → active |" in row


def test_skills_show_labels_each_kind(book: Skillbook, tmp_path: Path) -> None:
    save_skillbook(book, tmp_path)
    runner = CliRunner()
    args = ["--skillbook", str(tmp_path)]
    out = runner.invoke(main, ["skills", "show", BOTH[:8], *args], catch_exceptions=False).output
    assert f"offline contrast: {CONTRAST}" in out
    assert f"held-out replication: {HELD_OUT}" in out
    assert f"experiment (live traffic): {LIVE} · success 72% vs 61% · ex-1a2b3c4d5e6f" in out
    assert "  method: mixture SPRT (Johari et al. 2022)" in out
    plain = runner.invoke(main, ["skills", "show", OFFLINE, *args]).output
    assert f"offline contrast: {CONTRAST}" in plain
    assert "live traffic" not in plain and "held-out" not in plain
    shown = json.loads(runner.invoke(main, ["skills", "show", BOTH, *args, "--json"]).output)
    assert shown["experiment"]["decision"] == "promote" and shown["validation"]["verdict"]


def test_hostile_experiment_text_is_escaped(book: Skillbook) -> None:
    namespace = f"domain:{HOSTILE}"
    skill = replace(
        book.skills[OFFLINE],
        namespace=namespace,
        instruction=f"Say {HOSTILE}",
        experiment={**EXPERIMENT, "experiment_id": "ex-222222222222", "decision": HOSTILE},
    )
    running = _experiment("ex-222222222222", "running", OFFLINE, namespace)
    running["arms"][1]["arm"] = HOSTILE
    hostile = Skillbook({OFFLINE: skill}, version=1, experiments=[running])
    text = skillbook_markdown(hostile)
    assert "<script>" not in text and "{{ x }}" not in text
    escaped = r"\<script\>alert(1)\</script\> \{\{ x \}\}"
    experiments = text[text.index("## Experiments") : text.index("## domain:")]
    assert f"- domain:{escaped} · `ex-222222222222`" in experiments
    assert f"under test: `{OFFLINE}` Say {escaped} — difference" in experiments
    assert f"4 looks: {escaped}" in _entry(text, OFFLINE)
    html = _report(hostile)
    assert "<script>" not in html and "{{ x }}" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &#123;&#123; x &#125;&#125;" in html
    empty = Skillbook({}, version=1)
    diff = diff_snapshots(Snapshot("a", empty, None, None), Snapshot("b", hostile, None, None))
    md = markdown_summary(diff)
    assert "<script>" not in md and "{{ x }}" not in md and f"4 looks: {escaped}" in md


def test_diff_shows_a_new_look_at_a_running_experiment(book: Skillbook) -> None:
    earlier_look = {**EXPERIMENT, "looks": 3, "difference": 0.05, "decision": "continue"}
    running = {**EXPERIMENT, "decision": "continue"}
    old = Skillbook({BOTH: replace(book.skills[BOTH], experiment=earlier_look)}, version=3)
    new = Skillbook({BOTH: replace(book.skills[BOTH], experiment=running)}, version=4)
    diff = diff_snapshots(Snapshot("a", old, None, None), Snapshot("b", new, None, None))
    assert [c.fields for c in diff.changed] == [("experiment",)]
    row = next(line for line in markdown_summary(diff).splitlines() if line.startswith("| Do "))
    assert "4 looks: running |" in row
    assert "| new look at experiment `ex-1a2b3c4d5e6f`; difference +5.0 → +10.9 points, " in row
    assert "looks 3 → 4 |" in row

"""A prompt's lessons are ranked by expected impact (support times effect, the experiment's
effect once one decided) and held to a line budget (``max_lessons``); what does not fit is
listed in SKILLBOOK.md, counted in the HTML report and named by ``coach render``, never dropped
silently."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner
from synth import PlantedConfig, generate_planted, write_jsonl

from pipeline.cli import main
from pipeline.config import Config
from pipeline.errors import SettingError
from pipeline.render import PromptBudget, PromptGenerator, impact, over_budget, rank
from pipeline.render.lessons import DEFAULT_MAX_LESSONS
from pipeline.render.report import ReportData, render_report
from pipeline.render.skillbook_md import save_skillbook, skillbook_markdown
from pipeline.skillbook import Skill, Skillbook


def _skill(
    sid: str,
    n_with: int,
    rate_with: float,
    rate_without: float,
    *,
    namespace: str = "domain:x",
    section: str = "pitfalls",
    status: str = "active",
    **kw: Any,
) -> Skill:
    evidence = {
        "n_with": n_with,
        "n_without": 400,
        "rate_with": rate_with,
        "rate_without": rate_without,
        "odds_ratio": 0.5,
        "ci_low": 0.3,
        "ci_high": 0.8,
        "p_value": 0.001,
        "q_value": 0.01,
        "method": "cmh",
        "stratification": "task (10 tasks)",
    }
    base: dict[str, Any] = {
        "id": sid,
        "status": status,
        "section": section,
        "namespace": namespace,
        "instruction": f"Lesson {sid}.",
        "evidence": evidence,
        "source": {"method": "rule", "pattern_id": f"p:{sid}"},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    return Skill(**(base | kw))


def _book(*skills: Skill, **kw: Any) -> Skillbook:
    return Skillbook({s.id: s for s in skills}, **kw)


def _lessons(text: str) -> list[str]:
    return re.findall(r"^- Lesson (sk-\w+)\.$", text, re.M)


# impacts: 100 x 0.30 = 30, 50 x 0.10 = 5, 40 x 0.30 = 12, 60 x 0.20 = 12 (a tie)
BIG = _skill("sk-000000000001", 100, 0.3, 0.6)
SMALL = _skill("sk-000000000002", 50, 0.5, 0.6)
MID_B = _skill("sk-00000000000b", 40, 0.2, 0.5)
MID_A = _skill("sk-00000000000a", 60, 0.4, 0.6)


def test_impact_is_support_times_effect_and_a_decided_experiment_overrides_the_effect() -> None:
    assert impact(BIG) == pytest.approx(30.0)
    assert impact(SMALL) == pytest.approx(5.0)
    decided = _skill("sk-1", 100, 0.3, 0.6, experiment={"decision": "promote", "difference": -0.04})
    assert impact(decided) == pytest.approx(4.0)
    running = _skill("sk-2", 100, 0.3, 0.6, experiment={"decision": "continue", "difference": 0.9})
    assert impact(running) == pytest.approx(30.0)
    no_figures = _skill("sk-3", 100, 0.3, 0.6, evidence={"kind": "failure_cluster", "size": 9})
    assert impact(no_figures) == 0.0
    assert [s.id for s in rank([SMALL, MID_B, BIG, MID_A, no_figures])] == [
        BIG.id,
        MID_A.id,  # ties by id
        MID_B.id,
        SMALL.id,
        no_figures.id,
    ]


def test_a_prompt_orders_its_lessons_by_impact_and_keeps_them_all_when_they_fit() -> None:
    book = _book(SMALL, MID_B, BIG, MID_A)
    (prompt,) = PromptGenerator().run(book, {"domain:x": "Base."})
    assert _lessons(prompt.text) == [BIG.id, MID_A.id, MID_B.id, SMALL.id]
    assert prompt.skill_ids == (BIG.id, MID_A.id, MID_B.id, SMALL.id)
    # the same with no line budget: everything fits either way
    (unlimited,) = PromptGenerator(max_lessons=None).run(book, {"domain:x": "Base."})
    assert unlimited.text == prompt.text
    assert over_budget(book, PromptBudget()) == {}
    assert "Over the prompt budget" not in skillbook_markdown(book)


def test_lessons_over_the_line_budget_are_listed_in_skillbook_md() -> None:
    glob = _skill("sk-00000000000c", 30, 0.5, 0.6, namespace="global")  # impact 3
    book = _book(SMALL, MID_B, BIG, MID_A, glob)
    (prompt, global_prompt) = PromptGenerator(max_lessons=2).run(book, {"domain:x": "Base."})
    assert prompt.namespace == "domain:x" and _lessons(prompt.text) == [BIG.id, MID_A.id]
    assert _lessons(global_prompt.text) == [glob.id]
    text = skillbook_markdown(book, PromptBudget(max_lessons=2))
    section = text[text.index("### Over the prompt budget") :]
    assert "The prompt of domain:x holds at most 2 lessons in 4000 characters" in section
    assert f"- `{MID_B.id}` · impact 12.0 · Lesson {MID_B.id}." in section
    assert f"- `{SMALL.id}` · impact 5.0 · Lesson {SMALL.id}." in section
    assert f"- `{glob.id}` · impact 3.0 · Lesson {glob.id}. (from global)" in section
    assert section.index(MID_B.id) < section.index(SMALL.id) < section.index(glob.id)
    assert BIG.id not in section and MID_A.id not in section
    # the section belongs to its namespace, before the history
    assert text.index("## domain:x") < text.index("### Over the prompt budget")
    assert text.count("### Over the prompt budget") == 1  # the global prompt fits


def test_save_skillbook_writes_the_budget_it_is_given(tmp_path: Path) -> None:
    book = _book(SMALL, MID_B, BIG)
    save_skillbook(book, tmp_path, budget=PromptBudget(max_lessons=1))
    text = (tmp_path / "SKILLBOOK.md").read_text(encoding="utf-8")
    assert "at most 1 lesson in 4000 characters" in text
    assert f"- `{SMALL.id}` · impact 5.0" in text
    save_skillbook(book, tmp_path, budget=PromptBudget(max_lessons=0))
    assert "Over the prompt budget" not in (tmp_path / "SKILLBOOK.md").read_text()


def test_skills_over_the_character_budget_are_listed_too() -> None:
    long = _skill("sk-00000000000d", 200, 0.1, 0.6, instruction="Do this. " * 30)  # first
    book = _book(long, SMALL)
    budget = PromptBudget(max_lessons=None, max_chars=100)
    (prompt,) = PromptGenerator(max_lessons=None, max_chars=100).run(book, {})
    assert prompt.skill_ids == (SMALL.id,)
    assert [s.id for s in over_budget(book, budget)["domain:x"]] == [long.id]
    assert "holds lessons in at most 100 characters" in skillbook_markdown(book, budget)


def test_experiment_arms_carry_the_controls_lessons_plus_the_tested_ones() -> None:
    tested = _skill("sk-00000000000e", 10, 0.5, 0.6, status="proposed")  # impact 1
    experiment = {
        "id": "ex-000000000001",
        "namespace": "domain:x",
        "status": "running",
        "started_at": "2026-01-01T00:00:00Z",
        "share": 0.5,
        "control_skill_ids": [BIG.id, MID_A.id],
        "skill_ids": [tested.id],
        "arms": [
            {"arm": "control", "skill_ids": [], "share": 0.5},
            {"arm": "candidate", "skill_ids": [tested.id], "share": 0.5},
        ],
    }
    book = _book(BIG, MID_A, SMALL, tested, experiments=[experiment])
    control, candidate = PromptGenerator(max_lessons=2).run(book, {"domain:x": "Base."})
    assert control.arm == "control" and control.skill_ids == (BIG.id, MID_A.id)
    assert candidate.arm == "candidate"
    assert _lessons(candidate.text) == [BIG.id, MID_A.id, tested.id]


def _report(book: Skillbook, budget: PromptBudget) -> str:
    trajectories = pl.DataFrame(
        {
            "trajectory_id": ["t1"],
            "source_uri": ["a.jsonl"],
            "domain": ["x"],
            "task_id": ["k"],
            "agent_name": ["a"],
            "outcome_label": ["success"],
            "n_steps": [3],
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
    units = pl.DataFrame({"trajectory_id": ["t1"], "success": [True]})
    last_run = {"at": "2026-01-05T00:00:00Z", "run_id": "r1", "records_read": 1}
    last_run |= {"quarantined": 0, "features_tested": 1, "significant": 1, "confounded": 0}
    last_run |= {"timings_s": {}, "not_enough_evidence": []}
    data = ReportData(
        trajectories, pl.DataFrame(), clusters, units, book, Path("-"), last_run=last_run
    )
    return render_report(data, budget=budget)


def test_the_report_says_how_many_skills_are_over_the_budget() -> None:
    book = _book(SMALL, MID_B, BIG)
    html = _report(book, PromptBudget(max_lessons=1))
    assert "2 active skills over the prompt budget" in html
    assert "a prompt holds at most 1 lesson in 4000 characters" in html
    assert f"<code>domain:x</code> 2 (<code>{MID_B.id}</code> impact 12.0" in html
    assert "over the prompt budget" not in _report(book, PromptBudget())


def test_the_setting_defaults_agree_and_a_negative_budget_is_refused() -> None:
    assert Config().max_lessons == PromptBudget().max_lessons == DEFAULT_MAX_LESSONS == 12
    assert Config().max_prompt_chars == PromptBudget().max_chars
    with pytest.raises(SettingError) as raised:
        Config(max_lessons=-1)
    assert raised.value.setting == "max_lessons"


@pytest.fixture
def saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COACH_CONFIG", raising=False)
    save_skillbook(_book(SMALL, MID_B, BIG), tmp_path / "skillbook")
    return tmp_path


def test_render_takes_max_lessons_and_names_what_is_left_out(saved: Path) -> None:
    result = CliRunner().invoke(main, ["render", "--max-lessons", "1", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["over_budget"] == {
        "domain:x": [{"id": MID_B.id, "impact": 12.0}, {"id": SMALL.id, "impact": 5.0}]
    }
    assert f"domain:x: 2 active skills over the prompt budget: {MID_B.id}, {SMALL.id}" in (
        result.stderr
    )
    assert _lessons((saved / "prompts_out" / "domain-x.md").read_text()) == [BIG.id]
    manifest = json.loads((saved / "prompts_out" / "manifest.json").read_text())
    assert manifest["prompts"]["domain-x.md"]["skill_ids"] == [BIG.id]
    for unlimited in ("none", "0"):
        result = CliRunner().invoke(main, ["render", "--max-lessons", unlimited, "--json", "-q"])
        assert result.exit_code == 0 and json.loads(result.stdout)["over_budget"] == {}
    bad = CliRunner().invoke(main, ["render", "--max-lessons", "-1"])
    assert bad.exit_code == 2 and "--max-lessons" in bad.output


def test_the_settings_file_sets_max_lessons(saved: Path) -> None:
    (saved / "coach.toml").write_text("max-lessons = 2\n")
    result = CliRunner().invoke(main, ["render", "--json", "-q"])
    assert result.exit_code == 0, result.output
    assert [s["id"] for s in json.loads(result.stdout)["over_budget"]["domain:x"]] == [SMALL.id]
    (saved / "coach.toml").write_text('max-lessons = "none"\n')
    result = CliRunner().invoke(main, ["render", "--json", "-q"])
    assert json.loads(result.stdout)["over_budget"] == {}
    (saved / "coach.toml").write_text('max-lessons = "many"\n')
    result = CliRunner().invoke(main, ["render"])
    assert result.exit_code == 2 and "max-lessons" in result.output


def test_learn_ranks_by_impact_and_lists_the_lessons_over_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COACH_CONFIG", raising=False)
    write_jsonl(
        tmp_path / "rules.jsonl", generate_planted(PlantedConfig(n_trajectories=2000, seed=3))
    )
    result = CliRunner().invoke(main, ["learn", "rules.jsonl", "-q", "--max-lessons", "2"])
    assert result.exit_code == 0, result.output
    book = Skillbook.load(tmp_path / "skillbook" / "skillbook.json")
    active = rank(s for s in book.skills.values() if s.status == "active")
    assert len(active) > 2
    manifest = json.loads((tmp_path / "prompts_out" / "manifest.json").read_text())
    (entry,) = [p for p in manifest["prompts"].values()]
    assert entry["skill_ids"] == [s.id for s in active[:2]]
    text = (tmp_path / "skillbook" / "SKILLBOOK.md").read_text(encoding="utf-8")
    section = text[text.index("### Over the prompt budget") :]
    for skill in active[2:]:
        assert f"- `{skill.id}` · impact {impact(skill):.1f} · " in section

"""Skillbook lifecycle: section modes, decisions and their history, rejected skills, drift with
recency weighting, near-duplicates, namespaces in prompts, versions (snapshots, checkout, diff),
format migration, and ACE / AGENTS.md interop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from pipeline.errors import SkillbookError
from pipeline.render import PromptGenerator, agents_md, compose, from_ace, save_skillbook, to_ace
from pipeline.skillbook import (
    FORMAT_VERSION,
    Candidate,
    MergePolicy,
    Skill,
    Skillbook,
    checkout,
    diff,
    load_ref,
    material_change,
    near_duplicate,
    skill_id,
    snapshot_versions,
    weighted_effect,
)

FIXTURES = Path(__file__).parent / "fixtures" / "skillbooks"


def _cand(
    pattern: str,
    *,
    odds: float = 0.2,
    low: float | None = None,
    high: float | None = None,
    significant: bool = True,
    section: str = "pitfalls",
    namespace: str = "domain:x",
    instruction: str | None = None,
) -> Candidate:
    low = odds / 2 if low is None else low
    high = odds * 1.5 if high is None else high
    return Candidate(
        id=skill_id(namespace, pattern),
        pattern_id=pattern,
        namespace=namespace,
        section=section,
        instruction=instruction or f"Avoid {pattern}.",
        significant=significant,
        evidence={
            "odds_ratio": odds,
            "ci_low": low,
            "ci_high": high,
            "n_with": 20,
            "n_without": 80,
            "direction": "harmful" if odds < 1 else "helpful",
        },
    )


def _run(n: int) -> dict[str, str]:
    return {"run_id": f"r{n}", "inputs_sha256": f"inputs-{n}"}


def test_section_modes_auto_propose_off_and_improvements_never_auto() -> None:
    book = Skillbook()
    policy = MergePolicy(mode="auto", section_modes={"tool-usage": "propose", "escalation": "off"})
    book.merge(
        [
            _cand("a", section="pitfalls"),
            _cand("b", section="tool-usage"),
            _cand("c", section="escalation"),
        ],
        policy=policy,
        now="2026-01-01T00:00:00Z",
    )
    status = {s.source["pattern_id"]: s.status for s in book.skills.values()}
    assert status == {"a": "active", "b": "proposed"}  # c's section is off: not learned
    assert MergePolicy(mode="auto").mode_of("improvements") == "propose"
    with pytest.raises(ValueError, match="mode must be one of"):
        MergePolicy(section_modes={"pitfalls": "sometimes"})


def test_decisions_are_recorded_with_time_actor_and_note() -> None:
    book = Skillbook()
    book.merge([_cand("a"), _cand("b")], mode="propose", now="2026-01-01T00:00:00Z")
    a, b = skill_id("domain:x", "a"), skill_id("domain:x", "b")
    book.decide(a[:7], "approve", actor="ada", now="2026-01-02T00:00:00Z", note="fits policy")
    book.decide(b, "reject", actor="bob", now="2026-01-03T00:00:00Z", note="confounded")
    book.decide(a, "edit", actor="ada", now="2026-01-04T00:00:00Z", text="Never do a.")
    assert book.version == 4
    assert book.skills[a].status == "active" and book.skills[b].status == "rejected"
    entry = book.skills[b].history[-1]
    assert (entry["actor"], entry["action"], entry["note"]) == ("bob", "reject", "confounded")
    assert entry["from"] == "proposed" and entry["figures"]["odds_ratio"] == 0.2
    assert [h["action"] for h in book.history] == ["run", "approve", "reject", "edit"]
    assert book.history[-1]["skill_id"] == a and book.history[-1]["actor"] == "ada"
    # The edit survives later runs, and is marked.
    book.merge([_cand("a", odds=0.18), _cand("b")], mode="propose", now="2026-01-05T00:00:00Z")
    assert book.skills[a].instruction == "Never do a."
    assert book.skills[a].source["edited_by"] == "ada"
    assert book.skills[a].evidence["odds_ratio"] == 0.18
    with pytest.raises(SkillbookError, match="cannot retire"):
        book.decide(b, "retire", actor="ada", now="t")
    with pytest.raises(SkillbookError, match="no skill"):
        book.decide("sk-nope", "approve", actor="ada", now="t")


def test_rejected_skill_returns_only_on_material_change() -> None:
    book = Skillbook()
    book.merge([_cand("a", odds=0.2, low=0.1, high=0.4)], mode="propose", now="t1")
    sid = skill_id("domain:x", "a")
    book.decide(sid, "reject", actor="ada", now="t2")
    # Same direction, overlapping interval: stays rejected.
    book.merge([_cand("a", odds=0.3, low=0.15, high=0.6)], mode="propose", now="t3")
    assert book.skills[sid].status == "rejected"
    # Interval no longer overlaps the one at rejection: proposed again, with the reason.
    result = book.merge([_cand("a", odds=0.02, low=0.01, high=0.05)], mode="propose", now="t4")
    assert result.reproposed == [sid] and book.skills[sid].status == "proposed"
    assert "no longer overlaps" in book.skills[sid].history[-1]["note"]


def test_material_change_definition() -> None:
    at = {"direction": "harmful", "ci_low": 0.1, "ci_high": 0.4}
    assert material_change(at, {"direction": "helpful", "ci_low": 1.2, "ci_high": 3.0})
    assert material_change(at, {"direction": "harmful", "ci_low": 0.5, "ci_high": 0.9})
    assert material_change(at, {"direction": "harmful", "ci_low": 0.3, "ci_high": 0.9}) is None
    assert material_change(None, {"direction": "helpful"}) is None


def test_weighted_effect_fades_old_evidence() -> None:
    old = {"at": "2026-01-01T00:00:00Z", "log_or": math.log(0.2), "se": 0.3}
    new = {"at": "2026-03-02T00:00:00Z", "log_or": math.log(1.5), "se": 0.3}
    early = weighted_effect([old, new], now="2026-03-02T00:00:00Z", half_life_days=1000)
    fast = weighted_effect([old, new], now="2026-03-02T00:00:00Z", half_life_days=10)
    assert early is not None and fast is not None

    # Equal precision: with a long half-life both count about equally; with 10 days the
    # 60-day-old observation weighs 2**-6 of the new one.
    def expected(weight_of_old: float) -> float:
        return math.exp((weight_of_old * math.log(0.2) + math.log(1.5)) / (1 + weight_of_old))

    assert early.odds_ratio == pytest.approx(expected(0.5 ** (60 / 1000)), rel=1e-9)
    assert fast.odds_ratio == pytest.approx(expected(0.5**6), rel=1e-9)
    assert fast.odds_ratio > 1.3 > 0.6 > early.odds_ratio
    assert fast.se == pytest.approx(0.3)  # no gain in precision from repeated runs


def test_drift_retires_in_auto_and_flags_in_propose() -> None:
    def run_twice(mode: str) -> Skill:
        book = Skillbook()
        policy = MergePolicy(mode=mode, half_life_days=7)
        book.merge(
            [_cand("a", odds=0.3, low=0.15, high=0.6)],
            policy=policy,
            now="2026-01-01T00:00:00Z",
            run=_run(1),
        )
        sid = skill_id("domain:x", "a")
        if mode == "propose":
            book.decide(sid, "approve", actor="ada", now="2026-01-02T00:00:00Z")
        # 60 days later the effect has reversed (not a candidate any more: the harmful template
        # does not fire; the tested figures say helpful).
        reversed_ev = {"odds_ratio": 2.5, "ci_low": 1.5, "ci_high": 4.2, "direction": "helpful"}
        book.merge(
            [],
            policy=policy,
            now="2026-03-02T00:00:00Z",
            tested=[(sid, "a", reversed_ev)],
            run=_run(2),
        )
        return book.skills[sid]

    retired = run_twice("auto")
    assert retired.status == "retired" and retired.flags == ("effect reversed",)
    entry = retired.history[-1]
    assert entry["action"] == "retired" and entry["figures"]["odds_ratio"] > 1
    assert entry["figures"]["half_life_days"] == 7
    flagged = run_twice("propose")
    assert flagged.status == "active" and flagged.flags == ("effect reversed",)


def test_one_weak_run_does_not_retire_a_well_supported_skill() -> None:
    book = Skillbook()
    policy = MergePolicy(half_life_days=30)
    sid = skill_id("domain:x", "a")
    for day in (1, 2, 3):
        book.merge(
            [_cand("a", odds=0.2, low=0.1, high=0.4)],
            policy=policy,
            now=f"2026-01-0{day}T00:00:00Z",
            run=_run(day),
        )
    weak = {"odds_ratio": 0.7, "ci_low": 0.4, "ci_high": 1.2, "direction": "harmful"}
    book.merge(
        [], policy=policy, now="2026-01-04T00:00:00Z", tested=[(sid, "a", weak)], run=_run(4)
    )
    skill = book.skills[sid]
    assert skill.status == "active" and skill.flags == ("not significant in the latest run",)
    assert len(skill.observations) == 4


def test_near_duplicates_are_merged_keeping_both_sources() -> None:
    book = Skillbook()
    book.merge(
        [
            _cand(
                "unconfirmed_write:book", instruction="Before calling book, get an explicit yes."
            ),
            _cand("tool_order:x->book", instruction="Call x before calling book."),
            _cand("tool_order:y->book", instruction="Call y before calling book."),
        ],
        now="t",
    )
    imported = Skill(
        id="sk-imported0001",
        status="proposed",
        section="pitfalls",
        namespace="domain:x",
        instruction="Before calling book, get an explicit YES.",
        evidence={},
        source={"method": "import", "pattern_id": None},
        created_at="t",
        updated_at="t",
    )
    book.add_skills([imported], actor="ada", now="t2", note=None)
    result = book.merge([], now="t3")
    kept = book.skills[skill_id("domain:x", "unconfirmed_write:book")]
    gone = book.skills["sk-imported0001"]
    assert gone.status == "retired" and gone.source["merged_into"] == kept.id
    assert kept.source["merged_from"][0]["instruction"] == imported.instruction
    assert set(result.merged) == {kept.id, gone.id}
    # neighbouring tool orders name different tools: not duplicates
    assert book.skills[skill_id("domain:x", "tool_order:x->book")].status == "active"
    assert (
        near_duplicate(
            {"instruction": "Before calling book_trip, get a yes.", "pattern_id": "u:book_trip"},
            {
                "instruction": "Before calling cancel_trip, get a yes.",
                "pattern_id": "u:cancel_trip",
            },
            threshold=80,
        )
        is None
    )


def test_improvement_is_proposed_after_a_skill_holds_on_several_input_sets() -> None:
    book = Skillbook()
    for n in (1, 2, 3):
        book.merge([_cand("a")], policy=MergePolicy(graduate_after=3), now=f"t{n}", run=_run(n))
    improvements = [s for s in book.skills.values() if s.section == "improvements"]
    assert len(improvements) == 1 and improvements[0].status == "proposed"
    assert improvements[0].source["from_skill"] == skill_id("domain:x", "a")
    # improvements never enter a prompt, even when approved
    book.decide(improvements[0].id, "approve", actor="ada", now="t4")
    (prompt,) = PromptGenerator().run(book, {})
    assert improvements[0].id not in prompt.skill_ids


def test_namespaces_compose_with_precedence_and_never_leak_between_users() -> None:
    book = Skillbook()
    book.merge(
        [
            _cand("p", namespace="global", instruction="Global p."),
            _cand("p", namespace="domain:air", instruction="Domain p."),
            _cand("q", namespace="agent:a1", instruction="Agent q."),
            _cand("r", namespace="user:ada", instruction="Ada r."),
            _cand("s", namespace="user:bob", instruction="Bob s."),
        ],
        now="t",
    )
    prompts = {p.namespace: p for p in PromptGenerator().run(book, {"domain:air": "Base."})}
    assert "Bob s." not in prompts["user:ada"].text and "Ada r." in prompts["user:ada"].text
    assert "Ada r." not in prompts["user:bob"].text
    assert "Ada r." not in prompts["domain:air"].text and "Domain p." in prompts["domain:air"].text
    assert "Global p." not in prompts["domain:air"].text  # same pattern: domain wins
    full = PromptGenerator().run_for(book, "Base.", domain="air", agent="a1", user="ada")
    assert full.namespace == "user:ada"
    assert {"Domain p.", "Agent q.", "Ada r."} <= {
        line[2:] for line in full.text.splitlines() if line.startswith("- ")
    }
    assert "Bob s." not in full.text and "Global p." not in full.text
    order = [s.namespace for s in compose(list(book.skills.values()), ["user:ada", "agent:a1"])]
    assert order == ["user:ada", "agent:a1", "global"]


def test_snapshots_checkout_and_diff(tmp_path: Path) -> None:
    book = Skillbook()
    book.merge([_cand("a")], mode="propose", now="t1")
    save_skillbook(book, tmp_path)
    book.decide(skill_id("domain:x", "a"), "approve", actor="ada", now="t2")
    save_skillbook(book, tmp_path)
    book.merge([_cand("a"), _cand("b")], now="t3")
    save_skillbook(book, tmp_path)
    assert snapshot_versions(tmp_path) == [1, 2, 3]
    v1 = load_ref(tmp_path, "v1")
    changes = diff(v1, book)
    assert list(changes["added"]) == [skill_id("domain:x", "b")]
    assert changes["changed"][skill_id("domain:x", "a")]["status"] == ["proposed", "active"]
    result = checkout(book, v1, restored=1, actor="ada", now="t4")
    assert book.version == 4 and len(result.decided) == 2
    assert book.skills[skill_id("domain:x", "a")].status == "proposed"
    b = book.skills[skill_id("domain:x", "b")]
    assert b.status == "retired" and b.flags == ("not in v1",)  # nothing deleted
    assert book.history[-1]["action"] == "checkout" and book.history[-1]["restored"] == 1
    with pytest.raises(SkillbookError, match="not kept"):
        load_ref(tmp_path, "v9")


def test_format_1_file_is_migrated(tmp_path: Path) -> None:
    path = FIXTURES / "skillbook_v1.json"
    raw = json.loads(path.read_text())
    assert raw["format_version"] == 1
    book = Skillbook.load(path)
    assert book.version == raw["version"] and len(book.skills) == len(raw["skills"])
    for skill in book.skills.values():
        assert skill.history[0]["action"] == "added"
        assert skill.direction == "harmful" and len(skill.observations) == 1
    assert book.history[0]["action"] == "run" and book.history[0]["changes"]["retired"] == []
    save_skillbook(book, tmp_path)
    again = json.loads((tmp_path / "skillbook.json").read_text())
    assert again["format_version"] == FORMAT_VERSION == 3
    # the migrated Skillbook merges like a new one: same candidates change nothing
    sid = sorted(book.skills)[0]
    skill = book.skills[sid]
    cand = Candidate(
        sid,
        skill.source["pattern_id"],
        skill.namespace,
        skill.section,
        skill.instruction,
        True,
        skill.evidence,
    )
    assert not book.merge([cand], now="2026-11-02T00:00:00Z").updated


def test_record_validation_keeps_version() -> None:
    book = Skillbook()
    book.merge([_cand("a")], now="t1")
    skill = book.record_validation(
        skill_id("domain:x", "a"), {"held": True, "odds_ratio": 0.3}, "t2"
    )
    assert skill.validation == {"held": True, "odds_ratio": 0.3, "at": "t2"}
    assert skill.history[-1]["action"] == "validation" and book.version == 1


def test_ace_round_trip_and_foreign_import(tmp_path: Path) -> None:
    book = Skillbook()
    book.merge([_cand("a"), _cand("b", significant=False)], now="t1")
    path = tmp_path / "ace.json"
    path.write_text(json.dumps(to_ace(book)))
    data = json.loads(path.read_text())
    assert set(data) == {"skills", "sections", "next_id", "similarity_decisions"}
    first = data["skills"][skill_id("domain:x", "a")]
    assert {"id", "section", "content", "justification", "evidence", "sources"} <= set(first)
    assert first["status"] == "active"
    back = {s.id: s for s in from_ace(path)}
    assert back == book.skills
    foreign = tmp_path / "foreign.json"
    foreign.write_text(
        json.dumps(
            {
                "skills": {
                    "math-00001": {
                        "id": "math-00001",
                        "section": "Math Strategies",
                        "content": "Break problems down.",
                        "justification": "worked",
                        "evidence": "3 cases",
                        "helpful": 5,
                        "harmful": 0,
                        "neutral": 1,
                        "sources": [{"trace": "t1"}],
                    }
                }
            }
        )
    )
    (skill,) = from_ace(foreign, namespace="agent:solver")
    assert skill.status == "proposed" and skill.section == "math-strategies"
    assert skill.namespace == "agent:solver" and skill.source["justification"] == "worked"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"skills": [{"id": "x"}]}))
    with pytest.raises(SkillbookError, match="bad.json: skill 0"):
        from_ace(bad)


def test_agents_md_lists_active_skills_only() -> None:
    book = Skillbook()
    book.merge([_cand("a"), _cand("b", significant=False)], now="t1")
    text = agents_md(book)
    assert "- Avoid a. (odds ratio 0.20, 20 runs with / 80 without)" in text
    assert "Avoid b." not in text and "### domain:x" in text


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from("abcdefgh"), min_size=0, max_size=5, unique=True),
        min_size=1,
        max_size=4,
    ),
    st.randoms(use_true_random=False),
)
def test_merge_of_several_files_is_idempotent_and_order_independent(
    files: list[list[str]], rnd: object
) -> None:
    """Candidates from several input files, merged in any order of files (and of candidates
    within them), give the same Skillbook; merging again changes nothing."""
    batches = [[_cand(p, odds=0.1 + 0.1 * "abcdefgh".index(p)) for p in f] for f in files]
    order = list(range(len(batches)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    one, two = Skillbook(), Skillbook()
    one.merge([c for b in batches for c in b], now="t")
    two.merge([c for i in order for c in reversed(batches[i])], now="t")
    assert one.to_dict() == two.to_dict()
    again = one.merge([c for b in batches for c in b], now="later")
    assert not again.changed and one.content() == two.content()


def test_atomic_write_gives_ordinary_file_permissions(tmp_path: Path) -> None:
    """Files coach writes (prompts, Skillbook, report) are readable like any new file, not 0600."""
    import os
    import stat

    from pipeline.fileio import atomic_write

    umask = os.umask(0o022)
    try:
        fresh = tmp_path / "prompt.md"
        atomic_write(fresh, "x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        fresh.chmod(0o640)
        atomic_write(fresh, "y")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
    finally:
        os.umask(umask)

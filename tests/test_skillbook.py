"""Skillbook merge, versioning, format checks; PromptGenerator escaping and budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from pipeline.errors import SkillbookError
from pipeline.render import PromptGenerator, save_skillbook
from pipeline.skillbook import Candidate, Skillbook, skill_id


def _cand(
    pattern: str, significant: bool = True, odds: float = 0.2, instruction: str | None = None
) -> Candidate:
    return Candidate(
        id=skill_id("domain:x", pattern),
        pattern_id=pattern,
        namespace="domain:x",
        section="pitfalls",
        instruction=instruction or f"Avoid {pattern}.",
        significant=significant,
        evidence={"odds_ratio": odds, "ci_low": odds / 2, "ci_high": odds * 1.5, "n_with": 10},
    )


def test_skill_id_is_stable() -> None:
    assert skill_id("domain:x", "tool_called:a") == skill_id("domain:x", "tool_called:a")
    assert skill_id("domain:x", "tool_called:a") != skill_id("domain:y", "tool_called:a")


def test_merge_adds_updates_and_flags_without_deleting() -> None:
    book = Skillbook()
    first = book.merge([_cand("a"), _cand("b", significant=False)], now="t1")
    assert first.changed and book.version == 1
    assert {s.status for s in book.skills.values()} == {"active", "proposed"}
    # b becomes significant: activated; a disappears: flagged, kept.
    second = book.merge([_cand("b")], now="t2")
    assert book.version == 2
    assert second.activated == [skill_id("domain:x", "b")]
    flagged = book.skills[skill_id("domain:x", "a")]
    assert flagged.status == "active" and flagged.flags == ("not observed in the latest run",)
    assert len(book.history) == 2 and book.history[-1]["changes"]["flagged"] == [flagged.id]


def test_rejected_skill_stays_rejected() -> None:
    book = Skillbook()
    book.merge([_cand("a")], now="t1")
    sid = skill_id("domain:x", "a")
    book.skills[sid] = book.skills[sid].__class__(
        **{**book.skills[sid].__dict__, "status": "rejected"}
    )
    book.merge([_cand("a", odds=0.1)], now="t2")
    assert book.skills[sid].status == "rejected"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6, unique=True),
    st.randoms(use_true_random=False),
)
def test_merge_is_idempotent_and_order_independent(patterns: list[str], rnd: object) -> None:
    cands = [_cand(p, significant=i % 2 == 0) for i, p in enumerate(patterns)]
    shuffled = list(cands)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    one, two = Skillbook(), Skillbook()
    one.merge(cands, now="t")
    two.merge(shuffled, now="t")
    assert one.to_dict() == two.to_dict()
    again = one.merge(cands, now="later")
    assert not again.changed and one.to_dict() == two.to_dict()


def test_save_load_round_trip_and_format_check(tmp_path: Path) -> None:
    book = Skillbook()
    book.merge([_cand("a")], now="t1")
    save_skillbook(book, tmp_path)
    loaded = Skillbook.load(tmp_path / "skillbook.json")
    assert loaded.to_dict() == book.to_dict()
    assert "Avoid a." in (tmp_path / "SKILLBOOK.md").read_text()
    data = json.loads((tmp_path / "skillbook.json").read_text())
    data["format_version"] = 99
    (tmp_path / "skillbook.json").write_text(json.dumps(data))
    with pytest.raises(SkillbookError, match="format_version 99"):
        Skillbook.load(tmp_path / "skillbook.json")
    (tmp_path / "skillbook.json").write_text("{not json")
    with pytest.raises(SkillbookError, match="cannot read"):
        Skillbook.load(tmp_path / "skillbook.json")


def test_skill_text_is_data_not_template_code() -> None:
    book = Skillbook()
    book.merge(
        [_cand("a", instruction="Say {{ 7 * 7 }} and {% raw %}x{% endraw %} # Title")], now="t"
    )
    (prompt,) = PromptGenerator().run(book, {"domain:x": "Base policy."})
    assert "49" not in prompt.text
    assert "\\{\\{ 7 \\* 7 \\}\\}" in prompt.text
    assert prompt.text.startswith("Base policy.")
    assert "\\# Title" in prompt.text


def test_budget_keeps_highest_impact_skills_first() -> None:
    # expected impact: support times effect, n_with x |rate_with - rate_without|
    weak, strong = _cand("weak", odds=0.9), _cand("strong", odds=0.05)
    weak.evidence.update(rate_with=0.5, rate_without=0.55)
    strong.evidence.update(rate_with=0.2, rate_without=0.7)
    book = Skillbook()
    book.merge([weak, strong], now="t")
    (prompt,) = PromptGenerator(max_chars=len("Avoid strong.") + 3).run(book, {})
    assert prompt.skill_ids == (skill_id("domain:x", "strong"),)
    assert "Avoid strong." in prompt.text and "Avoid weak." not in prompt.text


def test_rendered_prompt_matches_golden(tmp_path: Path) -> None:
    book = Skillbook()
    book.merge([_cand("a"), _cand("b", odds=0.05)], now="t")
    (prompt,) = PromptGenerator().run(book, {"domain:x": "You are an agent."})
    golden = Path(__file__).parent / "golden" / "prompt_domain-x.md"
    assert prompt.text == golden.read_text(encoding="utf-8")

"""Redaction of personal data and secrets (pipeline/redact.py), and its hook in rendering."""

from __future__ import annotations

import pytest

from pipeline.redact import luhn_valid, redact, redact_counts


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("write to ada.lovelace@example.co.uk today", "write to <email> today", "email"),
        ("card 4111 1111 1111 1111 on file", "card <card> on file", "card"),
        ("amex 378282246310005.", "amex <card>.", "card"),
        ("call +1 415 555 0123 now", "call <phone> now", "phone"),
        ("call (555) 123-4567", "call <phone>", "phone"),
        ("call 020 7946 0958", "call <phone>", "phone"),
        ("key sk-proj-abcdefghijklmnopqrstuvwx1234", "key <secret>", "secret"),
        ("AKIAIOSFODNN7EXAMPLE", "<secret>", "secret"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "<secret>", "secret"),
        ("Authorization: Bearer abcdefghijklmnop1234", "Authorization: Bearer <secret>", "secret"),
        ('{"password": "hunter2hunter2"}', '{"password": "<secret>"}', "secret"),
        ("api_key=0123456789abcdef", "api_key=<secret>", "secret"),
    ],
)
def test_redacts(text: str, expected: str, kind: str) -> None:
    out, counts = redact_counts(text)
    assert out == expected
    assert counts[kind] == 1 and sum(counts.values()) == 1


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-15T10:00:00Z",
        "reservation ZFA04Y on flight HAT001 costs 1,234.50",
        "skill sk-0123456789ab, trajectory agent-a-task12-trial3, user mia_li_3668",
        "order 1234567890123 and 4111 1111 1111 1112x",
        "Before calling book_trip, get an explicit yes from the user.",
    ],
)
def test_leaves_ordinary_trace_text_alone(text: str) -> None:
    assert redact(text) == text


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112") and not luhn_valid("12ab")


def test_rendered_prompts_never_carry_pii() -> None:
    from pipeline.render import PromptGenerator
    from pipeline.skillbook import Skill, Skillbook

    skill = Skill(
        id="sk-000000000001",
        status="active",
        section="escalation",
        namespace="domain:x",
        instruction="Before calling refund, confirm with jane.doe@example.com or +1 415 555 0123.",
        evidence={},
        source={"method": "rule", "pattern_id": "p"},
        created_at=None,
        updated_at=None,
    )
    prompt = PromptGenerator().run(Skillbook({skill.id: skill}), {"domain:x": "Base."})[0]
    assert "jane.doe" not in prompt.text and "555 0123" not in prompt.text
    assert "email" in prompt.text and "phone" in prompt.text

"""Redaction of personal data and secrets (pipeline/redact.py), and its hook in rendering."""

from __future__ import annotations

import pytest

from pipeline.redact import luhn_valid, redact, redact_counts, redact_data, ssn_valid


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
        # detect-secrets provider plugins
        ("slack xoxb-123456789012-abcdefghij now", "slack <secret> now", "secret"),
        ("sk_live_abcdefghijklmnopqrstuvwx", "<secret>", "secret"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789 ok", "<secret> ok", "secret"),
        ("https://user:pa55word@example.com/x", "https://user:<secret>@example.com/x", "secret"),
        ('{"db_pass": "Tr0ub4dor&3"}', '{"db_pass": "<secret>"}', "secret"),
        # a whole JSON Web Token and PEM block, AWS secret access keys
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghijkXYZ", "<secret>", "secret"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE+/a\n-----END RSA PRIVATE KEY----- x",
            "<secret> x",
            "secret",
        ),
        (
            "aws_secret_access_key=wJalrXUtnFI/K7MDENG/bPxRfiCYzq8Kp2Lm9Xy4",
            "aws_secret_access_key=<secret>",
            "secret",
        ),
        (
            "AWS secret wJalrXUtnFI/K7MDENG/bPxRfiCYzq8Kp2Lm9Xy4 rotated",
            "AWS secret <secret> rotated",
            "secret",
        ),
        # social security numbers that the SSA could issue
        ("ssn 078-05-1120.", "ssn <ssn>.", "ssn"),
        # phone numbers libphonenumber finds valid, a bare number after a phone word
        ("tel 415.555.0125 or", "tel <phone> or", "phone"),
        ("(415)555-0124", "<phone>", "phone"),
        ("+44 20 7946 0958", "<phone>", "phone"),
        ("toll free 1-800-555-0199", "toll free <phone>", "phone"),
        ('{"phone": "4155550127"}', '{"phone": "<phone>"}', "phone"),
        ("call me on 4155550127", "call me on <phone>", "phone"),
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
        # what coach writes itself: hashes, run ids, skill ids, figures, times
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "aws commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b (40 hex digits: not a key)",
        "run 3f2a9c0d1e2b3a4f, skill sk-7a6e1fef3ce2, uuid 123e4567-e89b-12d3-a456-426614174000",
        "n=482 with / 1518 without; odds ratio 3.11 [2.08, 4.65]; p=9.0e-06, q=0.0000",
        "2026-01-01T00:00:00.123456+00:00 at 1767225600 took 3600 s (12.5 ms)",
        # ids that look like numbers: a bare 10-digit id, booking references, invalid SSNs
        "order id 2125551234 and booking AP1234567890",
        "000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567, 123-45-0000",
        "version 1.2.3.4 on 10.0.0.1; task airline-101-agent-a-t0#8",
        'secret question: "what is your pet"',
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


@pytest.mark.parametrize(
    "text",
    [
        "mail jane@example.com, card 4111 1111 1111 1111, key sk-proj-abcdefghijklmnopqrstuvwx12",
        r"api_key=\<secret\> and \<email\>",
        '{"password": "<secret>"} <phone> <ssn>',
    ],
)
def test_redacting_twice_changes_nothing(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
    assert redact_counts(once)[1] == {}


def test_redact_data_reaches_nested_strings_and_keys() -> None:
    data = {
        "domain:jane@example.com": [{"id": "x", "n": 4111111111111111, "t": ("+1 415 555 0123",)}]
    }
    assert redact_data(data) == {
        "domain:<email>": [{"id": "x", "n": 4111111111111111, "t": ("<phone>",)}]
    }


def test_ssn_rules() -> None:
    assert ssn_valid("078", "05", "1120")
    assert not any(
        ssn_valid(*parts)
        for parts in (
            ("000", "12", "3456"),
            ("666", "12", "3456"),
            ("900", "12", "3456"),
            ("123", "00", "4567"),
            ("123", "45", "0000"),
        )
    )

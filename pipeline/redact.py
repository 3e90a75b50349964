"""Redact personal data and secrets from text before it leaves coach or reaches a prompt.

Trace text is untrusted and may carry customers' data. :func:`redact` replaces, in this order:

- secrets: API keys and tokens of common providers (OpenAI ``sk-...``, Anthropic ``sk-ant-...``,
  AWS access key ids ``AKIA...``, GitHub ``ghp_...``/``github_pat_...``, Slack ``xox?-...``,
  Google ``AIza...``, Stripe ``sk_live_...``/``rk_live_...``), JSON Web Tokens, ``Bearer``
  tokens, and the value of ``api_key=`` / ``token:`` / ``password=`` / ``secret=`` assignments
  -> ``<secret>``;
- e-mail addresses -> ``<email>``;
- payment card numbers: 13 to 19 digits, optionally grouped by spaces or dashes, that pass the
  Luhn checksum (ISO/IEC 7812-1, annex B) -> ``<card>``;
- phone numbers: an international ``+`` number of 8 to 15 digits (ITU-T E.164), or a national
  number of 9 to 12 digits written in groups (``(555) 123-4567``, ``020 7946 0958``) ->
  ``<phone>``.

The patterns favour precision on trace text: dates (``2024-05-15``), ISO timestamps, ids without
separators and short numbers are left alone. A number that looks like a card but fails the Luhn
check is not a card (it may still be redacted as a phone number when written like one).
"""

from __future__ import annotations

import re
from collections import Counter

__all__ = ["REDACTION_TOKENS", "luhn_valid", "redact", "redact_counts"]

REDACTION_TOKENS = ("<secret>", "<email>", "<card>", "<phone>")

_SECRET = re.compile(
    r"""
    \bsk-ant-[A-Za-z0-9_-]{20,}
    | \bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}
    | \b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}
    | \bAKIA[0-9A-Z]{16}\b
    | \bgh[pousr]_[A-Za-z0-9]{30,}
    | \bgithub_pat_[A-Za-z0-9_]{30,}
    | \bxox[abposr]-[A-Za-z0-9-]{10,}
    | \bAIza[0-9A-Za-z_-]{35}
    | \beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}
    | (?<=\bBearer\s)[A-Za-z0-9._~+/=-]{16,}
    """,
    re.VERBOSE,
)
# key = value / "key": "value" assignments of credentials; only the value is replaced.
_ASSIGNMENT = re.compile(
    r"""(?ix)
    (\b(?:api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|client[_-]?secret|password|passwd)
     ["']?\s*[:=]\s*["']?)
    (?!<secret>)([^\s"',;]{6,})
    """
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"""
    (?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)   # +44 20 7946 0958, +14155550123
    | (?<![\w(])\(\d{2,4}\)[ .-]?\d{3,4}[ .-]\d{3,4}(?!\w)  # (555) 123-4567
    | (?<![\w.-])(?<!\d\ )\d{3,4}[ .-]\d{3,4}[ .-]\d{3,4}(?![\w.-])(?!\ \d)  # 555-123-4567
    """,
    re.VERBOSE,
)


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum (ISO/IEC 7812-1, annex B)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "<card>" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if match.group(0).startswith("+"):
        return "<phone>" if 8 <= len(digits) <= 15 else match.group(0)
    return "<phone>" if 9 <= len(digits) <= 12 else match.group(0)


def redact_counts(text: str) -> tuple[str, Counter[str]]:
    """``text`` with secrets, e-mail addresses, card numbers and phone numbers replaced (see the
    module docstring), and how many of each were replaced (keys: secret, email, card, phone)."""
    counts: Counter[str] = Counter()

    def sub(pattern: re.Pattern[str], repl: object, kind: str, value: str) -> str:
        def count(match: re.Match[str]) -> str:
            out = repl(match) if callable(repl) else str(repl)
            if out != match.group(0):
                counts[kind] += 1
            return out

        return pattern.sub(count, value)

    text = sub(_SECRET, "<secret>", "secret", text)
    text = sub(_ASSIGNMENT, lambda m: m.group(1) + "<secret>", "secret", text)
    text = sub(_EMAIL, "<email>", "email", text)
    text = sub(_CARD, _card, "card", text)
    text = sub(_PHONE, _phone, "phone", text)
    return text, counts


def redact(text: str) -> str:
    """``text`` with secrets, e-mail addresses, card numbers and phone numbers replaced by
    ``<secret>``, ``<email>``, ``<card>`` and ``<phone>``; other text is unchanged."""
    return redact_counts(text)[0]

"""Redact personal data and secrets from text before it leaves coach or reaches a prompt.

Trace text is untrusted and may carry customers' data. :func:`redact` replaces, in this order:

1. secrets -> ``<secret>``:

   - AWS secret access keys: a 40-character base64 token (mixed case, with a digit, ``/`` or
     ``+``; not hexadecimal) within 256 characters of ``aws`` or an AWS access key id;
   - the keys and tokens of the provider plugins of detect-secrets
     (https://github.com/Yelp/detect-secrets, the regex-based plugins listed in
     :data:`SECRET_PLUGINS`: AWS access key ids, GitHub, GitLab, Slack, Stripe, Twilio, SendGrid,
     npm, PyPI, JSON Web Tokens, private key headers, basic-auth passwords in URLs, ...) and the
     quoted values of its keyword plugin (``password = "..."``, ``"api_key": "..."``);
   - what those do not cover: OpenAI and Anthropic keys (``sk-``, ``sk-proj-``, ``sk-ant-`` +
     20 or more characters), Stripe test and publishable keys, GitHub fine-grained tokens
     (``github_pat_``), Google API keys (``AIza...``), whole JSON Web Tokens, ``Bearer``
     tokens, PEM private key blocks, and unquoted credential assignments (``api_key=...``,
     ``token: ...``, ``password=...``, ``secret_access_key=...``; the value only);

   The high-entropy plugins of detect-secrets are not used: coach's outputs carry SHA-256
   hashes, run ids and skill ids that must survive.
2. e-mail addresses -> ``<email>``;
3. US social security numbers written ``AAA-GG-SSSS`` that the SSA could issue (area not 000,
   666 or 900-999, group not 00, serial not 0000) -> ``<ssn>``;
4. payment card numbers: 13 to 19 digits, optionally grouped by spaces or dashes, that pass the
   Luhn checksum (ISO/IEC 7812-1, annex B) -> ``<card>``;
5. phone numbers -> ``<phone>``: those the phonenumbers library (Google's libphonenumber,
   https://github.com/daviddrysdale/python-phonenumbers) finds with leniency ``VALID`` in
   region :data:`PHONE_REGION` (any ``+`` international number, and national numbers of that
   region); a bare run of digits only after a phone word (``phone``, ``tel``, ``mobile``,
   ``call``, ...), so that numeric ids survive. Then numbers written like phone numbers that
   it does not know (fictional ``555`` numbers, national numbers of other regions): an
   international ``+`` number of 8 to 15 digits (ITU-T E.164), or a national number of 9 to
   12 digits written in groups (``(555) 123-4567``, ``020 7946 0958``).

The detectors favour precision on trace text: dates (``2024-05-15``), ISO timestamps,
durations, hashes, ids and short numbers are left alone. A number that looks like a card but
fails the Luhn check is not a card (it may still be redacted as a phone number when written
like one). Redacting twice changes nothing. detect-secrets and phonenumbers are imported on
first use; results are cached per text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from typing import Any

__all__ = [
    "PHONE_REGION",
    "REDACTION_TOKENS",
    "SECRET_PLUGINS",
    "luhn_valid",
    "redact",
    "redact_counts",
    "redact_data",
    "ssn_valid",
]

REDACTION_TOKENS = ("<secret>", "<email>", "<ssn>", "<card>", "<phone>")
# The region whose national phone numbers are recognised without a ``+`` prefix.
PHONE_REGION = "US"
# The detect-secrets plugins used, (module, class) under detect_secrets.plugins: the
# regex-based ones, less the public IP detector (an address is not a secret, and version
# numbers look like one) and the Artifactory one (``AP`` + 9 letters or digits is as often a
# booking or order reference).
SECRET_PLUGINS = (
    ("aws", "AWSKeyDetector"),
    ("azure_storage_key", "AzureStorageKeyDetector"),
    ("basic_auth", "BasicAuthDetector"),
    ("cloudant", "CloudantDetector"),
    ("discord", "DiscordBotTokenDetector"),
    ("github_token", "GitHubTokenDetector"),
    ("gitlab_token", "GitLabTokenDetector"),
    ("ibm_cloud_iam", "IbmCloudIamDetector"),
    ("ibm_cos_hmac", "IbmCosHmacDetector"),
    ("jwt", "JwtTokenDetector"),
    ("mailchimp", "MailchimpDetector"),
    ("npm", "NpmDetector"),
    ("openai", "OpenAIDetector"),
    ("private_key", "PrivateKeyDetector"),
    ("pypi_token", "PypiTokenDetector"),
    ("sendgrid", "SendGridDetector"),
    ("slack", "SlackDetector"),
    ("softlayer", "SoftlayerDetector"),
    ("square_oauth", "SquareOAuthDetector"),
    ("stripe", "StripeDetector"),
    ("telegram_token", "TelegramBotTokenDetector"),
    ("twilio", "TwilioKeyDetector"),
)

_SECRET = re.compile(
    r"""
    -----BEGIN[A-Z ]*PRIVATE\ KEY(?:\ BLOCK)?-----[A-Za-z0-9+/=\s\\:,-]*?
        (?:-----END[A-Z ]*PRIVATE\ KEY(?:\ BLOCK)?-----|(?=[^A-Za-z0-9+/=\s\\:,-])|$)
    | \bsk-ant-[A-Za-z0-9_-]{20,}
    | \bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}
    | \b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}
    | \bgithub_pat_[A-Za-z0-9_]{30,}
    | \bAIza[0-9A-Za-z_-]{35}
    | \beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}
    | (?<=\bBearer\s)[A-Za-z0-9._~+/=-]{16,}
    """,
    re.VERBOSE,
)
# key = value / "key": "value" assignments of credentials; only the value is replaced.
_ASSIGNMENT = re.compile(
    r"""(?ix)
    (\b(?:api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|client[_-]?secret|password
        |passwd|(?:aws[_-]?)?secret[_-]?access[_-]?key)
     ["']?\s*[:=]\s*["']?)
    (?!\\?<(?:secret|email|ssn|card|phone)\\?>)([^\s"',;]{6,})
    """
)
# a replacement, as written or as a Markdown or prompt escape left it (\<secret\>)
_TOKEN = re.compile(r"\\?<(?:secret|email|ssn|card|phone)\\?>")
_AWS_CONTEXT = re.compile(r"(?i:aws)|\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")
_BASE64_40 = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_HEX = re.compile(r"[0-9a-fA-F]+")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_SSN = re.compile(r"(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# at least 7 digits close together: the only texts worth handing to phonenumbers
_PHONE_GATE = re.compile(r"\d(?:[^\d\n]{0,3}\d){6}")
_PHONE_WORD = re.compile(r"(?i:phone|tel|mobile|cell|call|sms|fax|whatsapp|contact)[^\n\d]{0,24}$")
_PHONE = re.compile(
    r"""
    (?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)   # +44 20 7946 0958, +14155550123
    | (?<![\w(])\(\d{2,4}\)[ .-]?\d{3,4}[ .-]\d{3,4}(?!\w)  # (555) 123-4567
    | (?<![\w.-])(?<!\d\ )\d{3,4}[ .-]\d{3,4}[ .-]\d{3,4}(?![\w.-])(?!\ \d)  # 555-123-4567
    """,
    re.VERBOSE,
)
# texts up to this many characters are cached
_CACHED_CHARS = 4096

Span = tuple[int, int]


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


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """True when ``area-group-serial`` is a social security number the SSA could issue: area
    not 000, 666 or 900-999, group not 00, serial not 0000 (SSA, "Social Security Number
    Randomization", https://www.ssa.gov/employer/randomization.html)."""
    return (
        area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )


def _replace(text: str, spans: list[Span], token: str) -> tuple[str, int]:
    """``text`` with each of ``spans`` (overlapping ones joined) replaced by ``token``, and how
    many replacements were made."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts, last = [], 0
    for start, end in merged:
        parts += [text[last:start], token]
        last = end
    parts.append(text[last:])
    return "".join(parts), len(merged)


@lru_cache(maxsize=1)
def _plugin_patterns() -> tuple[tuple[re.Pattern[str], int | None], ...]:
    """(regex, group of the secret or None) of every :data:`SECRET_PLUGINS` denylist regex and
    of the keyword plugin's quoted assignments."""
    import importlib

    from detect_secrets.plugins.keyword import QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP

    patterns: list[tuple[re.Pattern[str], int | None]] = []
    for module, name in SECRET_PLUGINS:
        plugin = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), name)
        patterns += [(regex, None) for regex in plugin.denylist]
    patterns += list(QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP.items())
    return tuple(patterns)


def _secret_span(match: re.Match[str], group: int | None) -> Span:
    """The part of a plugin's match that is the secret: ``group`` when given (the keyword
    plugin), else the last group inside the match of at least 6 characters (an assignment's
    value), else the whole match without surrounding quotes, blanks, ``=`` or ``:``."""
    if group is not None:
        return match.span(group)
    for index in range(match.re.groups, 0, -1):
        start, end = match.span(index)
        if start > match.start() and end - start >= 6:
            return start, end
    start, end = match.span()
    text = match.string
    while start < end and text[start] in " \t\r\n\"'=:":
        start += 1
    while end > start and text[end - 1] in " \t\r\n\"'=:":
        end -= 1
    return start, end


def _plugin_secrets(text: str) -> list[Span]:
    spans = []
    for regex, group in _plugin_patterns():
        for match in regex.finditer(text):
            start, end = _secret_span(match, group)
            if end > start and not _TOKEN.search(text, start, end):
                spans.append((start, end))
    return spans


def _aws_secret_keys(text: str) -> list[Span]:
    """AWS secret access keys: see the module docstring."""
    context = [m.start() for m in _AWS_CONTEXT.finditer(text)]
    if not context:
        return []
    spans = []
    for match in _BASE64_40.finditer(text):
        value = match.group(0)
        if (
            _HEX.fullmatch(value)
            or value.count("/") > 4
            or not (any(c.islower() for c in value) and any(c.isupper() for c in value))
            or not any(c.isdigit() or c in "/+" for c in value)
        ):
            continue
        if any(abs(match.start() - at) <= 256 for at in context):
            spans.append(match.span())
    return spans


def _valid_phones(text: str) -> list[Span]:
    """Phone numbers that libphonenumber finds valid (see the module docstring)."""
    if not _PHONE_GATE.search(text):
        return []
    from phonenumbers import Leniency, PhoneNumberMatcher

    spans = []
    for match in PhoneNumberMatcher(text, PHONE_REGION, leniency=Leniency.VALID):
        raw = match.raw_string
        if raw.isdigit() and not _PHONE_WORD.search(text[max(0, match.start - 40) : match.start]):
            continue  # a bare run of digits not introduced as a phone number: an id
        spans.append((match.start, match.end))
    return spans


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group(0))
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _phone(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group(0))
    if match.group(0).startswith("+"):
        return 8 <= len(digits) <= 15
    return 9 <= len(digits) <= 12


def _where(
    pattern: re.Pattern[str], keep: Callable[[re.Match[str]], bool] | None = None
) -> Callable[[str], list[Span]]:
    """A finder of the spans of ``pattern``'s matches that ``keep`` accepts."""

    def spans(text: str) -> list[Span]:
        return [m.span() for m in pattern.finditer(text) if keep is None or keep(m)]

    return spans


def _assignments(text: str) -> list[Span]:
    return [m.span(2) for m in _ASSIGNMENT.finditer(text)]


# (kind, token, finder of spans), applied in this order, each on the text the previous left
_STEPS: tuple[tuple[str, str, Callable[[str], list[Span]]], ...] = (
    ("secret", "<secret>", _aws_secret_keys),
    ("secret", "<secret>", _where(_SECRET)),
    ("secret", "<secret>", _plugin_secrets),
    ("secret", "<secret>", _assignments),
    ("email", "<email>", _where(_EMAIL)),
    ("ssn", "<ssn>", _where(_SSN, lambda m: ssn_valid(*m.groups()))),
    ("card", "<card>", _where(_CARD, _card)),
    ("phone", "<phone>", _valid_phones),
    ("phone", "<phone>", _where(_PHONE, _phone)),
)


@lru_cache(maxsize=8192)
def _cached(text: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    return _redact(text)


def _redact(text: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    counts: Counter[str] = Counter()
    for kind, token, find in _STEPS:
        spans = find(text)
        if spans:
            text, n = _replace(text, spans, token)
            counts[kind] += n
    return text, tuple(counts.items())


def redact_counts(text: str) -> tuple[str, Counter[str]]:
    """``text`` with secrets, e-mail addresses, social security numbers, card numbers and phone
    numbers replaced (see the module docstring), and how many of each were replaced (keys:
    secret, email, ssn, card, phone)."""
    if not text:
        return text, Counter()
    out, counts = _cached(text) if len(text) <= _CACHED_CHARS else _redact(text)
    return out, Counter(dict(counts))


def redact(text: str) -> str:
    """``text`` with secrets, e-mail addresses, social security numbers, card numbers and phone
    numbers replaced by ``<secret>``, ``<email>``, ``<ssn>``, ``<card>`` and ``<phone>``; other
    text is unchanged."""
    return redact_counts(text)[0]


def redact_data(value: Any) -> Any:
    """A JSON-like value with every string in it redacted (:func:`redact`), through lists,
    tuples and dicts (their keys too: a namespace may key a mapping); other values
    unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(key): redact_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_data(item) for item in value)
    return value

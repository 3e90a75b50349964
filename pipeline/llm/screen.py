"""Screening text for a skill, with or without an LLM: :func:`markers` says what makes a text
unfit for a skill, and :func:`screen_candidates` redacts every candidate's instruction and demotes
to *proposed* any whose wording carries such markers. :mod:`pipeline.llm.items` leaves failure
clusters whose signature carries markers out of distillation, and
:func:`pipeline.llm.distill.check_reply` rejects LLM replies with them.

Text is screened in its :func:`skeleton`, so that a phrase cannot hide from the patterns behind
look-alike characters: Unicode NFKC (fullwidth and mathematical letters become ASCII), format
and control characters removed (zero-width spaces, soft hyphens, bidirectional overrides, tag
characters; Unicode category Cf and Cc), HTML character references decoded, combining marks
dropped and every letter that is confusable with an ASCII letter or digit replaced by it
(Unicode Technical Standard #39 confusables, via ``confusable-homoglyphs``). The patterns also
run over the text's letters alone, so ``ig-nore``, ``i g n o r e`` and a phrase split over lines
are found too.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from dataclasses import replace
from typing import Any

from confusable_homoglyphs import categories, confusables

from pipeline.redact import REDACTION_TOKENS, redact
from pipeline.skillbook import Candidate

__all__ = [
    "disguised_words",
    "hidden_characters",
    "markers",
    "normalise",
    "screen_candidates",
    "skeleton",
]

_TLDS = r"com|net|org|io|ai|dev|xyz|ru|biz|tk|cn|onion|co\.uk"
_URL = re.compile(
    rf"""(?ix)
    \b(?:https?|ftp|wss?)://
    | \bwww\.
    | \b[\w-]+\.(?:{_TLDS})\b
    | \b(?:javascript|vbscript|mailto):(?=[a-z/])
    | \bfile:/ | \bdata:[a-z]+/[\w.+-]+[;,]
    """
)
# In a reply (not in trace text, where version numbers look the same): an IP address.
_IP = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
_TEMPLATE_CODE = re.compile(
    r"\{\{|\{%|\{#|<\s*/?\s*(?:script|iframe|img|a|svg|object|embed|style|link|meta|form)\b"
    r"|\bon(?:error|load|click|mouseover)\s*=",
    re.I,
)
_CODE = re.compile(r"`|[{}<>]|\$\(|=>|\(\)\s*;|^\s*(?:import|def|class|sudo|curl)\s|\brm\s+-", re.M)
# Markdown and HTML markup in a reply: emphasis, links, images, headings, quotes, tables and
# character references (the skill is plain text in a Markdown prompt).
_MARKUP = re.compile(
    r"\*\*|(?<!\w)__\w|\[[^\]]*\]\s*[(\[]|!\[|^\s{0,3}#{1,6}\s|^\s*>\s|\|\s*:?-{3,}"
    r"|&(?:#\d+|#x[0-9a-f]+|[a-z]{2,8});",
    re.I | re.M,
)
_TARGETS = (
    r"instructions?|rules?|prompts?|messages?|polic(?:y|ies)|guidelines?|everything|above"
    r"|previous|prior|earlier|context|constraints?|directions?|guardrails?|safeguards?"
    r"|restrictions?|directives?|orders?"
)
_INJECTION = re.compile(
    rf"""(?ix)
    \b(?:ignore|disregard|forget|override|bypass|circumvent|neglect)\b\W+(?:\w+\W+){{0,4}}?
        (?:{_TARGETS})\b
    | \b(?:new|updated|additional|hidden|secret|real|true|actual)\s+(?:system\s+)?
        (?:instructions?|task|goal|role|directives?)\b
    | \bsystem\s+(?:prompt|message|override|note)\b
    | \byou\s+are\s+now\b | \bfrom\s+now\s+on\b | \bact\s+as\s+(?:an?\s+|the\s+)?(?!agent\b)\w+
    | \bpretend\s+(?:to\s+be|you|that)\b | \brole-?play
    | \b(?:add|insert|create|append)\s+(?:a\s+|an\s+|this\s+|the\s+following\s+)?(?:new\s+)?
        (?:skill|rule|instruction)s?\b
    | \b(?:developer|god|admin|dan|debug)\s+mode\b
    | \bjailbreak | \bdo\s+anything\s+now\b | \bprompt\s+injection\b
    | \b(?:reveal|print|show|repeat|output|leak)\s+(?:\w+\s+){{0,2}}?(?:system\s+)?
        (?:prompt|instructions)\b
    | \b(?:secretly|covertly)\b
    | \b(?:silently|quietly)\s+(?:approve|send|share|forward|transfer|grant|refund|issue|delete
        |change|add|remove|call|export|upload|post|e-?mail|cancel|book)\w*
    | \b(?:do\s+not|don'?t|never|without)\s+(?:tell|telling|inform|informing|notify|notifying|
        let|letting|alert|alerting)\s+(?:the\s+)?(?:user|customer|them)\b
    | \[/?inst\] | <\|\w+\|>
    """
)
_SENSITIVE = (
    r"credentials?|passwords?|passcodes?|(?:api|access|secret)\s+keys?|secrets?"
    r"|(?:access|auth|api|session|bearer|refresh)\s+tokens?"
    r"|credit\s+cards?|card\s+numbers?|cvv|ssns?|social\s+security(?:\s+numbers?)?"
    r"|personal\s+(?:data|information|details)|pii|(?:user|customer)\s+(?:profiles?|data|records)"
)
_BULK = r"profiles?|data|records?|history|conversations?|transcripts?|context|memory|files|database"
_EXFILTRATION = re.compile(
    rf"""(?ix)
    \b(?:send|share|e-?mail|export|forward|upload|post|transmit|leak|exfiltrate|dump|reveal
        |disclose|copy|paste|publish|sync|give|hand\s+over)\b(?!-)
      \W+(?:\w+\W+){{0,4}}?
      (?:(?:full|entire|complete|whole|all)\W+(?:\w+\W+){{0,2}}?(?:{_BULK})|(?:{_SENSITIVE}))\b
    | \bto\s+(?:an?\s+|the\s+|this\s+|my\s+|our\s+|your\s+)?(?:external|third[-\s]party
        |outside|remote|personal|private|attacker'?s?|unknown|offsite|off-site)\s+(?:\w+\s+)?
        (?:address|server|e-?mail|endpoint|url|account|site|inbox|webhook|party|service|host
        |domain|recipient|contact|storage|bucket|drive)\b
    | \bexfiltrat | \bwebhooks?\b | \bpastebin\b | \bngrok\b | \brequestbin\b
    """
)
# The same phrases found in the letters of a text alone (``i g n o r e``, ``ig-nore``).
_SQUEEZED = re.compile(
    r"(?:ignore|disregard|forget)(?:all|the|any|your|of|my)*(?:previous|prior|above|earlier"
    r"|instructions|rules|everything)"
    r"|systemprompt|youarenow|developermode|jailbreak|exfiltrat"
)
# Invisible characters that are not of category Cf: fillers, the blank Braille pattern, the
# combining grapheme joiner and variation selectors.
_INVISIBLE = frozenset("\u034f\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5")
_MASKS = re.compile("|".join(map(re.escape, ("<n>", "<str>", *REDACTION_TOKENS))))


def _hidden(char: str) -> bool:
    if char in "\t\n\r":
        return False
    code = ord(char)
    return (
        unicodedata.category(char) in ("Cf", "Cc", "Co", "Cs", "Cn")
        or char in _INVISIBLE
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
    )


def hidden_characters(text: str) -> list[str]:
    """The distinct invisible characters of ``text``, in order of first appearance, as
    ``"U+200B ZERO WIDTH SPACE"``: format and control characters (Unicode categories Cf, Cc,
    other than tab and line breaks), private-use, surrogate and unassigned code points, and
    invisible fillers and variation selectors."""
    seen = dict.fromkeys(c for c in text if _hidden(c))
    return [f"U+{ord(c):04X} {unicodedata.name(c, 'UNNAMED')}" for c in seen]


def normalise(text: str) -> str:
    """``text`` in Unicode NFKC with the characters of :func:`hidden_characters` removed."""
    return "".join(c for c in unicodedata.normalize("NFKC", text) if not _hidden(c))


@functools.cache
def _ascii_lookalikes() -> dict[str, str]:
    """Each non-ASCII character that UTS #39 lists as confusable with an ASCII letter or digit
    (directly or through one other character), mapped to it."""
    data: dict[str, list[dict[str, str]]] = confusables.confusables_data

    def ascii_of(char: str) -> str | None:
        for glyph in data.get(char, ()):
            target = glyph["c"]
            if len(target) == 1 and target.isascii() and target.isalnum():
                return target
        return None

    out: dict[str, str] = {}
    for char, glyphs in data.items():
        if len(char) != 1 or char.isascii():
            continue
        target = ascii_of(char)
        if target is None:
            target = next((t for g in glyphs if (t := ascii_of(g["c"])) is not None), None)
        if target is not None:
            out[char] = target
    return out


def skeleton(text: str) -> str:
    """What ``text`` reads as, for screening (see the module docstring): :func:`normalise`, HTML
    character references decoded, combining marks dropped, look-alikes of ASCII letters and
    digits replaced by them."""
    text = normalise(html.unescape(normalise(text)))
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    lookalikes = _ascii_lookalikes()
    return unicodedata.normalize("NFC", "".join(lookalikes.get(c, c) for c in text))


def disguised_words(text: str) -> list[str]:
    """The words of ``text`` (after :func:`normalise`) that pass for Latin words but are not:
    words that mix scripts with confusable characters (``Ignоre`` with a Cyrillic ``о``;
    ``confusable_homoglyphs.confusables.is_dangerous``), and words written wholly in another
    script that read as ASCII (Cyrillic ``раураl``)."""
    found = []
    for word in dict.fromkeys(re.findall(r"\w+", normalise(text))):
        if word.isascii():
            continue
        scripts = categories.unique_aliases(word) - {"LATIN", "COMMON"}
        reads_as = skeleton(word)
        if confusables.is_dangerous(word) or (
            scripts and reads_as != word and re.fullmatch(r"[A-Za-z0-9_]+", reads_as)
        ):
            found.append(word)
    return found


def markers(text: str, *, strict: bool = False) -> list[str]:
    """What makes ``text`` unfit for a skill, screened in its :func:`skeleton`: ``url``,
    ``template`` (Jinja or HTML tags and handlers), ``injection`` (phrases that try to change the
    agent's instructions or role, or to act behind the user's back), ``exfiltration`` (sending
    whole profiles, data or credentials somewhere, or to an external destination), ``hidden``
    (invisible or control characters, :func:`hidden_characters`) and, when ``strict`` (LLM
    output), ``code`` (backticks, braces, angle brackets, shell or Python), ``markup``
    (Markdown or HTML), ``confusable`` (:func:`disguised_words`) and ``personal data`` (what
    :func:`pipeline.redact.redact` would replace). Empty when clean. Masked values in tool error
    signatures (``<n>``, ``<str>``) are not code."""
    screened = skeleton(text)
    flat = " ".join(screened.split())
    letters = re.sub(r"[^a-z]", "", flat.lower())
    checks = [
        ("url", _URL.search(flat)),
        ("template", _TEMPLATE_CODE.search(flat)),
        ("injection", _INJECTION.search(flat) or _SQUEEZED.search(letters)),
        ("exfiltration", _EXFILTRATION.search(flat)),
        ("hidden", any(_hidden(c) for c in text)),
    ]
    if strict:
        checks += [
            ("url", _IP.search(flat)),
            ("code", _CODE.search(_MASKS.sub("", screened))),
            ("markup", _MARKUP.search(screened)),
            ("confusable", bool(disguised_words(text))),
            ("personal data", redact(text) != text),
        ]
    return list(dict.fromkeys(name for name, hit in checks if hit))


def screen_candidates(candidates: list[Candidate]) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """Redact every candidate's instruction and demote (``significant`` False, so it can only
    be proposed) those whose wording has :func:`markers`. Returns the candidates, in order, and
    one ``{"id", "pattern_id", "markers"}`` per demoted candidate."""
    out, demoted = [], []
    for cand in candidates:
        instruction = redact(cand.instruction)
        found = markers(instruction)
        if found:
            demoted.append({"id": cand.id, "pattern_id": cand.pattern_id, "markers": found})
            cand = replace(cand, significant=False, source=cand.source | {"screened": found})
        out.append(
            replace(cand, instruction=instruction) if instruction != cand.instruction else cand
        )
    return out, demoted

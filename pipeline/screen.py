"""The checks on skill wording, with or without an LLM: :func:`markers` (a URL, template code,
an injection phrase or, for LLM output, code), :func:`screen` (redact every candidate's
instruction and demote to *proposed* any whose wording carries such markers), and the
validation of an LLM's reply: :func:`parse_reply` (the JSON object and its fields) and
:func:`check_reply` (why a parsed reply is rejected). See :mod:`pipeline.distill` for where
they apply.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pipeline.extract import Candidate
from pipeline.redact import redact

if TYPE_CHECKING:
    from pipeline.distill_items import Item

__all__ = ["check_reply", "markers", "parse_reply", "screen"]

_URL = re.compile(r"(?i)\b(?:https?|ftp)://|\bwww\.|\b[\w-]+\.(?:com|net|org|io|ai|dev|xyz|ru)\b")
_TEMPLATE_CODE = re.compile(r"\{\{|\{%|<\s*/?\s*(?:script|iframe|img|a)\b", re.I)
_CODE = re.compile(r"`|[{}<>]|\$\(|=>|\(\)\s*;|^\s*(?:import|def|class|sudo|curl)\s|\brm\s+-", re.M)
_INJECTION = re.compile(
    r"""(?ix)
    \b(?:ignore|disregard|forget|override|bypass)\b\W+(?:\w+\W+){0,3}?
        (?:instructions?|rules?|prompts?|messages?|polic(?:y|ies)|guidelines?|everything)\b
    | \b(?:new|updated|additional|hidden|secret)\s+(?:system\s+)?instructions?\b
    | \bsystem\s+prompt\b
    | \byou\s+are\s+now\b
    | \b(?:add|insert|create|append)\s+(?:a\s+|an\s+|this\s+|the\s+following\s+)?(?:new\s+)?
        (?:skill|rule|instruction)s?\b
    | \b(?:developer|god|admin)\s+mode\b
    | \bjailbreak
    | \bdo\s+anything\s+now\b
    """
)


def markers(text: str, *, strict: bool = False) -> list[str]:
    """What makes ``text`` unfit for a skill: ``url``, ``template`` (Jinja or HTML tags),
    ``injection`` (phrases that try to change the agent's instructions) and, when ``strict``
    (LLM output), ``code`` (backticks, braces, angle brackets, shell or Python). Empty when
    clean. Masked values in tool error signatures (``<n>``, ``<str>``) are not code."""
    found = []
    if _URL.search(text):
        found.append("url")
    if _TEMPLATE_CODE.search(text):
        found.append("template")
    if _INJECTION.search(text):
        found.append("injection")
    if strict and _CODE.search(re.sub(r"<(?:n|str|email|phone|card|secret)>", "", text)):
        found.append("code")
    return found


def screen(candidates: list[Candidate]) -> tuple[list[Candidate], list[dict[str, Any]]]:
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


def parse_reply(text: str) -> tuple[dict[str, Any] | None, str]:
    """The JSON object in a reply (a code fence around it is tolerated), or None and why."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    if fence:
        body = fence.group(1)
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg})"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    for key in ("instruction", "when", "rationale", "section"):
        if not isinstance(value.get(key), str):
            return None, f"field {key!r} missing or not a string"
    instruction = " ".join(value["instruction"].split())
    if not 15 <= len(instruction) <= 400:
        return None, "instruction must be 15 to 400 characters"
    return value, ""


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", text.lower())


def _shares_run(text: str, source: str, n: int) -> bool:
    words, corpus = _words(text), " " + " ".join(_words(source)) + " "
    return any(f" {' '.join(words[i : i + n])} " in corpus for i in range(len(words) - n + 1))


def check_reply(value: dict[str, Any], item: Item) -> str:
    """Why an LLM skill for ``item`` is rejected (empty when it is accepted): a field carries
    :func:`markers` (strict), the instruction names none of ``item.tools``, or it shares a run
    of 3 words with excerpt lines that carry markers (text planted next to an injection) or of
    6 words with the excerpts (copied trace text). ``value``: a reply that passed
    :func:`parse_reply`."""
    fields = {k: " ".join(value[k].split()) for k in ("instruction", "when", "rationale")}
    for name, text in fields.items():
        found = markers(text, strict=True)
        if found:
            return f"{name} carries {', '.join(found)}"
    instruction = fields["instruction"].lower()
    if not any(
        t.lower() in instruction or t.lower().replace("_", " ") in instruction for t in item.tools
    ):
        return f"the instruction does not name the pattern's tool ({', '.join(item.tools)})"
    excerpts = "\n".join(e["text"] for e in item.context["excerpts"])
    suspicious = "\n".join(line for line in excerpts.splitlines() if markers(line))
    if suspicious and _shares_run(fields["instruction"], suspicious, 3):
        return "the instruction repeats text planted next to an injection in the traces"
    if _shares_run(fields["instruction"], excerpts, 6):
        return "the instruction copies trace text"
    return ""

"""Screening text for a skill, with or without an LLM: :func:`markers` says what makes a text
unfit for a skill (a URL, template code, an injection phrase or, for LLM output, code), and
:func:`screen_candidates` redacts every candidate's instruction and demotes to *proposed* any
whose wording carries such markers. :mod:`pipeline.llm.items` leaves failure clusters whose
signature carries markers out of distillation, and :func:`pipeline.llm.distill.check_reply`
rejects LLM replies with them.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from pipeline.redact import redact
from pipeline.skillbook import Candidate

__all__ = ["markers", "screen_candidates"]

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

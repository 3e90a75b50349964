"""The one seam to a language model, and the optional steps of ``coach learn`` that use it.

``LLMClient(config, cache_path).complete_many(requests) -> list[Reply]`` is the one method the
stages call: an OpenAI-compatible chat client with a response cache, budgets and retries
(:mod:`pipeline.llm.client`). Its settings are :class:`~pipeline.config.LLMConfig`, re-exported
here. The steps that use it:

- :func:`label_unknown` (:mod:`pipeline.llm.judge`), between ingest and analyze: an LLM judge
  labels the trajectories without an outcome (``--llm-label``), in memory only;
- :func:`refine` (:mod:`pipeline.llm.distill`), between extract and merge:
  :func:`screen_candidates` always (with or without an LLM), then better wording for the
  candidate skills and skills for failure clusters, one request per item
  (:mod:`pipeline.llm.items`), never new evidence.

Inside the package (``A ──► B``: B imports A; ``screen`` normalises and screens text,
``prompt`` holds the Jinja environment of both prompts and the escaping of trace text placed in
them, ``fidelity`` what a rewording must keep of its pattern, ``types`` the values that cross the
seam)::

    types ──► cache ──► client ──────────┐
    screen ──► prompt ──► items ─────────┼──► distill, judge
    fidelity ────────────────────────────┘
"""

from __future__ import annotations

from pipeline.config import LLMConfig
from pipeline.llm.cache import ResponseCache
from pipeline.llm.client import LLMClient, estimate_tokens
from pipeline.llm.distill import (
    DISTILL_SYSTEM_PROMPT,
    SKILL_SCHEMA,
    Distillation,
    check_reply,
    distill_candidates,
    parse_reply,
    refine,
)
from pipeline.llm.items import SECTIONS, Item, cluster_items, pattern_items
from pipeline.llm.judge import (
    JUDGE_SOURCE,
    JUDGE_SYSTEM_PROMPT,
    VERDICT_SCHEMA,
    Labelling,
    judge_unknown,
    label_unknown,
    parse_verdict,
)
from pipeline.llm.screen import markers, screen_candidates
from pipeline.llm.types import LLMUsage, Reply, Request, prompt_hash, retry_request

__all__ = [
    "DISTILL_SYSTEM_PROMPT",
    "JUDGE_SOURCE",
    "JUDGE_SYSTEM_PROMPT",
    "SECTIONS",
    "SKILL_SCHEMA",
    "VERDICT_SCHEMA",
    "Distillation",
    "Item",
    "LLMClient",
    "LLMConfig",
    "LLMUsage",
    "Labelling",
    "Reply",
    "Request",
    "ResponseCache",
    "check_reply",
    "cluster_items",
    "distill_candidates",
    "estimate_tokens",
    "judge_unknown",
    "label_unknown",
    "markers",
    "parse_reply",
    "parse_verdict",
    "pattern_items",
    "prompt_hash",
    "refine",
    "retry_request",
    "screen_candidates",
]

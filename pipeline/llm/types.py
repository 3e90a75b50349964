"""The values that cross the seam to the model: a :class:`Request`, its :class:`Reply`, what a
run spent (:class:`LLMUsage`), and the request's hash (:func:`prompt_hash`) that the response
cache is keyed on. Plain frozen dataclasses and functions of them: the client
(:mod:`pipeline.llm.client`) and its cache (:mod:`pipeline.llm.cache`) both build on this
module, and it imports neither.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from pipeline.config import LLMConfig

__all__ = ["LLMUsage", "Reply", "Request", "prompt_hash", "retry_request"]


@dataclass(frozen=True)
class Request:
    """One logical chat request: ``messages`` (``[{"role", "content"}]``), an optional JSON
    ``schema`` the reply must follow (with its ``schema_name``), and a ``label`` for reports."""

    messages: tuple[dict[str, str], ...]
    schema: dict[str, Any] | None = None
    schema_name: str = "reply"
    label: str = ""


@dataclass(frozen=True)
class Reply:
    """The outcome of one request.

    ``status``: ``ok`` (answered by the endpoint), ``cached`` (answered from the cache),
    ``refused`` (the model declined: ``refusal`` holds its words), ``failed`` (``error`` says
    why, after retries), ``budget`` (not sent: a budget was reached). ``text``: the content for
    ok/cached. ``prompt_sha256``: the request's hash. Tokens are as the endpoint reported them
    (estimated when it did not).
    """

    status: str
    prompt_sha256: str
    text: str | None = None
    refusal: str | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def answered(self) -> bool:
        """True for ok and cached replies that carry text."""
        return self.status in ("ok", "cached") and self.text is not None


@dataclass
class LLMUsage:
    """What the LLM cost a run: ``calls`` (requests sent, cache hits excluded), ``http_requests``
    (including retries), ``cache_hits``, ``input_tokens`` and ``output_tokens`` (sent calls
    only), ``cost_usd`` (estimate), ``failures``, ``refusals``, ``not_sent`` (refused by the
    budget), ``budget_reached`` (which budget, or None) and ``structured`` (how structured
    output was requested last: json_schema or json)."""

    calls: int = 0
    http_requests: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    failures: int = 0
    refusals: int = 0
    not_sent: int = 0
    budget_reached: str | None = None
    structured: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (``cost_usd`` rounded to 6 places)."""
        return {
            "calls": self.calls,
            "http_requests": self.http_requests,
            "cache_hits": self.cache_hits,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "failures": self.failures,
            "refusals": self.refusals,
            "not_sent": self.not_sent,
            "budget_reached": self.budget_reached,
            "structured": self.structured,
        }


def prompt_hash(request: Request, config: LLMConfig) -> str:
    """SHA-256 (hex) of the canonical JSON of ``request``'s messages, schema, the output token
    limit and temperature 0: what the cache is keyed on, and the prompt hash recorded with
    LLM-worded skills."""
    canonical = json.dumps(
        {
            "messages": list(request.messages),
            "schema": request.schema,
            "max_output_tokens": config.max_output_tokens,
            "temperature": 0,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def retry_request(request: Request, reply: Reply, reason: str, keys: str) -> Request:
    """``request`` asked once more after an invalid ``reply``: the reply (cut to 2,000
    characters) and a user turn naming ``reason`` and the JSON ``keys`` expected (text, e.g.
    ``"outcome, confidence and reason"``) are appended; the label gains `` (retry)``."""
    return replace(
        request,
        messages=(
            *request.messages,
            {"role": "assistant", "content": (reply.text or "")[:2000]},
            {
                "role": "user",
                "content": f"That reply is invalid: {reason}. Answer again with the JSON object "
                f"only, with the keys {keys}.",
            },
        ),
        label=request.label + " (retry)",
    )

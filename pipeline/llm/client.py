"""The one seam to a language model: an OpenAI-compatible chat client with a response cache, a
budget and retries.

``LLMClient(config, cache_path).complete_many(requests) -> list[Reply]`` is the method the stages
call. It works with any server that speaks the OpenAI Chat Completions API
(``POST {base_url}/chat/completions``): OpenAI, vLLM, Ollama, llama.cpp's ``llama-server``.

- **Cache.** Every response is kept in a DuckDB file (table ``llm_cache``, one row per
  (model, endpoint, prompt_sha256)); a request already answered is served from it and costs
  nothing, so re-running over the same input makes zero calls. ``prompt_sha256`` is the SHA-256
  of the canonical JSON of the logical request (messages, JSON schema, output token limit,
  temperature), the same whichever way structured output is requested.
- **Structured output.** A request with a JSON schema is sent with ``response_format =
  {"type": "json_schema", ...}`` (OpenAI structured outputs; vLLM, Ollama and llama.cpp accept
  it too). An endpoint that answers 400 or 422 to that is asked again with the schema written
  into the prompt instead, and is asked that way for the rest of the run.
- **Budget.** ``max_calls``, ``max_tokens`` (prompt + completion) and ``max_usd`` (priced per
  1,000 tokens). Before each call the worst case (prompt estimated at 4 characters per token,
  plus ``max_output_tokens``) is reserved; a call that would overrun is not made, the budget is
  marked reached and every later call is refused (cache hits are still served).
- **Faults.** Timeouts, connection errors, 429 and 5xx are retried ``max_retries`` times with
  exponential backoff (``backoff_s`` x 2^attempt, or the server's ``Retry-After`` up to 30 s);
  after that the request is reported as failed and the caller keeps its deterministic result.
  Nothing an endpoint returns raises out of :meth:`LLMClient.complete_many`.

The settings are :class:`~pipeline.config.LLMConfig` (kept with the run's other settings in
:mod:`pipeline.config`, so that the command line builds them without loading this package); the
values that cross the seam (:class:`~pipeline.llm.types.Request`, ``Reply``, ``LLMUsage``) are in
:mod:`pipeline.llm.types`, the cache in :mod:`pipeline.llm.cache`.

The ``openai`` package (about 0.7 s to import) is imported when the first request is sent, not
with this module: ``coach learn`` without ``--llm`` still passes through this package (the
screening in :func:`pipeline.llm.refine`), and a run answered from the cache sends nothing.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.config import DEFAULT_ENDPOINT, LLMConfig
from pipeline.errors import ConfigError
from pipeline.llm.cache import ResponseCache
from pipeline.llm.types import LLMUsage, Reply, Request, prompt_hash

__all__ = ["CHARS_PER_TOKEN", "LLMClient", "estimate_tokens"]

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Approximate token count: characters / 4, rounded up (OpenAI's rule of thumb for
    English text)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _schema_note(schema: dict[str, Any]) -> str:
    return (
        "Reply with one JSON object only, no prose and no code fence, matching this JSON "
        "schema:\n" + json.dumps(schema, sort_keys=True)
    )


class LLMClient:
    """An OpenAI-compatible chat client with cache, budget and retries (module docstring).

    Use as a context manager, or call :meth:`close`, so that the cache file is released.

    Raises:
        ConfigError: no model is configured, or the cache file cannot be opened.
    """

    def __init__(self, config: LLMConfig, cache_path: Path) -> None:
        if not config.model:
            raise ConfigError("--llm needs a model: pass --model NAME or set COACH_MODEL")
        self.config = config
        self.model: str = config.model
        self.endpoint = config.endpoint
        self.usage = LLMUsage()
        self._lock = threading.Lock()
        self._reserved = {"tokens": 0, "usd": 0.0}
        self._json_schema_ok = config.structured != "json"
        self._cache = ResponseCache(cache_path)
        self._client: Any = None

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the cache file."""
        self._cache.close()

    # -- budget ---------------------------------------------------------------------------

    def _cost(self, input_tokens: int, output_tokens: int) -> float:
        cfg = self.config
        return input_tokens / 1000 * cfg.usd_per_1k_input + output_tokens / 1000 * (
            cfg.usd_per_1k_output
        )

    def _reserve(self, request: Request) -> tuple[int, float] | None:
        """Reserve the worst case of one call; None (and the budget marked reached) if it
        would overrun a budget."""
        cfg = self.config
        text = "".join(m["content"] for m in request.messages) + json.dumps(request.schema or {})
        tokens = estimate_tokens(text) + cfg.max_output_tokens
        usd = self._cost(estimate_tokens(text), cfg.max_output_tokens)
        usage = self.usage
        with self._lock:
            reason = usage.budget_reached
            if reason is None and cfg.max_calls is not None and usage.calls + 1 > cfg.max_calls:
                reason = f"max LLM calls ({cfg.max_calls})"
            spent_tokens = usage.input_tokens + usage.output_tokens + self._reserved["tokens"]
            if (
                reason is None
                and cfg.max_tokens is not None
                and spent_tokens + tokens > (cfg.max_tokens)
            ):
                reason = f"max tokens ({cfg.max_tokens})"
            spent_usd = usage.cost_usd + self._reserved["usd"]
            if reason is None and cfg.max_usd is not None and spent_usd + usd > cfg.max_usd:
                reason = f"max cost (USD {cfg.max_usd})"
            if reason is not None:
                usage.budget_reached = reason
                usage.not_sent += 1
                return None
            usage.calls += 1
            self._reserved["tokens"] += tokens
            self._reserved["usd"] += usd
        return tokens, usd

    def _settle(self, reserved: tuple[int, float], reply: Reply) -> None:
        with self._lock:
            self._reserved["tokens"] -= reserved[0]
            self._reserved["usd"] -= reserved[1]
            self.usage.input_tokens += reply.input_tokens
            self.usage.output_tokens += reply.output_tokens
            self.usage.cost_usd += self._cost(reply.input_tokens, reply.output_tokens)
            if reply.status == "failed":
                self.usage.failures += 1
            elif reply.status == "refused":
                self.usage.refusals += 1

    # -- calls ----------------------------------------------------------------------------

    def _openai(self) -> Any:
        if self._client is None:
            import openai

            api_key = self.config.api_key or os.environ.get("OPENAI_API_KEY")
            if not api_key:
                if self.endpoint == DEFAULT_ENDPOINT:
                    raise ConfigError(
                        "--llm with OpenAI needs OPENAI_API_KEY; for a local server pass "
                        "--base-url (e.g. http://localhost:11434/v1 for Ollama)"
                    )
                api_key = "not-needed"
            self._client = openai.OpenAI(
                api_key=api_key,
                base_url=self.endpoint,
                timeout=self.config.timeout_s,
                max_retries=0,
            )
        return self._client

    def _create(self, request: Request, use_schema: bool) -> Any:
        messages = [dict(m) for m in request.messages]
        kwargs: dict[str, Any] = {}
        if request.schema is not None:
            if use_schema:
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": request.schema_name,
                        "schema": request.schema,
                        "strict": True,
                    },
                }
            else:
                messages.append({"role": "system", "content": _schema_note(request.schema)})
        with self._lock:
            self.usage.http_requests += 1
            self.usage.structured = "json_schema" if "response_format" in kwargs else "json"
        return self._openai().chat.completions.create(
            model=self.model,
            messages=messages,
            temperature=0,
            max_tokens=self.config.max_output_tokens,
            **kwargs,
        )

    def _send(self, request: Request, key: str) -> Reply:
        """One request with retries; never raises for anything the endpoint does."""
        import openai

        cfg = self.config
        attempt = 0
        while True:
            try:
                use_schema = request.schema is not None and self._json_schema_ok
                try:
                    response = self._create(request, use_schema)
                except (openai.BadRequestError, openai.UnprocessableEntityError):
                    if not use_schema or cfg.structured == "json_schema":
                        raise
                    # the endpoint does not take response_format json_schema: ask in the prompt
                    self._json_schema_ok = False
                    response = self._create(request, False)
                return self._reply(response, key, request)
            except (
                openai.APITimeoutError,
                openai.APIConnectionError,
                openai.RateLimitError,
                openai.InternalServerError,
            ) as exc:
                status = getattr(exc, "status_code", None)
                if attempt >= cfg.max_retries:
                    return Reply("failed", key, error=_describe(exc, status, attempt + 1))
                time.sleep(_delay(exc, cfg.backoff_s, attempt))
                attempt += 1
            except openai.APIStatusError as exc:
                if exc.status_code >= 500 and attempt < cfg.max_retries:
                    time.sleep(_delay(exc, cfg.backoff_s, attempt))
                    attempt += 1
                    continue
                return Reply("failed", key, error=_describe(exc, exc.status_code, attempt + 1))
            except (openai.OpenAIError, ValueError) as exc:
                return Reply("failed", key, error=f"{type(exc).__name__}: {exc}"[:300])

    def _reply(self, response: Any, key: str, request: Request) -> Reply:
        choices = getattr(response, "choices", None) or []
        if not choices:
            return Reply("failed", key, error="the response has no choices")
        message = choices[0].message
        usage = getattr(response, "usage", None)
        prompt_text = "".join(m["content"] for m in request.messages)
        input_tokens = getattr(usage, "prompt_tokens", None) or estimate_tokens(prompt_text)
        content = message.content if isinstance(message.content, str) else None
        output_tokens = getattr(usage, "completion_tokens", None) or estimate_tokens(content or "")
        refusal = getattr(message, "refusal", None)
        if refusal:
            return Reply("refused", key, refusal=str(refusal)[:500], input_tokens=input_tokens,
                         output_tokens=output_tokens)  # fmt: skip
        if content is None:
            return Reply("failed", key, error="the response has no content")
        return Reply(
            "ok", key, text=content, input_tokens=input_tokens, output_tokens=output_tokens
        )

    def complete_many(self, requests: list[Request]) -> list[Reply]:
        """Answer ``requests`` in order: from the cache where possible, else from the endpoint
        (``concurrency`` at a time) within the budget. Answered and refused replies are cached;
        failed and budget-refused ones are not, so a later run tries them again.

        Returns one :class:`Reply` per request, in the same order.
        """
        keys = [prompt_hash(r, self.config) for r in requests]
        replies: list[Reply | None] = [None] * len(requests)
        pending: list[tuple[int, tuple[int, float]]] = []
        for i, (request, key) in enumerate(zip(requests, keys, strict=True)):
            hit = self._cache.get(self.model, self.endpoint, key)
            if hit is not None:
                text, refusal, tokens_in, tokens_out = hit
                status = "refused" if refusal else "cached"
                replies[i] = Reply(status, key, text, refusal, None, tokens_in, tokens_out)
                self.usage.cache_hits += 1
                continue
            reserved = self._reserve(request)
            if reserved is None:
                replies[i] = Reply(
                    "budget", key, error=f"budget reached: {self.usage.budget_reached}"
                )
                continue
            pending.append((i, reserved))
        if pending:
            with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
                futures = [
                    (i, r, pool.submit(self._send, requests[i], keys[i])) for i, r in pending
                ]
                for i, reserved, future in futures:
                    reply = future.result()
                    self._settle(reserved, reply)
                    if reply.status in ("ok", "refused"):
                        self._cache.put(self.model, self.endpoint, keys[i], requests[i], reply)
                    replies[i] = reply
        return [r for r in replies if r is not None]


def _delay(exc: Exception, backoff_s: float, attempt: int) -> float:
    """Seconds to wait before retry ``attempt + 1``: the server's Retry-After (at most 30 s)
    when given, else ``backoff_s * 2**attempt``."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        retry_after = float(headers.get("retry-after", ""))
    except (TypeError, ValueError):
        retry_after = -1.0
    if 0 <= retry_after <= 30:
        return retry_after
    return backoff_s * 2**attempt


def _describe(exc: Exception, status: int | None, attempts: int) -> str:
    what = f"HTTP {status}" if status else type(exc).__name__
    return f"{what} after {attempts} attempt{'s' if attempts > 1 else ''}"

"""A small JSON-over-HTTP client for the REST APIs of the tools teams already run (Phoenix,
Langfuse).

Standard library only (:mod:`urllib.request`): one method per verb, JSON in and out, and every
failure a user can meet turned into a :class:`~pipeline.errors.RemoteError` whose message names
the server and what to check: nothing listening, a timeout, 401/403 (the API key), another
error status, and an answer that is cut off (fewer bytes than announced) or not JSON. With a
:class:`Retry` policy, statuses such as 429 and 503 are retried after the server's
``Retry-After`` or an exponential backoff.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import RemoteError

__all__ = ["JsonClient", "NOT_FOUND", "RETRY_STATUSES", "Retry"]

# What :meth:`JsonClient.get` returns for a 404 when the caller allows one.
NOT_FOUND: Any = object()

Params = Mapping[str, str | int | Sequence[str] | None]

# Statuses a :class:`Retry` policy retries: rate limited, or the server briefly unavailable.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class Retry:
    """How a :class:`JsonClient` retries a status in :data:`RETRY_STATUSES`: up to
    ``max_retries`` times, after the ``Retry-After`` the server names (seconds or an HTTP date),
    else ``backoff_s * 2**n``, each wait at most ``max_wait_s`` seconds. ``retries`` counts the
    retries made; ``sleep`` and ``on_retry`` (told what is retried) are for progress and tests.
    """

    max_retries: int = 4
    backoff_s: float = 1.0
    max_wait_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    on_retry: Callable[[str], None] = lambda _m: None
    retries: int = 0

    def wait(self, retry_after: str | None, attempt: int) -> float:
        """Seconds to wait before retry ``attempt + 1``: the server's ``Retry-After`` when it
        gives one (RFC 9110 section 10.2.3: seconds or an HTTP date), else exponential backoff;
        never more than ``max_wait_s``."""
        wait = self.backoff_s * 2**attempt
        if retry_after:
            text = retry_after.strip()
            try:
                wait = float(text)
            except ValueError:
                try:
                    moment = email.utils.parsedate_to_datetime(text)
                    wait = (moment - datetime.now(UTC)).total_seconds()
                except (TypeError, ValueError):
                    pass
        return min(max(wait, 0.0), self.max_wait_s)


@dataclass(frozen=True)
class JsonClient:
    """JSON requests to ``base_url`` (scheme, host, port and any path prefix, no trailing
    slash) with ``headers`` on each (an ``Authorization`` header from an API key). ``service``
    names the server in messages (``Phoenix``); on a 401/403 the message says the server refused
    ``credentials`` and what to do, ``key_hint`` (``set PHOENIX_API_KEY to a valid key``); when
    nothing answers, it asks whether ``reach_hint`` is right (``the endpoint (--endpoint ...)``).
    ``timeout_s`` is per request, in seconds; ``retry``: the retry policy (None: no retries)."""

    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    service: str = "the server"
    key_hint: str = "set the API key to a valid key"
    timeout_s: float = 30.0
    credentials: str = "the request"
    reach_hint: str = "the endpoint"
    retry: Retry | None = None

    def get(self, path: str, params: Params | None = None, *, allow_404: bool = False) -> Any:
        """GET ``path`` (``/v1/...``) with query ``params`` (lists repeat the key; None values
        are left out) and return the decoded JSON; :data:`NOT_FOUND` for a 404 when
        ``allow_404``.

        Raises:
            RemoteError: see the module docstring.
        """
        return self._request("GET", path, params, None, allow_404)

    def post(self, path: str, body: Any, params: Params | None = None) -> Any:
        """POST ``body`` as JSON to ``path``; the decoded JSON answer (None for an empty one).

        Raises:
            RemoteError: see the module docstring.
        """
        return self._request("POST", path, params, body, False)

    def url(self, path: str, params: Params | None = None) -> str:
        """The full URL of ``path`` with ``params``."""
        query = []
        for key, value in (params or {}).items():
            if value is None:
                continue
            values = [value] if isinstance(value, str | int) else list(value)
            query += [(key, str(v)) for v in values]
        encoded = f"?{urllib.parse.urlencode(query)}" if query else ""
        return f"{self.base_url}{path}{encoded}"

    def _request(
        self, method: str, path: str, params: Params | None, body: Any, allow_404: bool
    ) -> Any:
        url = self.url(path, params)
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json", **self.headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        where = f"{self.service} at {self.base_url}"
        retry = self.retry or Retry(max_retries=0)
        waited = 0.0
        for attempt in range(retry.max_retries + 1):
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read()
                break
            except urllib.error.HTTPError as exc:
                if exc.code == 404 and allow_404:
                    return NOT_FOUND
                detail = _detail(exc)
                if exc.code in (401, 403):
                    raise RemoteError(
                        f"{where} refused {self.credentials} ({exc.code} {exc.reason}) for "
                        f"{method} {path}: {self.key_hint}{detail}"
                    ) from exc
                if exc.code in RETRY_STATUSES and attempt < retry.max_retries:
                    wait = retry.wait(exc.headers.get("Retry-After"), attempt)
                    retry.retries += 1
                    waited += wait
                    retry.on_retry(
                        f"{self.service.lower()}: {exc.code} {exc.reason} for {method} {path}, "
                        f"retry {attempt + 1} of {retry.max_retries} in {wait:g} s"
                    )
                    retry.sleep(wait)
                    continue
                tries = f" ({attempt + 1} tries over {waited:g} s)" if attempt else ""
                raise RemoteError(
                    f"{where} answered {exc.code} {exc.reason} to {method} {path}{tries}{detail}"
                ) from exc
            except http.client.IncompleteRead as exc:
                raise RemoteError(
                    f"{where} sent a truncated answer to {method} {path} ({len(exc.partial)} "
                    f"bytes of {exc.expected + len(exc.partial) if exc.expected else 'more'}): "
                    "the connection broke; nothing was written, try again"
                ) from exc
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, socket.timeout | TimeoutError):
                    raise RemoteError(
                        f"{where} did not answer {method} {path} within {self.timeout_s:g} s"
                    ) from exc
                raise RemoteError(
                    f"cannot reach {where}: {reason}; is the server running, and is "
                    f"{self.reach_hint} right?"
                ) from exc
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise RemoteError(
                f"{where} sent an answer to {method} {path} that is not JSON or is cut off "
                f"({len(raw)} bytes: {exc}); nothing was written, try again"
            ) from exc


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f": {text[:300]}" if text else ""

"""A small JSON-over-HTTP client for the REST APIs of the tools teams already run (Phoenix).

Standard library only (:mod:`urllib.request`): one method per verb, JSON in and out, and every
failure a user can meet turned into a :class:`~pipeline.errors.RemoteError` whose message names
the server and what to check: nothing listening, a timeout, 401/403 (the API key), another
error status, and an answer that is cut off (fewer bytes than announced) or not JSON.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import RemoteError

__all__ = ["JsonClient", "NOT_FOUND"]

# What :meth:`JsonClient.get` returns for a 404 when the caller allows one.
NOT_FOUND: Any = object()

Params = Mapping[str, str | int | Sequence[str] | None]


@dataclass(frozen=True)
class JsonClient:
    """JSON requests to ``base_url`` (scheme, host, port and any path prefix, no trailing
    slash) with ``headers`` on each (an ``Authorization`` header from an API key). ``service``
    names the server in messages (``Phoenix``), ``key_hint`` says where the key comes from
    (``PHOENIX_API_KEY``); ``timeout_s`` is per request, in seconds."""

    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    service: str = "the server"
    key_hint: str = "the API key"
    timeout_s: float = 30.0

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
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        where = f"{self.service} at {self.base_url}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and allow_404:
                return NOT_FOUND
            detail = _detail(exc)
            if exc.code in (401, 403):
                raise RemoteError(
                    f"{where} refused the request ({exc.code} {exc.reason}) for {method} {path}: "
                    f"set {self.key_hint} to a valid key{detail}"
                ) from exc
            raise RemoteError(
                f"{where} answered {exc.code} {exc.reason} to {method} {path}{detail}"
            ) from exc
        except http.client.IncompleteRead as exc:
            raise RemoteError(
                f"{where} sent a truncated answer to {method} {path} ({len(exc.partial)} bytes "
                f"of {exc.expected + len(exc.partial) if exc.expected else 'more'}): the "
                "connection broke; nothing was written, try again"
            ) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, socket.timeout | TimeoutError):
                raise RemoteError(
                    f"{where} did not answer {method} {path} within {self.timeout_s:g} s"
                ) from exc
            raise RemoteError(
                f"cannot reach {where}: {reason}; is the server running, and is the endpoint "
                "right (--endpoint, PHOENIX_COLLECTOR_ENDPOINT or PHOENIX_HOST)?"
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

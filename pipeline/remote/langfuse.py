"""Pull a Langfuse project's traces, with their observations and scores, into a trace file coach
ingests, incrementally.

Langfuse (https://github.com/langfuse/langfuse) public API, read from the server's Fern
definition (``fern/apis/server/definition/trace.yml``, ``commons.yml``) and its route code
(``web/src/pages/api/public/traces/index.ts`` and ``[traceId].ts``,
``web/src/features/public-api/types/traces.ts``):

- ``GET /api/public/traces?page=P&limit=N&orderBy=timestamp.asc&fromTimestamp=ISO&fields=core``
  pages through the project's traces, oldest first (``{"data": [TraceWithDetails], "meta":
  {"page", "limit", "totalItems", "totalPages"}}``); ``fromTimestamp`` is inclusive ("on or
  after"), and pages are numbered from 1;
- ``GET /api/public/traces/{traceId}`` gives one trace with its observations
  (``ObservationsView``) and scores (``ScoreV1``): ``TraceWithFullDetails``.

Both authenticate with HTTP basic auth, the project's public key as user and its secret key as
password, read from ``LANGFUSE_PUBLIC_KEY`` and ``LANGFUSE_SECRET_KEY`` only; the server is
``LANGFUSE_BASE_URL``, else ``LANGFUSE_HOST``, else https://cloud.langfuse.com
(:func:`langfuse_host`). A 429 (Langfuse Cloud's rate limit, which says when to come back in
``Retry-After``) or a 500, 502, 503 or 504 is retried with exponential backoff, a bounded number
of times (:class:`LangfuseClient`).

A pull lists the traces from the cursor's timestamp on, leaves out those the cursor lists as
pulled at that very timestamp, stops at the first trace that started less than ``settle_s`` ago
(it may still be running, or its observations still being ingested: it waits for the next pull),
reads each new trace in full and writes it as one JSON Lines line ``{"trace": {..., "scores":
[...]}, "observations": [...]}``: the per-trace export the ``langfuse`` format reads
(:mod:`pipeline.ingest.formats.langfuse`), which turns the scores into feedback.

The cursor (``<data dir>/pull/langfuse-<host hash>.json``, :func:`cursor_path`) records the host,
a fingerprint of the public key (the key pair names the project), the timestamp of the last trace
pulled and the ids of the traces pulled at that timestamp; a cursor of another host or key is
refused. Each trace is written as it is read, to a temporary file that becomes the trace file
only when the pull is done (:class:`~pipeline.remote.pull.PulledFile`): a failure leaves no file
and the cursor as it was. The trace file is written first, then the cursor (both atomically): a
crash between them makes the next pull write the same traces again, which ingest counts as
duplicates.
"""

from __future__ import annotations

import base64
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, InputError, RemoteError
from pipeline.progress import Meter, Ticker
from pipeline.remote.http import NOT_FOUND, RETRY_STATUSES, JsonClient, Retry
from pipeline.remote.pull import (
    CursorFormat,
    PulledFile,
    RetryingClient,
    TracePull,
    digest,
    iso_time,
)

__all__ = [
    "CURSOR_FORMAT",
    "DEFAULT_HOST",
    "RETRY_STATUSES",
    "LangfuseClient",
    "LangfusePullResult",
    "cursor_path",
    "langfuse_client",
    "langfuse_host",
    "langfuse_json_client",
    "pull_langfuse",
]

DEFAULT_HOST = "https://cloud.langfuse.com"
CURSOR_FORMAT = 1
_CURSOR = CursorFormat("langfuse", "Langfuse", CURSOR_FORMAT, optional_strings=("timestamp",))
_EPOCH = "1970-01-01T00:00:00.000Z"  # a first pull's fromTimestamp: servers may default to days
_KEYS_HINT = (
    "set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY to an API key pair of the project "
    "(Langfuse: Project settings > API keys) and LANGFUSE_HOST (or LANGFUSE_BASE_URL) to the "
    "server that issued them"
)


def langfuse_host(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The base URL of the Langfuse server: ``explicit`` (``--host``), else
    ``LANGFUSE_BASE_URL``, else ``LANGFUSE_HOST``, else :data:`DEFAULT_HOST`; a bare host name
    gets ``https://``; without a trailing slash."""
    env = os.environ if env is None else env
    url = explicit or env.get("LANGFUSE_BASE_URL") or env.get("LANGFUSE_HOST") or DEFAULT_HOST
    url = url.strip().rstrip("/")
    return url if "://" in url else f"https://{url}"


def cursor_path(data_dir: Path, host: str) -> Path:
    """Where the cursor of ``host`` is kept: ``data_dir/pull/langfuse-<12 hex of SHA-256>.json``."""
    return data_dir / "pull" / f"langfuse-{digest(host)}.json"


def langfuse_json_client(
    host: str, public_key: str, secret_key: str, *, timeout_s: float = 30.0, retry: Retry | None
) -> JsonClient:
    """A :class:`~pipeline.remote.http.JsonClient` for the Langfuse server at ``host`` with basic
    auth (``public_key`` as user, ``secret_key`` as password), ``timeout_s`` per request (in
    seconds) and ``retry``; its messages name the key variables and the host's options."""
    token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
    return JsonClient(
        host,
        {"Authorization": f"Basic {token}"},
        service="Langfuse",
        key_hint=_KEYS_HINT,
        timeout_s=timeout_s,
        credentials="the keys",
        reach_hint="the host (--host, LANGFUSE_BASE_URL or LANGFUSE_HOST)",
        retry=retry,
    )


@dataclass
class LangfuseClient(RetryingClient):
    """GET requests with JSON answers to the Langfuse server at ``host`` (see the module
    docstring), basic auth with ``public_key`` and ``secret_key``, through
    :class:`~pipeline.remote.http.JsonClient`. A status in :data:`RETRY_STATUSES` is retried as
    the keyword-only settings of :class:`~pipeline.remote.pull.RetryingClient` say
    (``timeout_s``, ``max_retries``, ``backoff_s``, ``max_wait_s``, ``sleep``, ``on_retry``);
    :attr:`retries` counts the retries made.
    """

    host: str
    public_key: str
    secret_key: str = field(repr=False)

    def __post_init__(self) -> None:
        self.http = langfuse_json_client(
            self.host,
            self.public_key,
            self.secret_key,
            timeout_s=self.timeout_s,
            retry=self.retry_policy(),
        )

    @property
    def key_fingerprint(self) -> str:
        """12 hex of the SHA-256 of host and public key: which project a cursor belongs to."""
        return digest(f"{self.host}\n{self.public_key}")

    def get(self, path: str, params: Mapping[str, str | int | None] | None = None) -> Any:
        """GET ``path`` (``/api/public/...``) with query ``params`` (None values left out) and
        return the decoded JSON, or :data:`None` for a 404.

        Raises:
            RemoteError: nothing listening, a timeout, 401/403 (naming the key variables),
                a retried status that stays, another error status, an answer cut off (fewer
                bytes than announced) or not JSON.
        """
        answer = self.http.get(path, params, allow_404=True)
        return None if answer is NOT_FOUND else answer


def langfuse_client(host: str, env: Mapping[str, str] | None = None) -> LangfuseClient:
    """A :class:`LangfuseClient` for ``host`` with the keys of ``LANGFUSE_PUBLIC_KEY`` and
    ``LANGFUSE_SECRET_KEY`` (from the environment only).

    Raises:
        ConfigError: either variable is unset or empty.
    """
    env = os.environ if env is None else env
    public, secret = (
        env.get(n, "").strip() for n in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY")
    )
    missing = [
        name
        for name, value in (("LANGFUSE_PUBLIC_KEY", public), ("LANGFUSE_SECRET_KEY", secret))
        if not value
    ]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
            f"{_KEYS_HINT} (keys are read from the environment only)"
        )
    return LangfuseClient(host, public, secret)


@dataclass(kw_only=True)
class LangfusePullResult(TracePull):
    """What a pull from the Langfuse server at ``host`` did (see
    :class:`~pipeline.remote.pull.TracePull`), with the ``observations`` and ``scores`` in the
    file; ``waiting`` traces are too recent to pull yet."""

    source = "langfuse"
    place = ("host",)
    contents = ("observations", "scores")

    host: str
    observations: int = 0
    scores: int = 0


def pull_langfuse(
    client: LangfuseClient,
    out_dir: Path,
    data_dir: Path,
    *,
    since: datetime | None = None,
    settle_s: float = 600.0,
    page_size: int = 50,
    now: datetime | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    meter: Meter | None = None,
) -> LangfusePullResult:
    """Pull the traces of the project of ``client``'s keys that started since the last pull
    (see the module docstring) into ``out_dir/langfuse-<host name>-<UTC time>.jsonl``, and move
    the cursor.

    ``since`` (timezone-aware) leaves out traces that started before it; ``settle_s`` (seconds):
    a trace that started less than this long before ``now`` (default: the current time) waits
    for the next pull; ``page_size`` traces per list request (1 to 100).
    ``progress`` is given a line per list page; ``meter`` the counts
    (:class:`~pipeline.progress.Tally`: records and bytes written, then the file).

    Raises:
        RemoteError: the server is down, refuses the keys, keeps answering 429 or 5xx, or
            sends a cut-off page, a page that is not what the API documents, or traces out of
            timestamp order.
        InputError: the cursor file is unreadable or belongs to another host or key pair.
    """
    now = now or datetime.now(UTC)
    path = cursor_path(data_dir, client.host)
    cursor = _load_cursor(path, client)
    result = LangfusePullResult(host=client.host, cursor=path, first_pull=cursor is None)
    ticker = Ticker(meter, "pull langfuse")
    start, pulled_at_start = (cursor["timestamp"], set(cursor["ids"])) if cursor else (None, set())
    if since is not None and (start is None or since > _time(start, client, "cursor")):
        start, pulled_at_start = _iso(since), set()
    cutoff = now - timedelta(seconds=settle_s)
    listed: list[tuple[str, str, datetime]] = []  # (id, timestamp as sent, timestamp)
    seen: set[str] = set()
    page = 1
    while True:
        answer = client.get(
            "/api/public/traces",
            {
                "page": page,
                "limit": page_size,
                "orderBy": "timestamp.asc",
                "fromTimestamp": start or _EPOCH,
                "fields": "core",
            },
        )
        data, total_pages = _page(answer, client, page)
        result.pages += 1
        recent = False
        for index, item in enumerate(data):
            trace_id, stamp = item["id"], item["timestamp"]
            moment = _time(stamp, client, f"trace {trace_id}")
            if listed and moment < listed[-1][2]:
                raise RemoteError(
                    f"Langfuse at {client.host} listed traces out of timestamp order on page "
                    f"{page}; coach pull needs orderBy=timestamp.asc (upgrade Langfuse)"
                )
            if moment > cutoff:
                recent = True
                result.waiting = max(
                    len(data) - index, _count(answer) - (page - 1) * page_size - index
                )
                break
            if trace_id in seen:
                continue
            seen.add(trace_id)
            listed.append((trace_id, stamp, moment))
        progress(f"langfuse: page {page} of {total_pages}, {len(data)} traces")
        ticker.update(current=f"langfuse: page {result.pages}")
        if recent or not data or page >= total_pages:
            break
        page += 1
    start_moment = _time(start, client, "cursor") if start else None
    with PulledFile(out_dir, "langfuse", client.host, now, ticker) as pulled:
        for trace_id, _stamp, moment in listed:
            if moment == start_moment and trace_id in pulled_at_start:
                result.already += 1
                continue
            detail = client.get(f"/api/public/traces/{urllib.parse.quote(trace_id, safe='')}")
            if detail is None:
                result.vanished += 1
                continue
            record = _export(detail, trace_id, client)
            pulled.write([record])
            result.traces += 1
            result.observations += len(record["observations"])
            result.scores += len(record["trace"]["scores"])
            result.trace_ids.append(trace_id)
    result.file = pulled.written
    ticker.finish()
    result.retries = client.retries
    timestamp, ids = start, sorted(pulled_at_start)
    if listed:
        last = listed[-1][2]
        timestamp = listed[-1][1]
        same = {t for t, _s, m in listed if m == last}
        ids = sorted(same | (pulled_at_start if last == start_moment else set()))
    state = {
        "host": client.host,
        "key_fingerprint": client.key_fingerprint,
        "timestamp": timestamp,
        "ids": ids,
        "updated_at": _iso(now),
    }
    _CURSOR.save(path, state)
    return result


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(text: Any, client: LangfuseClient, what: str) -> datetime:
    return iso_time(text, f"Langfuse at {client.host}", what, "timestamp")


def _count(answer: Any) -> int:
    total = answer.get("meta", {}).get("totalItems")
    return total if isinstance(total, int) else 0


def _page(answer: Any, client: LangfuseClient, page: int) -> tuple[list[dict[str, Any]], int]:
    """The traces of a list page and its ``meta.totalPages``, checked."""
    data = answer.get("data") if isinstance(answer, dict) else None
    meta = answer.get("meta") if isinstance(answer, dict) else None
    total = meta.get("totalPages") if isinstance(meta, dict) else None
    if not isinstance(data, list) or not isinstance(total, int):
        raise RemoteError(
            f"Langfuse at {client.host} sent page {page} of GET /api/public/traces without "
            f"'data' and 'meta.totalPages': {str(answer)[:200]}"
        )
    for item in data:
        if not (
            isinstance(item, dict) and isinstance(item.get("id"), str) and item.get("timestamp")
        ):
            raise RemoteError(
                f"Langfuse at {client.host} sent a malformed trace on page {page}: "
                f"{str(item)[:200]}"
            )
    return data, total


def _export(detail: Any, trace_id: str, client: LangfuseClient) -> dict[str, Any]:
    """``{"trace": {... "scores": [...]}, "observations": [...]}`` from a
    ``TraceWithFullDetails``, checked."""
    observations = detail.get("observations") if isinstance(detail, dict) else None
    scores = detail.get("scores") if isinstance(detail, dict) else None
    if (
        not isinstance(detail, dict)
        or detail.get("id") != trace_id
        or not isinstance(observations, list)
        or not all(isinstance(o, dict) for o in observations)
        or not isinstance(scores, list)
    ):
        raise RemoteError(
            f"Langfuse at {client.host} sent trace {trace_id} without its observations and "
            f"scores (GET /api/public/traces/{{id}}): {str(detail)[:200]}"
        )
    trace = {k: v for k, v in detail.items() if k not in ("observations", "_deprecation")}
    return {"trace": trace, "observations": observations}


def _load_cursor(path: Path, client: LangfuseClient) -> dict[str, Any] | None:
    cursor = _CURSOR.load(path, {"host": client.host})
    if cursor is not None and cursor.get("key_fingerprint") != client.key_fingerprint:
        raise InputError(
            f"{path}: this cursor was made with another LANGFUSE_PUBLIC_KEY (another project at "
            f"{client.host}); remove it to pull this project from the start, or use another "
            "--data-dir"
        )
    return cursor

"""Pull a Phoenix project's spans and annotations into a trace file coach ingests, incrementally.

Phoenix (https://github.com/Arize-ai/phoenix) REST API, read from the server's routes
(``phoenix/server/api/routers/v1/spans.py`` and ``annotations.py``, arize-phoenix 20):

- ``GET /v1/projects/{name}`` gives the project's id (``{"data": {"id", "name"}}``);
- ``GET /v1/projects/{name}/spans?sort=id&order=asc&limit=N&cursor=C[&start_time=ISO]`` pages
  through the spans in the order they were stored (``{"data": [span], "next_cursor"}``); each
  span's ``id`` is its Global ID, which is also a cursor (inclusive) for ``sort=id``;
- ``GET /v1/projects/{name}/span_annotations?span_ids=...`` and ``.../trace_annotations?
  trace_ids=...`` page through the annotations of those spans and traces (at most 1,000 ids).

A pull reads every span stored after the cursor, groups them by trace, and writes the traces
whose root span (no ``parent_id``) has arrived, with their annotations, as JSON Lines: one
Phoenix span or annotation per line, the ``openinference`` format's Phoenix span export
(:mod:`pipeline.ingest.formats.openinference`). A trace without its root yet (the agent is still
running: the root span ends and is exported last) waits for the next pull, unless its newest
span ended more than ``settle_s`` ago (the root will never come). The cursor then points at the
first span of the oldest waiting trace (or after the last span read), and the traces written
from there on are listed in it so that the next pull does not write them again.

The cursor (``<data dir>/pull/phoenix-<project>.json``, :func:`cursor_path`) records the
endpoint, project name and id; a cursor of another server or project is refused. Everything
is read before anything is written: a failure leaves no file and the cursor as it was. The
trace file is written first, then the cursor (both atomically): a crash between them makes the
next pull write the same traces again, which ingest counts as duplicates.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import InputError, RemoteError
from pipeline.fileio import atomic_write, replacing
from pipeline.progress import Meter, Ticker
from pipeline.remote.http import NOT_FOUND, JsonClient

__all__ = [
    "CURSOR_FORMAT",
    "DEFAULT_ENDPOINT",
    "PullResult",
    "cursor_path",
    "phoenix_client",
    "phoenix_endpoint",
    "pull_phoenix",
]

DEFAULT_ENDPOINT = "http://localhost:6006"
CURSOR_FORMAT = 1
_ID_CHUNK = 100  # span or trace ids per annotations request (the server takes up to 1,000)


def phoenix_endpoint(explicit: str | None = None, env: dict[str, str] | None = None) -> str:
    """The base URL of the Phoenix server: ``explicit`` (``--endpoint``), else
    ``PHOENIX_COLLECTOR_ENDPOINT`` (a trailing ``/v1/traces`` is dropped), else ``PHOENIX_HOST``
    (a bare host gets ``http://`` and ``PHOENIX_PORT``, default 6006), else
    :data:`DEFAULT_ENDPOINT`; without a trailing slash."""
    env = dict(os.environ) if env is None else env
    url = explicit or env.get("PHOENIX_COLLECTOR_ENDPOINT") or ""
    if not url and env.get("PHOENIX_HOST"):
        host = env["PHOENIX_HOST"]
        host = "127.0.0.1" if host == "0.0.0.0" else host
        url = host if "://" in host else f"http://{host}:{env.get('PHOENIX_PORT') or 6006}"
    url = (url or DEFAULT_ENDPOINT).rstrip("/")
    return url[: -len("/v1/traces")] if url.endswith("/v1/traces") else url


def phoenix_client(endpoint: str, env: dict[str, str] | None = None) -> JsonClient:
    """A :class:`JsonClient` for Phoenix at ``endpoint``, sending ``PHOENIX_API_KEY`` (from the
    environment only) as a bearer token when it is set."""
    env = dict(os.environ) if env is None else env
    key = env.get("PHOENIX_API_KEY", "").strip()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return JsonClient(
        endpoint,
        headers,
        service="Phoenix",
        key_hint="set PHOENIX_API_KEY to a valid key",
        reach_hint="the endpoint (--endpoint, PHOENIX_COLLECTOR_ENDPOINT or PHOENIX_HOST)",
    )


def cursor_path(data_dir: Path, project: str) -> Path:
    """Where the cursor of ``project`` is kept: ``data_dir/pull/phoenix-<slug>.json``."""
    return data_dir / "pull" / f"phoenix-{_slug(project)}.json"


@dataclass
class PullResult:
    """What a pull did: ``file`` written (None when nothing new), the ``spans``, ``traces``
    and ``annotations`` in it, ``waiting`` traces without their root span (left for the next
    pull), ``already`` spans of traces an earlier pull wrote, ``pages`` of spans read, and the
    ``cursor`` file."""

    endpoint: str
    project: str
    file: Path | None
    cursor: Path
    spans: int = 0
    traces: int = 0
    annotations: int = 0
    waiting: int = 0
    already: int = 0
    pages: int = 0
    first_pull: bool = True
    trace_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the trace ids)."""
        return {
            "source": "phoenix",
            "endpoint": self.endpoint,
            "project": self.project,
            "file": None if self.file is None else str(self.file),
            "cursor": str(self.cursor),
            "first_pull": self.first_pull,
            "spans": self.spans,
            "traces": self.traces,
            "annotations": self.annotations,
            "waiting_traces": self.waiting,
            "already_pulled_spans": self.already,
            "pages": self.pages,
        }


def pull_phoenix(
    client: JsonClient,
    project: str,
    out_dir: Path,
    data_dir: Path,
    *,
    since: datetime | None = None,
    settle_s: float = 600.0,
    page_size: int = 500,
    annotations: bool = True,
    now: datetime | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    meter: Meter | None = None,
) -> PullResult:
    """Pull the spans of Phoenix ``project`` stored since the last pull (see the module
    docstring) into ``out_dir/phoenix-<project>-<UTC time>.jsonl``, and move the cursor.

    ``since`` (timezone-aware) leaves out spans that started before it; ``settle_s`` (seconds)
    is how long after its newest span a trace without its root span is written anyway;
    ``page_size`` spans per request (1 to 1,000); ``now`` defaults to the current time.
    ``progress`` is given a line per page; ``meter`` the counts (:class:`~pipeline.progress.Tally`,
    stage ``pull phoenix``): the spans and annotations received, then the file written and
    its bytes.

    Raises:
        RemoteError: the server is down, refuses the key, sends a cut-off or malformed page,
            spans out of order (a server without ``sort=id``), or the project does not exist.
        InputError: the cursor file is unreadable or belongs to another endpoint or project.
    """
    now = now or datetime.now(UTC)
    path = cursor_path(data_dir, project)
    cursor = _load_cursor(path, client.base_url, project)
    found = client.get(f"/v1/projects/{_quote(project)}", allow_404=True)
    if found is NOT_FOUND:
        raise RemoteError(
            f"Phoenix at {client.base_url} has no project {project!r}; check --project (the "
            "name shown in Phoenix's project list)"
        )
    project_id = _field(found, "data", client, "project").get("id")
    if cursor and cursor.get("project_id") != project_id:
        raise InputError(
            f"{path}: this cursor belongs to project id {cursor.get('project_id')!r}, but "
            f"{project!r} at {client.base_url} is {project_id!r} (the project was recreated, or "
            "the cursor was copied from elsewhere); remove the file to pull the project from "
            "the start"
        )
    result = PullResult(client.base_url, project, None, path, first_pull=cursor is None)
    start = cursor.get("resume") if cursor else None
    written_before = set(cursor.get("written_traces", [])) if cursor else set()
    ticker = Ticker(meter, "pull phoenix")
    pages = _read_spans(client, project, start, since, page_size, result, progress, ticker)
    spans = list(pages)
    if start and start.get("inclusive") is False:
        spans = [s for s in spans if s["id"] != start["span"]]
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(span["context"]["trace_id"], []).append(span)
    ready, waiting = [], []
    for trace_id, members in by_trace.items():
        if trace_id in written_before:
            result.already += len(members)
        elif any(not s.get("parent_id") for s in members) or _settled(members, now, settle_s):
            ready.append(trace_id)
        else:
            waiting.append(trace_id)
    result.waiting = len(waiting)
    notes = _annotations(client, project, ready, by_trace) if annotations and ready else []
    ticker.add(records=len(notes))
    written = [s for t in ready for s in by_trace[t]]
    result.spans, result.traces, result.annotations = len(written), len(ready), len(notes)
    result.trace_ids = ready
    if written:
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        result.file = out_dir / f"phoenix-{_slug(project)}-{stamp}.jsonl"
        with replacing(result.file) as tmp, tmp.open("w", encoding="utf-8") as handle:
            for record in [*written, *notes]:
                handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        ticker.add(files=1, size=result.file.stat().st_size)
    resume: dict[str, Any] | None = start
    keep = sorted(written_before)
    if spans:
        resume, keep = _next_cursor(spans, waiting, set(ready) | written_before)
    state = {
        "format_version": CURSOR_FORMAT,
        "source": "phoenix",
        "endpoint": client.base_url,
        "project": project,
        "project_id": project_id,
        "resume": resume,
        "written_traces": keep,
        "waiting_traces": len(waiting),
        "updated_at": now.isoformat().replace("+00:00", "Z"),
        "last_file": str(result.file) if result.file else (cursor or {}).get("last_file"),
    }
    atomic_write(path, json.dumps(state, indent=2, sort_keys=True) + "\n")
    ticker.finish()
    return result


def _slug(project: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", project).strip("-.") or "project"


def _quote(text: str) -> str:
    import urllib.parse

    return urllib.parse.quote(text, safe="")


def _load_cursor(path: Path, endpoint: str, project: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the pull cursor ({exc}); remove it") from exc
    if not isinstance(state, dict) or state.get("format_version") != CURSOR_FORMAT:
        raise InputError(f"{path}: not a Phoenix pull cursor this coach reads; remove it")
    if state.get("project") != project or state.get("endpoint") != endpoint:
        raise InputError(
            f"{path}: this cursor is for project {state.get('project')!r} at "
            f"{state.get('endpoint')}, not {project!r} at {endpoint}; use another --data-dir "
            "for another server, or remove the file to pull from the start"
        )
    return state


def _field(body: Any, key: str, client: JsonClient, what: str) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict | list):
        raise RemoteError(
            f"Phoenix at {client.base_url} sent a {what} answer without {key!r} "
            f"({str(body)[:200]}); is it a Phoenix server?"
        )
    return body[key]


def _row(span: dict[str, Any]) -> int:
    """The row number inside a span's Global ID (``base64("Span:<n>")``), its storage order."""
    try:
        kind, _, number = base64.b64decode(str(span["id"])).decode("ascii").partition(":")
        if kind != "Span":
            raise ValueError(kind)
        return int(number)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise RemoteError(f"a span without a Phoenix span id: {str(span)[:200]}") from exc


def _read_spans(
    client: JsonClient,
    project: str,
    start: dict[str, Any] | None,
    since: datetime | None,
    page_size: int,
    result: PullResult,
    progress: Callable[[str], None],
    ticker: Ticker,
) -> Iterator[dict[str, Any]]:
    next_cursor = start["span"] if start else None
    last = -1
    while True:
        ticker.update(current=f"spans page {result.pages + 1}")
        params: dict[str, Any] = {
            "sort": "id",
            "order": "asc",
            "limit": page_size,
            "cursor": next_cursor,
            "start_time": since.isoformat() if since else None,
        }
        path = f"/v1/projects/{_quote(project)}/spans"
        page = client.get(path, params)
        data = _field(page, "data", client, f"spans page {result.pages + 1} of {project!r}")
        result.pages += 1
        for span in data:
            if not isinstance(span, dict) or not isinstance(span.get("context"), dict):
                raise RemoteError(
                    f"Phoenix at {client.base_url} sent a malformed span on page {result.pages} "
                    f"of {project!r}: {str(span)[:200]}"
                )
            row = _row(span)
            if row <= last:
                raise RemoteError(
                    f"Phoenix at {client.base_url} sent spans out of storage order; coach pull "
                    "needs a Phoenix whose span API takes sort=id&order=asc (upgrade Phoenix)"
                )
            last = row
            yield span
        progress(f"phoenix: page {result.pages}, {len(data)} spans")
        ticker.add(records=len(data))
        next_cursor = page.get("next_cursor")
        if not next_cursor:
            return
        if not data:
            raise RemoteError(
                f"Phoenix at {client.base_url} sent an empty page with a next cursor for "
                f"{project!r}; the page is truncated, try again"
            )


def _settled(members: Sequence[dict[str, Any]], now: datetime, settle_s: float) -> bool:
    ends = [s.get("end_time") or s.get("start_time") for s in members]
    times = []
    for text in ends:
        try:
            times.append(datetime.fromisoformat(str(text).replace("Z", "+00:00")))
        except ValueError:
            continue
    newest = max(times, default=None)
    if newest is None:
        return False
    newest = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
    return (now - newest).total_seconds() > settle_s


def _next_cursor(
    spans: list[dict[str, Any]], waiting: list[str], written: set[str]
) -> tuple[dict[str, Any], list[str]]:
    """Where the next pull starts, and the written traces it may read again from there."""
    if not waiting:
        return {"span": spans[-1]["id"], "inclusive": False}, []
    pending = set(waiting)
    first = next(i for i, s in enumerate(spans) if s["context"]["trace_id"] in pending)
    again = {s["context"]["trace_id"] for s in spans[first:]} & written
    return {"span": spans[first]["id"], "inclusive": True}, sorted(again)


def _annotations(
    client: JsonClient,
    project: str,
    traces: list[str],
    by_trace: dict[str, list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """The span annotations of the spans of ``traces`` (each given its ``trace_id``) and the
    trace annotations of ``traces``."""
    trace_of = {s["context"]["span_id"]: t for t in traces for s in by_trace[t]}
    found: list[dict[str, Any]] = []
    for kind, ids, param in (
        ("span", sorted(trace_of), "span_ids"),
        ("trace", sorted(traces), "trace_ids"),
    ):
        for chunk in range(0, len(ids), _ID_CHUNK):
            for note in _pages(
                client,
                f"/v1/projects/{_quote(project)}/{kind}_annotations",
                {param: ids[chunk : chunk + _ID_CHUNK], "limit": 1000},
            ):
                if kind == "span" and note.get("span_id") in trace_of:
                    note = {**note, "trace_id": trace_of[note["span_id"]]}
                found.append(note)
    return found


def _pages(client: JsonClient, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    cursor = None
    while True:
        page = client.get(path, {**params, "cursor": cursor}, allow_404=True)
        if page is NOT_FOUND:  # no annotations on these spans, or a server without the route
            return
        for item in _field(page, "data", client, f"annotations page of {path}"):
            if isinstance(item, dict):
                yield item
        cursor = page.get("next_cursor")
        if not cursor:
            return

"""Pull a Phoenix project's spans and annotations into a trace file coach ingests, incrementally.

Phoenix (https://github.com/Arize-ai/phoenix) REST API, read from the server's routes
(``phoenix/server/api/routers/v1/spans.py`` and ``annotations.py``, arize-phoenix 20):

- ``GET /v1/projects/{name}`` gives the project's id (``{"data": {"id", "name"}}``);
- ``GET /v1/projects/{name}/spans?sort=id&order=asc&limit=N&cursor=C[&start_time=ISO]`` pages
  through the spans in the order they were stored (``{"data": [span], "next_cursor"}``); each
  span's ``id`` is its Global ID, which is also a cursor (inclusive) for ``sort=id``;
- ``GET /v1/projects/{name}/span_annotations?span_ids=...`` and ``.../trace_annotations?
  trace_ids=...`` page through the annotations of those spans and traces (at most 1,000 ids;
  404 when none of them exists), each ``{"id", "span_id" | "trace_id", "name",
  "annotator_kind", "result", "metadata", "identifier", "created_at", "updated_at", ...}``; an
  annotation posted again with the same name and identifier keeps its ``id`` and gets a new
  ``updated_at``. They filter by ids and identifiers only, not by time (arize-phoenix 20.26.1).

A pull reads every span stored after the cursor (at most ``max_spans`` of traces not written
yet), groups them by trace, and writes the traces whose root span (no ``parent_id``) has
arrived, with their annotations, as JSON Lines: one Phoenix span or annotation per line, the
``openinference`` format's Phoenix span export (:mod:`pipeline.ingest.formats.openinference`).
A trace without its root yet (the agent is still running: the root span ends and is exported
last) waits for the next pull, unless its newest span ended more than ``settle_s`` ago (the
root will never come; when ``max_spans`` stopped the reading, ago means before the newest span
read, so a root stored past the stop is waited for). The cursor then points at the first span
of the oldest waiting trace (or after the last span read), and the traces written from there on
are listed in it so that the next pull does not write them again.

Late annotations: the cursor keeps, for each trace pulled in the last ``recheck_s`` seconds,
its root span id and the ``id`` and ``updated_at`` of each annotation written. Every pull reads
again the annotations of those traces and of their root spans, and writes those not written in
that version, with their ``trace_id`` and without the spans: ingest adds them to the stored
trajectory as ``feedback`` (its outcome when it had none). A late annotation of a span below
the root (a step's feedback) is not read.

The cursor (``<data dir>/pull/phoenix-<project>.json``, :func:`cursor_path`) records the
endpoint, project name and id; a cursor of another server or project is refused. Its format
(:data:`CURSOR_FORMAT`) is upgraded when read: format 1 had no list of pulled traces, so the
traces pulled before the upgrade are not read again for late annotations. Everything is read
before anything is written: a failure leaves no file and the cursor as it was. The trace file
is written first, then the cursor (both atomically): a crash between them makes the next pull
write the same traces and annotations again, which ingest counts as duplicates.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.errors import InputError, RemoteError
from pipeline.fileio import atomic_write, replacing
from pipeline.progress import Meter, Ticker
from pipeline.remote.http import NOT_FOUND, JsonClient

__all__ = [
    "CURSOR_FORMAT",
    "DEFAULT_ENDPOINT",
    "RECHECK_S",
    "PullResult",
    "cursor_path",
    "phoenix_client",
    "phoenix_endpoint",
    "pull_phoenix",
]

DEFAULT_ENDPOINT = "http://localhost:6006"
CURSOR_FORMAT = 2
RECHECK_S = 30 * 86400.0  # how long after its pull a trace's annotations are read again
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
    and ``annotations`` in it (``late_annotations`` of them on traces an earlier pull wrote),
    ``waiting`` traces without their root span (left for the next pull), ``already`` spans of
    traces an earlier pull wrote, ``rechecked`` earlier traces whose annotations were read
    again, ``pages`` of spans read, ``capped`` when ``max_spans`` stopped the reading (more
    spans wait), and the ``cursor`` file."""

    endpoint: str
    project: str
    file: Path | None
    cursor: Path
    spans: int = 0
    traces: int = 0
    annotations: int = 0
    late_annotations: int = 0
    waiting: int = 0
    already: int = 0
    rechecked: int = 0
    pages: int = 0
    capped: bool = False
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
            "late_annotations": self.late_annotations,
            "waiting_traces": self.waiting,
            "already_pulled_spans": self.already,
            "rechecked_traces": self.rechecked,
            "pages": self.pages,
            "capped": self.capped,
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
    recheck_s: float = RECHECK_S,
    max_spans: int | None = None,
    now: datetime | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    meter: Meter | None = None,
) -> PullResult:
    """Pull the spans of Phoenix ``project`` stored since the last pull (see the module
    docstring) into ``out_dir/phoenix-<project>-<UTC time>.jsonl``, and move the cursor.

    ``since`` (timezone-aware) leaves out spans that started before it; ``settle_s`` (seconds)
    is how long after its newest span a trace without its root span is written anyway;
    ``page_size`` spans per request (1 to 1,000); ``annotations`` False leaves annotations out
    (and reads none again); ``recheck_s`` (seconds, 0: never) how long after its pull a trace's
    annotations are read again for late ones; ``max_spans`` the most spans of traces not
    written yet that one pull reads (None: all; the next pull goes on from there); ``now``
    defaults to the current time.
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
    horizon = now - timedelta(seconds=recheck_s)
    pulled: dict[str, dict[str, Any]] = {
        t: entry
        for t, entry in (cursor or {}).get("pulled_traces", {}).items()
        if recheck_s > 0 and (_when(entry.get("pulled_at")) or horizon) > horizon
    }
    ticker = Ticker(meter, "pull phoenix")
    spans: list[dict[str, Any]] = []
    fresh = 0  # spans of traces not written before
    for span in _read_spans(client, project, start, since, page_size, result, progress, ticker):
        if start and start.get("inclusive") is False and span["id"] == start["span"]:
            continue
        if max_spans is not None and fresh >= max_spans:
            result.capped = True
            break
        spans.append(span)
        fresh += span["context"]["trace_id"] not in written_before
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(span["context"]["trace_id"], []).append(span)
    settle_at = min(now, _newest(spans) or now) if result.capped else now
    ready, waiting = [], []
    for trace_id, members in by_trace.items():
        if trace_id in written_before:
            result.already += len(members)
        elif any(not s.get("parent_id") for s in members) or _settled(members, settle_at, settle_s):
            ready.append(trace_id)
        else:
            waiting.append(trace_id)
    result.waiting = len(waiting)
    notes: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    if annotations and ready:
        spans_of = {s["context"]["span_id"]: t for t in ready for s in by_trace[t]}
        notes = _annotations(client, project, spans_of, ready)
    if annotations and pulled:
        again = sorted(set(pulled) - set(ready))
        roots = {pulled[t]["root"]: t for t in again if pulled[t].get("root")}
        result.rechecked = len(again)
        late = [
            note
            for note in _annotations(client, project, roots, again)
            if pulled[note["trace_id"]].get("annotations", {}).get(_note_key(note))
            != note.get("updated_at")
        ]
    ticker.add(records=len(notes) + len(late))
    written = [s for t in ready for s in by_trace[t]]
    result.spans, result.traces = len(written), len(ready)
    result.annotations, result.late_annotations = len(notes) + len(late), len(late)
    result.trace_ids = ready
    for trace_id in ready if recheck_s > 0 else []:
        root = next(
            (s["context"]["span_id"] for s in by_trace[trace_id] if not s.get("parent_id")), None
        )
        pulled[trace_id] = {"root": root, "pulled_at": now.isoformat(), "annotations": {}}
    for note in [note for note in [*notes, *late] if note["trace_id"] in pulled]:
        seen = pulled[note["trace_id"]].setdefault("annotations", {})
        seen[_note_key(note)] = note.get("updated_at")
    if written or late:
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        result.file = out_dir / f"phoenix-{_slug(project)}-{stamp}.jsonl"
        with replacing(result.file) as tmp, tmp.open("w", encoding="utf-8") as handle:
            for record in [*written, *notes, *late]:
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
        "pulled_traces": pulled,
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
    if not isinstance(state, dict) or not isinstance(state.get("format_version"), int):
        raise InputError(f"{path}: not a Phoenix pull cursor; remove it")
    while 0 < state["format_version"] < CURSOR_FORMAT:
        state = _UPGRADES[state["format_version"] - 1](state)
    if state["format_version"] != CURSOR_FORMAT:
        raise InputError(
            f"{path}: a Phoenix pull cursor of format {state['format_version']}, which this coach "
            f"does not read (it reads up to {CURSOR_FORMAT}): upgrade coach, or remove the file "
            "to pull from the start"
        )
    traces = state.get("pulled_traces")
    if not isinstance(traces, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("annotations", {}), dict) for e in traces.values()
    ):
        raise InputError(f"{path}: 'pulled_traces' is not an object of objects; remove the file")
    if state.get("project") != project or state.get("endpoint") != endpoint:
        raise InputError(
            f"{path}: this cursor is for project {state.get('project')!r} at "
            f"{state.get('endpoint')}, not {project!r} at {endpoint}; use another --data-dir "
            "for another server, or remove the file to pull from the start"
        )
    return state


def _m001_pulled_traces(state: dict[str, Any]) -> dict[str, Any]:
    """Format 1 to 2: the traces pulled, for late annotations (none known from format 1)."""
    return {**state, "format_version": 2, "pulled_traces": {}}


# Cursor upgrades in order: _UPGRADES[n - 1] turns format n into n + 1.
_UPGRADES: list[Callable[[dict[str, Any]], dict[str, Any]]] = [_m001_pulled_traces]


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


def _when(text: Any) -> datetime | None:
    """ISO 8601 ``text`` as a time (UTC when without a zone); None when it is not one."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _newest(members: Sequence[dict[str, Any]]) -> datetime | None:
    """The latest end (else start) time of ``members``."""
    times = [_when(s.get("end_time") or s.get("start_time")) for s in members]
    return max((t for t in times if t is not None), default=None)


def _settled(members: Sequence[dict[str, Any]], now: datetime, settle_s: float) -> bool:
    newest = _newest(members)
    return newest is not None and (now - newest).total_seconds() > settle_s


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
    client: JsonClient, project: str, spans_of: dict[str, str], traces: list[str]
) -> list[dict[str, Any]]:
    """The span annotations of the spans ``spans_of`` names (``{span id: trace id}``; each
    annotation given its ``trace_id``) and the trace annotations of ``traces``."""
    found: list[dict[str, Any]] = []
    wanted = set(traces)
    for kind, ids, param in (
        ("span", sorted(spans_of), "span_ids"),
        ("trace", sorted(traces), "trace_ids"),
    ):
        for chunk in range(0, len(ids), _ID_CHUNK):
            for note in _pages(
                client,
                f"/v1/projects/{_quote(project)}/{kind}_annotations",
                {param: ids[chunk : chunk + _ID_CHUNK], "limit": 1000},
            ):
                if kind == "span" and note.get("span_id") in spans_of:
                    found.append({**note, "trace_id": spans_of[note["span_id"]]})
                elif kind == "trace" and note.get("trace_id") in wanted:
                    found.append(note)
    return found


def _note_key(note: dict[str, Any]) -> str:
    """What tells an annotation from the others of its trace: its Global ID, else its target,
    name and identifier."""
    target = note.get("span_id") or note.get("trace_id")
    return str(note.get("id") or f"{target}/{note.get('name')}/{note.get('identifier') or ''}")


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

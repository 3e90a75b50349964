"""Pull a LangSmith project's traces (root runs with their child runs) and feedback into a trace
file coach ingests, incrementally.

The LangSmith REST API as the langsmith Python SDK calls it (langchain-ai/langsmith-sdk
``python/langsmith/client.py`` at ``bc8dd672a7b9e7d09bcb2fdada0baff80700f9b0``: ``read_project``,
``list_runs``, ``_get_cursor_paginated_list``, ``list_feedback``, ``_get_paginated_list``), with
the shapes of its OpenAPI definition (``js/src/_openapi_client/resources/runs/runs.ts``,
``sessions/sessions.ts``, ``feedback/feedback.ts``, ``core/pagination.ts`` at
``7423a8aa98b3650fc12e64d156cb1ad958444037``):

- ``GET /sessions?name=N&limit=1``: a list of ``TracerSession`` (``{"id", "name", ...}``), empty
  when no project has the name;
- ``POST /runs/query`` ``{"session": [project id], "is_root": true, "start_time": ISO, "select",
  "limit", "cursor"}`` (``RunQueryParams``; ``"trace": id`` for every run of one trace) answers
  ``{"runs": [RunSchema], "cursors": {"next": C | null}}``; the next page is asked for with
  ``cursor`` = ``cursors.next`` until it is null or ``runs`` is empty;
- ``GET /feedback?run=ID&run=ID&limit=100&offset=O``: a list of ``FeedbackSchema`` (``{"id",
  "key", "score", "value", "comment", "correction", "run_id", "trace_id", "feedback_source"}``),
  paged by ``offset`` until a page is short.

The key goes in ``x-api-key``, from ``LANGSMITH_API_KEY``, else ``LANGCHAIN_API_KEY`` (the
environment only), with ``X-Tenant-Id`` from ``LANGSMITH_WORKSPACE_ID`` when set; the server is
:func:`langsmith_endpoint`. A 429 or a 500, 502, 503 or 504 is retried after ``Retry-After``,
else with exponential backoff, a bounded number of times (:class:`~pipeline.remote.http.Retry`).

A pull lists the project's root runs from the cursor's start time on, leaves out those the cursor
lists as pulled, and keeps for the next pull every root run that has not ended or ended less than
``settle_s`` ago (its child runs and feedback may still arrive). Each other trace is read whole
and written as JSON Lines, one run per line in ``dotted_order`` (root first), as ``list_runs``
returns it with its feedback in a ``feedback`` list: what the ``langsmith`` format reads
(:mod:`pipeline.ingest.formats.langsmith`; tool runs become tool calls, feedback the outcome).

The cursor (:func:`cursor_path`) records the endpoint, the project's name and id, the start time
the next pull lists from (that of the oldest trace still waiting, else of the newest listed) and
the ids of the traces pulled since; a cursor of another endpoint or project is refused. Each
trace is written as it is read, to a temporary file that becomes the trace file only when the
pull is done (:class:`~pipeline.remote.pull.PulledFile`): a failure leaves no file and the
cursor as it was. The trace file is written first, then the cursor (both atomically).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, InputError, RemoteError
from pipeline.progress import Meter, Ticker
from pipeline.remote.http import JsonClient
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
    "DEFAULT_ENDPOINT",
    "RUN_FIELDS",
    "LangSmithClient",
    "LangSmithPullResult",
    "cursor_path",
    "langsmith_client",
    "langsmith_endpoint",
    "langsmith_project",
    "pull_langsmith",
]

DEFAULT_ENDPOINT = "https://api.smith.langchain.com"
CURSOR_FORMAT = 1
_CURSOR = CursorFormat(
    "langsmith",
    "LangSmith",
    CURSOR_FORMAT,
    strings=("project_id",),
    optional_strings=("start_time",),
)
# The fields list_runs selects by default (client.py ``default_select``).
RUN_FIELDS = (
    "app_path", "completion_cost", "completion_tokens", "dotted_order", "end_time", "error",
    "events", "extra", "feedback_stats", "first_token_time", "id", "inputs", "name", "outputs",
    "parent_run_id", "parent_run_ids", "prompt_cost", "prompt_tokens", "reference_example_id",
    "run_type", "session_id", "start_time", "status", "tags", "total_cost", "total_tokens",
    "trace_id",
)  # fmt: skip
_FEEDBACK_PAGE = 100  # list_feedback's page size
_RUNS_PER_FEEDBACK_REQUEST = 50  # run ids per GET /feedback, to keep the URL short
_KEY_HINT = (
    "set LANGSMITH_API_KEY (or LANGCHAIN_API_KEY) to an API key of the workspace "
    "(LangSmith: Settings > API Keys), LANGSMITH_WORKSPACE_ID for an org-scoped key, and "
    "LANGSMITH_ENDPOINT to the server that issued it"
)


def _env_value(env: Mapping[str, str], *names: str) -> str:
    """The first of ``names`` set in ``env``, without blanks and quotes (SDK ``utils.py``)."""
    for name in names:
        value = env.get(name, "").strip().strip('"').strip("'")
        if value:
            return value
    return ""


def langsmith_endpoint(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The LangSmith API URL: ``explicit`` (``--endpoint``), else ``LANGSMITH_ENDPOINT``, else
    ``LANGCHAIN_ENDPOINT``, else :data:`DEFAULT_ENDPOINT`; a bare host name gets ``https://``;
    without a trailing slash."""
    env = os.environ if env is None else env
    url = (explicit or "").strip() or _env_value(env, "LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT")
    url = (url or DEFAULT_ENDPOINT).rstrip("/")
    return url if "://" in url else f"https://{url}"


def langsmith_project(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The project to pull: ``explicit`` (``--project``), else ``LANGSMITH_PROJECT``, else
    ``LANGCHAIN_PROJECT``.

    Raises:
        ConfigError: none is given.
    """
    env = os.environ if env is None else env
    name = (explicit or "").strip() or _env_value(env, "LANGSMITH_PROJECT", "LANGCHAIN_PROJECT")
    if not name:
        raise ConfigError(
            "no LangSmith project given: pass --project NAME or set LANGSMITH_PROJECT"
        )
    return name


def cursor_path(data_dir: Path, endpoint: str, project: str) -> Path:
    """Where the cursor of ``project`` at ``endpoint`` is kept:
    ``data_dir/pull/langsmith-<12 hex of SHA-256 of endpoint and project>.json``."""
    key = digest(endpoint + "\n" + project)
    return data_dir / "pull" / f"langsmith-{key}.json"


@dataclass
class LangSmithClient(RetryingClient):
    """JSON requests to the LangSmith API at ``endpoint`` (see the module docstring) with
    ``api_key`` in ``x-api-key`` (and ``workspace_id`` in ``X-Tenant-Id`` when given), through
    :class:`~pipeline.remote.http.JsonClient`. A 429 or 5xx is retried as the keyword-only
    settings of :class:`~pipeline.remote.pull.RetryingClient` say (``timeout_s``,
    ``max_retries``, ``backoff_s``, ``max_wait_s``, ``sleep``, ``on_retry``); :attr:`retries`
    counts the retries made.
    """

    endpoint: str
    api_key: str = field(repr=False)
    workspace_id: str | None = None

    def __post_init__(self) -> None:
        headers = {"x-api-key": self.api_key}
        if self.workspace_id:
            headers["X-Tenant-Id"] = self.workspace_id
        self.http = JsonClient(
            self.endpoint,
            headers,
            service="LangSmith",
            key_hint=_KEY_HINT,
            timeout_s=self.timeout_s,
            credentials="the API key",
            reach_hint="the endpoint (--endpoint, LANGSMITH_ENDPOINT or LANGCHAIN_ENDPOINT)",
            retry=self.retry_policy(),
        )

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` with query ``params`` (lists repeat the key) and return the decoded JSON.

        Raises:
            RemoteError: see :mod:`pipeline.remote.http` (nothing listening, 401/403 naming the
                key variables, a retried status that stays, a cut-off or non-JSON answer).
        """
        return self.http.get(path, params)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST ``body`` as JSON to ``path``; the decoded answer (raises as :meth:`get`)."""
        return self.http.post(path, body)


def langsmith_client(endpoint: str, env: Mapping[str, str] | None = None) -> LangSmithClient:
    """A :class:`LangSmithClient` for ``endpoint`` with the key of ``LANGSMITH_API_KEY``, else
    ``LANGCHAIN_API_KEY``, and the workspace of ``LANGSMITH_WORKSPACE_ID`` (environment only).

    Raises:
        ConfigError: no key is set.
    """
    env = os.environ if env is None else env
    key = _env_value(env, "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")
    if not key:
        raise ConfigError(
            f"LANGSMITH_API_KEY is not set: {_KEY_HINT} (keys are read from the environment only)"
        )
    return LangSmithClient(endpoint, key, _env_value(env, "LANGSMITH_WORKSPACE_ID") or None)


@dataclass(kw_only=True)
class LangSmithPullResult(TracePull):
    """What a pull of LangSmith project ``project`` (of id ``project_id``) at ``endpoint`` did
    (see :class:`~pipeline.remote.pull.TracePull`), with the ``runs``, ``tool_runs`` and
    ``feedback`` in the file; ``waiting`` traces have not ended or settled yet."""

    source = "langsmith"
    place = ("endpoint", "project", "project_id")
    contents = ("runs", "tool_runs", "feedback")

    endpoint: str
    project: str
    project_id: str
    runs: int = 0
    tool_runs: int = 0
    feedback: int = 0


def pull_langsmith(
    client: LangSmithClient,
    project: str,
    out_dir: Path,
    data_dir: Path,
    *,
    since: datetime | None = None,
    settle_s: float = 60.0,
    page_size: int = 100,
    now: datetime | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    meter: Meter | None = None,
) -> LangSmithPullResult:
    """Pull the traces of LangSmith project ``project`` that ended since the last pull (see the
    module docstring) into ``out_dir/langsmith-<host name>-<UTC time>.jsonl`` and move the
    cursor.

    ``since`` (timezone-aware) leaves out traces that started before it; ``settle_s`` (seconds):
    a trace whose root run ended less than this long before ``now`` (default: the current time),
    or has not ended, waits for the next pull; ``page_size`` runs per list request (1 to 100).
    ``progress`` is given a line per list page; ``meter`` the counts
    (:class:`~pipeline.progress.Tally`: records and bytes written, then the file).

    Raises:
        RemoteError: the server is down, refuses the key, keeps answering 429 or 5xx, or sends a
            cut-off answer or one that is not what the API documents.
        InputError: no project has that name, or the cursor file is unreadable or belongs to
            another endpoint or project.
    """
    now = now or datetime.now(UTC)
    path = cursor_path(data_dir, client.endpoint, project)
    cursor = _CURSOR.load(path, {"endpoint": client.endpoint, "project": project})
    project_id = _project_id(client, project)
    if cursor is not None and cursor["project_id"] != project_id:
        raise InputError(
            f"{path}: this cursor is for the project {project!r} of id {cursor['project_id']}, "
            f"but that name now belongs to the project of id {project_id} at {client.endpoint} "
            "(deleted and made again?); remove the cursor to pull this project from the start"
        )
    result = LangSmithPullResult(
        endpoint=client.endpoint,
        project=project,
        project_id=project_id,
        cursor=path,
        first_pull=cursor is None,
    )
    ticker = Ticker(meter, "pull langsmith")
    start: str | None = cursor["start_time"] if cursor else None
    pulled = set(cursor["ids"]) if cursor else set()
    if since is not None and (start is None or since > _time(start, client, "cursor")):
        start = since.astimezone(UTC).isoformat()
    body = {"session": [project_id], "is_root": True, "select": list(RUN_FIELDS)}
    body |= {"limit": page_size, "order": "asc"} | ({"start_time": start} if start else {})
    roots: dict[str, dict[str, Any]] = {}
    for page in _pages(client, body, "the project's root runs"):
        result.pages += 1
        for run in page:
            roots.setdefault(run["id"], run)
        progress(f"langsmith: page {result.pages}, {len(page)} root runs")
        ticker.update(current=f"langsmith: page {result.pages}")
    lower = _time(start, client, "cursor") if start else None
    cutoff = now - timedelta(seconds=settle_s)
    ready, waiting_starts, listed_starts = [], [], []
    for root in sorted(
        roots.values(), key=lambda r: (_time(r["start_time"], client, "run"), r["id"])
    ):
        started = _time(root["start_time"], client, f"run {root['id']}")
        if lower is not None and started < lower:
            continue  # the server filters on start_time; an older root is not ours to pull
        listed_starts.append((started, root["start_time"]))
        ended = root.get("end_time")
        if root["id"] in pulled:
            result.already += 1
        elif not ended or _time(ended, client, f"run {root['id']}") > cutoff:
            result.waiting += 1
            waiting_starts.append((started, root["start_time"]))
        else:
            ready.append(root)
    with PulledFile(out_dir, "langsmith", client.endpoint, now, ticker) as written:
        for root in ready:
            runs = _trace_runs(client, project_id, root)
            if not runs:
                result.vanished += 1
                continue
            feedback = _feedback(client, [r["id"] for r in runs])
            written.write(
                {**run, "feedback": feedback[run["id"]]} if run["id"] in feedback else run
                for run in runs
            )
            result.traces += 1
            result.runs += len(runs)
            result.tool_runs += sum(1 for r in runs if r.get("run_type") == "tool")
            result.feedback += sum(len(v) for v in feedback.values())
            result.trace_ids.append(root["id"])
            pulled.add(root["id"])
    result.file = written.written
    ticker.finish()
    result.retries = client.retries
    marks = waiting_starts or listed_starts[-1:]
    if marks:
        mark, start = min(marks) if waiting_starts else marks[0]
        keep = {r["id"] for r in roots.values() if _time(r["start_time"], client, "run") >= mark}
        pulled &= keep
    state = {
        "endpoint": client.endpoint,
        "project": project,
        "project_id": project_id,
        "start_time": start,
        "ids": sorted(pulled),
        "updated_at": now.astimezone(UTC).isoformat(),
    }
    _CURSOR.save(path, state)
    return result


def _time(text: Any, client: LangSmithClient, what: str) -> datetime:
    """A LangSmith time (``2024-04-05T01:28:54.085646``: UTC without a zone, or with one)."""
    return iso_time(text, f"LangSmith at {client.endpoint}", what)


def _project_id(client: LangSmithClient, project: str) -> str:
    """The id of the project named ``project`` (``GET /sessions?name=``), checked."""
    answer = client.get("/sessions", {"name": project, "limit": 1})
    if not isinstance(answer, list) or not all(isinstance(s, dict) for s in answer):
        raise RemoteError(
            f"LangSmith at {client.endpoint} answered GET /sessions with something that is not "
            f"a list of projects: {str(answer)[:200]}"
        )
    found = [s for s in answer if s.get("name") == project and isinstance(s.get("id"), str)]
    if not found:
        raise InputError(
            f"LangSmith at {client.endpoint} has no project named {project!r} that this API key "
            "can read; check --project (or LANGSMITH_PROJECT) and LANGSMITH_WORKSPACE_ID"
        )
    return str(found[0]["id"])


def _pages(client: LangSmithClient, body: dict[str, Any], what: str) -> Any:
    """The ``runs`` of each page of ``POST /runs/query`` with ``body``, following
    ``cursors.next`` (as ``_get_cursor_paginated_list``), each page checked."""
    query = dict(body)
    seen: set[str] = set()
    while True:
        answer = client.post("/runs/query", query)
        runs = answer.get("runs") if isinstance(answer, dict) else None
        cursors = answer.get("cursors") if isinstance(answer, dict) else None
        if not isinstance(runs, list) or not (cursors is None or isinstance(cursors, dict)):
            raise RemoteError(
                f"LangSmith at {client.endpoint} answered POST /runs/query ({what}) without "
                f"'runs' and 'cursors': {str(answer)[:200]}"
            )
        for run in runs:
            if not (
                isinstance(run, dict)
                and isinstance(run.get("id"), str)
                and isinstance(run.get("trace_id"), str)
                and run.get("start_time")
            ):
                raise RemoteError(
                    f"LangSmith at {client.endpoint} sent a run without id, trace_id or "
                    f"start_time ({what}): {str(run)[:200]}"
                )
        if not runs:
            return
        yield runs
        following = (cursors or {}).get("next")
        if not following:
            return
        if following in seen:
            raise RemoteError(
                f"LangSmith at {client.endpoint} sent the same page cursor twice ({what}); "
                "nothing was written, try again"
            )
        seen.add(following)
        query["cursor"] = following


def _trace_runs(
    client: LangSmithClient, project_id: str, root: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every run of the trace of ``root`` in ``dotted_order`` (root first); ``[]`` when the
    trace is gone."""
    body = {"session": [project_id], "trace": root["id"], "select": list(RUN_FIELDS), "limit": 100}
    runs: dict[str, dict[str, Any]] = {}
    for page in _pages(client, body, f"the runs of trace {root['id']}"):
        for run in page:
            if run["trace_id"] != root["id"]:
                raise RemoteError(
                    f"LangSmith at {client.endpoint} answered the runs of trace {root['id']} "
                    f"with run {run['id']} of trace {run['trace_id']}"
                )
            runs.setdefault(run["id"], run)
    if root["id"] not in runs:
        return []
    return sorted(runs.values(), key=lambda r: (r["id"] != root["id"], str(r.get("dotted_order"))))


def _feedback(client: LangSmithClient, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The feedback on ``run_ids`` by run id (``GET /feedback?run=...``, offset paging)."""
    found: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for at in range(0, len(run_ids), _RUNS_PER_FEEDBACK_REQUEST):
        chunk = run_ids[at : at + _RUNS_PER_FEEDBACK_REQUEST]
        offset = 0
        while True:
            params = {"run": chunk, "limit": _FEEDBACK_PAGE, "offset": offset}
            page = client.get("/feedback", params)
            if not isinstance(page, list) or not all(
                isinstance(f, dict) and isinstance(f.get("key"), str) and f.get("run_id")
                for f in page
            ):
                raise RemoteError(
                    f"LangSmith at {client.endpoint} answered GET /feedback with something that "
                    f"is not a list of feedback (id, key, run_id): {str(page)[:200]}"
                )
            for item in page:
                if str(item.get("id")) not in seen:
                    seen.add(str(item.get("id")))
                    found.setdefault(str(item["run_id"]), []).append(item)
            if len(page) < _FEEDBACK_PAGE:
                break
            offset += len(page)
    return found

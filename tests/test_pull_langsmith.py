"""coach pull langsmith.

A LangSmith server cannot run here (it is a hosted service; its self-hosted form needs a licence,
Postgres, ClickHouse and Redis), so these tests run against a small ``http.server`` on loopback
that serves RECORDED RESPONSE SHAPES (tests/fixtures/langsmith_api/, sources in its README.md):
three real traces (the langsmith SDK's own recorded ``wrap_openai`` runs, Python and JS, and a
LangGraph agent with a ``Web-Search`` tool run and two feedback scores) in the shape of
LangSmith's ``GET /sessions``, ``POST /runs/query`` and ``GET /feedback`` answers. The fake server
filters on ``session``, ``is_root``, ``trace`` and ``start_time``, pages with ``cursors.next``
and ``offset`` as the API does, and checks the ``x-api-key`` header. What is checked: a first
pull, a second that writes nothing, a later trace pulled alone, a running trace left for later,
``--since``, the pulled file ingested (tool calls, tool names, feedback, nothing quarantined),
each trace written before the next is read, and the failures: 401 (naming the variables), 429
then success (after Retry-After), 503 for good, a truncated page, a page that is not JSON, a
server that is down, a missing key or project, an unknown project, and a cursor of another
endpoint or project.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from loopback import (
    JsonHandler,
    closed_url,
    only_file,
    pulled_records,
    run_pull,
    serve,
    set_environment,
    temporary_lines,
)

from pipeline.cli import main
from pipeline.errors import ConfigError, RemoteError
from pipeline.ingest import ingest
from pipeline.remote.langsmith import (
    DEFAULT_ENDPOINT,
    LangSmithClient,
    cursor_path,
    langsmith_endpoint,
    langsmith_project,
    pull_langsmith,
)

API = Path(__file__).resolve().parent / "fixtures" / "langsmith_api"
RUNS = json.loads((API / "runs.json").read_text())
FEEDBACK = json.loads((API / "feedback.json").read_text())
(SESSION,) = json.loads((API / "sessions.json").read_text())
PY, JS, GRAPH = (r["id"] for r in RUNS if r["parent_run_id"] is None)  # in start order
KEY = "lsv2_pt_test"
PROJECT = SESSION["name"]
LATER = datetime(2026, 1, 1, tzinfo=UTC)  # long after every trace ended


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _LangSmith(JsonHandler):
    """Answers like LangSmith's sessions, runs query and feedback API, from the recorded runs."""

    visible: list[str] = []  # trace ids the project holds
    running: set[str] = set()  # traces whose root run has not ended
    mode = "ok"
    failures = 0  # how many requests answer with ``mode``'s error before the rest succeed
    requests: list[tuple[str, str, Any]] = []
    watch: Path | None = None  # the folder a pull writes to, looked at as each trace is read
    on_disk: list[int] = []  # lines written there, not yet committed, as each trace was read

    def _refused(self) -> bool:
        if self.mode == "401" or self.headers.get("x-api-key") != KEY:
            self.send_json(401, b"")
            return True
        if self.mode in ("429", "503") and type(self).failures > 0:
            type(self).failures -= 1
            if self.mode == "429":
                self.send_json(429, b"", {"Retry-After": "1"})
            else:
                self.send_json(503, b"")
            return True
        return False

    def _runs(self) -> list[dict[str, Any]]:
        runs = []
        for run in RUNS:
            if run["trace_id"] in self.visible:
                if run["id"] in self.running:
                    run = {**run, "end_time": None, "status": "pending"}
                runs.append(run)
        return runs

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        type(self).requests.append(("GET", url.path, query))
        if self._refused():
            return
        if url.path == "/sessions":
            self.send_json(200, [SESSION] if query.get("name") == [SESSION["name"]] else [])
        elif url.path == "/feedback":
            ids = set(query.get("run", []))
            items = [f for f in FEEDBACK if f["run_id"] in ids and f["trace_id"] in self.visible]
            offset, limit = int(query["offset"][0]), int(query["limit"][0])
            self.send_json(200, items[offset : offset + limit])
        else:
            self.send_json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        body = self.read_json()
        type(self).requests.append(("POST", self.path, body))
        if self._refused():
            return
        if self.path != "/runs/query" or body.get("session") != [SESSION["id"]]:
            self.send_json(404, {"detail": "Not Found"})
            return
        runs = self._runs()
        if body.get("is_root"):
            runs = [r for r in runs if r["parent_run_id"] is None]
        if body.get("trace"):
            runs = [r for r in runs if r["trace_id"] == body["trace"]]
            if self.watch is not None:
                type(self).on_disk.append(temporary_lines(self.watch))
        if body.get("start_time"):
            runs = [r for r in runs if _time(r["start_time"]) >= _time(body["start_time"])]
        runs.sort(key=lambda r: r["start_time"], reverse=body.get("order", "desc") == "desc")
        at, limit = int(body.get("cursor") or 0), body["limit"]
        following = str(at + limit) if at + limit < len(runs) else None
        answer = {"runs": runs[at : at + limit], "cursors": {"next": following, "prev": None}}
        if self.mode in ("truncated", "not json") and at > 0:
            self.send_cut(answer, announce_all=self.mode == "truncated")
        else:
            self.send_json(200, answer)


@pytest.fixture
def langsmith(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, type[_LangSmith]]]:
    state = {"visible": [PY, JS], "running": set(), "requests": [], "on_disk": []}
    with serve(_LangSmith, **state) as (url, handler):
        older = ("LANGCHAIN_ENDPOINT", "LANGCHAIN_API_KEY", "LANGCHAIN_PROJECT")
        set_environment(
            monkeypatch,
            unset=[*older, "LANGSMITH_WORKSPACE_ID"],
            LANGSMITH_ENDPOINT=url,
            LANGSMITH_API_KEY=KEY,
            LANGSMITH_PROJECT=PROJECT,
        )
        yield url, handler


def _pull(tmp_path: Path, *extra: str) -> tuple[int, str, dict[str, Any] | None]:
    return run_pull("langsmith", tmp_path, *extra)


def _client(url: str, **kwargs: Any) -> LangSmithClient:
    return LangSmithClient(url, KEY, **kwargs)


def test_first_pull_again_and_later(
    langsmith: tuple[str, type[_LangSmith]], tmp_path: Path
) -> None:
    url, handler = langsmith
    code, output, first = _pull(tmp_path)
    assert code == 0, output
    assert first is not None
    assert (first["traces"], first["runs"], first["feedback"], first["tool_runs"]) == (2, 2, 0, 0)
    assert (first["pages"], first["first_pull"], first["project_id"]) == (2, True, SESSION["id"])
    assert [r["id"] for r in pulled_records(first["file"])] == [PY, JS]
    cursor = json.loads(cursor_path(tmp_path / ".coach", url, PROJECT).read_text())
    assert (cursor["start_time"], cursor["ids"]) == (RUNS[1]["start_time"], [JS])
    assert KEY not in json.dumps(cursor)

    code, output, again = _pull(tmp_path)
    assert code == 0, output
    assert again is not None
    assert (again["file"], again["traces"], again["already_pulled_traces"]) == (None, 0, 1)
    listed = [b for m, p, b in handler.requests if m == "POST" and b.get("is_root")]
    assert listed[-1]["start_time"] == RUNS[1]["start_time"]

    handler.visible.append(GRAPH)  # a later trace arrives
    code, output, later = _pull(tmp_path)
    assert code == 0, output
    assert later is not None
    assert (later["traces"], later["runs"], later["tool_runs"], later["feedback"]) == (1, 9, 1, 2)
    records = pulled_records(later["file"])
    assert {r["trace_id"] for r in records} == {GRAPH}
    assert records[0]["id"] == GRAPH and len(records) == 9  # the root first, no run lost
    assert [f["key"] for f in records[0]["feedback"]] == ["toxicity", "hallucination"]
    assert len(list((tmp_path / "traces").glob("langsmith-127.0.0.1-*.jsonl"))) == 2
    assert _pull(tmp_path)[2]["file"] is None  # type: ignore[index]


def test_pulled_files_ingest_with_tool_calls_and_feedback(
    langsmith: tuple[str, type[_LangSmith]], tmp_path: Path
) -> None:
    _url, handler = langsmith
    handler.visible.append(GRAPH)
    code, output, pulled = _pull(tmp_path)
    assert code == 0, output
    assert pulled is not None
    traces = ingest([Path(pulled["file"])])  # sniffed, no format given
    (report,) = traces.files
    assert (report.format, report.ingested, report.quarantined) == ("langsmith", 11, 0)
    assert {t["trajectory_id"] for t in traces.trajectories.to_pylist()} == {PY, JS, GRAPH}
    steps = [s for s in traces.steps.to_pylist() if s["trajectory_id"] == GRAPH]
    kinds = [(s["step_type"], s["tool_name"]) for s in steps]
    assert ("tool_call", "Web-Search") in kinds and ("tool_result", "Web-Search") in kinds
    call = next(s for s in steps if s["step_type"] == "tool_result")
    assert call["tool_call_id"] == "call_1oGK863sxQHlPreFhDdEs3yl"
    feedback = {(r["trajectory_id"], r["name"]): r for r in traces.feedback.to_pylist()}
    assert set(feedback) == {(GRAPH, "toxicity"), (GRAPH, "hallucination")}
    assert feedback[(GRAPH, "hallucination")]["value"] == pytest.approx(0.1)
    assert feedback[(GRAPH, "toxicity")]["source"] == "model"
    done = CliRunner().invoke(
        main, ["ingest", pulled["file"], "--data-dir", str(tmp_path / "d"), "--json", "-q"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["files"][0]["quarantined"] == 0


def test_a_running_trace_waits_and_since_skips_older(
    langsmith: tuple[str, type[_LangSmith]], tmp_path: Path
) -> None:
    url, handler = langsmith
    handler.visible.append(GRAPH)
    handler.running = {
        JS
    }  # the JS trace has not ended: it holds the cursor, later ones do not wait
    result = pull_langsmith(_client(url), PROJECT, tmp_path / "t", tmp_path / ".c", now=LATER)
    assert (result.traces, result.waiting, result.trace_ids) == (2, 1, [PY, GRAPH])
    cursor = json.loads(cursor_path(tmp_path / ".c", url, PROJECT).read_text())
    assert (cursor["start_time"], cursor["ids"]) == (RUNS[1]["start_time"], [GRAPH])
    handler.running = set()
    result = pull_langsmith(_client(url), PROJECT, tmp_path / "t", tmp_path / ".c", now=LATER)
    assert (result.traces, result.already, result.trace_ids) == (1, 1, [JS])
    # a root run that ended a moment ago settles first
    ended = _time(RUNS[0]["end_time"])
    fresh = pull_langsmith(_client(url), PROJECT, tmp_path / "u", tmp_path / ".d", now=ended)
    assert (fresh.waiting, fresh.trace_ids) == (3, [])
    code, output, pulled = _pull(tmp_path, "--since", "2024-10-12")
    assert code == 0, output
    assert pulled is not None
    assert [r["trace_id"] for r in pulled_records(pulled["file"])][:2] == [JS, GRAPH]


def test_each_trace_is_written_before_the_next_is_read(
    langsmith: tuple[str, type[_LangSmith]], tmp_path: Path
) -> None:
    """The pull holds one trace at a time: when it asks for a trace's runs, the runs of every
    trace before it are already in the temporary file, which becomes the trace file, whole,
    only at the end."""
    url, handler = langsmith
    handler.visible.append(GRAPH)
    handler.watch = tmp_path / "t"
    result = pull_langsmith(_client(url), PROJECT, tmp_path / "t", tmp_path / ".c", now=LATER)
    assert (result.traces, result.runs, result.trace_ids) == (3, 11, [PY, JS, GRAPH])
    assert handler.on_disk == [0, 1, 2]  # one run each in the Python and the JS trace
    assert only_file(tmp_path / "t") == result.file
    assert len(pulled_records(result.file)) == 11


def test_a_refused_key_names_the_variables(
    langsmith: tuple[str, type[_LangSmith]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _handler = langsmith
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_pt_wrong")
    code, output, _ = _pull(tmp_path)
    assert code == 1
    assert f"LangSmith at {url} refused the API key (401" in output
    assert "LANGSMITH_API_KEY" in output and "LANGSMITH_ENDPOINT" in output
    assert "lsv2_pt_wrong" not in output and "Traceback" not in output
    assert not (tmp_path / "traces").exists()


def test_missing_key_project_and_an_unknown_project(
    langsmith: tuple[str, type[_LangSmith]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LANGSMITH_PROJECT")
    code, output, _ = _pull(tmp_path)
    assert code == 1 and "pass --project NAME or set LANGSMITH_PROJECT" in output
    code, output, _ = _pull(tmp_path, "--project", "nope")
    assert code == 1 and "has no project named 'nope'" in output
    monkeypatch.delenv("LANGSMITH_API_KEY")
    monkeypatch.setenv("LANGCHAIN_API_KEY", KEY)  # the older name still works
    assert _pull(tmp_path, "--project", PROJECT)[0] == 0
    monkeypatch.delenv("LANGCHAIN_API_KEY")
    code, output, _ = _pull(tmp_path, "--project", PROJECT)
    assert code == 1 and "LANGSMITH_API_KEY is not set" in output


def test_429_is_retried_after_retry_after(
    langsmith: tuple[str, type[_LangSmith]], tmp_path: Path
) -> None:
    url, handler = langsmith
    handler.mode, handler.failures = "429", 2
    waits: list[float] = []
    result = pull_langsmith(
        _client(url, sleep=waits.append), PROJECT, tmp_path / "t", tmp_path / ".c", now=LATER
    )
    assert (result.traces, result.runs, result.retries) == (2, 2, 2)
    assert waits == [1.0, 1.0]  # the server's Retry-After, not the backoff


def test_a_lasting_503_gives_up_after_bounded_retries(
    langsmith: tuple[str, type[_LangSmith]], tmp_path: Path
) -> None:
    url, handler = langsmith
    handler.mode, handler.failures = "503", 100
    waits: list[float] = []
    client = _client(url, sleep=waits.append, max_retries=3, max_wait_s=3)
    with pytest.raises(RemoteError, match=r"answered 503 .* \(4 tries over 6 s\)"):
        pull_langsmith(client, PROJECT, tmp_path / "t", tmp_path / ".c")
    assert waits == [1.0, 2.0, 3.0]  # exponential backoff, capped
    assert not (tmp_path / "t").exists()
    assert not cursor_path(tmp_path / ".c", url, PROJECT).exists()


@pytest.mark.parametrize(
    ("mode", "message"), [("truncated", "sent a truncated answer"), ("not json", "not JSON")]
)
def test_a_broken_page_leaves_nothing_behind(
    langsmith: tuple[str, type[_LangSmith]], tmp_path: Path, mode: str, message: str
) -> None:
    url, handler = langsmith
    assert _pull(tmp_path)[0] == 0
    cursor = cursor_path(tmp_path / ".coach", url, PROJECT)
    before = cursor.read_text()
    handler.visible.append(GRAPH)
    files = sorted((tmp_path / "traces").iterdir())
    handler.mode = mode
    code, output, _ = _pull(tmp_path)  # page 2 of the root runs is cut off
    assert code == 1
    assert f"LangSmith at {url} {message}" in output or message in output
    assert "Traceback" not in output
    assert cursor.read_text() == before
    assert sorted((tmp_path / "traces").iterdir()) == files


def test_server_down_is_a_clear_domain_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = closed_url()
    set_environment(monkeypatch, LANGSMITH_ENDPOINT=url, LANGSMITH_API_KEY=KEY)
    code, output, _ = _pull(tmp_path, "--project", PROJECT)
    assert code == 1
    assert f"cannot reach LangSmith at {url}" in output
    assert "LANGSMITH_ENDPOINT" in output and "Traceback" not in output
    assert not (tmp_path / "traces").exists()


def test_a_cursor_of_another_endpoint_or_project_is_refused(
    langsmith: tuple[str, type[_LangSmith]], tmp_path: Path
) -> None:
    url, _handler = langsmith
    assert _pull(tmp_path)[0] == 0
    mine = cursor_path(tmp_path / ".coach", url, PROJECT)
    other = json.loads(mine.read_text()) | {"endpoint": DEFAULT_ENDPOINT}  # copied over
    mine.write_text(json.dumps(other))
    code, output, _ = _pull(tmp_path)
    assert code == 1
    assert f"this cursor is for LangSmith at '{DEFAULT_ENDPOINT}'" in output
    assert mine.read_text() == json.dumps(other)
    # the same name, another project (deleted and made again)
    again = json.loads(mine.read_text()) | {"endpoint": url, "project_id": "another-id"}
    mine.write_text(json.dumps(again))
    code, output, _ = _pull(tmp_path)
    assert code == 1
    assert "this cursor is for the project 'default' of id another-id" in output
    assert mine.read_text() == json.dumps(again)


def test_endpoint_and_project_come_from_the_usual_variables() -> None:
    assert langsmith_endpoint(None, {}) == DEFAULT_ENDPOINT
    old = {"LANGCHAIN_ENDPOINT": "https://eu.api.smith.langchain.com/"}
    assert langsmith_endpoint(None, old) == "https://eu.api.smith.langchain.com"
    both = old | {"LANGSMITH_ENDPOINT": '"https://ls.internal/api/v1"'}
    assert langsmith_endpoint(None, both) == "https://ls.internal/api/v1"
    assert langsmith_endpoint("ls.internal:1984", both) == "https://ls.internal:1984"
    assert langsmith_project(None, {"LANGCHAIN_PROJECT": "a", "LANGSMITH_PROJECT": "b"}) == "b"
    with pytest.raises(ConfigError):
        langsmith_project(None, {})
    assert cursor_path(Path("d"), "https://a", "p") != cursor_path(Path("d"), "https://a", "q")
    assert cursor_path(Path("d"), "https://a", "p").name.startswith("langsmith-")

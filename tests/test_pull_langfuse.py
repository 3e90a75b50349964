"""coach pull langfuse.

A Langfuse server needs Postgres, ClickHouse, Redis and object storage, too much for a test, so
these tests run against a small ``http.server`` on loopback that serves RECORDED REAL RESPONSE
SHAPES (tests/fixtures/langfuse_api/, sources in its README.md): three real traces (OpenAI
Agents SDK, Microsoft Agent Framework, pydantic-ai) in the shape of Langfuse's
``GET /api/public/traces`` and ``GET /api/public/traces/{traceId}`` answers, and its 401 and
429 bodies. The fake server filters ``fromTimestamp`` (inclusive), orders by timestamp and pages
(``page``, ``limit``, ``meta.totalPages``) as the real list endpoint does, and checks the basic
auth header. What is checked: a first pull, a second that reads nothing new, a later trace
pulled alone, traces sharing the cursor's timestamp, the pulled file ingested (tool calls,
scores as feedback, nothing quarantined), each trace written before the next is read, and the
failures: a malformed trace after others were written, 401 (naming the variables), 429 then
success (retried after Retry-After), 503 for good, a truncated page, a server that is down,
missing keys, and a cursor of another host or key pair.
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
    LANGFUSE_KEYS,
    JsonHandler,
    basic_auth,
    closed_url,
    only_file,
    pulled_records,
    run_pull,
    serve,
    temporary_lines,
    use_langfuse,
)

from pipeline.cli import main
from pipeline.errors import RemoteError
from pipeline.ingest import ingest
from pipeline.progress import Tally
from pipeline.remote.langfuse import (
    DEFAULT_HOST,
    LangfuseClient,
    cursor_path,
    langfuse_host,
    pull_langfuse,
)

API = Path(__file__).resolve().parent / "fixtures" / "langfuse_api"
LISTED = json.loads((API / "traces.json").read_text())["data"]
OPENAI, MICROSOFT, PYDANTIC = (t["id"] for t in LISTED)  # in timestamp order
PUBLIC, SECRET = LANGFUSE_KEYS


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class _Langfuse(JsonHandler):
    """Answers like Langfuse's public traces API, from the recorded responses."""

    visible: list[str] = []  # trace ids the project holds
    extra: dict[str, dict[str, Any]] = {}  # id -> full trace, for traces made in a test
    mode = "ok"
    failures = 0  # how many requests answer with ``mode``'s error before the rest succeed
    requests: list[str] = []
    watch: Path | None = None  # the folder a pull writes to, looked at as each trace is read
    on_disk: list[int] = []  # lines written there, not yet committed, as each trace was read

    def _detail(self, trace_id: str) -> dict[str, Any] | None:
        if trace_id in self.extra:
            return self.extra[trace_id]
        path = API / f"trace-{trace_id}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        type(self).requests.append(self.path)
        if self.mode == "401" or self.headers.get("Authorization") != basic_auth(PUBLIC, SECRET):
            self.send_json(401, json.loads((API / "error-401.json").read_text()))
            return
        if self.mode in ("429", "503") and type(self).failures > 0:
            type(self).failures -= 1
            if self.mode == "429":
                body = json.loads((API / "error-429.json").read_text())
                self.send_json(429, body, {"Retry-After": "1", "X-RateLimit-Limit": "30"})
            else:
                self.send_json(503, {"message": "Service Unavailable"})
            return
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/api/public/traces":
            self._list(query)
        elif url.path.startswith("/api/public/traces/"):
            if self.watch is not None:
                type(self).on_disk.append(temporary_lines(self.watch))
            found = self._detail(urllib.parse.unquote(url.path.rsplit("/", 1)[1]))
            if found is None or found["id"] not in self.visible:
                self.send_json(404, {"message": "Trace not found within authorized project"})
            else:
                self.send_json(200, found)
        else:
            self.send_json(404, {"message": "Not found"})

    def _list(self, query: dict[str, str]) -> None:
        page, limit = int(query.get("page", 1)), int(query.get("limit", 50))
        start = _time(query.get("fromTimestamp", "1970-01-01T00:00:00Z"))
        assert query.get("orderBy") == "timestamp.asc"
        items = [
            {k: v for k, v in self._detail(t).items() if k not in ("observations", "scores")}  # type: ignore[union-attr]
            for t in self.visible
        ]
        items = sorted(
            (i for i in items if _time(i["timestamp"]) >= start), key=lambda i: i["timestamp"]
        )
        body = {
            "data": items[(page - 1) * limit : page * limit],
            "meta": {
                "page": page,
                "limit": limit,
                "totalItems": len(items),
                "totalPages": -(-len(items) // limit),
            },
        }
        if self.mode == "truncated" and page == 2:
            self.send_cut(body)
        else:
            self.send_json(200, body)


@pytest.fixture
def langfuse(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, type[_Langfuse]]]:
    with serve(_Langfuse, visible=[OPENAI, MICROSOFT], extra={}, requests=[], on_disk=[]) as (
        url,
        handler,
    ):
        use_langfuse(monkeypatch, url)
        yield url, handler


def _pull(tmp_path: Path, *extra: str) -> tuple[int, str, dict[str, Any] | None]:
    return run_pull("langfuse", tmp_path, *extra)


def test_first_pull_again_and_later(langfuse: tuple[str, type[_Langfuse]], tmp_path: Path) -> None:
    url, handler = langfuse
    code, output, first = _pull(tmp_path)
    assert code == 0, output
    assert first is not None
    assert (first["traces"], first["observations"], first["scores"]) == (2, 9, 4)
    assert (first["pages"], first["first_pull"], first["host"]) == (2, True, url)
    records = pulled_records(first["file"])
    assert [r["trace"]["id"] for r in records] == [OPENAI, MICROSOFT]
    assert all(set(r) == {"trace", "observations"} for r in records)
    cursor = json.loads(cursor_path(tmp_path / ".coach", url).read_text())
    assert (cursor["timestamp"], cursor["ids"]) == (LISTED[1]["timestamp"], [MICROSOFT])
    assert SECRET not in json.dumps(cursor) and PUBLIC not in json.dumps(cursor)

    code, output, again = _pull(tmp_path)
    assert code == 0, output
    assert again is not None
    assert (again["file"], again["traces"], again["already_pulled_traces"]) == (None, 0, 1)
    assert any("fromTimestamp=2025-10-14T16%3A44%3A29.952Z" in r for r in handler.requests)

    handler.visible.append(PYDANTIC)  # a later trace arrives
    code, output, later = _pull(tmp_path)
    assert code == 0, output
    assert later is not None
    assert (later["traces"], later["observations"], later["scores"]) == (1, 12, 0)
    assert [r["trace"]["id"] for r in pulled_records(later["file"])] == [PYDANTIC]
    assert len(list((tmp_path / "traces").glob("langfuse-127.0.0.1-*.jsonl"))) == 2


def test_pulled_files_ingest_with_tool_calls_and_feedback(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path
) -> None:
    _url, handler = langfuse
    handler.visible.append(PYDANTIC)
    code, output, pulled = _pull(tmp_path)
    assert code == 0, output
    assert pulled is not None
    traces = ingest([Path(pulled["file"])])
    (report,) = traces.files
    assert (report.format, report.ingested, report.quarantined) == ("langfuse", 3, 0)
    runs = {r["trajectory_id"] for r in traces.trajectories.to_pylist()}
    assert runs == {OPENAI, MICROSOFT, PYDANTIC}
    calls = {s["tool_name"] for s in traces.steps.to_pylist() if s["step_type"] == "tool_call"}
    assert {"get_weather", "get_pun_suggestion", "get_dad_joke_suggestion"} <= calls
    feedback = {(r["trajectory_id"], r["name"]): r["value"] for r in traces.feedback.to_pylist()}
    assert feedback[(OPENAI, "toxicity")] == pytest.approx(0.8)
    assert feedback[(OPENAI, "hallucination")] == 0.0
    assert len(feedback) == 4
    # and through the CLI, as a user would after pulling
    done = CliRunner().invoke(
        main, ["ingest", pulled["file"], "--data-dir", str(tmp_path / "d"), "--json", "-q"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["files"][0]["quarantined"] == 0


def test_traces_sharing_the_cursor_timestamp(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path
) -> None:
    _url, handler = langfuse
    assert _pull(tmp_path)[0] == 0
    twin = json.loads((API / f"trace-{MICROSOFT}.json").read_text())
    twin["id"] = "0000twin"  # another trace started in the same millisecond
    twin["scores"], twin["observations"] = [], []
    handler.extra["0000twin"] = twin
    handler.visible.append("0000twin")
    code, output, pulled = _pull(tmp_path)
    assert code == 0, output
    assert pulled is not None
    assert (pulled["traces"], pulled["already_pulled_traces"]) == (1, 1)
    cursor = json.loads(cursor_path(tmp_path / ".coach", _url).read_text())
    assert cursor["ids"] == ["0000twin", MICROSOFT]
    assert _pull(tmp_path)[2]["traces"] == 0  # type: ignore[index]


def test_recent_traces_wait_and_since_skips_older(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path
) -> None:
    url, handler = langfuse
    handler.visible.append(PYDANTIC)
    client = LangfuseClient(url, PUBLIC, SECRET)
    now = _time(LISTED[2]["timestamp"])  # the pydantic-ai trace has just started
    result = pull_langfuse(client, tmp_path / "t", tmp_path / ".c", settle_s=60, now=now)
    assert (result.traces, result.waiting) == (2, 1)
    code, output, pulled = _pull(tmp_path, "--since", "2025-10-01")
    assert code == 0, output
    assert pulled is not None
    assert [r["trace"]["id"] for r in pulled_records(pulled["file"])] == [MICROSOFT, PYDANTIC]


def test_each_trace_is_written_before_the_next_is_read(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path
) -> None:
    """The pull holds one trace at a time: when it asks for a trace, every trace before it is
    already in the temporary file, which becomes the trace file, whole, only at the end."""
    url, handler = langfuse
    full = json.loads((API / f"trace-{OPENAI}.json").read_text())
    ids = [f"trace-{n:02d}" for n in range(12)]
    for n, trace_id in enumerate(ids):
        handler.extra[trace_id] = full | {"id": trace_id, "timestamp": f"2025-11-01T00:{n:02d}Z"}
    handler.visible = ids
    handler.watch = tmp_path / "t"
    client = LangfuseClient(url, PUBLIC, SECRET)
    result = pull_langfuse(client, tmp_path / "t", tmp_path / ".c", page_size=5)
    assert (result.traces, result.pages) == (12, 3)
    assert handler.on_disk == list(range(12))  # lines not yet committed as each trace is read
    assert result.file == only_file(tmp_path / "t")
    assert [r["trace"]["id"] for r in pulled_records(result.file)] == ids


def test_a_failure_after_some_traces_were_written_leaves_nothing(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path
) -> None:
    url, handler = langfuse
    client = LangfuseClient(url, PUBLIC, SECRET)
    first = pull_langfuse(client, tmp_path / "t", tmp_path / ".c")
    assert first.file is not None
    moved = cursor_path(tmp_path / ".c", url).read_text()
    full = json.loads((API / f"trace-{PYDANTIC}.json").read_text())
    handler.extra["0001later"] = full | {"id": "0001later", "timestamp": "2025-12-05T00:00Z"}
    broken = {k: v for k, v in full.items() if k != "observations"}
    handler.extra["0002later"] = broken | {"id": "0002later", "timestamp": "2025-12-06T00:00Z"}
    handler.visible += [PYDANTIC, "0001later", "0002later"]  # the third comes without its spans
    handler.watch = tmp_path / "t"
    with pytest.raises(RemoteError, match="sent trace 0002later without its observations"):
        pull_langfuse(client, tmp_path / "t", tmp_path / ".c")
    assert handler.on_disk == [0, 1, 2]  # two traces were written before the third failed
    assert only_file(tmp_path / "t") == first.file  # no new file, no temporary one
    assert cursor_path(tmp_path / ".c", url).read_text() == moved
    # a first pull that fails so leaves not even the folder its first trace's writing made
    with pytest.raises(RemoteError, match="without its observations"):
        pull_langfuse(client, tmp_path / "fresh", tmp_path / ".d")
    assert not (tmp_path / "fresh").exists()
    assert not cursor_path(tmp_path / ".d", url).exists()


def test_a_refused_key_names_the_variables(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _handler = langfuse
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-wrong")
    code, output, _ = _pull(tmp_path)
    assert code == 1
    assert f"Langfuse at {url} refused the keys (401" in output
    assert "LANGFUSE_PUBLIC_KEY" in output and "LANGFUSE_SECRET_KEY" in output
    assert "Invalid credentials" in output  # the server's own message
    assert "sk-lf-wrong" not in output and "Traceback" not in output
    assert not (tmp_path / "traces").exists()


def test_missing_keys_are_named(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LANGFUSE_SECRET_KEY")
    code, output, _ = _pull(tmp_path)
    assert code == 1
    assert "LANGFUSE_SECRET_KEY is not set" in output


def test_429_is_retried_after_retry_after(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path
) -> None:
    url, handler = langfuse
    handler.mode, handler.failures = "429", 2
    waits: list[float] = []
    client = LangfuseClient(url, PUBLIC, SECRET, sleep=waits.append)
    result = pull_langfuse(client, tmp_path / "t", tmp_path / ".c")
    assert (result.traces, result.retries) == (2, 2)
    assert waits == [1.0, 1.0]  # the server's Retry-After, not the backoff


def test_progress_counts_end_at_the_pull_totals(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path
) -> None:
    url, _handler = langfuse
    tallies: list[Tally] = []
    client = LangfuseClient(url, PUBLIC, SECRET)
    result = pull_langfuse(
        client, tmp_path / "t", tmp_path / ".c", page_size=1, meter=tallies.append
    )
    assert result.file is not None
    assert all(t.stage == "pull langfuse" for t in tallies)
    records = [t.records for t in tallies]
    assert records == sorted(records)  # the counts only grow
    last = tallies[-1]
    assert last.finished and not any(t.finished for t in tallies[:-1])
    # the totals: the file written, its records (one a trace) and its bytes
    assert (last.files, last.records, last.bytes) == (1, 2, result.file.stat().st_size)
    assert any(t.current == "langfuse: page 2" for t in tallies)


def test_the_command_reports_retries_and_draws_progress(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _url, handler = langfuse
    handler.mode, handler.failures = "429", 1
    monkeypatch.setenv("COACH_PROGRESS", "always")
    args = ["pull", "langfuse", "--out", str(tmp_path / "t"), "--data-dir", str(tmp_path / ".c")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "langfuse: 429 Too Many Requests for GET /api/public/traces, retry 1 of 4" in (
        result.stderr
    )
    assert "pull langfuse" in result.stderr and "\x1b[" in result.stderr  # the live display
    assert "\x1b[" not in result.stdout  # the data stays plain
    assert "2 traces" in result.stdout


def test_a_lasting_503_gives_up_after_bounded_retries(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path
) -> None:
    url, handler = langfuse
    handler.mode, handler.failures = "503", 100
    waits: list[float] = []
    client = LangfuseClient(url, PUBLIC, SECRET, sleep=waits.append, max_retries=3, max_wait_s=3)
    with pytest.raises(RemoteError, match=r"answered 503 .* \(4 tries over 6 s\)"):
        pull_langfuse(client, tmp_path / "t", tmp_path / ".c")
    assert waits == [1.0, 2.0, 3.0]  # exponential backoff, capped
    assert not (tmp_path / "t").exists()
    assert not cursor_path(tmp_path / ".c", url).exists()


def test_a_truncated_page_leaves_nothing_behind(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path
) -> None:
    url, handler = langfuse
    assert _pull(tmp_path)[0] == 0
    cursor = cursor_path(tmp_path / ".coach", url)
    before = cursor.read_text()
    handler.visible.append(PYDANTIC)
    files = sorted((tmp_path / "traces").iterdir())
    handler.mode = "truncated"
    code, output, _ = _pull(tmp_path)  # page 2 (the new trace) is cut off
    assert code == 1
    assert f"Langfuse at {url} sent a truncated answer" in output
    assert cursor.read_text() == before
    assert sorted((tmp_path / "traces").iterdir()) == files


def test_server_down_is_a_clear_domain_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = closed_url()
    use_langfuse(monkeypatch, url)
    code, output, _ = _pull(tmp_path)
    assert code == 1
    assert f"cannot reach Langfuse at {url}" in output
    assert "LANGFUSE_HOST" in output and "Traceback" not in output
    assert not (tmp_path / "traces").exists()


def test_a_cursor_of_another_host_or_key_is_refused(
    langfuse: tuple[str, type[_Langfuse]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _handler = langfuse
    assert _pull(tmp_path)[0] == 0
    mine = cursor_path(tmp_path / ".coach", url)
    # a cursor copied from another host's data dir
    other = json.loads(mine.read_text()) | {"host": "https://cloud.langfuse.com"}
    mine.write_text(json.dumps(other))
    code, output, _ = _pull(tmp_path)
    assert code == 1
    assert "this cursor is for Langfuse at 'https://cloud.langfuse.com'" in output
    assert mine.read_text() == json.dumps(other)
    # the same host, the keys of another project
    mine.unlink()
    assert _pull(tmp_path)[0] == 0
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-other")
    code, output, _ = _pull(tmp_path)
    assert code == 1
    assert "made with another LANGFUSE_PUBLIC_KEY" in output


def test_the_host_comes_from_the_usual_variables() -> None:
    assert langfuse_host(None, {}) == DEFAULT_HOST
    assert langfuse_host(None, {"LANGFUSE_HOST": "https://eu.x/"}) == "https://eu.x"
    both = {"LANGFUSE_HOST": "https://old", "LANGFUSE_BASE_URL": "https://new"}
    assert langfuse_host(None, both) == "https://new"
    assert langfuse_host("lf.internal:3000", both) == "https://lf.internal:3000"
    assert cursor_path(Path("d"), "https://a") != cursor_path(Path("d"), "https://b")
    assert cursor_path(Path("d"), "https://a").name.startswith("langfuse-")
    assert datetime(2025, 1, 1, tzinfo=UTC) < _time(LISTED[0]["timestamp"])

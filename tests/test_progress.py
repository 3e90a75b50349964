"""The live progress of the long stages: the counts an ingest and a pull report
(:mod:`pipeline.progress`) only grow and end at the stage's own totals, and the command line
draws them (:mod:`pipeline.cli.live`) on stderr only when it is a terminal (or
``COACH_PROGRESS=always``) and never with ``-q``, leaving stdout as it was."""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.cli.live import PROGRESS_ENV, display_console
from pipeline.ingest import Traces, ingest
from pipeline.progress import RECORDS_EVERY, Tally
from pipeline.remote import JsonClient, pull_phoenix

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Several files of three kinds: Chat JSONL, a tau2 file, an empty file (quarantined
    whole), and a tau2 file of more simulations than one tally's worth of records (read one by
    one, so reported from inside; a Chat JSONL file would come as one block)."""
    folder = tmp_path / "traces"
    folder.mkdir()
    shutil.copy(FIXTURES / "chat_small.jsonl", folder / "a.jsonl")
    shutil.copy(FIXTURES / "tau2_small.json", folder / "b.json")
    (folder / "empty.jsonl").write_text("")
    doc = json.loads((FIXTURES / "tau2_small.json").read_text())
    doc["simulations"] *= RECORDS_EVERY // len(doc["simulations"]) + 2
    (folder / "long.json").write_text(json.dumps(doc))
    return folder


def _assert_grow_to_totals(tallies: list[Tally], traces: Traces, files: int) -> None:
    assert tallies and all(t.stage == "ingest" for t in tallies)
    for before, after in zip(tallies, tallies[1:], strict=False):
        assert after.files >= before.files
        assert after.records >= before.records
        assert after.bytes >= before.bytes
    assert [t.finished for t in tallies].count(True) == 1
    last = tallies[-1]
    assert last.finished and last.current == ""
    assert last.files == last.files_total == files
    assert last.records == traces.counts_this_run["records_read"]
    # the bytes of every file read, of a known format or not (the empty one has none)
    assert last.bytes == sum(f.size for f in traces.files if f.status == "read") > 0


def test_ingest_counts_grow_and_end_at_its_totals(inputs: Path, tmp_path: Path) -> None:
    tallies: list[Tally] = []
    traces = ingest([inputs], meter=tallies.append)
    _assert_grow_to_totals(tallies, traces, files=4)
    # the long file is reported while it is read, not only once it is done
    reading = [t for t in tallies if t.current.endswith("long.json")]
    inside = [t for t in reading if t.files == reading[0].files > 0]
    assert inside[-1].records - inside[0].records >= RECORDS_EVERY
    assert all(t.files_total == 4 for t in tallies)
    # a meter changes nothing the ingest does
    assert ingest([inputs]).content_hash() == traces.content_hash()

    # a second run over a store: files already there count as done, with nothing read
    traces.save(tmp_path / "tables")
    lines = (FIXTURES / "chat_small.jsonl").read_text().splitlines()
    (inputs / "c.jsonl").write_text("\n".join(reversed(lines)) + "\n")  # a new file
    again: list[Tally] = []
    later = ingest([inputs], previous=Traces.load(tmp_path / "tables"), meter=again.append)
    _assert_grow_to_totals(again, later, files=5)
    assert again[-1].records == 8  # only c.jsonl was read


class _Phoenix(BaseHTTPRequestHandler):
    """Phoenix's span API over three spans of two traces, two per page, with no annotations."""

    spans = [
        {
            "id": base64.b64encode(f"Span:{row}".encode()).decode(),
            "name": "agent" if parent is None else "tool",
            "parent_id": parent,
            "context": {"trace_id": trace, "span_id": f"s{row}"},
            "start_time": "2025-06-01T00:00:00Z",
            "end_time": "2025-06-01T00:00:01Z",
        }
        for row, trace, parent in ((1, "t1", None), (2, "t1", "s1"), (3, "t2", None))
    ]

    def log_message(self, *_args: object) -> None:
        pass

    def _json(self, status: int, body: object) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        if "/spans" in self.path:
            second = "cursor=" in self.path
            page = self.spans[2:] if second else self.spans[:2]
            self._json(200, {"data": page, "next_cursor": None if second else self.spans[2]["id"]})
        elif self.path.startswith("/v1/projects/p?") or self.path == "/v1/projects/p":
            self._json(200, {"data": {"id": "UHJvamVjdDox", "name": "p"}})
        else:
            self._json(404, {"detail": "Not Found"})


@pytest.fixture
def phoenix_stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Phoenix)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_pull_counts_spans_then_the_file(phoenix_stub: str, tmp_path: Path) -> None:
    tallies: list[Tally] = []
    result = pull_phoenix(
        JsonClient(phoenix_stub), "p", tmp_path / "out", tmp_path / "d", meter=tallies.append
    )
    assert result.file is not None and result.spans == 3 and result.pages == 2
    assert all(t.stage == "pull phoenix" and t.files_total is None for t in tallies)
    assert [t.records for t in tallies] == sorted(t.records for t in tallies)
    assert "spans page 2" in [t.current for t in tallies]
    last = tallies[-1]
    assert last.finished
    assert (last.files, last.records, last.bytes) == (1, 3, result.file.stat().st_size)


def _cli(args: list[str], env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args, env={PROGRESS_ENV: None, **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def test_no_progress_when_stderr_is_not_a_terminal_or_quiet(planted: Path, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "d"), "--rebuild", "--json"]
    code, plain, stderr = _cli(["ingest", str(planted), *data])
    assert code == 0 and stderr == ""  # CliRunner's stderr is no terminal
    code, out, stderr = _cli(["ingest", str(planted), "-q", *data], {PROGRESS_ENV: "always"})
    assert code == 0 and stderr == ""
    code, out, stderr = _cli(["ingest", str(planted), *data], {PROGRESS_ENV: "never"})
    assert code == 0 and stderr == ""
    assert json.loads(out)["this_run"] == json.loads(plain)["this_run"]


def test_forced_terminal_draws_on_stderr_only(planted: Path, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "d"), "--rebuild", "--json"]
    code, plain, _ = _cli(["ingest", str(planted), *data])
    code, drawn, stderr = _cli(["ingest", str(planted), *data], {PROGRESS_ENV: "always"})
    assert code == 0
    assert "\x1b[" in stderr and "ingest" in stderr and "files" in stderr
    assert "\x1b[" not in drawn
    assert json.loads(drawn)["this_run"] == json.loads(plain)["this_run"]


def test_learn_draws_its_ingest_and_keeps_its_stage_lines(planted: Path, tmp_path: Path) -> None:
    args = ["learn", str(planted), "--data-dir", str(tmp_path / "d")]
    args += ["--skillbook", str(tmp_path / "sb"), "--out", str(tmp_path / "out")]
    code, out, stderr = _cli(args, {PROGRESS_ENV: "always"})
    assert code == 0, stderr
    assert "0/1 files" in stderr and "\x1b[" in stderr
    assert "ingest: 360 records read from 1 new files" in stderr
    assert "merge: Skillbook v1" in stderr and "\x1b[" not in out


def test_pull_draws_when_forced(phoenix_stub: str, tmp_path: Path) -> None:
    args = ["pull", "phoenix", "--project", "p", "--endpoint", phoenix_stub]
    args += ["--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "d")]
    code, out, stderr = _cli(args, {PROGRESS_ENV: "always"})
    assert code == 0, stderr
    assert "pull phoenix" in stderr and "\x1b[" in stderr
    assert "phoenix: page 2, 1 spans" in stderr  # the page lines still show
    assert "3 spans" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_display_follows_the_terminal_quiet_and_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert display_console(quiet=False) is None
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert display_console(quiet=False) is not None
    assert display_console(quiet=True) is None
    monkeypatch.setenv(PROGRESS_ENV, "never")
    assert display_console(quiet=False) is None
    monkeypatch.setenv(PROGRESS_ENV, "always")
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert display_console(quiet=False) is not None
    assert display_console(quiet=True) is None

"""A fake JSON API on loopback for the tests of coach's pulls and pushes (Langfuse, LangSmith).

A test module subclasses :class:`JsonHandler` with the routes of the API it stands in for,
keeping the server's state in class attributes, and serves a fresh subclass per test with
:func:`serve` (pytest puts ``tests/`` on ``sys.path``)::

    from loopback import JsonHandler, serve, set_environment

    class _Api(JsonHandler):
        requests: list[str] = []

        def do_GET(self) -> None:  # noqa: N802
            type(self).requests.append(self.path)
            self.send_json(200, {"data": []})

    with serve(_Api, requests=[]) as (url, handler):    # http://127.0.0.1:<free port>
        set_environment(monkeypatch, unset=["API_OLD_HOST"], API_HOST=url)
        ...
        assert handler.requests == ["/api/..."]

:func:`use_langfuse` points coach at a fake Langfuse with :data:`LANGFUSE_KEYS`. :func:`run_pull`
runs ``coach pull <source>`` against it with ``--json``, :func:`pulled_records` reads the JSON
Lines file a pull wrote, :func:`only_file` checks that a pull left one file and no temporary
one, :func:`temporary_lines` counts what a pull has written but not yet committed (a handler
calls it to see a pull stream), and :func:`closed_url` is a loopback URL nothing listens on (for
"the server is down").
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from pipeline.cli import main

__all__ = [
    "LANGFUSE_KEYS",
    "JsonHandler",
    "basic_auth",
    "closed_url",
    "only_file",
    "pulled_records",
    "run_pull",
    "serve",
    "set_environment",
    "temporary_lines",
    "use_langfuse",
]

LANGFUSE_KEYS = ("pk-lf-test", "sk-lf-test")  # the public and secret key a fake Langfuse takes

H = TypeVar("H", bound=BaseHTTPRequestHandler)


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet request handler with JSON answers: whole (:meth:`send_json`) or cut off
    (:meth:`send_cut`)."""

    def log_message(self, *_args: object) -> None:
        pass

    def read_json(self) -> Any:
        """The request's JSON body (``Content-Length`` bytes)."""
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def send_json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        """Answer ``status`` with ``body`` as JSON (bytes are sent as they are), and
        ``headers``."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def send_cut(self, body: object, *, announce_all: bool = True) -> None:
        """Answer 200 with the first half of ``body`` as JSON, then close the connection: with
        ``announce_all`` the ``Content-Length`` of the whole (a truncated answer), else of the
        half (a complete answer that is not JSON)."""
        raw = json.dumps(body).encode()
        cut = raw[: len(raw) // 2]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw) if announce_all else len(cut)))
        self.end_headers()
        self.wfile.write(cut)
        self.wfile.flush()
        self.close_connection = True


@contextlib.contextmanager
def serve(handler: type[H], **state: Any) -> Iterator[tuple[str, type[H]]]:
    """Serve a fresh subclass of ``handler`` whose class attributes ``state`` replace the
    inherited ones (so a test's changes stay in it) on a free loopback port, in a daemon
    thread; yield its base URL (``http://127.0.0.1:<port>``) and the subclass; shut it down on
    leaving."""
    fresh = type("Handler", (handler,), state)
    server = ThreadingHTTPServer(("127.0.0.1", 0), fresh)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fresh
    finally:
        server.shutdown()
        server.server_close()


def set_environment(
    monkeypatch: pytest.MonkeyPatch, unset: Iterable[str] = (), **values: str
) -> None:
    """Unset the environment variables named in ``unset`` and set those of ``values``, for the
    test."""
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def use_langfuse(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point coach at the Langfuse server at ``url`` (``LANGFUSE_HOST``; ``LANGFUSE_BASE_URL``,
    which would win, unset) with the keys :data:`LANGFUSE_KEYS`."""
    public, secret = LANGFUSE_KEYS
    set_environment(
        monkeypatch,
        unset=["LANGFUSE_BASE_URL"],
        LANGFUSE_HOST=url,
        LANGFUSE_PUBLIC_KEY=public,
        LANGFUSE_SECRET_KEY=secret,
    )


def basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` header of HTTP basic auth (RFC 7617): ``Basic <base64>``."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def closed_url() -> str:
    """``http://127.0.0.1:<port>`` of a port that was free a moment ago: nothing answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_pull(source: str, tmp_path: Path, *extra: str) -> tuple[int, str, dict[str, Any] | None]:
    """``coach pull <source>`` into ``tmp_path/traces`` with data dir ``tmp_path/.coach``,
    ``--json -q --page-size 1`` and ``extra``: the exit code, the output (stdout and stderr)
    and, on success, the JSON summary."""
    result = CliRunner().invoke(
        main,
        ["pull", source, "--out", str(tmp_path / "traces"), "--data-dir"]
        + [str(tmp_path / ".coach"), "--json", "-q", "--page-size", "1", *extra],
    )
    payload = json.loads(result.stdout) if result.exit_code == 0 else None
    return result.exit_code, result.output, payload


def pulled_records(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file, one a line."""
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def temporary_lines(folder: Path) -> int:
    """The lines in the temporary files of ``folder`` (``.<name>.<random>.tmp``, those of
    :func:`pipeline.fileio.replacing`): what is written there but not yet renamed into place;
    0 when the folder does not exist."""
    return sum(path.read_text().count("\n") for path in folder.glob(".*.tmp"))


def only_file(folder: Path) -> Path:
    """The one file in ``folder``, checked: a pull that wrote it left nothing else there (no
    temporary file)."""
    (path,) = folder.iterdir()
    return path

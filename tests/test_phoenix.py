"""coach pull phoenix and coach push-prompts phoenix.

Against a real Phoenix server (``phoenix serve`` on loopback with a temporary working dir and
its default SQLite store), fed by the OpenTelemetry SDK with OpenInference attributes
(tests/phoenix_send.py, run with the Python of Phoenix's own environment): pull, pull again
(nothing new), pull what came since, learn on the pulled files, push prompts twice, read the
prompt back. Phoenix lives in its own virtual environment, ``.venv/phoenix`` (``make test``
installs it from the ``phoenix-test`` extra of pyproject.toml; ``COACH_PHOENIX_VENV`` names
another), since its dependencies do not fit coach's lock; without it those tests skip, saying so.

The failures (server down, 401, a page cut off, a cursor of another project) are checked
against a small HTTP server on loopback that answers like Phoenix would, and run everywhere.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.experiment import VersionHistory
from pipeline.remote import cursor_path, phoenix_endpoint, prompt_name

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("COACH_PHOENIX_VENV", ROOT / ".venv" / "phoenix"))
SENDER = Path(__file__).with_name("phoenix_send.py")
PROJECT = "coach-test"
VERSION = "pv-00112233445566ff"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Phoenix server started for this module, stopped after it."""
    if not (VENV / "bin" / "phoenix").exists():
        pytest.skip(f"Phoenix is not installed in {VENV} (make test installs it)")
    workdir = tmp_path_factory.mktemp("phoenix")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))},
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(_free_port()),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (workdir / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(VENV / "bin" / "phoenix"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"phoenix serve did not start: {(workdir / 'serve.log').read_text()}")
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _send(url: str, first: int, count: int, version: str = VERSION) -> list[list[str]]:
    done = subprocess.run(
        [str(VENV / "bin" / "python"), str(SENDER), url, PROJECT, str(first), str(count), version],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [line.split() for line in done.stdout.splitlines()]


def _annotate(url: str, sent: list[list[str]]) -> None:
    body = {
        "data": [
            {
                "span_id": root,
                "name": "outcome",
                "annotator_kind": "CODE",
                "result": {"label": outcome, "score": 1.0 if outcome == "success" else 0.0},
            }
            for _trace, root, outcome in sent
        ]
    }
    request = urllib.request.Request(
        f"{url}/v1/span_annotations?sync=true",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()


def _wait_for_spans(url: str, count: int) -> None:
    """Phoenix stores spans a moment after it accepts them: wait until it holds ``count``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v1/projects/{PROJECT}/spans?limit=1000") as page:
                if len(json.load(page)["data"]) >= count:
                    return
        except urllib.error.HTTPError as exc:  # 404 until the project's first span is stored
            if exc.code != 404:
                raise
        time.sleep(0.2)
    pytest.fail(f"Phoenix did not store {count} spans in time")


def _pull(url: str, out: Path, data: Path) -> dict:
    result = CliRunner().invoke(
        main,
        ["pull", "phoenix", "--project", PROJECT, "--endpoint", url, "--out", str(out)]
        + ["--data-dir", str(data), "--json", "--page-size", "5"],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_pull_learn_and_push_against_a_real_phoenix(
    phoenix: str, tmp_path: Path, planted: Path
) -> None:
    out, data = tmp_path / "traces", tmp_path / ".coach"
    first = _send(phoenix, 1, 4)
    _wait_for_spans(phoenix, 16)
    _annotate(phoenix, first)

    pulled = _pull(phoenix, out, data)
    assert (pulled["traces"], pulled["spans"], pulled["annotations"]) == (4, 16, 4)
    assert pulled["pages"] == 4  # 16 spans, 5 a page
    records = [json.loads(line) for line in Path(pulled["file"]).read_text().splitlines()]
    assert {r["context"]["trace_id"] for r in records if "context" in r} == {t for t, _, _ in first}
    assert cursor_path(data, PROJECT).exists()

    again = _pull(phoenix, out, data)
    assert (again["file"], again["spans"], again["first_pull"]) == (None, 0, False)

    later = _send(phoenix, 5, 2)
    _wait_for_spans(phoenix, 24)
    third = _pull(phoenix, out, data)
    assert (third["traces"], third["spans"], third["annotations"]) == (2, 8, 0)
    assert len(list(out.glob("*.jsonl"))) == 2

    learned = CliRunner().invoke(
        main,
        ["learn", str(out), "--data-dir", str(data), "--skillbook", str(tmp_path / "book")]
        + ["--out", str(tmp_path / "prompts"), "--json", "-q"],
    )
    assert learned.exit_code == 0, learned.output
    summary = json.loads(learned.stdout)
    assert (summary["trajectories"], summary["quarantined"]) == (6, 0)
    import pyarrow.parquet as pq

    steps = pq.read_table(data / "tables" / "steps.parquet").to_pylist()
    tools = {s["tool_name"] for s in steps if s["step_type"] == "tool_call"}
    assert tools == {"get_order", "cancel_order"}
    runs = pq.read_table(data / "tables" / "trajectories.parquet").to_pylist()
    assert {r["trajectory_id"] for r in runs} == {t for t, _, _ in first + later}
    assert {r["prompt_version"] for r in runs} == {VERSION}
    labelled = {r["trajectory_id"]: r["outcome_label"] for r in runs}
    assert all(labelled[t] == outcome for t, _, outcome in first)

    # prompts rendered from the planted set, pushed twice, read back
    prompts = tmp_path / "prompts_out"
    rendered = CliRunner().invoke(
        main,
        ["learn", str(planted), "--data-dir", str(tmp_path / "p"), "--skillbook"]
        + [str(tmp_path / "pb"), "--out", str(prompts), "-q", "--json"],
    )
    assert rendered.exit_code == 0, rendered.output
    manifest = json.loads((prompts / "manifest.json").read_text())
    arms = [(ns, a) for ns, e in manifest["namespaces"].items() for a in e["arms"]]
    push = ["push-prompts", "phoenix", "--out", str(prompts), "--endpoint", phoenix, "--json"]
    pushed = CliRunner().invoke(main, push)
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.stdout)["created"] == len(arms) > 0
    twice = CliRunner().invoke(main, push)
    assert twice.exit_code == 0, twice.output
    assert (json.loads(twice.stdout)["created"], json.loads(twice.stdout)["unchanged"]) == (
        0,
        len(arms),
    )
    namespace, arm = arms[0]
    name = prompt_name("coach", namespace, arm["arm"])
    with urllib.request.urlopen(f"{phoenix}/v1/prompts/{name}/versions") as page:
        versions = json.load(page)["data"]
    assert len(versions) == 1
    with urllib.request.urlopen(f"{phoenix}/v1/prompts/{name}/tags/{arm['prompt_version']}") as r:
        version = json.load(r)["data"]
    text = (prompts / arm["file"]).read_text(encoding="utf-8")
    assert version["template"]["messages"][0]["content"] == text
    assert version["metadata"]["coach_prompt_version"] == arm["prompt_version"]

    # the loop closes: a run of the agent on the pushed prompt records its version on its span,
    # and the next pull and learn read it back as that arm of the manifest
    _send(phoenix, 7, 1, arm["prompt_version"])
    _wait_for_spans(phoenix, 28)
    fourth = _pull(phoenix, out, data)
    assert (fourth["traces"], fourth["spans"]) == (1, 4)
    relearned = CliRunner().invoke(
        main,
        ["learn", str(out), "--data-dir", str(data), "--skillbook", str(tmp_path / "book")]
        + ["--out", str(tmp_path / "prompts"), "--json", "-q"],
    )
    assert relearned.exit_code == 0, relearned.output
    runs = pq.read_table(data / "tables" / "trajectories.parquet").to_pylist()
    (newest,) = [r for r in runs if r["trajectory_id"] not in {t for t, _, _ in first + later}]
    assert newest["prompt_version"] == arm["prompt_version"]
    known = VersionHistory.load(tmp_path / "pb").by_version()[newest["prompt_version"]]
    assert {(e["namespace"], e["arm"]) for e in known} == {(namespace, arm["arm"])}


# --- failures, against a loopback server that answers like Phoenix -----------------------------


class _Stub(BaseHTTPRequestHandler):
    mode = "ok"
    project_id = "UHJvamVjdDox"

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
        if self.mode == "401":
            self._json(401, {"detail": "Invalid API key"})
        elif self.path.startswith("/v1/projects/p/spans"):
            if self.mode == "truncated":
                raw = json.dumps({"data": [], "next_cursor": None}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw) + 500))
                self.end_headers()
                self.wfile.write(raw[:10])
                self.wfile.flush()
                self.close_connection = True
            else:
                self._json(200, {"data": [], "next_cursor": None})
        elif self.path.startswith("/v1/projects/p"):
            self._json(200, {"data": {"id": self.project_id, "name": "p"}})
        else:
            self._json(404, {"detail": "Not Found"})


@pytest.fixture
def stub() -> Iterator[tuple[str, type[_Stub]]]:
    handler = type("Handler", (_Stub,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _pull_stub(url: str, tmp_path: Path, project: str = "p") -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["pull", "phoenix", "--project", project, "--endpoint", url, "-q"]
        + ["--out", str(tmp_path / "traces"), "--data-dir", str(tmp_path / ".coach")],
    )
    return result.exit_code, result.output


def test_server_down_is_a_clear_domain_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    code, output = _pull_stub(url, tmp_path)
    assert code == 1
    assert f"cannot reach Phoenix at {url}" in output
    assert "Traceback" not in output
    assert not (tmp_path / "traces").exists()


def test_a_refused_key_names_the_variable(
    stub: tuple[str, type[_Stub]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = stub
    handler.mode = "401"
    monkeypatch.setenv("PHOENIX_API_KEY", "wrong")
    code, output = _pull_stub(url, tmp_path)
    assert code == 1
    assert f"Phoenix at {url} refused the request (401" in output
    assert "PHOENIX_API_KEY" in output
    assert "wrong" not in output


def test_a_truncated_page_leaves_nothing_behind(
    stub: tuple[str, type[_Stub]], tmp_path: Path
) -> None:
    url, handler = stub
    handler.mode = "truncated"
    code, output = _pull_stub(url, tmp_path)
    assert code == 1
    assert f"Phoenix at {url} sent a truncated answer" in output
    assert not (tmp_path / "traces").exists()
    assert not cursor_path(tmp_path / ".coach", "p").exists()


def test_a_cursor_of_another_project_is_refused(
    stub: tuple[str, type[_Stub]], tmp_path: Path
) -> None:
    url, handler = stub
    assert _pull_stub(url, tmp_path)[0] == 0  # nothing there: a cursor, no file
    cursor = cursor_path(tmp_path / ".coach", "p")
    before = cursor.read_text()
    handler.project_id = "UHJvamVjdDo5"  # the project was deleted and made again
    code, output = _pull_stub(url, tmp_path)
    assert code == 1
    assert "belongs to project id 'UHJvamVjdDox'" in output
    assert cursor.read_text() == before
    # and a cursor file copied from another project's
    other = cursor_path(tmp_path / ".coach", "q")
    other.write_text(before)
    code, output = _pull_stub(url, tmp_path, project="q")
    assert code == 1
    assert "this cursor is for project 'p'" in output


def test_the_endpoint_comes_from_the_usual_variables() -> None:
    assert phoenix_endpoint(None, {}) == "http://localhost:6006"
    collector = {"PHOENIX_COLLECTOR_ENDPOINT": "http://phoenix:6006/v1/traces"}
    assert phoenix_endpoint(None, collector) == "http://phoenix:6006"
    host = {"PHOENIX_HOST": "0.0.0.0", "PHOENIX_PORT": "7007"}
    assert phoenix_endpoint(None, host) == "http://127.0.0.1:7007"
    assert phoenix_endpoint("http://x:1/", collector) == "http://x:1"

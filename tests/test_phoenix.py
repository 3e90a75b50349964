"""coach pull phoenix and coach push-prompts phoenix.

Against a real Phoenix server (``phoenix serve`` on loopback with a temporary working dir and
its default SQLite store), fed by the OpenTelemetry SDK with OpenInference attributes
(tests/phoenix_send.py, run with the Python of Phoenix's own environment): pull, pull again
(nothing new), pull what came since, learn on the pulled files, annotate traces already pulled
and pull those annotations, push prompts twice, read the prompt back, and resolve runs that
record coach's version tag or Phoenix's own version id; and pull a project a few spans at a
time. Phoenix lives in its own virtual environment, ``.venv/phoenix`` (``make test``
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
from pipeline.experiment import VersionHistory, match_exposures
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


def _send(
    url: str, first: int, count: int, version: str = VERSION, project: str = PROJECT
) -> list[list[str]]:
    done = subprocess.run(
        [str(VENV / "bin" / "python"), str(SENDER), url, project, str(first), str(count), version],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [line.split() for line in done.stdout.splitlines()]


def _annotate(url: str, sent: list[list[str]], on: str = "span") -> None:
    """Annotate each sent trace with its outcome: on its root span, or (``on="trace"``) on the
    trace (Phoenix REST ``POST /v1/span_annotations`` / ``/v1/trace_annotations``)."""
    body = {
        "data": [
            {
                f"{on}_id": root if on == "span" else trace,
                "name": "outcome",
                "annotator_kind": "CODE",
                "result": {"label": outcome, "score": 1.0 if outcome == "success" else 0.0},
            }
            for trace, root, outcome in sent
        ]
    }
    request = urllib.request.Request(
        f"{url}/v1/{on}_annotations?sync=true",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()


def _wait_for_spans(url: str, count: int, project: str = PROJECT) -> None:
    """Phoenix stores spans a moment after it accepts them: wait until it holds ``count``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v1/projects/{project}/spans?limit=1000") as page:
                if len(json.load(page)["data"]) >= count:
                    return
        except urllib.error.HTTPError as exc:  # 404 until the project's first span is stored
            if exc.code != 404:
                raise
        time.sleep(0.2)
    pytest.fail(f"Phoenix did not store {count} spans in time")


def _pull(url: str, out: Path, data: Path, *more: str, project: str = PROJECT) -> dict:
    result = CliRunner().invoke(
        main,
        ["pull", "phoenix", "--project", project, "--endpoint", url, "--out", str(out)]
        + ["--data-dir", str(data), "--json", "--page-size", "5", *more],
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
    assert {labelled[t] for t, _, _ in later} == {"unknown"}  # pulled before any annotation

    # annotations added after their traces were pulled (on a root span, on a trace), and one
    # changed, come with the next pull, alone in their file; learn puts them on the trajectories
    _annotate(phoenix, later[:1])
    _annotate(phoenix, later[1:], on="trace")
    _annotate(phoenix, [[first[0][0], first[0][1], "success"]])
    late = _pull(phoenix, out, data)
    assert (late["traces"], late["spans"], late["annotations"], late["late_annotations"]) == (
        0,
        0,
        3,
        3,
    )
    assert late["rechecked_traces"] == 6
    notes = [json.loads(line) for line in Path(late["file"]).read_text().splitlines()]
    assert {n["trace_id"] for n in notes} == {first[0][0], *(t for t, _, _ in later)}
    assert _pull(phoenix, out, data)["file"] is None  # each version of an annotation once
    relearned = CliRunner().invoke(
        main,
        ["learn", str(out), "--data-dir", str(data), "--skillbook", str(tmp_path / "book")]
        + ["--out", str(tmp_path / "prompts"), "--json", "-q"],
    )
    assert relearned.exit_code == 0, relearned.output
    assert json.loads(relearned.stdout)["trajectories"] == 6
    runs = pq.read_table(data / "tables" / "trajectories.parquet").to_pylist()
    labelled = {r["trajectory_id"]: r["outcome_label"] for r in runs}
    assert len(runs) == 6
    assert all(labelled[t] == outcome for t, _, outcome in first + later)

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
    push += ["--skillbook", str(tmp_path / "pb")]
    pushed = CliRunner().invoke(main, push)
    assert pushed.exit_code == 0, pushed.output
    report = json.loads(pushed.stdout)
    assert report["created"] == len(arms) > 0
    assert (report["aliases_added"], report["unrecorded"]) == (len(arms), [])
    ids = {(r["namespace"], r["arm"]): r["phoenix_version_id"] for r in report["prompts"]}
    twice = CliRunner().invoke(main, push)
    assert twice.exit_code == 0, twice.output
    again_report = json.loads(twice.stdout)
    assert (again_report["created"], again_report["unchanged"]) == (0, len(arms))
    assert again_report["aliases_added"] == 0
    assert {(r["namespace"], r["arm"]): r["alias"] for r in again_report["prompts"]} == ids
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
    assert version["id"] == ids[(namespace, arm["arm"])]
    history = VersionHistory.load(tmp_path / "pb")
    entries = history.by_version()[version["id"]]
    assert {(e["prompt_version"], e["namespace"], e["arm"]) for e in entries} == {
        (arm["prompt_version"], namespace, arm["arm"])
    }

    # the loop closes: runs of the agent on the pushed prompt record its version on their spans
    # (coach's tag, or the id Phoenix's client gives), and the next pull and learn read them
    # back as that arm of the manifest
    tagged = _send(phoenix, 7, 1, arm["prompt_version"])
    by_id = _send(phoenix, 9, 1, version["id"])
    _wait_for_spans(phoenix, 32)
    fourth = _pull(phoenix, out, data)
    assert (fourth["traces"], fourth["spans"]) == (2, 8)
    relearned = CliRunner().invoke(
        main,
        ["learn", str(out), "--data-dir", str(data), "--skillbook", str(tmp_path / "book")]
        + ["--out", str(tmp_path / "prompts"), "--json", "-q"],
    )
    assert relearned.exit_code == 0, relearned.output
    runs = pq.read_table(data / "tables" / "trajectories.parquet").to_pylist()
    recorded = {r["trajectory_id"]: r["prompt_version"] for r in runs}
    assert recorded[tagged[0][0]] == arm["prompt_version"]
    assert recorded[by_id[0][0]] == version["id"]
    newest = [
        {"trajectory_id": t, "prompt_version": recorded[t], "system_prompt": None}
        for t in (tagged[0][0], by_id[0][0])
    ]
    exposures, _report = match_exposures(newest, VersionHistory.load(tmp_path / "pb"))
    assert [(e.prompt_version, e.method) for e in exposures] == [
        (arm["prompt_version"], "recorded")
    ] * 2


def test_a_capped_pull_goes_on_where_it_stopped(phoenix: str, tmp_path: Path) -> None:
    project = "coach-cap"
    sent = _send(phoenix, 1, 5, project=project)
    _wait_for_spans(phoenix, 20, project)
    out, data = tmp_path / "traces", tmp_path / ".coach"
    pulls = []
    while not pulls or pulls[-1]["capped"]:
        pulls.append(_pull(phoenix, out, data, "--max-spans", "6", project=project))
        assert len(pulls) <= 5
    # 4 spans a trace, the root stored last: 6 spans hold one whole trace and the start of
    # the next, which waits for the pull after
    assert [p["traces"] for p in pulls] == [1, 1, 1, 1, 1]
    assert all(p["spans"] == 4 for p in pulls)
    written = [json.loads(line) for p in pulls for line in Path(p["file"]).read_text().splitlines()]
    assert len(written) == len({s["context"]["span_id"] for s in written}) == 20
    assert {s["context"]["trace_id"] for s in written} == {t for t, _, _ in sent}
    assert _pull(phoenix, out, data, "--max-spans", "6", project=project)["file"] is None


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


def test_a_cursor_of_format_1_is_upgraded(stub: tuple[str, type[_Stub]], tmp_path: Path) -> None:
    url, _handler = stub
    assert _pull_stub(url, tmp_path)[0] == 0
    cursor = cursor_path(tmp_path / ".coach", "p")
    state = json.loads(cursor.read_text())
    assert (state["format_version"], state["pulled_traces"]) == (2, {})
    del state["pulled_traces"]
    cursor.write_text(json.dumps(state | {"format_version": 1}))
    assert _pull_stub(url, tmp_path)[0] == 0
    upgraded = json.loads(cursor.read_text())
    assert (upgraded["format_version"], upgraded["pulled_traces"]) == (2, {})
    cursor.write_text(json.dumps(upgraded | {"format_version": 3}))
    code, output = _pull_stub(url, tmp_path)
    assert code == 1
    assert "a Phoenix pull cursor of format 3" in output
    assert "Traceback" not in output


def test_the_endpoint_comes_from_the_usual_variables() -> None:
    assert phoenix_endpoint(None, {}) == "http://localhost:6006"
    collector = {"PHOENIX_COLLECTOR_ENDPOINT": "http://phoenix:6006/v1/traces"}
    assert phoenix_endpoint(None, collector) == "http://phoenix:6006"
    host = {"PHOENIX_HOST": "0.0.0.0", "PHOENIX_PORT": "7007"}
    assert phoenix_endpoint(None, host) == "http://127.0.0.1:7007"
    assert phoenix_endpoint("http://x:1/", collector) == "http://x:1"

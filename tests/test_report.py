"""coach report: a self-contained HTML report of the last run, checked as text and in headless
Chromium (driven over the Chrome DevTools protocol on a pipe)."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from synth import SynthConfig, generate, write_jsonl

from pipeline.cli import main
from pipeline.render import REPORT_SECTIONS as SECTIONS


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two learn runs (the second adds traces), so the Skillbook has a history; the first
    version's Skillbook and prompts are kept for --since."""
    root = tmp_path_factory.mktemp("report")
    write_jsonl(root / "a.jsonl", generate(SynthConfig(seed=7, n_tasks=30)))
    write_jsonl(root / "b.jsonl", generate(SynthConfig(seed=8, n_tasks=60)))
    paths = {
        "data": root / "data",
        "skillbook": root / "skillbook",
        "prompts": root / "prompts",
        "v1": root / "v1",
    }
    common = ["--data-dir", str(paths["data"]), "--skillbook", str(paths["skillbook"])]
    common += ["--out", str(paths["prompts"]), "-q"]
    _invoke("learn", str(root / "a.jsonl"), *common)
    shutil.copytree(paths["skillbook"], paths["v1"] / "skillbook")
    shutil.copytree(paths["prompts"], paths["v1"] / "prompts_out")
    _invoke("learn", str(root / "a.jsonl"), str(root / "b.jsonl"), *common)
    paths["html"] = root / "report.html"
    out = _invoke(
        "report",
        "-o",
        str(paths["html"]),
        "--since",
        str(paths["v1"]),
        "--json",
        *common,
    )
    assert json.loads(out)["path"] == str(paths["html"])
    return paths


def _section(html: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', html, re.S)
    assert match, name
    return match.group(1)


def test_report_has_every_section_with_content(run: dict[str, Path]) -> None:
    html = run["html"].read_text()
    for section_id, title in SECTIONS:
        assert f"<h2>{title}</h2>" in _section(html, section_id)
    book = json.loads((run["skillbook"] / "skillbook.json").read_text())
    skills = _section(html, "skills")
    for skill in book["skills"]:
        assert skill["id"] in skills
    domains = _section(html, "domains")
    assert "<code>domain:travel</code>" in domains and "<svg" in domains
    runs = _section(html, "runs")
    assert [f"<td>v{h['version']}</td>" in runs for h in book["history"]] == [True, True]
    clusters = _section(html, "clusters")
    assert "failures (" in clusters and "last steps of" in clusters
    changes = _section(html, "changes")
    assert "1 skills added, 1 changed, 0 retired" in changes
    assert '<span class="add">+- Before calling book_trip' in changes


def test_report_is_self_contained(run: dict[str, Path]) -> None:
    html = run["html"].read_text()
    assert "<script" not in html
    # no attribute loads anything from elsewhere (SVG namespaces are names, not requests)
    assert not re.search(r'(src|href)="(?!#)', html)
    assert "@import" not in html
    assert not re.search(r"url\((?!#)", html)  # only references inside the page, url(#clip)
    assert html.count("<svg") == 4


def test_report_escapes_trace_text(tmp_path: Path) -> None:
    """Text from traces (here a tool error with markup and a dollar sign) is shown, not run."""
    line = {
        "id": "t1",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "function": {"name": "pay", "arguments": "{}"}, "type": "function"}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "<img src=x onerror=alert(1)> $5"},
        ],
        "outcome": "failure",
        "metadata": {"task_id": "k", "domain": "shop"},
    }
    ok = dict(line, id="t2", outcome="success")
    (tmp_path / "t.jsonl").write_text(json.dumps(line) + "\n" + json.dumps(ok) + "\n")
    args = ["--data-dir", str(tmp_path / "d"), "--skillbook", str(tmp_path / "sb")]
    _invoke("learn", str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "p"), "-q", *args)
    _invoke("report", "-o", str(tmp_path / "r.html"), "-q", *args)
    html = (tmp_path / "r.html").read_text()
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; $5" in html


def test_report_without_a_run_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no complete run to report on" in result.output
    assert "run 'coach learn' first" in result.output


# --- headless Chromium ------------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("COACH_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"{reason}; make test installs it and sets COACH_REQUIRE_CHROMIUM=1")
    pytest.skip(f"{reason}; set COACH_REQUIRE_CHROMIUM=1 (as make test does) to require it")


class DevTools:
    """Chrome DevTools protocol over --remote-debugging-pipe: commands on fd 3, replies and
    events on fd 4, each a JSON message ended by a NUL byte."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # out of the way of 3 and 4 before the child moves them there
        to_child_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        from_child_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)

        def fds() -> None:
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [
                executable,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=fds,
            pass_fds=(3, 4),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in (to_child_r, from_child_w):
            os.close(fd)
        self.write, self.read = to_child_w, from_child_r
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.next_id = 0

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.read], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.read, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.write, self.read):
            os.close(fd)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    devtools = DevTools(_chromium(), tmp_path / "profile")
    try:
        yield devtools
    finally:
        devtools.close()


def _open(browser: DevTools, path: Path) -> dict[str, Any]:
    """Load ``path`` and return what the page shows and what went wrong: console errors,
    uncaught exceptions, log errors, requests that are not file: or data:."""
    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session)
    browser.send("Page.navigate", session, url=path.as_uri())
    browser.wait_for("Page.loadEventFired")
    shown = browser.send(
        "Runtime.evaluate",
        session,
        returnByValue=True,
        expression="""JSON.stringify({
            sections: [...document.querySelectorAll('section[id]')].map(s => ({
                id: s.id,
                title: s.querySelector('h2')?.textContent,
                height: s.getBoundingClientRect().height})),
            charts: [...document.querySelectorAll('svg.chart')].map(
                s => s.getBoundingClientRect().width),
            title: document.title})""",
    )
    shot = browser.send("Page.captureScreenshot", session, format="png")
    page = {k: v for k, v in json.loads(shown["result"]["value"]).items()}
    events = [e for e in browser.events if e.get("sessionId") == session]
    page["errors"] = [
        e["params"]
        for e in events
        if (
            e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")
        )
        or e["method"] == "Runtime.exceptionThrown"
        or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    page["requests"] = [
        e["params"]["request"]["url"]
        for e in events
        if e["method"] == "Network.requestWillBeSent"
        and not e["params"]["request"]["url"].startswith(("file:", "data:"))
    ]
    page["screenshot"] = base64.b64decode(shot["data"])
    return page


def test_report_loads_in_chromium_without_errors(
    run: dict[str, Path], browser: DevTools, tmp_path: Path
) -> None:
    page = _open(browser, run["html"])
    assert page["errors"] == []
    assert page["requests"] == []
    assert page["title"] == "coach report"
    assert [(s["id"], s["title"]) for s in page["sections"]] == list(SECTIONS)
    assert all(s["height"] > 0 for s in page["sections"])
    assert len(page["charts"]) == 4 and all(w > 100 for w in page["charts"])
    shot = tmp_path / "report.png"  # kept out of the repository
    shot.write_bytes(page["screenshot"])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chromium_check_sees_console_errors_and_requests(browser: DevTools, tmp_path: Path) -> None:
    """The same check on a page that logs an error and fetches from the network fails."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><title>bad</title><section id='x'><h2>x</h2></section>"
        "<script>console.error('boom')</script><img src='http://192.0.2.1/pixel.png'>"
    )
    page = _open(browser, bad)
    assert any(e.get("type") == "error" for e in page["errors"])
    assert page["requests"] == ["http://192.0.2.1/pixel.png"]

"""Poisoned traces: personal data, secrets, markup and template code planted everywhere a trace
carries text (the domain and so the namespace and task ids, tool names, tool arguments, tool
results and errors, the system prompt, user turns and final answers) reach no output a person
reads: the prompts, the Skillbook (JSON, Markdown, snapshots, run log), the HTML report, the
AGENTS.md and ACE exports, the diff Markdown, what the commands print, and the requests of
``learn --llm`` (to a loopback server, tests/llm_server.py).

The planted arguments, tool name and error are rules with an effect on success (synth.py), so
skills are learned about them and carry them as far as redaction lets them. The test can fail:
with the detectors switched off, the same walk finds every kind of planted value.

What counts as a leak depends on the output: a planted value or a terminal control character,
anywhere; template delimiters, in every output a person reads (Markdown, HTML, prompts); an
HTML ``<script>`` or ``<img>`` element, in the HTML report as written and in Markdown outputs as
a CommonMark renderer (markdown-it-py) turns them into HTML. JSON files and plain-text command
output are data: markup in them is text, shown as such.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt
from synth import (
    RETRY_ERROR,
    DomainSpec,
    PlantedConfig,
    PlantedRule,
    TaskKind,
    generate_planted,
    write_jsonl,
)

import pipeline.redact
from pipeline.cli import main

EMAILS = ("jane.doe@example.com", "mary.major@example.org")
CARDS = ("4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005")
PHONES = ("+1 415 555 0123", "(415) 555-0124", "415.555.0125", "+44 20 7946 0958", "4155550127")
OPENAI_KEY = "sk-proj-Q9vT3xLm7Rk2Wz8Yb4Nc6Hd1"
AWS_KEY_ID = "AKIAZ7Q2K9M4X1R8T3V6"
AWS_SECRET = "wJalrXUtnFI/K7MDENG/bPxRfiCYzq8Kp2Lm9Xy4"
SSNS = ("123-45-6789", "078-05-1120")
SCRIPT = "<script>alert('x')</script>"
IMG = "<img src=x onerror=alert('x')>"
TEMPLATE_CODE = ("{{ config }}", "{% import os %}")
TERMINAL = "\x1b]0;owned\x07\x1b[2J"

PLANTED: dict[str, tuple[str, ...]] = {
    "email": EMAILS,
    "card": CARDS + tuple(re.sub(r"\D", "", c) for c in CARDS),
    "phone": PHONES,
    "secret": (OPENAI_KEY, AWS_KEY_ID, AWS_SECRET),
    "ssn": SSNS,
}
POISON = (
    f"mail {EMAILS[0]} or {EMAILS[1]}, card {CARDS[0]} / {CARDS[1]} / {CARDS[2]}, phone "
    f"{PHONES[0]}, {PHONES[1]}, {PHONES[2]}, {PHONES[3]}, key {OPENAI_KEY}, aws "
    f"{AWS_KEY_ID} {AWS_SECRET}, ssn {SSNS[0]} {SSNS[1]} {SCRIPT} {IMG} {TERMINAL} "
    + " ".join(TEMPLATE_CODE)
)
ELEMENT = re.compile(r"<(?:script|img)\b", re.IGNORECASE)
DELIMITER = re.compile(r"\{\{|\{%|\{#")
# the command output that is Markdown
MARKDOWN_STDOUT = ("stdout of coach export agents-md", "stdout of coach diff")

DOMAIN = "ops-mary.major@example.org<script>alert('x')</script>"
WRITE = "book_flight"
CANCEL = "cancel" + IMG


def _domain() -> DomainSpec:
    return DomainSpec(
        name=DOMAIN,
        kinds=(
            TaskKind(
                WRITE,
                "search_flights",
                (
                    ("contact", ("desk", "web")),
                    ("card", ("on_file", "new")),
                    ("phone", ("none", "sms")),
                    ("api_key", ("default", "partner")),
                    ("note", ("none", "vip")),
                ),
            ),
            TaskKind(CANCEL, "get_reservation_details", (("reason", ("change", "other")),)),
        ),
        rules=(
            PlantedRule("wrong_arg", WRITE, 0.35, 0.3, arg="contact", wrong_value=EMAILS[0]),
            PlantedRule("wrong_arg", WRITE, 0.35, 0.3, arg="card", wrong_value=CARDS[0]),
            PlantedRule("wrong_arg", WRITE, 0.35, 0.3, arg="phone", wrong_value=PHONES[0]),
            PlantedRule("wrong_arg", WRITE, 0.35, 0.3, arg="api_key", wrong_value=OPENAI_KEY),
            PlantedRule(
                "wrong_arg",
                WRITE,
                0.35,
                0.3,
                arg="note",
                wrong_value=f"{SCRIPT} {TEMPLATE_CODE[0]}",
            ),
            PlantedRule("missing_confirmation", CANCEL, 0.35, 0.3),
            PlantedRule("no_retry", "search_flights", 0.35, 0.3),
        ),
        noise_tools=("get_weather",),
    )


POISONED_ERROR = (
    f"Error: {EMAILS[1]} {SCRIPT} {TERMINAL} {TEMPLATE_CODE[1]} unavailable, please retry"
)


def _poison(record: dict[str, Any]) -> dict[str, Any]:
    """Plant :data:`POISON` in the system prompt, a user turn, a tool result and the final
    answer, the poisoned error in the failing tool's results, and an SSN in the task id."""
    messages = record["messages"]
    messages[0]["content"] = f"You are a travel agent. {POISON}"
    messages[1]["content"] += f" My phone is {PHONES[3]}, ssn {SSNS[1]}."
    for message in messages:
        if message.get("role") == "tool" and message.get("content") == RETRY_ERROR:
            message["content"] = POISONED_ERROR
    tool = next(m for m in messages if m.get("role") == "tool")
    tool["content"] = json.dumps(
        {"email": EMAILS[1], "phone": PHONES[4], "card": CARDS[2], "ssn": SSNS[0]}
    )
    messages[-1]["content"] = f"Done. {POISON} aws_secret_access_key={AWS_SECRET}"
    record["metadata"]["task_id"] += f" ssn {SSNS[0]}"
    return record


def _traces(path: Path) -> Path:
    config = PlantedConfig(domains=(_domain(),), n_trajectories=3000, trials=8, seed=5)
    return write_jsonl(path, (_poison(r) for r in generate_planted(config)))


def _files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from (sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root])


def leaks(name: str, text: str) -> list[str]:
    """What ``text``, the output ``name``, carries that it should not (module docstring)."""
    found = [
        f"{name}: {kind} {value!r}"
        for kind, values in PLANTED.items()
        for value in values
        if value in text
    ]
    found += [f"{name}: control {c!r}" for c in ("\x1b", "\x07") if c in text]
    markdown = name.endswith(".md") or name in MARKDOWN_STDOUT
    if markdown or name.endswith(".html"):
        found += [f"{name}: template {m.group(0)!r}" for m in DELIMITER.finditer(text)]
    html = MarkdownIt("commonmark").render(text) if markdown else text
    if markdown or name.endswith(".html"):
        found += [f"{name}: element {m.group(0)!r}" for m in ELEMENT.finditer(html)]
    return found


def test_the_leak_check_sees_raw_values_and_markup() -> None:
    kinds = {line.split()[1] for line in leaks("x.md", POISON)}
    assert kinds == {*PLANTED, "control", "template", "element"}
    assert {line.split()[1] for line in leaks("x.html", POISON)} == kinds
    safe = r"\<script\> `<img onerror=x>` {\{ config }\} \{\% x \%\} <email> \x1b"
    assert leaks("x.md", safe) == []
    assert leaks("x.html", "&lt;script&gt; &#123;&#123; config &#125;&#125;") == []
    assert leaks("x.json", "<script> {{ config }}") == []  # data, not markup


def _run(work: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Learn from the poisoned traces, then run every command that prints or writes what was
    learned; returns ``{output name: text}`` and the learn summary."""
    traces = _traces(work / "traces" / "poisoned.jsonl")
    dirs = {"data": work / "data", "skillbook": work / "skillbook", "out": work / "prompts_out"}
    common = ["--data-dir", str(dirs["data"]), "--skillbook", str(dirs["skillbook"])]
    runner = CliRunner()
    printed: dict[str, str] = {}

    def run(name: str, *args: str) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        printed[name] = result.stdout
        return result.stdout

    run("learn", "learn", str(traces), *common, "--out", str(dirs["out"]), "-q")
    summary = json.loads(
        run("learn --json", "learn", str(traces), *common, "--out", str(dirs["out"]), "--json")
    )
    report = work / "report.html"
    run("report", "report", *common, "--out", str(dirs["out"]), "-o", str(report), "-q")
    skills = json.loads(run("skills list --json", "skills", "list", *common, "--json"))["skills"]
    run("skills list", "skills", "list", *common)
    for skill in skills:
        run(f"skills show {skill['id']}", "skills", "show", skill["id"], *common)
        run(f"skills show {skill['id']} --json", "skills", "show", skill["id"], *common, "--json")
    run("export agents-md", "skills", "export", "--skillbook", str(dirs["skillbook"]))
    run("export ace", "skills", "export", "--format", "ace", "--skillbook", str(dirs["skillbook"]))
    before = work / "before"
    before.mkdir()
    (before / "skillbook.json").write_text(
        json.dumps({"format_version": 2, "version": 0, "history": [], "skills": []})
    )
    run("diff", "diff", str(before), str(work), "--data-dir", str(dirs["data"]))
    run("diff unified", "diff", str(before), str(work), "--format", "unified")
    written = {
        str(path.relative_to(work)): path.read_text(encoding="utf-8")
        for path in _files(dirs["skillbook"], dirs["out"], report)
    }
    return written | {f"stdout of coach {k}": v for k, v in printed.items()}, summary


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, Any]]:
    return _run(tmp_path_factory.mktemp("poisoned"))


def test_skills_are_learned_about_the_planted_values(
    poisoned: tuple[dict[str, str], dict[str, Any]],
) -> None:
    outputs, summary = poisoned
    book = json.loads(outputs["skillbook/skillbook.json"])
    text = json.dumps(book)
    # the planted values reached the skills, redacted: the test has something to find
    assert summary["skills"]["active"] >= 3
    for token in ("<email>", "<card>", "<phone>", "<secret>"):
        assert token in text, token
    namespaces = {s["namespace"] for s in book["skills"]}
    assert namespaces == {"domain:<email><script>alert('x')</script>"}
    assert summary["base_prompts"] == {
        "domain:<email><script>alert('x')</script>": {"source": "traces", "runs": 3000}
    }


def test_no_output_carries_a_planted_value_or_raw_markup(
    poisoned: tuple[dict[str, str], dict[str, Any]],
) -> None:
    outputs, _ = poisoned
    assert any(name.startswith("prompts_out/") and name.endswith(".md") for name in outputs)
    assert "report.html" in outputs and "skillbook/SKILLBOOK.md" in outputs
    found = [line for name, text in sorted(outputs.items()) for line in leaks(name, text)]
    assert found == []


def test_the_base_prompt_from_traces_is_made_safe(
    poisoned: tuple[dict[str, str], dict[str, Any]],
) -> None:
    outputs, _ = poisoned
    prompt = next(t for n, t in outputs.items() if n.startswith("prompts_out/domain-"))
    assert prompt.startswith("You are a travel agent. mail <email> or <email>, card <card>")
    assert r"\<script>alert('x')\</script> \<img src=x onerror=alert('x')>" in prompt
    assert r"{\{ config }\} {\% import os %\}" in prompt


def test_without_the_detectors_the_walk_finds_every_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every redaction in coach goes through redact_counts
    monkeypatch.setattr(pipeline.redact, "redact_counts", lambda text: (text, Counter()))
    outputs, _ = _run(tmp_path)
    kinds = {line.split(": ")[1].split()[0] for n, t in outputs.items() for line in leaks(n, t)}
    assert kinds >= set(PLANTED)


def test_no_llm_request_nor_llm_wording_carries_a_planted_value(tmp_path: Path) -> None:
    from llm_server import start_server

    traces = _traces(tmp_path / "traces" / "poisoned.jsonl")
    skillbook, out = tmp_path / "skillbook", tmp_path / "prompts_out"
    with start_server() as server:
        result = CliRunner().invoke(
            main,
            ["learn", str(traces), "--data-dir", str(tmp_path / "data"),
             "--skillbook", str(skillbook), "--out", str(out), "--llm", "--llm-auto",
             "--base-url", server.base_url, "--model", "any", "--llm-timeout", "5",
             "--llm-backoff", "0.01", "-q"],
            catch_exceptions=False,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert server.requests
    sent = "\n".join(str(m.get("content")) for b in server.requests for m in b["messages"])
    # the poisoned text reached the requests, redacted (the LLM step writes <> as ‹›)
    for kind in PLANTED:
        assert f"<{kind}>" in sent or f"‹{kind}›" in sent, kind
    found = [
        line
        for i, body in enumerate(server.requests)
        for message in body["messages"]
        for line in leaks(f"request {i}", str(message.get("content") or ""))
    ]
    for path in _files(skillbook, out):
        found += leaks(str(path.relative_to(tmp_path)), path.read_text(encoding="utf-8"))
    assert found == []

"""The review workflow on the command line (learn in propose mode, list, show, approve, reject,
edit, log, checkout, diff, export), section modes, the lock against a second run, and runs
killed with SIGKILL at every named point leaving the previous files intact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from synth import SynthConfig, generate, write_jsonl

from pipeline.cli import main
from pipeline.config import Config
from pipeline.fileio import FAULT_ENV
from pipeline.learn import learn
from pipeline.skillbook import Skillbook

ROOT = Path(__file__).resolve().parents[1]


def _invoke(*args: str) -> dict:
    result = CliRunner().invoke(main, [*args, "--json"], env={"COACH_ACTOR": "ada"})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_propose_review_and_restore_workflow(tmp_path: Path, planted: Path) -> None:
    where = ["--skillbook", str(tmp_path / "sb"), "--data-dir", str(tmp_path / "data")]
    out = ["--out", str(tmp_path / "out")]
    summary = _invoke("learn", str(planted), "--mode", "propose", *where, *out, "-q")
    assert summary["skills"]["proposed"] == 2 and summary["skills"]["active"] == 0
    listed = _invoke("skills", "list", "--status", "proposed", *where)["skills"]
    book_trip = next(s for s in listed if "book_trip" in s["instruction"])
    cancel = next(s for s in listed if "cancel_trip" in s["instruction"])
    shown = _invoke("skills", "show", book_trip["id"][:8], *where)
    assert shown["evidence"]["examples"] and shown["history"][0]["action"] == "added"

    approved = _invoke("skills", "approve", book_trip["id"], "--note", "ok", *where, *out)
    assert approved["skill"]["status"] == "active" and approved["skillbook_version"] == 2
    prompt = (tmp_path / "out" / "domain-travel.md").read_text()
    assert book_trip["instruction"] in prompt and cancel["instruction"] not in prompt
    _invoke("skills", "reject", cancel["id"], "--note", "handled by backend", *where, *out)
    new_text = "Before calling book_trip, read back the price and wait for an explicit yes."
    _invoke("skills", "edit", book_trip["id"], "--text", new_text, *where, *out)
    assert new_text in (tmp_path / "out" / "domain-travel.md").read_text()

    # The nightly run keeps the person's wording and the rejection.
    again = _invoke("learn", str(planted), "--mode", "propose", *where, *out, "-q")
    assert again["skillbook_version"] == 4 and again["skills"]["rejected"] == 1
    log = _invoke("skillbook", "log", *where)["entries"]
    assert [(e["action"], e["actor"]) for e in log] == [
        ("run", "coach"),
        ("approve", "ada"),
        ("reject", "ada"),
        ("edit", "ada"),
    ]
    assert log[2]["note"] == "handled by backend"
    runs = _invoke("skillbook", "log", "--runs", *where)["entries"]
    assert len(runs) == 2 and runs[-1]["changes"]["added"] == []

    restored = _invoke("skillbook", "checkout", "v2", *where, *out)
    assert restored["skillbook_version"] == 5
    changes = _invoke("skillbook", "diff", "v4", *where)
    assert changes["changed"][cancel["id"]]["status"] == ["rejected", "proposed"]
    assert book_trip["instruction"] in (tmp_path / "out" / "domain-travel.md").read_text()

    md = CliRunner().invoke(main, ["skills", "export", "--format", "agents-md", *where[:2]])
    assert md.exit_code == 0 and f"- {book_trip['instruction']}" in md.stdout
    missing = CliRunner().invoke(main, ["skills", "approve", "sk-zzz", *where])
    assert missing.exit_code == 1 and "coach skills list" in missing.output


def test_section_mode_option(tmp_path: Path, planted: Path) -> None:
    where = ["--skillbook", str(tmp_path / "sb"), "--data-dir", str(tmp_path / "data")]
    out = ["--out", str(tmp_path / "out"), "-q"]
    summary = _invoke("learn", str(planted), "--section-mode", "escalation=off", *where, *out)
    assert summary["changes"]["added"] == []
    bad = CliRunner().invoke(main, ["learn", str(planted), "--section-mode", "pitfalls=maybe"])
    assert bad.exit_code == 2 and "SECTION=MODE" in bad.output


def test_second_run_fails_fast_while_the_lock_is_held(tmp_path: Path, planted: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / ".learn.lock").write_text(str(holder.pid))
        result = CliRunner().invoke(
            main, ["learn", str(planted), "--data-dir", str(tmp_path / "data"), "-q"]
        )
        assert result.exit_code == 1
        assert f"another coach run (pid {holder.pid}) holds this lock" in result.output
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its stale lock is taken over
    config = Config(
        paths=(str(planted),),
        data_dir=tmp_path / "data",
        skillbook_dir=tmp_path / "sb",
        out_dir=tmp_path / "out",
    )
    assert learn(config).skillbook.version == 1


def _state(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): p.read_text()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.parent.name in ("sb", "out")
    }


@pytest.mark.slow
def test_sigkill_at_every_point_leaves_previous_files_and_next_run_succeeds(
    tmp_path: Path, planted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    more = write_jsonl(tmp_path / "more.jsonl", generate(SynthConfig(seed=8, n_tasks=20)))
    base = tmp_path / "base"

    def config(where: Path, *paths: Path) -> Config:
        return Config(
            paths=tuple(str(p) for p in paths),
            data_dir=where / "data",
            skillbook_dir=where / "sb",
            out_dir=where / "out",
        )

    learn(config(base, planted))
    before = _state(base)
    reference = tmp_path / "reference"
    shutil.copytree(base, reference)
    after = learn(config(reference, planted, more)).skillbook
    assert after.version == 2  # the second input changes the evidence
    killed = {}
    # before the merge writes anything, after the snapshot, between the Skillbook's JSON and
    # Markdown, before the prompts' manifest, and inside the first lasting write of the run
    points = ("before:v*.json", "after:v*.json", "after:skillbook.json", "before:manifest.json")
    for point in (*points, "during:*"):  # started together: the interpreter start-up dominates
        where = tmp_path / point.replace(":", "-").replace("*", "_")
        shutil.copytree(base, where)
        env = {**os.environ, FAULT_ENV: point, "SOURCE_DATE_EPOCH": "1790000000"}
        args = [sys.executable, "-m", "pipeline", "learn", str(planted), str(more), "-q"]
        args += ["--data-dir", str(where / "data"), "--skillbook", str(where / "sb")]
        args += ["--out", str(where / "out")]
        killed[point] = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    for point, proc in killed.items():
        where = tmp_path / point.replace(":", "-").replace("*", "_")
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == -9, (point, stderr[-2000:])
        for name, text in _state(where).items():
            if name.endswith(".json") or name.endswith(".md"):
                # every file is the previous one or a complete new one, never a part
                assert text == before.get(name) or (name.endswith(".md") or json.loads(text))
        book = Skillbook.load(where / "sb" / "skillbook.json")
        assert book.version in (1, 2)
        if point in ("before-merge", "after-snapshot", "atomic-write"):
            assert (where / "sb" / "skillbook.json").read_text() == before["sb/skillbook.json"]
        result = learn(config(where, planted, more))
        assert result.skillbook.content() == after.content(), point
        assert not list(where.rglob(".*.tmp")), point


def test_a_review_decision_renders_the_prompts_the_way_learn_did(
    tmp_path: Path, planted: Path
) -> None:
    """Templates and budgets given to learn are kept (DATA_DIR/render.json), so that approving a
    skill renders the prompts with them rather than with the defaults."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "system_prompt.md.j2").write_text(
        "{{ base_prompt }}\n\nHOUSE RULES\n{% for section in sections %}"
        "{% for skill in section.skills %}* {{ skill.instruction }}\n{% endfor %}{% endfor %}",
        encoding="utf-8",
    )
    where = ["--skillbook", str(tmp_path / "sb"), "--data-dir", str(tmp_path / "data")]
    out = ["--out", str(tmp_path / "out")]
    learn = ["learn", str(planted), "--mode", "propose", *where, *out, "-q"]
    _invoke(*learn, "--templates", str(templates), "--max-lessons", "1")
    saved = json.loads((tmp_path / "data" / "render.json").read_text())
    assert saved["template_dir"] == str(templates.resolve()) and saved["max_lessons"] == 1
    proposed = _invoke("skills", "list", "--status", "proposed", *where)["skills"]
    for skill in proposed:
        _invoke("skills", "approve", skill["id"], *where, *out)
    prompt = (tmp_path / "out" / "domain-travel.md").read_text()
    assert "HOUSE RULES" in prompt and "Lessons learned" not in prompt
    assert sum(line.startswith("* ") for line in prompt.splitlines()) == 1, "the budget held"
    book_md = (tmp_path / "sb" / "SKILLBOOK.md").read_text()
    assert "Over the prompt budget" in book_md

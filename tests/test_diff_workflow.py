"""The GitHub Actions workflow that posts the prompt diff: it parses, its coach commands are
valid, and its shell steps do what it says on a real repository."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from synth import SynthConfig, generate, write_jsonl

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "prompt-diff.yml"
PLACEHOLDERS = {
    "COACH_TRACES": "traces/",
    "BASE_REF": "main",
    "LINK_BASE": "https://github.com/o/r/blob/abc",
    "GITHUB_STEP_SUMMARY": "summary.md",
}


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def _steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    (job,) = workflow["jobs"].values()
    return list(job["steps"])


def _coach_commands(workflow: dict[Any, Any]) -> list[list[str]]:
    commands = []
    for step in _steps(workflow):
        for line in step.get("run", "").splitlines():
            line = line.strip()
            if not line.startswith("coach "):
                continue
            line = re.sub(r"\s[12]?>>?.*$", "", line)  # drop the redirection
            for name, value in PLACEHOLDERS.items():
                line = line.replace(f"${name}", value)
            commands.append(shlex.split(line)[1:])
    return commands


def test_workflow_runs_on_pull_requests_and_may_comment(workflow: dict[Any, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers
    assert workflow["permissions"]["pull-requests"] == "write"
    assert workflow["permissions"]["contents"] == "read"
    uses = [s.get("uses", "") for s in _steps(workflow)]
    assert any(u.startswith("actions/checkout@") for u in uses)
    checkout = next(s for s in _steps(workflow) if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0  # the base branch must be there for --git-rev


def test_workflow_coach_commands_are_valid(workflow: dict[Any, Any]) -> None:
    commands = _coach_commands(workflow)
    assert [c[0] for c in commands] == ["learn", "diff", "diff", "report"]
    assert isinstance(main, click.Group)
    for args in commands:
        command = main.commands[args[0]]
        command.make_context(args[0], args[1:])  # raises a UsageError on a bad option


def test_comment_script_finds_the_marker_coach_writes(workflow: dict[Any, Any]) -> None:
    from pipeline.render import PromptDiff, Snapshot, markdown_summary
    from pipeline.skillbook import Skillbook

    empty = Snapshot("a", Skillbook(), {})
    first_line = markdown_summary(PromptDiff(empty, empty, (), (), (), ())).splitlines()[0]
    script = next(s for s in _steps(workflow) if "github-script" in s.get("uses", ""))
    assert f'"{first_line}"' in script["with"]["script"]
    assert "startsWith(marker)" in script["with"]["script"]


def _run(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.mark.slow
def test_workflow_shell_steps_on_a_pull_request(tmp_path: Path, workflow: dict[Any, Any]) -> None:
    """The workflow's `run` steps, as bash runs them, on a clone whose base branch has a
    Skillbook learnt from half the traces and whose pull request adds the other half."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    origin, clone = tmp_path / "origin.git", tmp_path / "clone"
    _run(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    _run(tmp_path, "clone", "-q", str(origin), str(clone))
    _run(clone, "checkout", "-q", "-b", "main")
    (clone / "traces").mkdir()
    write_jsonl(clone / "traces" / "a.jsonl", generate(SynthConfig(seed=7, n_tasks=30)))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    base = CliRunner().invoke(
        main,
        [
            "learn",
            str(clone / "traces"),
            "-q",
            "--data-dir",
            str(tmp_path / "base-data"),
            "--skillbook",
            str(clone / "skillbook"),
            "--out",
            str(clone / "prompts_out"),
        ],
    )
    assert base.exit_code == 0, base.output
    _run(clone, "add", "traces", "skillbook", "prompts_out")
    _run(clone, "commit", "-q", "-m", "base")
    _run(clone, "push", "-q", "origin", "main")
    _run(clone, "checkout", "-q", "-b", "more-traces")
    write_jsonl(clone / "traces" / "b.jsonl", generate(SynthConfig(seed=8, n_tasks=60)))

    env |= PLACEHOLDERS | {"GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    for step in _steps(workflow):
        script = step.get("run", "")
        if "coach " not in script:
            continue
        done = subprocess.run(
            ["bash", "-e", "-c", script], cwd=clone, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (step["name"], done.stderr)
    comment = (clone / "prompt-diff.md").read_text()
    assert comment.startswith("<!-- coach-prompt-diff -->")
    assert "`git:origin/main` →" in comment
    assert "### Skills added" in comment
    assert "(https://github.com/o/r/blob/abc/traces/" in comment
    assert (clone / "prompt-diff.patch").read_text().startswith("--- a/prompts_out/")
    assert '<section id="changes">' in (clone / "report.html").read_text()
    assert (tmp_path / "summary.md").read_text() == comment
    upload = next(s for s in _steps(workflow) if "upload-artifact" in s.get("uses", ""))
    for name in upload["with"]["path"].split():
        assert (clone / name).is_file(), name

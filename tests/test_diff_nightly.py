"""The nightly deployment in deploy/: systemd units, the crontab line, and nightly.sh run on a
real git repository with a local remote."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from synth import SynthConfig, generate, write_jsonl

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """systemd unit file -> section -> [(key, value)] (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {line!r} is not key=value"
        sections[current].append((key.strip(), value.strip()))
    return sections


def test_units_name_each_other_and_the_script() -> None:
    service = _unit(DEPLOY / "coach-nightly.service")
    timer = _unit(DEPLOY / "coach-nightly.timer")
    svc = dict(service["Service"])
    assert svc["Type"] == "oneshot"
    assert svc["ExecStart"].endswith("/deploy/nightly.sh")
    assert "75" in svc["SuccessExitStatus"].split()
    tim = dict(timer["Timer"])
    assert tim["Unit"] == "coach-nightly.service"
    assert dict(timer["Install"])["WantedBy"] == "timers.target"
    if shutil.which("systemd-analyze"):
        done = subprocess.run(
            ["systemd-analyze", "calendar", tim["OnCalendar"]], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    paths = []
    for name in ("coach-nightly.service", "coach-nightly.timer"):
        # verify checks that ExecStart exists: point the unit at this checkout
        text = (DEPLOY / name).read_text().replace("/srv/coach", str(ROOT))
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    done = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""  # unknown keys are only warnings: none allowed


def test_crontab_line_is_well_formed() -> None:
    lines = [
        line
        for line in (DEPLOY / "crontab.example").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    (line,) = lines
    minute, hour, day, month, weekday, user, *command = line.split()
    assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24
    assert (day, month, weekday) == ("*", "*", "*")
    assert re.fullmatch(r"[a-z_][a-z0-9_-]*", user)
    assert any(part.endswith("deploy/nightly.sh") for part in command)
    assert ">>" in command  # stdout to a log, stderr to cron mail


def test_nightly_script_is_valid_bash() -> None:
    done = subprocess.run(["bash", "-n", str(DEPLOY / "nightly.sh")], capture_output=True)
    assert done.returncode == 0, done.stderr
    assert os.access(DEPLOY / "nightly.sh", os.X_OK)


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


@pytest.fixture
def deployment(tmp_path: Path) -> dict[str, str]:
    """A bare origin whose main holds a Skillbook learnt from a.jsonl, a dedicated checkout, and
    an export directory holding a.jsonl and a new b.jsonl."""
    if shutil.which("git") is None or shutil.which("flock") is None:
        pytest.skip("git and flock are needed")
    origin, checkout, exports = tmp_path / "origin.git", tmp_path / "checkout", tmp_path / "ex"
    exports.mkdir()
    write_jsonl(exports / "a.jsonl", generate(SynthConfig(seed=7, n_tasks=30)))
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    _git(tmp_path, "clone", "-q", str(origin), str(checkout))
    _git(checkout, "checkout", "-q", "-b", "main")
    learnt = CliRunner().invoke(
        main,
        [
            "learn",
            str(exports / "a.jsonl"),
            "-q",
            "--data-dir",
            str(checkout / ".coach"),
            "--skillbook",
            str(checkout / "skillbook"),
            "--out",
            str(checkout / "prompts_out"),
        ],
    )
    assert learnt.exit_code == 0, learnt.output
    (checkout / ".gitignore").write_text(".coach/\n")
    _git(checkout, "add", ".gitignore", "skillbook", "prompts_out")
    _git(checkout, "commit", "-q", "-m", "v1")
    _git(checkout, "push", "-q", "origin", "main")
    write_jsonl(exports / "b.jsonl", generate(SynthConfig(seed=8, n_tasks=60)))
    bin_dir = Path(sys.executable).parent
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "COACH_REPO": str(checkout),
        "COACH_TRACES": str(exports),
        "COACH_OPEN_PR": "0",
        "ORIGIN": str(origin),
    }


@pytest.mark.slow
def test_nightly_commits_the_new_skillbook_to_a_branch(deployment: dict[str, str]) -> None:
    checkout = Path(deployment["COACH_REPO"])
    done = subprocess.run(
        [str(DEPLOY / "nightly.sh")], env=deployment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing for cron to mail
    stages = [line.split("nightly: ")[1].split(":")[0] for line in done.stdout.splitlines()]
    assert stages[:1] == ["git"] and "commit" in stages and "push" in stages
    # incremental: a.jsonl is already in the tables, only b.jsonl's records are read
    assert f"trajectories ({60 * 6} new records)" in done.stdout

    origin = Path(deployment["ORIGIN"])
    message = _git(origin, "log", "-1", "--format=%B", "coach/nightly")
    assert message.startswith("coach: Skillbook v2 from the nightly run")
    book = json.loads(_git(origin, "show", "coach/nightly:skillbook/skillbook.json"))
    assert book["version"] == 2
    body = (checkout / ".coach" / "pr-body.md").read_text()
    assert "Skillbook v1 → v2" in body and "### Skills added" in body
    assert (checkout / ".coach" / "report.html").is_file()
    assert _git(origin, "rev-parse", "main") == _git(origin, "rev-parse", "coach/nightly~1")


def test_nightly_refuses_to_overlap(deployment: dict[str, str]) -> None:
    data_dir = Path(deployment["COACH_REPO"]) / ".coach"
    data_dir.mkdir(exist_ok=True)
    with open(data_dir / ".nightly.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = subprocess.run(
            [str(DEPLOY / "nightly.sh")], env=deployment, capture_output=True, text=True
        )
    assert done.returncode == 75
    assert "another nightly run holds" in done.stderr

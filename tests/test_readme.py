"""The README's commands, run top to bottom as a newcomer would, print what the README shows.

Every ```` ```console ```` block of README.md holds commands (``$ `` lines, continued with a
trailing backslash) each followed by the output it prints. The test copies the tracked files of
this checkout into a fresh directory beside a ``shared`` link (so ``../shared/traces`` resolves
as in a clone next to the shared traces), puts ``.venv/bin`` on ``PATH`` as the README says,
runs every command of every block in order in one bash process (so ``cd`` and background jobs
carry over, as in a terminal), with stderr merged into stdout, and compares each command's
output with the README's after masking what differs from run to run by nature: durations in
seconds, ISO timestamps, run ids and process ids. A line ``...`` in the README stands for any
number of lines.

Commands in ```` ```sh ```` blocks are not run (they need a model server or a key); every
``coach`` command in them is parsed by the CLI, so an option that does not exist fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from pipeline.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED = ROOT.parent / "shared"

# Masks for what differs from run to run by nature; applied to both sides.
_VOLATILE = [
    (re.compile(r"\(\d+(?:\.\d+)?s\)"), "(<seconds>)"),
    (re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\b"), "<time>"),
    (re.compile(r"run `[0-9a-f]{16}`"), "run `<run id>`"),
    (re.compile(r"\(pid \d+\)"), "(pid <pid>)"),
]
_MARK = "@@readme-command@@"


@dataclass
class Command:
    """One ``$`` command of a console block and the output the README shows for it."""

    line: int
    text: str
    expected: list[str]


def _blocks(text: str, language: str) -> list[tuple[int, list[str]]]:
    """``(first line number, lines)`` of every fenced block of ``language`` (a fence of three or
    more backticks, closed by the same fence, so a block can hold shorter fences)."""
    blocks: list[tuple[int, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.fullmatch(r"(`{3,})" + re.escape(language), lines[i].strip())
        if fence:
            start = j = i + 1
            while lines[j].strip() != fence.group(1):
                j += 1
            blocks.append((start + 1, lines[start:j]))
            i = j
        i += 1
    return blocks


def console_commands(text: str) -> list[Command]:
    """The commands of every console block, in order, with their expected output."""
    commands: list[Command] = []
    for first, lines in _blocks(text, "console"):
        k = 0
        while k < len(lines):
            line = lines[k]
            if not line.startswith("$ "):
                raise AssertionError(f"README.md:{first + k}: output before any command")
            number, parts = first + k, [line[2:]]
            while parts[-1].endswith("\\"):
                k += 1
                parts.append(lines[k])
            k += 1
            expected = []
            while k < len(lines) and not lines[k].startswith("$ "):
                expected.append(lines[k])
                k += 1
            commands.append(Command(number, "\n".join(parts), expected))
    return commands


def _mask(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        for pattern, replacement in _VOLATILE:
            line = pattern.sub(replacement, line)
        out.append(line.rstrip())
    while out and not out[-1]:
        out.pop()
    return out


def _line_fits(want: str, got: str) -> bool:
    if "…" not in want:
        return want == got
    return re.fullmatch(".*".join(map(re.escape, want.split("…"))), got) is not None


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` fits ``expected`` (both masked), where an expected line ``...`` stands
    for any number of lines and ``…`` within a line for any text."""
    want, got = _mask(expected), _mask(actual)

    def fit(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(got)
        if want[i] == "...":
            return any(fit(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and _line_fits(want[i], got[j]) and fit(i + 1, j + 1)

    return fit(0, 0)


def test_matches_masks_volatile_parts_and_ellipsis() -> None:
    assert matches(["a (1.2s)", "...", "z"], ["a (31.0s)", "b", "c", "z"])
    assert matches(["v1 · 2026-11-22T03:56:08Z"], ["v1 · 2027-01-01T00:00:00Z", ""])
    assert not matches(["a", "b"], ["a", "c"])
    assert not matches(["a"], ["a", "extra"])
    assert matches(["Error: …/x.lock: held"], ["Error: /tmp/p/x.lock: held"])
    assert not matches(["Error: …/x.lock"], ["Error: /tmp/p/y.lock"])


def _fresh_clone(base: Path) -> Path:
    """The tracked files of this checkout (as they are in the work tree) in ``base/coach``,
    with ``base/shared`` linking the shared traces and ``.venv`` linking this one."""
    clone = base / "coach"
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = clone / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (clone / ".venv").symlink_to(Path(sys.prefix))
    (base / "shared").symlink_to(SHARED)
    return clone


def test_readme_console_commands_print_what_the_readme_shows(tmp_path: Path) -> None:
    if not (SHARED / "traces").is_dir():
        pytest.skip(f"{SHARED / 'traces'} is absent: the README's shared-traces example needs it")
    commands = console_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 10, "the README's console examples were not found"
    clone = _fresh_clone(tmp_path)
    script = ["set +e"]
    for command in commands:
        script += [f"printf '\\n{_MARK}\\n'", f"{{ {command.text}\n}} 2>&1"]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COACH_", "OPENAI_", "SOURCE_DATE_EPOCH", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "100"
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    outputs = done.stdout.split(f"\n{_MARK}\n")[1:]
    assert len(outputs) == len(commands), done.stderr
    failures = []
    for command, output in zip(commands, outputs, strict=True):
        actual = output.splitlines()
        if not matches(command.expected, actual):
            failures.append(
                f"README.md:{command.line}: $ {command.text}\n--- README\n"
                + "\n".join(command.expected)
                + "\n--- printed\n"
                + output
            )
    assert not failures, "\n\n".join(failures)


def _sh_coach_commands(text: str) -> list[tuple[int, list[str]]]:
    commands = []
    for first, lines in _blocks(text, "sh"):
        for k, line in enumerate(lines):
            if line.startswith("coach "):
                commands.append((first + k, shlex.split(line, comments=True)[1:]))
    return commands


def test_readme_sh_coach_commands_parse() -> None:
    commands = _sh_coach_commands(README.read_text(encoding="utf-8"))
    assert commands, "the README's sh blocks hold no coach command"
    for line, args in commands:
        command: click.Command = cli
        while isinstance(command, click.Group) and args and not args[0].startswith("-"):
            sub = command.get_command(click.Context(command), args[0])
            assert sub is not None, f"README.md:{line}: no command {args[0]!r}"
            command, args = sub, args[1:]
        command.make_context("coach", list(args))  # raises a UsageError on a bad option

"""The examples of README.md and of the pages under docs/, run top to bottom as a newcomer
would, print what the pages show.

The pages are read in the order of :data:`PAGES`: README.md first, then the docs pages in the
order the README lists them, since later examples use files made by earlier ones (the
README's ``planted.jsonl``, learning.md's ``shared-run/``). Every page under docs/ must be in
that list.

Every ```` ```console ```` block holds commands (``$ `` lines, continued with a trailing
backslash) each followed by the output it prints. Every ```` ```python ```` block is run with
``python -``; what it prints is the ```` ```text ```` block right after it (nothing but blank
lines between), or nothing when there is none. The test copies the files of this checkout (those
git tracks or would track: not the ignored ones) into a fresh directory beside a ``shared`` link
(so ``../shared/traces`` resolves as in a clone next to the shared traces), puts ``.venv/bin``
on ``PATH`` as the README says, runs every command of every page in order in one bash process
(so ``cd`` and background jobs carry over, as in a terminal), with stderr merged into stdout,
and compares each command's output with the page's after masking what differs from run to run
by nature: durations in seconds, ISO timestamps, run ids and process ids. A line ``...`` on a
page stands for any number of lines, ``…`` within a line for any text.

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
SHARED = ROOT.parent / "shared"
# README first, then the docs pages in the order the README lists them
PAGES = [
    "README.md",
    "docs/learning.md",
    "docs/formats.md",
    "docs/experiments.md",
    "docs/skillbook.md",
    "docs/ci-and-nightly.md",
    "docs/llm.md",
    "docs/evaluation.md",
    "docs/phoenix.md",
    "docs/langfuse.md",
    "docs/langsmith.md",
    "docs/cli.md",
    "docs/python-api.md",
]

# Masks for what differs from run to run by nature; applied to both sides.
_VOLATILE = [
    (re.compile(r"\(\d+(?:\.\d+)?s\)"), "(<seconds>)"),
    (re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\b"), "<time>"),
    (re.compile(r"run `[0-9a-f]{16}`"), "run `<run id>`"),
    (re.compile(r"\bex-[0-9a-f]{12}\b"), "ex-<experiment id>"),
    (re.compile(r"\(pid \d+\)"), "(pid <pid>)"),
]
_MARK = "@@readme-command@@"
_HEREDOC = "COACH_DOCS_PYTHON"


@dataclass
class Command:
    """One command of a page (a ``$`` line of a console block, or a whole python block run by
    ``python -``) and the output the page shows for it; ``where`` is ``page:line``."""

    where: str
    text: str
    expected: list[str]


@dataclass
class Fence:
    """A fenced block: its language, the line numbers (1-based) of its first and last content
    lines, and those lines."""

    language: str
    first: int
    last: int
    lines: list[str]


def fences(text: str) -> list[Fence]:
    """Every fenced block of ``text``, in order (a fence of three or more backticks, closed by
    the same fence, so a block can hold shorter fences)."""
    found: list[Fence] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.fullmatch(r"(`{3,})([\w-]*)", lines[i].strip())
        if fence:
            start = j = i + 1
            while lines[j].strip() != fence.group(1):
                j += 1
            found.append(Fence(fence.group(2), start + 1, j, lines[start:j]))
            i = j
        i += 1
    return found


def _blocks(text: str, language: str) -> list[tuple[int, list[str]]]:
    """``(first line number, lines)`` of every fenced block of ``language``."""
    return [(f.first, f.lines) for f in fences(text) if f.language == language]


def page_commands(text: str, page: str = "README.md") -> list[Command]:
    """The commands of every console and python block of a page, in order, with their
    expected output."""
    commands: list[Command] = []
    blocks = fences(text)
    lines = text.splitlines()
    for n, block in enumerate(blocks):
        if block.language == "python":
            after = blocks[n + 1] if n + 1 < len(blocks) else None
            expected: list[str] = []
            if after is not None and after.language == "text":
                between = lines[block.last + 1 : after.first - 2]
                expected = [] if any(s.strip() for s in between) else after.lines
            script = "\n".join(block.lines)
            run = f"python - <<'{_HEREDOC}'\n{script}\n{_HEREDOC}"
            commands.append(Command(f"{page}:{block.first}", run, expected))
        if block.language != "console":
            continue
        k = 0
        while k < len(block.lines):
            line = block.lines[k]
            if not line.startswith("$ "):
                raise AssertionError(f"{page}:{block.first + k}: output before any command")
            number, parts = block.first + k, [line[2:]]
            while parts[-1].endswith("\\"):
                k += 1
                parts.append(block.lines[k])
            k += 1
            shown = []
            while k < len(block.lines) and not block.lines[k].startswith("$ "):
                shown.append(block.lines[k])
                k += 1
            commands.append(Command(f"{page}:{number}", "\n".join(parts), shown))
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


def test_page_commands_reads_console_and_python_blocks() -> None:
    page = "\n".join(
        [
            "```console",
            "$ echo a \\",
            "    b",
            "a b",
            "$ true",
            "```",
            "",
            "```python",
            "print(1)",
            "```",
            "",
            "```text",
            "1",
            "```",
            "```python",
            "pass",
            "```",
            "prose",
            "```text",
            "not its output",
            "```",
        ]
    )
    commands = page_commands(page, "p.md")
    assert [(c.where, c.expected) for c in commands] == [
        ("p.md:2", ["a b"]),
        ("p.md:5", []),
        ("p.md:9", ["1"]),
        ("p.md:16", []),
    ]
    assert commands[0].text == "echo a \\\n    b"
    assert commands[2].text == f"python - <<'{_HEREDOC}'\nprint(1)\n{_HEREDOC}"


def test_every_docs_page_is_run_in_a_stated_order() -> None:
    pages = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")}
    assert pages == set(PAGES[1:]), "add each docs page to PAGES, in the order it is read"


def _worktree_files() -> list[str]:
    """The files git tracks or would track (not ignored), as they are in the work tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(set(filter(None, listed.split("\0"))))


def _fresh_clone(base: Path) -> Path:
    """The files of this checkout (see :func:`_worktree_files`) in ``base/coach``, with
    ``base/shared`` linking the shared traces and ``.venv`` linking this one."""
    clone = base / "coach"
    for name in _worktree_files():
        source = ROOT / name
        if source.is_file():
            target = clone / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (clone / ".venv").symlink_to(Path(sys.prefix))
    (base / "shared").symlink_to(SHARED)
    return clone


def test_page_examples_print_what_the_pages_show(tmp_path: Path) -> None:
    if not (SHARED / "traces").is_dir():
        pytest.skip(f"{SHARED / 'traces'} is absent: the docs' shared-traces example needs it")
    commands = [
        command
        for page in PAGES
        for command in page_commands((ROOT / page).read_text(encoding="utf-8"), page)
    ]
    readme = [c for c in commands if c.where.startswith("README.md:")]
    assert len(readme) >= 3, "the README's console examples were not found"
    assert len(commands) >= 25, "the docs' console examples were not found"
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
                f"{command.where}: $ {command.text}\n--- page\n"
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


def test_sh_coach_commands_of_the_pages_parse() -> None:
    found = 0
    for page in PAGES:
        for line, args in _sh_coach_commands((ROOT / page).read_text(encoding="utf-8")):
            found += 1
            command: click.Command = cli
            while isinstance(command, click.Group) and args and not args[0].startswith("-"):
                sub = command.get_command(click.Context(command), args[0])
                assert sub is not None, f"{page}:{line}: no command {args[0]!r}"
                command, args = sub, args[1:]
            command.make_context("coach", list(args))  # raises a UsageError on a bad option
    assert found >= 5, "the pages' sh blocks hold no coach command"

"""The docs are current and hold together: what cog generates (every command's ``--help`` in
docs/cli.md) is what the commands print today, and every relative link between README.md and the
pages under docs/ names a file that exists and, with ``#anchor``, a heading of that file.

The examples on the pages are run by tests/test_readme.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> list[str]:
    """The lines of a Markdown page outside fenced blocks and HTML comments, the others blank
    (so line numbers stay)."""
    out, fence, comment = [], "", False
    for line in text.splitlines():
        stripped = line.strip()
        if fence:
            fence = "" if stripped == fence else fence
            out.append("")
        elif comment:
            comment = "-->" not in line
            out.append("")
        elif match := re.fullmatch(r"(`{3,})[\w-]*", stripped):
            fence = match.group(1)
            out.append("")
        elif stripped.startswith("<!--"):
            comment = "-->" not in line
            out.append("")
        else:
            out.append(line)
    return out


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page: lower case, punctuation other
    than ``-`` and ``_`` dropped, spaces as ``-``; a repeated one gets ``-1``, ``-2``, ..."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(text):
        heading = re.match(r"#{1,6} (.*)", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_anchors_follow_github() -> None:
    page = "# coach\n## What `make learn` says\n```sh\n# not a heading\n```\n## Four data sets\n"
    page += "## Four data sets\n### `coach skills approve`\n"
    assert anchors(page) == {
        "coach",
        "what-make-learn-says",
        "four-data-sets",
        "four-data-sets-1",
        "coach-skills-approve",
    }


def test_links_between_pages_resolve() -> None:
    broken = []
    for page in PAGES:
        for number, line in enumerate(_prose(page.read_text(encoding="utf-8")), 1):
            for target in _LINK.findall(line):
                if re.match(r"[a-z]+:", target):
                    continue
                path, _, anchor = target.partition("#")
                linked = (page.parent / path).resolve() if path else page
                where = f"{page.relative_to(ROOT)}:{number}: {target}"
                if not linked.exists():
                    broken.append(f"{where}: no such file")
                elif anchor and anchor not in anchors(linked.read_text(encoding="utf-8")):
                    broken.append(f"{where}: no such heading")
    assert not broken, "\n".join(broken)


def test_the_generated_help_is_current() -> None:
    files = [p for p in PAGES if "[[[cog" in p.read_text(encoding="utf-8")]
    assert ROOT / "docs" / "cli.md" in files
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COACH_", "OPENAI_"))}
    done = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", "--diff", *map(str, files)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, (
        "the help in the docs is stale; run `make docs`\n" + done.stdout + done.stderr
    )

"""Compare two versions of coach's output: the Skillbook and the rendered prompts.

A *side* of a comparison (:class:`Snapshot`) is read from

- a directory: a Skillbook directory (``skillbook.json``), a prompts directory (``manifest.json``
  or ``*.md``), or a directory holding both as ``skillbook/`` and ``prompts_out/`` (a checkout);
- a Skillbook file (``skillbook.json``);
- a git revision: the same files as they were at that revision, read with ``git show``.

:func:`diff_snapshots` finds the skills added, changed and retired (by skill id) and the prompt
files added, removed or modified, with a unified diff (:mod:`difflib`, the format of
``diff -u``) per file. Each changed prompt line is attributed to the skill whose instruction it
carries, so a reviewer sees which line changed and on what evidence. :func:`markdown_summary`
writes that as Markdown for a pull-request comment.

When one side has a Skillbook but no prompts (a bare Skillbook file), both sides' prompts are
rendered from their Skillbooks with the default template and no base prompt, so that the diff
shows the lines coach adds; :attr:`PromptDiff.rendered_from_skillbook` says so.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.render import PromptGenerator, prompt_filename
from pipeline.skillbook import Skill, Skillbook

__all__ = [
    "LIVE_STATUSES",
    "PromptChange",
    "PromptDiff",
    "SkillChange",
    "Snapshot",
    "diff_snapshots",
    "example_sources",
    "markdown_summary",
    "snapshot_from_git",
    "snapshot_from_path",
]

LIVE_STATUSES = ("active", "proposed")
"""Statuses of skills in use or awaiting review; a skill leaving them is *retired*."""

# GitHub rejects comments longer than 65536 characters.
COMMENT_LIMIT = 60_000
PROMPT_LINES_SHOWN = 40  # changed lines listed per prompt file before the unified diff
_UNESCAPE = re.compile(r"\\([\\`*{}\[\]<>#|])")


@dataclass(frozen=True)
class Snapshot:
    """One side of a comparison.

    ``label``: where it was read from (a path, or ``git:<rev>``). ``skillbook``: the Skillbook
    (empty when the side has none). ``prompts``: prompt file name -> text (``None`` when the side
    has no prompts at all, ``{}`` when it has an empty or absent prompts directory in a revision).
    ``manifest``: ``manifest.json`` of the prompts, if any.
    """

    label: str
    skillbook: Skillbook
    prompts: dict[str, str] | None
    manifest: dict[str, Any] | None = None
    has_skillbook: bool = True


@dataclass(frozen=True)
class SkillChange:
    """A skill that differs between the sides.

    ``kind``: ``added`` (new, or live again), ``changed`` (still live; ``fields`` lists which of
    status, instruction, section, namespace, evidence, flags differ) or ``retired`` (left the
    live statuses, or removed). ``skill``: the new version (the old one when removed);
    ``old``: the old version (None when added).
    """

    kind: str
    skill: Skill
    old: Skill | None
    fields: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: kind, id, fields, and the old and new skill dicts."""
        return {
            "kind": self.kind,
            "id": self.skill.id,
            "fields": list(self.fields),
            "old": self.old.to_dict() if self.old else None,
            "new": self.skill.to_dict() if self.kind != "removed" else None,
        }


@dataclass(frozen=True)
class PromptChange:
    """A prompt file that differs: ``status`` added | removed | modified; ``diff``: unified
    diff lines (``a/<dir>/<file>``, ``b/<dir>/<file>``); ``added`` / ``removed``: the changed
    lines' text; ``skills``: line text -> skill id, for changed lines that carry a skill."""

    file: str
    status: str
    diff: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    skills: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptDiff:
    """The result of :func:`diff_snapshots`: the two sides, the skill changes (added, changed,
    retired, each sorted by namespace and id), and the prompt changes (by file name)."""

    old: Snapshot
    new: Snapshot
    added: tuple[SkillChange, ...]
    changed: tuple[SkillChange, ...]
    retired: tuple[SkillChange, ...]
    prompts: tuple[PromptChange, ...]
    rendered_from_skillbook: bool = False

    @property
    def prompts_changed(self) -> bool:
        """True when any prompt file was added, removed or modified."""
        return bool(self.prompts)

    def unified(self) -> str:
        """Every prompt change as one unified diff (empty when nothing changed)."""
        return "".join(line for change in self.prompts for line in change.diff)

    def to_dict(self) -> dict[str, Any]:
        """The ``coach diff --format json`` object: old/new (label, skillbook_version),
        prompts_changed, rendered_from_skillbook, skills {added, changed, retired},
        prompts [{file, status, added, removed, skills, diff}]."""
        return {
            "old": _side_dict(self.old),
            "new": _side_dict(self.new),
            "prompts_changed": self.prompts_changed,
            "rendered_from_skillbook": self.rendered_from_skillbook,
            "skills": {
                "added": [c.to_dict() for c in self.added],
                "changed": [c.to_dict() for c in self.changed],
                "retired": [c.to_dict() for c in self.retired],
            },
            "prompts": [
                {
                    "file": p.file,
                    "status": p.status,
                    "added": list(p.added),
                    "removed": list(p.removed),
                    "skills": p.skills,
                    "diff": "".join(p.diff),
                }
                for p in self.prompts
            ],
        }


def _side_dict(side: Snapshot) -> dict[str, Any]:
    return {
        "label": side.label,
        "skillbook_version": side.skillbook.version if side.has_skillbook else None,
        "skills": side.skillbook.by_status() if side.has_skillbook else None,
        "prompt_files": sorted(side.prompts) if side.prompts is not None else None,
    }


# --- reading a side -------------------------------------------------------------------------


def _prompt_names(directory: Path) -> list[str] | None:
    manifest = directory / "manifest.json"
    if manifest.is_file():
        return sorted(_read_manifest(manifest.read_text(encoding="utf-8"), manifest)["prompts"])
    names = sorted(p.name for p in directory.glob("*.md") if p.name != "SKILLBOOK.md")
    return names or None


def _read_manifest(text: str, where: object) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{where}: manifest.json is not JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), dict):
        raise InputError(f"{where}: manifest.json has no 'prompts' object; re-run 'coach render'")
    return data


def snapshot_from_path(
    path: Path, *, skillbook_name: str = "skillbook", prompts_name: str = "prompts_out"
) -> Snapshot:
    """Read one side from a Skillbook file or a directory (see the module docstring).

    In a directory, the Skillbook is ``skillbook.json`` or ``<skillbook_name>/skillbook.json``;
    the prompts are the directory's own (listed by ``manifest.json``, else its ``*.md`` files
    other than ``SKILLBOOK.md``) or those of ``<prompts_name>/``.

    Raises:
        InputError: the path does not exist, or holds neither a Skillbook nor prompts.
        SkillbookError: the Skillbook file is unreadable.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_file():
        return Snapshot(str(path), Skillbook.load(path), None)
    book_path = next(
        (
            p
            for p in (path / "skillbook.json", path / skillbook_name / "skillbook.json")
            if p.is_file()
        ),
        None,
    )
    prompts_dir = None
    for candidate in (path, path / prompts_name):
        if candidate.is_dir() and _prompt_names(candidate) is not None:
            prompts_dir = candidate
            break
    if book_path is None and prompts_dir is None:
        raise InputError(
            f"{path}: neither a Skillbook (skillbook.json) nor prompts (manifest.json or *.md) "
            f"found here or in {skillbook_name}/ and {prompts_name}/"
        )
    prompts, manifest = None, None
    if prompts_dir is not None:
        names = _prompt_names(prompts_dir) or []
        missing = [n for n in names if not (prompts_dir / n).is_file()]
        if missing:
            raise InputError(
                f"{prompts_dir}: manifest.json lists {', '.join(missing)} but the file is "
                "missing; re-run 'coach render'"
            )
        prompts = {n: (prompts_dir / n).read_text(encoding="utf-8") for n in names}
        if (prompts_dir / "manifest.json").is_file():
            manifest = json.loads((prompts_dir / "manifest.json").read_text(encoding="utf-8"))
    book = Skillbook.load(book_path) if book_path is not None else Skillbook()
    return Snapshot(str(path), book, prompts, manifest, has_skillbook=book_path is not None)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise InputError("git is not installed; install git or compare directories") from exc


def snapshot_from_git(
    rev: str,
    *,
    skillbook_dir: Path = Path("skillbook"),
    prompts_dir: Path = Path("prompts_out"),
    cwd: Path | None = None,
) -> Snapshot:
    """Read one side as it was at git revision ``rev``: ``<skillbook_dir>/skillbook.json`` and
    the files of ``<prompts_dir>/`` (paths relative to ``cwd``, default the current directory,
    inside its work tree), with ``git show <rev>:<path>``. A Skillbook absent at ``rev`` is an
    empty Skillbook; absent prompts are an empty set, so everything in the other side is new.

    Raises:
        InputError: git is missing, ``cwd`` is not in a git work tree, or ``rev`` is unknown.
        SkillbookError: the Skillbook at ``rev`` is unreadable.
    """
    cwd = (cwd or Path.cwd()).resolve()
    top = _git(cwd, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise InputError(f"{cwd}: not inside a git work tree; --git-rev needs one")
    root = Path(top.stdout.decode().strip()).resolve()
    check = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if check.returncode != 0:
        raise InputError(
            f"git revision {rev!r} not found in {root}; fetch it first (e.g. git fetch origin)"
        )

    def rel(p: Path) -> str:
        full = (cwd / p).resolve()
        try:
            return full.relative_to(root).as_posix()
        except ValueError as exc:
            raise InputError(f"{full}: outside the git work tree {root}") from exc

    def show(path: str) -> str | None:
        out = _git(root, "show", f"{rev}:{path}")
        return out.stdout.decode("utf-8") if out.returncode == 0 else None

    book_rel = f"{rel(skillbook_dir)}/skillbook.json"
    text = show(book_rel)
    book = Skillbook()
    if text is not None:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp) / "skillbook.json"
            tmp_path.write_text(text, encoding="utf-8")
            book = Skillbook.load(tmp_path)
    prompts_rel = rel(prompts_dir)
    listing = _git(root, "ls-tree", "-r", "-z", "--name-only", rev, "--", f"{prompts_rel}/")
    files = [f for f in listing.stdout.decode().split("\0") if f]
    prompts: dict[str, str] = {}
    manifest = None
    for file in files:
        name = file[len(prompts_rel) + 1 :]
        if "/" in name:
            continue
        content = show(file)
        if content is None:
            continue
        if name == "manifest.json":
            manifest = _read_manifest(content, f"git:{rev}:{file}")
        elif name.endswith(".md"):
            prompts[name] = content
    if manifest is not None:
        prompts = {n: t for n, t in prompts.items() if n in manifest["prompts"]}
    return Snapshot(f"git:{rev}", book, prompts, manifest, has_skillbook=text is not None)


# --- comparing ------------------------------------------------------------------------------


def _differing_fields(old: Skill, new: Skill) -> tuple[str, ...]:
    names = ("status", "instruction", "section", "namespace", "evidence", "flags")
    out = []
    for name in names:
        a, b = getattr(old, name), getattr(new, name)
        if name == "evidence":
            # Example pointers alone are not a change a reviewer needs to see.
            a = {k: v for k, v in a.items() if k != "examples"}
            b = {k: v for k, v in b.items() if k != "examples"}
        if a != b:
            out.append(name)
    return tuple(out)


def _skill_changes(
    old: Skillbook, new: Skillbook
) -> tuple[list[SkillChange], list[SkillChange], list[SkillChange]]:
    added, changed, retired = [], [], []
    for sid in sorted(set(old.skills) | set(new.skills)):
        a, b = old.skills.get(sid), new.skills.get(sid)
        if b is None:
            assert a is not None
            if a.status in LIVE_STATUSES:
                retired.append(SkillChange("removed", a, a))
            continue
        was_live = a is not None and a.status in LIVE_STATUSES
        is_live = b.status in LIVE_STATUSES
        if a is None:
            added.append(SkillChange("added", b, None))
        elif not was_live and is_live:
            added.append(SkillChange("added", b, a, _differing_fields(a, b)))
        elif was_live and not is_live:
            retired.append(SkillChange("retired", b, a, _differing_fields(a, b)))
        else:
            fields = _differing_fields(a, b)
            if fields and is_live:
                changed.append(SkillChange("changed", b, a, fields))
    key = lambda c: (c.skill.namespace, c.skill.id)  # noqa: E731
    return sorted(added, key=key), sorted(changed, key=key), sorted(retired, key=key)


def _line_text(line: str) -> str:
    text = line[2:] if line.startswith("- ") else line
    return " ".join(_UNESCAPE.sub(r"\1", text).split())


def _render(book: Skillbook) -> dict[str, str]:
    return {prompt_filename(p.namespace): p.text for p in PromptGenerator().run(book, {})}


def diff_snapshots(
    old: Snapshot, new: Snapshot, *, prompts_dir: str = "prompts_out", context: int = 3
) -> PromptDiff:
    """Compare two sides: skills by id, prompts file by file.

    A skill is *added* when it is new or becomes active/proposed again, *retired* when it leaves
    those statuses (or disappears), *changed* when it stays live and its status, instruction,
    section, namespace, evidence figures or flags differ (example pointers alone do not count).
    Prompt diffs have ``context`` lines of context, headers ``a/<prompts_dir>/<file>`` and
    ``b/<prompts_dir>/<file>``.
    """
    rendered = old.prompts is None or new.prompts is None
    old_prompts = _render(old.skillbook) if rendered else (old.prompts or {})
    new_prompts = _render(new.skillbook) if rendered else (new.prompts or {})
    instruction_of: dict[str, str] = {}
    for book in (old.skillbook, new.skillbook):
        for skill in book.skills.values():
            instruction_of[" ".join(skill.instruction.split())] = skill.id
    changes = []
    for name in sorted(set(old_prompts) | set(new_prompts)):
        a, b = old_prompts.get(name), new_prompts.get(name)
        if a == b:
            continue
        status = "added" if a is None else "removed" if b is None else "modified"
        lines = list(
            difflib.unified_diff(
                (a or "").splitlines(keepends=True),
                (b or "").splitlines(keepends=True),
                fromfile=f"a/{prompts_dir}/{name}" if a is not None else "/dev/null",
                tofile=f"b/{prompts_dir}/{name}" if b is not None else "/dev/null",
                n=context,
            )
        )
        lines = [line if line.endswith("\n") else line + "\n" for line in lines]
        body = [line for line in lines if not line.startswith(("---", "+++"))]
        plus = tuple(line[1:].rstrip("\n") for line in body if line.startswith("+"))
        minus = tuple(line[1:].rstrip("\n") for line in body if line.startswith("-"))
        skills = {
            text: instruction_of[_line_text(text)]
            for text in plus + minus
            if _line_text(text) in instruction_of
        }
        changes.append(PromptChange(name, status, tuple(lines), plus, minus, skills))
    added, changed, retired = _skill_changes(old.skillbook, new.skillbook)
    return PromptDiff(
        old, new, tuple(added), tuple(changed), tuple(retired), tuple(changes), rendered
    )


# --- Markdown for a pull-request comment ----------------------------------------------------


def example_sources(tables_dir: Path) -> dict[str, str]:
    """trajectory_id -> source_uri (the file the trajectory was read from) from the
    ``trajectories`` table in ``tables_dir``; empty when the table is absent."""
    import polars as pl

    path = tables_dir / "trajectories.parquet"
    if not path.is_file():
        return {}
    frame = pl.read_parquet(path, columns=["trajectory_id", "source_uri"])
    return dict(zip(frame["trajectory_id"].to_list(), frame["source_uri"].to_list(), strict=True))


def _md(text: str) -> str:
    """Inline Markdown-safe text: one line, HTML and table-breaking characters escaped."""
    text = " ".join(str(text).split())
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and value != 0 and abs(value) < 10**-digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _p(value: Any) -> str:
    """A p- or q-value: 4 decimals, scientific when small, ``<1e-06`` for a stored 0."""
    if isinstance(value, int | float) and value == 0:
        return "<1e-06"
    return _fmt(value, 4)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _evidence_cells(ev: dict[str, Any]) -> str:
    return (
        f"{ev.get('n_with')} / {ev.get('n_without')} | {_pct(ev.get('rate_with'))} vs "
        f"{_pct(ev.get('rate_without'))} | {_fmt(ev.get('lift'))} | "
        f"{_fmt(ev.get('odds_ratio'))} [{_fmt(ev.get('ci_low'))}, {_fmt(ev.get('ci_high'))}] | "
        f"{_p(ev.get('q_value'))}"
    )


def _examples(
    ev: dict[str, Any], sources: dict[str, str], link_base: str | None, limit: int = 3
) -> str:
    out = []
    for example in (ev.get("examples") or [])[:limit]:
        tid, step = example.get("trajectory_id"), example.get("step_idx")
        label = f"`{tid}`" + (f" step {step}" if step is not None else "")
        source = sources.get(tid)
        if source and link_base:
            out.append(f"[{label}]({link_base.rstrip('/')}/{source.lstrip('./')})")
        elif source:
            out.append(f"{label} in `{source}`")
        else:
            out.append(label)
    return ", ".join(out) or "none recorded"


def _change_note(change: SkillChange) -> str:
    if change.old is None or not change.fields:
        return ""
    notes = []
    a, b = change.old, change.skill
    if "status" in change.fields:
        notes.append(f"status {a.status} → {b.status}")
    if "instruction" in change.fields:
        notes.append(f"wording was: {_md(a.instruction)}")
    if "evidence" in change.fields:
        for key, label in (("odds_ratio", "odds ratio"), ("q_value", "q"), ("n_with", "n with")):
            before, after = a.evidence.get(key), b.evidence.get(key)
            if before != after:
                show = _p if key == "q_value" else _fmt
                a_text, b_text = show(before), show(after)
                if a_text == b_text and key == "odds_ratio":
                    a_text, b_text = _fmt(before, 3), _fmt(after, 3)
                notes.append(f"{label} {a_text} → {b_text}")
    if "flags" in change.fields:
        notes.append("flags: " + (", ".join(b.flags) or "cleared"))
    if "section" in change.fields:
        notes.append(f"section {a.section} → {b.section}")
    return "; ".join(notes)


def _skill_table(
    changes: tuple[SkillChange, ...], sources: dict[str, str], link_base: str | None
) -> list[str]:
    lines = [
        "| skill | status | n with / without | success with vs without | lift | "
        "odds ratio [95% CI] | q | what changed | examples |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for change in changes:
        skill = change.skill
        status = skill.status + (f" ({', '.join(skill.flags)})" if skill.flags else "")
        lines.append(
            f"| {_md(skill.instruction)}<br>`{skill.id}` · {_md(skill.namespace)} · "
            f"{_md(skill.section)} | {_md(status)} | {_evidence_cells(skill.evidence)} | "
            f"{_change_note(change) or '—'} | {_examples(skill.evidence, sources, link_base)} |"
        )
    return lines


def markdown_summary(
    diff: PromptDiff,
    *,
    sources: dict[str, str] | None = None,
    link_base: str | None = None,
    max_chars: int = COMMENT_LIMIT,
) -> str:
    """Markdown for a pull-request comment: a headline (Skillbook versions, counts), the prompt
    lines added and removed with the skill each carries, a table per kind of skill change with
    the evidence (n, success rates, lift, odds ratio with 95% interval, q) and example
    trajectories (linked to ``link_base`` + source path when given, e.g.
    ``https://github.com/OWNER/REPO/blob/SHA``), then the unified diff in a collapsed block.

    ``sources``: trajectory_id -> source file (:func:`example_sources`). The text is cut to
    ``max_chars`` (GitHub's comment limit is 65536 characters), the unified diff first.
    """
    sources = sources or {}
    old_v = diff.old.skillbook.version if diff.old.has_skillbook else "none"
    new_v = diff.new.skillbook.version if diff.new.has_skillbook else "none"
    n_plus = sum(len(p.added) for p in diff.prompts)
    n_minus = sum(len(p.removed) for p in diff.prompts)
    head = [
        "<!-- coach-prompt-diff -->",
        "## coach: prompt changes",
        "",
        f"`{_md(diff.old.label)}` → `{_md(diff.new.label)}` · Skillbook v{old_v} → v{new_v} · "
        f"skills: {len(diff.added)} added, {len(diff.changed)} changed, {len(diff.retired)} "
        f"retired · {_plural(len(diff.prompts), 'prompt file')} changed "
        f"(+{n_plus} −{n_minus} lines)",
        "",
    ]
    if diff.rendered_from_skillbook:
        head += [
            "_Prompts rendered from the Skillbooks with the default template and no base "
            "prompt (a side had no prompts directory)._",
            "",
        ]
    body: list[str] = []
    if not diff.prompts:
        body += ["No prompt line changed.", ""]
    else:
        body += ["### Prompt lines", ""]
        skills = {
            s.id: s
            for s in (*diff.old.skillbook.skills.values(), *diff.new.skillbook.skills.values())
        }
        for change in diff.prompts:
            whole = change.status != "modified"
            size = len(change.added if change.status == "added" else change.removed)
            carrying = sum(t in change.skills for t in change.added + change.removed)
            note = ""
            if whole:
                note = f", {size} lines, " + (
                    f"{carrying} carrying skills:" if carrying else "none carrying a skill"
                )
            body += [f"**`{_md(change.file)}`** ({change.status}{note})", ""]
            if whole and not carrying:
                continue
            shown_lines = 0
            for sign, lines in (("added", change.added), ("removed", change.removed)):
                for text in lines:
                    sid = change.skills.get(text)
                    if not text.strip() or (whole and sid is None):
                        continue
                    shown_lines += 1
                    if shown_lines > PROMPT_LINES_SHOWN:
                        continue
                    why = ""
                    if sid is not None:
                        ev = skills[sid].evidence
                        why = (
                            f" — `{sid}`: odds ratio {_fmt(ev.get('odds_ratio'))} "
                            f"[{_fmt(ev.get('ci_low'))}, {_fmt(ev.get('ci_high'))}], "
                            f"q={_p(ev.get('q_value'))}"
                        )
                    shown = text[2:] if text.startswith("- ") else text
                    body.append(f"- {sign}: {_md(shown)}{why}")
            if shown_lines > PROMPT_LINES_SHOWN:
                body.append(
                    f"- … {shown_lines - PROMPT_LINES_SHOWN} more changed lines in the diff below"
                )
            body.append("")
    for title, changes in (
        ("Skills added", diff.added),
        ("Skills changed", diff.changed),
        ("Skills retired", diff.retired),
    ):
        if changes:
            body += [f"### {title}", "", *_skill_table(changes, sources, link_base), ""]
    body += [
        "<sub>n: trajectories with / without the behaviour; success rates with vs without; lift "
        "= rate with / rate without; odds ratio of success within task with its 95% interval; "
        "q: Benjamini–Hochberg false discovery rate.</sub>",
        "",
    ]
    unified = diff.unified()
    text = "\n".join(head + body)
    if unified:
        block = [
            "<details><summary>Unified diff</summary>",
            "",
            "```diff",
            unified.rstrip("\n"),
            "```",
            "",
            "</details>",
            "",
        ]
        room = max_chars - len(text) - 200
        full = "\n".join(block)
        if len(full) > room:
            cut = unified[: max(0, room - 100)]
            cut = cut[: cut.rfind("\n") + 1] if "\n" in cut else ""
            block = [
                "<details><summary>Unified diff (truncated; run <code>coach diff --format "
                "unified</code> for all of it)</summary>",
                "",
                "```diff",
                cut.rstrip("\n"),
                "```",
                "",
                "</details>",
                "",
            ]
        text += "\n" + "\n".join(block)
    if len(text) > max_chars:
        text = text[: max_chars - 80].rsplit("\n", 1)[0] + "\n\n_(truncated)_\n"
    return text

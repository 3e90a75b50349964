"""Compare two versions of coach's output: the Skillbook and the rendered prompts.

A *side* of a comparison (:class:`Snapshot`) is read from

- a directory: a Skillbook directory (``skillbook.json``), a prompts directory (``manifest.json``
  or ``*.md``), or a directory holding both as ``skillbook/`` and ``prompts_out/`` (a checkout);
- a Skillbook file (``skillbook.json``);
- a git revision: the same files as they were at that revision, read with ``git show``.

:func:`diff_snapshots` finds the skills added, changed and retired (by skill id) and the prompt
files added, removed or modified, with a unified diff (:mod:`difflib`, the format of
``diff -u``) per file. Each changed prompt line is attributed to the skill whose instruction it
carries, so a reviewer sees which line changed and on what evidence.
:func:`pipeline.render.diff_md.markdown_summary` writes that as Markdown for a pull-request
comment.

Reading the sides lives in :mod:`pipeline.render.snapshots`.

When one side has a Skillbook but no prompts (a bare Skillbook file), both sides' prompts are
rendered from their Skillbooks with the default template and no base prompt, so that the diff
shows the lines coach adds; :attr:`PromptDiff.rendered_from_skillbook` says so.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.render.prompts import PromptGenerator, prompt_filename
from pipeline.render.snapshots import Snapshot
from pipeline.skillbook import Skill, Skillbook

__all__ = [
    "LIVE_STATUSES",
    "PromptChange",
    "PromptDiff",
    "SkillChange",
    "diff_snapshots",
]

LIVE_STATUSES = ("active", "proposed")
"""Statuses of skills in use or awaiting review; a skill leaving them is *retired*."""

_UNESCAPE = re.compile(r"\\([\\`*{}\[\]<>#|])")


@dataclass(frozen=True)
class SkillChange:
    """A skill that differs between the sides.

    ``kind``: ``added`` (new, or live again), ``changed`` (still live; ``fields`` lists which of
    status, instruction, section, namespace, evidence (the offline contrast), experiment (the
    live-traffic evidence), flags differ) or ``retired`` (left the
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


# --- comparing ------------------------------------------------------------------------------


def _differing_fields(old: Skill, new: Skill) -> tuple[str, ...]:
    names = ("status", "instruction", "section", "namespace", "evidence", "experiment", "flags")
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
    section, namespace, evidence figures, live-traffic experiment figures or flags differ
    (example pointers alone do not count).
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

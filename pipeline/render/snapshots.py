"""Reading one side of a comparison (:class:`Snapshot`) for :mod:`pipeline.render.diff`.

A side is read from a directory (a Skillbook directory, a prompts directory, or a checkout
holding both as ``skillbook/`` and ``prompts_out/``), a Skillbook file
(:func:`snapshot_from_path`), or the same files as they were at a git revision
(:func:`snapshot_from_git`, with ``git show``).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.skillbook import Skillbook

__all__ = ["Snapshot", "snapshot_from_git", "snapshot_from_path"]


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

"""File discovery for ingest: expanding paths, directories and glob patterns into the data files
to read (:func:`discover`; :func:`survey` also lists what it skipped and why), sniffing a file's
format (:func:`sniff_format`) and hashing its bytes (:func:`file_sha256`).

Nothing is skipped silently: files whose names are not trace files, hidden files and folders,
coach's bookkeeping files, excluded directories and cache directories are listed by
:func:`survey` with the reason. A cache directory is one that holds a ``CACHEDIR.TAG`` file
opening with the Cache Directory Tagging signature (https://bford.info/cachedir/); coach tags its
data directory so, and so a data directory inside the traces folder is never read as input.

:func:`discover` loads neither the format adapters nor pyarrow (a ``learn`` with nothing new
calls it before deciding to do nothing).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError, UnknownFormatError
from pipeline.fileio import CACHEDIR_SIGNATURE
from pipeline.ingest.formats import COMPRESSED_SUFFIXES, data_suffix

__all__ = [
    "BOOKKEEPING",
    "CACHEDIR_SIGNATURE",
    "DATA_SUFFIXES",
    "Discovery",
    "Skipped",
    "discover",
    "file_sha256",
    "is_cache_directory",
    "is_data_file",
    "sniff_format",
    "survey",
]

DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet")
# Bookkeeping files that :meth:`pipeline.ingest.store.Traces.save` writes beside the tables; never
# trace input.
BOOKKEEPING = frozenset({"ingest.json", "quarantine.jsonl"})
# The first bytes of a CACHEDIR.TAG file (Cache Directory Tagging Specification 1.0,
# https://bford.info/cachedir/): backup tools, and coach, skip the directory that holds it.
_HEAD_BYTES = 1 << 20


def is_data_file(path: Path) -> bool:
    """True when ``path``'s name ends in a data suffix (``DATA_SUFFIXES``), optionally followed by
    ``.gz`` or ``.zst``, and it is not one of coach's bookkeeping files."""
    return data_suffix(path) in DATA_SUFFIXES and path.name not in BOOKKEEPING


def is_cache_directory(directory: Path) -> bool:
    """True when ``directory`` holds a ``CACHEDIR.TAG`` file that starts with
    :data:`CACHEDIR_SIGNATURE` (a tag file without it does not count, as the specification
    says)."""
    try:
        with (directory / "CACHEDIR.TAG").open("rb") as tag:
            return tag.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False


@dataclass(frozen=True)
class Skipped:
    """A file or directory that discovery did not take as input, and why (for people)."""

    path: Path
    reason: str


@dataclass
class Discovery:
    """What :func:`survey` found: the data files to read (sorted, without repeats) and what it
    skipped (sorted by path)."""

    files: list[Path]
    skipped: list[Skipped]


def _why_not(path: Path) -> str | None:
    """Why a file met in a directory is not input, or ``None`` when it is."""
    if path.name in BOOKKEEPING:
        return "coach's own bookkeeping file"
    if not is_data_file(path):
        suffixes = ", ".join(DATA_SUFFIXES)
        compressed = "/".join(COMPRESSED_SUFFIXES)
        return f"not a trace file name (trace files end in {suffixes}, optionally {compressed})"
    return None


class _Walk:
    """The state of one :func:`survey`: the excluded directories, which directories are closed
    to input (asked once each), what was found and what was skipped."""

    def __init__(self, exclude: Iterable[str | Path]) -> None:
        self.exclude = {Path(e).resolve() for e in exclude}
        self.answers: dict[Path, str | None] = {}
        self.files: list[Path] = []
        self.skipped: dict[Path, str] = {}

    def closed(self, directory: Path) -> str | None:
        """Why ``directory`` is never read (excluded, or a tagged cache directory), else None."""
        if directory not in self.answers:
            if directory.resolve() in self.exclude:
                self.answers[directory] = "excluded (coach's data directory): never read as input"
            elif is_cache_directory(directory):
                self.answers[directory] = (
                    "holds a CACHEDIR.TAG (a cache directory, such as coach's data directory): "
                    "never read as input"
                )
            else:
                self.answers[directory] = None
        return self.answers[directory]

    def closed_above(self, path: Path) -> str | None:
        """Why a directory above ``path`` is never read, naming it; None when none is."""
        for parent in path.absolute().parents:
            reason = self.closed(parent)
            if reason is not None:
                return f"inside {parent}, which {reason.split(':')[0]}"
        return None

    def file(self, path: Path) -> None:
        """Take a file named on the command line or matched by a glob, unless a directory above
        it is never read."""
        reason = self.closed_above(path)
        if reason is None:
            self.files.append(path)
        else:
            self.skipped[path] = reason

    def directory(self, root: Path) -> None:
        """Every data file below ``root``. Hidden, excluded and cache directories are skipped
        whole (listed once each); other files that are not input are listed one by one."""
        reason = self.closed(root) or self.closed_above(root)
        if reason is not None:
            self.skipped[root] = reason
            return
        visited: set[Path] = set()
        for top, folders, names in os.walk(root, followlinks=True):
            here = Path(top)
            real = here.resolve()
            if real in visited:  # a symbolic link back up the tree
                folders[:] = []
                continue
            visited.add(real)
            kept = []
            for folder in sorted(folders):
                path = here / folder
                reason = "hidden folder" if folder.startswith(".") else self.closed(path)
                if reason is None:
                    kept.append(folder)
                else:
                    self.skipped[path] = reason
            folders[:] = kept
            for name in names:
                path = here / name
                reason = "hidden file" if name.startswith(".") else _why_not(path)
                if reason is None:
                    self.files.append(path)
                else:
                    self.skipped[path] = reason


def _expand_glob(pattern: str) -> list[Path]:
    anchor = Path(pattern).anchor
    relative = pattern[len(anchor) :] if anchor else pattern
    return sorted(Path(anchor or ".").glob(relative))


def survey(paths: Sequence[str | Path], *, exclude: Iterable[str | Path] = ()) -> Discovery:
    """Expand ``paths`` into the data files to read, listing everything skipped on the way.

    - a directory contributes every data file below it (see :func:`is_data_file`); hidden files
      and folders, coach's bookkeeping files and files with other names are skipped;
    - a glob pattern (``traces/**/*.jsonl.gz``; ``*``, ``?`` or ``[``) contributes the data files
      and directories it matches (its other matches are skipped), or every match when none is
      a data file or a directory;
    - a file is taken as given, whatever its name;
    - a directory in ``exclude`` (coach's data directory) or holding a ``CACHEDIR.TAG`` (see
      :func:`is_cache_directory`) is never read, nor anything below it, even when named.

    Returns:
        :class:`Discovery`: ``files`` sorted without repeats, ``skipped`` sorted by path.

    Raises:
        InputError: a path does not exist, a glob matches nothing, a directory holds no data
            file (the message counts what was skipped in it), or a directory named is never
            read (excluded, or a cache directory).
    """
    walk = _Walk(exclude)
    for raw in paths:
        path = Path(raw)
        if not path.exists() and any(c in str(raw) for c in "*?["):
            matches = _expand_glob(str(raw))
            if not matches:
                raise InputError(f"{raw}: the pattern matches no file")
            usable = [m for m in matches if m.is_dir() or is_data_file(m)] or matches
            for match in usable:
                if match.is_dir():
                    walk.directory(match)
                else:
                    walk.file(match)
            for match in sorted(set(matches) - set(usable)):
                walk.skipped[match] = _why_not(match) or "not a trace file"
            continue
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if path.is_dir():
            before = len(walk.files)
            walk.directory(path)
            if path in walk.skipped:
                raise InputError(f"{path}: {walk.skipped[path]}")
            if len(walk.files) == before:
                suffixes = ", ".join(DATA_SUFFIXES)
                compressed = "/".join(COMPRESSED_SUFFIXES)
                below = [p for p in walk.skipped if p == path or path in p.parents]
                raise InputError(
                    f"{path}: no trace files ({suffixes}, optionally {compressed}) found"
                    + (f" ({len(below)} other files or folders skipped)" if below else "")
                )
        else:
            walk.file(path)
    files = sorted(dict.fromkeys(walk.files))
    taken = set(files)
    skipped = [Skipped(p, r) for p, r in sorted(walk.skipped.items()) if p not in taken]
    return Discovery(files, skipped)


def discover(paths: Sequence[str | Path], *, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """The data files :func:`survey` finds in ``paths`` (sorted, without repeats), without the
    list of what it skipped.

    Raises:
        InputError: as :func:`survey`.
    """
    return survey(paths, exclude=exclude).files


def sniff_format(path: Path) -> str:
    """The name of the first adapter in ``ADAPTERS`` that recognises ``path``.

    Raises:
        InputError: the file cannot be read, is empty, or (recognised by no adapter) is not
            UTF-8 text.
        UnknownFormatError: no adapter recognises it (the message lists those tried).
    """
    from pipeline.ingest.formats import ADAPTERS, read_head

    head = read_head(path, _HEAD_BYTES)
    if not head.strip():
        raise InputError(f"{path}: empty file")
    for adapter in ADAPTERS:
        if adapter.sniff(path, head):
            return str(adapter.NAME)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3 or len(head) < _HEAD_BYTES:  # not a character cut at the end
            raise InputError(
                f"{path}: not UTF-8 text (byte {exc.start}); re-encode it as UTF-8"
            ) from exc
    tried = ", ".join(a.NAME for a in ADAPTERS)
    raise UnknownFormatError(f"{path}: unknown trace format (tried {tried}); pass --format")


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of the file's bytes, read in chunks.

    Raises:
        InputError: the file cannot be read.
    """
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc

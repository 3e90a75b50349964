"""File discovery for ingest: expanding paths, directories and glob patterns into the data files
to read (:func:`discover`), sniffing a file's format (:func:`sniff_format`) and hashing its bytes
(:func:`file_sha256`).

:func:`discover` loads neither the format adapters nor pyarrow (a ``learn`` with nothing new
calls it before deciding to do nothing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import InputError, UnknownFormatError
from pipeline.ingest.formats import COMPRESSED_SUFFIXES, data_suffix

__all__ = [
    "BOOKKEEPING",
    "DATA_SUFFIXES",
    "discover",
    "file_sha256",
    "is_data_file",
    "sniff_format",
]

DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet")
# Bookkeeping files that :meth:`pipeline.ingest.store.Traces.save` writes beside the tables; never
# trace input.
BOOKKEEPING = frozenset({"ingest.json", "quarantine.jsonl"})
_HEAD_BYTES = 1 << 20


def is_data_file(path: Path) -> bool:
    """True when ``path``'s name ends in a data suffix (``DATA_SUFFIXES``), optionally followed by
    ``.gz`` or ``.zst``, and it is not one of coach's bookkeeping files."""
    return data_suffix(path) in DATA_SUFFIXES and path.name not in BOOKKEEPING


def _expand_glob(pattern: str) -> list[Path]:
    anchor = Path(pattern).anchor
    relative = pattern[len(anchor) :] if anchor else pattern
    return sorted(Path(anchor or ".").glob(relative))


def discover(paths: Sequence[str | Path]) -> list[Path]:
    """Expand ``paths`` into the data files to read, sorted and without repeats.

    - a directory contributes every data file below it (see :func:`is_data_file`), except hidden
      files and folders;
    - a glob pattern (``traces/**/*.jsonl.gz``; ``*``, ``?`` or ``[``) contributes the data files
      and directories it matches;
    - a file is taken as given, whatever its name.

    Raises:
        InputError: a path does not exist, a glob matches nothing, or a directory holds no data
            file.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists() and any(c in str(raw) for c in "*?["):
            matches = _expand_glob(str(raw))
            if not matches:
                raise InputError(f"{raw}: the pattern matches no file")
            found.extend(discover([m for m in matches if m.is_dir() or is_data_file(m)] or matches))
            continue
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and is_data_file(p)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not files:
                suffixes = ", ".join(DATA_SUFFIXES)
                compressed = "/".join(COMPRESSED_SUFFIXES)
                raise InputError(
                    f"{path}: no trace files ({suffixes}, optionally {compressed}) found"
                )
            found.extend(files)
        else:
            found.append(path)
    return sorted(dict.fromkeys(found))


def sniff_format(path: Path) -> str:
    """The name of the first adapter in ``ADAPTERS`` that recognises ``path``.

    Raises:
        InputError: the file cannot be read.
        UnknownFormatError: no adapter recognises it (the message lists those tried).
    """
    from pipeline.ingest.formats import ADAPTERS, read_head

    head = read_head(path, _HEAD_BYTES)
    if not head.strip():
        raise InputError(f"{path}: empty file")
    for adapter in ADAPTERS:
        if adapter.sniff(path, head):
            return str(adapter.NAME)
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

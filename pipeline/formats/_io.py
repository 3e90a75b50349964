"""File access shared by the format adapters: options, decoding, line iteration, JSON loading."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InputError

__all__ = ["ReadOptions", "iter_lines", "load_json", "peek_first_json_line"]


@dataclass(frozen=True)
class ReadOptions:
    """What an adapter needs besides the path.

    ``reward_threshold``: a reward at or above it labels a trajectory ``success`` (default 1.0).
    ``source_uri``: the value written to ``trajectories.source_uri``.
    """

    source_uri: str
    reward_threshold: float = 1.0


def read_text(path: Path) -> str:
    """The whole file as text.

    Raises:
        InputError: unreadable, or not UTF-8 (the message names the file and byte offset).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start}); re-encode it as UTF-8"
        ) from exc


def load_json(path: Path) -> Any:
    """The file parsed as one JSON document.

    Raises:
        InputError: unreadable, not UTF-8, or not valid JSON (with line and column).
    """
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: invalid or truncated JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for every non-blank line (1-based numbers).

    Raises:
        InputError: unreadable or not UTF-8.
    """
    text = read_text(path)
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def peek_first_json_line(head: bytes) -> Any:
    """The first non-blank line of ``head`` parsed as JSON, or ``None`` if it does not parse."""
    for raw in head.splitlines():
        if raw.strip():
            try:
                return json.loads(raw.decode("utf-8-sig"))
            except (ValueError, UnicodeDecodeError):
                return None
    return None

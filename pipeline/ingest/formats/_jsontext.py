"""JSON text for the readers: safe parsing with a depth limit (:func:`loads`), the scanning of
JSON text without a recursive parser (:func:`scan_forward`), and the first record of a file's
first bytes for the adapters' ``sniff`` (:func:`first_record`, :func:`first_page_record`,
:func:`first_item`, :func:`top_level_fields`).

Python's ``json`` module parses nested containers recursively: a value nested a few thousand
levels deep raises ``RecursionError``, and every later walk over it (hashing, dumping, an
adapter's own recursion) would too. :func:`loads` turns that into a ``ValueError`` and refuses
values nested deeper than :data:`MAX_DEPTH` levels, so everything downstream is bounded. The
sniffing helpers parse one item at a time (``json.JSONDecoder.raw_decode``) and skip the rest by
scanning, never building the whole head (a streaming parser such as ``ijson`` builds a path
string per level, which a deeply nested head makes quadratic).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "DECODER",
    "MAX_DEPTH",
    "OUTSIDE",
    "first_item",
    "first_json_line",
    "first_page_record",
    "first_record",
    "loads",
    "opened",
    "peek_first_json_line",
    "scan_forward",
    "skip_whitespace",
    "too_deep",
    "top_level_fields",
]

# Containers nested deeper than this are refused (quarantined with a reason): far beyond any
# trace format, and far below what Python's recursion limit (1000 frames) allows the parser,
# the hashing and the adapters' own recursive walks.
MAX_DEPTH = 256

DECODER = json.JSONDecoder()

_WHITESPACE = re.compile(r"[ \t\n\r]*")

# a structural character outside strings; the end of a string or an escape inside one
OUTSIDE = re.compile(r'["\[\]{},]')

# How many records sniffing looks at for one that parses.
_SNIFF_RECORDS = 5
_INSIDE = re.compile(r'["\\]')

# what may stand between structural characters outside strings: a colon and a scalar
_SCALAR = re.compile(
    r"[ \t\n\r:]*(?:-?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|Infinity)|true|false|null|NaN)?[ \t\n\r]*"
)


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` levels deep (walked without
    recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False


def opened(text: str, start: int = 0, end: int | None = None) -> int:
    """How many ``[`` and ``{`` the text holds (inside strings too): a bound on its depth."""
    end = len(text) if end is None else end
    return text.count("[", start, end) + text.count("{", start, end)


def _depth_error() -> ValueError:
    return ValueError(f"JSON nested more than {MAX_DEPTH} levels deep; not read")


def loads(text: str | bytes) -> Any:
    """``json.loads(text)`` with containers nested at most :data:`MAX_DEPTH` deep.

    Raises:
        ValueError: not JSON (``json.JSONDecodeError``), an integer too long to convert, or
            nested too deeply (also where the parser itself would hit the recursion limit).
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise _depth_error() from None
    if isinstance(value, dict | list):
        bound = opened(text) if isinstance(text, str) else text.count(b"[") + text.count(b"{")
        if bound > MAX_DEPTH and too_deep(value):
            raise _depth_error()
    return value


def skip_whitespace(text: str, pos: int) -> int:
    """The position of the first character at or after ``pos`` that is not JSON whitespace."""
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos


def scan_forward(text: str, start: int, closer: str = "]") -> tuple[int, bool] | None:
    """From ``start`` inside a container closed by ``closer``, the position of the ``,`` or
    ``closer`` that ends the value there, and whether the stretch looked like JSON on the way
    (only colons and scalars between brackets and strings, brackets matched); ``None`` when the
    text ends first."""
    stack: list[str] = []
    clean = True
    pos = start
    while True:
        match = OUTSIDE.search(text, pos)
        if match is None:
            return None
        if clean and not _SCALAR.fullmatch(text, pos, match.start()):
            clean = False
        char = match.group()
        pos = match.end()
        if char == '"':
            while True:
                inner = _INSIDE.search(text, pos)
                if inner is None or inner.end() >= len(text):
                    return None
                if inner.group() == '"':
                    pos = inner.end()
                    break
                pos = inner.end() + 1
        elif char in "[{":
            stack.append("]" if char == "[" else "}")
        elif not stack and char in (",", closer):
            return match.start(), clean
        elif char in "]}" and (not stack or stack.pop() != char):
            clean = False


def _members(text: str) -> Iterator[tuple[str, int]]:
    """``(key, position of its value)`` for each member of the JSON object that opens ``text``,
    as far as the (possibly cut) text goes."""
    pos = skip_whitespace(text, 0)
    if text[pos : pos + 1] != "{":
        return
    pos += 1
    while True:
        pos = skip_whitespace(text, pos)
        if text[pos : pos + 1] != '"':
            return
        try:
            key, pos = DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return
        pos = skip_whitespace(text, pos)
        if text[pos : pos + 1] != ":":
            return
        pos = skip_whitespace(text, pos + 1)
        yield key, pos
        found = scan_forward(text, pos, "}")
        if found is None or text[found[0]] != ",":
            return
        pos = found[0] + 1


def _head_text(head: bytes) -> str:
    return head.decode("utf-8", "replace").lstrip("\ufeff \t\n\r")


def first_item(head: bytes, envelope: str | None = None) -> Any:
    """The first item of the JSON array that opens ``head`` (a file's first bytes), or with
    ``envelope`` of the array under that key of the object that opens it (wherever the key is
    among the top-level ones), parsed on its own; when it is damaged, the first of the next
    items that parses (up to the fifth), so that one bad record does not hide a file's format.
    ``None`` when none parses within ``head`` (cut off, too deep)."""
    text = _head_text(head)
    pos = 0
    if envelope is not None:
        pos = next((at for key, at in _members(text) if key == envelope), -1)
    if pos < 0 or text[pos : pos + 1] != "[":
        return None
    pos += 1
    for _ in range(_SNIFF_RECORDS):
        pos = skip_whitespace(text, pos)
        try:
            value, end = DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            value, end = None, -1
        if end >= 0 and not (opened(text, pos, end) > MAX_DEPTH and too_deep(value)):
            return value
        found = scan_forward(text, pos)  # a damaged item: try the next one
        if found is None or text[found[0]] != ",":
            return None
        pos = found[0] + 1
    return None


def top_level_fields(head: bytes) -> dict[str, Any]:
    """The keys of the JSON object that opens ``head`` (possibly cut off), each with its value
    when that is a scalar (``None`` for lists, objects and values cut off)."""
    text = _head_text(head)
    fields: dict[str, Any] = {}
    for key, pos in _members(text):
        fields[key] = None
        if text[pos : pos + 1] not in ("[", "{"):
            with contextlib.suppress(ValueError):
                fields[key] = DECODER.raw_decode(text, pos)[0]
    return fields


def peek_first_json_line(head: bytes) -> Any:
    """The first non-blank line of ``head`` parsed as JSON, or ``None`` if it does not parse."""
    for raw in head.splitlines():
        if raw.strip():
            try:
                return loads(raw.decode("utf-8-sig"))
            except ValueError:  # UnicodeDecodeError too
                return None
    return None


def first_json_line(head: bytes) -> Any:
    """The first non-blank line of ``head`` parsed as JSON; when it does not parse, the first of
    the next four non-blank lines that is an unindented JSON object or array (a JSON Lines file
    whose first record is damaged; the indented lines of a pretty-printed document never
    count). ``None`` when there is none."""
    first = peek_first_json_line(head)
    if first is not None:
        return first
    lines = [line for line in head.splitlines() if line.strip()][1:_SNIFF_RECORDS]
    for line in lines:
        if line[:1] in (b"{", b"["):
            try:
                return loads(line.decode("utf-8"))
            except ValueError:
                continue
    return None


def first_record(head: bytes) -> Any:
    """The first JSON record in ``head`` (a file's first bytes): the first item of a top-level
    JSON array (parsed on its own, so a cut-off array still gives it), else the first line
    parsed as JSON (:func:`first_json_line`), else the whole head as one JSON document.
    ``None`` when none parses."""
    text = head.lstrip()
    if text.startswith(b"\xef\xbb\xbf"):
        text = text[3:].lstrip()
    if text.startswith(b"["):
        return first_item(text)
    first = first_json_line(text)
    if first is not None:
        return first
    try:
        return loads(text.decode("utf-8"))
    except ValueError:
        return None


def first_page_record(head: bytes, envelope: str) -> Any:
    """The first record of a file that may hold API list pages, from its first bytes: the first
    JSON Lines value, the first item of a JSON array or of the ``envelope`` list of a JSON object
    (``{"data": [...]}``; a JSON Lines page gives its first item too), else the top-level keys of
    a single (possibly cut) JSON object with their scalar values (others ``None``)."""
    record = first_json_line(head)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if record is None and text[:1] in (b"[", b"{"):
        record = first_item(text, None if text.startswith(b"[") else envelope)
        if record is None and text.startswith(b"{"):
            record = top_level_fields(text)
    if isinstance(record, list):
        record = record[0] if record else None
    if isinstance(record, Mapping) and isinstance(record.get(envelope), list):
        record = record[envelope][0] if record[envelope] else None
    return record

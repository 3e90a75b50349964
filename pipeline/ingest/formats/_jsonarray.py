"""A streaming reader of the items of a JSON array that survives bad items (:func:`array_items`).

It splits the array into its items without a recursive parser: each item is parsed on its own
(``json.JSONDecoder.raw_decode``, RFC 8259 section 5), and a bad item (a syntax error, bytes
that are not UTF-8, nested too deeply) is reported with its index and reading goes on at the
next item. The next item is found by scanning forward from the bad one, tracking strings,
escapes and bracket depth (trusted when everything it passed outside strings looks like JSON),
else by scanning the rest of the file backwards from the array's closing bracket (string parity
and depth are right from that end however the bad item is broken). When neither works (a file
cut inside the array, a page envelope), the rest of the file is reported as one unit with the
number of bytes left unread.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from pipeline.ingest.formats._jsontext import (
    DECODER,
    MAX_DEPTH,
    OUTSIDE,
    opened,
    scan_forward,
    skip_whitespace,
    too_deep,
)

__all__ = ["ArrayEvent", "array_items"]

# a byte that was not UTF-8, kept by the "surrogateescape" error handler
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_CHUNK = 1 << 20
# what :func:`_decode` returns for an item that the end of the file cuts off
_CUT = "cut"


@dataclass
class ArrayEvent:
    """What :func:`array_items` yields: an item (``value``, ``error`` None) or a bad stretch
    (``error`` says why, ``raw`` holds its first characters). ``index`` counts the units read
    (items and bad stretches); ``unread`` is the number of bytes never read when reading had to
    stop there (0 otherwise); ``ids``: for a bad stretch, what the ``trace_ids`` pattern of
    :func:`array_items` found in its text."""

    index: int
    value: Any = None
    error: str | None = None
    raw: str = ""
    unread: int = 0
    ids: tuple[str, ...] = ()


class _Text:
    """The decoded text of a binary stream, read on demand. Bytes that are not UTF-8 are kept
    as lone surrogates (``surrogateescape``) so that they can be found and reported per item."""

    def __init__(self, stream: IO[bytes], read_error: Callable[[Exception], Exception]) -> None:
        self.stream = stream
        self.read_error = read_error
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.text = ""
        self.eof = False

    def more(self, at_least: int = _CHUNK) -> bool:
        """Append at least ``at_least`` more bytes (or the rest); False at the end."""
        if self.eof:
            return False
        try:
            data = self.stream.read(max(at_least, _CHUNK))
        except Exception as exc:  # decompression errors of every codec
            raise self.read_error(exc) from exc
        if not data:
            self.eof = True
            tail = self.decoder.decode(b"", final=True)
            self.text += tail
            return bool(tail)
        self.text += self.decoder.decode(data)
        return True

    def drop(self, pos: int) -> int:
        """Forget the text before ``pos`` when it is most of what is held; returns the new
        position of ``pos``."""
        if pos > _CHUNK and pos > len(self.text) // 2:
            self.text = self.text[pos:]
            return 0
        return pos

    def char(self, pos: int) -> str:
        """The character at ``pos`` (reading on), or "" at the end of the file."""
        while pos >= len(self.text):
            if not self.more():
                return ""
        return self.text[pos]

    def skip_whitespace(self, pos: int) -> int:
        while True:
            pos = skip_whitespace(self.text, pos)
            if pos < len(self.text) or not self.more():
                return pos

    def read_all(self, limit: int) -> bool:
        """Read to the end of the file; False when more than ``limit`` characters would be held."""
        while self.more(len(self.text)):
            if len(self.text) > limit:
                return False
        return True

    def unread_bytes(self, pos: int) -> int:
        """The bytes from ``pos`` to the end of the file (reading through the rest to count)."""
        held = len(self.text[pos:].encode("utf-8", "surrogateescape"))
        rest = 0
        try:
            while chunk := self.stream.read(_CHUNK):
                rest += len(chunk)
        except Exception:  # a corrupt compressed tail: count what could be read
            pass
        self.eof = True
        return held + rest


def _decode(source: _Text, start: int, limit: int) -> tuple[Any, int] | str:
    """The value at ``start`` and where it ends, reading on while the value may run past what is
    held (at most ``limit`` characters); else why it is not a value."""
    while True:
        try:
            value, end = DECODER.raw_decode(source.text, start)
        except json.JSONDecodeError as exc:
            cut = exc.pos >= len(source.text) - 8 or exc.msg.startswith("Unterminated string")
            if cut and len(source.text) - start < limit and source.more(len(source.text) - start):
                continue
            if cut and source.eof:
                return _CUT
            return f"invalid JSON: {exc.msg} at character {exc.pos - start} of the item"
        except RecursionError:
            return f"nested more than {MAX_DEPTH} levels deep"
        except ValueError as exc:  # an integer of more digits than Python converts
            return str(exc)
        if end >= len(source.text) and not source.eof and source.more():
            continue  # a number at the end of what is held may go on
        if opened(source.text, start, end) > MAX_DEPTH and too_deep(value):
            return f"nested more than {MAX_DEPTH} levels deep"
        bad = _NOT_UTF8.search(source.text, start, end)
        if bad is not None:
            offset = len(source.text[start : bad.start()].encode("utf-8", "surrogateescape"))
            return f"not UTF-8 text (byte {offset} of the item)"
        return value, end


def _backwards(text: str, start: int, stop: int) -> Iterator[tuple[int, str]]:
    """The structural characters of ``text[start:stop]`` (and quotes) with their positions,
    last first, found a block at a time."""
    high = stop
    while high > start:
        low = max(start, high - _CHUNK)
        yield from reversed([(m.start(), m.group()) for m in OUTSIDE.finditer(text, low, high)])
        high = low


def _starts_from_end(text: str, start: int) -> tuple[list[int], int] | None:
    """Read ``text`` (a whole top-level array) backwards from its closing ``]`` down to
    ``start``: the positions just after the commas between its items, ascending, and the
    position of the closing bracket. ``None`` when the text does not end with ``]``."""
    end = len(text)
    while end > start and text[end - 1] in " \t\n\r":
        end -= 1
    if end <= start or text[end - 1] != "]":
        return None
    closing = end - 1
    depth, in_string, starts = 0, False, []
    for pos, char in _backwards(text, start, closing):
        if char == '"':
            slashes = pos - 1
            while slashes >= 0 and text[slashes] == "\\":
                slashes -= 1
            if (pos - 1 - slashes) % 2 == 0:
                in_string = not in_string
        elif in_string:
            continue
        elif char in "]}":
            depth += 1
        elif char in "[{":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            starts.append(pos + 1)
    return starts[::-1], closing


def array_items(
    stream: IO[bytes],
    opening: re.Pattern[str],
    *,
    top_level: bool,
    max_item_chars: int,
    max_chars: int,
    read_error: Callable[[Exception], Exception],
    what: str = "JSON array",
    trace_ids: re.Pattern[str] | None = None,
) -> Iterator[ArrayEvent]:
    """The items of the JSON array that ``opening`` (matched at the start of the text, past
    whitespace) opens, as :class:`ArrayEvent` values in file order.

    ``top_level``: the array is the whole document, so text after its end is reported (as a bad
    stretch) and a bad item can be skipped by reading the file backwards. ``max_item_chars``
    bounds the text read ahead for one item; ``max_chars`` the text held to resynchronise.
    ``read_error`` turns a stream error into the exception to raise; ``what`` names the array
    in reasons ("truncated JSON array: ..."); ``trace_ids``, a pattern whose first group is a
    trace id, is searched in each bad stretch (``ArrayEvent.ids``).

    Yields nothing when ``opening`` does not match.
    """
    source = _Text(stream, read_error)
    source.more()
    while len(source.text) < 1 << 16 and source.more():
        pass
    match = opening.match(source.text, skip_whitespace(source.text, 0))
    if match is None:
        return
    index = 0
    pos = source.skip_whitespace(match.end())
    if source.char(pos) == "]":
        yield from _after_end(source, pos + 1, index, top_level)
        return
    while True:
        start = pos
        decoded = _decode(source, start, max_item_chars)
        if isinstance(decoded, tuple):
            value, end = decoded
            pos = source.skip_whitespace(end)
            separator = source.char(pos)
            yield ArrayEvent(index, value)
            index += 1
            if separator in (",", "]", ""):
                if separator == "]":
                    yield from _after_end(source, pos + 1, index, top_level)
                    return
                if separator == "":
                    yield ArrayEvent(
                        index,
                        error=f"truncated {what}: the file ends after item {index - 1}, before "
                        "the array is closed (cut off?); whatever followed is lost",
                    )
                    return
                pos = source.drop(source.skip_whitespace(pos + 1))
                continue
            start, reason = pos, f"invalid JSON: {separator!r} after item {index - 1}"
        elif decoded == _CUT:
            size = len(source.text[start:].encode("utf-8", "surrogateescape"))
            yield ArrayEvent(
                index,
                error=f"truncated {what}: the file ends inside this item, {size} bytes after "
                "its start (cut off?)",
                raw=_raw(source.text[start:]),
                ids=_found(trace_ids, source.text, start, len(source.text)),
            )
            return
        else:
            reason = decoded
        event, resume = _resync(source, start, index, reason, top_level, max_chars)
        if event is not None:
            stop = len(source.text) if resume is None else resume
            event.ids = _found(trace_ids, source.text, start, stop)
            yield event
            index += 1
        if resume is None:
            return
        pos = resume
        if source.char(pos) == "]":
            yield from _after_end(source, pos + 1, index, top_level)
            return
        pos = source.drop(source.skip_whitespace(pos))


def _found(pattern: re.Pattern[str] | None, text: str, start: int, end: int) -> tuple[str, ...]:
    if pattern is None:
        return ()
    return tuple(dict.fromkeys(m.group(1) for m in pattern.finditer(text, start, end)))


def _raw(text: str) -> str:
    return text[:2000].encode("utf-8", "replace").decode("utf-8")


def _resync(
    source: _Text, start: int, index: int, reason: str, top_level: bool, max_chars: int
) -> tuple[ArrayEvent | None, int | None]:
    """The bad stretch from ``start`` to the next item as one event (``None`` when it holds
    nothing but whitespace: a trailing comma), and where reading goes on (the next item, or the
    closing ``]``); ``None`` when it cannot go on (the event then stands for the rest of the
    file)."""
    while True:
        found = scan_forward(source.text, start)
        if found is not None or not source.more(len(source.text) - start):
            break
    if found is not None and found[1]:
        end = found[0]
        resume = end + 1 if source.text[end] == "," else end
        if not source.text[start:end].strip(" \t\n\r"):
            return None, resume
        return _skipped(source, start, end, reason, index), resume
    if top_level and source.read_all(max_chars):
        backwards = _starts_from_end(source.text, start)
        if backwards is not None and _ends_well(source, backwards):
            starts, closing = backwards
            known = set(starts)
            for candidate in (s for s in starts if s > start):
                decoded = _decode(source, skip_whitespace(source.text, candidate), 0)
                if not isinstance(decoded, tuple):
                    continue
                after = skip_whitespace(source.text, decoded[1])
                if after == closing or (source.text[after] == "," and after + 1 in known):
                    return _skipped(source, start, candidate - 1, reason, index), candidate
            return _skipped(source, start, closing, reason, index), closing
        why = "the file does not end with the array's last item and ']' (cut off?)"
    elif top_level:
        why = f"the rest of the file is larger than {max_chars >> 20} MiB"
    else:
        why = "the next item could not be found"
    raw = _raw(source.text[start:])
    unread = source.unread_bytes(start)
    error = f"{reason}; the rest of the file ({unread} bytes) cannot be read as items: {why}"
    return ArrayEvent(index, error=error, raw=raw, unread=unread), None


def _ends_well(source: _Text, backwards: tuple[list[int], int]) -> bool:
    """Whether one of the last two items found reading backwards parses and ends where the next
    one starts (or at the closing bracket): a file cut where its text happens to end with ``]``
    is not taken for a whole array, while an array whose last item is bad still is."""
    starts, closing = backwards
    if not starts:
        return True
    ends = [s - 1 for s in starts[1:]] + [closing]
    for start, end in list(zip(starts, ends, strict=True))[-2:]:
        decoded = _decode(source, skip_whitespace(source.text, start), 0)
        if isinstance(decoded, tuple) and skip_whitespace(source.text, decoded[1]) == end:
            return True
    return False


def _skipped(source: _Text, start: int, end: int, reason: str, index: int) -> ArrayEvent:
    skipped = len(source.text[start:end].encode("utf-8", "surrogateescape"))
    return ArrayEvent(
        index,
        error=f"{reason}; skipped {skipped} bytes to the next item",
        raw=_raw(source.text[start:end]),
    )


def _after_end(source: _Text, pos: int, index: int, top_level: bool) -> Iterator[ArrayEvent]:
    """For a top-level array, text after its closing bracket as one bad stretch."""
    if not top_level:
        return
    pos = source.skip_whitespace(pos)
    if source.char(pos) == "":
        return
    raw = _raw(source.text[pos:])
    unread = source.unread_bytes(pos)
    yield ArrayEvent(
        index,
        error=f"text after the end of the JSON array: {unread} bytes not read",
        raw=raw,
        unread=unread,
    )

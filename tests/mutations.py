"""Deterministic mutations of the format fixtures, for the robustness and fuzz tests.

Each mutation takes a file's bytes and returns them damaged in one named way, at a position
chosen from the content (the value nearest a given fraction of the file), so the corpus is the
same on every run: flipped bytes, a broken quote, a lone surrogate escape, ``NaN``, ``1e400``,
an integer of ``2**70``, a Latin-1 byte, deep nesting, a byte-order mark, a cut at several
points and unparsable timestamps. :func:`sources` lists the fixture files (every format) and
:func:`as_array` rewrites a JSON Lines body as a JSON array, the container most of these
mutations used to stop.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FORMATS = FIXTURES / "formats"

_STRING = re.compile(rb'":\s*"([^"\\\n]{4,})"')
_NUMBER = re.compile(rb'":\s*(-?\d+(?:\.\d+)?)\s*[,}\]]')
_VALUE = re.compile(rb'":\s*("[^"\\\n]*"|-?\d+(?:\.\d+)?|true|false|null)\s*[,}\]]')
_SEPARATOR = re.compile(rb'[}\]"\d],\s*"')
_ISO = re.compile(rb'"\d{4}-\d\d-\d\d[T ][0-9:.]+(?:Z|[+-]\d\d:?\d\d)?"')
_NANOS = re.compile(rb'"(?:start|end)Time(?:UnixNano)?"\s*:\s*("?\d{12,}"?)')
_EPOCH = re.compile(rb'"(?:start_time|end_time|timestamp|created_at)"\s*:\s*(\d{9,}(?:\.\d+)?)')

Mutation = Callable[[bytes], bytes]


def sources() -> list[Path]:
    """Every fixture file with records: the original ones in ``tests/fixtures/`` and the
    format fixtures (with their ``#`` headers; read them with :func:`body`)."""
    originals = ["chat_small.jsonl", "testmodel-airline.json", "tau2_small.json"]
    return [FIXTURES / n for n in originals] + sorted(
        p for p in FORMATS.glob("*") if p.is_file() and not p.name.endswith(".md")
    )


def body(path: Path) -> bytes:
    """A fixture's bytes without its ``#`` header lines (what an exporter would write)."""
    lines = path.read_bytes().splitlines(keepends=True)
    return b"".join(line for line in lines if not line.startswith(b"#"))


def is_json_lines(data: bytes) -> bool:
    """Whether ``data`` holds more than one non-blank line, each starting a JSON value."""
    lines = [line for line in data.splitlines() if line.strip()]
    return len(lines) > 1 and all(line.lstrip()[:1] in (b"{", b"[") for line in lines)


def as_array(data: bytes, *, indent: bool = True) -> bytes:
    """The JSON Lines ``data`` as one JSON array (an item per line; lines that are not JSON
    stay as they are, which makes their item invalid)."""
    lines = [line.strip() for line in data.splitlines() if line.strip()]
    joiner = b",\n  " if indent else b","
    return b"[\n  " + joiner.join(lines) + b"\n]\n" if indent else b"[" + joiner.join(lines) + b"]"


def _nearest(pattern: re.Pattern[bytes], data: bytes, fraction: float) -> re.Match[bytes] | None:
    target = len(data) * fraction
    best = None
    for match in pattern.finditer(data):
        if best is None or abs(match.start() - target) < abs(best.start() - target):
            best = match
    return best


def _in_string(data: bytes, fraction: float, insert: bytes) -> bytes:
    match = _nearest(_STRING, data, fraction)
    if match is None:
        return data
    at = match.start(1) + 2
    return data[:at] + insert + data[at:]


def _number(data: bytes, fraction: float, replacement: bytes) -> bytes:
    match = _nearest(_NUMBER, data, fraction) or _nearest(_VALUE, data, fraction)
    if match is None:
        return data
    return data[: match.start(1)] + replacement + data[match.end(1) :]


def _value(data: bytes, fraction: float, replacement: bytes) -> bytes:
    match = _nearest(_VALUE, data, fraction)
    if match is None:
        return data
    return data[: match.start(1)] + replacement + data[match.end(1) :]


def flip_separator(data: bytes, fraction: float = 0.5) -> bytes:
    """The comma between two values nearest ``fraction`` turned into ``-`` (bit 0 flipped)."""
    match = _nearest(_SEPARATOR, data, fraction)
    if match is None:
        return data
    at = match.start() + 1
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def flip_text(data: bytes, fraction: float = 0.5) -> bytes:
    """A letter inside a string value turned into a byte that is not UTF-8 (bit 7 set)."""
    match = _nearest(_STRING, data, fraction)
    if match is None:
        return data
    at = match.start(1) + 1
    return data[:at] + bytes([data[at] ^ 0x80]) + data[at + 1 :]


def flip_brace(data: bytes, fraction: float = 0.5) -> bytes:
    """The ``{`` nearest ``fraction`` turned into ``z`` (bit 0 flipped, then some)."""
    positions = [m.start() for m in re.finditer(rb"\{", data)]
    if not positions:
        return data
    at = min(positions, key=lambda p: abs(p - len(data) * fraction))
    return data[:at] + b"z" + data[at + 1 :]


def broken_quote(data: bytes, fraction: float = 0.5) -> bytes:
    """The opening quote of the string value nearest ``fraction`` removed."""
    match = _nearest(_STRING, data, fraction)
    if match is None:
        return data
    at = match.start(1) - 1
    return data[:at] + data[at + 1 :]


def truncate(data: bytes, fraction: float) -> bytes:
    """The first ``fraction`` of the bytes (at least one)."""
    return data[: max(1, int(len(data) * fraction))]


def deep(levels: int) -> Mutation:
    """A value near the middle replaced by a list nested ``levels`` deep."""

    def mutate(data: bytes) -> bytes:
        return _value(data, 0.5, b"[" * levels + b"]" * levels)

    mutate.__name__ = f"deep_{levels}"
    return mutate


def bad_timestamps(data: bytes) -> bytes:
    """Every timestamp (ISO-8601 text, Unix nanoseconds, Unix seconds) made unparsable."""
    data = _ISO.sub(b'"not a date"', data)
    data = _NANOS.sub(lambda m: m.group(0)[: m.start(1) - m.start()] + b'"not a number"', data)
    return _EPOCH.sub(lambda m: m.group(0)[: m.start(1) - m.start()] + b'"yesterday"', data)


MUTATIONS: dict[str, Mutation] = {
    "flip_separator": flip_separator,
    "flip_text": flip_text,
    "flip_brace": flip_brace,
    "broken_quote": broken_quote,
    "lone_surrogate": lambda d: _in_string(d, 0.5, rb"\ud800"),
    "nan": lambda d: _number(d, 0.5, b"NaN"),
    "infinity": lambda d: _number(d, 0.5, b"1e400"),
    "huge_int": lambda d: _number(d, 0.5, str(2**70).encode()),
    "latin1_byte": lambda d: _in_string(d, 0.5, b"caf\xe9"),
    "deep_5000": deep(5000),
    "deep_100000": deep(100_000),
    "bom": lambda d: b"\xef\xbb\xbf" + d,
    "cut_25": lambda d: truncate(d, 0.25),
    "cut_50": lambda d: truncate(d, 0.5),
    "cut_75": lambda d: truncate(d, 0.75),
    "cut_99": lambda d: truncate(d, 0.99),
    "bad_timestamps": bad_timestamps,
}

"""File access shared by the format adapters: options, decompression, streaming JSON records.

Every reader here works on plain, gzip (``.gz``, RFC 1952) and Zstandard (``.zst``, RFC 8878)
files alike, decompressing as it streams, so no adapter needs to know how a file was stored.
Nothing here loads a whole JSON Lines file or a JSON array into memory: lines are read one at a
time with a size limit, and arrays are streamed item by item (:mod:`~pipeline.ingest.formats._jsontext`).

Besides plain JSON containers (JSON Lines, a top-level array, one document), the readers here
unwrap the list pages of HTTP APIs, ``{"<envelope>": [items], ...}``: Langfuse's
``{"data": [...], "meta": {...}}`` (https://api.reference.langfuse.com, e.g. ``GET
/api/public/traces``) and LangSmith's ``/runs/query`` page ``{"runs": [...], "cursors": {...}}``
(https://docs.smith.langchain.com). The ``first_*`` functions find a file's first record in its
first bytes, for the adapters' ``sniff``; :func:`map_records` turns the records into the
adapters' :class:`~pipeline.ingest.formats._common.Record` items, quarantining those that fail.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from pipeline.errors import InputError
from pipeline.ingest.formats._common import Parsed, Quarantined, Record, truncate
from pipeline.ingest.formats._jsonarray import array_items
from pipeline.ingest.formats._jsontext import (
    first_json_line,
    first_page_record,
    first_record,
    loads,
    peek_first_json_line,
)
from pipeline.ingest.formats._paths import COMPRESSED_SUFFIXES, data_suffix

__all__ = [
    "COMPRESSED_SUFFIXES",
    "DEFAULT_MAX_RECORD_BYTES",
    "TRACE_IDS",
    "ReadOptions",
    "data_suffix",
    "first_json_line",
    "first_page_record",
    "first_record",
    "iter_json_lines",
    "iter_json_records",
    "iter_lines",
    "iter_page_records",
    "json_container",
    "json_documents",
    "load_json",
    "map_records",
    "open_binary",
    "peek_first_json_line",
    "read_head",
    "raw_lines",
    "read_text",
]

# A JSON Lines record (one line) or a JSON document larger than this is quarantined or refused
# rather than parsed: 64 MiB.
DEFAULT_MAX_RECORD_BYTES = 64 << 20
# A whole-document JSON format (not JSON Lines, not a top-level array) larger than this is refused.
DEFAULT_MAX_DOCUMENT_BYTES = 1 << 30
_CHUNK = 1 << 20
# The trace id of a span, observation or run, as its JSON text names it (OTLP ``traceId``,
# Phoenix ``context.trace_id``, LangSmith and Agents SDK ``trace_id``, Langfuse ``traceId``).
TRACE_IDS = re.compile(r'"(?:traceId|trace_id|context\.trace_id)"\s*:\s*"([^"\\]{1,200})"')
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class ReadOptions:
    """What an adapter needs besides the path.

    ``source_uri``: the value written to ``trajectories.source_uri``.
    ``reward_threshold``: a reward at or above it labels a trajectory ``success`` (default 1.0).
    ``max_record_bytes``: a JSON Lines line longer than this (bytes) is quarantined unread.
    ``max_document_bytes``: a single-document JSON file larger than this (bytes, decompressed)
    is refused with an :class:`~pipeline.errors.InputError`.
    ``outcome_feedback``: the name of the score/feedback that is the outcome, for formats whose
    outcome comes from scores (see :func:`~pipeline.ingest.formats._common.outcome_from_feedback`);
    ``None`` picks by the usual names.
    ``trace_ids``: for formats whose runs are assembled from several records (spans), a pattern
    whose first group is a trace id (:data:`TRACE_IDS`): the text of a line or array item that
    cannot be parsed is searched with it, and the ids found go to its
    :class:`~pipeline.ingest.formats._common.Quarantined` (``trajectory_ids``), so that those
    runs are quarantined whole rather than ingested with a gap.
    """

    source_uri: str
    reward_threshold: float = 1.0
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    outcome_feedback: str | None = None
    trace_ids: re.Pattern[str] | None = None


@contextmanager
def open_binary(path: Path) -> Iterator[IO[bytes]]:
    """``path`` opened for binary reading, decompressed on the fly when its name ends in ``.gz``
    or ``.zst``, past a UTF-8 byte-order mark if the content starts with one (some Windows
    tools write it; it is no part of a JSON document, and a streaming parser would stop at it).

    Raises:
        InputError: the file cannot be opened.
    """
    suffix = path.suffix.lower()
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        if suffix == ".gz":
            with gzip.GzipFile(fileobj=raw) as stream:
                yield _past_bom(stream)  # type: ignore[arg-type]
        elif suffix == ".zst":
            with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as zs:
                yield _past_bom(io.BufferedReader(zs, _CHUNK))  # type: ignore[arg-type]
        else:
            yield _past_bom(raw)
    except (OSError, EOFError, zstandard.ZstdError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: cannot decompress: {exc}") from exc
    finally:
        raw.close()


def _past_bom(stream: io.BufferedReader) -> io.BufferedReader:
    """``stream``, having read a leading UTF-8 byte-order mark (EF BB BF) if there is one."""
    if stream.peek(3)[:3] == b"\xef\xbb\xbf":
        stream.read(3)
    return stream


def read_head(path: Path, size: int) -> bytes:
    """Up to ``size`` bytes from the start of ``path``, decompressed.

    Raises:
        InputError: unreadable, or corrupt compressed data.
    """
    with open_binary(path) as stream:
        try:
            return stream.read(size)
        except (OSError, EOFError, zstandard.ZstdError) as exc:
            raise InputError(f"{path}: cannot decompress: {exc}") from exc


def _decode(path: Path, data: bytes, where: str = "") -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = f" {where}" if where else ""
        raise InputError(
            f"{path}{at}: not UTF-8 text (byte {exc.start}); re-encode it as UTF-8"
        ) from exc


def read_text(path: Path, max_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> str:
    """The whole (decompressed) file as text.

    Raises:
        InputError: unreadable, larger than ``max_bytes``, or not UTF-8 (with the byte offset).
    """
    with open_binary(path) as stream:
        try:
            data = stream.read(max_bytes + 1)
        except (OSError, EOFError, zstandard.ZstdError) as exc:
            raise InputError(f"{path}: cannot decompress: {exc}") from exc
    if len(data) > max_bytes:
        raise InputError(
            f"{path}: a single JSON document larger than {max_bytes >> 20} MiB; "
            "export it as JSON Lines (one record per line) instead"
        )
    return _decode(path, data)


def load_json(path: Path, max_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> Any:
    """The file parsed as one JSON document.

    Raises:
        InputError: unreadable, too large, empty, not UTF-8, not valid JSON (with line and
            column; a document that ends early is called truncated), or nested more than
            :data:`~pipeline.ingest.formats._jsontext.MAX_DEPTH` levels deep.
    """
    text = read_text(path, max_bytes)
    if not text.strip():
        raise InputError(f"{path}: empty file")
    try:
        return loads(text)
    except json.JSONDecodeError as exc:
        kind = "truncated" if exc.pos >= len(text.rstrip()) else "invalid"
        raise InputError(
            f"{path}: {kind} JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except ValueError as exc:  # too deep, or an integer too long to convert
        raise InputError(f"{path}: {exc}") from exc


def raw_lines(path: Path, limit: int) -> Iterator[tuple[int, bytes | None, bytes]]:
    """``(number, line, head)`` per line; ``line`` is ``None`` when it exceeds ``limit`` bytes
    (its first bytes are in ``head`` and the rest is skipped without being kept)."""
    with open_binary(path) as stream:
        number = 0
        try:
            while True:
                line = stream.readline(limit + 1)
                if not line:
                    return
                number += 1
                if len(line) > limit and not line.endswith(b"\n"):
                    head = line[:2000]
                    while True:
                        rest = stream.readline(_CHUNK)
                        if not rest or rest.endswith(b"\n"):
                            break
                    yield number, None, head
                    continue
                yield number, line, b""
        except (OSError, EOFError, zstandard.ZstdError) as exc:
            raise InputError(f"{path}: cannot decompress after line {number}: {exc}") from exc


def iter_lines(
    path: Path, max_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[tuple[int, str | Quarantined]]:
    """Yield ``(line_number, text)`` for every non-blank line (1-based numbers), streaming.

    A line longer than ``max_bytes`` or not valid UTF-8 comes as a :class:`Quarantined` in place
    of its text, so the caller can account for it and go on.

    Raises:
        InputError: unreadable or corrupt compressed data.
    """
    for number, line, head in raw_lines(path, max_bytes):
        where = f"line {number}"
        if line is None:
            yield (
                number,
                Quarantined(
                    where,
                    f"line longer than {max_bytes} bytes; not parsed (raise --max-record-mb "
                    "if it is a real record)",
                    truncate(head.decode("utf-8", "replace")),
                ),
            )
            continue
        try:
            text = line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield (
                number,
                Quarantined(
                    where,
                    f"not UTF-8 text (byte {exc.start} of the line)",
                    truncate(line.decode("utf-8", "replace")),
                ),
            )
            continue
        if text.strip():
            yield number, text


def _ids(pattern: re.Pattern[str] | None, text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(pattern.findall(text))) if pattern is not None else ()


def iter_json_lines(
    path: Path,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    trace_ids: re.Pattern[str] | None = None,
) -> Iterator[tuple[str, Any] | Quarantined]:
    """Yield ``(where, value)`` for each non-blank line parsed as JSON (``where`` is
    ``"line N"``), or a :class:`Quarantined` for a line that is too long, not UTF-8, not JSON or
    nested too deeply (:func:`~pipeline.ingest.formats._jsontext.loads`), with the trace ids
    ``trace_ids`` finds in it (see :class:`ReadOptions`).

    Raises:
        InputError: unreadable or corrupt compressed data.
    """
    for number, text in iter_lines(path, max_bytes):
        if isinstance(text, Quarantined):
            text.trajectory_ids = _ids(trace_ids, text.raw)
            yield text
            continue
        try:
            yield f"line {number}", loads(text)
        except ValueError as exc:
            reason = (
                str(exc) if not isinstance(exc, json.JSONDecodeError) else f"invalid JSON: {exc}"
            )
            yield Quarantined(f"line {number}", reason, truncate(text), 1, _ids(trace_ids, text))


def _parses(line: bytes) -> bool:
    try:
        loads(line)
    except ValueError:
        return False
    return True


def json_container(path: Path) -> str:
    """How the JSON of ``path`` is laid out, judged from its first 64 KiB: ``"lines"`` (JSON
    Lines), ``"array"`` (one top-level array) or ``"document"`` (one other JSON value).

    It is JSON Lines when the first non-blank line is a whole JSON value and more follows, or
    when the first line does not parse but the second is a whole object or array (a broken
    first record stays one bad line). Otherwise a text that opens with ``[`` is an array,
    whatever the file's name: a JSON array in a file named ``.jsonl`` is read as the array it
    is. A ``.jsonl`` / ``.ndjson`` file opening with ``{`` is one document only when plainly
    pretty-printed (its first line a lone ``{``, or the next line indented); other names are
    one document.

    Raises:
        InputError: unreadable, or empty.
    """
    head = read_head(path, 1 << 16).lstrip()
    if not head:
        raise InputError(f"{path}: empty file")
    lines = head.split(b"\n")
    opening, first = head[:1], lines[0].strip()
    if first in (b"[", b"{"):
        return "array" if opening == b"[" else "document"
    rest = b"\n".join(lines[1:])
    if _parses(first):
        if rest.strip():
            return "lines"
    else:
        complete = [line.strip() for line in lines[1:-1] if line.strip()]
        if complete and complete[0][:1] in (b"{", b"[") and _parses(complete[0]):
            return "lines"
    if opening == b"[":
        return "array"
    if data_suffix(path) in _JSONL_SUFFIXES:
        pretty = rest[:1] in (b" ", b"\t")
        return "document" if opening == b"{" and pretty else "lines"
    return "document"


def iter_json_records(
    path: Path, options: ReadOptions | None = None
) -> Iterator[tuple[str, Any] | Quarantined]:
    """Yield the records of a JSON container as ``(where, value)``, streaming:

    - JSON Lines (see :func:`json_container`): one record per line, ``where`` = ``"line N"``;
    - a JSON document whose top level is an array: one record per item, ``where`` = ``"index N"``
      (streamed item by item, never loaded whole);
    - any other JSON document: the document itself as one record, ``where`` = ``"document"``.

    Unparsable lines come as :class:`Quarantined`, and so does a bad item of an array (invalid,
    not UTF-8, nested too deeply): reading goes on at the next item
    (:func:`~pipeline.ingest.formats._jsontext.array_items`), or when it cannot be found the rest
    of the file comes as one :class:`Quarantined` that says how many bytes were not read.

    Raises:
        InputError: unreadable, empty, or (for a whole document) too large, not UTF-8 or not JSON.
    """
    options = options or ReadOptions(source_uri=str(path))
    container = json_container(path)
    if container == "lines":
        yield from iter_json_lines(path, options.max_record_bytes, options.trace_ids)
    elif container == "document":
        yield "document", load_json(path, options.max_document_bytes)
    else:
        yield from _stream_items(path, None, lambda index: f"index {index}", options)


def _stream_items(
    path: Path, envelope: str | None, where: Callable[[int], str], options: ReadOptions
) -> Iterator[tuple[str, Any] | Quarantined]:
    """Stream the items of the top-level array of ``path`` (``envelope`` None), or of the list
    that opens the object ``{"<envelope>": [...]``, as ``(where(index), item)``; each bad stretch
    comes as one :class:`Quarantined` and reading goes on after it where it can."""
    opening = re.compile(
        r"\[" if envelope is None else r'\{\s*"' + re.escape(envelope) + r'"\s*:\s*\['
    )

    def failed(exc: Exception) -> InputError:
        return InputError(f"{path}: cannot decompress: {exc}")

    with open_binary(path) as stream:
        for event in array_items(
            stream,
            opening,
            top_level=envelope is None,
            max_item_chars=options.max_record_bytes,
            max_chars=options.max_document_bytes,
            read_error=failed,
            trace_ids=options.trace_ids,
        ):
            if event.error is None:
                yield where(event.index), event.value
            else:
                yield Quarantined(where(event.index), event.error, event.raw, 1, event.ids)


def json_documents(path: Path, options: ReadOptions) -> Iterator[tuple[str, Any] | Quarantined]:
    """:func:`iter_json_records`, except that a file holding one JSON document that does not
    parse (truncated, invalid) comes as one :class:`Quarantined` record instead of an error: for
    formats with one trajectory per file (mini-swe-agent, SWE-bench results, Who&When) that is
    one bad record.

    Raises:
        InputError: unreadable, empty, too large or not UTF-8.
    """
    try:
        yield from iter_json_records(path, options)
    except InputError as exc:
        if not isinstance(exc.__cause__, json.JSONDecodeError):
            raise
        raw = read_head(path, 2000).decode("utf-8", "replace")
        yield Quarantined("document", str(exc), truncate(raw))


def iter_page_records(
    path: Path, options: ReadOptions, envelope: str
) -> Iterator[tuple[str, Any] | Quarantined]:
    """The records of ``path`` as ``(where, value)``, like :func:`iter_json_records`, with API
    list pages unwrapped: a record that is an object with an ``envelope`` list (``{"data": [...],
    "meta": {...}}``) yields the list's items (``where`` = ``"line 3 data[0]"``); a whole file
    that opens with such a list is streamed.

    Raises:
        InputError: unreadable, empty, or a whole document that is too large or not JSON.
    """
    with open_binary(path) as stream:
        head = stream.read(1 << 16)
    opening = re.compile(rb'^\s*\{\s*"' + re.escape(envelope.encode()) + rb'"\s*:\s*\[')
    streamable = data_suffix(path) not in (".jsonl", ".ndjson") and opening.match(
        head.lstrip(b"\xef\xbb\xbf")
    )
    if streamable and peek_first_json_line(head) is None:
        yield from _stream_items(path, envelope, lambda index: f"{envelope}[{index}]", options)
        return
    for item in iter_json_records(path, options):
        if isinstance(item, Quarantined):
            yield item
            continue
        where, value = item
        if isinstance(value, Mapping) and isinstance(value.get(envelope), list):
            at = "" if where == "document" else f"{where} "
            for index, inner in enumerate(value[envelope]):
                yield f"{at}{envelope}[{index}]", inner
        else:
            yield where, value


def map_records(
    items: Iterable[tuple[str, Any] | Quarantined],
    build: Callable[[str, Any], Record],
    errors: tuple[type[Exception], ...] = (ValueError, TypeError, OverflowError),
) -> Iterator[Parsed]:
    """``build(where, obj)`` for every ``(where, obj)`` of ``items`` (what the readers here
    yield), passing its :class:`Quarantined` items through; a record that ``build`` rejects with
    one of ``errors`` is quarantined, with the error as the reason."""
    for item in items:
        if isinstance(item, Quarantined):
            yield item
            continue
        where, obj = item
        try:
            yield build(where, obj)
        except errors as exc:
            yield Quarantined(where, str(exc), truncate(obj))

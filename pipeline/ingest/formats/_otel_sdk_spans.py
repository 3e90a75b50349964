"""OpenTelemetry spans as the SDK's own exporters write them (not OTLP): decoded into the
:class:`~pipeline.ingest.formats._otlp.Span` shape for :mod:`~pipeline.ingest.formats.otel` and
:mod:`~pipeline.ingest.formats.openinference`, with the reading of the files that hold them.

Shapes:

- ``ReadableSpan.to_json()`` of opentelemetry-python (``opentelemetry-sdk``,
  https://github.com/open-telemetry/opentelemetry-python,
  ``opentelemetry-sdk/src/opentelemetry/sdk/trace/__init__.py``, read at v1.45.2), what
  ``ConsoleSpanExporter`` and the file exporters built on it write: ``{"name", "context":
  {"trace_id": "0x<32 hex>", "span_id": "0x<16 hex>", "trace_state": "[]"}, "kind":
  "SpanKind.INTERNAL", "parent_id": "0x<16 hex>" | null, "start_time", "end_time" (ISO 8601),
  "status": {"status_code": "UNSET"|"OK"|"ERROR", "description"?}, "attributes": {key: value},
  "events": [{"name", "timestamp", "attributes"}], "links": [...], "resource": {"attributes",
  "schema_url"}}``. ``ConsoleSpanExporter``'s default formatter writes ``span.to_json() +
  os.linesep``: indented objects one after another (read by :func:`span_records` as
  concatenated JSON); a compact formatter gives JSON Lines; a JSON array of spans is read too.
- mozilla-ai/any-agent's ``AgentTrace`` JSON (https://github.com/mozilla-ai/any-agent,
  ``src/any_agent/tracing/agent_trace.py`` and ``otel_types.py`` at
  ``83e2395d19f6c28920ead3744fbfa6aa26a86d9e``, the shape of its ``tests/assets/*_trace.json``):
  ``{"spans": [span], "final_output"}``, each span as above except ``context`` / ``parent``:
  ``{"trace_id": int, "span_id": int, ...}`` (``parent`` null for the root), ``kind``:
  ``"internal"``, times in integer nanoseconds, ``status_code`` lower case. Its attributes
  (``gen_ai.operation.name`` ``call_llm`` / ``execute_tool`` / ``invoke_agent``,
  ``gen_ai.output``, ``gen_ai.tool.args``) are read by :func:`agent_output` and
  :func:`tool_arguments`.

Trace and span ids are read as lower-case hex without ``0x`` (integers as 32 / 16 hex digits),
as OTLP writes them, so one trace reads the same from either exporter.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.ingest.formats._common import Quarantined, parse_time, truncate
from pipeline.ingest.formats._io import ReadOptions, iter_json_records, json_container, open_binary
from pipeline.ingest.formats._jsontext import (
    DECODER,
    MAX_DEPTH,
    first_item,
    opened,
    too_deep,
    top_level_fields,
)
from pipeline.ingest.formats._otlp import Event, Span, is_otlp_request
from pipeline.ingest.formats._span_steps import Message, ToolCall

__all__ = [
    "agent_output",
    "is_agent_trace",
    "is_sdk_span",
    "sdk_head",
    "sdk_span",
    "span_records",
    "span_trace_id",
    "tool_arguments",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK = 1 << 20
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
# where a new object of ConsoleSpanExporter's output starts: a "{" at the start of a line
_NEXT_OBJECT = re.compile(r"\n(?=\{)")


# --- recognising ---------------------------------------------------------------------------------


def is_sdk_span(obj: Any) -> bool:
    """True for a span as ``ReadableSpan.to_json()`` (or any-agent) writes it: a ``context``
    object with ``trace_id`` and ``span_id``, and a ``kind`` or a ``status`` object (a Phoenix
    span has ``span_kind`` and ``status_code`` instead)."""
    if not isinstance(obj, Mapping):
        return False
    context = obj.get("context")
    return (
        isinstance(context, Mapping)
        and "trace_id" in context
        and "span_id" in context
        and ("kind" in obj or isinstance(obj.get("status"), Mapping))
    )


def is_agent_trace(obj: Any) -> bool:
    """True for an any-agent ``AgentTrace`` document: ``{"spans": [...]}`` whose first span (if
    any) is an SDK span, and no ``resourceSpans``."""
    if not isinstance(obj, Mapping) or is_otlp_request(obj):
        return False
    spans = obj.get("spans")
    return isinstance(spans, list) and (not spans or is_sdk_span(spans[0]))


def _looks_like_span(fields: Mapping[str, Any]) -> bool:
    """The top-level keys of a cut-off first object are those of an SDK span."""
    return (
        "context" in fields
        and "status" in fields
        and "kind" in fields
        and ("parent_id" in fields or "parent" in fields)
    )


def _head_kind(head: bytes) -> str | None:
    """``"span"`` when the first record in ``head`` is an SDK span, ``"trace"`` when it is an
    any-agent ``AgentTrace``, else ``None``."""
    data = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if data[:1] == b"[":
        return "span" if is_sdk_span(first_item(data)) else None
    if data[:1] != b"{":
        return None
    try:
        value, _ = DECODER.raw_decode(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        fields = top_level_fields(data)
        if "spans" in fields and "resourceSpans" not in fields:
            return "trace" if is_sdk_span(first_item(data, "spans")) else None
        return "span" if _looks_like_span(fields) else None
    if is_sdk_span(value):
        return "span"
    return "trace" if is_agent_trace(value) and value["spans"] else None


def sdk_head(head: bytes) -> bool:
    """True when the first record in ``head`` (a file's first bytes) is an SDK span or an
    any-agent ``AgentTrace``: the first item of an array, the first value of concatenated or
    line-separated JSON, or (when the head cuts it off) an object whose top-level keys are a
    span's."""
    return _head_kind(head) is not None


# --- decoding ------------------------------------------------------------------------------------


def _hex_id(value: Any, digits: int, what: str) -> str | None:
    """An id as lower-case hex: ``"0x..."`` without its prefix, an integer as ``digits`` hex
    digits, other text as it is; ``None`` for null, ``""`` and 0 (an invalid id).

    Raises:
        ValueError: neither text nor an integer.
    """
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:0{digits}x}"
    if isinstance(value, str):
        return _normal_id(value.strip())
    raise ValueError(f"{what} is neither hex text nor an integer: {truncate(value, 80)}")


def _normal_id(value: str) -> str:
    """``0x``-prefixed hex without its prefix, in lower case; other text as it is."""
    return value[2:].lower() if value[:2].lower() == "0x" else value


def _time(value: Any) -> datetime | None:
    """An ISO 8601 time, or integer nanoseconds since the epoch (exact to the microsecond)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**17:
        return _EPOCH + timedelta(microseconds=value // 1000)
    return parse_time(value)


def _attributes(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is not an object")
    return dict(value)


def sdk_span(obj: Mapping[str, Any], where: str, index: int) -> Span:
    """An SDK span (see the module docstring) as a :class:`~pipeline.ingest.formats._otlp.Span`;
    ``index`` is its position among the file's spans.

    Raises:
        ValueError: no trace or span id, a time that does not parse, or ``attributes``,
            ``status``, ``resource`` or an event that is not an object.
    """
    context = obj["context"]
    trace_id = _hex_id(context.get("trace_id"), 32, "context.trace_id")
    span_id = _hex_id(context.get("span_id"), 16, "context.span_id")
    if not trace_id:
        raise ValueError("span has no context.trace_id")
    if not span_id:
        raise ValueError("span has no context.span_id")
    parent = obj.get("parent_id")
    if parent is None and isinstance(obj.get("parent"), Mapping):
        parent = obj["parent"].get("span_id")
    status = obj.get("status") or {}
    if not isinstance(status, Mapping):
        raise ValueError("'status' is not an object")
    resource = obj.get("resource") or {}
    if not isinstance(resource, Mapping):
        raise ValueError("'resource' is not an object")
    events = []
    for number, event in enumerate(obj.get("events") or []):
        if not isinstance(event, Mapping):
            raise ValueError(f"event {number} is not an object")
        events.append(
            Event(
                str(event.get("name") or ""),
                _time(event.get("timestamp")),
                _attributes(event.get("attributes"), f"event {number} attributes"),
            )
        )
    description = status.get("description")
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=_hex_id(parent, 16, "parent_id"),
        name=str(obj.get("name") or ""),
        started_at=_time(obj.get("start_time")),
        ended_at=_time(obj.get("end_time")),
        attributes=_attributes(obj.get("attributes"), "'attributes'"),
        events=events,
        status=str(status.get("status_code") or "UNSET").upper(),
        status_message=str(description) if description else None,
        resource=_attributes(resource.get("attributes"), "resource attributes"),
        index=index,
        where=where,
        raw=obj,
    )


def span_trace_id(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The trace id of an SDK span that could not be decoded, as :func:`sdk_span` reads it
    (empty when it has none that can be read), so that its trace is quarantined whole."""
    try:
        trace_id = _hex_id(obj["context"].get("trace_id"), 32, "context.trace_id")
    except (ValueError, TypeError, AttributeError, KeyError):
        return ()
    return (trace_id,) if trace_id else ()


# --- any-agent attributes ------------------------------------------------------------------------


def _json(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def agent_output(value: Any) -> list[Message]:
    """The output message of an any-agent ``call_llm`` span from its ``gen_ai.output``: a JSON
    list of ``{"tool.name", "tool.args"}`` is an assistant message requesting those tool calls
    (without call ids); anything else is the assistant's text (JSON kept as its text)."""
    parsed = _json(value)
    if (
        isinstance(parsed, list)
        and parsed
        and all(isinstance(c, Mapping) and c.get("tool.name") for c in parsed)
    ):
        calls = [ToolCall(None, str(c["tool.name"]), c.get("tool.args")) for c in parsed]
        return [Message("assistant", calls=calls)]
    if value is None or value == "":
        return []
    return [Message("assistant", value if isinstance(value, str) else json.dumps(value))]


def tool_arguments(attributes: Mapping[str, Any]) -> Any:
    """A tool span's arguments: ``gen_ai.tool.call.arguments`` (GenAI semantic conventions),
    else any-agent's ``gen_ai.tool.args``."""
    value = attributes.get("gen_ai.tool.call.arguments")
    return attributes.get("gen_ai.tool.args") if value is None else value


# --- reading -------------------------------------------------------------------------------------


def _found_ids(options: ReadOptions, text: str) -> tuple[str, ...]:
    if options.trace_ids is None:
        return ()
    found = (_normal_id(m) for m in options.trace_ids.findall(text))
    return tuple(dict.fromkeys(found))


def _concatenated(path: Path, options: ReadOptions) -> Iterator[tuple[str, Any] | Quarantined]:
    """The JSON values of ``path`` written one after another (``where`` = ``"line N"``, the line
    a value starts on), streaming. A value that does not parse, is not UTF-8, is nested too
    deeply or is longer than ``options.max_record_bytes`` is quarantined, and reading goes on
    at the next line that starts with ``{``."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    text, pos, line, eof = "", 0, 1, False
    with open_binary(path) as stream:

        def more(least: int) -> None:
            nonlocal text, eof
            chunk = stream.read(max(_CHUNK, least))
            eof = not chunk
            text += decoder.decode(chunk, final=eof)

        while True:
            start = len(text) - len(text[pos:].lstrip(" \t\r\n"))
            if start == len(text) and not eof:
                line += text.count("\n", pos)
                text, pos = "", 0
                more(0)
                continue
            line += text.count("\n", pos, start)
            if start == len(text):
                return
            if start > _CHUNK:
                text, start = text[start:], 0
            pos = start
            reason = None
            try:
                value, end = DECODER.raw_decode(text, start)
                if opened(text, start, end) > MAX_DEPTH and too_deep(value):
                    reason = f"nested more than {MAX_DEPTH} levels deep"
            except json.JSONDecodeError as exc:
                cut = exc.pos >= len(text) - 8 or exc.msg.startswith("Unterminated string")
                if cut and not eof:
                    if len(text) - start <= options.max_record_bytes:
                        more(len(text) - start)
                        continue
                    reason = f"a value longer than {options.max_record_bytes} bytes; not parsed"
                else:
                    ends = " (the file ends inside it: cut off?)" if cut else ""
                    reason = f"invalid JSON: {exc.msg}{ends}"
                end = start
            except (ValueError, RecursionError) as exc:
                reason, end = str(exc) or "nested too deeply", start
            if reason is None and _NOT_UTF8.search(text, start, end):
                reason = "not UTF-8 text"
            if reason is None:
                yield f"line {line}", value
                line += text.count("\n", start, end)
                pos = end
                continue
            while (found := _NEXT_OBJECT.search(text, start + 1)) is None and not eof:
                more(len(text) - start)
            stop = found.end() if found else len(text)
            raw = text[start:stop]
            yield Quarantined(
                f"line {line}",
                reason,
                truncate(raw.encode("utf-8", "replace").decode("utf-8")),
                1,
                _found_ids(options, raw),
            )
            line += raw.count("\n")
            pos = stop


def span_records(path: Path, options: ReadOptions) -> Iterator[tuple[str, Any] | Quarantined]:
    """The records of a span file as ``(where, value)``: JSON Lines, a JSON array or one
    document as :func:`~pipeline.ingest.formats._io.iter_json_records` reads them, except that a
    file whose first value is an SDK span and that is not JSON Lines or an array is read as
    concatenated JSON values (``ConsoleSpanExporter``'s indented output); an any-agent
    ``AgentTrace`` gives its spans (``where`` = ``"document spans[N]"``). Trace ids found in a
    record that does not parse are read as :func:`sdk_span` reads them.

    Raises:
        InputError: unreadable, empty, or (for a whole document) too large or not JSON.
    """
    records = None
    if json_container(path) == "document":
        with open_binary(path) as stream:
            head = stream.read(1 << 16)
        if _head_kind(head) == "span":
            records = _concatenated(path, options)
    for item in records or iter_json_records(path, options):
        if isinstance(item, Quarantined):
            item.trajectory_ids = tuple(dict.fromkeys(map(_normal_id, item.trajectory_ids)))
            yield item
            continue
        where, obj = item
        if is_agent_trace(obj):
            for number, span in enumerate(obj["spans"]):
                yield f"{where} spans[{number}]", span
        else:
            yield where, obj

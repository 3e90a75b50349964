"""OTLP/JSON trace data decoded into :class:`Span` objects, the span tree of a trace
(:func:`walk`), readers of span attributes and events, and the pieces of a trace's record that do
not depend on the attribute conventions (:func:`evaluation_feedback`, :func:`span_times`,
:func:`failed_trace`), shared by the span-based adapters (:mod:`~pipeline.ingest.formats.otel`,
:mod:`~pipeline.ingest.formats.openinference`; the latter also reads Phoenix span exports into the same
:class:`Span`, see :mod:`pipeline.ingest.formats._phoenix`).

OTLP/JSON (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding, OTLP 1.x; files
as the file exporter writes them, https://opentelemetry.io/docs/specs/otel/protocol/file-exporter/):
``{"resourceSpans": [{"resource": {"attributes": [KeyValue]}, "scopeSpans": [{"scope": {"name"},
"spans": [{"traceId": hex, "spanId": hex, "parentSpanId": hex, "name", "kind": int,
"startTimeUnixNano": str, "endTimeUnixNano": str, "attributes": [KeyValue], "events":
[{"timeUnixNano", "name", "attributes"}], "status": {"code": 0|1|2 or "STATUS_CODE_*",
"message"}}]}]}]}`` with ``KeyValue = {"key", "value": AnyValue}`` and ``AnyValue`` one of
``stringValue``, ``intValue`` (a decimal string), ``doubleValue``, ``boolValue``, ``bytesValue``,
``arrayValue: {"values": [AnyValue]}``, ``kvlistValue: {"values": [KeyValue]}``. The proto field
names (``resource_spans``, ``trace_id``...) and the older ``instrumentationLibrarySpans`` are read
too.

Errors are read from the span status, ``error.type`` and the ``exception`` event
(https://opentelemetry.io/docs/specs/semconv/exceptions/exceptions-spans/); scores from the
GenAI ``gen_ai.evaluation.result`` event
(https://github.com/open-telemetry/semantic-conventions/tree/main/docs/gen-ai).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.ingest.formats._common import Quarantined, feedback_row, truncate
from pipeline.ingest.formats._jsontext import loads

__all__ = [
    "Event",
    "Span",
    "any_value",
    "decode_into",
    "decode_request",
    "error_text",
    "evaluation_feedback",
    "evaluation_results",
    "failed_trace",
    "first_value",
    "group_by_trace",
    "indexed",
    "is_otlp_request",
    "key_values",
    "parse_json_value",
    "span_times",
    "to_int",
    "trace_where",
    "walk",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATUS = {
    0: "UNSET",
    1: "OK",
    2: "ERROR",
    "STATUS_CODE_UNSET": "UNSET",
    "STATUS_CODE_OK": "OK",
    "STATUS_CODE_ERROR": "ERROR",
}


# --- OTLP/JSON decoding -------------------------------------------------------------------------


def _field(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def any_value(value: Any) -> Any:
    """An OTLP/JSON ``AnyValue`` as a Python value: str, int, float, bool, list or dict (an
    empty ``AnyValue`` is ``None``; ``bytesValue`` stays base64 text).

    Raises:
        ValueError: not an object, or none of the known value fields.
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"attribute value is not an AnyValue object: {value!r:.80}")
    if not value:
        return None
    for key in ("stringValue", "string_value", "boolValue", "bool_value", "bytesValue"):
        if key in value:
            return value[key]
    for key in ("intValue", "int_value"):
        if key in value:
            return int(value[key])
    for key in ("doubleValue", "double_value"):
        if key in value:
            return float(value[key])
    array = _field(value, "arrayValue", "array_value")
    if isinstance(array, Mapping):
        return [any_value(v) for v in array.get("values") or []]
    kvlist = _field(value, "kvlistValue", "kvlist_value")
    if isinstance(kvlist, Mapping):
        return key_values(kvlist.get("values") or [])
    raise ValueError(f"unknown AnyValue {truncate(value, 80)}")


def key_values(items: Any) -> dict[str, Any]:
    """An OTLP/JSON ``[{"key", "value": AnyValue}]`` list as a dict.

    Raises:
        ValueError: not a list, an item without a string ``key``, or a bad ``AnyValue``.
    """
    if items is None:
        return {}
    if not isinstance(items, list):
        raise ValueError("attributes are not a list of {key, value}")
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            raise ValueError(f"attribute without a 'key': {truncate(item, 80)}")
        out[item["key"]] = any_value(item.get("value") or {})
    return out


def _nanos(value: Any, what: str) -> datetime | None:
    if value in (None, "", 0, "0"):
        return None
    try:
        nanos = int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not an integer number of nanoseconds: {value!r}") from exc
    return _EPOCH + timedelta(microseconds=nanos // 1000)


@dataclass
class Event:
    """A span event: ``name``, ``time`` (aware UTC) and its attributes."""

    name: str
    time: datetime | None
    attributes: dict[str, Any]


@dataclass
class Span:
    """One span in the shape both span formats are read into.

    ``status`` is ``UNSET`` | ``OK`` | ``ERROR``; ``index`` is the span's position in its file
    (source order, the tie-break of the tree order); ``where`` locates it (``line 3 span 2``);
    ``raw`` is the source object (for the quarantine). :func:`walk` sets ``depth``.
    """

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    started_at: datetime | None
    ended_at: datetime | None
    attributes: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    status: str = "UNSET"
    status_message: str | None = None
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str | None = None
    index: int = 0
    where: str = ""
    raw: Any = None
    depth: int = 0


def is_otlp_request(obj: Any) -> bool:
    """True for an ``ExportTraceServiceRequest`` / ``TracesData`` object (``resourceSpans``)."""
    return isinstance(obj, Mapping) and isinstance(
        _field(obj, "resourceSpans", "resource_spans"), list
    )


def _otlp_span(raw: Any, where: str, resource: dict[str, Any], scope: str | None) -> Span:
    if not isinstance(raw, Mapping):
        raise ValueError("span is not an object")
    trace_id = str(_field(raw, "traceId", "trace_id") or "").lower()
    span_id = str(_field(raw, "spanId", "span_id") or "").lower()
    if not trace_id:
        raise ValueError("span has no traceId")
    if not span_id:
        raise ValueError("span has no spanId")
    status = raw.get("status") or {}
    if not isinstance(status, Mapping):
        raise ValueError("'status' is not an object")
    events = []
    for number, event in enumerate(raw.get("events") or []):
        if not isinstance(event, Mapping):
            raise ValueError(f"event {number} is not an object")
        events.append(
            Event(
                str(event.get("name") or ""),
                _nanos(_field(event, "timeUnixNano", "time_unix_nano"), f"event {number} time"),
                key_values(event.get("attributes")),
            )
        )
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=str(_field(raw, "parentSpanId", "parent_span_id") or "").lower() or None,
        name=str(raw.get("name") or ""),
        started_at=_nanos(_field(raw, "startTimeUnixNano", "start_time_unix_nano"), "start time"),
        ended_at=_nanos(_field(raw, "endTimeUnixNano", "end_time_unix_nano"), "end time"),
        attributes=key_values(raw.get("attributes")),
        events=events,
        status=_STATUS.get(status.get("code", 0), str(status.get("code")).upper()),
        status_message=status.get("message") or None,
        resource=resource,
        scope=scope,
        where=where,
        raw=raw,
    )


def _items(value: Any, what: str) -> tuple[list[Any], str | None]:
    if value is None:
        return [], None
    if not isinstance(value, list):
        return [], f"{what} is not a list"
    return value, None


def decode_request(obj: Mapping[str, Any], where: str) -> Iterator[Any]:
    """Yield a :class:`Span` for every span of one OTLP/JSON request object, or a
    :class:`Quarantined` (one record) for a span that cannot be read (no ids, bad attributes)
    and for a resource or scope entry that is not an object or whose ``spans`` are not a list.
    Span ``where`` is ``"<where> span N"`` (1-based within the request); the caller sets
    ``index``. A resource whose attributes cannot be read quarantines each of its spans. A span
    that cannot be read names its trace (``trajectory_id``) when it has a trace id, so that the
    trace is quarantined whole rather than ingested without it."""
    number = 0
    for position, resource_spans in enumerate(_field(obj, "resourceSpans", "resource_spans")):
        here = f"{where} resourceSpans[{position}]"
        if not isinstance(resource_spans, Mapping):
            yield Quarantined(here, f"{here} is not an object", truncate(resource_spans))
            continue
        resource_error = None
        try:
            resource = key_values((resource_spans.get("resource") or {}).get("attributes"))
        except (ValueError, TypeError, AttributeError) as exc:
            resource, resource_error = {}, f"resource: {exc}"
        scopes, problem = _items(
            _field(resource_spans, "scopeSpans", "scope_spans")
            or resource_spans.get("instrumentationLibrarySpans"),
            "scopeSpans",
        )
        if problem:
            yield Quarantined(here, f"{here}: {problem}", truncate(resource_spans))
        for scope_spans in scopes:
            if not isinstance(scope_spans, Mapping):
                yield Quarantined(here, f"{here}: a scopeSpans entry is not an object")
                continue
            scope = scope_spans.get("scope") or scope_spans.get("instrumentationLibrary") or {}
            scope_name = scope.get("name") if isinstance(scope, Mapping) else None
            spans, problem = _items(scope_spans.get("spans"), "spans")
            if problem:
                yield Quarantined(here, f"{here}: {problem}", truncate(scope_spans))
            for raw in spans:
                number += 1
                at = f"{where} span {number}"
                try:
                    if resource_error:
                        raise ValueError(resource_error)
                    yield _otlp_span(raw, at, resource, scope_name)
                except (ValueError, TypeError, OverflowError, AttributeError) as exc:
                    trace = _field(raw, "traceId", "trace_id") if isinstance(raw, Mapping) else 0
                    ids = (str(trace).lower(),) if trace else ()
                    yield Quarantined(at, f"{at}: {exc}", truncate(raw), 1, ids)


def decode_into(obj: Mapping[str, Any], where: str, spans: list[Span]) -> Iterator[Quarantined]:
    """:func:`decode_request`, appending each span to ``spans`` (``index`` = its position there)
    and yielding the :class:`Quarantined` items."""
    for decoded in decode_request(obj, where):
        if isinstance(decoded, Quarantined):
            yield decoded
        else:
            decoded.index = len(spans)
            spans.append(decoded)


# --- the span tree ------------------------------------------------------------------------------


def group_by_trace(spans: Iterable[Span]) -> dict[str, list[Span]]:
    """Spans grouped by ``trace_id``, traces in order of first appearance."""
    traces: dict[str, list[Span]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    return traces


def _start_key(span: Span) -> tuple[bool, datetime, int]:
    return (span.started_at is None, span.started_at or _EPOCH, span.index)


def walk(spans: list[Span]) -> list[tuple[str, Span]]:
    """The spans of one trace as ``("enter", span)`` / ``("exit", span)`` pairs in tree order.

    The tree is rebuilt from parent span ids; roots are spans without a parent in the trace.
    Siblings (and roots) are ordered by start time, then by source order, and a parent is
    entered before its children and exited after them. A span id seen twice keeps its first
    span; spans caught in a parent cycle are walked as extra roots. Sets ``depth`` (0 = root).
    """
    by_id: dict[str, Span] = {}
    for span in spans:
        by_id.setdefault(span.span_id, span)
    unique = list(by_id.values())
    children: dict[str, list[Span]] = {}
    roots = []
    for span in unique:
        if span.parent_id and span.parent_id in by_id and span.parent_id != span.span_id:
            children.setdefault(span.parent_id, []).append(span)
        else:
            roots.append(span)
    order: list[tuple[str, Span]] = []
    visited: set[str] = set()

    def visit(span: Span, depth: int) -> None:
        stack: list[tuple[Span, int, bool]] = [(span, depth, False)]
        while stack:
            current, level, done = stack.pop()
            if done:
                order.append(("exit", current))
                continue
            if current.span_id in visited:
                continue
            visited.add(current.span_id)
            current.depth = level
            order.append(("enter", current))
            stack.append((current, level, True))
            for child in sorted(children.get(current.span_id, []), key=_start_key, reverse=True):
                stack.append((child, level + 1, False))

    for root in sorted(roots, key=_start_key):
        visit(root, 0)
    for span in sorted(unique, key=_start_key):
        if span.span_id not in visited:
            visit(span, 0)
    return order


# --- attribute helpers --------------------------------------------------------------------------


def to_int(value: Any) -> int | None:
    """``value`` as an int (token counts arrive as int, float or decimal text), else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def parse_json_value(value: Any, what: str) -> Any:
    """A structured attribute that may have been recorded as JSON text, parsed.

    Raises:
        ValueError: text that is not valid JSON (the message names ``what``).
    """
    if not isinstance(value, str):
        return value
    try:
        return loads(value)
    except ValueError as exc:
        raise ValueError(f"attribute {what} is not valid JSON ({exc})") from exc


_INDEX = re.compile(r"(\d+)(?:\.(.+))?$")


def indexed(flat: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """The items of a flattened list attribute, in index order: ``{"p.0.role": "user",
    "p.0.content": "hi"}`` with prefix ``"p"`` gives ``[{"role": "user", "content": "hi"}]``.
    A list value stored whole under ``prefix`` (``{"p": [{...}]}``) is returned as it is."""
    whole = flat.get(prefix)
    if isinstance(whole, list):
        return [item if isinstance(item, dict) else {"": item} for item in whole]
    start = prefix + "."
    items: dict[int, dict[str, Any]] = {}
    for key, value in flat.items():
        if key.startswith(start):
            match = _INDEX.match(key[len(start) :])
            if match:
                items.setdefault(int(match.group(1)), {})[match.group(2) or ""] = value
    return [items[i] for i in sorted(items)]


def error_text(span: Span) -> str | None:
    """What went wrong in an ``ERROR`` span: the status message or the ``exception`` event's
    ``exception.message``, prefixed by ``error.type`` / ``exception.type`` when that adds
    something; ``None`` for a span whose status is not ``ERROR``."""
    if span.status != "ERROR":
        return None
    exception = next((e.attributes for e in span.events if e.name == "exception"), {})
    message = span.status_message or exception.get("exception.message")
    kind = span.attributes.get("error.type") or exception.get("exception.type")
    if message and kind and str(kind) not in str(message):
        return f"{kind}: {message}"
    return str(message or kind or "error")


def evaluation_results(span: Span) -> list[dict[str, Any]]:
    """The span's GenAI evaluation events as ``{"name", "score", "label", "explanation",
    "event"}``: ``gen_ai.evaluation.result`` (``gen_ai.evaluation.name``,
    ``gen_ai.evaluation.score.value``, ``gen_ai.evaluation.score.label``,
    ``gen_ai.evaluation.explanation``) and the older ``gen_ai.evaluation.<method>`` events
    (``gen_ai.evaluation.score``, named by the method, e.g. ``user_feedback``)."""
    results = []
    for event in span.events:
        if not event.name.startswith("gen_ai.evaluation."):
            continue
        attrs = event.attributes
        if event.name == "gen_ai.evaluation.result":
            name = attrs.get("gen_ai.evaluation.name")
            score = attrs.get("gen_ai.evaluation.score.value")
        else:
            name = event.name.removeprefix("gen_ai.evaluation.")
            score = attrs.get("gen_ai.evaluation.score")
        if not name:
            continue
        results.append(
            {
                "name": str(name),
                "score": float(score) if isinstance(score, int | float) else None,
                "label": attrs.get("gen_ai.evaluation.score.label"),
                "explanation": attrs.get("gen_ai.evaluation.explanation") or attrs.get("comment"),
                "event": event.name,
            }
        )
    return results


def evaluation_feedback(trace_id: str, span: Span, step_idx: int | None) -> list[dict[str, Any]]:
    """``feedback`` rows of the span's :func:`evaluation_results` at ``step_idx``: the score as
    ``value`` (the label when there is no score; ``value_text`` when there are both), the event
    name as ``source``, the explanation as ``comment``."""
    rows = []
    for result in evaluation_results(span):
        score, label = result["score"], result["label"]
        row = feedback_row(
            trace_id,
            result["name"],
            score if score is not None else label,
            source=result["event"],
            comment=result["explanation"],
            step_idx=step_idx,
        )
        if score is not None and label is not None:
            row["value_text"] = str(label)
        rows.append(row)
    return rows


def first_value(spans: Iterable[Span], *keys: str) -> str | None:
    """The first non-empty value of ``keys`` over ``spans``, as text (JSON for non-strings)."""
    for span in spans:
        for key in keys:
            value = span.attributes.get(key)
            if value not in (None, ""):
                return value if isinstance(value, str) else json.dumps(value)
    return None


def span_times(spans: Iterable[Span]) -> tuple[datetime | None, datetime | None]:
    """When a trace started and ended: the earliest span start and the latest span end (a span
    without an end counts with its start)."""
    spans = list(spans)
    starts = [s.started_at for s in spans if s.started_at is not None]
    ends = [t for s in spans if (t := s.ended_at or s.started_at) is not None]
    return (min(starts) if starts else None, max(ends) if ends else None)


def trace_where(trace_id: str, spans: list[Span]) -> str:
    """Where a trace's record comes from: ``trace <id> (from <where of its first span>)``."""
    return f"trace {trace_id} (from {spans[0].where})"


def failed_trace(trace_id: str, spans: list[Span], error: Exception, records: int) -> Quarantined:
    """The quarantine entry of a trace that cannot be mapped (``records``: the source records it
    stands for), with its first span as the raw text."""
    return Quarantined(
        trace_where(trace_id, spans),
        f"trace {trace_id}: {error}",
        truncate(spans[0].raw),
        records=records,
    )

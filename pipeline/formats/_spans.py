"""Span-tree pieces shared by the span-based adapters (:mod:`~pipeline.formats.otel`,
:mod:`~pipeline.formats.openinference`): OTLP/JSON decoding, spans grouped by trace in tree
order, chat messages in their several shapes, and :class:`StepBuilder`, which turns a trace's
LLM and tool spans into ``steps`` rows without repeating the history every LLM call resends.

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
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.formats._common import (
    _ERROR_TEXT,
    Quarantined,
    content_text,
    json_text,
    truncate,
)

__all__ = [
    "Event",
    "Message",
    "Span",
    "StepBuilder",
    "ToolCall",
    "any_value",
    "decode_request",
    "error_text",
    "evaluation_results",
    "group_by_trace",
    "indexed",
    "is_otlp_request",
    "key_values",
    "message",
    "parse_json_value",
    "to_int",
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
    ``index``. A resource whose attributes cannot be read quarantines each of its spans."""
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
                    yield Quarantined(at, f"{at}: {exc}", truncate(raw))


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
        return json.loads(value)
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


# --- messages -----------------------------------------------------------------------------------

_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
}


@dataclass
class ToolCall:
    """A tool call requested by the model (``arguments`` as given: JSON text or a value)."""

    id: str | None
    name: str
    arguments: Any = None


@dataclass
class Message:
    """A chat message in one shape: ``role`` (system/user/assistant/tool), its text, the tool
    calls it requests and, for tool messages, the ``(call id, result text)`` it answers."""

    role: str
    text: str | None = None
    calls: list[ToolCall] = field(default_factory=list)
    results: list[tuple[str | None, str | None]] = field(default_factory=list)

    def fingerprint(self) -> tuple[Any, ...]:
        """What identifies this message when a later LLM call resends it."""
        text = " ".join((self.text or "").split())
        if self.role == "tool":
            call_id, result = self.results[0] if self.results else (None, self.text)
            return ("tool", call_id or " ".join((result or "").split()))
        return (self.role, text, tuple(c.id or c.name for c in self.calls))


def _role(value: Any, default: str | None) -> str:
    if value is None and default is not None:
        return default
    role = _ROLES.get(str(value).lower())
    if role is None:
        raise ValueError(f"unknown message role {value!r}")
    return role


def _text(value: Any) -> str | None:
    """Message content as text; content that is JSON text of a parts list is read as parts."""
    if isinstance(value, str) and value.startswith("[{"):
        try:
            parts = json.loads(value)
        except ValueError:
            return value
        if isinstance(parts, list) and all(isinstance(p, Mapping) for p in parts):
            return content_text(parts) or None
    if value is None or value == "":
        return None
    return content_text(value) if isinstance(value, list | str) else json_text(value)


def _result_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def message(obj: Any, default_role: str | None = None) -> Message:
    """A chat message from any of the shapes span formats carry: GenAI semconv
    ``{"role", "parts": [{"type": "text", "content"} | {"type": "tool_call", "id", "name",
    "arguments"} | {"type": "tool_call_response", "id", "response" | "result"}]}``, OpenAI chat
    ``{"role", "content", "tool_calls": [{"id", "function": {"name", "arguments"}}],
    "tool_call_id"}`` (also with ``name``/``arguments`` beside ``function``), or a
    ``gen_ai.choice`` body ``{"index", "finish_reason", "message": {...}, "tool_calls"}``.

    Raises:
        ValueError: not an object, an unknown role, or a tool call without a name.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"message is not an object: {truncate(obj, 80)}")
    if isinstance(obj.get("message"), Mapping):
        inner = dict(obj["message"])
        inner.setdefault("tool_calls", obj.get("tool_calls"))
        obj = inner
    role = _role(obj.get("role"), default_role)
    out = Message(role)
    if isinstance(obj.get("parts"), list):
        texts = []
        for part in obj["parts"]:
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind == "text" and part.get("content") is not None:
                texts.append(str(part["content"]))
            elif kind == "tool_call":
                if not part.get("name"):
                    raise ValueError("a tool_call part has no name")
                out.calls.append(ToolCall(part.get("id"), str(part["name"]), part.get("arguments")))
            elif kind == "tool_call_response":
                response = part.get("response", part.get("result"))
                out.results.append((part.get("id"), _result_text(response)))
        out.text = "\n".join(texts) or None
    else:
        out.text = _text(obj.get("content"))
        for number, call in enumerate(obj.get("tool_calls") or []):
            if not isinstance(call, Mapping):
                raise ValueError(f"tool call {number} is not an object")
            nested = call.get("function")
            function: Mapping[str, Any] = nested if isinstance(nested, Mapping) else call
            name = function.get("name")
            if not name:
                raise ValueError(f"tool call {number} has no name")
            out.calls.append(ToolCall(call.get("id"), str(name), function.get("arguments")))
        if role == "tool":
            call_id = obj.get("tool_call_id", obj.get("id"))
            out.results.append((None if call_id is None else str(call_id), out.text))
    if role == "tool" and not out.results:
        out.results.append((None, out.text))
    for call in out.calls:
        call.id = None if call.id is None else str(call.id).strip()
    out.results = [(None if i is None else str(i).strip(), t) for i, t in out.results]
    return out


def _split(messages: Iterable[Message]) -> Iterator[Message]:
    """Messages with one tool result each: a message answering several calls (or a user message
    carrying tool results) becomes one tool message per result, then its text."""
    for msg in messages:
        if not msg.results:
            yield msg
            continue
        for result in msg.results:
            yield Message("tool", result[1], results=[result])
        if msg.role != "tool" and msg.text:
            yield Message(msg.role, msg.text)


# --- steps --------------------------------------------------------------------------------------


class StepBuilder:
    """Builds the ``steps`` rows of one trajectory from its spans, in walk order.

    The history rule: an LLM call's input messages resend the conversation so far, so an input
    message becomes a step only if the trajectory does not hold it yet (compared by role, text
    and tool-call ids, counting repeats); every output message of an LLM call is new. A tool
    span answers the pending tool call with its id (or, without an id, the earliest unanswered
    call of the same tool), adding a ``tool_call`` step only when no LLM output requested it; a
    tool result that a later LLM call resends is then not repeated. A span in ``ERROR`` whose
    steps (its own and its descendants') hold no error adds an ``error`` step. ``actor`` (set by
    the adapter to the enclosing agent's name while it walks) goes on every non-user step, and is
    cleared again by :meth:`finish` unless the trajectory has more than one agent.
    """

    def __init__(self, trajectory_id: str) -> None:
        self.trajectory_id = trajectory_id
        self.steps: list[dict[str, Any]] = []
        self._seen: Counter[tuple[Any, ...]] = Counter()
        self._calls: dict[str, dict[str, Any]] = {}
        self._unanswered: list[dict[str, Any]] = []
        self._entered: dict[str, int] = {}
        self._anchors: dict[str, dict[str, Any] | None] = {}
        self.actor: str | None = None

    def _step(self, span: Span, role: str, step_type: str, **values: Any) -> dict[str, Any]:
        step = {
            "trajectory_id": self.trajectory_id,
            "role": role,
            "step_type": step_type,
            "content_text": None,
            "tool_name": None,
            "tool_call_id": None,
            "tool_args": None,
            "tool_result_text": None,
            "is_error": False,
            "error_message": None,
            "model": None,
            "input_tokens": None,
            "output_tokens": None,
            "started_at": span.started_at,
            "ended_at": span.started_at,
            "actor": None if role == "user" else self.actor,
        }
        step.update(values)
        self.steps.append(step)
        return step

    def enter(self, span: Span) -> None:
        """Mark the start of ``span``'s steps (call before adding them)."""
        self._entered[span.span_id] = len(self.steps)

    def exit(self, span: Span, error: str | None) -> None:
        """Close ``span``; ``error`` (its :func:`error_text`) adds an ``error`` step when none of
        the steps since :meth:`enter` is an error."""
        start = self._entered.get(span.span_id, len(self.steps))
        if error and not any(s["is_error"] for s in self.steps[start:]):
            self._step(
                span,
                "assistant",
                "error",
                content_text=error,
                is_error=True,
                error_message=error[:500],
                ended_at=span.ended_at,
            )

    def _answer(self, call: dict[str, Any] | None) -> None:
        self._unanswered = [c for c in self._unanswered if c is not call]

    def _add_message(self, msg: Message, span: Span, values: dict[str, Any]) -> list[dict]:
        if msg.role == "tool":
            call_id, text = msg.results[0] if msg.results else (None, msg.text)
            call = self._calls.get(call_id or "")
            self._answer(call)
            is_error = bool(text and _ERROR_TEXT.match(text))
            step = self._step(
                span,
                "tool",
                "tool_result",
                tool_name=call["tool_name"] if call else None,
                tool_call_id=call_id,
                tool_result_text=text,
                is_error=is_error,
                error_message=text.strip().splitlines()[0][:500] if is_error and text else None,
            )
            return [step]
        added = []
        if msg.role != "assistant" or msg.text or not msg.calls:
            added.append(self._step(span, msg.role, msg.role, content_text=msg.text, **values))
        for request in msg.calls:
            step = self._step(
                span,
                "assistant",
                "tool_call",
                tool_name=request.name,
                tool_call_id=request.id,
                tool_args=json_text(request.arguments),
                **values,
            )
            added.append(step)
            if request.id:
                self._calls[request.id] = step
            self._unanswered.append(step)
        return added

    def inputs(self, messages: Iterable[Message], span: Span) -> None:
        """Add the input messages of an LLM call that the trajectory does not hold yet."""
        used: Counter[tuple[Any, ...]] = Counter()
        for msg in _split(messages):
            key = msg.fingerprint()
            used[key] += 1
            if used[key] > self._seen[key]:
                self._seen[key] += 1
                self._add_message(msg, span, {})

    def outputs(
        self,
        messages: list[Message],
        span: Span,
        *,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        error: str | None,
    ) -> None:
        """Add an LLM call's output messages (the tokens go on its first step); without output
        messages, one ``assistant`` step with no text carries the model, tokens and error."""
        values = {"model": model, "ended_at": span.ended_at}
        added: list[dict[str, Any]] = []
        for msg in _split(messages):
            self._seen[msg.fingerprint()] += 1
            added.extend(self._add_message(msg, span, values))
        if not added:
            added.append(self._step(span, "assistant", "assistant", **values))
        added[0]["input_tokens"] = input_tokens
        added[0]["output_tokens"] = output_tokens
        if error:
            added[0]["is_error"] = True
            added[0]["error_message"] = error[:500]

    def tool_call(self, span: Span, name: str | None, call_id: str | None, arguments: Any) -> str:
        """The call a tool span executes: the pending one with ``call_id`` (or the earliest
        unanswered call of ``name``), else a new ``tool_call`` step. Returns the call's key for
        :meth:`tool_result`."""
        call = self._calls.get(call_id) if call_id else None
        if call is None and not call_id:
            call = next((c for c in self._unanswered if c["tool_name"] == name), None)
        if call is None:
            call = self._step(
                span,
                "assistant",
                "tool_call",
                tool_name=name,
                tool_call_id=call_id,
                tool_args=json_text(arguments),
            )
            if call_id:
                self._calls[call_id] = call
            self._unanswered.append(call)
        elif call["tool_args"] is None and arguments is not None:
            call["tool_args"] = json_text(arguments)
        if call["tool_name"] is None:
            call["tool_name"] = name
        key = call_id or call["tool_call_id"] or f"span:{span.span_id}"
        self._calls.setdefault(key, call)
        return key

    def tool_result(self, span: Span, key: str, result: Any, error: str | None) -> None:
        """The ``tool_result`` step of the call :meth:`tool_call` returned ``key`` for."""
        call = self._calls[key]
        self._answer(call)
        text = _result_text(result)
        self._step(
            span,
            "tool",
            "tool_result",
            tool_name=call["tool_name"],
            tool_call_id=call["tool_call_id"],
            tool_result_text=text,
            is_error=error is not None,
            error_message=error[:500] if error else None,
            ended_at=span.ended_at,
        )
        self._seen[("tool", call["tool_call_id"] or " ".join((text or "").split()))] += 1

    def ensure(self, step_type: str, text: str | None, span: Span) -> None:
        """Fallbacks from a root span's input and output. ``system``: a system step at the start
        when there is none with text; ``user``: a user step right after the leading system steps
        when the trajectory does not begin with one (a retrieval may precede the first LLM call);
        ``assistant``: a final answer at the end when no assistant step has text."""
        if not text:
            return
        position = 0
        while position < len(self.steps) and self.steps[position]["step_type"] == "system":
            position += 1
        if step_type == "user":
            at = self.steps[position] if position < len(self.steps) else None
            if at is not None and at["step_type"] == "user" and at["content_text"]:
                return
        elif any(s["step_type"] == step_type and s["content_text"] for s in self.steps):
            return
        step = self._step(span, step_type, step_type, content_text=text)
        self.steps.pop()
        if step_type == "assistant":
            step["started_at"] = step["ended_at"] = span.ended_at
            self.steps.append(step)
        else:
            self.steps.insert(0 if step_type == "system" else position, step)

    def mark_anchors(self) -> None:
        """Remember, for every span entered, the first step added at or after its start (call
        once all spans are walked, before :meth:`ensure`)."""
        for span_id, start in self._entered.items():
            self._anchors[span_id] = (
                self.steps[min(start, len(self.steps) - 1)] if self.steps else None
            )

    def finish(self) -> list[dict[str, Any]]:
        """The steps with dense ``step_idx`` 0.. (and no ``actor`` in a single-agent run)."""
        single = len({s["actor"] for s in self.steps if s["actor"]}) <= 1
        for idx, step in enumerate(self.steps):
            step["step_idx"] = idx
            if single:
                step["actor"] = None
        return self.steps

    def step_of(self, span_id: str) -> int | None:
        """The ``step_idx`` a feedback about span ``span_id`` attaches to (after :meth:`finish`):
        the first step at or after the span's start, ``None`` if there is none."""
        step = self._anchors.get(span_id)
        return None if step is None else step["step_idx"]

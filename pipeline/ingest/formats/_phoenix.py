"""Phoenix span exports and annotations, decoded for :mod:`~pipeline.ingest.formats.openinference`:
spans into the :class:`~pipeline.ingest.formats._otlp.Span` shape that OTLP spans are read into, with
their attributes flattened to OpenInference's dotted keys (:func:`flatten`), and annotations into
:class:`Annotation` and ``feedback`` rows.

Shapes (Arize Phoenix, https://github.com/Arize-ai/phoenix, REST API ``/v1/projects/{id}/spans``,
``/v1/span_annotations``, ``/v1/trace_annotations``; 2025): a span ``{"name", "context":
{"trace_id", "span_id"}, "span_kind", "parent_id", "start_time", "end_time", "status_code":
"OK"|"ERROR"|"UNSET", "status_message", "attributes": {dotted keys, or nested objects},
"events": [{"name", "timestamp", "attributes"}]}``, or the flattened row of
``px.Client().get_spans_dataframe()`` written with ``to_json(orient="records", lines=True)``
(``context.trace_id``, ``attributes.llm.input_messages``, ...); a REST page ``{"data": [...]}``;
an annotation ``{"span_id" | "trace_id", "name", "annotator_kind": "HUMAN"|"LLM"|"CODE",
"result": {"label", "score", "explanation"}, "metadata", "identifier"}`` (or its flattened
``result.label``-style columns). Attribute names follow the OpenInference semantic conventions
(https://github.com/Arize-ai/openinference/blob/main/spec/semantic_conventions.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.ingest.formats._common import feedback_row, parse_time
from pipeline.ingest.formats._jsontext import first_item, first_json_line, loads
from pipeline.ingest.formats._otlp import Event, Span, is_otlp_request

__all__ = [
    "SPAN_KIND",
    "Annotation",
    "annotation",
    "annotation_row",
    "first_export_record",
    "flatten",
    "is_annotation",
    "is_phoenix_span",
    "page_items",
    "phoenix_span",
]

SPAN_KIND = "openinference.span.kind"
# Attributes whose value is one whole (JSON) object, never spread into dotted keys.
_OPAQUE = frozenset(
    {
        "metadata",
        "input.value",
        "output.value",
        "tool.parameters",
        "tool.json_schema",
        "llm.invocation_parameters",
        "llm.prompt_template.variables",
        "embedding.invocation_parameters",
    }
)
_OPAQUE_SUFFIXES = (".metadata", "tool_call.function.arguments", "function_call_arguments_json")
_STATUS = {"STATUS_CODE_ERROR": "ERROR", "STATUS_CODE_OK": "OK", "STATUS_CODE_UNSET": "UNSET"}


def first_export_record(head: bytes) -> Any:
    """The first record of ``head``: its first JSON line, else the first item of a JSON array or
    of a ``{"data": [...]}`` page (parsed on its own, so a cut-off head still gives it)."""
    record = first_json_line(head)
    if record is None:
        record = first_item(head, None if head.lstrip()[:1] == b"[" else "data")
    if isinstance(record, list):
        record = record[0] if record else None
    if isinstance(record, Mapping) and isinstance(record.get("data"), list) and record["data"]:
        record = record["data"][0]
    return record


def _opaque(key: str) -> bool:
    return key in _OPAQUE or key.endswith(_OPAQUE_SUFFIXES)


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Attributes as one level of dotted keys, whatever the nesting they came in: nested objects
    and lists of objects are spread (``llm.input_messages.0.message.role``), lists of plain values
    and the whole-object attributes (``metadata``, ``input.value``, tool arguments...) are kept.
    Message lists recorded as JSON text are parsed first; null values are dropped."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if full in ("llm.input_messages", "llm.output_messages") and isinstance(item, str):
            with contextlib.suppress(ValueError):
                item = loads(item)
        if _opaque(full) or item is None:
            if item is not None:
                out[full] = item
        elif isinstance(item, Mapping):
            out.update(flatten(item, full))
        elif isinstance(item, list) and item and all(isinstance(i, Mapping) for i in item):
            for number, entry in enumerate(item):
                out.update(flatten(entry, f"{full}.{number}"))
        else:
            out[full] = item
    return out


def is_phoenix_span(obj: Any) -> bool:
    """True for a Phoenix span: a ``context`` object or a flattened ``context.span_id``."""
    return isinstance(obj, Mapping) and (
        isinstance(obj.get("context"), Mapping) or "context.span_id" in obj
    )


def is_annotation(obj: Any) -> bool:
    """True for a Phoenix annotation: ``annotator_kind``, or a ``result`` (object or flattened
    ``result.score`` / ``result.label``)."""
    return isinstance(obj, Mapping) and (
        "annotator_kind" in obj
        or isinstance(obj.get("result"), Mapping)
        or "result.score" in obj
        or "result.label" in obj
    )


def phoenix_span(obj: Mapping[str, Any], where: str, index: int) -> Span:
    """A Phoenix span as a :class:`~pipeline.ingest.formats._otlp.Span` (attributes and event
    attributes flattened, ``span_kind`` as ``openinference.span.kind``); ``index`` is its
    position among the file's spans.

    Raises:
        ValueError: no trace or span id, or ``attributes`` / an event that is not an object.
    """
    nested = obj.get("context")
    context: Mapping[str, Any] = nested if isinstance(nested, Mapping) else {}
    trace_id = context.get("trace_id") or obj.get("context.trace_id")
    span_id = context.get("span_id") or obj.get("context.span_id")
    if not trace_id:
        raise ValueError("span has no context.trace_id")
    if not span_id:
        raise ValueError("span has no context.span_id")
    raw_attributes = obj.get("attributes") or {}
    if isinstance(raw_attributes, str):
        raw_attributes = loads(raw_attributes)
    if not isinstance(raw_attributes, Mapping):
        raise ValueError("'attributes' is not an object")
    attributes = dict(raw_attributes)
    attributes.update({k[11:]: v for k, v in obj.items() if k.startswith("attributes.")})
    flat = flatten(attributes)
    if obj.get("span_kind") and SPAN_KIND not in flat:
        flat[SPAN_KIND] = obj["span_kind"]
    events = []
    for number, event in enumerate(obj.get("events") or []):
        if not isinstance(event, Mapping):
            raise ValueError(f"event {number} is not an object")
        event_attributes = event.get("attributes") or {}
        if isinstance(event_attributes, str):
            event_attributes = loads(event_attributes)
        if not isinstance(event_attributes, Mapping):
            raise ValueError(f"event {number}: 'attributes' is not an object")
        events.append(
            Event(
                str(event.get("name") or ""),
                parse_time(event.get("timestamp")),
                flatten(event_attributes),
            )
        )
    status = str(obj.get("status_code") or "UNSET").upper()
    parent = obj.get("parent_id")
    return Span(
        trace_id=str(trace_id),
        span_id=str(span_id),
        parent_id=None if parent in (None, "", "None") else str(parent),
        name=str(obj.get("name") or ""),
        started_at=parse_time(obj.get("start_time")),
        ended_at=parse_time(obj.get("end_time")),
        attributes=flat,
        events=events,
        status=_STATUS.get(status, status),
        status_message=obj.get("status_message") or None,
        index=index,
        where=where,
        raw=obj,
    )


@dataclass
class Annotation:
    """A Phoenix span or trace annotation."""

    where: str
    name: str
    trace_id: str | None
    span_id: str | None
    score: float | None
    label: str | None
    explanation: str | None
    annotator_kind: str | None
    raw: Any


def annotation(obj: Mapping[str, Any], where: str) -> Annotation:
    """A Phoenix annotation record as an :class:`Annotation`.

    Raises:
        ValueError: no ``name``, neither ``span_id`` nor ``trace_id``, a score that is not a
            number, or none of score, label and explanation.
    """
    nested = obj.get("result")
    result: Mapping[str, Any] = nested if isinstance(nested, Mapping) else {}

    def get(key: str) -> Any:
        value = result.get(key)
        return obj.get(f"result.{key}", obj.get(key)) if value is None else value

    name = obj.get("name") or obj.get("annotation_name")
    if not name:
        raise ValueError("annotation has no 'name'")
    trace_id = obj.get("trace_id") or obj.get("context.trace_id")
    span_id = obj.get("span_id") or obj.get("context.span_id")
    if not trace_id and not span_id:
        raise ValueError(f"annotation {name!r} has neither 'span_id' nor 'trace_id'")
    score = get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        raise ValueError(f"annotation {name!r}: score is not a number: {score!r}")
    label, explanation = get("label"), get("explanation")
    if score is None and label is None and explanation is None:
        raise ValueError(f"annotation {name!r} has no score, label or explanation")
    return Annotation(
        where,
        str(name),
        None if not trace_id else str(trace_id),
        None if not span_id else str(span_id),
        None if score is None else float(score),
        None if label is None else str(label),
        explanation,
        obj.get("annotator_kind"),
        obj,
    )


def annotation_row(trajectory_id: str, item: Annotation, step_idx: int | None) -> dict:
    """The ``feedback`` row of an annotation: the score as ``value`` (the label as
    ``value_text``), else the label; ``annotator_kind`` as ``source``, else ``phoenix``."""
    row = feedback_row(
        trajectory_id,
        item.name,
        item.score if item.score is not None else item.label,
        source=item.annotator_kind or "phoenix",
        comment=item.explanation,
        step_idx=step_idx,
    )
    if item.score is not None and item.label is not None:
        row["value_text"] = item.label
    return row


def page_items(where: str, obj: Any) -> Iterator[tuple[str, Any]]:
    """A record, or the items of a Phoenix REST page ``{"data": [...]}``."""
    if isinstance(obj, Mapping) and isinstance(obj.get("data"), list) and not is_otlp_request(obj):
        for number, item in enumerate(obj["data"]):
            yield f"{where} data[{number}]", item
    else:
        yield where, obj

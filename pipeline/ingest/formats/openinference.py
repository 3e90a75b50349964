"""OpenInference spans (Arize Phoenix) and Phoenix annotations.

Attributes follow the OpenInference semantic conventions
(https://github.com/Arize-ai/openinference/blob/main/spec/semantic_conventions.md, spec/traces.md,
spec/annotations.md; read from the main branch, 2025): ``openinference.span.kind`` (``LLM``,
``TOOL``, ``AGENT``, ``CHAIN``, ``RETRIEVER``, ``EMBEDDING``, ...),
``llm.input_messages.N.message.role`` / ``message.content`` / ``message.contents.K.
message_content.text`` / ``message.tool_calls.M.tool_call.id`` / ``tool_call.function.name`` /
``tool_call.function.arguments`` / ``message.tool_call_id``, ``llm.output_messages.N...``,
``llm.prompts.N.prompt.text`` / ``llm.choices.N.completion.text``, ``llm.model_name``,
``llm.token_count.prompt`` / ``completion``, ``llm.cost.total`` (USD), ``tool.name``,
``tool.parameters``, ``tool_call.id``, ``input.value`` / ``output.value`` (+ ``*.mime_type``),
``retrieval.documents.N.document.content``, ``session.id``, ``user.id``, ``agent.name``,
``metadata`` (JSON), ``tag.tags``, ``llm.prompt_template.version`` (the run's ``prompt_version``:
from the first span, in start-time order, that has it); ``exception`` events (``exception.type``,
``exception.message``); feedback as ``annotations.N.annotation.*`` /
``evaluations.N.evaluation.*`` (``name``, ``score``, ``label``, ``explanation``,
``annotator_kind``; ``trace.``-prefixed for the whole trace) and ``gen_ai.evaluation.result``
events.

The spans arrive in one of three containers:

- OTLP/JSON, as in :mod:`pipeline.ingest.formats.otel` (JSON Lines of ``{"resourceSpans": [...]}``,
  or one such document, or an array), or spans as the OpenTelemetry SDK's exporters write them
  (``ReadableSpan.to_json()``, see :mod:`pipeline.ingest.formats._otel_sdk_spans`); recognised
  by ``openinference.span.kind`` attributes;
- a Phoenix span export, JSON Lines or a JSON array (or a ``{"data": [...]}`` REST page), one
  span per record: ``{"name", "context": {"trace_id", "span_id"}, "span_kind", "parent_id",
  "start_time", "end_time", "status_code": "OK"|"ERROR"|"UNSET", "status_message",
  "attributes": {dotted keys, or nested objects}, "events": [{"name", "timestamp",
  "attributes"}]}`` (Phoenix REST ``/v1/projects/{id}/spans``), or the flattened rows of
  ``px.Client().get_spans_dataframe()`` written with ``to_json(orient="records", lines=True)``
  (``context.trace_id``, ``context.span_id``, ``attributes.llm.input_messages``: a list of
  ``{"message.role", "message.content"}``, ...).

Phoenix annotations (``{"span_id" | "trace_id", "name", "annotator_kind": "HUMAN"|"LLM"|"CODE",
"result": {"label", "score", "explanation"}, "metadata", "identifier"}``, Phoenix REST
``/v1/span_annotations`` and ``/v1/trace_annotations``; ``result.label``-style flattened columns
too) may sit in the span file or in a file of their own; there, each becomes a ``feedback`` row
keyed by its trace id (a span annotation without ``trace_id`` cannot be placed and is
quarantined). Phoenix exports and annotations are decoded by :mod:`pipeline.ingest.formats._phoenix`,
OTLP by :mod:`pipeline.ingest.formats._otlp`.

One trajectory per trace. LLM spans give the messages (history rule of
:class:`~pipeline.ingest.formats._span_steps.StepBuilder`), TOOL spans a ``tool_call`` (arguments from
``input.value``, else ``tool_call.function.arguments``, else ``tool.parameters``) and its
``tool_result`` (``output.value``); a RETRIEVER span outside a tool is a tool named after the
span. The root span's ``input.value`` / ``output.value`` fill in a missing task or final answer.
In a trace with several AGENT spans, each step's ``actor`` is its enclosing agent's
``agent.name`` (else the span name).
Annotations and evaluations are feedback: trajectory-level for trace annotations and for those on
a root span, else on the annotated span's first step; the outcome comes from them
(:func:`~pipeline.ingest.formats._common.outcome_from_feedback`), else it is ``unknown``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.ingest.formats._common import (
    FeedbackRows,
    Parsed,
    Quarantined,
    Record,
    content_text,
    feedback_row,
    finish_trajectory,
    json_text,
    outcome_from_feedback,
    truncate,
)
from pipeline.ingest.formats._io import TRACE_IDS, ReadOptions
from pipeline.ingest.formats._jsontext import loads
from pipeline.ingest.formats._otel_sdk_spans import (
    is_sdk_span,
    sdk_head,
    sdk_span,
    span_records,
    span_trace_id,
)
from pipeline.ingest.formats._otlp import (
    Span,
    decode_into,
    evaluation_feedback,
    failed_trace,
    first_value,
    group_by_trace,
    indexed,
    is_otlp_request,
    span_times,
    to_int,
    trace_where,
    walk,
)
from pipeline.ingest.formats._phoenix import (
    SPAN_KIND,
    Annotation,
    annotation,
    annotation_row,
    first_export_record,
    flatten,
    is_annotation,
    is_phoenix_span,
    page_items,
    phoenix_span,
)
from pipeline.ingest.formats._prompt_version import PROMPT_TEMPLATE_VERSION, span_prompt_version
from pipeline.ingest.formats._span_steps import Message, StepBuilder, add_span_steps, message

NAME = "openinference"

_MODEL_KEYS = ("llm.model_name", "llm.response.model_name", "llm.request.model_name")
_FEEDBACK_LISTS = (
    ("annotations", "annotation", False),
    ("evaluations", "evaluation", False),
    ("trace.annotations", "annotation", True),
    ("trace.evaluations", "evaluation", True),
)


def sniff(path: Path, head: bytes) -> bool:
    """True for OTLP/JSON or OpenTelemetry SDK span JSON
    (:func:`~pipeline.ingest.formats._otel_sdk_spans.sdk_head`) with ``openinference.span.kind``
    attributes, a Phoenix span export
    (first record with ``context`` / ``context.span_id`` and a ``span_kind`` or OpenInference
    kind attribute), or a Phoenix annotations file (first record with ``annotator_kind`` or a
    ``result`` object, and a ``span_id`` or ``trace_id``)."""
    if head.lstrip()[:1] not in (b"{", b"["):
        return False
    if b'"resourceSpans"' in head or b'"resource_spans"' in head:
        return b"openinference.span.kind" in head
    if sdk_head(head):
        return b"openinference.span.kind" in head
    record = first_export_record(head)
    if is_phoenix_span(record):
        attributes = record.get("attributes")
        return (
            "span_kind" in record
            or f"attributes.{SPAN_KIND}" in record
            or (isinstance(attributes, Mapping) and SPAN_KIND in flatten(attributes))
        )
    return is_annotation(record) and any(
        k in record for k in ("span_id", "trace_id", "context.span_id")
    )


# --- messages and steps -------------------------------------------------------------------------


def _message(item: Mapping[str, Any], what: str, default_role: str | None) -> Message:
    """An OpenInference message from its flattened keys (``message.role``...), or from the OpenAI
    shape a JSON-text message list may hold."""

    def get(key: str) -> Any:
        value = item.get(f"message.{key}")
        return item.get(key) if value is None else value

    content = get("content")
    if content is None:
        parts = indexed(item, "message.contents") or indexed(item, "contents")
        texts = [
            p.get("message_content.text", p.get("text"))
            for p in parts
            if p.get("message_content.type", p.get("type", "text")) == "text"
        ]
        content = "\n".join(str(t) for t in texts if t) or None
    calls = [
        {
            "id": c.get("tool_call.id", c.get("id")),
            "name": c.get("tool_call.function.name", c.get("function.name", c.get("name"))),
            "arguments": c.get(
                "tool_call.function.arguments", c.get("function.arguments", c.get("arguments"))
            ),
        }
        for c in indexed(item, "message.tool_calls") or indexed(item, "tool_calls")
    ]
    if get("function_call_name"):
        calls.append(
            {"name": get("function_call_name"), "arguments": get("function_call_arguments_json")}
        )
    obj = {
        "role": get("role"),
        "content": content,
        "tool_calls": calls,
        "tool_call_id": get("tool_call_id"),
    }
    try:
        return message(obj, default_role)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from exc


def _json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return loads(value)
        except ValueError:
            return value
    return value


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _inputs(span: Span) -> list[Message]:
    attrs = span.attributes
    items = indexed(attrs, "llm.input_messages")
    if items:
        return [_message(m, f"llm.input_messages.{n}", None) for n, m in enumerate(items)]
    prompts = indexed(attrs, "llm.prompts")
    if prompts:
        return [Message("user", _text(p.get("prompt.text", p.get("")))) for p in prompts]
    request = _json(attrs.get("input.value"))
    if isinstance(request, Mapping) and isinstance(request.get("messages"), list):
        return [message(m) for m in request["messages"]]
    return []


def _outputs(span: Span) -> list[Message]:
    attrs = span.attributes
    items = indexed(attrs, "llm.output_messages")
    if items:
        return [_message(m, f"llm.output_messages.{n}", "assistant") for n, m in enumerate(items)]
    choices = indexed(attrs, "llm.choices")
    if choices:
        return [Message("assistant", _text(c.get("completion.text", c.get("")))) for c in choices]
    response = _json(attrs.get("output.value"))
    if isinstance(response, Mapping):
        choice = (response.get("choices") or [None])[0]
        if isinstance(choice, Mapping) and isinstance(choice.get("message"), Mapping):
            return [message(choice["message"], "assistant")]
        if "content" in response:
            return [Message("assistant", content_text(response["content"]) or None)]
        return []
    return [Message("assistant", response)] if isinstance(response, str) and response else []


def _tool(span: Span) -> tuple[str | None, str | None, Any, Any]:
    """``(name, call id, arguments, result)`` of a TOOL (or RETRIEVER) span."""
    attrs = span.attributes
    call_id = attrs.get("tool_call.id") or attrs.get("tool.id") or attrs.get("tool.call_id")
    arguments = attrs.get("input.value")
    if arguments is None:
        arguments = attrs.get("tool_call.function.arguments", attrs.get("tool.parameters"))
    result = attrs.get("output.value")
    if result is None and attrs.get(SPAN_KIND) == "RETRIEVER":
        documents = [d.get("document.content") for d in indexed(attrs, "retrieval.documents")]
        result = "\n\n".join(str(d) for d in documents if d) or None
    name = attrs.get("tool.name") or span.name or None
    return (
        None if name is None else str(name),
        None if call_id in (None, "") else str(call_id).strip(),
        arguments,
        result,
    )


def _usage(span: Span) -> tuple[str | None, int | None, int | None]:
    """``(model, input tokens, output tokens)`` of an LLM span."""
    attrs = span.attributes
    return (
        first_value([span], *_MODEL_KEYS),
        to_int(attrs.get("llm.token_count.prompt")),
        to_int(attrs.get("llm.token_count.completion")),
    )


def _agent_name(span: Span) -> str | None:
    return first_value([span], "agent.name") or span.name or None


def _roles(order: list[tuple[str, Span]], kinds: Mapping[str, str]) -> dict[str, str]:
    """What :func:`~pipeline.ingest.formats._span_steps.add_span_steps` reads each span as: ``llm``
    (LLM), ``agent`` (AGENT), ``tool`` (TOOL, or a RETRIEVER that is not inside a TOOL span), else
    ``other``."""
    roles = {}
    in_tool = 0
    for phase, span in order:
        kind = kinds[span.span_id]
        if phase == "exit":
            in_tool -= kind == "TOOL"
            continue
        as_tool = kind == "TOOL" or (kind == "RETRIEVER" and not in_tool)
        roles[span.span_id] = {"LLM": "llm", "AGENT": "agent"}.get(
            kind, "tool" if as_tool else "other"
        )
        in_tool += kind == "TOOL"
    return roles


def _span_feedback(trace_id: str, span: Span, step_idx: int | None) -> list[dict[str, Any]]:
    """Feedback carried by a span: flattened annotations/evaluations and GenAI evaluation
    events."""
    rows = []
    for prefix, field, whole_trace in _FEEDBACK_LISTS:
        for item in indexed(span.attributes, prefix):
            name = item.get(f"{field}.name")
            if not name:
                continue
            score = item.get(f"{field}.score")
            label = item.get(f"{field}.label")
            row = feedback_row(
                trace_id,
                str(name),
                score if isinstance(score, int | float) else label,
                source=item.get(f"{field}.annotator_kind") or "openinference",
                comment=item.get(f"{field}.explanation"),
                step_idx=None if whole_trace else step_idx,
            )
            if isinstance(score, int | float) and label is not None:
                row["value_text"] = str(label)
            rows.append(row)
    return rows + evaluation_feedback(trace_id, span, step_idx)


def _record(
    trace_id: str, spans: list[Span], annotations: list[Annotation], options: ReadOptions
) -> Record:
    builder = StepBuilder(trace_id)
    order = walk(spans)
    entered = [span for phase, span in order if phase == "enter"]
    kinds = {s.span_id: str(s.attributes.get(SPAN_KIND) or "").upper() for s in entered}
    if not any(kind in ("LLM", "TOOL") for kind in kinds.values()):
        raise ValueError("no LLM or TOOL span (openinference.span.kind)")
    add_span_steps(
        builder,
        order,
        _roles(order, kinds),
        inputs=_inputs,
        outputs=_outputs,
        usage=_usage,
        tool=_tool,
        agent_name=_agent_name,
    )
    builder.mark_anchors()
    root = next(s for s in entered if s.depth == 0)
    if kinds[root.span_id] == "AGENT":
        builder.actor = _agent_name(root)
    builder.ensure("user", _text(root.attributes.get("input.value")), root)
    builder.ensure("assistant", _text(root.attributes.get("output.value")), root)
    steps = builder.finish()

    def step_of(span_id: str | None) -> int | None:
        span = by_id.get(span_id or "")
        return None if span is None or span.depth == 0 else builder.step_of(span.span_id)

    by_id = {s.span_id: s for s in entered}
    feedback = [row for s in entered for row in _span_feedback(trace_id, s, step_of(s.span_id))]
    feedback += [annotation_row(trace_id, a, step_of(a.span_id)) for a in annotations]
    label, score, source = outcome_from_feedback(
        feedback, options.reward_threshold, options.outcome_feedback
    )
    llm_spans = [s for s in entered if kinds[s.span_id] == "LLM"]
    agents = [s for s in entered if kinds[s.span_id] == "AGENT"]
    costs = [
        float(s.attributes["llm.cost.total"])
        for s in llm_spans
        if isinstance(s.attributes.get("llm.cost.total"), int | float)
    ]
    tags: list[str] = []
    for span in entered:
        value = _json(span.attributes.get("tag.tags"))
        for tag in value if isinstance(value, list) else []:
            if str(tag) not in tags:
                tags.append(str(tag))
    started_at, ended_at = span_times(spans)
    metadata = {
        "trace_id": trace_id,
        "root_span": root.name,
        "root_kind": kinds[root.span_id] or None,
        "metadata": _json(
            next((s.attributes["metadata"] for s in entered if s.attributes.get("metadata")), None)
        ),
        "tags": tags,
        "service": root.resource.get("service.name"),
        "project": root.resource.get("openinference.project.name"),
        "spans": len(spans),
    }
    trajectory = {
        "trajectory_id": trace_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        "agent_name": first_value(entered, "agent.name") or (agents[0].name if agents else None),
        "model": first_value(llm_spans, *_MODEL_KEYS),
        "session_id": first_value(entered, "session.id"),
        "user_id": first_value(entered, "user.id"),
        "started_at": started_at,
        "ended_at": ended_at,
        "outcome_label": label,
        "outcome_score": score,
        "outcome_source": source,
        "termination_reason": "error" if root.status == "ERROR" else None,
        "prompt_version": span_prompt_version(spans, (PROMPT_TEMPLATE_VERSION,)),
        "cost_usd": sum(costs) if costs else None,
        "metadata": json_text({k: v for k, v in metadata.items() if v not in (None, [], {})}),
    }
    return Record(
        finish_trajectory(trajectory, steps),
        steps,
        feedback,
        trace_where(trace_id, spans),
        len(spans) + len(annotations),
    )


# --- reading ------------------------------------------------------------------------------------


def _trace_of(obj: Any) -> tuple[str, ...]:
    """The trace id of a Phoenix or SDK span that could not be read, if it has one."""
    if is_sdk_span(obj):
        return span_trace_id(obj)
    if not isinstance(obj, Mapping):
        return ()
    context = obj.get("context")
    trace_id = context.get("trace_id") if isinstance(context, Mapping) else None
    trace_id = trace_id or obj.get("context.trace_id")
    return (str(trace_id),) if isinstance(trace_id, str | int) and trace_id != "" else ()


def read(path: Path, options: ReadOptions) -> Iterator[Parsed | FeedbackRows]:
    """Yield one :class:`Record` per trace of ``path`` (``records`` = its spans and
    annotations), :class:`FeedbackRows` for each annotation whose trace is not in the file, and a
    :class:`Quarantined` for every unreadable record and every trace that cannot be mapped.

    Raises:
        InputError: unreadable, or its first record is neither an OTLP request, a Phoenix span
            nor a Phoenix annotation.
    """
    spans: list[Span] = []
    annotations: list[Annotation] = []
    first = True
    for item in span_records(path, replace(options, trace_ids=TRACE_IDS)):
        if isinstance(item, Quarantined):
            yield item
            continue
        for where, obj in page_items(*item):
            known = is_otlp_request(obj) or is_phoenix_span(obj) or is_annotation(obj)
            if not known and first:
                raise InputError(
                    f"{path}: {where} is neither an OpenInference span (OTLP or Phoenix) nor a "
                    "Phoenix annotation"
                )
            first = False
            try:
                if is_otlp_request(obj):
                    yield from decode_into(obj, where, spans)
                elif is_sdk_span(obj):
                    spans.append(sdk_span(obj, where, len(spans)))
                elif is_phoenix_span(obj):
                    spans.append(phoenix_span(obj, where, len(spans)))
                elif is_annotation(obj):
                    annotations.append(annotation(obj, where))
                else:
                    yield Quarantined(
                        where,
                        "not an OpenInference span (no 'context' / 'resourceSpans') nor a "
                        "Phoenix annotation (no 'annotator_kind' / 'result')",
                        truncate(obj),
                    )
            except (ValueError, TypeError, AttributeError, OverflowError) as exc:
                yield Quarantined(
                    where, f"{where}: {exc}", truncate(obj), trajectory_ids=_trace_of(obj)
                )
    traces = group_by_trace(spans)
    trace_of = {s.span_id: s.trace_id for s in spans}
    attached: dict[str, list[Annotation]] = {}
    for note in annotations:
        trace_id = note.trace_id or trace_of.get(note.span_id or "")
        if trace_id in traces:
            attached.setdefault(trace_id, []).append(note)
        elif trace_id:
            yield FeedbackRows([annotation_row(trace_id, note, None)], note.where)
        else:
            yield Quarantined(
                note.where,
                f"annotation {note.name!r} of span {note.span_id}: the span is not in this file "
                "and the annotation has no trace_id, so its trajectory is unknown",
                truncate(note.raw),
            )
    for trace_id, trace_spans in traces.items():
        notes = attached.get(trace_id, [])
        try:
            yield _record(trace_id, trace_spans, notes, options)
        except (ValueError, TypeError, AttributeError) as exc:
            yield failed_trace(trace_id, trace_spans, exc, len(trace_spans) + len(notes))

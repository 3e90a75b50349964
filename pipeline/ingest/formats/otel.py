"""OpenTelemetry GenAI spans: OTLP/JSON, or span JSON as the SDK's exporters write it.

Containers: OTLP/JSON (https://opentelemetry.io/docs/specs/otel/protocol/file-exporter/, OTLP
1.x JSON encoding), JSON Lines of one ``ExportTraceServiceRequest`` per line
(``{"resourceSpans": [...]}``, see :mod:`pipeline.ingest.formats._otlp`), a single such JSON
document, or a JSON array of them; or spans without ``resourceSpans``, as opentelemetry-python's
``ReadableSpan.to_json()`` writes them (``ConsoleSpanExporter``: indented objects one after
another; or one per line, or a JSON array), and mozilla-ai/any-agent's ``AgentTrace``
``{"spans": [...]}`` (see :mod:`pipeline.ingest.formats._otel_sdk_spans`). Spans follow the
GenAI semantic conventions
(https://github.com/open-telemetry/semantic-conventions/tree/main/docs/gen-ai, v1.37+ with the
v1.36-and-earlier forms still emitted by instrumentations):

- ``gen_ai.operation.name``: ``chat`` / ``text_completion`` / ``generate_content`` (an LLM call),
  ``execute_tool`` (a tool execution), ``invoke_agent`` / ``create_agent`` (an agent),
  ``embeddings`` (ignored);
- LLM calls: ``gen_ai.system_instructions`` (``[{"type": "text", "content"}]``),
  ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (``[{"role", "parts": [{"type":
  "text", "content"} | {"type": "tool_call", "id", "name", "arguments"} | {"type":
  "tool_call_response", "id", "response"}], "finish_reason"}]``, structured or JSON text),
  ``gen_ai.request.model`` / ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
  ``output_tokens``; older forms: per-message span events ``gen_ai.system.message``,
  ``gen_ai.user.message``, ``gen_ai.assistant.message``, ``gen_ai.tool.message``,
  ``gen_ai.choice`` (body fields as event attributes or JSON in ``gen_ai.event.content``), and the
  OpenLLMetry attributes ``gen_ai.prompt.N.role/content/tool_call_id``,
  ``gen_ai.completion.N.role/content/tool_calls.M.id/name/arguments``,
  ``gen_ai.usage.prompt_tokens`` / ``completion_tokens`` (no ``gen_ai.operation.name``);
- tools: ``gen_ai.tool.name``, ``gen_ai.tool.call.id``, ``gen_ai.tool.call.arguments``,
  ``gen_ai.tool.call.result``; OpenLLMetry tool spans (``traceloop.span.kind = tool``,
  ``traceloop.entity.name/input/output``);
- any-agent's: ``gen_ai.operation.name`` ``call_llm`` (an LLM call), ``gen_ai.output`` (an LLM
  call's text, or its tool calls ``[{"tool.name", "tool.args"}]``; a tool's result),
  ``gen_ai.tool.args``, ``gen_ai.usage.input_cost`` / ``output_cost`` (USD, summed into
  ``cost_usd``);
- agents: ``gen_ai.agent.name``, ``gen_ai.agent.id``, ``gen_ai.conversation.id``;
- errors: span status ``ERROR`` (code 2 / ``STATUS_CODE_ERROR``) with its message,
  ``error.type``, the ``exception`` event (``exception.type``, ``exception.message``);
- scores: ``gen_ai.evaluation.result`` events (``gen_ai.evaluation.name``,
  ``gen_ai.evaluation.score.value``, ``gen_ai.evaluation.score.label``,
  ``gen_ai.evaluation.explanation``);
- the run's ``prompt_version``: a span attribute ``prompt_version`` or
  ``llm.prompt_template.version`` (the first span, in start-time order, that has one), else
  such a resource attribute (no semantic convention names one yet).

One trajectory per trace (``trajectory_id`` = the trace id, lower-case hex without ``0x``; a
trace may span several lines).
Steps follow the span tree (start time, parents first) with the history rule of
:class:`~pipeline.ingest.formats._span_steps.StepBuilder`: the first LLM call contributes its system
and user inputs, every LLM call its output messages (text, then one ``tool_call`` per requested
call), each ``execute_tool`` span the ``tool_result`` of the call it answers; messages an LLM
call resends are not repeated. The outermost agent span's instructions, input and output fill in a
missing system prompt, task or final answer. In a trace with several agents, each step's
``actor`` is the ``gen_ai.agent.name`` of its enclosing ``invoke_agent`` span. Evaluation
events are feedback (trajectory-level on a root span, else on the span's first step); the
outcome comes from them
(:func:`~pipeline.ingest.formats._common.outcome_from_feedback`), else it is ``unknown``. A trace with
no LLM or tool span is quarantined.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.ingest.formats._common import (
    Parsed,
    Quarantined,
    Record,
    finish_trajectory,
    json_text,
    outcome_from_feedback,
    truncate,
)
from pipeline.ingest.formats._io import TRACE_IDS, ReadOptions
from pipeline.ingest.formats._otel_sdk_spans import (
    agent_output,
    is_sdk_span,
    sdk_head,
    sdk_span,
    span_records,
    span_trace_id,
    tool_arguments,
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
    parse_json_value,
    span_times,
    to_int,
    trace_where,
    walk,
)
from pipeline.ingest.formats._prompt_version import PROMPT_TEMPLATE_VERSION, span_prompt_version
from pipeline.ingest.formats._span_steps import Message, StepBuilder, add_span_steps, message

NAME = "otel"

# call_llm: any-agent's LLM spans (see pipeline.ingest.formats._otel_sdk_spans)
_LLM_OPERATIONS = frozenset(
    {"chat", "text_completion", "generate_content", "completion", "call_llm"}
)
_AGENT_OPERATIONS = frozenset({"invoke_agent", "create_agent"})
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.prompt")
_PROMPT_VERSION_KEYS = ("prompt_version", PROMPT_TEMPLATE_VERSION)
# any-agent's cost attributes of an LLM span (USD)
_COST_KEYS = ("gen_ai.usage.input_cost", "gen_ai.usage.output_cost")


def sniff(path: Path, head: bytes) -> bool:
    """True for OTLP/JSON trace data (``resourceSpans``), SDK span JSON or an any-agent
    ``AgentTrace`` (:func:`~pipeline.ingest.formats._otel_sdk_spans.sdk_head`), without
    OpenInference attributes (those files are :mod:`~pipeline.ingest.formats.openinference`'s)."""
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start not in (b"{", b"[") or b"openinference.span.kind" in head:
        return False
    return b'"resourceSpans"' in head or b'"resource_spans"' in head or sdk_head(head)


def _kind(span: Span) -> str:
    attrs = span.attributes
    operation = attrs.get("gen_ai.operation.name")
    if operation == "execute_tool" or attrs.get("traceloop.span.kind") == "tool":
        return "tool"
    if operation in _AGENT_OPERATIONS:
        return "agent"
    if operation in _LLM_OPERATIONS:
        return "llm"
    if operation is None and (
        attrs.get("llm.request.type") in ("chat", "completion")
        or any(k in attrs for k in _CONTENT_KEYS)
        or any(k.startswith(("gen_ai.prompt.", "gen_ai.completion.")) for k in attrs)
        or any(e.name in _MESSAGE_EVENTS or e.name == "gen_ai.choice" for e in span.events)
    ):
        return "llm"
    return "other"


def _message_list(value: Any, what: str, default_role: str | None) -> list[Message]:
    value = parse_json_value(value, what)
    if not isinstance(value, list):
        raise ValueError(f"attribute {what} is not a list of messages")
    messages = []
    for number, item in enumerate(value):
        try:
            messages.append(message(item, default_role))
        except ValueError as exc:
            raise ValueError(f"{what}[{number}]: {exc}") from exc
    return messages


def _flat_message(item: Mapping[str, Any], what: str, default_role: str | None) -> Message:
    """An OpenLLMetry ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` message."""
    calls = [
        {"id": c.get("id"), "name": c.get("name"), "arguments": c.get("arguments")}
        for c in indexed(item, "tool_calls")
    ]
    if item.get("function_call.name"):
        calls.append(
            {"name": item["function_call.name"], "arguments": item.get("function_call.arguments")}
        )
    obj = {
        "role": item.get("role"),
        "content": item.get("content"),
        "tool_calls": calls,
        "tool_call_id": item.get("tool_call_id"),
    }
    try:
        return message(obj, default_role)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from exc


def _event_message(span: Span, number: int) -> Message:
    event = span.events[number]
    attrs = event.attributes
    what = f"event {event.name}"
    if "gen_ai.event.content" in attrs:
        body = parse_json_value(attrs["gen_ai.event.content"], f"{what} gen_ai.event.content")
    else:
        keys = ("content", "role", "tool_calls", "id", "tool_call_id", "message", "finish_reason")
        body = {k: attrs[k] for k in keys if k in attrs}
    body = dict(body) if isinstance(body, Mapping) else {"content": body}
    for key in ("message", "tool_calls"):
        if isinstance(body.get(key), str):
            try:
                body[key] = parse_json_value(body[key], key)
            except ValueError:
                if key == "message":
                    body[key] = {"content": body[key]}
    role = _MESSAGE_EVENTS.get(event.name)
    if role == "tool" and "tool_call_id" not in body and "id" in body:
        body["tool_call_id"] = body["id"]
    try:
        return message(body, role or "assistant")
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from exc


def _legacy_blob(value: Any, what: str, default_role: str) -> list[Message]:
    """``gen_ai.prompt`` / ``gen_ai.completion`` as one JSON text (a message list, a message or
    plain text)."""
    try:
        value = parse_json_value(value, what)
    except ValueError:
        return [Message(default_role, str(value))]
    if isinstance(value, list):
        return _message_list(value, what, default_role)
    if isinstance(value, Mapping):
        return [message(value, default_role)]
    return [Message(default_role, str(value))] if value else []


def _system(span: Span) -> list[Message]:
    value = span.attributes.get("gen_ai.system_instructions")
    if value is None:
        return []
    value = parse_json_value(value, "gen_ai.system_instructions")
    if isinstance(value, str):
        return [Message("system", value)]
    if not isinstance(value, list):
        raise ValueError("attribute gen_ai.system_instructions is not a list of parts")
    texts = [
        str(p.get("content"))
        for p in value
        if isinstance(p, Mapping) and p.get("type", "text") == "text" and p.get("content")
    ]
    return [Message("system", "\n".join(texts))] if texts else []


def _inputs(span: Span) -> list[Message]:
    attrs = span.attributes
    system = _system(span)
    if "gen_ai.input.messages" in attrs:
        return system + _message_list(attrs["gen_ai.input.messages"], "gen_ai.input.messages", None)
    prompts = indexed(attrs, "gen_ai.prompt")
    if prompts and not isinstance(attrs.get("gen_ai.prompt"), list):
        return system + [
            _flat_message(p, f"gen_ai.prompt.{n}", None) for n, p in enumerate(prompts)
        ]
    events = [n for n, e in enumerate(span.events) if e.name in _MESSAGE_EVENTS]
    if events:
        return system + [_event_message(span, n) for n in events]
    for event in span.events:
        if event.name == "gen_ai.content.prompt" and "gen_ai.prompt" in event.attributes:
            return system + _legacy_blob(event.attributes["gen_ai.prompt"], "gen_ai.prompt", "user")
    if "gen_ai.prompt" in attrs:
        return system + _legacy_blob(attrs["gen_ai.prompt"], "gen_ai.prompt", "user")
    return system


def _outputs(span: Span) -> list[Message]:
    attrs = span.attributes
    if "gen_ai.output.messages" in attrs:
        return _message_list(attrs["gen_ai.output.messages"], "gen_ai.output.messages", "assistant")
    completions = indexed(attrs, "gen_ai.completion")
    if completions and not isinstance(attrs.get("gen_ai.completion"), list):
        return [
            _flat_message(c, f"gen_ai.completion.{n}", "assistant")
            for n, c in enumerate(completions)
        ]
    choices = [n for n, e in enumerate(span.events) if e.name == "gen_ai.choice"]
    if choices:
        return [_event_message(span, n) for n in choices]
    for event in span.events:
        if event.name == "gen_ai.content.completion" and "gen_ai.completion" in event.attributes:
            return _legacy_blob(
                event.attributes["gen_ai.completion"], "gen_ai.completion", "assistant"
            )
    if "gen_ai.completion" in attrs:
        return _legacy_blob(attrs["gen_ai.completion"], "gen_ai.completion", "assistant")
    return agent_output(attrs.get("gen_ai.output"))


def _usage(span: Span) -> tuple[str | None, int | None, int | None]:
    """``(model, input tokens, output tokens)`` of an LLM span."""
    attrs = span.attributes
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
    prompt = attrs.get("gen_ai.usage.input_tokens", attrs.get("gen_ai.usage.prompt_tokens"))
    completion = attrs.get(
        "gen_ai.usage.output_tokens", attrs.get("gen_ai.usage.completion_tokens")
    )
    return None if model is None else str(model), to_int(prompt), to_int(completion)


def _tool(span: Span) -> tuple[str | None, str | None, Any, Any]:
    """``(name, call id, arguments, result)`` of a tool span."""
    attrs = span.attributes
    if "gen_ai.tool.name" not in attrs and attrs.get("traceloop.span.kind") == "tool":
        arguments = attrs.get("traceloop.entity.input")
        try:
            parsed = parse_json_value(arguments, "traceloop.entity.input")
        except ValueError:
            parsed = arguments
        if (
            isinstance(parsed, Mapping)
            and set(parsed) <= {"args", "kwargs"}
            and not parsed.get("args")
        ):
            arguments = parsed.get("kwargs") or {}
        name = attrs.get("traceloop.entity.name") or span.name
        return str(name), None, arguments, attrs.get("traceloop.entity.output")
    name = attrs.get("gen_ai.tool.name") or span.name.removeprefix("execute_tool").strip()
    call_id = attrs.get("gen_ai.tool.call.id")
    result = attrs.get("gen_ai.tool.call.result", attrs.get("gen_ai.output"))
    return (
        str(name) if name else None,
        str(call_id).strip() if call_id not in (None, "") else None,
        tool_arguments(attrs),
        result,
    )


def _agent_name(span: Span) -> str | None:
    name = span.attributes.get("gen_ai.agent.name")
    return str(name) if name else span.name.removeprefix("invoke_agent").strip() or None


def _fallbacks(builder: StepBuilder, agents: list[Span]) -> None:
    """The outermost agent span's system instructions, task and answer, where steps lack them."""
    if not agents:
        return
    top = min(agents, key=lambda s: s.depth)
    builder.actor = _agent_name(top)
    inputs = _inputs(top)
    for role in ("system", "user"):
        builder.ensure(role, next((m.text for m in inputs if m.role == role and m.text), None), top)
    answer = [m.text for m in _outputs(top) if m.role == "assistant" and m.text]
    builder.ensure("assistant", answer[-1] if answer else None, top)


def _record(trace_id: str, spans: list[Span], options: ReadOptions) -> Record:
    builder = StepBuilder(trace_id)
    order = walk(spans)
    entered = [span for phase, span in order if phase == "enter"]
    kinds = {span.span_id: _kind(span) for span in entered}
    if not any(kind in ("llm", "tool") for kind in kinds.values()):
        raise ValueError("no GenAI LLM or tool span (gen_ai.operation.name chat/execute_tool...)")
    add_span_steps(
        builder,
        order,
        kinds,
        inputs=_inputs,
        outputs=_outputs,
        usage=_usage,
        tool=_tool,
        agent_name=_agent_name,
    )
    builder.mark_anchors()
    _fallbacks(builder, [s for s in entered if kinds[s.span_id] == "agent"])
    steps = builder.finish()
    feedback = [
        row
        for span in entered
        for row in evaluation_feedback(
            trace_id, span, None if span.depth == 0 else builder.step_of(span.span_id)
        )
    ]
    label, score, source = outcome_from_feedback(
        feedback, options.reward_threshold, options.outcome_feedback
    )
    llm_spans = [s for s in entered if kinds[s.span_id] == "llm"]
    agents = [s for s in entered if kinds[s.span_id] == "agent"]
    roots = [s for s in entered if s.depth == 0]
    resource = roots[0].resource
    started_at, ended_at = span_times(spans)
    costs = [
        float(v)
        for s in llm_spans
        for k in _COST_KEYS
        if isinstance(v := s.attributes.get(k), int | float) and not isinstance(v, bool)
    ]
    model = first_value(llm_spans, "gen_ai.response.model", "gen_ai.request.model") or first_value(
        entered, "gen_ai.response.model", "gen_ai.request.model"
    )
    trajectory = {
        "trajectory_id": trace_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        "agent_name": first_value(agents, "gen_ai.agent.name")
        or first_value(entered, "gen_ai.agent.name"),
        "model": model,
        "session_id": first_value(entered, "gen_ai.conversation.id"),
        "user_id": first_value(entered, "user.id", "enduser.id"),
        "started_at": started_at,
        "ended_at": ended_at,
        "outcome_label": label,
        "outcome_score": score,
        "outcome_source": source,
        "termination_reason": "error" if any(s.status == "ERROR" for s in roots) else None,
        "prompt_version": span_prompt_version(spans, _PROMPT_VERSION_KEYS, resource=True),
        "cost_usd": sum(costs) if costs else None,
        "metadata": json_text(
            {
                k: v
                for k, v in {
                    "trace_id": trace_id,
                    "root_span": roots[0].name,
                    "provider": first_value(entered, "gen_ai.provider.name", "gen_ai.system"),
                    "agent_id": first_value(entered, "gen_ai.agent.id"),
                    "resource": {
                        k: v
                        for k, v in resource.items()
                        if k.startswith(("service.", "deployment."))
                    },
                    "scopes": sorted({s.scope for s in entered if s.scope}),
                    "spans": len(spans),
                }.items()
                if v not in (None, {}, [])
            }
        ),
    }
    return Record(
        finish_trajectory(trajectory, steps),
        steps,
        feedback,
        trace_where(trace_id, spans),
        len(spans),
    )


def read(path: Path, options: ReadOptions) -> Iterator[Parsed]:
    """Yield one :class:`Record` per trace of ``path`` (``records`` = its spans), and a
    :class:`Quarantined` for every unreadable line or span and every trace that cannot be mapped
    (with all its spans).

    Raises:
        InputError: unreadable, or its first record is neither an OTLP trace request nor an SDK
            span (nor an any-agent ``AgentTrace``).
    """
    spans: list[Span] = []
    first = True
    for item in span_records(path, replace(options, trace_ids=TRACE_IDS)):
        if isinstance(item, Quarantined):
            yield item
            continue
        where, obj = item
        if is_sdk_span(obj):
            first = False
            try:
                spans.append(sdk_span(obj, where, len(spans)))
            except (ValueError, TypeError, AttributeError, OverflowError) as exc:
                yield Quarantined(where, f"{where}: {exc}", truncate(obj), 1, span_trace_id(obj))
            continue
        if not is_otlp_request(obj):
            if first:
                raise InputError(
                    f"{path}: {where} is neither OTLP/JSON trace data (no 'resourceSpans' list) "
                    "nor an OpenTelemetry SDK span"
                )
            yield Quarantined(
                where, "not an OTLP trace request (no 'resourceSpans' list)", truncate(obj)
            )
            continue
        first = False
        yield from decode_into(obj, where, spans)
    for trace_id, trace_spans in group_by_trace(spans).items():
        try:
            yield _record(trace_id, trace_spans, options)
        except (ValueError, TypeError, AttributeError) as exc:
            yield failed_trace(trace_id, trace_spans, exc, len(trace_spans))

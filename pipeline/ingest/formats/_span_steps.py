"""The steps of a span trace: chat messages as span attributes and events carry them, read into
one shape (:class:`Message`), :class:`StepBuilder`, which turns a trace's LLM and tool spans
into ``steps`` rows without repeating the history every LLM call resends, and
:func:`add_span_steps`, which walks a trace's span tree into a builder. Used by
:mod:`~pipeline.ingest.formats.otel` and :mod:`~pipeline.ingest.formats.openinference`, over the
:class:`~pipeline.ingest.formats._otlp.Span` objects of :mod:`pipeline.ingest.formats._otlp`.

Message shapes read by :func:`message`: the GenAI semantic conventions' ``{"role", "parts":
[{"type": "text", "content"} | {"type": "tool_call", "id", "name", "arguments"} | {"type":
"tool_call_response", "id", "response"}]}``
(https://github.com/open-telemetry/semantic-conventions/tree/main/docs/gen-ai, v1.37+,
``gen_ai.input.messages`` / ``gen_ai.output.messages``), OpenAI chat messages
(https://platform.openai.com/docs/api-reference/chat/create: ``{"role", "content",
"tool_calls": [{"id", "function": {"name", "arguments"}}], "tool_call_id"}``) and the older
``gen_ai.choice`` event body (``{"index", "finish_reason", "message", "tool_calls"}``).

The adapters whose records are LLM calls with JSON inputs and outputs (Langfuse, LangSmith) read
their messages as OpenAI chat dicts with a different history rule: see
:mod:`pipeline.ingest.formats._messages`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.ingest.formats._common import (
    ERROR_TEXT,
    content_text,
    finish_steps,
    json_text,
    truncate,
)
from pipeline.ingest.formats._jsontext import loads
from pipeline.ingest.formats._otlp import Span, error_text

__all__ = ["Message", "StepBuilder", "ToolCall", "add_span_steps", "message"]


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
            parts = loads(value)
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
    span answers the pending tool call with its id (else the earliest unanswered call of the
    same tool that has no other id), adding a ``tool_call`` step only when no LLM output
    requested it; a tool result that a later LLM call resends is then not repeated. A span in
    ``ERROR`` whose steps (its own and its descendants') hold no error adds an ``error`` step.
    ``actor`` (set by the adapter to the enclosing agent's name while it walks) goes on every
    non-user step, and is cleared again by :meth:`finish` unless the trajectory has more than
    one agent.
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
            is_error = bool(text and ERROR_TEXT.match(text))
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
        """The call a tool span executes: the pending one with ``call_id``, else the earliest
        unanswered call of ``name`` (one requested without an id, when the span has an id: the
        span's id then becomes the call's), else a new ``tool_call`` step. Returns the call's
        key for :meth:`tool_result`."""
        call = self._calls.get(call_id) if call_id else None
        if call is None:
            call = next(
                (
                    c
                    for c in self._unanswered
                    if c["tool_name"] == name and not (call_id and c["tool_call_id"])
                ),
                None,
            )
            if call is not None and call_id:
                call["tool_call_id"] = call_id
                self._calls[call_id] = call
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
        return finish_steps(self.steps)

    def step_of(self, span_id: str) -> int | None:
        """The ``step_idx`` a feedback about span ``span_id`` attaches to (after :meth:`finish`):
        the first step at or after the span's start, ``None`` if there is none."""
        step = self._anchors.get(span_id)
        return None if step is None else step["step_idx"]


def add_span_steps(
    builder: StepBuilder,
    order: list[tuple[str, Span]],
    kinds: Mapping[str, str],
    *,
    inputs: Callable[[Span], list[Message]],
    outputs: Callable[[Span], list[Message]],
    usage: Callable[[Span], tuple[str | None, int | None, int | None]],
    tool: Callable[[Span], tuple[str | None, str | None, Any, Any]],
    agent_name: Callable[[Span], str | None],
) -> None:
    """Add the steps of a trace's spans, in :func:`~pipeline.ingest.formats._otlp.walk` ``order``, to
    ``builder``. ``kinds`` maps each span id to what the adapter reads the span as:

    - ``llm``: its ``inputs`` messages on entry, its ``outputs`` on exit with the ``usage``
      ``(model, input tokens, output tokens)``;
    - ``tool``: on entry the ``tool_call`` of ``tool``'s ``(name, call id, arguments,
      result)``, on exit the result;
    - ``agent``: ``builder.actor`` is its ``agent_name`` until it exits;
    - anything else: structure only.

    Every span in ``ERROR`` gives its :func:`~pipeline.ingest.formats._otlp.error_text` to its steps
    (:meth:`StepBuilder.exit`).

    Raises:
        ValueError: a span cannot be read (the message names the span's id and name).
    """
    tools: dict[str, tuple[str, Any]] = {}
    actors: list[str | None] = []
    for phase, span in order:
        kind = kinds[span.span_id]
        try:
            if phase == "enter":
                builder.enter(span)
                if kind == "agent":
                    actors.append(builder.actor)
                    builder.actor = agent_name(span)
                if kind == "llm":
                    builder.inputs(inputs(span), span)
                elif kind == "tool":
                    name, call_id, arguments, result = tool(span)
                    tools[span.span_id] = (
                        builder.tool_call(span, name, call_id, arguments),
                        result,
                    )
                continue
            error = error_text(span)
            if kind == "llm":
                messages = outputs(span)
                model, input_tokens, output_tokens = usage(span)
                builder.outputs(
                    messages,
                    span,
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    error=error,
                )
            elif kind == "tool":
                key, result = tools[span.span_id]
                builder.tool_result(span, key, result, error)
            builder.exit(span, error)
            if kind == "agent":
                builder.actor = actors.pop()
        except ValueError as exc:
            raise ValueError(f"span {span.span_id} ({span.name}): {exc}") from exc

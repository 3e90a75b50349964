"""What each OpenAI Agents SDK span contributes to a trajectory's steps:
:class:`AgentsStepBuilder` takes a trace's ``generation``, ``response``, ``function``,
``handoff`` and ``guardrail`` spans in start order and builds the ``steps`` rows (the mapping is
described in :mod:`pipeline.ingest.formats.openai_agents`).

Span data as in the tracing module of openai/openai-agents-python v0.17.3
(``src/agents/tracing/span_data.py``): ``generation`` (``input`` / ``output``: chat messages,
``model``, ``usage``: {``input_tokens``, ``output_tokens``}), ``response`` (the JS SDK's
``_input`` / ``_response``: Responses items and a ``Response``), ``function`` (``name``,
``input``, ``output``), ``handoff`` (``from_agent``, ``to_agent``), ``guardrail`` (``name``,
``triggered``); a span's ``error`` is ``{"message", "data"}``. Chat messages become rows through
:func:`~pipeline.ingest.formats._common.chat_steps`, Responses items through
:func:`~pipeline.ingest.formats._responses_items.item_steps`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pipeline.ingest.formats._common import (
    chat_steps,
    content_text,
    finish_steps,
    json_text,
    parse_time,
)
from pipeline.ingest.formats._responses_items import item_steps

__all__ = ["AgentsStepBuilder", "span_error", "usage_tokens"]


def usage_tokens(usage: Any) -> tuple[int | None, int | None]:
    """``(input_tokens, output_tokens)`` of a span's ``usage`` (``None`` where not a number)."""
    if not isinstance(usage, Mapping):
        return None, None
    values = [usage.get("input_tokens"), usage.get("output_tokens")]
    return tuple(  # type: ignore[return-value]
        int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values
    )


def _handoff_tool_name(agent: str) -> str:
    """The default handoff tool name of the SDK: ``transfer_to_`` + the agent name in
    function style (``transform_string_function_style``)."""
    return "transfer_to_" + re.sub(r"[^a-zA-Z0-9_]", "_", re.sub(r"\s", "_", agent)).lower()


def span_error(error: Any) -> str | None:
    """A span's ``error`` as text: ``message``, with ``data.error`` appended (``Error running
    tool (non-fatal): <exception>``); ``None`` without an error."""
    if not error:
        return None
    if not isinstance(error, Mapping):
        return str(error)
    message = str(error.get("message") or "error")
    data = error.get("data")
    detail = data.get("error") if isinstance(data, Mapping) else None
    return f"{message}: {detail}" if detail else message


def _times(span: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """A span's ``started_at`` and ``ended_at``."""
    return parse_time(span.get("started_at")), parse_time(span.get("ended_at"))


class AgentsStepBuilder:
    """Steps of one trace, built span by span in start order. ``actor`` (set by the adapter to
    the span's enclosing agent before each span) goes on every non-user step, and is cleared
    again by :meth:`finish` unless the trace has more than one agent."""

    def __init__(self, trajectory_id: str) -> None:
        self.trajectory_id = trajectory_id
        self.steps: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []  # tool_call steps not yet matched to a span
        self.seen: Counter[tuple[Any, Any]] = Counter()
        self.messages_taken = False
        self.model: str | None = None
        self.tokens: list[tuple[int | None, int | None]] = []
        self.actor: str | None = None

    def add(self, start: datetime | None, end: datetime | None, **columns: Any) -> None:
        """Append a step with the given columns and times (and the current ``actor``)."""
        actor = None if columns.get("role") == "user" else self.actor
        self.steps.append(
            {"trajectory_id": self.trajectory_id, "is_error": False, "actor": actor}
            | columns
            | {"started_at": start, "ended_at": end}
        )

    def _add_span(self, span: Mapping[str, Any], **columns: Any) -> None:
        """Append a step from ``span``'s start to its end, an error when the span has one."""
        error = span_error(span.get("error"))
        self.add(*_times(span), **columns, is_error=error is not None, error_message=error)

    def finish(self) -> list[dict[str, Any]]:
        """The steps with dense ``step_idx`` 0.. (and no ``actor`` in a single-agent trace)."""
        return finish_steps(self.steps)

    def _new_messages(self, messages: list[Any]) -> list[Any]:
        """The input messages not already in the trajectory (see the module docstring)."""
        local: Counter[tuple[Any, Any]] = Counter()
        new = []
        for message in messages:
            if not isinstance(message, Mapping):
                raise ValueError("an input message is not an object")
            key = (message.get("role"), content_text(message.get("content")))
            local[key] += 1
            if not self.messages_taken or (
                key[0] in ("system", "developer", "user") and local[key] > self.seen[key]
            ):
                new.append(message)
        for key, count in local.items():
            self.seen[key] = max(self.seen[key], count)
        self.messages_taken = self.messages_taken or bool(messages)
        return new

    def _message_steps(self, messages: list[Any], model: str | None) -> list[dict[str, Any]]:
        """Steps of chat messages and Responses items / ``Response`` objects, in order."""
        steps: list[dict[str, Any]] = []
        chat: list[Any] = []

        def flush() -> None:
            steps.extend(chat_steps(self.trajectory_id, chat, model=model))
            chat.clear()

        for message in messages:
            if isinstance(message, Mapping) and message.get("object") == "response":
                flush()
                steps.extend(
                    item_steps(self.trajectory_id, message.get("output") or [], model=model)
                )
            elif isinstance(message, Mapping) and "type" in message and "role" not in message:
                flush()
                steps.extend(item_steps(self.trajectory_id, [message], model=model))
            else:
                chat.append(message)
        flush()
        for step in steps:
            step.pop("step_idx", None)
        return steps

    def model_call(
        self,
        span: Mapping[str, Any],
        inputs: Any,
        outputs: Any,
        model: Any,
        usage: Any,
    ) -> None:
        """A generation (or a response span with ``_input``/``_response``)."""
        start, end = _times(span)
        model = None if model is None else str(model)
        self.model = self.model or model
        if isinstance(inputs, str):
            inputs = [{"role": "user", "content": inputs}]
        for name, value in (("input", inputs), ("output", outputs)):
            if value is not None and not isinstance(value, list):
                raise ValueError(f"{name} is not a list")
        for step in self._message_steps(self._new_messages(inputs or []), None):
            self.add(start, start, **step)
        produced = self._message_steps(outputs or [], model)
        tokens = usage_tokens(usage)
        self.tokens.append(tokens)
        if produced:
            produced[0]["input_tokens"], produced[0]["output_tokens"] = tokens
        for step in produced:
            self.add(start, end, **step)
            if step["step_type"] == "tool_call":
                self.pending.append(self.steps[-1])

    def _claim(self, name: str | None) -> dict[str, Any] | None:
        for number, step in enumerate(self.pending):
            if step.get("tool_name") == name:
                return self.pending.pop(number)
        return None

    def function(self, span: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        """A ``function`` span: its ``tool_call`` (unless a generation emitted it) and
        ``tool_result``."""
        name = data.get("name")
        name = None if name is None else str(name)
        call = self._claim(name)
        call_id = call.get("tool_call_id") if call else None
        call_id = call_id or (None if span.get("id") is None else str(span["id"]))
        if call is None:
            start = parse_time(span.get("started_at"))
            self.add(
                start,
                start,
                role="assistant",
                step_type="tool_call",
                tool_name=name,
                tool_call_id=call_id,
                tool_args=json_text(data.get("input")),
            )
        output = data.get("output")
        self._add_span(
            span,
            role="tool",
            step_type="tool_result",
            tool_name=name,
            tool_call_id=call_id,
            tool_result_text=None if output is None else str(output),
        )

    def handoff(self, span: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        """A ``handoff`` span: a ``handoff`` step naming ``to_agent``, with the call id of the
        model's ``transfer_to_<agent>`` call."""
        source, target = data.get("from_agent"), data.get("to_agent")
        call = self._claim(_handoff_tool_name(str(target))) if target else None
        self._add_span(
            span,
            role="assistant",
            step_type="handoff",
            content_text=f"handoff from {source} to {target}",
            tool_name=None if target is None else str(target),
            tool_call_id=call.get("tool_call_id") if call else None,
        )

    def guardrail(self, span: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        """A ``guardrail`` span: an error step when it was triggered, else nothing."""
        if not data.get("triggered"):
            return
        name = str(data.get("name"))
        self.add(
            *_times(span),
            role="system",
            step_type="guardrail",
            content_text=f"guardrail {name} triggered",
            tool_name=name,
            is_error=True,
            error_message=f"guardrail tripwire triggered: {name}",
        )

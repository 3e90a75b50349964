"""Chat messages as LLM-call records carry them, and :class:`Conversation`, which turns a trace's
LLM calls and tool calls into ``steps`` rows without repeating the history each call resends.

Used by the adapters whose records are LLM calls and tool calls with JSON inputs and outputs:
:mod:`~pipeline.ingest.formats.langfuse` (generations and tool observations) and
:mod:`~pipeline.ingest.formats.langsmith` (llm and tool runs).

Message shapes read by :func:`chat_message`: OpenAI chat messages
(https://platform.openai.com/docs/api-reference/chat/create, ``messages``: ``{"role",
"content", "tool_calls": [{"id", "function": {"name", "arguments"}}], "tool_call_id"}``, and the
legacy ``function_call``), LangChain message dicts (``langchain_core.messages``, langchain-core
0.3: ``{"type": "human" | "ai" | "system" | "tool", "content", "tool_calls": [{"name", "args",
"id"}], "additional_kwargs", "usage_metadata", "status"}``) and their ``dumpd`` form
(``langchain_core/load/dump.py``: ``{"lc": 1, "type": "constructor", "id": [..., "AIMessage"],
"kwargs": {...}}``); :func:`output_messages` also reads an OpenAI chat completion
(``choices[0].message``). GenAI parts messages, OpenAI Responses items and ``Response`` objects
are read too (:mod:`~pipeline.ingest.formats._framework_messages`), and LangChain tool
definitions sent as ``tool`` messages are dropped. Messages become rows through
:func:`~pipeline.ingest.formats._common.chat_steps`.

The span-based adapters (OTel GenAI, OpenInference) read their messages into a different shape
with a different history rule: see :mod:`pipeline.ingest.formats._span_steps`.
"""

from __future__ import annotations

import ast
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pipeline.ingest.formats._common import chat_steps, content_text, finish_steps, json_text
from pipeline.ingest.formats._framework_messages import framework_messages, is_tool_definition
from pipeline.ingest.formats._jsontext import loads

__all__ = [
    "Conversation",
    "chat_message",
    "chat_messages",
    "first_line",
    "maybe_json",
    "number",
    "output_messages",
    "python_or_json",
    "text_of",
]


def maybe_json(value: Any) -> Any:
    """``value`` parsed when it is a string holding a JSON object or array (exports often store
    inputs and outputs as JSON text); anything else unchanged."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return loads(value)
        except ValueError:
            return value
    return value


def python_or_json(value: Any) -> Any:
    """A string holding a JSON object or array parsed, else one holding a Python literal
    (LangChain records tool inputs as ``str(dict)``: ``"{'city': 'Paris'}"``), else unchanged."""
    parsed = maybe_json(value)
    if isinstance(parsed, str) and parsed.lstrip()[:1] in ("{", "["):
        try:
            literal = ast.literal_eval(parsed.strip())
            json.dumps(literal)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return parsed
        return literal
    return parsed


def text_of(value: Any) -> str | None:
    """A payload as text: strings unchanged, other values as JSON, ``None`` stays ``None``."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


_ROLES = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
    "developer": "developer",
    "tool": "tool",
    "function": "function",
}
# LangChain message classes (``langchain_core.messages``) as serialized by ``dumpd``:
# ``{"lc": 1, "type": "constructor", "id": [..., "AIMessage"], "kwargs": {...}}``.
_LANGCHAIN_CLASSES = {
    "HumanMessage": "human",
    "HumanMessageChunk": "human",
    "AIMessage": "ai",
    "AIMessageChunk": "ai",
    "SystemMessage": "system",
    "SystemMessageChunk": "system",
    "ToolMessage": "tool",
    "ToolMessageChunk": "tool",
    "FunctionMessage": "function",
    "FunctionMessageChunk": "function",
}


def _tool_calls(message: Mapping[str, Any]) -> list[Any]:
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        return [
            {"id": c.get("id"), "name": c.get("name"), "arguments": c.get("args")}
            if isinstance(c, Mapping) and "function" not in c and "args" in c
            else c
            for c in calls
        ]
    extra = message.get("additional_kwargs")
    extra = extra if isinstance(extra, Mapping) else {}
    if isinstance(extra.get("tool_calls"), list) and extra["tool_calls"]:
        return list(extra["tool_calls"])
    function_call = message.get("function_call") or extra.get("function_call")
    if isinstance(function_call, Mapping):
        return [{"id": None, **function_call}]
    return []


def chat_message(value: Any) -> dict[str, Any] | None:
    """One chat message as an OpenAI chat message dict, or ``None`` if ``value`` is not one.

    Accepted: OpenAI messages (``role``, ``content``, ``tool_calls``, ``tool_call_id``), LangChain
    message dicts (``type``: human/ai/system/tool, ``content``, ``tool_calls: [{"name", "args",
    "id"}]``, ``additional_kwargs.tool_calls``, ``usage_metadata``, ``status``) and their ``dumpd``
    form (``{"lc": 1, "id": [..., "AIMessage"], "kwargs": {...}}``).
    """
    if not isinstance(value, Mapping):
        return None
    if value.get("lc") == 1 and isinstance(value.get("kwargs"), Mapping):
        ids = value.get("id")
        kind = _LANGCHAIN_CLASSES.get(str(ids[-1])) if isinstance(ids, list) and ids else None
        value = {"type": kind, **value["kwargs"]}
    role = value.get("role")
    if not isinstance(role, str) or not role:
        role = value.get("type")
    if not isinstance(role, str) or role.lower() not in _ROLES:
        return None
    message: dict[str, Any] = {"role": _ROLES[role.lower()], "content": value.get("content")}
    for key in ("name", "tool_call_id", "timestamp"):
        if value.get(key) is not None:
            message[key] = value[key]
    calls = _tool_calls(value)
    if calls:
        message["tool_calls"] = calls
    usage = value.get("usage_metadata") or value.get("usage")
    if isinstance(usage, Mapping):
        message["usage"] = usage
    if message["role"] == "tool" and value.get("status") in ("success", "error"):
        message["error"] = value["status"] == "error"
    return message


def chat_messages(value: Any) -> list[dict[str, Any]] | None:
    """A list of chat messages (see :func:`chat_message`) from a message list, a LangChain batch
    (``[[...]]``, first batch), an object with ``messages``, or one message (GenAI parts messages,
    Responses items and a ``Response`` object included, see
    :func:`~pipeline.ingest.formats._framework_messages.framework_messages`); ``None`` when
    ``value`` is none of these (a prompt string, arbitrary JSON)."""
    value = maybe_json(value)
    found = framework_messages(value)
    if found is not None:
        return found
    if isinstance(value, Mapping):
        if "messages" not in value:
            message = chat_message(value)
            return [message] if message is not None else None
        value = value["messages"]
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        value = value[0]
    if not isinstance(value, list) or not value:
        return None
    found = framework_messages(value)
    if found is not None:
        return found
    messages = [chat_message(v) for v in value if not is_tool_definition(v)]
    return [m for m in messages if m is not None] if all(messages) else None


def output_messages(value: Any) -> list[dict[str, Any]]:
    """The messages an LLM call answered with: chat messages (:func:`chat_messages`), an OpenAI
    chat completion (``choices[0].message``), GenAI parts messages, a Responses ``Response``, a
    string, or other JSON as assistant text."""
    value = maybe_json(value)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    found = framework_messages(value)
    if found is not None:
        return found
    if isinstance(value, Mapping) and isinstance(value.get("choices"), list) and value["choices"]:
        choice = value["choices"][0]
        if isinstance(choice, Mapping):
            message = chat_message(choice.get("message"))
            if message is not None:
                return [message]
            if isinstance(choice.get("text"), str):
                return [{"role": "assistant", "content": choice["text"]}]
    messages = chat_messages(value)
    if messages is not None:
        return messages
    if isinstance(value, Mapping) and isinstance(value.get("content"), str | list):
        return [{"role": "assistant", "content": value["content"]}]
    return [{"role": "assistant", "content": text_of(value)}]


def _fingerprint(message: Mapping[str, Any]) -> tuple[Any, ...]:
    calls = []
    for call in message.get("tool_calls") or []:
        if isinstance(call, Mapping):
            function = call.get("function")
            part = function if isinstance(function, Mapping) else call
            calls.append((part.get("name"), json_text(part.get("arguments"))))
    text = (content_text(message.get("content")) or "").strip() or None
    call_id = message.get("tool_call_id")
    return message.get("role"), text, None if call_id is None else str(call_id), tuple(calls)


class Conversation:
    """The steps of one trajectory, assembled from LLM-call and tool-call spans in time order.

    An LLM call's input repeats the conversation so far: :meth:`add_input` keeps only messages not
    yet in the steps (counting repeats, so a user saying "yes" twice stays twice), drops assistant
    messages once an output has been added (they echo outputs) and tool messages whose result is
    already in. :meth:`add_tool` pairs a tool span with the pending ``tool_call`` of the same id,
    else of the same name, else adds the ``tool_call`` step itself. ``actor`` (set by the adapter
    to the agent of the record it adds next) goes on every non-user step; :meth:`finish` keeps it
    only when the steps name more than one agent.
    """

    def __init__(self, trajectory_id: str) -> None:
        self.trajectory_id = trajectory_id
        self.steps: list[dict[str, Any]] = []
        self._known: Counter[tuple[Any, ...]] = Counter()
        self._pending: dict[str, str] = {}  # tool call key -> tool name, calls awaiting a result
        self._resolved: set[str] = set()
        self._answered = False
        self._anonymous = 0  # numbers the keys of tool calls without an id
        self.actor: str | None = None
        self._tagged = 0  # the steps before this index have their actor

    def _tag(self) -> None:
        """Give the steps added since the last call the current ``actor`` (not user steps)."""
        for step in self.steps[self._tagged :]:
            if self.actor is not None and step["role"] != "user":
                step["actor"] = self.actor
        self._tagged = len(self.steps)

    def pending(self, name: Any) -> bool:
        """True when a tool call to ``name`` still waits for its result."""
        return isinstance(name, str) and name in self._pending.values()

    def _append(
        self,
        messages: list[dict[str, Any]],
        model: str | None,
        started: datetime | None,
        ended: datetime | None,
    ) -> list[dict[str, Any]]:
        new = chat_steps(self.trajectory_id, messages, model=model)
        for message in messages:
            self._known[_fingerprint(message)] += 1
        for step in new:
            if step.get("started_at") is None:
                step["started_at"], step["ended_at"] = started, ended
            call_id = step.get("tool_call_id")
            if step["step_type"] == "tool_call":
                self._anonymous += 1
                self._pending[call_id or f"\0{self._anonymous}"] = step["tool_name"]
            elif step["step_type"] == "tool_result" and call_id:
                self._resolved.add(call_id)
                self._pending.pop(call_id, None)
        self.steps.extend(new)
        self._tag()
        return new

    def add_input(
        self, messages: Iterable[dict[str, Any]], stamp: datetime | None, model: str | None = None
    ) -> None:
        """Add the messages of an LLM call's input that the trajectory does not have yet.

        Raises:
            ValueError: a message cannot be mapped (see :func:`~pipeline.ingest.formats._common.chat_steps`).
        """
        seen: Counter[tuple[Any, ...]] = Counter()
        fresh = []
        for message in messages:
            key = _fingerprint(message)
            seen[key] += 1
            if seen[key] <= self._known[key]:
                continue
            role = message.get("role")
            if role == "assistant" and self._answered:
                continue
            if role in ("tool", "function"):
                call_id = message.get("tool_call_id")
                call_id = None if call_id is None else str(call_id)
                if call_id in self._resolved:
                    continue
                if not message.get("name") and call_id in self._pending:
                    message = {**message, "name": self._pending[call_id]}
            fresh.append(message)
        self._append(fresh, model, stamp, stamp)

    def add_output(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        started: datetime | None,
        ended: datetime | None,
        error: str | None = None,
    ) -> None:
        """Add an LLM call's answer; its tokens go on its first step, an ``error`` marks that step
        (or an empty assistant step when the call answered nothing).

        Raises:
            ValueError: a message cannot be mapped (see :func:`~pipeline.ingest.formats._common.chat_steps`).
        """
        new = self._append(messages, model, started, ended)
        if not new and (error or input_tokens is not None or output_tokens is not None):
            new = [
                {
                    "trajectory_id": self.trajectory_id,
                    "role": "assistant",
                    "step_type": "assistant",
                    "model": model,
                    "is_error": False,
                    "started_at": started,
                    "ended_at": ended,
                }
            ]
            self.steps.extend(new)
        if new:
            if input_tokens is not None:
                new[0]["input_tokens"] = input_tokens
            if output_tokens is not None:
                new[0]["output_tokens"] = output_tokens
            if error:
                new[0]["is_error"], new[0]["error_message"] = True, error
        self._answered = True
        self._tag()

    def add_answer(self, messages: list[dict[str, Any]], stamp: datetime | None) -> None:
        """Add the answer of a trace that has no LLM call, taken from its root's output: no
        model, no tokens, ``stamp`` as its time.

        Raises:
            ValueError: a message cannot be mapped (see :func:`~pipeline.ingest.formats._common.chat_steps`).
        """
        self.add_output(
            messages,
            model=None,
            input_tokens=None,
            output_tokens=None,
            started=stamp,
            ended=stamp,
        )

    def add_tool(
        self,
        name: str,
        args: Any,
        result: str | None,
        *,
        call_id: str | None = None,
        is_error: bool = False,
        error_message: str | None = None,
        started: datetime | None = None,
        ended: datetime | None = None,
    ) -> None:
        """Add a tool span: its ``tool_result`` step, after a ``tool_call`` step unless an LLM call
        already announced it."""
        key = call_id if call_id in self._pending else None
        if key is None and call_id is None:
            key = next((k for k, n in self._pending.items() if n == name), None)
        if key is None:
            self.steps.append(
                {
                    "trajectory_id": self.trajectory_id,
                    "role": "assistant",
                    "step_type": "tool_call",
                    "tool_name": name,
                    "tool_call_id": call_id,
                    "tool_args": json_text(args),
                    "is_error": False,
                    "started_at": started,
                    "ended_at": started,
                }
            )
        else:
            del self._pending[key]
            call_id = call_id or (None if key.startswith("\0") else key)
        if call_id:
            self._resolved.add(call_id)
        self.steps.append(
            {
                "trajectory_id": self.trajectory_id,
                "role": "tool",
                "step_type": "tool_result",
                "tool_name": name,
                "tool_call_id": call_id,
                "tool_result_text": result,
                "is_error": is_error,
                "error_message": error_message if is_error else None,
                "started_at": ended or started,
                "ended_at": ended or started,
            }
        )
        self._tag()

    def finish(self) -> list[dict[str, Any]]:
        """The steps, numbered 0.. in order (without ``actor`` unless it names several agents)."""
        return finish_steps(self.steps, drop_actor=True)


def first_line(text: Any) -> str | None:
    """The first non-blank line of ``text`` (other values as JSON), at most 500 characters."""
    for line in (text_of(text) or "").splitlines():
        if line.strip():
            return line.strip()[:500]
    return None


def number(value: Any) -> int | None:
    """An integer count from a JSON number (booleans and other values give ``None``).

    Raises:
        ValueError: an infinite or NaN count (``1e400`` in the JSON text).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"a count that is not a finite number: {value!r}")
        return int(value)
    return None

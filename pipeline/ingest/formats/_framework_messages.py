"""Chat messages in the forms agent frameworks record them, read as OpenAI chat message dicts for
:mod:`~pipeline.ingest.formats._messages` (and so for the Langfuse and LangSmith adapters).

- GenAI semantic-conventions messages (OpenTelemetry semantic conventions v1.37+,
  https://github.com/open-telemetry/semantic-conventions/blob/main/docs/gen-ai/gen-ai-input-messages.json):
  ``{"role", "parts": [{"type": "text", "content"} | {"type": "tool_call", "id", "name",
  "arguments"} | {"type": "tool_call_response", "id", "response" | "result"}], "finish_reason"}``,
  as pydantic-ai and Microsoft Agent Framework write them into generation inputs and outputs. A
  ``tool_call_response`` part (sent under role ``user`` or ``tool``) becomes a ``tool`` message. An
  ``id`` given as a list (Agent Framework: ``[run id, call id]``) is the list's last item.
- OpenAI Responses API items (https://platform.openai.com/docs/api-reference/responses): ``message``
  (``type`` may be omitted), ``function_call`` (``call_id``, ``name``, ``arguments``) and
  ``function_call_output`` / ``custom_tool_call`` / ``custom_tool_call_output``; ``reasoning``
  items are dropped. A ``Response`` object (``{"object": "response", "output": [items],
  "instructions"}``) gives its output items. The OpenAI Agents SDK, through OpenInference, records
  its model calls this way.
- LangChain tool definitions that Langfuse's LangChain callback handler appends to a generation's
  input as ``{"role": "tool", "content": {"type": "function", "function": {"name", ...}}}`` are
  not messages: :func:`is_tool_definition` recognises them so they can be dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.ingest.formats._responses_items import parts_text

__all__ = ["call_id", "framework_messages", "is_tool_definition", "response_instructions"]

_CALLS = frozenset({"function_call", "custom_tool_call"})
_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output"})
_SKIPPED = frozenset({"reasoning"})


def call_id(value: Any) -> str | None:
    """A tool call id as text: a string or number as is, a list by its last item (Microsoft Agent
    Framework records ``[run id, call id]``), ``None`` for anything else."""
    if isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def is_tool_definition(message: Any) -> bool:
    """True for ``{"role": "tool", "content": {"type": "function", "function": {"name": ...}}}``
    without a ``tool_call_id``: a tool's definition, not its result."""
    if not isinstance(message, Mapping) or message.get("role") != "tool":
        return False
    content = message.get("content")
    return (
        not message.get("tool_call_id")
        and isinstance(content, Mapping)
        and content.get("type") == "function"
        and isinstance(content.get("function"), Mapping)
    )


def _parts_message(message: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """A GenAI parts message as chat messages, ``None`` when its parts are not a list."""
    parts = message.get("parts")
    role = message.get("role")
    if not isinstance(parts, list) or not isinstance(role, str):
        return None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("content"), str):
            texts.append(part["content"])
        elif kind == "tool_call":
            calls.append(
                {
                    "id": call_id(part.get("id")),
                    "type": "function",
                    "function": {"name": part.get("name"), "arguments": part.get("arguments")},
                }
            )
        elif kind == "tool_call_response":
            result = part.get("response", part.get("result"))
            reply: dict[str, Any] = {"role": "tool", "content": result}
            if call_id(part.get("id")) is not None:
                reply["tool_call_id"] = call_id(part.get("id"))
            if isinstance(part.get("name"), str):
                reply["name"] = part["name"]
            results.append(reply)
    out: list[dict[str, Any]] = []
    if texts or calls or not results:
        said: dict[str, Any] = {"role": role, "content": "\n".join(texts) if texts else None}
        if calls:
            said["tool_calls"] = calls
        out.append(said)
    return out + results


def _item_messages(item: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """A Responses item as chat messages (``[]`` for a reasoning item), ``None`` when it is not
    one this module reads."""
    kind = item.get("type")
    if kind in _SKIPPED:
        return []
    if kind in _CALLS:
        arguments = item.get("arguments", item.get("input"))
        return [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id(item.get("call_id") or item.get("id")),
                        "type": "function",
                        "function": {"name": item.get("name"), "arguments": arguments},
                    }
                ],
            }
        ]
    if kind in _OUTPUTS:
        output = item.get("output")
        return [
            {
                "role": "tool",
                "tool_call_id": call_id(item.get("call_id")),
                "content": parts_text(output) if isinstance(output, list) else output,
            }
        ]
    if kind in (None, "message") and isinstance(item.get("role"), str):
        content = item.get("content")
        text = parts_text(content) if isinstance(content, list) else content
        return [{"role": item["role"], "content": text}]
    return None


def _is_framework_form(item: Any) -> bool:
    """True for an item only this module reads: a parts message or a typed Responses item."""
    return isinstance(item, Mapping) and (
        isinstance(item.get("parts"), list)
        or item.get("type") in _CALLS | _OUTPUTS | _SKIPPED
        or (
            item.get("type") == "message"
            and isinstance(item.get("content"), list)
            and isinstance(item.get("role"), str)
        )
    )


def framework_messages(value: Any) -> list[dict[str, Any]] | None:
    """``value`` as OpenAI chat message dicts when it is a list of GenAI parts messages and/or
    Responses items (plain ``{"role", "content"}`` messages may be among them), one such
    message or item, or a ``Response`` object; ``None`` when it is none of these (the caller
    then reads it as chat messages)."""
    if isinstance(value, Mapping):
        if value.get("object") == "response" and isinstance(value.get("output"), list):
            return framework_messages(value["output"]) or []
        value = [value]
    if not isinstance(value, list) or not any(_is_framework_form(v) for v in value):
        return None
    messages: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, Mapping):
            return None
        found = _parts_message(item) if isinstance(item.get("parts"), list) else None
        if found is None:
            found = _item_messages(item)
        if found is None:
            return None
        messages.extend(found)
    return messages


def response_instructions(value: Any) -> str | None:
    """The ``instructions`` (system prompt) of a Responses ``Response`` object, else ``None``."""
    if isinstance(value, Mapping) and value.get("object") == "response":
        instructions = value.get("instructions")
        if isinstance(instructions, str) and instructions.strip():
            return instructions
    return None

"""What one Langfuse observation contributes to a trajectory: the steps of a ``GENERATION``
(its input messages not yet in the conversation, its output, tokens and model) and of a tool
observation, and its cost.

Fields as in the Langfuse public API's ``ObservationsView`` (https://api.reference.langfuse.com;
langfuse-python 3.x ``langfuse/api/commons/types``), camelCased by
:mod:`~pipeline.ingest.formats.langfuse`: ``input``, ``output``, ``model`` / ``providedModelName``,
``startTime``, ``endTime``, ``level``, ``statusMessage``, ``metadata``, ``usageDetails`` /
``usage`` (``{"input", "output", ...}``, also OpenAI's ``prompt_tokens`` /
``completion_tokens``), ``costDetails.total`` / ``calculatedTotalCost`` / ``totalCost`` (USD).
The messages are read and the steps assembled by :mod:`pipeline.ingest.formats._messages`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.ingest.formats._common import parse_time
from pipeline.ingest.formats._framework_messages import call_id, response_instructions
from pipeline.ingest.formats._messages import (
    Conversation,
    chat_messages,
    first_line,
    maybe_json,
    number,
    output_messages,
    python_or_json,
    text_of,
)

__all__ = ["add_generation", "add_tool_observation", "observation_cost", "tool_identity"]


def _tokens(observation: Mapping[str, Any]) -> tuple[int | None, int | None]:
    for key in ("usageDetails", "usage"):
        usage = maybe_json(observation.get(key))
        if isinstance(usage, Mapping):
            given = [
                next((number(usage[k]) for k in keys if number(usage.get(k)) is not None), None)
                for keys in (
                    ("input", "promptTokens", "prompt_tokens", "input_tokens"),
                    ("output", "completionTokens", "completion_tokens", "output_tokens"),
                )
            ]
            if given != [None, None]:
                return given[0], given[1]
    return number(observation.get("promptTokens")), number(observation.get("completionTokens"))


def observation_cost(observation: Mapping[str, Any]) -> float | None:
    """The observation's cost in USD: ``costDetails.total``, else ``calculatedTotalCost``, else
    ``totalCost``; ``None`` when it has none."""
    details = maybe_json(observation.get("costDetails"))
    if isinstance(details, Mapping) and isinstance(details.get("total"), int | float):
        return float(details["total"])
    for key in ("calculatedTotalCost", "totalCost"):
        if isinstance(observation.get(key), int | float):
            return float(observation[key])
    return None


def _tool_args(value: Any) -> Any:
    """A tool observation's input; the ``@observe`` decorator's ``{"args": [], "kwargs": {...}}``
    is unwrapped to its keyword arguments."""
    value = python_or_json(value)
    if isinstance(value, Mapping) and set(value) <= {"args", "kwargs"} and not value.get("args"):
        return value.get("kwargs") or {}
    return value


def add_generation(conversation: Conversation, observation: Mapping[str, Any]) -> str | None:
    """Add a ``GENERATION``'s steps to ``conversation`` and return its model (``None`` if not
    given): the input messages (OpenAI or LangChain messages, ``{"messages": [...]}``, GenAI parts
    messages or Responses items, else the input as one user message; a Responses output's
    ``instructions`` as the system message when the input has none) not yet in the
    conversation, then the output, carrying the tokens;
    ``level: ERROR`` marks the output step with ``statusMessage``.

    Raises:
        ValueError: a message cannot be mapped (see :func:`~pipeline.ingest.formats._common.chat_steps`).
    """
    model = observation.get("model") or observation.get("providedModelName") or None
    started = parse_time(observation.get("startTime"))
    ended = parse_time(observation.get("endTime")) or started
    given = maybe_json(observation.get("input"))
    messages = chat_messages(given)
    if messages is None and given not in (None, ""):
        messages = [{"role": "user", "content": text_of(given)}]
    instructions = response_instructions(maybe_json(observation.get("output")))
    if instructions and not any(m.get("role") == "system" for m in messages or []):
        messages = [{"role": "system", "content": instructions}, *(messages or [])]
    conversation.add_input(messages or [], started)
    input_tokens, output_tokens = _tokens(observation)
    error = None
    if str(observation.get("level") or "").upper() == "ERROR":
        error = first_line(observation.get("statusMessage")) or "error"
    conversation.add_output(
        output_messages(observation.get("output")),
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        started=started,
        ended=ended,
        error=error,
    )
    return model


def _attributes(metadata: Any) -> Mapping[str, Any]:
    """The span attributes an observation ingested over OpenTelemetry keeps in
    ``metadata.attributes``; empty when there are none."""
    attributes = metadata.get("attributes") if isinstance(metadata, Mapping) else None
    attributes = maybe_json(attributes)
    return attributes if isinstance(attributes, Mapping) else {}


def tool_identity(observation: Mapping[str, Any]) -> tuple[str, str | None]:
    """``(tool name, tool call id)`` of a tool observation. The name is the span attribute
    ``gen_ai.tool.name`` (GenAI semantic conventions) or ``tool.name`` (OpenInference) kept in
    ``metadata.attributes``, else the ``name`` of a LangChain ``ToolMessage`` output, else the
    observation's ``name`` (a span title such as ``running tool: get_weather`` only when nothing
    else names the tool). The call id is ``metadata.tool_call_id``, else the attribute
    ``gen_ai.tool.call.id`` / ``tool_call.id``, else the ToolMessage's ``tool_call_id``."""
    metadata = maybe_json(observation.get("metadata"))
    attributes = _attributes(metadata)
    message = _tool_message(observation.get("output"))
    name = next(
        (
            value
            for value in (
                attributes.get("gen_ai.tool.name"),
                attributes.get("tool.name"),
                message.get("name") if message else None,
                observation.get("name"),
            )
            if isinstance(value, str) and value.strip()
        ),
        "tool",
    )
    ids = (
        metadata.get("tool_call_id") if isinstance(metadata, Mapping) else None,
        attributes.get("gen_ai.tool.call.id"),
        attributes.get("tool_call.id"),
        message.get("tool_call_id") if message else None,
    )
    return name, next((c for c in map(call_id, ids) if c is not None), None)


def _tool_message(output: Any) -> Mapping[str, Any] | None:
    """A LangChain ``ToolMessage`` dict (``{"type": "tool", "content", "tool_call_id", "name",
    "status"}``) given as a tool's output, else ``None``."""
    output = maybe_json(output)
    if isinstance(output, Mapping) and output.get("type") == "tool" and "content" in output:
        return output
    return None


def add_tool_observation(conversation: Conversation, observation: Mapping[str, Any]) -> None:
    """Add a tool observation (``TOOL``, ``RETRIEVER``, or a ``SPAN`` named after a pending tool
    call) as a ``tool_result`` step: ``input`` the arguments, ``output`` the result (the
    ``content`` of a LangChain ``ToolMessage``), :func:`tool_identity` the tool and the call it
    answers; ``level: ERROR`` (or a ToolMessage's ``status: error``) makes it an error."""
    message = _tool_message(observation.get("output"))
    output = message.get("content") if message else maybe_json(observation.get("output"))
    result = text_of(output)
    is_error = str(observation.get("level") or "").upper() == "ERROR" or bool(
        message and message.get("status") == "error"
    )
    name, call = tool_identity(observation)
    started = parse_time(observation.get("startTime"))
    conversation.add_tool(
        name,
        _tool_args(observation.get("input")),
        result,
        call_id=call,
        is_error=is_error,
        error_message=first_line(observation.get("statusMessage") or result) or "error",
        started=started,
        ended=parse_time(observation.get("endTime")) or started,
    )

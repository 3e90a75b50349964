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

__all__ = ["add_generation", "add_tool_observation", "observation_cost"]


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
    given): the input messages (OpenAI or LangChain messages, ``{"messages": [...]}``, else the
    input as one user message) not yet in the conversation, then the output, carrying the tokens;
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


def add_tool_observation(conversation: Conversation, observation: Mapping[str, Any]) -> None:
    """Add a tool observation (``TOOL``, ``RETRIEVER``, or a ``SPAN`` named after a pending tool
    call) as a ``tool_result`` step: ``input`` the arguments, ``output`` the result,
    ``metadata.tool_call_id`` the call it answers; ``level: ERROR`` makes it an error."""
    result = text_of(maybe_json(observation.get("output")))
    is_error = str(observation.get("level") or "").upper() == "ERROR"
    metadata = maybe_json(observation.get("metadata"))
    call_id = metadata.get("tool_call_id") if isinstance(metadata, Mapping) else None
    started = parse_time(observation.get("startTime"))
    conversation.add_tool(
        str(observation.get("name") or "tool"),
        _tool_args(observation.get("input")),
        result,
        call_id=None if call_id is None else str(call_id),
        is_error=is_error,
        error_message=first_line(observation.get("statusMessage") or result) or "error",
        started=started,
        ended=parse_time(observation.get("endTime")) or started,
    )

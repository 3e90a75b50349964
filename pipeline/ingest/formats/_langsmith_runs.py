"""What one LangSmith run of a LangChain application contributes to a trajectory: the steps of
an ``llm`` run (its input messages not yet in the conversation, its answer, tokens and model) and
of a ``tool`` (or ``retriever``) run.

Run fields follow the ``Run`` schema of the langsmith Python SDK
(https://github.com/langchain-ai/langsmith-sdk, ``python/langsmith/schemas.py``, langsmith
0.3/0.4); their contents are what the LangChain tracer writes
(``langchain_core/tracers/langchain.py``, langchain-core 0.3): ``inputs.messages`` (LangChain
messages serialized by ``dumpd``, batched ``[[...]]``) or ``inputs.prompts``,
``outputs.generations[0][0].message`` (an ``LLMResult``), a tool's ``inputs.input`` (``str`` of
its arguments) and ``outputs.output`` (a ``ToolMessage``), ``extra.invocation_params`` /
``extra.metadata.ls_model_name``, ``prompt_tokens`` / ``completion_tokens`` (else
``outputs.usage_metadata``), ``error``,
``extra.metadata.prompt_version`` (the trajectory's ``prompt_version``, see
:func:`run_prompt_version`). The
messages are read and the steps assembled by :mod:`pipeline.ingest.formats._messages`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.ingest.formats._common import content_text, parse_time
from pipeline.ingest.formats._messages import (
    Conversation,
    chat_message,
    chat_messages,
    first_line,
    maybe_json,
    number,
    output_messages,
    python_or_json,
    text_of,
)
from pipeline.ingest.formats._prompt_version import recorded

__all__ = [
    "add_llm_run",
    "add_tool_run",
    "run_agent",
    "run_extra",
    "run_model",
    "run_error",
    "run_prompt_version",
]


def run_extra(run: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """``(metadata, invocation_params)`` of a run's ``extra``, each ``{}`` when absent."""
    extra = run.get("extra")
    extra = extra if isinstance(extra, Mapping) else {}
    metadata, params = extra.get("metadata"), extra.get("invocation_params")
    return (
        metadata if isinstance(metadata, Mapping) else {},
        params if isinstance(params, Mapping) else {},
    )


def run_agent(run: Mapping[str, Any], runs: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The agent a run belongs to: ``extra.metadata.lc_agent_name`` of the run, else of its
    nearest ancestor (through ``parent_run_id``, ``runs`` being the trace's runs by id) that has
    one; ``None`` when none has. LangChain's ``create_agent(name=...)`` (langchain 1.x,
    ``langchain/agents/factory.py``) puts that key in the metadata of the agent's graph, which
    every run inside it inherits."""
    seen: set[str] = set()
    current: Mapping[str, Any] | None = run
    while current is not None and str(current.get("id")) not in seen:
        seen.add(str(current.get("id")))
        name = run_extra(current)[0].get("lc_agent_name")
        if isinstance(name, str) and name:
            return name
        parent = current.get("parent_run_id")
        current = None if parent is None else runs.get(str(parent))
    return None


def run_prompt_version(root: Mapping[str, Any], runs: Iterable[Mapping[str, Any]]) -> Any:
    """The prompt version a trace recorded, as found (ingest keeps text and integers, see
    :mod:`pipeline.ingest.formats._prompt_version`): ``extra.metadata.prompt_version``, else a
    top-level ``metadata.prompt_version``, of the ``root`` run, else of the first of ``runs``
    (the trace's runs in step order) that has one; ``None`` when none has."""
    for run in (root, *runs):
        metadata = run.get("metadata")
        for place in (run_extra(run)[0], metadata if isinstance(metadata, Mapping) else {}):
            if recorded(place.get("prompt_version")):
                return place["prompt_version"]
    return None


def run_model(run: Mapping[str, Any]) -> str | None:
    """The model of a run: ``extra.invocation_params.model`` / ``model_name``, else
    ``extra.metadata.ls_model_name``, else ``inputs.model`` / ``outputs.model``; else ``None``."""
    metadata, params = run_extra(run)
    for value in (params.get("model"), params.get("model_name"), metadata.get("ls_model_name")):
        if isinstance(value, str) and value:
            return value
    inputs = run.get("inputs")
    if isinstance(inputs, Mapping) and isinstance(inputs.get("model"), str):
        return str(inputs["model"])
    outputs = run.get("outputs")
    if isinstance(outputs, Mapping) and isinstance(outputs.get("model"), str):
        return str(outputs["model"])
    return None


def _llm_output(outputs: Any) -> list[dict[str, Any]]:
    """The answer of an llm run: ``generations[0][0].message`` (or its ``text``), else
    :func:`~pipeline.ingest.formats._messages.output_messages` of ``output`` or of the outputs."""
    if not isinstance(outputs, Mapping):
        return output_messages(outputs)
    generations = outputs.get("generations")
    if isinstance(generations, list) and generations:
        first = generations[0]
        if isinstance(first, list):
            first = first[0] if first else None
        if isinstance(first, Mapping):
            message = chat_message(first.get("message"))
            if message is not None:
                return [message]
            return output_messages(first.get("text"))
    if "output" in outputs:
        return output_messages(outputs["output"])
    return output_messages(outputs)


def _llm_tokens(run: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """``(input, output)`` tokens of an llm run: ``prompt_tokens`` / ``completion_tokens`` of the
    run, else ``outputs.usage_metadata`` ``input_tokens`` / ``output_tokens`` (what ``wrap_openai``
    records and the langsmith docs ask a ``@traceable`` llm function to return), else an OpenAI
    ``outputs.usage`` ``prompt_tokens`` / ``completion_tokens``; ``None`` where none is given."""
    given = number(run.get("prompt_tokens")), number(run.get("completion_tokens"))
    if given != (None, None):
        return given
    outputs = run.get("outputs")
    outputs = outputs if isinstance(outputs, Mapping) else {}
    for key, names in (
        ("usage_metadata", ("input_tokens", "output_tokens")),
        ("usage", ("prompt_tokens", "completion_tokens")),
    ):
        usage = outputs.get(key)
        if isinstance(usage, Mapping):
            return number(usage.get(names[0])), number(usage.get(names[1]))
    return None, None


def run_error(error: Any) -> str | None:
    """The first line of a run's ``error``, without the traceback that LangChain's tracer
    appends to ``repr(exception)`` on the same line (``"ValueError('x')Traceback (most recent
    call last):"``); ``None`` for no error."""
    line = first_line(error) if error else None
    if line and "Traceback (most recent call last)" in line:
        line = line.split("Traceback (most recent call last)", 1)[0].strip() or line
    return line


def add_llm_run(conversation: Conversation, run: Mapping[str, Any]) -> str | None:
    """Add an ``llm`` run's steps to ``conversation`` and return its model (see
    :func:`run_model`): the input messages (``inputs.messages``, else the first of
    ``inputs.prompts`` or ``inputs.input`` as a user message) not yet in the conversation, then the
    answer with its tokens (see :func:`_llm_tokens`); an ``error`` marks the answer's step.

    Raises:
        ValueError: a message cannot be mapped (see :func:`~pipeline.ingest.formats._common.chat_steps`).
    """
    inputs = run.get("inputs")
    inputs = inputs if isinstance(inputs, Mapping) else {}
    started = parse_time(run.get("start_time"))
    ended = parse_time(run.get("end_time")) or started
    messages = chat_messages(inputs.get("messages")) if "messages" in inputs else None
    if messages is None:
        prompts = inputs.get("prompts")
        given = prompts[0] if isinstance(prompts, list) and prompts else inputs.get("input")
        given = inputs if given is None and inputs else given
        messages = [] if given is None else [{"role": "user", "content": text_of(given)}]
    conversation.add_input(messages, started)
    answer = _llm_output(run.get("outputs"))
    model = run_model(run)
    error = run_error(run.get("error"))
    input_tokens, output_tokens = _llm_tokens(run)
    conversation.add_output(
        answer,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        started=started,
        ended=ended,
        error=error,
    )
    return model


def add_tool_run(conversation: Conversation, run: Mapping[str, Any]) -> None:
    """Add a ``tool`` (or ``retriever``) run as a ``tool_result`` step: ``inputs`` the arguments
    (LangChain's ``{"input": str}`` parsed), ``outputs.output`` the result (a ``ToolMessage``
    gives the ``tool_call_id`` it answers); ``error`` or the message's ``status: "error"`` makes
    it an error."""
    inputs = run.get("inputs")
    args: Any = inputs
    if isinstance(inputs, Mapping) and set(inputs) == {"input"}:
        args = python_or_json(inputs["input"])
    outputs = run.get("outputs")
    output = outputs.get("output", outputs) if isinstance(outputs, Mapping) else outputs
    message = chat_message(output)
    call_id = None
    if message is not None and message["role"] == "tool":
        call_id = message.get("tool_call_id")
        result = content_text(message.get("content"))
    else:
        result = text_of(maybe_json(output)) if output not in (None, {}) else None
    error = run.get("error")
    is_error = bool(error) or bool(message and message.get("error"))
    started = parse_time(run.get("start_time"))
    conversation.add_tool(
        str(run.get("name") or "tool"),
        args,
        result,
        call_id=None if call_id is None else str(call_id),
        is_error=is_error,
        error_message=(run_error(error) if isinstance(error, str) else first_line(result))
        or "error",
        started=started,
        ended=parse_time(run.get("end_time")) or started,
    )

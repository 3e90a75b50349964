"""Langfuse exports: full-detail traces, observations and scores.

Follows the Langfuse public API definition (https://api.reference.langfuse.com, the Fern types
generated into langfuse-python 3.x ``langfuse/api/commons/types``: ``TraceWithFullDetails``,
``ObservationsView``, ``Score``) and the blob-storage export field reference
(https://langfuse.com/docs/api-and-data-platform/features/blob-storage-export-fields, Langfuse v3/v4).
Keys are camelCase as in the API or snake_case as in the blob-storage export (``trace_id``,
``start_time``, ``usage_details``, ``provided_model_name``, ``string_value`` ...); both are read.

Records, one per JSON Lines line or JSON array item; an API list page ``{"data": [...], "meta":
{...}}`` is unwrapped (streamed when it is the whole file), and a record may be of any kind:

- trace (``GET /api/public/traces/{traceId}``): ``{"id", "timestamp", "name", "userId",
  "sessionId", "release", "version", "tags", "metadata", "input", "output", "environment",
  "htmlPath", "latency", "totalCost", "observations": [observation], "scores": [score]}``. In the
  list endpoint (``GET /api/public/traces``) and the blob-storage ``traces/`` file
  ``observations`` is a list of ids or absent: such a trace is joined with the observations of the
  same file, if any;
- observation (``GET /api/public/observations``, ``/api/public/v2/observations``, blob-storage
  ``observations/`` and ``observations_v2/``): ``{"id", "traceId", "type": "GENERATION" | "SPAN" |
  "EVENT" | "AGENT" | "TOOL" | "CHAIN" | "RETRIEVER" | "EVALUATOR" | "EMBEDDING" | "GUARDRAIL",
  "name", "startTime", "endTime", "completionStartTime", "parentObservationId", "model"
  (``providedModelName``), "modelParameters", "input", "output", "metadata", "level": "DEBUG" |
  "DEFAULT" | "WARNING" | "ERROR", "statusMessage", "usage": {"input", "output", "total"},
  "usageDetails": {"input", "output", "total", ...}, "costDetails": {"total", ...},
  "calculatedTotalCost"}``; enriched rows also carry the trace's ``traceName``, ``userId``,
  ``sessionId``, ``tags``, ``release``. Observations are grouped by ``traceId``: one trajectory
  per trace;
- score (``GET /api/public/v2/scores``, blob-storage ``scores/``): ``{"id", "traceId",
  "observationId", "sessionId", "name", "value", "stringValue", "dataType": "NUMERIC" | "BOOLEAN" |
  "CATEGORICAL" | "TEXT" | "CORRECTION", "source": "API" | "ANNOTATION" | "EVAL", "comment"}``. A
  score outside a trace record becomes a ``feedback`` row of trajectory ``traceId`` (joined by
  ingest with the trace read from another file); a score without ``traceId`` (session or
  dataset-run score) is quarantined.

Steps, in observation start order (ties: file order): a ``GENERATION``'s input (OpenAI chat
messages, LangChain messages, ``{"messages": [...]}``, or a prompt string) gives the messages not
already in the trajectory (so the history each call repeats is not repeated; assistant messages
are taken from outputs only once a generation has answered), its output gives the assistant step
and tool calls, with the tokens of ``usageDetails`` (else ``usage``) and the model; ``level:
ERROR`` marks the step ``is_error`` with ``statusMessage``. ``TOOL`` and ``RETRIEVER``
observations, and ``SPAN``s named after a tool call still waiting for its result, give a
``tool_result`` (matched with the generation's ``tool_call``; a ``tool_call`` step is added
first when no generation announced it) whose ``is_error`` is ``level == "ERROR"``. Other
observation types (``SPAN``, ``AGENT``, ``CHAIN``, ``EVENT``, ...) are structure, not steps; an
``ERROR`` among them sets ``termination_reason`` to ``error``. A trace without generations gets a
user and an assistant step from the trace's (or root observation's) input and output.

Outcome: every score becomes a ``feedback`` row (``value`` for NUMERIC and BOOLEAN, ``value_text``
for CATEGORICAL/TEXT ``stringValue``; ``step_idx`` is the first step of the scored observation,
null for a trace score or an observation without steps); the outcome is
:func:`~pipeline.formats._common.outcome_from_feedback` over them, ``unknown`` without scores.

The module also holds what the span-based adapters share (:class:`Conversation`,
:func:`chat_message`, :func:`output_messages`, :func:`iter_records`, :func:`first_record`).
"""

from __future__ import annotations

import ast
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import ijson

from pipeline.formats._common import (
    FeedbackRows,
    Quarantined,
    Record,
    chat_steps,
    content_text,
    finish_trajectory,
    json_text,
    outcome_from_feedback,
    parse_time,
    truncate,
)
from pipeline.formats._io import (
    ReadOptions,
    data_suffix,
    iter_json_records,
    open_binary,
    peek_first_json_line,
)

__all__ = [
    "NAME",
    "Conversation",
    "chat_message",
    "chat_messages",
    "first_record",
    "iter_records",
    "maybe_json",
    "output_messages",
    "python_or_json",
    "read",
    "sniff",
]

NAME = "langfuse"

OBSERVATION_TYPES = frozenset(
    {
        "SPAN",
        "GENERATION",
        "EVENT",
        "AGENT",
        "TOOL",
        "CHAIN",
        "RETRIEVER",
        "EVALUATOR",
        "EMBEDDING",
        "GUARDRAIL",
    }
)
_TOOL_TYPES = frozenset({"TOOL", "RETRIEVER"})
_SCORE_SOURCES = frozenset({"API", "ANNOTATION", "EVAL"})
_TEXT_SCORES = frozenset({"CATEGORICAL", "TEXT", "CORRECTION"})
# Keys only a Langfuse trace has (besides ``id`` and ``timestamp``), for sniffing; or one of the
# API's camelCase ``sessionId`` / ``userId`` with one of its other optional fields.
_TRACE_KEYS = frozenset({"htmlPath", "observations", "scores", "bookmarked", "projectId"})
_TRACE_OWNERS = frozenset({"sessionId", "userId"})
_TRACE_FIELDS = frozenset({"release", "version", "environment", "tags", "public"})
_SCORE_TARGETS = ("traceId", "observationId", "sessionId", "datasetRunId")


# --- shared by the span-based adapters: records, messages, conversations ----------------------


def maybe_json(value: Any) -> Any:
    """``value`` parsed when it is a string holding a JSON object or array (exports often store
    inputs and outputs as JSON text); anything else unchanged."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(value)
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


def first_record(head: bytes, envelope: str) -> Any:
    """The first record of a file from its first bytes: the first JSON Lines value, the first item
    of a JSON array or of the ``envelope`` list of a JSON object (``{"data": [...]}``), else the
    top-level keys of a single (possibly cut) JSON object with their scalar values (others
    ``None``)."""
    record = peek_first_json_line(head)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if record is None and text[:1] in (b"[", b"{"):
        prefix = "item" if text.startswith(b"[") else f"{envelope}.item"
        try:
            record = next(ijson.items(io.BytesIO(text), prefix, use_float=True), None)
        except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError):
            record = None
        if record is None and text.startswith(b"{"):
            record = _top_level(text)
    if isinstance(record, list):
        record = record[0] if record else None
    if isinstance(record, Mapping) and isinstance(record.get(envelope), list):
        record = record[envelope][0] if record[envelope] else None
    return record


def _top_level(text: bytes) -> dict[str, Any]:
    """The top-level keys of a (possibly cut) JSON object, with their values when scalar."""
    fields: dict[str, Any] = {}
    try:
        for prefix, event, value in ijson.parse(io.BytesIO(text), use_float=True):
            if prefix == "" and event == "map_key":
                fields[str(value)] = None
            elif prefix in fields and event in ("string", "number", "boolean"):
                fields[prefix] = value
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError):
        pass
    return fields


def iter_records(
    path: Path, options: ReadOptions, envelope: str
) -> Iterator[tuple[str, Any] | Quarantined]:
    """The records of ``path`` as ``(where, value)``, like
    :func:`~pipeline.formats._io.iter_json_records`, with API list pages unwrapped: a record that
    is an object with an ``envelope`` list (``{"data": [...], "meta": {...}}``) yields the list's
    items (``where`` = ``"line 3 data[0]"``); a whole file that opens with such a list is streamed.

    Raises:
        InputError: unreadable, empty, or a whole document that is too large or not JSON.
    """
    with open_binary(path) as stream:
        head = stream.read(1 << 16)
    opening = re.compile(rb'^\s*\{\s*"' + re.escape(envelope.encode()) + rb'"\s*:\s*\[')
    streamable = data_suffix(path) not in (".jsonl", ".ndjson") and opening.match(
        head.lstrip(b"\xef\xbb\xbf")
    )
    if streamable and peek_first_json_line(head) is None:
        index = 0
        with open_binary(path) as stream:
            try:
                for item in ijson.items(stream, f"{envelope}.item", use_float=True):
                    yield f"{envelope}[{index}]", item
                    index += 1
            except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError) as exc:
                yield Quarantined(
                    f"{envelope}[{index}]",
                    f"invalid or truncated JSON: reading stopped at item {index}: {exc}",
                )
        return
    for item in iter_json_records(path, options):
        if isinstance(item, Quarantined):
            yield item
            continue
        where, value = item
        if isinstance(value, Mapping) and isinstance(value.get(envelope), list):
            at = "" if where == "document" else f"{where} "
            for index, inner in enumerate(value[envelope]):
                yield f"{at}{envelope}[{index}]", inner
        else:
            yield where, value


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
    (``[[...]]``, first batch), an object with ``messages``, or one message; ``None`` when
    ``value`` is none of these (a prompt string, arbitrary JSON)."""
    value = maybe_json(value)
    if isinstance(value, Mapping):
        if "messages" not in value:
            message = chat_message(value)
            return [message] if message is not None else None
        value = value["messages"]
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        value = value[0]
    if not isinstance(value, list) or not value:
        return None
    messages = [chat_message(v) for v in value]
    return [m for m in messages if m is not None] if all(messages) else None


def output_messages(value: Any) -> list[dict[str, Any]]:
    """The messages an LLM call answered with: chat messages (:func:`chat_messages`), an OpenAI
    chat completion (``choices[0].message``), a string, or other JSON as assistant text."""
    value = maybe_json(value)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
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
    else of the same name, else adds the ``tool_call`` step itself.
    """

    def __init__(self, trajectory_id: str) -> None:
        self.trajectory_id = trajectory_id
        self.steps: list[dict[str, Any]] = []
        self._known: Counter[tuple[Any, ...]] = Counter()
        self._pending: dict[str, str] = {}  # tool call key -> tool name, calls awaiting a result
        self._resolved: set[str] = set()
        self._answered = False
        self._anonymous = 0  # numbers the keys of tool calls without an id

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
        return new

    def add_input(
        self, messages: Iterable[dict[str, Any]], stamp: datetime | None, model: str | None = None
    ) -> None:
        """Add the messages of an LLM call's input that the trajectory does not have yet.

        Raises:
            ValueError: a message cannot be mapped (see :func:`~pipeline.formats._common.chat_steps`).
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
            ValueError: a message cannot be mapped (see :func:`~pipeline.formats._common.chat_steps`).
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

    def finish(self) -> list[dict[str, Any]]:
        """The steps, numbered 0.. in order."""
        for index, step in enumerate(self.steps):
            step["step_idx"] = index
        return self.steps


def first_line(text: Any) -> str | None:
    """The first non-blank line of ``text`` (other values as JSON), at most 500 characters."""
    for line in (text_of(text) or "").splitlines():
        if line.strip():
            return line.strip()[:500]
    return None


def number(value: Any) -> int | None:
    """An integer count from a JSON number (booleans and other values give ``None``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return None


# --- Langfuse records ------------------------------------------------------------------------


def _camel(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with snake_case keys (blob-storage export) renamed to the API's camelCase."""
    out = {k: v for k, v in record.items() if "_" not in k.lstrip("_")}
    for key, value in record.items():
        if "_" in key.lstrip("_"):
            first, *rest = key.split("_")
            out.setdefault(first + "".join(p[:1].upper() + p[1:] for p in rest), value)
    return out


def _kind(record: Mapping[str, Any], raw: Mapping[str, Any] | None = None) -> str | None:
    """``observation``, ``score``, ``trace`` or ``None`` for a camelCased record; with the ``raw``
    record (sniffing) a trace must also show Langfuse-specific keys."""
    if "run_type" in record or "runType" in record:
        return None
    if (
        record.get("traceId") is not None
        and str(record.get("type") or "").upper() in OBSERVATION_TYPES
        and "startTime" in record
    ):
        return "observation"
    if (
        any(k in record for k in _SCORE_TARGETS)
        and isinstance(record.get("name"), str)
        and ("value" in record or "stringValue" in record)
        and ("dataType" in record or str(record.get("source")).upper() in _SCORE_SOURCES)
    ):
        return "score"
    is_trace = "id" in record and "timestamp" in record and "traceId" not in record
    if is_trace and (
        raw is None
        or (
            "messages" not in raw
            and (
                any(k in record for k in _TRACE_KEYS)
                or (any(k in raw for k in _TRACE_OWNERS) and any(k in raw for k in _TRACE_FIELDS))
            )
        )
    ):
        return "trace"
    return None


def sniff(path: Path, head: bytes) -> bool:
    """True when the first record (JSON Lines line, array item, first item of a ``data`` page, or
    a single JSON object) is a Langfuse trace (``id``, ``timestamp`` and one of ``htmlPath``,
    ``observations``, ``scores``, ``bookmarked``, ``projectId``, or ``sessionId``/``userId`` with
    ``release``/``version``/``environment``/``tags``/``public``; no ``messages``), an
    observation (``traceId``, ``startTime`` and a Langfuse observation ``type``) or a score
    (``name``, ``value`` and a ``dataType`` or Langfuse ``source``); snake_case keys count too."""
    record = first_record(head, "data")
    return isinstance(record, Mapping) and _kind(_camel(record), record) is not None


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


def _cost(observation: Mapping[str, Any]) -> float | None:
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


def _generation(conversation: Conversation, observation: Mapping[str, Any]) -> str | None:
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


def _tool(conversation: Conversation, observation: Mapping[str, Any]) -> None:
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


def _score_row(
    score: Mapping[str, Any], trajectory_id: str, step_of: Mapping[str, int]
) -> dict[str, Any]:
    name = score.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"score {score.get('id')!r} has no 'name'")
    value, string_value = score.get("value"), score.get("stringValue")
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    text = None
    if str(score.get("dataType") or "").upper() in _TEXT_SCORES or not (
        numeric or isinstance(value, bool)
    ):
        text = string_value if string_value is not None else text_of(value)
        value = None
    observation = score.get("observationId") or None
    return {
        "trajectory_id": trajectory_id,
        "step_idx": step_of.get(str(observation)) if observation else None,
        "name": name,
        "value": None if value is None else float(value),
        "value_text": text,
        "source": None if score.get("source") is None else str(score["source"]),
        "comment": text_of(score.get("comment")),
    }


def _context(trace: Mapping[str, Any] | None, observations: list[dict[str, Any]]) -> dict[str, Any]:
    """Trace-level fields: from the trace record, else from enriched observation rows."""
    if trace is not None:
        return dict(trace)
    context: dict[str, Any] = {}
    for observation in observations:
        for key, target in (
            ("traceName", "name"),
            ("userId", "userId"),
            ("sessionId", "sessionId"),
            ("tags", "tags"),
            ("release", "release"),
            ("environment", "environment"),
        ):
            if observation.get(key) not in (None, "", []) and target not in context:
                context[target] = observation[key]
    return context


def _start_key(pair: tuple[int, Mapping[str, Any]]) -> tuple[bool, float, int]:
    stamp = parse_time(pair[1].get("startTime"))
    return stamp is None, stamp.timestamp() if stamp else 0.0, pair[0]


def _trajectory(
    trace_id: str,
    trace: Mapping[str, Any] | None,
    observations: list[dict[str, Any]],
    scores: list[Any],
    options: ReadOptions,
    where: str,
    records: int,
) -> Record:
    conversation = Conversation(trace_id)
    step_of: dict[str, int] = {}
    models: list[str] = []
    errors: list[dict[str, Any]] = []
    context = _context(trace, observations)
    root = next((o for o in observations if not o.get("parentObservationId")), {})
    generations = any(str(o.get("type") or "").upper() == "GENERATION" for o in observations)
    if not generations:
        given = maybe_json(context.get("input", root.get("input")))
        if given not in (None, ""):
            conversation.add_input(
                chat_messages(given) or [{"role": "user", "content": text_of(given)}],
                parse_time(context.get("timestamp", root.get("startTime"))),
            )
    for _, observation in sorted(enumerate(observations), key=_start_key):
        kind = str(observation.get("type") or "").upper()
        before = len(conversation.steps)
        try:
            if kind == "GENERATION":
                model = _generation(conversation, observation)
                if model:
                    models.append(model)
            elif kind in _TOOL_TYPES or (
                kind == "SPAN" and conversation.pending(observation.get("name"))
            ):
                _tool(conversation, observation)
            elif str(observation.get("level") or "").upper() == "ERROR":
                errors.append(
                    {
                        "observation": observation.get("id"),
                        "type": kind,
                        "name": observation.get("name"),
                        "statusMessage": observation.get("statusMessage"),
                    }
                )
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"observation {observation.get('id')!r} ({kind} {observation.get('name')!r}) "
                f"of trace {trace_id}: {exc}"
            ) from exc
        if len(conversation.steps) > before and observation.get("id"):
            step_of.setdefault(str(observation["id"]), before)
    if not generations:
        stamp = parse_time(root.get("endTime") or context.get("timestamp"))
        conversation.add_output(
            output_messages(context.get("output", root.get("output"))),
            model=None,
            input_tokens=None,
            output_tokens=None,
            started=stamp,
            ended=stamp,
        )
    steps = conversation.finish()
    feedback = [_score_row(_camel(s), trace_id, step_of) for s in scores if isinstance(s, Mapping)]
    label, score, source = outcome_from_feedback(
        feedback, options.reward_threshold, options.outcome_feedback
    )
    metadata = maybe_json(context.get("metadata"))
    fields = metadata if isinstance(metadata, Mapping) else {}
    costs = [c for c in (_cost(o) for o in observations) if c is not None]
    total_cost = context.get("totalCost")
    times = [
        t
        for o in observations
        for t in (parse_time(o.get("endTime")), parse_time(o.get("startTime")))
        if t is not None
    ]
    trajectory = {
        "trajectory_id": trace_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        "dataset": fields.get("dataset"),
        "domain": fields.get("domain"),
        "task_id": None if fields.get("task_id") is None else str(fields["task_id"]),
        "agent_name": context.get("name") or root.get("name"),
        "model": Counter(models).most_common(1)[0][0] if models else None,
        "session_id": context.get("sessionId") or None,
        "user_id": context.get("userId") or None,
        "started_at": parse_time(context.get("timestamp")) or (min(times) if times else None),
        "ended_at": max(times) if times else None,
        "outcome_label": label,
        "outcome_score": score,
        "outcome_source": source,
        "termination_reason": "error" if errors else None,
        "n_tool_errors": sum(
            1 for s in steps if s["step_type"] == "tool_result" and s.get("is_error")
        ),
        "cost_usd": float(total_cost)
        if isinstance(total_cost, int | float)
        else (sum(costs) if costs else None),
        "metadata": json_text(
            {
                key: value
                for key, value in {
                    "name": context.get("name"),
                    "tags": context.get("tags") or None,
                    "environment": context.get("environment"),
                    "release": context.get("release"),
                    "version": context.get("version"),
                    "htmlPath": context.get("htmlPath"),
                    "metadata": metadata or None,
                    "errors": errors or None,
                }.items()
                if value is not None
            }
        ),
    }
    return Record(finish_trajectory(trajectory, steps), steps, feedback, where, records)


def _unknown_reason(record: Mapping[str, Any]) -> str:
    """Why a record is none of trace, observation, score."""
    if "startTime" in record or "parentObservationId" in record:
        if not record.get("traceId"):
            return f"observation {record.get('id')!r} has no traceId"
        if str(record.get("type") or "").upper() not in OBSERVATION_TYPES:
            return f"observation {record.get('id')!r} has unknown type {record.get('type')!r}"
    keys = ", ".join(sorted(str(k) for k in record)[:12])
    return f"not a Langfuse trace, observation or score (keys: {keys})"


def _embedded(trace: Mapping[str, Any]) -> bool:
    """True for a full-detail trace: ``observations`` is a list of objects (or empty)."""
    observations = trace.get("observations")
    return isinstance(observations, list) and all(isinstance(o, Mapping) for o in observations)


def _build(
    trace_id: str,
    trace: Mapping[str, Any] | None,
    observations: list[dict[str, Any]],
    options: ReadOptions,
    where: str,
    records: int,
) -> Record | Quarantined:
    scores = trace.get("scores") if trace is not None else None
    try:
        return _trajectory(
            trace_id,
            trace,
            observations,
            scores if isinstance(scores, list) else [],
            options,
            where,
            records,
        )
    except (ValueError, TypeError) as exc:
        raw = trace if trace is not None else observations[0] if observations else trace_id
        return Quarantined(where, str(exc), truncate(raw), records)


def read(path: Path, options: ReadOptions) -> Iterator[Record | Quarantined | FeedbackRows]:
    """Yield a :class:`Record` per trace (a full-detail trace record, or the observations of one
    ``traceId`` with the file's trace record of that id, if any), :class:`FeedbackRows` per loose
    score, and :class:`Quarantined` for what cannot be used (with the number of records it
    stands for).

    Raises:
        InputError: unreadable, empty, or a whole document that is too large or not JSON.
    """
    waiting: dict[str, tuple[str, dict[str, Any]]] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in iter_records(path, options, "data"):
        if isinstance(item, Quarantined):
            yield item
            continue
        where, raw = item
        if not isinstance(raw, Mapping):
            yield Quarantined(where, "record is not a JSON object", truncate(raw))
            continue
        record = _camel(raw)
        kind = _kind(record)
        if kind == "observation":
            groups.setdefault(str(record["traceId"]), []).append(record)
        elif kind == "score":
            trace_id = record.get("traceId")
            if not trace_id:
                yield Quarantined(
                    where,
                    f"score {record.get('id')!r} ({record.get('name')!r}) has no traceId "
                    "(a session or dataset-run score); only trace scores are ingested",
                    truncate(raw),
                )
                continue
            try:
                yield FeedbackRows([_score_row(record, str(trace_id), {})], where)
            except ValueError as exc:
                yield Quarantined(where, str(exc), truncate(raw))
        elif kind == "trace":
            trace_id = record.get("id")
            if not isinstance(trace_id, str | int) or trace_id == "":
                yield Quarantined(where, "trace has no 'id'", truncate(raw))
            elif _embedded(record):
                observations = [_camel(o) for o in record["observations"]]
                yield _build(str(trace_id), record, observations, options, where, 1)
            else:
                waiting[str(trace_id)] = (where, record)
        else:
            yield Quarantined(where, _unknown_reason(record), truncate(raw))
    for trace_id, observations in groups.items():
        where, trace = waiting.pop(trace_id, (f"trace {trace_id}", None))
        records = len(observations) + (trace is not None)
        yield _build(trace_id, trace, observations, options, where, records)
    for trace_id, (where, trace) in waiting.items():
        yield _build(trace_id, trace, [], options, where, 1)

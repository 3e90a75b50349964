"""Shared pieces of the format adapters: the parsed-record types, outcome and feedback rows
(:func:`outcome_from_feedback`, :func:`metadata_feedback`), the columns chat-style records keep
in their metadata (:func:`metadata_columns`), OpenAI chat message mapping (:func:`chat_steps`),
the finishing of ``steps`` and ``trajectories`` rows (:func:`finish_steps`,
:func:`finish_trajectory`), and :func:`error_line`, which picks the line of a failed command's
output that names the error (Python tracebacks, pytest summaries).

OpenAI chat messages (https://platform.openai.com/docs/api-reference/chat/create, ``messages``):
``{"role": "system"|"user"|"assistant"|"tool", "content": str | [parts] | null,
"tool_calls": [{"id", "type": "function", "function": {"name", "arguments": JSON str}}],
"tool_call_id"}``. The flattened tool-call form used by tau2-bench (``{"id", "name",
"arguments": dict}``) is accepted too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from pipeline.ingest.formats._error_line import error_line
from pipeline.ingest.formats._jsontext import loads

__all__ = [
    "OUTCOME_FEEDBACK_NAMES",
    "FeedbackRows",
    "Quarantined",
    "Record",
    "chat_steps",
    "content_text",
    "error_line",
    "feedback_row",
    "outcome_from_feedback",
    "finish_steps",
    "finish_trajectory",
    "json_text",
    "label_from_reward",
    "metadata_columns",
    "metadata_feedback",
    "parse_time",
    "tool_error_count",
]

# A tool result whose text starts like an error message (a format without an error flag).
ERROR_TEXT = re.compile(r"^\s*(error|exception|traceback)\b", re.IGNORECASE)
_NUMERIC = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")


@dataclass
class Record:
    """One trajectory parsed from a source record.

    ``trajectory`` is a row of the ``trajectories`` table, ``steps`` and ``feedback`` rows of theirs
    (see :mod:`pipeline.ingest.schema`); ``where`` locates the source record (``line 3``, ``index 7``).
    ``records`` is how many source records it was built from: 1 for a line holding a whole run,
    the number of spans for a trace assembled from span records. ``digest``: its content hash
    when the reader computed it (JSON Lines read in blocks: the SHA-256 of the line, see
    :mod:`~pipeline.ingest.formats._linebatch`); ``None``: ingest hashes the rows.
    """

    trajectory: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    where: str = ""
    records: int = 1
    digest: str | None = None


@dataclass
class Quarantined:
    """Source records that could not be ingested: where, why, the raw text (truncated) and how
    many source records that is (``records``: e.g. every span of a trace without an id).

    ``trajectory_ids``: the runs the record was part of, when known (the trace of a span or an
    observation, or the trace ids found in a line that does not parse). Ingest then quarantines
    those runs whole, when their :class:`Record` comes later from the same file, rather than
    ingest them with a gap where this record was.
    """

    where: str
    reason: str
    raw: str = ""
    records: int = 1
    trajectory_ids: tuple[str, ...] = ()


@dataclass
class FeedbackRows:
    """``feedback`` rows read from a file that holds scores or outcomes but no trajectories (a
    benchmark's results file, a separate scores export). Their trajectories may come from other
    files of the same ingest (or an earlier one); an item naming a trajectory that none holds is
    quarantined whole. ``records`` is how many source records the rows came from; keep one item
    per source record."""

    rows: list[dict[str, Any]]
    where: str = ""
    records: int = 1


Parsed = Record | Quarantined


# Feedback names taken as a trajectory's outcome, in this order, when the format has no outcome
# field of its own and the user names none (``--outcome-from``).
OUTCOME_FEEDBACK_NAMES = (
    "outcome",
    "success",
    "task_success",
    "resolved",
    "is_correct",
    "correct",
    "correctness",
    "reward",
    "pass",
    "passed",
)
# Metadata keys read as outcome feedback by :func:`metadata_feedback`, besides
# OUTCOME_FEEDBACK_NAMES.
_EXTRA_OUTCOME_KEYS = ("score",)
_SUCCESS_TEXT = frozenset(
    {"success", "succeeded", "pass", "passed", "true", "yes", "correct", "resolved", "good", "1"}
)
_FAILURE_TEXT = frozenset(
    {"failure", "failed", "fail", "false", "no", "incorrect", "unresolved", "bad", "error", "0"}
)


def outcome_from_feedback(
    feedback: Iterable[Mapping[str, Any]],
    threshold: float,
    name: str | None = None,
    latest: bool = False,
) -> tuple[str, float | None, str | None]:
    """The outcome ``(label, score, source)`` that a trajectory's feedback rows give.

    The row used is the trajectory-level one (``step_idx`` null) named ``name`` when given, else
    the one whose name (case-insensitive) comes first in :data:`OUTCOME_FEEDBACK_NAMES`, else
    the only trajectory-level row if there is exactly one. Of several rows of that name, the
    first is used, or with ``latest`` the last (rows in the order they were read: a later row
    corrects an earlier one). A numeric value is a reward (``>= threshold``
    is success, see :func:`label_from_reward`); a text value is read as success/failure/partial
    words (``pass``, ``false``, ...). ``source`` is ``feedback:<name>``. Without a usable row the
    result is ``("unknown", None, None)``.
    """
    rows = [f for f in feedback if f.get("step_idx") is None and f.get("name")]
    ordered = rows if latest else rows[::-1]  # the row that wins comes last
    chosen: Mapping[str, Any] | None = None
    if name is not None:
        chosen = next((f for f in reversed(ordered) if f["name"] == name), None)
    else:
        by_name = {str(f["name"]).lower(): f for f in ordered}
        chosen = next((by_name[n] for n in OUTCOME_FEEDBACK_NAMES if n in by_name), None)
        if chosen is None and len(rows) == 1:
            chosen = rows[0]
    if chosen is None:
        return "unknown", None, None
    source = f"feedback:{chosen['name']}"
    value = chosen.get("value")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return label_from_reward(float(value), threshold), float(value), source
    text = str(chosen.get("value_text") or "").strip().lower()
    if text in _SUCCESS_TEXT:
        return "success", 1.0, source
    if text in _FAILURE_TEXT:
        return "failure", 0.0, source
    if text == "partial":
        return "partial", None, source
    return "unknown", None, None


def feedback_row(
    trajectory_id: str,
    name: str,
    value: Any,
    *,
    source: str | None = None,
    comment: str | None = None,
    step_idx: int | None = None,
) -> dict[str, Any]:
    """A ``feedback`` row; ``value`` goes to ``value`` when numeric or boolean (``True`` -> 1.0),
    to ``value_text`` otherwise (JSON text for objects and lists)."""
    number = float(value) if isinstance(value, int | float) else None
    text = None
    if number is None and value is not None:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return {
        "trajectory_id": trajectory_id,
        "step_idx": step_idx,
        "name": name,
        "value": number,
        "value_text": text,
        "source": source,
        "comment": comment,
    }


def _number(value: Any) -> Any:
    """A numeric string as a float (metadata values are strings in the Responses API)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def metadata_feedback(
    trajectory_id: str,
    metadata: Mapping[str, Any],
    *,
    source: str,
    outcome_name: str | None = None,
    skip: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """``feedback`` rows for the ``metadata`` keys that name an outcome: those in
    ``OUTCOME_FEEDBACK_NAMES`` or ``score`` (case-insensitive) and ``outcome_name``, except the
    names in ``skip``. Numeric strings become numbers; other values are kept as
    :func:`feedback_row` stores them."""
    wanted = {n.lower() for n in (*OUTCOME_FEEDBACK_NAMES, *_EXTRA_OUTCOME_KEYS)}
    skipped = {s.lower() for s in skip}
    rows = []
    for key, value in metadata.items():
        if value is None or str(key).lower() in skipped:
            continue
        if str(key).lower() in wanted or key == outcome_name:
            rows.append(feedback_row(trajectory_id, str(key), _number(value), source=source))
    return rows


def metadata_columns(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The ``trajectories`` columns that chat-style records keep in their ``metadata`` (chat
    JSONL, Responses conversation logs): ``dataset``, ``domain`` (else ``task_type``),
    ``task_id`` (as text) and ``agent_name`` (``agent``, else ``agent_name``)."""
    return {
        "dataset": metadata.get("dataset"),
        "domain": metadata.get("domain", metadata.get("task_type")),
        "task_id": None if metadata.get("task_id") is None else str(metadata["task_id"]),
        "agent_name": metadata.get("agent", metadata.get("agent_name")),
    }


def json_text(value: Any) -> str | None:
    """``value`` as compact JSON text with sorted keys (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = loads(value)
        except ValueError:
            return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 string (``datetime.fromisoformat``), an RFC 2822 date (``email.utils``) or a
    Unix time in seconds, milliseconds or nanoseconds (a number or numeric text) as an aware UTC
    datetime; naive times are taken as UTC. ``None`` for null or ``""`` (no time given).

    Raises:
        ValueError: any other value (``"not a date"``, a year out of range, ``NaN``): a time that
            does not parse quarantines its record instead of silently reordering its steps.
    """
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
            if seconds > 1e17:
                seconds /= 1e9
            elif seconds > 1e11:
                seconds /= 1e3
            return datetime.fromtimestamp(seconds, tz=UTC)
        if not isinstance(value, str):
            raise TypeError(type(value).__name__)
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            parsed = parsedate_to_datetime(value)
    except (ValueError, TypeError, OverflowError, OSError, IndexError):
        raise ValueError(f"not a date and time: {truncate(value, 80)}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def label_from_reward(reward: float | None, threshold: float) -> str:
    """``success`` when ``reward >= threshold``, ``failure`` below it, ``unknown`` without one
    (or when it is ``NaN``, which a JSON writer such as Python's may put for a missing value)."""
    if reward is None or math.isnan(reward):
        return "unknown"
    return "success" if reward >= threshold else "failure"


def content_text(content: Any) -> str | None:
    """Message content as plain text: strings pass, lists of parts keep their ``text`` parts."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
    return json.dumps(content, ensure_ascii=False)


def _tool_call_parts(call: Mapping[str, Any]) -> tuple[str | None, str | None, Any]:
    function = call.get("function")
    if isinstance(function, Mapping):
        return call.get("id"), function.get("name"), function.get("arguments")
    return call.get("id"), call.get("name"), call.get("arguments")


def _usage(message: Mapping[str, Any]) -> tuple[int | None, int | None]:
    usage = message.get("usage")
    if not isinstance(usage, Mapping):
        return None, None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return (
        int(prompt) if isinstance(prompt, int | float) else None,
        int(completion) if isinstance(completion, int | float) else None,
    )


def chat_steps(
    trajectory_id: str, messages: Iterable[Any], *, model: str | None = None
) -> list[dict[str, Any]]:
    """Map OpenAI chat messages onto ``steps`` rows, in order.

    Raises:
        ValueError: a message is not an object, has no known role, or a tool call has no name.
    """
    steps: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"message {position} is not an object")
        role = message.get("role")
        if role not in ("system", "user", "assistant", "tool", "function", "developer"):
            raise ValueError(f"message {position} has unknown role {role!r}")
        text = content_text(message.get("content"))
        stamp = parse_time(message.get("timestamp"))
        input_tokens, output_tokens = _usage(message)
        base = {
            "trajectory_id": trajectory_id,
            "model": message.get("model") or (model if role == "assistant" else None),
            "started_at": stamp,
            "ended_at": stamp,
            "is_error": False,
        }
        if role in ("tool", "function"):
            call_id = message.get("tool_call_id") or message.get("id")
            name = message.get("name") or call_names.get(str(call_id))
            flagged = message.get("error")
            is_error = (
                bool(flagged)
                if isinstance(flagged, bool)
                else bool(text and ERROR_TEXT.match(text))
            )
            steps.append(
                base
                | {
                    "role": "tool",
                    "step_type": "tool_result",
                    "tool_name": name,
                    "tool_call_id": None if call_id is None else str(call_id),
                    "tool_result_text": text,
                    "is_error": is_error,
                    "error_message": (text or "").strip().splitlines()[0][:500]
                    if is_error and text and text.strip()
                    else None,
                }
            )
            continue
        calls = message.get("tool_calls") or []
        if not isinstance(calls, list):
            raise ValueError(f"message {position}: tool_calls is not a list")
        if role != "assistant" or text or not calls:
            steps.append(
                base
                | {
                    "role": "system" if role == "developer" else role,
                    "step_type": "system" if role == "developer" else role,
                    "content_text": text,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                }
            )
            input_tokens = output_tokens = None
        for number, call in enumerate(calls):
            if not isinstance(call, Mapping):
                raise ValueError(f"message {position}: tool call {number} is not an object")
            call_id, name, arguments = _tool_call_parts(call)
            if not name:
                raise ValueError(f"message {position}: tool call {number} has no name")
            if call_id is not None:
                call_names[str(call_id)] = name
            steps.append(
                base
                | {
                    "role": "assistant",
                    "step_type": "tool_call",
                    "tool_name": name,
                    "tool_call_id": None if call_id is None else str(call_id),
                    "tool_args": json_text(arguments),
                    "input_tokens": input_tokens if number == 0 else None,
                    "output_tokens": output_tokens if number == 0 else None,
                }
            )
    for idx, step in enumerate(steps):
        step["step_idx"] = idx
    return steps


def finish_steps(steps: list[dict[str, Any]], *, drop_actor: bool = False) -> list[dict[str, Any]]:
    """Number ``steps`` 0.. in order (``step_idx``) and, unless they name more than one agent,
    clear their ``actor``: set it to ``None``, or remove the key with ``drop_actor``."""
    single = len({s.get("actor") for s in steps if s.get("actor")}) <= 1
    for idx, step in enumerate(steps):
        step["step_idx"] = idx
        if single and drop_actor:
            step.pop("actor", None)
        elif single:
            step["actor"] = None
    return steps


def tool_error_count(steps: Iterable[Mapping[str, Any]]) -> int:
    """How many ``tool_result`` steps are errors (``n_tool_errors`` for the formats that count
    only tool failures, not failed LLM calls as :func:`finish_trajectory` does)."""
    return sum(1 for s in steps if s["step_type"] == "tool_result" and s.get("is_error"))


def finish_trajectory(trajectory: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Fill the derived columns of a ``trajectories`` row from its steps, keeping values already set:
    n_steps, n_tool_calls, n_tool_errors, token sums, system_prompt (first system step), task_input
    (first user step), final_output (last assistant text), started_at / ended_at (step times)."""

    def first(step_type: str) -> str | None:
        return next((s.get("content_text") for s in steps if s["step_type"] == step_type), None)

    def tokens(key: str) -> int | None:
        values = [s[key] for s in steps if s.get(key) is not None]
        return sum(values) if values else None

    times = [s["started_at"] for s in steps if s.get("started_at") is not None]
    derived = {
        "n_steps": len(steps),
        "n_tool_calls": sum(s["step_type"] == "tool_call" for s in steps),
        "n_tool_errors": sum(bool(s.get("is_error")) for s in steps),
        "input_tokens": tokens("input_tokens"),
        "output_tokens": tokens("output_tokens"),
        "system_prompt": first("system"),
        "task_input": first("user"),
        "final_output": next(
            (
                s.get("content_text")
                for s in reversed(steps)
                if s["step_type"] == "assistant" and s.get("content_text")
            ),
            None,
        ),
        "started_at": min(times) if times else None,
        "ended_at": max(times) if times else None,
    }
    for key, value in derived.items():
        if trajectory.get(key) is None:
            trajectory[key] = value
    return trajectory


def truncate(raw: Any, limit: int = 2000) -> str:
    """A raw record as text, cut to ``limit`` characters for the quarantine, with characters
    that UTF-8 cannot hold (lone surrogates) written as ``\\udXXX`` escapes."""
    try:
        text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):  # nested too deeply for the encoder
        text = repr(raw)[:limit] if not isinstance(raw, dict | list) else f"<{type(raw).__name__}>"
    text = text if len(text) <= limit else text[:limit] + "…"
    # lone surrogates (a "\ud800" escape, bytes that were not UTF-8) cannot be written as UTF-8
    return text.encode("utf-8", "backslashreplace").decode("utf-8")

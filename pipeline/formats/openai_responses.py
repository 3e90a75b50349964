"""OpenAI Responses API conversations: one trajectory per line (or per JSON array item).

Specification: the Responses API reference, https://platform.openai.com/docs/api-reference/responses
(``POST /v1/responses`` and its ``Response`` object), with the exact field names taken from the
generated types of openai-python v3.54.0, ``src/openai/types/responses/`` (``response.py``,
``response_output_item.py``, ``response_input_item.py``).

A record is either

- a ``Response`` object: ``{"id": "resp_...", "object": "response", "created_at", "completed_at",
  "model", "status": "completed" | "failed" | "incomplete" | "cancelled" | ..., "error": {"code",
  "message"} | null, "incomplete_details": {"reason"} | null, "instructions": str | [items],
  "output": [items], "usage": {"input_tokens", "output_tokens", ...}, "metadata": {str: str},
  "previous_response_id", "conversation": {"id"}, "user", "safety_identifier"}``; or
- a conversation log: ``{"id", "input": str | [items], "instructions", "output": [items] |
  "response": {Response}, "request": {"input", "instructions", "model"} (optional), "model",
  "metadata", "outcome", "reward", "feedback": [{name, value, comment, source, step_idx}]}``.

Items (``input`` and ``output``; a message may omit ``type``): ``message`` (``role``: user /
assistant / system / developer; ``content``: str or parts ``input_text`` / ``output_text`` /
``refusal`` / ``input_image`` / ``input_file``), ``function_call`` (``call_id``, ``name``,
``arguments``: JSON text), ``function_call_output`` (``call_id``, ``output``: str or content
parts, ``status``), ``custom_tool_call`` / ``custom_tool_call_output`` (``input`` / ``output``),
``computer_call`` / ``computer_call_output``, ``local_shell_call`` / ``local_shell_call_output``,
``shell_call`` / ``shell_call_output`` (``output``: [{``stdout``, ``stderr``, ``outcome``:
{``type``: exit, ``exit_code``} | {``type``: timeout}}]), ``apply_patch_call`` /
``apply_patch_call_output``, the hosted tools whose result is inside the call item
(``web_search_call``, ``file_search_call``, ``code_interpreter_call``, ``image_generation_call``,
``mcp_call``) and ``reasoning`` (``summary`` / ``content`` texts). Other item types (MCP tool
lists and approvals, item references, compaction) have no step; their counts go to
``metadata.skipped_items``.

Mapping:

- ``trajectory_id``: the record's ``id`` (conversation id), else the response's ``id``. One line
  is one trajectory: responses chained by ``previous_response_id`` are *not* joined (a log may
  hold only some links of a chain, and each response already carries the history it was given as
  ``input``); ``previous_response_id`` and ``response_id`` are kept in ``metadata``, and
  ``session_id`` is ``conversation.id`` (else ``metadata.session_id``), which groups them.
- ``instructions`` is a ``system`` step, then the input items, then the output items. The
  response's ``usage`` tokens go on the first output step (and the trajectory), its ``model``
  on the output steps.
- A tool output is an error (``is_error``) when its item's ``status`` is ``incomplete``
  (``failed`` for apply_patch), when a shell command exits non-zero or times out, when its text
  starts with ``Error``, ``Exception``, ``Traceback`` or ``An error occurred`` (the Agents SDK's
  default tool-failure text), or when it is a JSON object with a truthy ``error``; a hosted tool
  call is an error when its ``status`` is ``failed`` or ``incomplete`` (``mcp_call``: its
  ``error``). ``error_message`` is the error text's first line.
- Outcome: feedback rows from ``outcome`` and ``reward`` (source ``record``), from ``feedback``
  items, and from ``metadata`` keys named like outcomes (``outcome``, ``success``, ``reward``,
  ``score``, ... -- see ``OUTCOME_FEEDBACK_NAMES``; numeric strings become numbers; source
  ``metadata``), read by ``outcome_from_feedback``; without any the outcome is ``unknown``.
  ``termination_reason`` is the response ``status`` (``failed: <error message>``,
  ``incomplete: <reason>``).
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ijson

from pipeline.formats._common import (
    OUTCOME_FEEDBACK_NAMES,
    Parsed,
    Quarantined,
    Record,
    feedback_row,
    finish_trajectory,
    json_text,
    outcome_from_feedback,
    parse_time,
    truncate,
)
from pipeline.formats._io import ReadOptions, iter_json_records, peek_first_json_line

__all__ = [
    "NAME",
    "first_record",
    "item_steps",
    "metadata_feedback",
    "parts_text",
    "read",
    "sniff",
]

NAME = "openai-responses"

# Item types whose output comes back in a separate ``*_output`` item, and the tool name they get.
_CLIENT_TOOLS = {
    "computer_call": "computer",
    "local_shell_call": "local_shell",
    "shell_call": "shell",
    "apply_patch_call": "apply_patch",
}
_CALL_OUTPUTS = {
    "function_call_output": None,
    "custom_tool_call_output": None,
    "computer_call_output": "computer",
    "local_shell_call_output": "local_shell",
    "shell_call_output": "shell",
    "apply_patch_call_output": "apply_patch",
}
# Hosted tools: the call item holds its own result.
_HOSTED_TOOLS = {
    "web_search_call": "web_search",
    "file_search_call": "file_search",
    "code_interpreter_call": "code_interpreter",
    "image_generation_call": "image_generation",
    "mcp_call": None,
}
_ITEM_TYPES = frozenset(
    {"message", "function_call", "custom_tool_call", "reasoning"}
    | set(_CLIENT_TOOLS)
    | set(_CALL_OUTPUTS)
    | set(_HOSTED_TOOLS)
)
_MESSAGE_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
_ERROR_OUTPUT = re.compile(r"^\s*(error|exception|traceback|an error occurred)\b", re.IGNORECASE)
# Top-level keys of other formats' records (trace spans, Langfuse traces and observations,
# LangSmith runs) that also have ``input`` and ``output``: a conversation log has none of them.
_FOREIGN_KEYS = (
    "object",
    "type",
    "trace_id",
    "traceId",
    "run_type",
    "observations",
    "htmlPath",
    "html_path",
    "projectId",
    "project_id",
    "startTime",
    "start_time",
    "parent_run_id",
)
# Metadata keys read as outcome feedback, besides OUTCOME_FEEDBACK_NAMES.
_EXTRA_OUTCOME_KEYS = ("score",)


# --- sniffing -----------------------------------------------------------------------------------


def first_record(head: bytes) -> Any:
    """The first JSON record in ``head`` (a file's first bytes): the first item of a top-level
    JSON array (parsed incrementally, so a cut-off array still gives it), else the first line
    parsed as JSON, else the whole head as one JSON document. ``None`` when none parses."""
    text = head.lstrip()
    if text.startswith(b"\xef\xbb\xbf"):
        text = text[3:].lstrip()
    if text.startswith(b"["):
        try:
            for item in ijson.items(io.BytesIO(text), "item", use_float=True):
                return item
        except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError):
            return None
        return None
    first = peek_first_json_line(text)
    if first is not None:
        return first
    try:
        return json.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def _looks_like_item(item: Any) -> bool:
    if not isinstance(item, Mapping):
        return False
    if item.get("type") in _ITEM_TYPES - {"message"}:
        return True
    content = item.get("content")
    return (
        item.get("role") in _MESSAGE_ROLES
        and isinstance(content, list)
        and any(
            isinstance(p, Mapping) and p.get("type") in ("input_text", "output_text")
            for p in content
        )
    )


def sniff(path: Path, head: bytes) -> bool:
    """True when the first record is a Responses ``Response`` object (``"object": "response"``
    with an ``output`` list), holds one under ``response``, or has an ``input`` and an
    ``output`` list with Responses items (typed items, or messages with ``input_text`` /
    ``output_text`` parts). Chat JSONL (``messages``) and records with other formats' keys
    (``type``, ``object``, ``trace_id``/``traceId``, ``run_type``, ``observations``,
    ``startTime``, ...: spans, Langfuse traces and observations, LangSmith runs) are not
    claimed."""
    record = first_record(head)
    if not isinstance(record, Mapping) or "messages" in record:
        return False
    if record.get("object") == "response":
        return isinstance(record.get("output"), list)
    response = record.get("response")
    if isinstance(response, Mapping) and response.get("object") == "response":
        return True
    if any(k in record for k in _FOREIGN_KEYS):
        return False
    output, given = record.get("output"), record.get("input")
    if "input" not in record or not isinstance(output, list):
        return False
    items = output + (given if isinstance(given, list) else [])
    return any(_looks_like_item(item) for item in items)


# --- items --------------------------------------------------------------------------------------


def parts_text(content: Any) -> str | None:
    """Message or tool-output content as text: a string as is; for a list of parts, the text of
    text parts (``input_text``, ``output_text``, ``summary_text``, ...), the ``refusal`` of
    refusal parts and ``[image]`` / ``[file <name>]`` / ``[audio]`` placeholders, one per line."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return json.dumps(content, ensure_ascii=False)
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif not isinstance(part, Mapping):
            continue
        elif part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        elif part.get("type") == "input_image":
            texts.append("[image]")
        elif part.get("type") == "input_file":
            texts.append(f"[file {part.get('filename') or part.get('file_id') or ''}]".strip())
        elif part.get("type") == "input_audio":
            texts.append("[audio]")
    return "\n".join(texts)


def _first_line(text: str | None) -> str | None:
    lines = (text or "").strip().splitlines()
    return lines[0][:500] if lines else None


def _output_result(kind: str, item: Mapping[str, Any]) -> tuple[str | None, bool, str | None]:
    """``(text, is_error, error_message)`` of a ``*_call_output`` item."""
    output = item.get("output")
    status = item.get("status")
    if kind == "shell_call_output" and isinstance(output, list):
        texts: list[str] = []
        problems: list[str] = []
        for chunk in output:
            if not isinstance(chunk, Mapping):
                continue
            texts.extend(str(chunk[k]) for k in ("stdout", "stderr") if chunk.get(k))
            outcome = chunk.get("outcome")
            outcome = outcome if isinstance(outcome, Mapping) else {}
            if outcome.get("type") == "timeout":
                problems.append("timeout")
            elif outcome.get("type") == "exit" and outcome.get("exit_code") not in (0, None):
                stderr = _first_line(chunk.get("stderr"))
                problems.append(
                    f"exit code {outcome['exit_code']}" + (f": {stderr}" if stderr else "")
                )
        return "\n".join(texts), bool(problems), "; ".join(problems)[:500] or None
    # A dict output is a screenshot or similar binary payload: keep only its kind.
    text = (
        f"[{output.get('type') or 'output'}]" if isinstance(output, Mapping) else parts_text(output)
    )
    if status == "incomplete" or (kind == "apply_patch_call_output" and status == "failed"):
        return text, True, _first_line(text) or f"tool output {status}"
    if text and _ERROR_OUTPUT.match(text):
        return text, True, _first_line(text)
    if text and text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping) and parsed.get("error"):
            error = parsed["error"]
            message = error.get("message") if isinstance(error, Mapping) else None
            return text, True, _first_line(str(message or error))
    return text, False, None


def _hosted_result(kind: str, item: Mapping[str, Any]) -> tuple[Any, str | None]:
    """``(arguments, result text)`` of a hosted tool call that carries its own result."""
    if kind == "web_search_call":
        action = item.get("action") or {}
        sources = action.get("sources") if isinstance(action, Mapping) else None
        urls = [str(s["url"]) for s in sources or [] if isinstance(s, Mapping) and s.get("url")]
        return action, "\n".join(urls) or None
    if kind == "file_search_call":
        results = item.get("results") or []
        texts = [
            f"{r.get('filename') or r.get('file_id')}: {r.get('text') or ''}".strip()
            for r in results
            if isinstance(r, Mapping)
        ]
        return {"queries": item.get("queries")}, "\n".join(texts) or None
    if kind == "code_interpreter_call":
        outputs = item.get("outputs") or []
        texts = [
            str(o.get("logs") or "")
            if o.get("type") == "logs"
            else f"[image {o.get('url') or ''}]".strip()
            for o in outputs
            if isinstance(o, Mapping)
        ]
        return {"code": item.get("code")}, "\n".join(t for t in texts if t) or None
    if kind == "image_generation_call":
        return {}, "[image]" if item.get("result") else None
    output = item.get("output")
    return item.get("arguments"), None if output is None else str(output)


def item_steps(
    trajectory_id: str,
    items: Iterable[Any],
    *,
    model: str | None = None,
    call_names: dict[str, str] | None = None,
    skipped: Counter[str] | None = None,
    what: str = "item",
) -> list[dict[str, Any]]:
    """Map Responses API items (see the module docstring) onto ``steps`` rows, in order, without
    ``step_idx``. ``call_names`` (``call_id`` -> tool name) is filled and read so that outputs
    resolve the name of calls made in earlier items or lists; ``skipped`` counts the item types
    that have no step; ``model`` is set on the assistant's steps; ``what`` names the list in
    error messages (``input item 3: ...``).

    Raises:
        ValueError: an item is not an object, has neither a known ``type`` nor a ``role``, a
            message has an unknown role, or a function call has no ``name``.
    """
    names: dict[str, str] = {} if call_names is None else call_names
    steps: list[dict[str, Any]] = []

    def add(**columns: Any) -> None:
        steps.append({"trajectory_id": trajectory_id, "is_error": False} | columns)

    for position, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"{what} {position} is not an object")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind is None:
            raise ValueError(f"{what} {position} has neither 'type' nor 'role'")
        if kind == "message":
            role = item.get("role")
            if role not in _MESSAGE_ROLES:
                raise ValueError(f"{what} {position}: message has unknown role {role!r}")
            role = "system" if role == "developer" else role
            add(
                role=role,
                step_type=role,
                content_text=parts_text(item.get("content")),
                model=model if role == "assistant" else None,
            )
        elif kind in ("function_call", "custom_tool_call") or kind in _CLIENT_TOOLS:
            name = item.get("name") or _CLIENT_TOOLS.get(kind)
            if not name:
                raise ValueError(f"{what} {position}: {kind} has no 'name'")
            call_id = item.get("call_id") or item.get("id")
            arguments = {
                "function_call": item.get("arguments"),
                "custom_tool_call": item.get("input"),
                "apply_patch_call": item.get("operation"),
            }.get(kind, item.get("action", item.get("actions")))
            if call_id is not None:
                names[str(call_id)] = str(name)
            add(
                role="assistant",
                step_type="tool_call",
                tool_name=str(name),
                tool_call_id=None if call_id is None else str(call_id),
                tool_args=json_text(arguments),
                model=model,
            )
        elif kind in _CALL_OUTPUTS:
            call_id = item.get("call_id") or item.get("id")
            text, is_error, message = _output_result(kind, item)
            add(
                role="tool",
                step_type="tool_result",
                tool_name=names.get(str(call_id)) or _CALL_OUTPUTS[kind],
                tool_call_id=None if call_id is None else str(call_id),
                tool_result_text=text,
                is_error=is_error,
                error_message=message,
            )
        elif kind in _HOSTED_TOOLS:
            name = _HOSTED_TOOLS[kind] or item.get("name") or kind
            call_id = None if item.get("id") is None else str(item["id"])
            arguments, text = _hosted_result(kind, item)
            status = item.get("status")
            error = item.get("error") or (
                f"{kind} {status}" if status in ("failed", "incomplete") else None
            )
            add(
                role="assistant",
                step_type="tool_call",
                tool_name=str(name),
                tool_call_id=call_id,
                tool_args=json_text(arguments),
                model=model,
            )
            add(
                role="tool",
                step_type="tool_result",
                tool_name=str(name),
                tool_call_id=call_id,
                tool_result_text=text,
                is_error=bool(error),
                error_message=_first_line(str(error)) if error else None,
            )
        elif kind == "reasoning":
            text = "\n".join(
                t for t in (parts_text(item.get("summary")), parts_text(item.get("content"))) if t
            )
            if text:
                add(role="assistant", step_type="reasoning", content_text=text, model=model)
        elif skipped is not None:
            skipped[str(kind)] += 1
    return steps


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
    :func:`~pipeline.formats._common.feedback_row` stores them."""
    wanted = {n.lower() for n in (*OUTCOME_FEEDBACK_NAMES, *_EXTRA_OUTCOME_KEYS)}
    skipped = {s.lower() for s in skip}
    rows = []
    for key, value in metadata.items():
        if value is None or str(key).lower() in skipped:
            continue
        if str(key).lower() in wanted or key == outcome_name:
            rows.append(feedback_row(trajectory_id, str(key), _number(value), source=source))
    return rows


# --- records ------------------------------------------------------------------------------------


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is not an object")
    return value


def _items(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a string or a list")
    return value


def _tokens(usage: Mapping[str, Any], key: str) -> int | None:
    value = usage.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _termination(response: Mapping[str, Any], metadata: Mapping[str, Any]) -> str | None:
    status = response.get("status")
    error = response.get("error")
    if isinstance(error, Mapping) and error.get("message"):
        return f"{status or 'failed'}: {error['message']}"
    details = response.get("incomplete_details")
    if status == "incomplete" and isinstance(details, Mapping) and details.get("reason"):
        return f"incomplete: {details['reason']}"
    reason = status or metadata.get("termination_reason")
    return None if reason is None else str(reason)


def _feedback(
    trajectory_id: str, obj: Mapping[str, Any], metadata: Mapping[str, Any], options: ReadOptions
) -> list[dict[str, Any]]:
    rows = []
    if obj.get("outcome") is not None:
        rows.append(feedback_row(trajectory_id, "outcome", obj["outcome"], source="record"))
    reward = obj.get("reward")
    if reward is not None:
        if isinstance(reward, bool) or not isinstance(reward, int | float):
            raise ValueError(f"'reward' is not a number: {reward!r}")
        rows.append(feedback_row(trajectory_id, "reward", float(reward), source="record"))
    for number, item in enumerate(obj.get("feedback") or []):
        if not isinstance(item, Mapping) or not item.get("name"):
            raise ValueError(f"feedback item {number} has no 'name'")
        step_idx = item.get("step_idx")
        rows.append(
            feedback_row(
                trajectory_id,
                str(item["name"]),
                item.get("value"),
                source=item.get("source"),
                comment=item.get("comment"),
                step_idx=step_idx if isinstance(step_idx, int) else None,
            )
        )
    rows += metadata_feedback(
        trajectory_id,
        metadata,
        source="metadata",
        outcome_name=options.outcome_feedback,
        skip=[r["name"] for r in rows],
    )
    return rows


def _record(obj: Any, options: ReadOptions, where: str) -> Record:
    if not isinstance(obj, Mapping):
        raise ValueError("record is not a JSON object")
    if obj.get("object") == "response":
        response: Mapping[str, Any] = obj
    else:
        response = _mapping(obj.get("response"), "'response'")
    request = _mapping(obj.get("request"), "'request'")
    conversation = response.get("conversation") or obj.get("conversation")
    conversation_id = conversation.get("id") if isinstance(conversation, Mapping) else conversation
    trajectory_id = obj.get("id") or response.get("id")
    if not isinstance(trajectory_id, str | int) or trajectory_id == "":
        raise ValueError("missing 'id' (conversation or response id)")
    trajectory_id = str(trajectory_id)
    metadata = dict(_mapping(response.get("metadata"), "'response.metadata'"))
    if obj is not response:
        metadata.update(_mapping(obj.get("metadata"), "'metadata'"))
    output = obj.get("output") if obj is not response else None
    if output is None:
        output = response.get("output")
    if not isinstance(output, list):
        raise ValueError("no 'output' list (neither in the record nor in its 'response')")
    given = obj.get("input") if obj.get("input") is not None else request.get("input")
    model = (
        response.get("model") or obj.get("model") or request.get("model") or metadata.get("model")
    )
    model = None if model is None else str(model)
    instructions = next(
        (
            v
            for v in (
                obj.get("instructions"),
                request.get("instructions"),
                response.get("instructions"),
            )
            if v
        ),
        None,
    )
    names: dict[str, str] = {}
    skipped: Counter[str] = Counter()
    steps = item_steps(
        trajectory_id,
        [{"role": "system", "content": instructions}]
        if isinstance(instructions, str)
        else _items(instructions, "'instructions'"),
        call_names=names,
        skipped=skipped,
        what="instructions item",
    )
    steps += item_steps(
        trajectory_id,
        _items(given, "'input'"),
        call_names=names,
        skipped=skipped,
        what="input item",
    )
    outputs = item_steps(
        trajectory_id, output, model=model, call_names=names, skipped=skipped, what="output item"
    )
    usage = _mapping(response.get("usage") or obj.get("usage"), "'usage'")
    input_tokens, output_tokens = _tokens(usage, "input_tokens"), _tokens(usage, "output_tokens")
    if outputs:
        outputs[0] |= {"input_tokens": input_tokens, "output_tokens": output_tokens}
    steps += outputs
    for idx, step in enumerate(steps):
        step["step_idx"] = idx
    feedback = _feedback(trajectory_id, obj, metadata, options)
    label, score, source = outcome_from_feedback(
        feedback, options.reward_threshold, options.outcome_feedback
    )
    trial = metadata.get("trial")
    extra = {
        "response_id": response.get("id"),
        "previous_response_id": response.get("previous_response_id"),
        "status": response.get("status"),
        "skipped_items": dict(skipped) or None,
    }
    trajectory = {
        "trajectory_id": trajectory_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        "dataset": metadata.get("dataset"),
        "domain": metadata.get("domain", metadata.get("task_type")),
        "task_id": None if metadata.get("task_id") is None else str(metadata["task_id"]),
        "trial": int(trial) if isinstance(trial, int | str) and str(trial).isdigit() else None,
        "agent_name": metadata.get("agent", metadata.get("agent_name")),
        "model": model,
        "session_id": conversation_id or metadata.get("session_id"),
        "user_id": response.get("user")
        or response.get("safety_identifier")
        or metadata.get("user_id"),
        "started_at": parse_time(response.get("created_at") or obj.get("created_at")),
        "ended_at": parse_time(response.get("completed_at")),
        "outcome_label": label,
        "outcome_score": score,
        "outcome_source": source,
        "termination_reason": _termination(response, metadata),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "metadata": json_text(metadata | {k: v for k, v in extra.items() if v is not None}),
    }
    return Record(finish_trajectory(trajectory, steps), steps, feedback, where)


def read(path: Path, options: ReadOptions) -> Iterator[Parsed]:
    """Yield one :class:`Record` or :class:`Quarantined` per line of a JSON Lines file, or per
    item of a JSON array (a single JSON object is one record).

    Raises:
        InputError: the file cannot be opened, is empty, or is not UTF-8 / JSON as a whole.
    """
    for item in iter_json_records(path, options):
        if isinstance(item, Quarantined):
            yield item
            continue
        where, obj = item
        try:
            yield _record(obj, options, where)
        except (ValueError, TypeError, AttributeError) as exc:
            yield Quarantined(where, str(exc), truncate(obj))

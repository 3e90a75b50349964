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
``metadata.skipped_items``. Items are mapped by
:func:`~pipeline.ingest.formats._responses_items.item_steps`, shared with
:mod:`~pipeline.ingest.formats.openai_agents`.

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

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.ingest.formats._common import (
    Parsed,
    Record,
    feedback_row,
    finish_trajectory,
    json_text,
    metadata_columns,
    metadata_feedback,
    outcome_from_feedback,
    parse_time,
)
from pipeline.ingest.formats._io import ReadOptions, first_record, iter_json_records, map_records
from pipeline.ingest.formats._responses_items import item_steps, looks_like_item

__all__ = ["NAME", "read", "sniff"]

NAME = "openai-responses"

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


# --- sniffing -----------------------------------------------------------------------------------


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
    return any(looks_like_item(item) for item in items)


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
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not math.isfinite(value):
        raise ValueError(f"usage {key} is not a finite number: {value!r}")
    return int(value)


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
        **metadata_columns(metadata),
        "trial": int(trial) if isinstance(trial, int | str) and str(trial).isdigit() else None,
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
    yield from map_records(
        iter_json_records(path, options),
        lambda where, obj: _record(obj, options, where),
        (ValueError, TypeError, AttributeError, OverflowError),
    )

"""OpenAI Responses API items mapped onto ``steps`` rows: messages, function and custom tool
calls with their outputs, client tools (computer, local shell, shell, apply_patch), hosted tools
whose result is inside the call item, and reasoning summaries.

Used by :mod:`~pipeline.ingest.formats.openai_responses` (a response's ``input`` and ``output``) and
:mod:`~pipeline.ingest.formats.openai_agents` (the Responses items and ``Response`` objects of
generation and response spans).

Item shapes: the Responses API reference, https://platform.openai.com/docs/api-reference/responses,
with field names from the generated types of openai-python v3.54.0,
``src/openai/types/responses/`` (``response_output_item.py``, ``response_input_item.py``):
``message`` (``role``: user / assistant / system / developer; ``content``: str or parts
``input_text`` / ``output_text`` / ``refusal`` / ``input_image`` / ``input_file``; ``type`` may be
omitted), ``function_call`` (``call_id``, ``name``, ``arguments``: JSON text),
``function_call_output`` (``call_id``, ``output``: str or content parts, ``status``),
``custom_tool_call`` / ``custom_tool_call_output``, ``computer_call`` / ``computer_call_output``,
``local_shell_call`` / ``local_shell_call_output``, ``shell_call`` / ``shell_call_output``
(``output``: [{``stdout``, ``stderr``, ``outcome``: {``type``: exit, ``exit_code``} |
{``type``: timeout}}]), ``apply_patch_call`` / ``apply_patch_call_output``, ``web_search_call``,
``file_search_call``, ``code_interpreter_call``, ``image_generation_call``, ``mcp_call`` and
``reasoning``. When a tool output counts as an error is described in
:mod:`pipeline.ingest.formats.openai_responses`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.ingest.formats._common import json_text
from pipeline.ingest.formats._jsontext import loads

__all__ = ["item_steps", "looks_like_item", "parts_text"]

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


def looks_like_item(item: Any) -> bool:
    """True for a typed Responses item (other than ``message``), or a message whose content
    parts include ``input_text`` / ``output_text``; for sniffing."""
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
            parsed = loads(text)
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

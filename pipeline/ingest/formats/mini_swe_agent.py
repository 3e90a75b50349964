"""mini-swe-agent trajectories (SWE-agent/mini-swe-agent, ``<instance_id>.traj.json``).

Followed: the writers in https://github.com/SWE-agent/mini-swe-agent -- v1.x (``mini_version``
1.15.0): ``src/minisweagent/run/utils/save.py`` (``save_traj``) and
``src/minisweagent/agents/default.py`` (``DefaultAgent``, ``AgentConfig`` templates); v2.x:
``DefaultAgent.serialize`` and ``src/minisweagent/models/utils/actions_text.py`` /
``actions_toolcall.py``. One trajectory per file (a JSON Lines file or JSON array of such objects
also works, one trajectory per line or item)::

    {"info": {"exit_status": "Submitted" | "LimitsExceeded" | ..., "submission": str,
              "model_stats": {"instance_cost": USD, "api_calls": int}, "mini_version": str,
              "config": {"agent": {"system_template", "instance_template", "timeout_template",
                                   "format_error_template", "action_observation_template",
                                   "step_limit", "cost_limit"},
                         "model": {"model_name", "model_kwargs"}, "environment": {"image", ...},
                         "agent_type", "model_type", "environment_type"}},
     "messages": [{"role": "system" | "user" | "assistant" | "tool" | "exit", "content": str,
                   "extra": {"response": {"model", "created", "usage": {"prompt_tokens",
                             "completion_tokens", "cost"}}, "actions", "returncode",
                             "raw_output", "exception_info", "interrupt_type", "exit_status",
                             "timestamp"},
                   "tool_calls": [...], "tool_call_id": str}],
     "trajectory_format": "mini-swe-agent-1" | "mini-swe-agent-1.1", "instance_id": str}

Steps: the system and task messages as such; each assistant message is an ``assistant`` step
(its text, tokens from ``extra.response.usage``, model from ``extra.response.model``) followed by
one ``bash`` ``tool_call`` per action -- v1 parses actions from the text with the agent's regex
``` ```bash\\s*\\n(.*?)\\n``` ``` (one per fenced block; ``tool_args`` = ``{"command": ...}``),
v2 records them in ``extra.actions`` or as OpenAI ``tool_calls``. The harness's reply to that
turn (the next user / tool / exit message) is a ``tool_result``: an observation
``<returncode>N</returncode><output>...</output>`` is an error when N != 0 (``error_message``:
see :func:`~pipeline.ingest.formats._common.error_line`, else ``returncode N``); a format error (not
exactly one action), a timeout (the text of ``timeout_template`` before its first ``{{``) or
another interrupt is an error whose message is its ``<error>`` text or first line, prefixed with
v2's ``extra.interrupt_type``; the final ``Submitted`` message (the submission printed by the
last command) is not. A reply to several calls (a format error) keeps the tool name but no call id.
v1 call ids are made up as ``m<message>.<block>``; an ``exit`` message with no open turn (e.g.
``LimitsExceeded``) is no step, its status is the ``termination_reason``.

The trajectory is the task instance: ``trajectory_id`` = ``task_id`` = ``instance_id`` (else the
file name without ``.traj.json``), so that a SWE-bench results file (:mod:`.swe_bench_results`)
joins on it; for a SWE-bench id ``owner__repo-123`` the dataset is ``swe-bench`` and the domain
the repository ``owner/repo``. The file holds no outcome: ``outcome_label`` is ``unknown`` until
ingest takes it from the results' ``resolved`` feedback. ``termination_reason`` =
``info.exit_status``, ``cost_usd`` = ``info.model_stats.instance_cost``, ``final_output`` = the
submission (the patch).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.ingest.formats._common import (
    Parsed,
    Record,
    content_text,
    error_line,
    finish_trajectory,
    json_text,
    parse_time,
)
from pipeline.ingest.formats._io import (
    COMPRESSED_SUFFIXES,
    ReadOptions,
    json_documents,
    map_records,
)

__all__ = ["NAME", "read", "sniff"]

NAME = "mini-swe-agent"

_FORMAT = re.compile(rb'"trajectory_format"\s*:\s*"mini-swe-agent')
_INFO_FIRST = re.compile(
    rb'^\s*\[?\s*\{\s*"info"\s*:\s*\{\s*"(?:exit_status|submission|model_stats|config)"'
)
# v1 DefaultAgent.parse_action; v2's text-based models use ```mswea_bash_command blocks.
_ACTION = re.compile(r"```(?:bash|mswea_bash_command)\s*\n(.*?)\n```", re.DOTALL)
_RETURNCODE = re.compile(
    r"^\s*(?:<exception>.*?</exception>\s*)?<returncode>(-?\d+)</returncode>", re.DOTALL
)
_OUTPUT = re.compile(r"<output(?:_head|_tail)?>\n?(.*?)</output(?:_head|_tail)?>", re.DOTALL)
_ERROR_TAG = re.compile(r"<error>\s*(.*?)\s*</error>", re.DOTALL)
_SWE_BENCH_ID = re.compile(r"^(?P<owner>[\w.-]+)__(?P<repo>[\w.-]+)-\d+$")
_DEFAULT_TIMEOUT_PREFIX = "The last command <command>"
_TOOL = "bash"


def sniff(path: Path, head: bytes) -> bool:
    """True for a JSON object (or list / JSON Lines of objects) that names a ``mini-swe-agent``
    ``trajectory_format``, or opens with mini-swe-agent's ``{"info": {"exit_status" ...`` or
    carries ``info.mini_version`` with ``model_stats``."""
    text = head.lstrip()
    if text[:1] not in (b"{", b"["):
        return False
    return bool(
        _FORMAT.search(head)
        or _INFO_FIRST.match(head)
        or (b'"mini_version"' in head and b'"model_stats"' in head)
    )


def _instance_id(obj: Mapping[str, Any], path: Path, where: str) -> str:
    value = obj.get("instance_id")
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        return str(value)
    if where != "document":
        raise ValueError("no 'instance_id' (needed when a file holds several trajectories)")
    name = path.name
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    for suffix in (".traj.json", ".json", ".jsonl"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _object(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _usage(response: Any) -> tuple[int | None, int | None, float | None]:
    usage = _dig(response, "usage")
    if not isinstance(usage, Mapping):
        return None, None, None
    prompt = _number(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = _number(usage.get("completion_tokens", usage.get("output_tokens")))
    return (
        None if prompt is None else int(prompt),
        None if completion is None else int(completion),
        _number(usage.get("cost")),
    )


def _actions(message: Mapping[str, Any], index: int) -> list[tuple[str, str, Any]]:
    """``(call_id, tool_name, arguments)`` for each action of an assistant message."""
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        out = []
        for number, call in enumerate(calls):
            if not isinstance(call, Mapping):
                raise ValueError(f"message {index}: tool call {number} is not an object")
            function = _object(call.get("function")) or call
            name = function.get("name")
            if not name:
                raise ValueError(f"message {index}: tool call {number} has no name")
            call_id = call.get("id") or f"m{index}.{number}"
            out.append((str(call_id), str(name), function.get("arguments")))
        return out
    recorded = _dig(message, "extra", "actions")
    if isinstance(recorded, list) and recorded:
        out = []
        for number, action in enumerate(recorded):
            if not isinstance(action, Mapping) or not isinstance(action.get("command"), str):
                raise ValueError(f"message {index}: action {number} has no 'command'")
            call_id = action.get("tool_call_id") or f"m{index}.{number}"
            out.append((str(call_id), _TOOL, {"command": action["command"]}))
        return out
    text = content_text(message.get("content")) or ""
    return [
        (f"m{index}.{number}", _TOOL, {"command": block.strip()})
        for number, block in enumerate(_ACTION.findall(text))
    ]


def _observation(content: str, extra: Mapping[str, Any]) -> tuple[int, str] | None:
    """``(returncode, output)`` of an action observation, or ``None`` for other messages."""
    code = extra.get("returncode")
    if isinstance(code, int) and not isinstance(code, bool):
        raw = extra.get("raw_output")
        return code, raw if isinstance(raw, str) else content
    match = _RETURNCODE.match(content)
    if match is None:
        return None
    parts = _OUTPUT.findall(content)
    return int(match.group(1)), "\n".join(parts) if parts else content[match.end() :]


def _result(
    content: str,
    extra: Mapping[str, Any],
    exit_status: str | None,
    timeout_prefix: str,
) -> tuple[bool, str | None]:
    """``(is_error, error_message)`` of the harness's reply to an assistant turn."""
    observed = _observation(content, extra)
    if observed is not None:
        code, output = observed
        if code == 0:
            return False, None
        info = extra.get("exception_info")
        message = info if isinstance(info, str) and info else error_line(output)
        return True, message or f"returncode {code}"
    if exit_status is not None:
        if exit_status == "Submitted":
            return False, None
        first = error_line(content) if content.strip() else None
        return True, f"{exit_status}: {first}" if first else exit_status
    if timeout_prefix and content.lstrip().startswith(timeout_prefix):
        return True, "the command timed out and was killed"
    detail = _ERROR_TAG.search(content)
    first = next((line.strip() for line in content.splitlines() if line.strip()), None)
    text = detail.group(1).strip() if detail else first
    kind = extra.get("interrupt_type")
    message = f"{kind}: {text}" if kind and text else text or kind or "interrupt"
    return True, str(message)[:500]


def _steps(
    trajectory_id: str, messages: list[Any], info: Mapping[str, Any], model: str | None
) -> tuple[list[dict[str, Any]], float | None]:
    """The steps of a trajectory, and the sum of per-response costs (USD) when recorded."""
    template = _dig(info, "config", "agent", "timeout_template")
    timeout_prefix = (
        template.split("{{")[0] if isinstance(template, str) else _DEFAULT_TIMEOUT_PREFIX
    )
    final_status = info.get("exit_status") if isinstance(info.get("exit_status"), str) else None
    steps: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    turn_open = False
    costs: list[float] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"message {index} is not an object")
        role = message.get("role")
        extra = _object(message.get("extra"))
        text = content_text(message.get("content")) or ""
        stamp = parse_time(extra.get("timestamp") or _dig(extra, "response", "created"))
        base = {"trajectory_id": trajectory_id, "started_at": stamp, "ended_at": stamp}
        if role == "assistant":
            response = extra.get("response")
            step_model = _dig(response, "model") or model
            input_tokens, output_tokens, cost = _usage(response)
            cost = _number(extra.get("cost")) if cost is None else cost
            if cost is not None:
                costs.append(cost)
            calls = _actions(message, index)
            usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
            if text or not calls:
                steps.append(
                    base
                    | usage
                    | {
                        "role": "assistant",
                        "step_type": "assistant",
                        "content_text": text,
                        "model": step_model,
                        "is_error": False,
                    }
                )
                usage = {}
            pending = []
            for call_id, name, arguments in calls:
                step = base | {
                    "role": "assistant",
                    "step_type": "tool_call",
                    "tool_name": name,
                    "tool_call_id": call_id,
                    "tool_args": json_text(arguments),
                    "model": step_model,
                    "is_error": False,
                }
                steps.append(step | usage)
                usage = {}
                pending.append(step)
            turn_open = True
            continue
        if role == "tool":
            answered_id = message.get("tool_call_id")
            call: dict[str, Any] | None = next(
                (c for c in pending if c["tool_call_id"] == answered_id), None
            )
            call = call or (pending[0] if pending else None)
            if call is not None:
                pending.remove(call)
            is_error, error = _result(text, extra, None, timeout_prefix)
            steps.append(
                base
                | {
                    "role": "tool",
                    "step_type": "tool_result",
                    "tool_name": call["tool_name"] if call else _TOOL,
                    "tool_call_id": str(answered_id)
                    if answered_id
                    else (call or {}).get("tool_call_id"),
                    "tool_result_text": text,
                    "is_error": is_error,
                    "error_message": error,
                }
            )
            turn_open = bool(pending)
            continue
        if role in ("user", "exit") and turn_open:
            last = index == len(messages) - 1
            exit_status = extra.get("exit_status") if role == "exit" else None
            if exit_status is None and last and role == "user":
                exit_status = final_status
            if role == "exit" and exit_status is None:
                exit_status = final_status or "exit"
            is_error, error = _result(text, extra, exit_status, timeout_prefix)
            steps.append(
                base
                | {
                    "role": "tool",
                    "step_type": "tool_result",
                    "tool_name": pending[0]["tool_name"] if pending else None,
                    "tool_call_id": pending[0]["tool_call_id"] if len(pending) == 1 else None,
                    "tool_result_text": text,
                    "is_error": is_error,
                    "error_message": error,
                }
            )
            pending, turn_open = [], False
            continue
        if role == "exit":
            continue  # the run's end without a pending action: its status is termination_reason
        if role not in ("system", "user"):
            raise ValueError(f"message {index} has unknown role {role!r}")
        steps.append(
            base | {"role": role, "step_type": role, "content_text": text, "is_error": False}
        )
    for idx, step in enumerate(steps):
        step["step_idx"] = idx
    return steps, (sum(costs) if costs else None)


def _record(obj: Any, path: Path, where: str, options: ReadOptions) -> Record:
    if not isinstance(obj, Mapping):
        raise ValueError("trajectory is not a JSON object")
    messages = obj.get("messages")
    if not isinstance(messages, list):
        raise ValueError("'messages' is missing or not a list")
    info = _object(obj.get("info"))
    instance_id = _instance_id(obj, path, where)
    config = _object(info.get("config"))
    model = _dig(config, "model", "model_name") or next(
        (
            _dig(m, "extra", "response", "model")
            for m in messages
            if isinstance(m, Mapping) and _dig(m, "extra", "response", "model")
        ),
        None,
    )
    steps, response_costs = _steps(instance_id, messages, info, model)
    match = _SWE_BENCH_ID.match(instance_id)
    stats = _object(info.get("model_stats"))
    cost = _number(stats.get("instance_cost"))
    submission = info.get("submission")
    agent_config = _object(config.get("agent"))
    trajectory = {
        "trajectory_id": instance_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        "dataset": "swe-bench" if match else None,
        "domain": f"{match['owner']}/{match['repo']}" if match else None,
        "task_id": instance_id,
        "agent_name": NAME,
        "model": model,
        "outcome_label": "unknown",
        "termination_reason": info.get("exit_status"),
        "final_output": submission if isinstance(submission, str) and submission else None,
        "cost_usd": cost if cost is not None else response_costs,
        "metadata": json_text(
            {
                "trajectory_format": obj.get("trajectory_format"),
                "mini_version": info.get("mini_version"),
                "api_calls": stats.get("api_calls"),
                "agent_type": config.get("agent_type"),
                "model_type": config.get("model_type"),
                "environment_type": config.get("environment_type"),
                "environment_image": _dig(config, "environment", "image"),
                "step_limit": agent_config.get("step_limit"),
                "cost_limit": agent_config.get("cost_limit"),
            }
        ),
    }
    return Record(finish_trajectory(trajectory, steps), steps, [], where)


def read(path: Path, options: ReadOptions) -> Iterator[Parsed]:
    """Yield one :class:`Record` per trajectory of ``path`` (the file's one document, or each
    line / item), or a :class:`Quarantined` for a trajectory that cannot be used (not JSON,
    no ``messages`` list, a message without a known role, an action without a command).

    Raises:
        InputError: unreadable, empty, too large or not UTF-8.
    """
    records = json_documents(path, options)
    yield from map_records(records, lambda where, obj: _record(obj, path, where, options))

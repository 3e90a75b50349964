"""Who&When failure-attribution logs (ag2ai/Agents_Failure_Attribution, ICML 2025).

Followed: the dataset as published in https://github.com/ag2ai/Agents_Failure_Attribution
(``Who&When/Algorithm-Generated/*.json`` and ``Who&When/Hand-Crafted/*.json``, mirrored at
https://huggingface.co/datasets/Kevin355/Who_and_When) and the paper "Which Agent Causes Task
Failures and When?" (arXiv 2505.00212), in which ``mistake_step`` is the 0-based index of the
decisive message in ``history``. One run per file (a JSON Lines file or JSON array of runs also
works)::

    {"question": str, "question_ID": str, "level": "1" | "2" | "3" (GAIA) | "Easy" | "Medium" |
     "Hard" (AssistantBench), "ground_truth": str, "is_correct": bool | "True" | "False",
     "history": [{"content": str, "role": str, "name": str}], "mistake_agent": str,
     "mistake_step": str | int, "mistake_reason": str, "system_prompt": {agent_name: prompt}}

``history`` may also be JSON text of that list. Algorithm-Generated runs (CaptainAgent, AG2) name
the speaker in ``name``; Hand-Crafted runs (Magentic-One) have no ``name`` and put the speaker in
``role`` (``human``, ``Orchestrator (thought)``, ``Orchestrator (-> WebSurfer)``, ``WebSurfer``,
``FileSurfer``, ``Assistant``, ``ComputerTerminal``).

Steps. The speaking agent's name is the step's ``actor``.

- Algorithm-Generated: a ``Computer_terminal`` message is a ``tool_result`` (AG2's code executor
  answering ``exitcode: N (execution succeeded|failed)\\nCode output: ...``; an error when N != 0,
  ``error_message`` the last ``...Error: ...`` line of the output); every other message is an
  ``assistant`` step, followed, when the terminal speaks next, by one ``tool_call`` per code block
  it executed (AG2's ``CODE_BLOCK_PATTERN``; ``tool_name`` = the block's language, ``sh`` for
  sh/bash/shell; ``tool_args`` = ``{"code": ...}``; ids ``h<message>.<block>``). The terminal's
  "There is no code from the last 1 message for me to execute" is a result without a call.
- Hand-Crafted: ``human`` is a ``user`` step; ``Orchestrator (-> X)`` is a ``tool_call`` of
  ``X`` with ``{"request": ...}`` and X's reply its ``tool_result`` (``ComputerTerminal``'s
  "exited with an error" is an error); other messages are ``assistant`` steps whose agent is the
  role without its note (``Orchestrator (thought)`` -> ``Orchestrator``).

Outcome: ``is_correct`` is a ``feedback`` row (``is_correct`` 1.0 / 0.0, source
``who-and-when``) and gives the label. The annotation becomes step-level feedback at the step
the mistake's message maps to: ``mistake_agent`` and ``mistake_reason`` (text) and
``mistake_step`` (the original history index). ``trajectory_id`` =
``who-and-when/<algorithm-generated|hand-crafted>/<question_ID>``, ``task_id`` = ``question_ID``,
dataset ``who-and-when``, domain ``gaia`` (levels 1-3) or ``assistantbench`` (Easy / Medium /
Hard), ``task_input`` = the question.
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
    feedback_row,
    finish_trajectory,
    json_text,
    outcome_from_feedback,
)
from pipeline.ingest.formats._io import ReadOptions, json_documents, map_records
from pipeline.ingest.formats._jsontext import loads

__all__ = ["NAME", "read", "sniff"]

NAME = "who-and-when"
SOURCE = "who-and-when"

# autogen/code_utils.py CODE_BLOCK_PATTERN
_CODE_BLOCK = re.compile(r"```[ \t]*(\w+)?[ \t]*\r?\n(.*?)\r?\n[ \t]*```", re.DOTALL)
_EXITCODE = re.compile(r"^\s*exitcode:\s*(-?\d+)")
_CODE_OUTPUT = re.compile(r"Code output:\s?(.*)", re.DOTALL)
_DELEGATION = re.compile(r"^Orchestrator\s*\(\s*->\s*(.+?)\s*\)$")
_ROLE_NOTE = re.compile(r"\s*\(.*\)$")
_TERMINALS = frozenset({"computer_terminal", "computerterminal"})
_SHELLS = frozenset({"sh", "bash", "shell"})
_GAIA_LEVELS = frozenset({"1", "2", "3"})
_ASSISTANTBENCH_LEVELS = frozenset({"easy", "medium", "hard"})
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def sniff(path: Path, head: bytes) -> bool:
    """True for a JSON object (or list / JSON Lines of objects) with Who&When's ``question_ID``
    and one of ``history``, ``is_correct`` or ``mistake_agent``."""
    if head.lstrip()[:1] not in (b"{", b"["):
        return False
    return b'"question_ID"' in head and any(
        key in head for key in (b'"history"', b'"is_correct"', b'"mistake_agent"')
    )


def _flag(value: Any, what: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"'{what}' is not true/false: {value!r}")


def _history(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    history = obj.get("history")
    if isinstance(history, str):
        try:
            history = loads(history)
        except ValueError as exc:
            raise ValueError(f"'history' is text but not JSON: {exc}") from exc
    if not isinstance(history, list):
        raise ValueError("'history' is missing or not a list")
    for index, message in enumerate(history):
        if not isinstance(message, Mapping):
            raise ValueError(f"history[{index}] is not an object")
    return history


def _language(lang: str | None, code: str) -> str:
    """The tool name for an AG2 code block: its language (``sh`` for shells); an unlabelled block
    is ``sh`` when it starts like a shell command, else ``python`` (AG2's ``infer_lang``)."""
    if lang:
        lang = lang.lower()
        return "sh" if lang in _SHELLS else lang
    return "sh" if code.lstrip().startswith(("python ", "pip", "python3 ")) else "python"


def _terminal_result(text: str) -> tuple[bool, str | None]:
    match = _EXITCODE.match(text)
    if match is None:
        return False, None
    code = int(match.group(1))
    if code == 0:
        return False, None
    output = _CODE_OUTPUT.search(text)
    return True, error_line(output.group(1) if output else "") or f"exitcode {code}"


def _generated_steps(
    trajectory_id: str, history: list[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[int]]:
    """Steps of an Algorithm-Generated (AG2) run and the first step index of each message."""
    steps: list[dict[str, Any]] = []
    first: list[int] = []
    calls: list[dict[str, Any]] = []
    agents = [str(m.get("name") or m.get("role") or "") for m in history]
    for index, message in enumerate(history):
        first.append(len(steps))
        text = content_text(message.get("content")) or ""
        agent = agents[index]
        base = {"trajectory_id": trajectory_id, "is_error": False, "actor": agent or None}
        if agent.lower() in _TERMINALS:
            call = calls[-1] if calls else None
            is_error, error = _terminal_result(text)
            steps.append(
                base
                | {
                    "role": "tool",
                    "step_type": "tool_result",
                    "tool_name": call["tool_name"] if call else None,
                    "tool_call_id": call["tool_call_id"] if call else None,
                    "tool_result_text": text,
                    "is_error": is_error,
                    "error_message": error,
                }
            )
            calls = []
            continue
        steps.append(
            base
            | {"role": "assistant", "step_type": "assistant", "content_text": text, "actor": agent}
        )
        calls = []
        executed = index + 1 < len(history) and agents[index + 1].lower() in _TERMINALS
        for number, (lang, code) in enumerate(_CODE_BLOCK.findall(text) if executed else []):
            call = base | {
                "role": "assistant",
                "step_type": "tool_call",
                "tool_name": _language(lang, code),
                "tool_call_id": f"h{index}.{number}",
                "tool_args": json_text({"code": code}),
                "actor": agent,
            }
            steps.append(call)
            calls.append(call)
    return steps, first


def _handcrafted_steps(
    trajectory_id: str, history: list[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[int]]:
    """Steps of a Hand-Crafted (Magentic-One) run, one per message."""
    steps: list[dict[str, Any]] = []
    pending: dict[str, str] = {}
    for index, message in enumerate(history):
        text = content_text(message.get("content")) or ""
        agent = str(message.get("role") or "")
        base = {"trajectory_id": trajectory_id, "is_error": False, "actor": agent or None}
        delegation = _DELEGATION.match(agent)
        if agent == "human":
            steps.append(
                base | {"role": "user", "step_type": "user", "content_text": text, "actor": None}
            )
        elif delegation:
            target = delegation.group(1)
            pending[target] = f"h{index}"
            steps.append(
                base
                | {
                    "role": "assistant",
                    "step_type": "tool_call",
                    "tool_name": target,
                    "tool_call_id": f"h{index}",
                    "tool_args": json_text({"request": text}),
                    "actor": "Orchestrator",
                }
            )
        elif agent in pending:
            is_error = agent.lower() in _TERMINALS and "exited with an error" in text
            steps.append(
                base
                | {
                    "role": "tool",
                    "step_type": "tool_result",
                    "tool_name": agent,
                    "tool_call_id": pending.pop(agent),
                    "tool_result_text": text,
                    "is_error": is_error,
                    "error_message": error_line(text) if is_error else None,
                }
            )
        else:
            steps.append(
                base
                | {
                    "role": "assistant",
                    "step_type": "assistant",
                    "content_text": text,
                    "actor": _ROLE_NOTE.sub("", agent) or None,
                }
            )
    return steps, list(range(len(steps)))


def _system_prompt(value: Any) -> str | None:
    if isinstance(value, Mapping):
        parts = [f"# {name}\n{prompt}" for name, prompt in value.items() if prompt]
        return "\n\n".join(parts) or None
    return value if isinstance(value, str) and value else None


def _domain(level: Any) -> str | None:
    text = str(level).strip().lower() if level is not None else ""
    if text in _GAIA_LEVELS:
        return "gaia"
    if text in _ASSISTANTBENCH_LEVELS:
        return "assistantbench"
    return None


def _mistake_feedback(
    obj: Mapping[str, Any], trajectory_id: str, first: list[int]
) -> list[dict[str, Any]]:
    raw_step = obj.get("mistake_step")
    step_idx: int | None = None
    comment = None
    position: int | None = None
    if raw_step is not None and str(raw_step).strip() != "":
        try:
            position = int(str(raw_step).strip())
        except ValueError:
            comment = f"mistake_step {raw_step!r} is not a history index"
        else:
            if 0 <= position < len(first):
                step_idx = first[position]
            else:
                comment = f"mistake_step {position} is outside the history ({len(first)} messages)"
    rows = []
    for name, value in (
        ("mistake_agent", obj.get("mistake_agent")),
        ("mistake_step", position),
        ("mistake_reason", obj.get("mistake_reason")),
    ):
        if value is not None and value != "":
            rows.append(
                feedback_row(
                    trajectory_id, name, value, source=SOURCE, comment=comment, step_idx=step_idx
                )
            )
    return rows


def _record(obj: Any, where: str, options: ReadOptions) -> Record:
    if not isinstance(obj, Mapping):
        raise ValueError("run is not a JSON object")
    question_id = obj.get("question_ID")
    if not isinstance(question_id, str | int) or isinstance(question_id, bool) or not question_id:
        raise ValueError("missing 'question_ID'")
    history = _history(obj)
    handcrafted = bool(history) and not any(m.get("name") for m in history)
    subset = "hand-crafted" if handcrafted else "algorithm-generated"
    trajectory_id = f"who-and-when/{subset}/{question_id}"
    build = _handcrafted_steps if handcrafted else _generated_steps
    steps, first = build(trajectory_id, history)
    for idx, step in enumerate(steps):
        step["step_idx"] = idx
    feedback = []
    correct = _flag(obj.get("is_correct"), "is_correct")
    if correct is not None:
        feedback.append(feedback_row(trajectory_id, "is_correct", float(correct), source=SOURCE))
    feedback.extend(_mistake_feedback(obj, trajectory_id, first))
    label, score, source = outcome_from_feedback(
        feedback, options.reward_threshold, options.outcome_feedback
    )
    prompts = obj.get("system_prompt")
    trajectory = {
        "trajectory_id": trajectory_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        "dataset": NAME,
        "domain": _domain(obj.get("level")),
        "task_id": str(question_id),
        "agent_name": "Magentic-One" if handcrafted else "CaptainAgent",
        "system_prompt": _system_prompt(prompts),
        "task_input": obj.get("question") if isinstance(obj.get("question"), str) else None,
        "outcome_label": label,
        "outcome_score": score,
        "outcome_source": source,
        "metadata": json_text(
            {
                "subset": subset,
                "level": obj.get("level"),
                "ground_truth": obj.get("ground_truth"),
                "agents": list(prompts) if isinstance(prompts, Mapping) else None,
                "labels": obj.get("labels"),
            }
        ),
    }
    return Record(finish_trajectory(trajectory, steps), steps, feedback, where)


def read(path: Path, options: ReadOptions) -> Iterator[Parsed]:
    """Yield one :class:`Record` per run of ``path`` (the file's one document, or each line /
    item), or a :class:`Quarantined` for a run that cannot be used (not JSON, no ``question_ID``,
    ``history`` not a list of objects, ``is_correct`` not true/false).

    Raises:
        InputError: unreadable, empty, too large or not UTF-8.
    """
    records = json_documents(path, options)
    yield from map_records(records, lambda where, obj: _record(obj, where, options))

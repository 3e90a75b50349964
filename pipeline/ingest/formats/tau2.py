"""tau2-bench results (sierra-research/tau2-bench, ``Results`` JSON as in its leaderboard submissions).

``{"info": {"agent_info": {"implementation", "llm"}, "user_info", "environment_info":
{"domain_name", "policy"}}, "tasks": [{"id", "description", "user_scenario",
"evaluation_criteria"}], "simulations": [{"id", "task_id", "trial", "start_time", "end_time",
"termination_reason", "agent_cost", "reward_info": {"reward", "db_check", "reward_breakdown",
"nl_assertions", ...}, "messages": [{"role", "content", "tool_calls": [{"id", "name",
"arguments"}], "turn_idx", "timestamp", "usage", "cost", "error"}]}]}``.
One trajectory per simulation; the policy is the system prompt.

A simulation's content hash (``record_sha256``) is the SHA-256 of its JSON with sorted keys
(:func:`~pipeline.ingest.formats._pending.canonical_json`) after the context its rows are read
with: the model, agent, domain and policy of the file, its task's instructions and purpose, and
the reward threshold. Simulations are yielded as :class:`Pending` records, so that ingest
builds the rows of only those that are not duplicates.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.ingest.formats._common import (
    Parsed,
    Quarantined,
    Record,
    chat_steps,
    finish_trajectory,
    json_text,
    label_from_reward,
    parse_time,
    truncate,
)
from pipeline.ingest.formats._document import read_document
from pipeline.ingest.formats._io import ReadOptions
from pipeline.ingest.formats._pending import Pending, canonical_json

NAME = "tau2"


def sniff(path: Path, head: bytes) -> bool:
    """True for a JSON object with tau2's ``info.agent_info`` / ``environment_info`` or
    ``simulations``."""
    start = head.lstrip()[:1]
    return start == b"{" and (
        b'"simulations"' in head or (b'"agent_info"' in head and b'"environment_info"' in head)
    )


def _cost(simulation: Mapping[str, Any], messages: list[Any]) -> float | None:
    cost = simulation.get("agent_cost")
    if isinstance(cost, int | float):
        return float(cost)
    costs = [
        m["cost"]
        for m in messages
        if isinstance(m, Mapping)
        and m.get("role") == "assistant"
        and isinstance(m.get("cost"), int | float)
    ]
    return float(sum(costs)) if costs else None


_USER_ID = re.compile(r"user id is:?\W*([A-Za-z]+_[A-Za-z]+_\d+)", re.IGNORECASE)


def _scenario(task: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The task's user-scenario instructions as one text, and the user id it names."""
    scenario = task.get("user_scenario") or {}
    instructions = scenario.get("instructions") if isinstance(scenario, Mapping) else None
    text: str | None
    if isinstance(instructions, Mapping):
        text = "\n".join(str(v) for v in instructions.values() if v)
    else:
        text = str(instructions) if instructions else None
    match = _USER_ID.search(text or "")
    return text, match.group(1) if match else None


def _record(sim: Any, index: int, context: dict[str, Any], options: ReadOptions) -> Record:
    if not isinstance(sim, Mapping):
        raise ValueError("simulation is not a JSON object")
    trajectory_id = sim.get("id")
    if not trajectory_id:
        raise ValueError("missing simulation 'id'")
    trajectory_id = str(trajectory_id)
    messages = sim.get("messages")
    if not isinstance(messages, list):
        raise ValueError("'messages' is missing or not a list")
    reward_info = sim.get("reward_info") or {}
    reward = reward_info.get("reward") if isinstance(reward_info, Mapping) else None
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, int | float)):
        raise ValueError(f"'reward_info.reward' is not a number: {reward!r}")
    steps = chat_steps(trajectory_id, messages, model=context["model"])
    policy = context["policy"]
    if policy:
        for step in steps:
            step["step_idx"] += 1
        stamp = parse_time(sim.get("start_time"))
        steps.insert(
            0,
            {
                "trajectory_id": trajectory_id,
                "step_idx": 0,
                "role": "system",
                "step_type": "system",
                "content_text": policy,
                "is_error": False,
                "started_at": stamp,
                "ended_at": stamp,
            },
        )
    task = context["tasks"].get(str(sim.get("task_id")), {})
    instruction, user_id = _scenario(task)
    trial = sim.get("trial")
    trajectory = {
        "trajectory_id": trajectory_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        "dataset": f"tau2-{context['domain']}" if context["domain"] else "tau2",
        "domain": context["domain"],
        "task_id": None if sim.get("task_id") is None else str(sim["task_id"]),
        "trial": trial if isinstance(trial, int) else None,
        "agent_name": context["agent"],
        "model": context["model"],
        "user_id": user_id,
        "started_at": parse_time(sim.get("start_time")),
        "ended_at": parse_time(sim.get("end_time")),
        "outcome_label": label_from_reward(reward, options.reward_threshold),
        "outcome_score": None if reward is None else float(reward),
        "outcome_source": None if reward is None else "reward",
        "termination_reason": sim.get("termination_reason"),
        "cost_usd": _cost(sim, messages),
        "metadata": json_text(
            {
                "task_instruction": instruction,
                "task_purpose": (task.get("description") or {}).get("purpose"),
                "seed": sim.get("seed"),
            }
        ),
    }
    feedback = []
    if reward is not None:
        feedback.append(
            {
                "trajectory_id": trajectory_id,
                "name": "reward",
                "value": float(reward),
                "source": "tau2",
            }
        )
    for name, value in (reward_info.get("reward_breakdown") or {}).items():
        if isinstance(value, int | float):
            feedback.append(
                {
                    "trajectory_id": trajectory_id,
                    "name": f"reward.{name}",
                    "value": float(value),
                    "source": "tau2",
                }
            )
    for assertion in reward_info.get("nl_assertions") or []:
        if isinstance(assertion, Mapping) and "met" in assertion:
            feedback.append(
                {
                    "trajectory_id": trajectory_id,
                    "name": "nl_assertion",
                    "value": float(bool(assertion["met"])),
                    "source": "tau2",
                    "comment": assertion.get("nl_assertion"),
                }
            )
    return Record(finish_trajectory(trajectory, steps), steps, feedback, f"simulations[{index}]")


def _object(path: Path, value: Any, what: str) -> Mapping[str, Any]:
    """``value`` if it is an object, ``{}`` if it is null or absent.

    Raises:
        InputError: it is something else.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{path}: {what!r} is not an object")
    return value


def _built(sim: Any, index: int, context: dict[str, Any], options: ReadOptions) -> Parsed:
    """The :class:`Record` of simulation ``index``, or why it cannot be read."""
    try:
        return _record(sim, index, context, options)
    except (ValueError, TypeError, AttributeError) as exc:
        return Quarantined(f"simulations[{index}]", str(exc), truncate(sim))


# What the context part of a simulation's hash starts with (a new one if its parts change).
_HASH_VERSION = b"tau2 simulation 1\n"


def _source_digest(sim: Any, context: dict[str, Any], hashes: dict[str, Any]) -> str | None:
    """The SHA-256 (hex) of simulation ``sim`` and the context its rows are read with (see the
    module); ``hashes`` caches the hash state of each task's context for the file (its
    ``""`` entry: the file's, ``context["finite"]``: orjson parsed the document). ``None``
    when ``sim`` has no id, or it or its context cannot be written as JSON: then it is built
    and hashed by its rows."""
    if not isinstance(sim, Mapping) or not sim.get("id"):
        return None
    task_id = str(sim.get("task_id"))
    state = hashes.get(task_id)
    if state is None:
        task = context["tasks"].get(task_id, {})
        try:
            instruction, _ = _scenario(task)
            purpose = (task.get("description") or {}).get("purpose")
        except (ValueError, TypeError, AttributeError):
            return None  # _record says why
        part = canonical_json([instruction, purpose], finite=context["finite"])
        if part is None:
            return None
        state = hashes[""].copy()
        state.update(part + b"\n")
        hashes[task_id] = state
    source = canonical_json(sim, finite=context["finite"])
    if source is None:
        return None
    state = state.copy()
    state.update(source)
    return str(state.hexdigest())


def read(path: Path, options: ReadOptions) -> Iterator[Parsed | Pending]:
    """Yield one :class:`Pending` (or, for a simulation without an id or not writable as JSON,
    one :class:`Record` or :class:`Quarantined`) per simulation of ``path`` (the document parsed
    by :func:`~pipeline.ingest.formats._document.read_document`).

    Raises:
        InputError: unreadable, not UTF-8, not JSON, or without a ``simulations`` list.
    """
    data, finite = read_document(path, options.max_document_bytes)
    if not isinstance(data, Mapping) or not isinstance(data.get("simulations"), list):
        raise InputError(f"{path}: a tau2 results file is an object with a 'simulations' list")
    info = _object(path, data.get("info"), "info")
    agent_info = _object(path, info.get("agent_info"), "info.agent_info")
    environment = _object(path, info.get("environment_info"), "info.environment_info")
    tasks = data.get("tasks") or []
    if not isinstance(tasks, list):
        raise InputError(f"{path}: 'tasks' is not a list")
    model = agent_info.get("llm")
    implementation = agent_info.get("implementation")
    context = {
        "model": model,
        "agent": f"{implementation} ({model})" if implementation else model,
        "domain": environment.get("domain_name"),
        "policy": environment.get("policy"),
        "tasks": {str(t.get("id")): t for t in tasks if isinstance(t, Mapping)},
        "finite": finite,
    }
    head = canonical_json(
        [context[k] for k in ("model", "agent", "domain", "policy")]
        + [repr(float(options.reward_threshold))],
        finite=finite,
    )
    hashes = {"": hashlib.sha256(_HASH_VERSION + head + b"\n")} if head is not None else None
    for index, sim in enumerate(data["simulations"]):
        digest = None if hashes is None else _source_digest(sim, context, hashes)
        if digest is None:
            yield _built(sim, index, context, options)
        else:
            build = partial(_built, sim, index, context, options)
            yield Pending(str(sim["id"]), digest, build, f"simulations[{index}]")

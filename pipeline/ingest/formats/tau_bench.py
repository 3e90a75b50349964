"""tau-bench trajectories (sierra-research/tau-bench, ``historical_trajectories/*.json``).

The file is a JSON list of ``{"task_id": int, "trial": int, "reward": float, "info": {"task":
{"user_id", "instruction", "actions"}, "reward_info", "user_cost"}, "traj": [OpenAI chat messages]}``.
Files are named ``<model>-<domain>.json``; the domain is also read from the policy's heading
(``# Airline Agent Policy``). The user simulator's closing token (``###STOP###``,
``###TRANSFER###``, ``###OUT-OF-SCOPE###``) gives the termination reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
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
    truncate,
)
from pipeline.ingest.formats._io import ReadOptions, iter_json_records

NAME = "tau-bench"
_POLICY_HEADING = re.compile(r"#\s*(\w+) Agent Policy", re.IGNORECASE)
_TERMINATION = {
    "###STOP###": "user_stop",
    "###TRANSFER###": "transfer",
    "###OUT-OF-SCOPE###": "out_of_scope",
}


def sniff(path: Path, head: bytes) -> bool:
    """True for a JSON list whose records carry ``traj`` and ``task_id``."""
    return head.lstrip().startswith(b"[") and b'"traj"' in head and b'"task_id"' in head


def domain_and_model(path: Path, system_prompt: str | None) -> tuple[str | None, str | None]:
    """The domain (policy heading, else the file name's last ``-`` part) and the model
    (the file name without that part), e.g. ``gpt-4o-airline.json`` -> ``("airline", "gpt-4o")``."""
    stem = path.name.split(".")[0]
    head, _, tail = stem.rpartition("-")
    match = _POLICY_HEADING.search(system_prompt or "")
    domain = match.group(1).lower() if match else (tail or None)
    model = head if head and tail.lower() == (domain or "") else None
    return domain, model


def termination(steps: list[dict[str, Any]]) -> str | None:
    """The termination reason the user simulator's last message signals, if any."""
    for step in reversed(steps):
        if step["step_type"] == "user":
            text = step.get("content_text") or ""
            return next((reason for token, reason in _TERMINATION.items() if token in text), None)
    return None


def _record(obj: Any, path: Path, index: int, options: ReadOptions) -> Record:
    if not isinstance(obj, Mapping):
        raise ValueError("record is not a JSON object")
    task_id, trial = obj.get("task_id"), obj.get("trial", 0)
    if task_id is None:
        raise ValueError("missing 'task_id'")
    if not isinstance(obj.get("traj"), list):
        raise ValueError("'traj' is missing or not a list")
    reward = obj.get("reward")
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, int | float)):
        raise ValueError(f"'reward' is not a number: {reward!r}")
    info = obj.get("info") or {}
    task = info.get("task") or {} if isinstance(info, Mapping) else {}
    stem = path.name.split(".")[0]
    trajectory_id = f"tau-bench/{stem}/task-{task_id}/trial-{trial}"
    steps = chat_steps(trajectory_id, obj["traj"])
    system_prompt = next((s["content_text"] for s in steps if s["step_type"] == "system"), None)
    domain, model = domain_and_model(path, system_prompt)
    for step in steps:
        if step["step_type"] in ("assistant", "tool_call"):
            step["model"] = model
    trajectory = {
        "trajectory_id": trajectory_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        "dataset": f"tau-bench-{domain}" if domain else "tau-bench",
        "domain": domain,
        "task_id": str(task_id),
        "trial": int(trial) if isinstance(trial, int) else None,
        "agent_name": f"tau-bench tool-calling agent ({model})" if model else None,
        "model": model,
        "user_id": task.get("user_id"),
        "outcome_label": label_from_reward(reward, options.reward_threshold),
        "outcome_score": None if reward is None else float(reward),
        "outcome_source": None if reward is None else "reward",
        "termination_reason": termination(steps),
        "metadata": json_text(
            {"task_instruction": task.get("instruction"), "user_cost_usd": info.get("user_cost")}
        ),
    }
    feedback = []
    if reward is not None:
        feedback.append(
            {
                "trajectory_id": trajectory_id,
                "name": "reward",
                "value": float(reward),
                "source": "tau-bench",
            }
        )
    reward_info = info.get("reward_info") or {}
    for name, value in (reward_info.get("info") or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            feedback.append(
                {
                    "trajectory_id": trajectory_id,
                    "name": name,
                    "value": float(value),
                    "source": "tau-bench",
                }
            )
    return Record(finish_trajectory(trajectory, steps), steps, feedback, f"index {index}")


def read(path: Path, options: ReadOptions) -> Iterator[Parsed]:
    """Yield one :class:`Record` or :class:`Quarantined` per list item of ``path``.

    Raises:
        InputError: unreadable, not UTF-8, not JSON, or not a JSON list.
    """
    for index, item in enumerate(iter_json_records(path, options)):
        if isinstance(item, Quarantined):
            yield item
            continue
        where, obj = item
        if where == "document":
            raise InputError(f"{path}: a tau-bench file is a JSON list of trajectories")
        try:
            yield _record(obj, path, index, options)
        except (ValueError, TypeError, AttributeError) as exc:
            yield Quarantined(where, str(exc), truncate(obj))

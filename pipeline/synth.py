"""Synthetic Chat JSONL trajectories with planted behaviours, for tests and evaluation.

Each task has its own base success probability (tasks differ in difficulty, as real ones do) and a
kind (``booking`` tasks are harder and always call ``book_trip``: a confound that a naive contrast
mistakes for a harmful tool). Planted behaviour: in a share of runs the agent calls the write
action without an explicit user confirmation, which lowers the log-odds of success by
``effect``. A noise behaviour (calling ``get_weather``) has no effect.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SynthConfig", "generate", "write_jsonl"]


@dataclass(frozen=True)
class SynthConfig:
    """``n_tasks`` x ``trials`` trajectories per agent in ``agents``; ``effect``: change in
    log-odds of success when the write action is unconfirmed (negative lowers success);
    ``p_unconfirmed``: share of runs with that behaviour; ``p_noise``: share calling the noise
    tool; ``seed``: random seed."""

    n_tasks: int = 60
    trials: int = 6
    agents: tuple[str, ...] = ("agent-a",)
    effect: float = -2.5
    p_unconfirmed: float = 0.4
    p_noise: float = 0.5
    seed: int = 0
    domain: str = "travel"


def _call(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
        ],
    }


def generate(config: SynthConfig) -> Iterator[dict[str, Any]]:
    """Yield Chat JSONL records (see :mod:`pipeline.formats.chat_jsonl`)."""
    rng = random.Random(config.seed)
    tasks = []
    for task in range(config.n_tasks):
        kind = "booking" if task % 2 == 0 else "cancellation"
        base = rng.uniform(-1.5, 0.0) if kind == "booking" else rng.uniform(0.5, 2.0)
        tasks.append((task, kind, base))
    for agent in config.agents:
        for task, kind, base in tasks:
            for trial in range(config.trials):
                unconfirmed = rng.random() < config.p_unconfirmed
                noise = rng.random() < config.p_noise
                logit = base + (config.effect if unconfirmed else 0.0)
                success = rng.random() < 1 / (1 + math.exp(-logit))
                write = "book_trip" if kind == "booking" else "cancel_trip"
                messages: list[dict[str, Any]] = [
                    {"role": "system", "content": "You are a travel agent. Follow the policy."},
                    {"role": "user", "content": f"I need help with my {kind}, task {task}."},
                    _call("c1", "get_user", {"user_id": f"u{task}"}),
                    {"role": "tool", "tool_call_id": "c1", "content": '{"name": "Ada"}'},
                ]
                if noise:
                    messages += [
                        _call("c2", "get_weather", {"city": "Paris"}),
                        {"role": "tool", "tool_call_id": "c2", "content": "sunny"},
                    ]
                messages.append(
                    {"role": "assistant", "content": f"I can do the {kind}. Shall I proceed?"}
                )
                messages.append(
                    {
                        "role": "user",
                        "content": "Hmm, what does it cost?"
                        if unconfirmed
                        else "Yes, please proceed.",
                    }
                )
                messages += [
                    _call("c3", write, {"trip_id": f"T{task}"}),
                    {"role": "tool", "tool_call_id": "c3", "content": "done"},
                    {"role": "assistant", "content": "All done."},
                ]
                yield {
                    "id": f"{agent}-task{task}-trial{trial}",
                    "messages": messages,
                    "outcome": "success" if success else "failure",
                    "metadata": {
                        "task_id": str(task),
                        "agent": agent,
                        "domain": config.domain,
                        "trial": trial,
                        "task_type": kind,
                    },
                }


def write_jsonl(path: Path, records: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> Path:
    """Write records one JSON object per line; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path

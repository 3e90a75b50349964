"""Chat JSONL: one trajectory per line (a JSON array of such records is read too).

Each line is ``{"id": str, "messages": [OpenAI chat messages], "outcome": "success" | "failure" |
"partial" | "unknown", "reward": number (optional), "metadata": {task_type, task_id, domain, agent,
model, user_id, session_id, trial, prompt_version, ...} (optional), "feedback": [{name, value,
source, comment, step_idx}] (optional)}``. ``outcome`` gives the label; without it, ``reward >=
threshold`` means success (``outcome_source`` says which was used). ``metadata.prompt_version``
(text, or an integer as its decimal text) is the run's ``prompt_version``. ``started_at`` and
``ended_at`` (top level or in ``metadata``; ISO-8601 or Unix time) date the run; without them
its messages' ``timestamp`` values do, if any.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.ingest.formats._chat_vector import chat_tables
from pipeline.ingest.formats._common import (
    Parsed,
    Record,
    chat_steps,
    finish_trajectory,
    json_text,
    label_from_reward,
    metadata_columns,
    parse_time,
)
from pipeline.ingest.formats._io import (
    ReadOptions,
    first_record,
    iter_json_records,
    json_container,
    map_records,
)
from pipeline.ingest.formats._linebatch import RecordBatch, read_line_batches
from pipeline.ingest.schema import OUTCOME_LABELS

NAME = "chat-jsonl"


def sniff(path: Path, head: bytes) -> bool:
    """True when the first record (the first non-empty line, or the first item of a JSON array)
    is a JSON object with a ``messages`` list."""
    first = first_record(head)
    return isinstance(first, dict) and isinstance(first.get("messages"), list)


def _record(obj: Any, options: ReadOptions, where: str) -> Record:
    if not isinstance(obj, Mapping):
        raise ValueError("record is not a JSON object")
    trajectory_id = obj.get("id", obj.get("trajectory_id"))
    if not isinstance(trajectory_id, str | int) or trajectory_id == "":
        raise ValueError("missing 'id'")
    trajectory_id = str(trajectory_id)
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise ValueError("'metadata' is not an object")
    messages = obj.get("messages")
    if not isinstance(messages, list):
        raise ValueError("'messages' is missing or not a list")
    reward = obj.get("reward", metadata.get("reward"))
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, int | float)):
        raise ValueError(f"'reward' is not a number: {reward!r}")
    outcome = obj.get("outcome")
    if outcome is not None:
        if outcome not in OUTCOME_LABELS:
            raise ValueError(f"'outcome' must be one of {', '.join(OUTCOME_LABELS)}: {outcome!r}")
        label: str = outcome
        source: str | None = "outcome"
    else:
        label = label_from_reward(reward, options.reward_threshold)
        source = "reward" if reward is not None else None
    model = metadata.get("model")
    steps = chat_steps(trajectory_id, messages, model=model)
    trial = metadata.get("trial")
    trajectory = {
        "trajectory_id": trajectory_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        **metadata_columns(metadata),
        "trial": trial if isinstance(trial, int) else None,
        "model": model,
        "session_id": metadata.get("session_id"),
        "user_id": metadata.get("user_id"),
        "outcome_label": label,
        "outcome_score": float(reward) if reward is not None else None,
        "outcome_source": source,
        "termination_reason": metadata.get("termination_reason"),
        "prompt_version": metadata.get("prompt_version"),
        "started_at": parse_time(obj.get("started_at", metadata.get("started_at"))),
        "ended_at": parse_time(obj.get("ended_at", metadata.get("ended_at"))),
        "cost_usd": metadata.get("cost_usd"),
        "metadata": json_text(dict(metadata)),
    }
    feedback = []
    if reward is not None:
        feedback.append(
            {
                "trajectory_id": trajectory_id,
                "name": "reward",
                "value": float(reward),
                "source": "dataset",
            }
        )
    for item in obj.get("feedback") or []:
        if not isinstance(item, Mapping) or not item.get("name"):
            raise ValueError("a feedback item has no 'name'")
        value = item.get("value")
        feedback.append(
            {
                "trajectory_id": trajectory_id,
                "step_idx": item.get("step_idx"),
                "name": str(item["name"]),
                "value": float(value) if isinstance(value, int | float) else None,
                "value_text": value if isinstance(value, str) else None,
                "source": item.get("source"),
                "comment": item.get("comment"),
            }
        )
    return Record(finish_trajectory(trajectory, steps), steps, feedback, where)


def read(path: Path, options: ReadOptions) -> Iterator[Parsed | RecordBatch]:
    """Yield the records of ``path``: for JSON Lines, :class:`RecordBatch` items for the lines
    read column-wise (:mod:`~pipeline.ingest.formats._chat_vector`) and a :class:`Record` or
    :class:`Quarantined` for each other non-empty line, in file order
    (:func:`~pipeline.ingest.formats._linebatch.read_line_batches`); for a JSON array, one
    :class:`Record` or :class:`Quarantined` per item.

    Raises:
        InputError: the file cannot be opened, or is one JSON document that is not valid.
    """

    def build(where: str, obj: Any) -> Record:
        return _record(obj, options, where)

    if json_container(path) == "lines":
        vector = partial(
            chat_tables, source_uri=options.source_uri, reward_threshold=options.reward_threshold
        )
        yield from read_line_batches(path, options, vector, build)
        return
    yield from map_records(iter_json_records(path, options), build)

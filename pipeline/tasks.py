"""Task keys: which trajectories attempted the same task.

Within one dataset, ``task_id`` names the task. Across datasets of the same domain the same task
often carries another id (tau2-bench renumbered the tau-bench airline tasks), so tasks are aligned
by their description: for each other dataset, a one-to-one assignment (Hungarian algorithm,
``scipy.optimize.linear_sum_assignment``) onto the tasks of the dataset with the most tasks that
maximises the ``rapidfuzz.fuzz.token_set_ratio`` similarity of the task instructions
(``metadata.task_instruction``), allowing only pairs with the same ``user_id`` where both have one
and a similarity of at least ``min_similarity``. Unmatched tasks keep their own key.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process
from scipy.optimize import linear_sum_assignment

__all__ = ["task_keys"]


def _instruction(metadata: str | None) -> str:
    if not metadata:
        return ""
    try:
        value = json.loads(metadata).get("task_instruction")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def task_keys(trajectories: pl.DataFrame, *, min_similarity: float = 60.0) -> pl.DataFrame:
    """One task key per trajectory.

    Args:
        trajectories: columns ``trajectory_id``, ``dataset``, ``domain``, ``task_id``,
            ``user_id`` (str), ``metadata`` (JSON str).
        min_similarity: lowest accepted instruction similarity, 0-100.

    Returns:
        polars DataFrame with ``trajectory_id`` (str), ``task_key`` (str: ``<dataset>:<task_id>``
        of the reference task, null without a task_id) and ``aligned`` (bool: the key comes from
        another dataset's task).
    """
    tasks = (
        trajectories.filter(pl.col("task_id").is_not_null())
        .with_columns(pl.col("dataset").fill_null(""), pl.col("domain").fill_null(""))
        .group_by("domain", "dataset", "task_id")
        .agg(pl.col("user_id").drop_nulls().first(), pl.col("metadata").first())
        .sort("domain", "dataset", "task_id")
    )
    mapping: dict[tuple[str, str], str] = {}
    for _, group in tasks.group_by(["domain"], maintain_order=True):
        datasets = (
            group["dataset"].value_counts().sort(["count", "dataset"], descending=[True, False])
        )
        reference = datasets["dataset"][0]
        ref = group.filter(pl.col("dataset") == reference)
        ref_text = [_instruction(m) for m in ref["metadata"]]
        for other in datasets["dataset"][1:]:
            cur = group.filter(pl.col("dataset") == other)
            cur_text = [_instruction(m) for m in cur["metadata"]]
            if not any(cur_text) or not any(ref_text):
                continue
            score = process.cdist(cur_text, ref_text, scorer=fuzz.token_set_ratio, workers=1)
            score = np.asarray(score, dtype=float)
            users_cur, users_ref = cur["user_id"].to_list(), ref["user_id"].to_list()
            for i, u in enumerate(users_cur):
                for j, v in enumerate(users_ref):
                    if u and v and u != v:
                        score[i, j] = 0.0
            rows, cols = linear_sum_assignment(-score)
            for i, j in zip(rows, cols, strict=True):
                if score[i, j] >= min_similarity:
                    mapping[(other, cur["task_id"][int(i)])] = (
                        f"{reference}:{ref['task_id'][int(j)]}"
                    )
    keys, aligned = [], []
    for dataset, task_id in zip(
        trajectories["dataset"].fill_null("").to_list(),
        trajectories["task_id"].to_list(),
        strict=True,
    ):
        if task_id is None:
            keys.append(None)
            aligned.append(False)
            continue
        key = mapping.get((dataset, task_id))
        keys.append(key or f"{dataset}:{task_id}")
        aligned.append(key is not None)
    return pl.DataFrame(
        {"trajectory_id": trajectories["trajectory_id"], "task_key": keys, "aligned": aligned},
        schema={"trajectory_id": pl.String, "task_key": pl.String, "aligned": pl.Boolean},
    )

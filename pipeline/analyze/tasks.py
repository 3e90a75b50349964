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
            from scipy.optimize import linear_sum_assignment  # slow to import; only needed here

            rows, cols = linear_sum_assignment(-score)
            for i, j in zip(rows, cols, strict=True):
                if score[i, j] >= min_similarity:
                    mapping[(other, cur["task_id"][int(i)])] = (
                        f"{reference}:{ref['task_id'][int(j)]}"
                    )
    aligned_keys = pl.DataFrame(
        {
            "dataset": [dataset for dataset, _ in mapping],
            "task_id": [task_id for _, task_id in mapping],
            "reference": list(mapping.values()),
        },
        schema={"dataset": pl.String, "task_id": pl.String, "reference": pl.String},
    )
    own = pl.col("dataset").fill_null("") + ":" + pl.col("task_id")
    return (
        trajectories.select(
            "trajectory_id", pl.col("dataset").fill_null(""), pl.col("task_id").cast(pl.String)
        )
        .join(aligned_keys, on=["dataset", "task_id"], how="left", maintain_order="left")
        .select(
            pl.col("trajectory_id").cast(pl.String),
            pl.when(pl.col("task_id").is_null())
            .then(None)
            .otherwise(pl.coalesce("reference", own))
            .alias("task_key"),
            (pl.col("task_id").is_not_null() & pl.col("reference").is_not_null()).alias("aligned"),
        )
    )

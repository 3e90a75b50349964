"""The closed loop inside ``learn``: which prompt version each stored trajectory ran under, the
nightly round of prompt experiments on them, and the history of every prompt version rendered.

:func:`experiment_round` runs between the Skillbook merge and the rendering of the prompts
(:func:`pipeline.learn.merge_and_render`), under the Skillbook lock; :func:`record_versions`
runs after the prompts are rendered. The statistics are in :mod:`pipeline.experiment`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pipeline.config import Config
from pipeline.experiment import (
    ExperimentSettings,
    MatchReport,
    VersionHistory,
    match_exposures,
    run_experiments,
)
from pipeline.skillbook import MergePolicy, Skillbook

if TYPE_CHECKING:
    import pyarrow as pa

    from pipeline.render import RenderedPrompt

__all__ = [
    "experiment_round",
    "experiment_settings",
    "exposures",
    "file_times",
    "record_versions",
]


def file_times(files: Sequence[Any]) -> dict[str, datetime]:
    """``{path: modification time (UTC)}`` of the input files of an ingest
    (:class:`pipeline.ingest.FileReport` rows with ``path`` and ``mtime_ns``)."""
    from datetime import UTC

    return {
        f.path: datetime.fromtimestamp(f.mtime_ns / 1e9, tz=UTC)
        for f in files
        if getattr(f, "mtime_ns", -1) >= 0
    }


_KEYS = ("domain", "agent_name", "prompt_version", "system_prompt")


def experiment_settings(config: Config) -> ExperimentSettings:
    """The :class:`~pipeline.experiment.ExperimentSettings` of ``config``."""
    return ExperimentSettings(
        enabled=config.experiments,
        share=config.experiment_share,
        alpha=config.experiment_alpha,
        holdback_share=config.holdback_share,
    )


def exposures(
    trajectories: pa.Table,
    history: VersionHistory,
    file_times: Mapping[str, datetime] | None = None,
) -> tuple[list[dict[str, Any]], MatchReport]:
    """The resolved prompt version of the trajectories that ran under a version of an
    experiment (:func:`pipeline.experiment.match_exposures`, computed once per distinct
    domain, agent, recorded version and system prompt).

    Args:
        trajectories: the canonical ``trajectories`` table (``prompt_version`` may be absent,
            as in stores written before it existed).
        history: the versions coach rendered.
        file_times: the modification time of each input file (by ``source_uri``), which
            dates a run that records no start time of its own (formats such as Chat JSONL
            may have none).

    Returns:
        One dict per such trajectory (``prompt_version``, ``domain``, ``agent_name``, ``started_at``
        (datetime or None), ``outcome_label``), and the :class:`MatchReport` over all
        trajectories.
    """
    import polars as pl

    names = set(trajectories.column_names)
    columns = [c for c in (*_KEYS, "started_at", "outcome_label", "source_uri") if c in names]
    frame = pl.from_arrow(trajectories.select(columns))
    assert isinstance(frame, pl.DataFrame)
    if "prompt_version" not in names:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("prompt_version"))
    groups = frame.group_by(list(_KEYS)).len("count").with_row_index("group")
    rows = [{**row, "trajectory_id": row["group"]} for row in groups.iter_rows(named=True)]
    found, report = match_exposures(rows, history)
    in_experiment = {e["prompt_version"] for e in history.entries if e.get("assignment_id")}
    resolved = pl.DataFrame(
        {
            "group": [int(e.trajectory_id) for e in found],
            "resolved": [e.prompt_version for e in found],
        },
        schema={"group": pl.UInt32, "resolved": pl.String},
    ).filter(pl.col("resolved").is_in(sorted(in_experiment)))
    if resolved.height == 0:
        return [], report
    wanted = groups.join(resolved, on="group").drop("count")
    joined = frame.join(wanted, on=list(_KEYS), nulls_equal=True)
    if file_times and "source_uri" in joined.columns:
        dated = pl.DataFrame(
            {"source_uri": list(file_times), "file_time": list(file_times.values())},
            schema={"source_uri": pl.String, "file_time": joined.schema["started_at"]},
        )
        joined = joined.join(dated, on="source_uri", how="left").with_columns(
            pl.col("started_at").fill_null(pl.col("file_time"))
        )
    selected = joined.select(
        pl.col("resolved").alias("prompt_version"),
        "domain",
        "agent_name",
        "started_at",
        "outcome_label",
    )
    return selected.to_dicts(), report


def experiment_round(
    config: Config,
    book: Skillbook,
    trajectories: pa.Table | None,
    policy: MergePolicy,
    now: str,
    file_times: Mapping[str, datetime] | None = None,
) -> dict[str, Any]:
    """Resolve the trajectories' prompt versions and run one round of experiments on ``book``
    (:func:`pipeline.experiment.run_experiments`; ``trajectories`` None: no trace tables, so
    only starts and ends; ``file_times``: see :func:`exposures`). Returns ``{"versions":
    MatchReport.as_dict(), **Round.as_dict(), "running": [{"id", "namespace", "skill_ids", "arms"}]}``.

    Raises:
        InputError: the version history is damaged.
    """
    history = VersionHistory.load(config.skillbook_dir)
    rows: list[dict[str, Any]] = []
    report = MatchReport()
    if trajectories is not None and trajectories.num_rows:
        rows, report = exposures(trajectories, history, file_times)
    done = run_experiments(
        book,
        rows,
        history.by_version(),
        policy=policy,
        settings=experiment_settings(config),
        now=now,
    )
    running = [
        {
            "id": e["id"],
            "namespace": e["namespace"],
            "skill_ids": e["skill_ids"],
            "arms": [a["arm"] for a in e["arms"]],
        }
        for e in book.experiments
        if e["status"] == "running"
    ]
    return {"versions": report.as_dict(), **done.as_dict(), "running": running}


def record_versions(
    config: Config, prompts: Sequence[RenderedPrompt], skillbook_version: int, now: str
) -> int:
    """Add the rendered ``prompts`` to the version history beside the Skillbook (once per
    version, namespace, arm and assignment). Returns how many were new."""
    history = VersionHistory.load(config.skillbook_dir)
    new = 0
    for prompt in prompts:
        new += history.add(
            {
                "prompt_version": prompt.version,
                "namespace": prompt.namespace,
                "arm": prompt.arm,
                "assignment_id": prompt.assignment_id,
                "experiment_id": prompt.assignment_id,
                "skill_ids": list(prompt.skill_ids),
                "lines": list(prompt.lines),
                "file": prompt.filename,
                "base_prompt": prompt.base_text,
                "first_rendered_at": now,
                "skillbook_version": skillbook_version,
                "aliases": [],
            }
        )
    history.save()
    return new

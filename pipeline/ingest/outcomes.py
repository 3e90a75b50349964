"""Outcomes from feedback across files and ingests: a trajectory whose own record gave no outcome
takes it from the feedback rows any file holds for it, and an outcome that came from feedback
follows the latest feedback of its name.

The feedback table keeps its rows in the order they were read (the stored rows first, then
those of this ingest, each file in order), so "latest" is the last row in that order: an
annotation corrected in Phoenix, pulled again, or a score file read after the traces, corrects
the outcome it gave. Outcomes from anything else (a reward, an ``outcome`` field, a results
file's label) are never replaced by feedback.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest.formats import outcome_from_feedback

__all__ = ["outcomes_from_feedback"]

_FEEDBACK_SOURCE = "feedback:"


def outcomes_from_feedback(
    trajectories: pa.Table,
    feedback: pa.Table,
    threshold: float,
    name: str | None = None,
) -> pa.Table:
    """``trajectories`` with the outcome (``outcome_label``, ``outcome_score``,
    ``outcome_source``) of every ``unknown`` row, and of every row whose outcome came from
    feedback (``outcome_source`` ``feedback:<name>``), taken from its feedback rows by
    :func:`~pipeline.ingest.formats._common.outcome_from_feedback` with the latest row of a
    name winning (tables of :data:`~pipeline.ingest.schema.TABLES`; ``threshold``: the reward
    at or above which a numeric value is a success; ``name``: the feedback name that is the
    outcome, ``None`` for the usual names). Rows with an outcome of another source, or without
    usable feedback, are unchanged; a row from feedback keeps its outcome when its feedback
    no longer gives one.
    """
    if feedback.num_rows == 0:
        return trajectories
    labels = trajectories.column("outcome_label")
    sources = trajectories.column("outcome_source")
    from_feedback = pc.starts_with(pc.fill_null(sources, ""), _FEEDBACK_SOURCE)
    open_rows = pc.or_(pc.equal(labels, "unknown"), from_feedback)
    if not pc.any(open_rows).as_py():
        return trajectories
    ids = trajectories.column("trajectory_id").to_pylist()
    wanted = {t for t, open_row in zip(ids, open_rows.to_pylist(), strict=True) if open_row}
    by_trajectory: dict[str, list[dict[str, Any]]] = {}
    for row in feedback.select(
        ["trajectory_id", "step_idx", "name", "value", "value_text"]
    ).to_pylist():
        if row["trajectory_id"] in wanted:
            by_trajectory.setdefault(row["trajectory_id"], []).append(row)
    if not by_trajectory:
        return trajectories
    columns = {
        column: trajectories.column(column).to_pylist()
        for column in ("outcome_label", "outcome_score", "outcome_source")
    }
    label_of, score_of, source_of = columns.values()
    for i, trajectory_id in enumerate(ids):
        rows = by_trajectory.get(trajectory_id)
        if not rows:
            continue
        label, score, source = outcome_from_feedback(rows, threshold, name, latest=True)
        if source is not None:
            label_of[i], score_of[i], source_of[i] = label, score, source
    for column, values in columns.items():
        index = trajectories.schema.get_field_index(column)
        field = trajectories.schema.field(index)
        trajectories = trajectories.set_column(index, field, pa.array(values, field.type))
    return trajectories

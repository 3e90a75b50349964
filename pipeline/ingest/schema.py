"""The canonical tables every input is mapped onto.

Three tables, stored as Parquet and queried as DuckDB views:

``trajectories`` -- one row per run (an agent working one task once)
    trajectory_id str (unique), source_format str, source_uri str, dataset str, domain str,
    task_id str, trial int64, agent_name str, model str, session_id str, user_id str,
    started_at / ended_at timestamp[us, UTC], system_prompt str, prompt_version str (the version
    of the system prompt the run used, as the trace recorded it; null when not recorded; see
    docs/formats.md, "Prompt versions", for where each format records it), task_input str,
    final_output str, outcome_label str (``success`` | ``failure`` | ``partial`` | ``unknown``),
    outcome_score float64, outcome_source str (where the label came from, e.g. ``reward``),
    termination_reason str, n_steps / n_tool_calls / n_tool_errors int64, input_tokens /
    output_tokens int64 (tokens), cost_usd float64 (USD), metadata str (a JSON object),
    record_sha256 str (SHA-256 of the source record's content -- trajectory, steps and
    feedback, without ``source_uri`` and ``prompt_version`` -- by which ingest recognises the
    same run arriving twice; null for canonical Parquet input).

``steps`` -- one row per message, tool call or tool result, in order within a trajectory
    trajectory_id str, step_idx int64 (0-based, dense), role str (system/user/assistant/tool),
    step_type str (``system`` | ``user`` | ``assistant`` | ``tool_call`` | ``tool_result`` | ...),
    content_text str, tool_name str, tool_call_id str, tool_args str (JSON), tool_result_text str,
    is_error bool, error_message str, model str, input_tokens / output_tokens int64,
    started_at / ended_at timestamp[us, UTC], actor str (which agent of a multi-agent run
    produced the step: the speaker's name, the agent span's name; null for single-agent runs).

``feedback`` -- zero or more scores per trajectory or step
    trajectory_id str, step_idx int64 (null: the whole trajectory), name str, value float64,
    value_text str (categorical scores), source str, comment str.

An assistant message that carries tool calls becomes an ``assistant`` step for its text (when it
has any) followed by one ``tool_call`` step per call; each tool message becomes a ``tool_result``
step whose ``tool_name`` is resolved through ``tool_call_id``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

__all__ = [
    "FEEDBACK",
    "OUTCOME_LABELS",
    "STEPS",
    "TABLES",
    "TRAJECTORIES",
    "empty_table",
    "to_table",
]

OUTCOME_LABELS = ("success", "failure", "partial", "unknown")

_TS = pa.timestamp("us", tz="UTC")

TRAJECTORIES = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("source_format", pa.string()),
        ("source_uri", pa.string()),
        ("dataset", pa.string()),
        ("domain", pa.string()),
        ("task_id", pa.string()),
        ("trial", pa.int64()),
        ("agent_name", pa.string()),
        ("model", pa.string()),
        ("session_id", pa.string()),
        ("user_id", pa.string()),
        ("started_at", _TS),
        ("ended_at", _TS),
        ("system_prompt", pa.string()),
        ("prompt_version", pa.string()),
        ("task_input", pa.string()),
        ("final_output", pa.string()),
        ("outcome_label", pa.string()),
        ("outcome_score", pa.float64()),
        ("outcome_source", pa.string()),
        ("termination_reason", pa.string()),
        ("n_steps", pa.int64()),
        ("n_tool_calls", pa.int64()),
        ("n_tool_errors", pa.int64()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("cost_usd", pa.float64()),
        ("metadata", pa.string()),
        ("record_sha256", pa.string()),
    ]
)

STEPS = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("step_idx", pa.int64()),
        ("role", pa.string()),
        ("step_type", pa.string()),
        ("content_text", pa.string()),
        ("tool_name", pa.string()),
        ("tool_call_id", pa.string()),
        ("tool_args", pa.string()),
        ("tool_result_text", pa.string()),
        ("is_error", pa.bool_()),
        ("error_message", pa.string()),
        ("model", pa.string()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("started_at", _TS),
        ("ended_at", _TS),
        ("actor", pa.string()),
    ]
)

FEEDBACK = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("step_idx", pa.int64()),
        ("name", pa.string()),
        ("value", pa.float64()),
        ("value_text", pa.string()),
        ("source", pa.string()),
        ("comment", pa.string()),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "trajectories": TRAJECTORIES,
    "steps": STEPS,
    "feedback": FEEDBACK,
}


def empty_table(name: str) -> pa.Table:
    """An empty table with the canonical schema of ``name`` (a key of :data:`TABLES`)."""
    return TABLES[name].empty_table()


def to_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Build the canonical table ``name`` from row dicts; missing keys become nulls and keys
    outside the schema are ignored.

    Raises:
        pyarrow.ArrowInvalid / pyarrow.ArrowTypeError: a value does not fit its column's type.
    """
    return pa.Table.from_pylist(rows, schema=TABLES[name])

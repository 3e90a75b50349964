"""Chat JSONL read column-wise: a block of lines in, the canonical tables of the records whose
shape DuckDB can map exactly out, and the positions of the others (read one by one, by
:mod:`~pipeline.ingest.formats.chat_jsonl`).

The format is the one :mod:`~pipeline.ingest.formats.chat_jsonl` describes. The SQL below maps
a record exactly as :func:`~pipeline.ingest.formats._common.chat_steps` and
:func:`~pipeline.ingest.formats._common.finish_trajectory` do, for the records of the common
shape: ``id`` a non-empty string; ``metadata`` an object (or absent/null) whose columns are
strings (``trial``, ``task_id`` and ``prompt_version`` may be integers, ``cost_usd`` a number);
no ``started_at``/``ended_at``; no ``feedback`` items; messages that are objects with a known
role, string (or null) ``content`` and no ``timestamp``, ``usage`` or ``model``; tool calls that
are objects with a non-empty string name and a string (or no) id. Any other record (a line that
is not valid JSON by DuckDB's parser, holds a control character or a ``\\u`` escape DuckDB
reads otherwise than Python, is nested deeply, or is of another shape) is left to the
per-record reader, which gives it the same rows or the same quarantine reason as before.

One known difference from the per-record reader: an object that names the same key twice
(which RFC 8259, section 4, leaves to the reader) keeps the first value here, Python's json the
last.

JSON text columns (``metadata``, ``tool_args``) are written by
:func:`~pipeline.ingest.formats._common.json_text` over the distinct values DuckDB extracted
(DuckDB writes numbers back in round-trip form, so Python reads the same values).
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest.formats._common import ERROR_TEXT, json_text, label_from_reward
from pipeline.ingest.formats._sqljson import (
    PARSABLE,
    is_int64 as _int,
    is_integer as _any_int,
    json_type as _t,
)
from pipeline.ingest.schema import TABLES

__all__ = ["canonical_json_texts", "chat_tables", "numbers"]

_ABSENT = "('MISSING', 'NULL')"


# One row per line that parses as a JSON object (DuckDB's parser: one pass per line): the
# record's fields and whether its own fields (not its messages) are of the common shape.
# ``json_transform`` reads JSON null as SQL NULL, like an absent key; where the two differ
# (a top-level ``reward`` of null hides the metadata's), the line is asked again.
_LINE = (
    '{"id": "JSON", "metadata": "JSON", "reward": "JSON", "outcome": "JSON", '
    '"feedback": "JSON", "started_at": "JSON", "ended_at": "JSON", "messages": [{"role": '
    '"VARCHAR", "content": "JSON", "tool_calls": "JSON", "tool_call_id": "JSON", "id": "JSON", '
    '"name": "JSON", "error": "JSON", "timestamp": "JSON", "usage": "JSON", "model": "JSON"}]}'
)
_META = (
    "['$.dataset', '$.domain', '$.task_type', '$.task_id', '$.agent', '$.agent_name', "
    "'$.trial', '$.model', '$.session_id', '$.user_id', '$.termination_reason', "
    "'$.prompt_version', '$.cost_usd', '$.reward', '$.started_at', '$.ended_at']"
)
_STRING_OR_NONE = "('MISSING', 'NULL', 'VARCHAR')"
_RECORDS = f"""
create or replace temp table rec as
with parsed as (
    select rec, line, json_transform(line, '{_LINE}') as r
    -- DuckDB's parser also takes trailing commas and inf/nan, which Python's does not
    from lines where {PARSABLE}
), meta as (
    select *, json_extract(case when {_t("r.metadata")} = 'OBJECT' then r.metadata end,
        {_META}) as m
    from parsed
), fields as (
    -- a top-level reward (even null) hides the metadata's; the line is asked again only then
    select *, case when r.reward is not null then r.reward when m[14] is null then null
        when json_exists(line, '$.reward') then null else m[14] end as reward
    from meta
)
select rec, r.id ->> '$' as trajectory_id, sha256(line) as digest,
    case when {_t("r.metadata")} = 'OBJECT' then r.metadata end as meta_object,
    r.messages as messages,
    reward as reward_json,
    r.outcome ->> '$' as outcome,
    m[1] ->> '$' as dataset,
    (case when m[2] is not null then m[2] else m[3] end) ->> '$' as domain,
    m[4] ->> '$' as task_id,
    (case when m[5] is not null then m[5] else m[6] end) ->> '$' as agent_name,
    case when {_t("m[7]")} = 'NUMBER' and {_int("m[7]")} then m[7]::varchar::bigint end as trial,
    m[8] ->> '$' as model,
    m[9] ->> '$' as session_id,
    m[10] ->> '$' as user_id,
    m[11] ->> '$' as termination_reason,
    m[12] as prompt_version_json,
    case when {_t("m[13]")} = 'NUMBER' then m[13]::varchar::double end as cost_usd,
    (
        {_t("r.id")} = 'VARCHAR' and r.id ->> '$' <> ''
        and {_t("r.metadata")} in ('MISSING', 'OBJECT')
        and r.messages is not null
        and {_t("reward")} in ('MISSING', 'NULL', 'NUMBER')
        and ({_t("r.outcome")} = 'MISSING' or {_t("r.outcome")} = 'VARCHAR'
            and r.outcome ->> '$' in ('success', 'failure', 'partial', 'unknown'))
        and ({_t("r.feedback")} = 'MISSING' or r.feedback::varchar = '[]')
        and {_t("r.started_at")} = 'MISSING' and {_t("r.ended_at")} = 'MISSING'
        and {_t("m[15]")} in ('MISSING', 'NULL') and {_t("m[16]")} in ('MISSING', 'NULL')
        and {_t("m[1]")} in {_STRING_OR_NONE}
        and {_t("case when m[2] is not null then m[2] else m[3] end")} in {_STRING_OR_NONE}
        and ({_t("m[4]")} in {_STRING_OR_NONE} or {_t("m[4]")} = 'NUMBER' and {_int("m[4]")})
        and {_t("case when m[5] is not null then m[5] else m[6] end")} in {_STRING_OR_NONE}
        and {_t("m[7]")} <> 'BOOLEAN'
        and not ({_t("m[7]")} = 'NUMBER' and {_any_int("m[7]")} and not {_int("m[7]")})
        and {_t("m[8]")} in {_STRING_OR_NONE}
        and {_t("m[9]")} in {_STRING_OR_NONE}
        and {_t("m[10]")} in {_STRING_OR_NONE}
        and {_t("m[11]")} in {_STRING_OR_NONE}
        and ({_t("m[12]")} in {_STRING_OR_NONE} or {_t("m[12]")} = 'NUMBER' and {_int("m[12]")})
        and ({_t("m[13]")} in ('MISSING', 'NULL')
            or {_t("m[13]")} = 'NUMBER' and not ({_any_int("m[13]")} and not {_int("m[13]")}))
    ) is true as ok
from fields
"""

# One row per message of the records whose own fields are of the common shape. A list item
# that is not an object comes with every field null, so its role is not a string.
_MESSAGES = f"""
create or replace temp table msg as
with flat as (
    select rec, unnest(messages) as f, unnest(range(len(messages))) as pos from rec where ok
)
select rec, pos, f.role as role, f.content ->> '$' as text, f.tool_calls,
    f.tool_call_id ->> '$' as tool_call_id, f.name ->> '$' as name,
    case when {_t("f.error")} = 'BOOLEAN' then f.error::varchar = 'true' end as error,
    (
        -- read as text: a role of another type reads as its JSON text, none of these
        f.role in ('system', 'user', 'assistant', 'tool', 'function', 'developer')
        and {_t("f.content")} in ('MISSING', 'VARCHAR')
        and f.timestamp is null and f.usage is null and f.model is null
        and case when f.role in ('tool', 'function') then
            ({_t("f.tool_call_id")} = 'VARCHAR' and f.tool_call_id ->> '$' <> ''
                or f.tool_call_id is null and f.id is null)
            and {_t("f.name")} in ('MISSING', 'VARCHAR')
        else
            {_t("f.tool_calls")} in ('MISSING', 'ARRAY')
            or f.tool_calls::varchar in ('false', '""', '{{}}')
            or {_t("f.tool_calls")} = 'NUMBER' and try_cast(f.tool_calls::varchar as double) = 0
        end
    ) is true as ok
from flat
"""

# One row per tool call of those messages.
_CALL = '[{"id": "JSON", "function": "JSON", "name": "JSON", "arguments": "JSON"}]'
_CALLS = f"""
create or replace temp table calls as
with listed as (
    select rec, pos, role, json_transform(tool_calls, '{_CALL}') as items from msg
    where role not in ('tool', 'function') and {_t("tool_calls")} = 'ARRAY'
), flat as (
    select rec, pos, role, unnest(items) as c, unnest(range(len(items))) as sub from listed
), fields as (
    select *, case when {_t("c.function")} = 'OBJECT'
        then json_extract(c.function, ['$.name', '$.arguments']) end as fn
    from flat
)
select rec, pos, role, sub, c.id ->> '$' as call_id,
    (case when fn is not null then fn[1] else c.name end) ->> '$' as name,
    (case when fn is not null then fn[2] else c.arguments end)::varchar as args,
    (
        {_t("c.id")} in ('MISSING', 'VARCHAR')
        and {_t("case when fn is not null then fn[1] else c.name end")} = 'VARCHAR'
        and (case when fn is not null then fn[1] else c.name end) ->> '$' <> ''
    ) is true as ok
from fields
"""

# The records of the common shape, their messages and calls all of it too.
_FAST = """
create or replace temp table fast as
select rec from rec where ok
except select rec from msg where not ok
except select rec from calls where not ok
"""

_STEPS = """
with ncalls as (
    select rec, pos, count(*) as n from calls group by all
), said as (
    select m.rec, m.pos, 0 as sub,
        case when m.role = 'developer' then 'system' else m.role end as role,
        case when m.role = 'developer' then 'system' else m.role end as step_type,
        m.text as content_text, null as tool_name, null as tool_call_id, null as args,
        null as tool_result_text, null as error, m.role = 'assistant' as assistant
    from msg m semi join fast using (rec) left join ncalls c using (rec, pos)
    where m.role not in ('tool', 'function')
        and (m.role <> 'assistant' or coalesce(m.text, '') <> '' or c.n is null)
), called as (
    select c.rec, c.pos, c.sub + 1 as sub, 'assistant', 'tool_call', null, c.name, c.call_id,
        c.args, null, null, c.role = 'assistant'
    from calls c semi join fast using (rec)
), keyed as (
    select rec, pos::bigint * 1000000 + sub as key, call_id, name
    from calls semi join fast using (rec) where call_id is not null
), results as (
    select m.rec, m.pos, 0, 'tool', 'tool_result', null,
        coalesce(nullif(m.name, ''), k.name), m.tool_call_id, null, m.text, m.error, false
    from msg m semi join fast using (rec)
    asof left join keyed k
        on m.rec = k.rec and m.tool_call_id = k.call_id and m.pos::bigint * 1000000 > k.key
    where m.role in ('tool', 'function')
)
select * exclude (pos, sub)
from (select * from said union all select * from called union all select * from results)
order by rec, pos, sub
"""


# JSON text that may hold a float or an integer beyond 64 bits: orjson would write (or read)
# those otherwise than Python's json, so such text is canonicalised by json_text itself.
_FLOATISH = r"[0-9][.eE]|[0-9]{20}"


def _fast_json_text(text: str) -> str | None:
    """:func:`~pipeline.ingest.formats._common.json_text` of the value the JSON ``text``
    holds (text without floats or long integers, see ``_FLOATISH``), by orjson, which writes
    sorted-key compact JSON with raw UTF-8 as Python's json does (checked for every code point
    in the tests); ``None`` where the two may differ (NaN, text that is not JSON inside a
    string) or the value is null."""
    try:
        value = orjson.loads(text)
        if isinstance(value, str):
            value = orjson.loads(value)
        elif value is None:
            return None
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONDecodeError:
        return None


def canonical_json_texts(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """:func:`~pipeline.ingest.formats._common.json_text` of the value each JSON text of
    ``column`` holds (null stays null), computed once per distinct text: by orjson where it
    writes the same text (:func:`_fast_json_text`), else by ``json_text``."""
    if len(column) == 0:
        return pa.array([], pa.string())
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    floatish = pc.match_substring_regex(encoded.dictionary, _FLOATISH).to_pylist()
    values = []
    for text, slow in zip(encoded.dictionary.to_pylist(), floatish, strict=True):
        fast = None if slow else _fast_json_text(text)
        values.append(fast if fast is not None else json_text(json.loads(text)))
    return pc.take(pa.array(values, pa.string()), encoded.indices)


def _flagged(raw: pa.Table) -> tuple[pa.Array, pa.Array]:
    """``is_error`` and ``error_message`` of each step: a tool result is an error when its
    message says so (``error`` a boolean) or, without that flag, when its text starts like an
    error (:data:`~pipeline.ingest.formats._common.ERROR_TEXT`), as ``chat_steps`` decides.
    The pattern is tried in Python only on the texts that hold one of its words anywhere."""
    result = pc.equal(raw.column("step_type"), "tool_result")
    text = raw.column("tool_result_text")
    maybe = pc.and_(
        pc.and_(result, pc.is_null(raw.column("error"))),
        pc.match_substring_regex(text, "(?i)(error|exception|traceback)"),
    )
    is_error = _mask(pc.and_(result, raw.column("error"))).copy()
    candidates = np.flatnonzero(_mask(maybe))
    for row, value in zip(candidates, pc.take(text, candidates).to_pylist(), strict=True):
        is_error[row] = bool(value and ERROR_TEXT.match(value))
    rows = np.flatnonzero(is_error)
    messages: list[str | None] = [None] * len(is_error)
    for row, value in zip(rows, pc.take(text, rows).to_pylist(), strict=True):
        if value and value.strip():
            messages[row] = value.strip().splitlines()[0][:500]
    return pa.array(is_error, pa.bool_()), pa.array(messages, pa.string())


def numbers(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow integer array without nulls as an int64 numpy array, read from its buffer
    (``to_numpy`` would import pandas)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    array = array.cast(pa.int64())
    return np.frombuffer(
        array.buffers()[1], dtype=np.int64, count=len(array), offset=array.offset * 8
    )


def _mask(array: Any) -> np.ndarray:
    """A boolean Arrow array (nulls as False) as a numpy bool array."""
    return numbers(pc.fill_null(array, False)).astype(bool)


def _first_rows(owner: np.ndarray, mask: np.ndarray, records: int, last: bool = False) -> pa.Array:
    """Per record (``0..records-1``), the row of its first (``last``: last) step where ``mask``
    holds, as an int64 array with nulls for records without one (for ``pc.take``)."""
    rows = np.flatnonzero(mask)
    if last:
        rows = rows[::-1]
    found, first = np.unique(owner[rows], return_index=True)
    picked = np.full(records, -1, dtype=np.int64)
    picked[found] = rows[first]
    return pa.array(picked, pa.int64(), mask=picked < 0)


def _steps_table(raw: pa.Table, owner: np.ndarray, traj: pa.Table) -> pa.Table:
    """The canonical steps table from the rows of ``_STEPS``; ``owner``: the row in ``traj`` of
    each step's record (steps come grouped by record, in order)."""
    n = raw.num_rows
    is_error, messages = _flagged(raw)
    counts = np.bincount(owner, minlength=traj.num_rows)
    step_idx = np.arange(n, dtype=np.int64) - (np.cumsum(counts) - counts)[owner]
    owners = pa.array(owner, pa.int64())
    model = pc.if_else(
        raw.column("assistant"),
        pc.take(traj.column("model"), owners),
        pa.scalar(None, pa.string()),
    )
    ts = TABLES["steps"].field("started_at").type
    columns: dict[str, Any] = {
        "trajectory_id": pc.take(traj.column("trajectory_id"), owners),
        "step_idx": pa.array(step_idx, pa.int64()),
        "role": raw.column("role"),
        "step_type": raw.column("step_type"),
        "content_text": raw.column("content_text"),
        "tool_name": raw.column("tool_name"),
        "tool_call_id": raw.column("tool_call_id"),
        "tool_args": canonical_json_texts(raw.column("args")),
        "tool_result_text": raw.column("tool_result_text"),
        "is_error": is_error,
        "error_message": messages,
        "model": model,
        "input_tokens": pa.nulls(n, pa.int64()),
        "output_tokens": pa.nulls(n, pa.int64()),
        "started_at": pa.nulls(n, ts),
        "ended_at": pa.nulls(n, ts),
        "actor": pa.nulls(n, pa.string()),
    }
    return _table("steps", columns)


def _derived(steps: pa.Table, owner: np.ndarray, records: int) -> dict[str, Any]:
    """The columns :func:`~pipeline.ingest.formats._common.finish_trajectory` derives from the
    steps (those of the common shape: no tokens, no times), per record."""
    kind = steps.column("step_type")
    text = steps.column("content_text")
    said = _mask(pc.and_(pc.equal(kind, "assistant"), pc.greater(pc.utf8_length(text), 0)))
    return {
        "n_steps": np.bincount(owner, minlength=records),
        "n_tool_calls": np.bincount(owner[_mask(pc.equal(kind, "tool_call"))], minlength=records),
        "n_tool_errors": np.bincount(owner[_mask(steps.column("is_error"))], minlength=records),
        "system_prompt": pc.take(
            text, _first_rows(owner, _mask(pc.equal(kind, "system")), records)
        ),
        "task_input": pc.take(text, _first_rows(owner, _mask(pc.equal(kind, "user")), records)),
        "final_output": pc.take(text, _first_rows(owner, said, records, last=True)),
    }


def _table(name: str, columns: dict[str, Any]) -> pa.Table:
    """The canonical table ``name`` from arrays (or chunked arrays) by column name, cast."""
    schema = TABLES[name]
    arrays = []
    for field in schema:
        column = columns[field.name]
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        arrays.append(column.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def chat_tables(
    con: duckdb.DuckDBPyConnection, lines: pa.Table, source_uri: str, reward_threshold: float
) -> tuple[dict[str, pa.Table], pa.Array, pa.Array, pa.Array]:
    """Map the lines of ``lines`` (columns ``rec`` int64, the line's position in its block, and
    ``line`` string, one JSON Lines record) that are of the common shape (see the module).

    Returns:
        ``(tables, fast, steps_rec, feedback_rec)``: the three canonical tables (schemas of
        :data:`~pipeline.ingest.schema.TABLES`; ``record_sha256`` the SHA-256 of the line as
        given, ``prompt_version`` as found, text or integer as text, for the caller to settle) of
        the records of the common shape, in ``rec`` order; ``fast``: their ``rec`` (int64,
        ascending); ``steps_rec`` / ``feedback_rec``: the ``rec`` of each steps and feedback
        row (int64).

    Raises:
        duckdb.Error: DuckDB fails on a line it took for valid JSON (the caller then reads the
            block record by record).
    """
    con.register("lines", lines)
    try:
        for sql in (_RECORDS, _MESSAGES, _CALLS, _FAST):
            con.execute(sql)
        traj = con.sql(_TRAJECTORIES).to_arrow_table()
        raw = con.sql(_STEPS).to_arrow_table()
    finally:
        con.unregister("lines")
    return _assemble(traj, raw, source_uri, reward_threshold)


_TRAJECTORIES = """
select * exclude (messages) from rec semi join fast using (rec) order by rec
"""


def _outcomes(
    traj: pa.Table, threshold: float
) -> tuple[list[float | None], list[str], list[str | None]]:
    """``(outcome_score, outcome_label, outcome_source)`` per record: ``outcome`` when given,
    else the reward against ``threshold`` (as :func:`~pipeline.ingest.formats._common.label_from_reward`)."""
    scores = [
        None if r is None else float(json.loads(r)) for r in traj.column("reward_json").to_pylist()
    ]
    labels: list[str] = []
    sources: list[str | None] = []
    for given, score in zip(traj.column("outcome").to_pylist(), scores, strict=True):
        if given is not None:
            labels.append(given)
            sources.append("outcome")
        else:
            labels.append(label_from_reward(score, threshold))
            sources.append(None if score is None else "reward")
    return scores, labels, sources


def _assemble(
    traj: pa.Table, raw: pa.Table, source_uri: str, threshold: float
) -> tuple[dict[str, pa.Table], pa.Array, pa.Array, pa.Array]:
    """The canonical tables from the rows the SQL gave (see :func:`chat_tables`)."""
    n = traj.num_rows
    fast = traj.column("rec").combine_chunks()
    steps_rec = raw.column("rec").combine_chunks()
    owner = np.searchsorted(numbers(fast), numbers(steps_rec))
    steps = _steps_table(raw, owner, traj)
    scores, labels, sources = _outcomes(traj, threshold)
    prompt = [
        None if j is None else str(json.loads(j))
        for j in traj.column("prompt_version_json").to_pylist()
    ]
    meta = pc.coalesce(traj.column("meta_object").cast(pa.string()), pa.scalar("{}"))
    ts = TABLES["trajectories"].field("started_at").type
    columns: dict[str, Any] = {name: traj.column(name) for name in traj.column_names}
    columns |= {name: pa.array(v) for name, v in _derived(steps, owner, n).items()}
    columns |= {
        "source_format": pa.array(["chat-jsonl"] * n, pa.string()),
        "source_uri": pa.array([source_uri] * n, pa.string()),
        "started_at": pa.nulls(n, ts),
        "ended_at": pa.nulls(n, ts),
        "prompt_version": pa.array(prompt, pa.string()),
        "outcome_label": pa.array(labels, pa.string()),
        "outcome_score": pa.array(scores, pa.float64()),
        "outcome_source": pa.array(sources, pa.string()),
        "input_tokens": pa.nulls(n, pa.int64()),
        "output_tokens": pa.nulls(n, pa.int64()),
        "metadata": canonical_json_texts(meta),
        "record_sha256": traj.column("digest"),
    }
    trajectories = _table("trajectories", columns)
    rewarded = pc.is_valid(trajectories.column("outcome_score"))
    picked = trajectories.filter(rewarded)
    m = picked.num_rows
    feedback = _table(
        "feedback",
        {
            "trajectory_id": picked.column("trajectory_id"),
            "step_idx": pa.nulls(m, pa.int64()),
            "name": pa.array(["reward"] * m, pa.string()),
            "value": picked.column("outcome_score"),
            "value_text": pa.nulls(m, pa.string()),
            "source": pa.array(["dataset"] * m, pa.string()),
            "comment": pa.nulls(m, pa.string()),
        },
    )
    tables = {"trajectories": trajectories, "steps": steps, "feedback": feedback}
    return tables, fast, steps_rec, pc.filter(fast, rewarded)

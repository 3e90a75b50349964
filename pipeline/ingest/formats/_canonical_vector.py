"""Canonical JSONL read column-wise: a block of lines in, the canonical tables of the records
whose shape DuckDB can map exactly out (for
:func:`~pipeline.ingest.formats._linebatch.read_line_batches`); the other lines are read one by
one by :mod:`~pipeline.ingest.formats.canonical`, which gives them the same rows or the same
quarantine reason as before.

A line is of the common shape when ``trajectory_id`` is a non-empty string; every other field
of the trajectory row, of each ``steps`` item and of each ``feedback`` item is absent, null or
of its column's type (text; an integer that fits int64; any number for a float column; a
boolean for ``is_error``; text that :func:`~pipeline.ingest.formats._common.parse_time` reads
for a time); ``outcome_label`` is a label, ``""`` or absent; ``source_format`` and ``source_uri``
are text; ``prompt_version`` is text or an integer; ``steps`` and ``feedback`` are absent, null
or lists of objects. ``metadata`` and ``tool_args`` may hold any JSON value: one that is not text
is written as ``json.dumps(value, sort_keys=True)``, as the per-record reader does.

The rows are those of the per-record reader, derived trajectory columns included
(:func:`~pipeline.ingest.formats._common.finish_trajectory`), and so is the content hash
(``record_sha256``, :mod:`~pipeline.ingest.formats._rowhash`): a canonical record's hash is that
of its rows, not of its line. As for Chat JSONL, an object that names the same key twice keeps
the first value here, Python's json the last.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest.formats._chat_vector import numbers
from pipeline.ingest.formats._rowhash import json_values, record_digests, row_texts
from pipeline.ingest.formats._sqljson import PARSABLE, is_int64, is_integer, json_type
from pipeline.ingest.formats._timecol import parse_times
from pipeline.ingest.schema import OUTCOME_LABELS, TABLES

__all__ = ["canonical_tables"]

# How each column is read: by its type, but for the columns the reader treats apart.
_SPECIAL = {
    "metadata": "json",
    "tool_args": "json",
    "prompt_version": "version",
    "record_sha256": "ignored",
    "outcome_label": "label",
    "trajectory_id": "id",
}
_UNHASHED = ("source_uri", "record_sha256", "prompt_version")


def _kind(name: str, field: pa.Field) -> str:
    if name in _SPECIAL:
        return _SPECIAL[name]
    if pa.types.is_timestamp(field.type):
        return "time"
    if pa.types.is_int64(field.type):
        return "int"
    if pa.types.is_float64(field.type):
        return "float"
    if pa.types.is_boolean(field.type):
        return "bool"
    return "text"


def _ok(expr: str, kind: str, t: str) -> str:
    """SQL: whether the JSON value ``expr`` (of JSON type ``t``, a column holding
    :func:`json_type`) may be read column-wise as a ``kind`` column."""
    return {
        "text": f"{t} in ('MISSING', 'NULL', 'VARCHAR')",
        "time": f"{t} in ('MISSING', 'NULL', 'VARCHAR')",
        "label": f"{t} in ('MISSING', 'NULL') or {t} = 'VARCHAR' and ({expr}) ->> '$' in "
        + "('', "
        + ", ".join(f"'{label}'" for label in OUTCOME_LABELS)
        + ")",
        "int": f"{t} in ('MISSING', 'NULL') or {t} = 'NUMBER' and {is_int64(expr)}",
        "version": f"{t} in ('MISSING', 'NULL', 'VARCHAR') or {t} = 'NUMBER' and {is_int64(expr)}",
        # an integer Arrow takes as a double exactly (as the per-record conversion demands)
        "float": f"{t} in ('MISSING', 'NULL') or {t} = 'NUMBER' and (not {is_integer(expr)} "
        f"or {is_int64(expr)} and abs(try_cast(({expr})::varchar as bigint)) <= 9007199254740992)",
        "bool": f"{t} in ('MISSING', 'NULL', 'BOOLEAN')",
        "id": f"{t} = 'VARCHAR' and ({expr}) ->> '$' <> ''",
        "json": "true",
        "ignored": "true",
    }[kind]


def _value(expr: str, kind: str, name: str, t: str) -> str:
    """SQL: the value of the JSON value ``expr`` (of JSON type ``t``) as the column ``name``
    of kind ``kind``: text (as text), integers, booleans (absent: false); JSON text for floats
    (written back by Python) and for ``metadata``/``tool_args`` values that are not text
    (``name__json``)."""
    if kind in ("text", "time", "label", "id"):
        return f"({expr}) ->> '$' as {name}"
    if kind == "int":
        return (
            f"case when {t} = 'NUMBER' and {is_int64(expr)} then ({expr})::varchar::bigint end "
            f"as {name}"
        )
    if kind == "version":
        return f"case when {t} <> 'NULL' then ({expr}) ->> '$' end as {name}"
    if kind == "float":
        return f"case when {t} = 'NUMBER' then ({expr})::varchar end as {name}"
    if kind == "bool":
        return f"coalesce(({expr})::varchar = 'true', false) as {name}"
    if kind == "json":
        return (
            f"case when {t} = 'VARCHAR' then ({expr}) ->> '$' end as {name}, "
            f"case when {t} not in ('MISSING', 'NULL', 'VARCHAR') then ({expr})::varchar end "
            f"as {name}__json"
        )
    return f"null as {name}"


def _struct(table: str, extra: str = "") -> str:
    return "{" + ", ".join(f'"{n}": "JSON"' for n in TABLES[table].names) + extra + "}"


def _fields(table: str, source: str) -> tuple[str, str, str]:
    """The JSON types (``<name>__t``, each computed once), the select list and the shape test
    of one table's row read from struct ``source``."""
    types, values, tests = [], [], []
    for field in TABLES[table]:
        kind = _kind(field.name, field)
        if table != "trajectories" and kind == "id":
            kind = "ignored"
        expr, t = f"{source}.{field.name}", f"{field.name}__t"
        if kind != "ignored":
            types.append(f"{json_type(expr)} as {t}")
        values.append(_value(expr, kind, field.name, t))
        tests.append(f"({_ok(expr, kind, t)})")
    return ", ".join(types), ", ".join(values), " and ".join(tests)


_TRAJ_TYPES, _TRAJ_VALUES, _TRAJ_OK = _fields("trajectories", "r")
_LINE = _struct("trajectories", ', "steps": "JSON", "feedback": "JSON"')
_RECORDS = f"""
create or replace temp table crec as
with parsed as (
    select rec, json_transform(line, '{_LINE}') as r
    from lines where {PARSABLE} and left(line, 1) = '{{'
), typed as (
    select *, {_TRAJ_TYPES} from parsed
)
select rec, {_TRAJ_VALUES}, r.steps as steps_json, r.feedback as feedback_json,
    (
        {_TRAJ_OK}
        and {json_type("r.steps")} in ('MISSING', 'NULL', 'ARRAY')
        and {json_type("r.feedback")} in ('MISSING', 'NULL', 'ARRAY')
    ) is true as ok
from typed
"""


def _items(table: str) -> str:
    types, values, ok = _fields(table, "s")
    return f"""
create or replace temp table c{table} as
with listed as (
    select rec, from_json({table}_json, '["JSON"]') as items from crec
    where ok and {json_type(f"{table}_json")} = 'ARRAY'
), flat as (
    select rec, unnest(items) as item, unnest(range(len(items))) as pos from listed
), fields as (
    select rec, pos, item, json_transform(item, '{_struct(table)}') as s from flat
), typed as (
    select *, {types} from fields
)
select rec, pos, {values}, ({json_type("item")} = 'OBJECT' and {ok}) is true as ok
from typed
"""


_FAST = """
create or replace temp table cfast as
select rec from crec where ok
except select rec from csteps where not ok
except select rec from cfeedback where not ok
"""


def _valid(array: Any) -> np.ndarray:
    return numbers(pc.is_valid(array).cast(pa.int8())).astype(bool)


def _json_dumps(column: pa.ChunkedArray) -> pa.Array:
    """``json.dumps(value, sort_keys=True)`` of each JSON text (once per distinct text)."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    values = [json.dumps(json.loads(t), sort_keys=True) for t in encoded.dictionary.to_pylist()]
    return pc.take(pa.array(values, pa.string()), encoded.indices)


def _numbers_of(column: pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """JSON number texts as floats and as ``json.dumps`` writes the Python number."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    values = [json.loads(t) for t in encoded.dictionary.to_pylist()]
    floats = pa.array([float(v) for v in values], pa.float64())
    texts = pa.array([json.dumps(v) for v in values], pa.large_string())
    return pc.take(floats, encoded.indices), pc.fill_null(pc.take(texts, encoded.indices), "null")


def _first(owner: np.ndarray, mask: np.ndarray, records: int, last: bool = False) -> pa.Array:
    """Per record, the row of its first (``last``: last) step where ``mask`` holds; null where
    none does (for ``pc.take``)."""
    rows = np.flatnonzero(mask)
    if last:
        rows = rows[::-1]
    found, first = np.unique(owner[rows], return_index=True)
    picked = np.full(records, -1, dtype=np.int64)
    picked[found] = rows[first]
    return pa.array(picked, pa.int64(), mask=picked < 0)


def _sums(owner: np.ndarray, column: pa.ChunkedArray, records: int) -> pa.Array:
    """Per record, the sum of the non-null values of ``column``; null where all are null."""
    valid = _valid(column)
    values = numbers(pc.fill_null(column, 0))
    sums = np.zeros(records, np.int64)
    np.add.at(sums, owner, values)
    present = np.bincount(owner[valid], minlength=records) > 0
    return pa.array(sums, pa.int64(), mask=~present)


def _derived(steps: dict[str, Any], owner: np.ndarray, records: int) -> dict[str, Any]:
    """The columns ``finish_trajectory`` derives from the steps, per record."""
    kind, text = steps["step_type"], steps["content_text"]
    said = pc.and_(pc.equal(kind, "assistant"), pc.greater(pc.utf8_length(text), 0))
    started = steps["started_at"]
    times = (
        pa.table({"owner": owner, "t": started})
        .group_by("owner")
        .aggregate([("t", "min"), ("t", "max")])
    )
    at = numbers(times.column("owner"))
    first = np.full(records, -1, np.int64)
    first[at] = np.arange(len(at))
    index = pa.array(first, pa.int64(), mask=first < 0)
    errors = _mask(steps["is_error"])
    return {
        "n_steps": pa.array(np.bincount(owner, minlength=records)),
        "n_tool_calls": pa.array(
            np.bincount(owner[_mask(pc.equal(kind, "tool_call"))], minlength=records)
        ),
        "n_tool_errors": pa.array(np.bincount(owner[errors], minlength=records)),
        "input_tokens": _sums(owner, steps["input_tokens"], records),
        "output_tokens": _sums(owner, steps["output_tokens"], records),
        "system_prompt": pc.take(text, _first(owner, _mask(pc.equal(kind, "system")), records)),
        "task_input": pc.take(text, _first(owner, _mask(pc.equal(kind, "user")), records)),
        "final_output": pc.take(text, _first(owner, _mask(said), records, last=True)),
        "started_at": pc.take(times.column("t_min"), index),
        "ended_at": pc.take(times.column("t_max"), index),
    }


def _mask(array: Any) -> np.ndarray:
    return numbers(pc.fill_null(array, False).cast(pa.int8())).astype(bool)


def _owner_ids(traj_ids: pa.Array, owner: np.ndarray) -> pa.Array:
    return pc.take(traj_ids, pa.array(owner, pa.int64()))


def _query(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    table = con.sql(sql).to_arrow_table()
    return {name: table.column(name) for name in table.column_names}


def canonical_tables(
    con: duckdb.DuckDBPyConnection, lines: pa.Table, source_uri: str
) -> tuple[dict[str, pa.Table], pa.Array, pa.Array, pa.Array]:
    """Map the lines of ``lines`` (``rec`` int64, ``line`` string) that are of the common
    shape (see the module): as :func:`~pipeline.ingest.formats._chat_vector.chat_tables`,
    ``(tables, fast, steps_rec, feedback_rec)``, ``record_sha256`` the hash of the rows.

    Raises:
        duckdb.Error: DuckDB fails on a line it took for valid JSON.
    """
    con.register("lines", lines)
    try:
        for sql in (_RECORDS, _items("steps"), _items("feedback"), _FAST):
            con.execute(sql)
        traj = _query(
            con,
            "select * exclude (steps_json, feedback_json, ok) from crec "
            "semi join cfast using (rec) order by rec",
        )
        steps = _query(
            con, "select * exclude (ok) from csteps semi join cfast using (rec) order by rec, pos"
        )
        feedback = _query(
            con,
            "select * exclude (ok) from cfeedback semi join cfast using (rec) order by rec, pos",
        )
    finally:
        con.unregister("lines")
    bad = np.zeros(len(traj["rec"]), bool)
    fast = numbers(traj["rec"])
    steps_owner = np.searchsorted(fast, numbers(steps["rec"]))
    for table, owner in ((traj, None), (steps, steps_owner)):
        for name in ("started_at", "ended_at"):
            table[name], failed = parse_times(table[name])
            bad[owner[failed] if owner is not None else failed] = True
    if bad.any():
        keep = pa.array(fast[~bad], pa.int64())
        traj = {k: pc.filter(v, pc.is_in(traj["rec"], keep)) for k, v in traj.items()}
        steps = {k: pc.filter(v, pc.is_in(steps["rec"], keep)) for k, v in steps.items()}
        feedback = {k: pc.filter(v, pc.is_in(feedback["rec"], keep)) for k, v in feedback.items()}
        fast = fast[~bad]
        steps_owner = np.searchsorted(fast, numbers(steps["rec"]))
    return _assemble(traj, steps, feedback, fast, steps_owner, source_uri)


def _assemble(
    traj: dict[str, Any],
    steps: dict[str, Any],
    feedback: dict[str, Any],
    fast: np.ndarray,
    steps_owner: np.ndarray,
    source_uri: str,
) -> tuple[dict[str, pa.Table], pa.Array, pa.Array, pa.Array]:
    n = len(fast)
    feedback_owner = np.searchsorted(fast, numbers(feedback["rec"]))
    ids = traj["trajectory_id"].combine_chunks()
    hashed: dict[str, dict[str, Any]] = {"trajectories": {}, "steps": {}, "feedback": {}}
    # steps
    steps["trajectory_id"] = _owner_ids(ids, steps_owner)
    steps["step_idx"] = pc.coalesce(steps["step_idx"], steps["pos"])
    steps["tool_args"] = pc.coalesce(steps["tool_args"], _json_dumps(steps["tool_args__json"]))
    # feedback
    feedback["trajectory_id"] = _owner_ids(ids, feedback_owner)
    feedback["value"], hashed["feedback"]["value"] = _numbers_of(feedback["value"])
    # trajectories
    for name in ("outcome_score", "cost_usd"):
        traj[name], hashed["trajectories"][name] = _numbers_of(traj[name])
    traj["outcome_label"] = _or(traj["outcome_label"], "unknown")
    traj["source_format"] = _or(traj["source_format"], "canonical")
    traj["source_uri"] = _or(traj["source_uri"], source_uri)
    traj["metadata"] = pc.coalesce(traj["metadata"], _json_dumps(traj["metadata__json"]))
    for name, value in _derived(steps, steps_owner, n).items():
        traj[name] = pc.coalesce(traj[name], value.cast(TABLES["trajectories"].field(name).type))
    tables = {}
    texts = {}
    for name, columns in (("trajectories", traj), ("steps", steps), ("feedback", feedback)):
        schema = TABLES[name]
        rows = len(columns["rec"])
        arrays = [
            columns[f.name].cast(f.type) if f.name in columns else pa.nulls(rows, f.type)
            for f in schema
        ]
        tables[name] = pa.Table.from_arrays(
            [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays],
            schema=schema,
        )
        keys = [f for f in schema.names if not (name == "trajectories" and f in _UNHASHED)]
        texts[name] = row_texts(
            {
                k: hashed[name][k] if k in hashed[name] else json_values(tables[name].column(k))
                for k in keys
            },
            rows,
        )
    digests = record_digests(
        texts["trajectories"], texts["steps"], steps_owner, texts["feedback"], feedback_owner
    )
    trajectories = tables["trajectories"]
    index = trajectories.schema.get_field_index("record_sha256")
    tables["trajectories"] = trajectories.set_column(
        index, trajectories.schema.field(index), digests
    )
    rec = pa.array(fast, pa.int64())
    return tables, rec, steps["rec"].combine_chunks(), feedback["rec"].combine_chunks()


def _or(column: Any, default: str) -> Any:
    """``column or default`` for text: null and ``""`` become ``default``."""
    empty = pc.fill_null(pc.equal(column, ""), False)
    return pc.coalesce(pc.if_else(empty, pa.scalar(None, pa.string()), column), default)

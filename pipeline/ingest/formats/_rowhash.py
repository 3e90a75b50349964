"""The content hash of records mapped column-wise, the same as
:func:`pipeline.ingest._run.record_sha256` computes from the rows built one by one.

``record_sha256`` hashes ``json.dumps([trajectory, steps, feedback], sort_keys=True,
default=str)``: each row a dict whose keys are the columns its reader set. Here each row's text
is put together from its columns (:func:`row_texts`), written as ``json.dumps`` writes the
Python values Arrow gives back (:func:`json_values`): strings ASCII-escaped
(``json.encoder.encode_basestring_ascii``), integers in decimal, floats as ``float.__repr__``
(``NaN``, ``Infinity``), ``true``/``false``, ``null``, timestamps as ``str(datetime)`` (UTC:
``2024-06-01 00:00:00+00:00``, microseconds only when not zero); keys sorted, items joined by
``", "``, keys by ``": "``. The texts of a record's rows are joined and hashed once per record
(:func:`record_digests`). The tests check the digests against ``record_sha256`` row for row.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["json_values", "record_digests", "row_texts"]

_escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _cat(*parts: str | pa.Array) -> pa.Array:
    """The parts (text or ``large_string`` arrays) joined element-wise, no separator."""
    items = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*items, pa.scalar("", pa.large_string()))


def _float_text(value: float) -> str:
    """A float as ``json.dumps`` writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def json_values(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value of ``column`` (string, integer, float, boolean or UTC timestamp) as
    ``json.dumps(value, default=str)`` writes the Python value, ``null`` for nulls; a
    ``large_string`` array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # once per distinct text: a run's system prompt is in each of its rows
        encoded = pc.dictionary_encode(column)
        texts = [_escape(v) for v in encoded.dictionary.to_pylist()]
        out = pc.take(pa.array(texts, pa.large_string()), encoded.indices)
    elif pa.types.is_integer(kind):
        out = pc.cast(column, pa.string())
    elif pa.types.is_boolean(kind):
        out = pc.if_else(column, "true", "false")
    elif pa.types.is_floating(kind):
        out = pa.array(
            [None if v is None else _float_text(v) for v in column.to_pylist()], pa.string()
        )
    elif pa.types.is_timestamp(kind):
        text = pc.strftime(column.cast(pa.timestamp("us", tz="UTC")), "%Y-%m-%d %H:%M:%S")
        text = pc.replace_substring_regex(text, r"\.000000$", "")
        out = _cat('"', text.cast(pa.large_string()), '+00:00"')
    elif pa.types.is_null(kind):
        out = pa.nulls(len(column), pa.string())
    else:
        raise TypeError(f"no JSON text for {kind}")
    return pc.fill_null(out.cast(pa.large_string()), "null")


def row_texts(columns: Mapping[str, pa.Array], rows: int) -> pa.Array:
    """The ``json.dumps(row, sort_keys=True)`` text of each of ``rows`` dicts whose values are
    given by ``columns``: key -> the JSON text of the value (:func:`json_values`), null where
    the row's dict has no such key."""
    pieces = []
    for key in sorted(columns):
        value = columns[key]
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        pieces.append(_cat(_escape(key) + ": ", value.cast(pa.large_string())))
    if not pieces:
        return pa.array(["{}"] * rows, pa.large_string())
    comma = pa.scalar(", ", pa.large_string())
    joined = pc.binary_join_element_wise(*pieces, comma, null_handling="skip")
    return _cat("{", joined, "}")


def _grouped(texts: pa.Array, owner: np.ndarray, records: int) -> pa.Array:
    """``[a, b, ...]`` per record: the texts of its rows (``owner``: the record of each row,
    ascending) joined as a JSON list."""
    counts = np.bincount(owner, minlength=records)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), texts.cast(pa.large_string()))
    return _cat("[", pc.binary_join(lists, pa.scalar(", ", pa.large_string())), "]")


def record_digests(
    trajectories: pa.Array,
    steps: pa.Array,
    steps_owner: np.ndarray,
    feedback: pa.Array,
    feedback_owner: np.ndarray,
) -> pa.Array:
    """SHA-256 (hex) of ``[trajectory, steps, feedback]`` per record, as
    :func:`~pipeline.ingest._run.record_sha256` writes and hashes it, from the texts of the
    rows (:func:`row_texts`) and, for each steps and feedback row, its record (ascending)."""
    records = len(trajectories)
    payload = _cat(
        "[",
        trajectories.cast(pa.large_string()),
        ", ",
        _grouped(steps, steps_owner, records),
        ", ",
        _grouped(feedback, feedback_owner, records),
        "]",
    )
    digests = [hashlib.sha256(text.encode("ascii")).hexdigest() for text in payload.to_pylist()]
    return pa.array(digests, pa.string())

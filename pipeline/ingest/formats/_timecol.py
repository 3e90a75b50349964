"""A column of time texts read as :func:`~pipeline.ingest.formats._common.parse_time` reads
each: the common ISO-8601 form without an offset (``2025-01-01T10:00:00`` or with six digits
of microseconds, taken as UTC) by Arrow, the others by ``parse_time`` itself, once per
distinct text. Arrow's ``strptime`` rolls impossible dates over (``02-30`` is ``03-02``), so
its result counts only where it writes back the text it read.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest.formats._common import parse_time

__all__ = ["micros", "parse_times"]

_UTC = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?$"


def _bools(array: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def parse_times(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """``parse_time`` of each text of ``texts`` (null stays null) as ``timestamp[us, UTC]``,
    and where it raised ``ValueError`` (a numpy bool array; those values are null)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = texts.cast(pa.string())
    head = pc.utf8_slice_codeunits(texts, 0, 19)
    parsed = pc.strptime(head, format="%Y-%m-%dT%H:%M:%S", unit="us", error_is_null=True)
    written = pc.strftime(parsed, "%Y-%m-%dT%H:%M:%S")
    fast = pc.and_(
        pc.match_substring_regex(texts, _ISO),
        pc.equal(written, pc.binary_join_element_wise(head, ".000000", "")),
    )
    fraction = pc.utf8_slice_codeunits(texts, 20, 26)
    six = pc.fill_null(pc.and_(fast, pc.equal(pc.utf8_length(fraction), 6)), False)
    fraction_us = pc.if_else(six, fraction, "0").cast(pa.int64())
    values = pc.add(parsed.cast(pa.int64()), fraction_us)
    fast_mask = _bools(fast)
    failed = np.zeros(len(texts), bool)
    slow = np.flatnonzero(~fast_mask & _bools(pc.is_valid(texts)))
    if not len(slow):
        return pc.if_else(fast, values, pa.scalar(None, pa.int64())).cast(_UTC), failed
    out = pc.fill_null(values, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    valid = fast_mask.copy()
    known: dict[str, int | None] = {}  # text -> microseconds (None: no time)
    refused: set[str] = set()
    for row, text in zip(slow, pc.take(texts, pa.array(slow)).to_pylist(), strict=True):
        if text not in known and text not in refused:
            try:
                when = parse_time(text)
            except ValueError:
                refused.add(text)
            else:
                known[text] = None if when is None else micros(when)
        if text in refused:
            failed[row] = True
        elif (value := known[text]) is not None:
            out[row] = value
            valid[row] = True
    return pa.array(out, pa.int64(), mask=~valid).cast(_UTC), failed


def micros(when: datetime) -> int:
    """An aware datetime as microseconds since the Unix epoch."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

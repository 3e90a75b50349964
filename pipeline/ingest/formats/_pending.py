"""Records hashed from their source and built only when ingest keeps them (:class:`Pending`).

A reader that can name a record's trajectory id and hash its source before building its rows
yields a :class:`Pending`: ingest settles the id against the run first and builds the rows
only when the record is not a duplicate (:mod:`pipeline.ingest._intake`), so a file read
twice costs its parsing and hashing, not its rows. The hash must then cover everything the
rows are made of: the record's source value and the context it is read with (file-level
fields, options such as the reward threshold), written by :func:`canonical_json`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.ingest.formats._common import Quarantined, Record

__all__ = ["Pending", "canonical_json"]


@dataclass
class Pending:
    """A record known by its trajectory id and content hash, its rows not built yet.

    ``build()`` gives the :class:`Record` (whose ``trajectory_id`` is ``trajectory_id``) or,
    when its values cannot be read, the :class:`Quarantined` the reader would have yielded;
    ``digest`` is the SHA-256 (hex) of its source and context; ``where`` and ``records`` as in
    :class:`Record`.
    """

    trajectory_id: str
    digest: str
    build: Callable[[], Record | Quarantined]
    where: str = ""
    records: int = 1


def _finite(value: Any) -> bool:
    """True when no float in ``value`` (nested lists and objects) is NaN or infinite."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def canonical_json(value: Any, *, finite: bool = False) -> bytes | None:
    """``value`` (a parsed JSON value) as compact JSON with sorted keys, a function of the value
    alone: two values give the same bytes only when they are equal (an integer and a float
    differ, ``1`` from ``1.0``). Written by orjson; values it cannot write as they are (NaN and
    infinities, which it would write as ``null``; integers beyond 64 bits; strings with lone
    surrogates; nesting beyond 255 levels) by Python's ``json`` (``NaN`` as ``NaN``, the
    surrogates as ``surrogatepass`` bytes), whose output orjson never gives.

    ``finite``: the caller knows ``value`` holds no NaN or infinity (orjson parsed it), so it
    is not walked to find one. Returns ``None`` when neither can write it (nested beyond the
    recursion limit).
    """
    if finite or _finite(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except (RecursionError, TypeError, ValueError):
        return None
    return text.encode("utf-8", "surrogatepass")

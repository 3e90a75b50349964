"""The ``prompt_version`` column of ``trajectories``: which version of the system prompt a run
used, as its trace recorded it.

The adapters pick the recorded value (:func:`span_prompt_version` for the span formats,
:func:`langfuse_prompt_version`, or a plain field of the record) and leave it in the trajectory
row as found; ingest then settles it with :func:`clean_prompt_version`: text and integers are
kept (as stripped text; empty text is no version; a number with an integral value, such as the
``3.0`` pandas writes for an integer column with gaps, is that integer), anything else (an
object, a list, a boolean, a fraction) is not guessed at, but left null and counted in a
per-file warning.
:func:`clean_prompt_versions` does the same for a canonical Parquet column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest.formats._otlp import Span

__all__ = [
    "PROMPT_TEMPLATE_VERSION",
    "clean_prompt_version",
    "clean_prompt_versions",
    "langfuse_prompt_version",
    "recorded",
    "span_prompt_version",
]

# The OpenInference attribute (also read from OTel spans) that names the prompt template version.
PROMPT_TEMPLATE_VERSION = "llm.prompt_template.version"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def recorded(value: Any) -> bool:
    """Whether ``value`` counts as a recorded prompt version: anything but null, NaN (which a
    JSON writer such as Python's may put for a missing value) and blank text (a value of the
    wrong type counts, so that it is reported rather than skipped)."""
    if isinstance(value, float) and math.isnan(value):
        return False
    return value is not None and not (isinstance(value, str) and not value.strip())


def clean_prompt_version(value: Any) -> tuple[str | None, bool]:
    """``(text, usable)`` for a recorded prompt version: text stripped of surrounding blanks, an
    integer (or a float with an integral value) as its decimal text,
    ``None`` (or NaN, see :func:`recorded`) as ``(None, True)``; any other value (object, list,
    boolean, fraction, infinity) gives ``(None, False)``."""
    if not recorded(value):
        return None, True
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, False
    return str(value).strip() or None, True


def clean_prompt_versions(column: pa.ChunkedArray | pa.Array) -> tuple[pa.ChunkedArray, int]:
    """A Parquet ``prompt_version`` column as ``(string column, unusable values)``: text is
    stripped (empty text becomes null), integers (and floats with integral values) become their
    decimal text; other floats (but NaN, a missing value), and every value of a column of any
    other type, become null and are counted as unusable."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    kind = column.type
    if pa.types.is_null(kind):
        return column.cast(pa.string()), 0
    text = (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or (pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type))
    )
    unusable = 0
    if pa.types.is_floating(kind):
        whole = pc.and_(
            pc.less(pc.abs(column), 2.0**62), pc.equal(pc.floor(column), column)
        )  # NaN and infinities compare false
        usable = pc.sum(whole.cast(pa.int64())).as_py() or 0
        missing = column.null_count + (pc.sum(pc.is_nan(column).cast(pa.int64())).as_py() or 0)
        unusable = len(column) - missing - usable
        column = pc.if_else(whole, column, pa.scalar(None, kind)).cast(pa.int64())
    elif not text and not pa.types.is_integer(kind):
        unusable = len(column) - column.null_count
        return pa.chunked_array([pa.nulls(len(column), pa.string())]), unusable
    stripped = pc.utf8_trim_whitespace(column.cast(pa.string()))
    empty = pc.equal(pc.utf8_length(stripped), 0)
    return pc.if_else(empty, pa.scalar(None, pa.string()), stripped), unusable


def _time_order(span: Span) -> tuple[bool, datetime, int]:
    return span.started_at is None, span.started_at or _EPOCH, span.index


def span_prompt_version(
    spans: Iterable[Span], keys: tuple[str, ...], *, resource: bool = False
) -> Any:
    """The prompt version a trace's spans recorded, as found (see :func:`clean_prompt_version`):
    the first of ``keys`` among the attributes of the first span, in start-time order (ties:
    file order), that has one; with ``resource``, else among the resource attributes of the
    spans in that order (span attributes win). ``None`` when no span records one."""
    ordered = sorted(spans, key=_time_order)
    places = [s.attributes for s in ordered] + ([s.resource for s in ordered] if resource else [])
    for attributes in places:
        for key in keys:
            if recorded(attributes.get(key)):
                return attributes[key]
    return None


def langfuse_prompt_version(
    metadata: Mapping[str, Any], observations: Iterable[Mapping[str, Any]]
) -> Any:
    """The prompt version of a Langfuse trace, as found: the trace metadata's ``prompt_version``
    when it has one, else ``langfuse:<promptName>:<promptVersion>`` of the first ``GENERATION``
    (in the order given: start order) linked to a prompt by both fields (camelCase, as the
    adapter renames the blob-storage export's ``prompt_name`` / ``prompt_version``). A name that
    is not text or a version that is neither text nor an integer is returned as it is, to be
    reported as unusable; ``None`` when no generation names both."""
    if recorded(metadata.get("prompt_version")):
        return metadata["prompt_version"]
    for observation in observations:
        if str(observation.get("type") or "").upper() != "GENERATION":
            continue
        name, version = observation.get("promptName"), observation.get("promptVersion")
        if not recorded(name) or not recorded(version):
            continue
        if not isinstance(name, str):
            return name
        text, usable = clean_prompt_version(version)
        return f"langfuse:{name.strip()}:{text}" if usable and text else version
    return None

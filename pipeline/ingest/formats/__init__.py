"""Format adapters: each module maps one trace format onto the canonical tables.

An adapter module has ``NAME``, ``sniff(path, head) -> bool`` (``head`` is the file's first bytes)
and ``read(path, options) -> Iterator[Record | Quarantined | FeedbackRows | TableChunk]``. :data:`ADAPTERS` is
the order in which formats are sniffed: the most specific first.

The adapters are imported on first use of :data:`ADAPTERS` (PEP 562), and so are the shared
helpers this face hands on to the rest of the ingest stage: asking for :func:`data_suffix`
loads neither the adapters nor pyarrow.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.ingest.formats._common import (
        FeedbackRows,
        Quarantined,
        Record,
        outcome_from_feedback,
        truncate,
    )
    from pipeline.ingest.formats._io import (
        DEFAULT_MAX_RECORD_BYTES,
        ReadOptions,
        json_container,
        read_head,
    )
    from pipeline.ingest.formats._linebatch import RecordBatch
    from pipeline.ingest.formats._paths import COMPRESSED_SUFFIXES, data_suffix
    from pipeline.ingest.formats._pending import Pending
    from pipeline.ingest.formats._prompt_version import clean_prompt_version
    from pipeline.ingest.formats.canonical import TableChunk, read_table, table_memory_pool

    ADAPTERS: tuple[ModuleType, ...]

# The adapter modules in the order they are sniffed.
_ORDER = (
    "canonical",
    "tau2",
    "tau_bench",
    "openai_agents",
    "openai_responses",
    "mini_swe_agent",
    "swe_bench_results",
    "who_and_when",
    "langfuse",
    "langsmith",
    "otel",
    "openinference",
    "chat_jsonl",
)
_EXPORTS = {
    "COMPRESSED_SUFFIXES": "pipeline.ingest.formats._paths",
    "DEFAULT_MAX_RECORD_BYTES": "pipeline.ingest.formats._io",
    "FeedbackRows": "pipeline.ingest.formats._common",
    "Pending": "pipeline.ingest.formats._pending",
    "Quarantined": "pipeline.ingest.formats._common",
    "Record": "pipeline.ingest.formats._common",
    "RecordBatch": "pipeline.ingest.formats._linebatch",
    "ReadOptions": "pipeline.ingest.formats._io",
    "TableChunk": "pipeline.ingest.formats.canonical",
    "clean_prompt_version": "pipeline.ingest.formats._prompt_version",
    "data_suffix": "pipeline.ingest.formats._paths",
    "json_container": "pipeline.ingest.formats._io",
    "outcome_from_feedback": "pipeline.ingest.formats._common",
    "read_head": "pipeline.ingest.formats._io",
    "read_table": "pipeline.ingest.formats.canonical",
    "table_memory_pool": "pipeline.ingest.formats.canonical",
    "truncate": "pipeline.ingest.formats._common",
}


def __getattr__(name: str) -> Any:
    if name == "ADAPTERS":
        value: Any = tuple(importlib.import_module(f"{__name__}.{m}") for m in _ORDER)
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "ADAPTERS",
    "COMPRESSED_SUFFIXES",
    "DEFAULT_MAX_RECORD_BYTES",
    "FeedbackRows",
    "Pending",
    "Quarantined",
    "ReadOptions",
    "Record",
    "RecordBatch",
    "TableChunk",
    "by_name",
    "clean_prompt_version",
    "data_suffix",
    "json_container",
    "outcome_from_feedback",
    "read_head",
    "read_table",
    "table_memory_pool",
    "truncate",
]


def by_name(name: str) -> ModuleType:
    """The adapter called ``name``.

    Raises:
        KeyError: no adapter has that name.
    """
    from pipeline.ingest.formats import ADAPTERS

    for adapter in ADAPTERS:
        if name == adapter.NAME:
            return adapter
    raise KeyError(name)

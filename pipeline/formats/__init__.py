"""Format adapters: each module maps one trace format onto the canonical tables.

An adapter module has ``NAME``, ``sniff(path, head) -> bool`` (``head`` is the file's first bytes)
and ``read(path, options) -> Iterator[Record | Quarantined | FeedbackRows | TableChunk]``. :data:`ADAPTERS` is
the order in which formats are sniffed: the most specific first.
"""

from __future__ import annotations

from types import ModuleType

from pipeline.formats import (
    canonical,
    chat_jsonl,
    langfuse,
    langsmith,
    mini_swe_agent,
    openai_agents,
    openai_responses,
    openinference,
    otel,
    swe_bench_results,
    tau2,
    tau_bench,
    who_and_when,
)
from pipeline.formats._common import FeedbackRows, Quarantined, Record
from pipeline.formats._io import ReadOptions
from pipeline.formats.canonical import TableChunk

__all__ = [
    "ADAPTERS",
    "FeedbackRows",
    "Quarantined",
    "ReadOptions",
    "Record",
    "TableChunk",
    "by_name",
]

ADAPTERS: tuple[ModuleType, ...] = (
    canonical,
    tau2,
    tau_bench,
    openai_agents,
    openai_responses,
    mini_swe_agent,
    swe_bench_results,
    who_and_when,
    langfuse,
    langsmith,
    otel,
    openinference,
    chat_jsonl,
)


def by_name(name: str) -> ModuleType:
    """The adapter called ``name``.

    Raises:
        KeyError: no adapter has that name.
    """
    for adapter in ADAPTERS:
        if name == adapter.NAME:
            return adapter
    raise KeyError(name)

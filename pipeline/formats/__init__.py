"""Format adapters: each module maps one trace format onto the canonical tables.

An adapter module has ``NAME``, ``sniff(path, head) -> bool`` (``head`` is the file's first bytes)
and ``read(path, options) -> Iterator[Record | Quarantined | FeedbackRows | TableChunk]``. :data:`ADAPTERS` is
the order in which formats are sniffed: the most specific first.

The adapters are imported on first use of :data:`ADAPTERS` (PEP 562): a helper such as
:func:`pipeline.formats._io.data_suffix` loads neither them nor pyarrow.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.formats._common import FeedbackRows, Quarantined, Record
    from pipeline.formats._io import ReadOptions
    from pipeline.formats.canonical import TableChunk

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
    "FeedbackRows": "pipeline.formats._common",
    "Quarantined": "pipeline.formats._common",
    "Record": "pipeline.formats._common",
    "ReadOptions": "pipeline.formats._io",
    "TableChunk": "pipeline.formats.canonical",
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
    "FeedbackRows",
    "Quarantined",
    "ReadOptions",
    "Record",
    "TableChunk",
    "by_name",
]


def by_name(name: str) -> ModuleType:
    """The adapter called ``name``.

    Raises:
        KeyError: no adapter has that name.
    """
    from pipeline.formats import ADAPTERS

    for adapter in ADAPTERS:
        if name == adapter.NAME:
            return adapter
    raise KeyError(name)

"""The ingest stage: trace files in, the canonical tables out.

:func:`ingest` discovers the input files (:mod:`~pipeline.ingest.discovery`), sniffs each one's
format and reads it with its adapter (:mod:`pipeline.ingest.formats`), converts the records to
the three canonical tables (:mod:`~pipeline.ingest.schema`) and returns them as
:class:`Traces`, which :mod:`~pipeline.ingest.store` saves to and loads from a data directory.

The names below are imported on first use (PEP 562): discovering files and reading the store's
bookkeeping (what a ``coach learn`` with nothing new needs) loads neither the adapters nor
pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.ingest.discovery import (
        BOOKKEEPING,
        DATA_SUFFIXES,
        discover,
        file_sha256,
        is_data_file,
        sniff_format,
    )
    from pipeline.ingest.formats import ADAPTERS, by_name
    from pipeline.ingest.reader import ingest, outcomes_from_feedback, record_sha256
    from pipeline.ingest.schema import (
        FEEDBACK,
        OUTCOME_LABELS,
        STEPS,
        TABLES,
        TRAJECTORIES,
        empty_table,
        to_table,
    )
    from pipeline.ingest.store import FileReport, Traces

# public name -> the module of this package that defines it
_EXPORTS = {
    "ADAPTERS": "pipeline.ingest.formats",
    "BOOKKEEPING": "pipeline.ingest.discovery",
    "DATA_SUFFIXES": "pipeline.ingest.discovery",
    "FEEDBACK": "pipeline.ingest.schema",
    "FileReport": "pipeline.ingest.store",
    "OUTCOME_LABELS": "pipeline.ingest.schema",
    "STEPS": "pipeline.ingest.schema",
    "TABLES": "pipeline.ingest.schema",
    "TRAJECTORIES": "pipeline.ingest.schema",
    "Traces": "pipeline.ingest.store",
    "by_name": "pipeline.ingest.formats",
    "discover": "pipeline.ingest.discovery",
    "empty_table": "pipeline.ingest.schema",
    "file_sha256": "pipeline.ingest.discovery",
    "ingest": "pipeline.ingest.reader",
    "is_data_file": "pipeline.ingest.discovery",
    "outcomes_from_feedback": "pipeline.ingest.reader",
    "record_sha256": "pipeline.ingest.reader",
    "sniff_format": "pipeline.ingest.discovery",
    "to_table": "pipeline.ingest.schema",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "ADAPTERS",
    "BOOKKEEPING",
    "DATA_SUFFIXES",
    "FEEDBACK",
    "FileReport",
    "OUTCOME_LABELS",
    "STEPS",
    "TABLES",
    "TRAJECTORIES",
    "Traces",
    "by_name",
    "discover",
    "empty_table",
    "file_sha256",
    "ingest",
    "is_data_file",
    "outcomes_from_feedback",
    "record_sha256",
    "sniff_format",
    "to_table",
]

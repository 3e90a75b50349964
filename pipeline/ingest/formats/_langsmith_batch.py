"""LangSmith batch-ingest payloads, ``{"post": [run], "patch": [run]}``, read as whole runs for
:mod:`~pipeline.ingest.formats.langsmith`.

The langsmith SDKs send the runs they trace in batches to ``POST /runs/batch``
(https://api.smith.langchain.com/redoc, "Ingest Runs (Batch JSON)"; langsmith-sdk
``python/langsmith/client.py`` ``batch_ingest_runs``, ``js/src/client.ts``
``batchIngestRuns``): ``post`` holds the runs as they started (``id``, ``name``, ``run_type``,
``start_time``, ``inputs``, ``trace_id``, ``dotted_order``, ``parent_run_id``, ``extra``, ...),
``patch`` the updates sent when they ended (``end_time``, ``outputs``, ``error``, ``events``,
...). The langsmith-sdk tests keep such payloads (``python/tests/integration_tests/test_data/``,
``js/src/tests/test_data/``). A patch names its run by ``id``, else by the last segment of its
``dotted_order`` (``<start>Z<run id>``; the JS SDK's patches may carry no ``id``).

Each posted run, with the non-null fields of its patches laid over it (patches in file order,
from any batch of the file: a run that outlasts one batch is posted in one request and patched in
a later one), is one record; a patch whose run is not posted in the same file is quarantined,
with the trace it belongs to, since the run's start (its name, type and inputs) is not there to
build a step from. A file of several batches is one payload per JSON Lines line (the request
bodies as the SDK sent them) or a JSON array of payloads.
The ``/runs/multipart`` form of the same payload is not JSON and is not read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pipeline.ingest.formats._common import Quarantined, truncate
from pipeline.ingest.formats._jsontext import first_item

__all__ = ["expand_batches", "is_batch", "sniff_batch"]

_PARTS = ("post", "patch")


def is_batch(record: Any) -> bool:
    """True for ``{"post": [...], "patch": [...]}`` (either list may be missing, no other keys)."""
    return (
        isinstance(record, Mapping)
        and bool(record)
        and set(record) <= set(_PARTS)
        and all(isinstance(record[k], list) for k in record)
    )


def _run_id(run: Mapping[str, Any]) -> str | None:
    """A run's id: ``id``, else the run id that ends its ``dotted_order``."""
    if run.get("id") is not None:
        return str(run["id"])
    dotted = run.get("dotted_order")
    if isinstance(dotted, str) and "Z" in dotted:
        return dotted.rsplit(".", 1)[-1].split("Z", 1)[1] or None
    return None


def _patched(
    posted: Mapping[str, dict[str, Any]], patches: Iterable[tuple[str, Any]]
) -> Iterator[Quarantined]:
    """Lay each patch's non-null fields over its posted run (patches in file order); yields a
    :class:`Quarantined` for each patch whose run is not posted."""
    for at, patch in patches:
        run_id = _run_id(patch) if isinstance(patch, Mapping) else None
        if run_id is None or run_id not in posted:
            trace_id = patch.get("trace_id") if isinstance(patch, Mapping) else None
            yield Quarantined(
                at,
                "patch of a run that is not posted in this file"
                if run_id
                else "patch names no run (no 'id', no 'dotted_order')",
                truncate(patch),
                trajectory_ids=(str(trace_id),) if trace_id else (),
            )
            continue
        posted[run_id].update({k: v for k, v in patch.items() if v is not None})


def expand_batches(
    items: Iterable[tuple[str, Any] | Quarantined],
) -> Iterator[tuple[str, Any] | Quarantined]:
    """``items`` (what :func:`~pipeline.ingest.formats._io.iter_page_records` yields) with every
    batch payload replaced by its runs (``where`` = ``"line 2 post[3]"``), each posted run
    completed by the patches of it anywhere in the file: the SDK sends a run's start and end in
    different requests when the run outlasts one batch, so a file of captured request bodies
    holds a run's ``post`` in one line and its ``patch`` in a later one. Other items pass
    through as they come; the batches' runs follow once ``items`` is exhausted, and then a
    :class:`Quarantined` for each patch left over. Batches count as one record per posted run."""
    posted: dict[str, dict[str, Any]] = {}
    runs: list[tuple[str, Any]] = []
    patches: list[tuple[str, Any]] = []
    for item in items:
        if isinstance(item, Quarantined) or not is_batch(item[1]):
            yield item
            continue
        where, batch = item
        for index, run in enumerate(batch.get("post") or []):
            at = f"{where} post[{index}]"
            run_id = _run_id(run) if isinstance(run, Mapping) else None
            if run_id is None or run_id in posted:
                runs.append((at, run))  # not a run, or posted twice: the adapter judges it
                continue
            posted[run_id] = dict(run)
            runs.append((at, posted[run_id]))
        patches.extend((f"{where} patch[{i}]", p) for i, p in enumerate(batch.get("patch") or []))
    left_over = list(_patched(posted, patches))
    yield from runs
    yield from left_over


def sniff_batch(record: Any, head: bytes) -> Any:
    """The first run of a batch payload (its first posted run, else its first patch), from the
    first record of a file or, when that is only the top-level keys of a large document, from
    the file's first bytes; ``None`` when ``record`` is not a batch."""
    if not isinstance(record, Mapping) or not record or not set(record) <= set(_PARTS):
        return None
    for part in _PARTS:
        runs = record.get(part)
        if isinstance(runs, list) and runs:
            return runs[0]
        if part in record and runs is None:
            found = first_item(head, part)
            if found is not None:
                return found
    return None

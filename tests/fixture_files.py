"""Format fixtures with a header: ``tests/fixtures/formats/<file>``, and what the format tests
share to read them.

JSON has no comments, so each fixture opens with ``#`` lines that say which specification (document,
URL and version) the records follow; :func:`fixture_file` strips them and writes the body under
the original name into a temporary folder, where it is exactly what an exporter would write.

The helpers below ingest fixtures (:func:`ingest_fixtures`, :func:`fixture_pair`), look rows up
(:func:`trajectories_by_id`, :func:`steps_of`, :func:`feedback_of`), turn rows into comparable
tuples (:func:`brief`, :func:`briefs`), check the per-file accounting (:func:`assert_accounted`)
and check that a fixture rewritten into another container (:func:`gzipped`, a JSON array, ...)
reads the same (:func:`assert_reads_the_same`). Expected values stay in the tests.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pipeline.ingest import FileReport, Traces, ingest, sniff_format
from pipeline.ingest.formats._io import read_head

FORMATS = Path(__file__).resolve().parent / "fixtures" / "formats"
SHARED_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"

# A step as the span-format tests compare it (:func:`brief`'s default).
BRIEF = (
    "step_idx",
    "role",
    "step_type",
    "content_text",
    "tool_name",
    "tool_call_id",
    "tool_args",
    "tool_result_text",
    "is_error",
    "error_message",
)
# A step with the model and tokens of its LLM call, without the role (the Langfuse and LangSmith
# tests).
BRIEF_WITH_USAGE = (
    *(c for c in BRIEF if c != "role"),
    "model",
    "input_tokens",
    "output_tokens",
)


# --- fixture files ------------------------------------------------------------------------------


def fixture_header(name: str) -> str:
    """The ``#`` header lines of fixture ``name``, without the ``#``."""
    lines = (FORMATS / name).read_text(encoding="utf-8").splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    return "\n".join(header)


def assert_header_cites(name: str, *texts: str) -> None:
    """Fixture ``name``'s header names each of ``texts`` (its specification: URL, version...)."""
    header = fixture_header(name)
    for text in texts:
        assert text in header, (name, text)


def fixture_file(name: str, directory: Path) -> Path:
    """Write fixture ``name`` without its header to ``directory/name`` and return that path."""
    lines = (FORMATS / name).read_text(encoding="utf-8").splitlines(keepends=True)
    body = "".join(line for line in lines if not line.startswith("#"))
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


def other_fixtures(directory: Path, *mine: str) -> list[Path]:
    """The files directly in ``tests/fixtures/`` and every format fixture whose name starts with
    none of ``mine`` (written into ``directory``): what a format's ``sniff`` must not claim."""
    others = [p for p in FORMATS.parent.glob("*") if p.is_file()]
    others += [
        fixture_file(p.name, directory)
        for p in FORMATS.glob("*")
        if p.is_file() and not p.name.startswith(mine)
    ]
    return others


def sniffs(adapter: ModuleType, path: Path) -> bool:
    """``adapter.sniff`` of ``path`` with the head ingest gives it."""
    return adapter.sniff(path, read_head(path, 1 << 20))


def read_json_lines(path: Path) -> list[Any]:
    """The records of a JSON Lines file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_json_lines(path: Path, records: Iterable[Any]) -> Path:
    """Write ``records`` as JSON Lines to ``path`` and return it."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append ``lines`` (raw text: JSON or not) to the file at ``path``."""
    with path.open("a", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")


def gzipped(path: Path) -> Path:
    """Replace ``path`` by its gzip-compressed copy ``<path>.gz`` and return that."""
    packed = path.with_name(path.name + ".gz")
    packed.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return packed


# --- ingesting ----------------------------------------------------------------------------------


def ingest_fixtures(directory: Path, *names: str) -> Traces:
    """Ingest fixtures ``names`` together, written into ``directory``."""
    return ingest([fixture_file(name, directory) for name in names])


def fixture_pair(name: str) -> tuple[Callable[..., Path], Callable[..., Traces]]:
    """The ``path`` and ``traces`` fixtures of a test module about fixture ``name``: its file in
    the test's temporary folder, and what ingest makes of it. Use as
    ``path, traces = fixture_pair(NAME)``."""

    @pytest.fixture
    def path(tmp_path: Path) -> Path:
        return fixture_file(name, tmp_path)

    @pytest.fixture
    def traces(path: Path) -> Traces:
        return ingest([path])

    return path, traces


def ingest_shared(folder: str) -> Traces:
    """Ingest the shared real traces in ``/work/shared/traces/<folder>`` (skip when absent)."""
    path = SHARED_TRACES / folder
    if not path.is_dir():
        pytest.skip(f"shared traces not found at {path}")
    return ingest([path])


# --- rows ---------------------------------------------------------------------------------------


def trajectories_by_id(traces: Traces) -> dict[str, dict[str, Any]]:
    """The ``trajectories`` rows by trajectory id."""
    return {row["trajectory_id"]: row for row in traces.trajectories.to_pylist()}


def steps_of(traces: Traces, trajectory_id: str) -> list[dict[str, Any]]:
    """The ``steps`` rows of one trajectory, in ``step_idx`` order."""
    rows = [s for s in traces.steps.to_pylist() if s["trajectory_id"] == trajectory_id]
    return sorted(rows, key=lambda s: s["step_idx"])


def feedback_of(traces: Traces, trajectory_id: str) -> list[dict[str, Any]]:
    """The ``feedback`` rows of one trajectory, in table order."""
    return [f for f in traces.feedback.to_pylist() if f["trajectory_id"] == trajectory_id]


def sorted_feedback(traces: Traces) -> list[dict[str, Any]]:
    """Every ``feedback`` row, by trajectory id, then name (ties in table order)."""
    return sorted(traces.feedback.to_pylist(), key=lambda r: (r["trajectory_id"], r["name"]))


def brief(row: Mapping[str, Any], columns: Sequence[str] = BRIEF) -> tuple[Any, ...]:
    """The values of ``columns`` in ``row``, as a tuple to compare with an expected one."""
    return tuple(row[c] for c in columns)


def briefs(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] = BRIEF) -> list[tuple]:
    """:func:`brief` of every row."""
    return [brief(row, columns) for row in rows]


# --- accounting ---------------------------------------------------------------------------------


def reports_by_name(traces: Traces) -> dict[str, FileReport]:
    """The file reports by file name."""
    return {Path(f.path).name: f for f in traces.files}


def file_counts(traces: Traces) -> dict[str, tuple[int, int, int]]:
    """``(records_read, ingested, quarantined)`` by file name."""
    return {
        name: (f.records_read, f.ingested, f.quarantined)
        for name, f in reports_by_name(traces).items()
    }


def assert_accounted(
    traces: Traces,
    format_name: str,
    *,
    read: int,
    quarantined: int = 0,
    ingested: int | None = None,
    name: str | None = None,
) -> FileReport:
    """The report of the only file of ``traces`` (of file ``name`` when given) says it is of
    ``format_name`` and read ``read`` records, ``quarantined`` of them quarantined (and
    ``ingested`` ingested, when given), every one of them ingested, deduplicated or
    quarantined."""
    if name is None:
        (report,) = traces.files
    else:
        report = reports_by_name(traces)[name]
    assert report.format == format_name
    assert report.records_read == read
    assert report.records_read == report.ingested + report.deduplicated + report.quarantined
    assert report.quarantined == quarantined
    if ingested is not None:
        assert report.ingested == ingested
    return report


def assert_every_file_accounted(traces: Traces) -> None:
    """Every record of every file is ingested or quarantined (none deduplicated)."""
    for report in traces.files:
        assert report.records_read == report.ingested + report.quarantined, report.path


def assert_reads_the_same(copy: Path, traces: Traces, format_name: str, *, read: int) -> Traces:
    """``copy``, a fixture rewritten into another container (gzip, a JSON array, an API page...),
    is sniffed as ``format_name``, has its ``read`` records accounted for and gives the steps and
    feedback of ``traces``; returns what it gives, for further checks."""
    assert sniff_format(copy) == format_name
    again = ingest([copy])
    assert_accounted(again, format_name, read=read)
    assert again.steps.to_pylist() == traces.steps.to_pylist()
    assert again.feedback.to_pylist() == traces.feedback.to_pylist()
    return again

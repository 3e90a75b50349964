"""``kill -9`` at every write point of a ``coach learn`` leaves a store and a Skillbook that are
whole, and the next plain run learns what an uninterrupted run learns.

The write points are found, not listed: every file (or link) that a second ``learn`` (new traces
added to a store) creates or replaces, found by comparing the trees before and after an
uninterrupted run (each lasting write replaces its file, so it gets a new inode). At each, a
``coach learn`` process is stopped with SIGKILL through the fault seam of
:mod:`pipeline.fileio` (``COACH_TEST_KILL_AT=PHASE:NAME``): in every phase (``before``,
``during``, ``after``) for the files of the canonical tables' commit, and ``during`` (the
temporary file written, the target not yet replaced) for the others, and ``after`` the last
write of the run. The killed run's leftovers are then checked, and the next plain run compared
with the uninterrupted one. A first ``learn`` into an empty data dir is killed at the points of
its store that leave distinct states too. (The Skillbook's own points are also covered by
tests/test_lifecycle_cli.py.) About 40 processes: under a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from synth import SynthConfig, generate, write_jsonl

from pipeline.config import Config
from pipeline.fileio import FAULT_ENV
from pipeline.ingest import Traces
from pipeline.learn import learn
from pipeline.skillbook import Skillbook

ROOT = Path(__file__).resolve().parents[1]
EPOCH = "1790000000"
DIRS = ("data", "sb", "out")
# The files of a commit of the canonical tables, in the order they are written; "tables" is the
# link whose swap is the commit.
STORE_POINTS = (
    "trajectories.parquet",
    "steps.parquet",
    "feedback.parquet",
    "quarantine.jsonl",
    "ingest.json",
    "snapshot.json",
    "tables",
)


def _config(where: Path, *paths: Path) -> Config:
    return Config(
        paths=tuple(str(p) for p in paths),
        data_dir=where / "data",
        skillbook_dir=where / "sb",
        out_dir=where / "out",
    )


def _entries(where: Path) -> dict[str, int]:
    """Every file and link under the run's directories (locks aside): relative path -> inode."""
    found = {}
    for top in DIRS:
        for path in (where / top).rglob("*"):
            if (path.is_file() or path.is_symlink()) and not path.name.endswith(".lock"):
                found[str(path.relative_to(where))] = path.lstat().st_ino
    return found


def _written(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """The names of the entries a run created or replaced."""
    return sorted({Path(p).name for p, inode in after.items() if before.get(p) != inode})


def _prompts(where: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((where / "out").glob("*.md"))}


def _kill(where: Path, point: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "pipeline", "learn", *map(str, paths), "-q"]
    args += ["--data-dir", str(where / "data"), "--skillbook", str(where / "sb")]
    args += ["--out", str(where / "out")]
    env = {**os.environ, FAULT_ENV: point, "SOURCE_DATE_EPOCH": EPOCH}
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _killed_everywhere(
    tmp_path: Path, start: Path | None, points: list[str], *paths: Path
) -> dict[str, Path]:
    """Run ``learn`` on ``paths`` killed at each of ``points``, each from a copy of ``start``
    (None: empty), several at a time (the interpreter's start-up dominates); the directory
    each left, by point."""
    wheres = {}
    for point in points:
        where = tmp_path / point.replace(":", "-")
        if start is None:
            where.mkdir(parents=True)
        else:
            shutil.copytree(start, where, symlinks=True)
        wheres[point] = where
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        done = dict(
            zip(points, pool.map(lambda p: _kill(wheres[p], p, *paths), points), strict=True)
        )
    for point, proc in done.items():
        assert proc.returncode == -9, (point, proc.returncode, proc.stderr[-2000:])
    return wheres


def _check_leftovers(where: Path, stores: set[str]) -> None:
    """What a killed run left: the store loads whole (one of ``stores``, by content hash, or
    none yet), and the Skillbook is absent or valid."""
    tables = where / "data" / "tables"
    if Traces.stored(tables):
        assert Traces.load(tables).content_hash() in stores
    else:
        assert "" in stores
    book = where / "sb" / "skillbook.json"
    if book.exists():
        json.loads(book.read_text())
        Skillbook.load(book)


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small planted sets: the first run's traces and those added before the second."""
    where = tmp_path_factory.mktemp("kill-traces")
    first = write_jsonl(where / "a.jsonl", generate(SynthConfig(seed=3, n_tasks=10, trials=10)))
    more = write_jsonl(where / "b.jsonl", generate(SynthConfig(seed=8, n_tasks=10, trials=6)))
    return first, more


def test_sigkill_at_every_write_point_of_learn(
    tmp_path: Path, traces: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    first, more = traces
    base = tmp_path / "base"
    empty = tmp_path / "empty"
    empty.mkdir()
    # the first run, from nothing, and the second, with more traces: uninterrupted
    initial = learn(_config(base, first))
    reference = tmp_path / "reference"
    shutil.copytree(base, reference, symlinks=True)
    before = _entries(reference)
    expected = learn(_config(reference, first, more))
    # the new traces change the evidence
    assert expected.skillbook.version > initial.skillbook.version
    written = _written(before, _entries(reference))
    assert set(STORE_POINTS) <= set(written), written
    points = [f"{p}:{name}" for name in STORE_POINTS for p in ("before", "during", "after")]
    points += [f"during:{name}" for name in written if name not in STORE_POINTS]
    points.append("after:last_run.json")  # done: the next run has nothing to do
    # into an empty data dir: a snapshot begun, its manifest written, the link made, committed
    first_points = [f"during:{name}" for name in ("trajectories.parquet", "snapshot.json")]
    first_points += ["during:tables", "after:tables"]

    stores = {initial.traces.content_hash(), expected.traces.content_hash()}
    wheres = _killed_everywhere(tmp_path / "second", base, points, first, more)
    fresh = _killed_everywhere(tmp_path / "first", None, first_points, first)
    for point, where in wheres.items():
        _check_leftovers(where, stores)
        again = learn(_config(where, first, more))
        assert again.unchanged == (point == "after:last_run.json"), point
        assert again.skillbook.content() == expected.skillbook.content(), point
        assert _stored(where) == expected.traces.content_hash(), point
        assert _prompts(where) == _prompts(reference), point
        assert not list(where.rglob(".*.tmp")), point
        assert len(list((where / "data" / "tables.d").iterdir())) <= 2, point
    for point, where in fresh.items():
        _check_leftovers(where, {"", initial.traces.content_hash()})
        again = learn(_config(where, first))
        assert again.skillbook.content() == initial.skillbook.content(), point
        assert _stored(where) == initial.traces.content_hash(), point


def _stored(where: Path) -> str:
    return Traces.load(where / "data" / "tables").content_hash()

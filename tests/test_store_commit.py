"""The canonical tables are committed as one unit, and every load checks the commit.

A save writes a new snapshot directory with a manifest of sizes and SHA-256s and then swaps the
``tables`` link to it in one rename; a load refuses a store whose files do not match their
manifest (or, for a store of the layout before snapshots, whose tables disagree with
``ingest.json``), naming the store and saying to rebuild; ``--rebuild`` always rebuilds; the data
dir is tagged ``CACHEDIR.TAG``. The kill test of every write point is in tests/test_kill.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from synth import SynthConfig, generate, write_jsonl

from pipeline.cli import main
from pipeline.config import Config
from pipeline.errors import InputError
from pipeline.ingest import Traces, ingest
from pipeline.learn import ingest_store, learn

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHAT = FIXTURES / "chat_small.jsonl"
STORE_FILES = {
    "trajectories.parquet",
    "steps.parquet",
    "feedback.parquet",
    "quarantine.jsonl",
    "ingest.json",
}


@pytest.fixture(scope="module")
def chat() -> Traces:
    return ingest([CHAT])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small planted sets of Chat JSONL (100 and 60 runs)."""
    where = tmp_path_factory.mktemp("runs")
    first = write_jsonl(where / "a.jsonl", generate(SynthConfig(seed=3, n_tasks=10, trials=10)))
    second = write_jsonl(where / "b.jsonl", generate(SynthConfig(seed=4, n_tasks=6, trials=10)))
    return first, second


def _config(where: Path, *paths: Path, **settings: object) -> Config:
    return Config(
        paths=tuple(str(p) for p in paths),
        data_dir=where / "data",
        skillbook_dir=where / "sb",
        out_dir=where / "out",
        **settings,  # type: ignore[arg-type]
    )


# --- the layout of a commit ----------------------------------------------------------------------


def test_a_save_is_a_snapshot_and_a_link_to_it(chat: Traces, tmp_path: Path) -> None:
    tables = tmp_path / "tables"
    written = chat.save(tables)
    assert tables.is_symlink() and not os.readlink(tables).startswith("/")  # movable
    snapshot = tables.resolve()
    assert snapshot.parent == tmp_path / "tables.d"
    assert {p.name for p in snapshot.iterdir()} == STORE_FILES | {"snapshot.json"}
    assert chat.directory == snapshot
    # the paths people query stay where they were
    assert written["steps"] == tables / "steps.parquet"
    assert pq.read_table(written["steps"]).num_rows == chat.steps.num_rows
    manifest = json.loads((tables / "snapshot.json").read_text())
    assert manifest["format"] == 1 and manifest["snapshot"] == snapshot.name
    assert set(manifest["files"]) == STORE_FILES
    assert manifest["files"]["steps.parquet"]["rows"] == chat.steps.num_rows
    assert manifest["files"]["ingest.json"]["size"] == (tables / "ingest.json").stat().st_size
    loaded = Traces.load(tables)
    assert loaded.trajectories.equals(chat.trajectories)
    assert loaded.quarantine == chat.quarantine and loaded.files == chat.files


def test_saving_again_keeps_the_snapshot_left_and_links_released_steps(
    chat: Traces, tmp_path: Path
) -> None:
    tables = tmp_path / "tables"
    copy = Traces(chat.trajectories, chat.steps, chat.feedback, files=list(chat.files))
    copy.save(tables)
    first = tables.resolve()
    copy.release_steps()
    (tmp_path / "tables.d" / "interrupted").mkdir()  # what a killed save leaves
    (tmp_path / ".tables.1234.tmp").symlink_to("tables.d/interrupted")
    copy.save(tables)
    second = tables.resolve()
    assert second != first
    # the released steps are the stored file: hard-linked into the new snapshot, not rewritten
    assert (second / "steps.parquet").stat().st_ino == (first / "steps.parquet").stat().st_ino
    manifests = [json.loads((s / "snapshot.json").read_text()) for s in (first, second)]
    assert manifests[0]["files"]["steps.parquet"] == manifests[1]["files"]["steps.parquet"]
    copy.save(tables)
    third = tables.resolve()
    # the new snapshot and the one the link left; older ones and leftovers are gone
    assert {p.name for p in (tmp_path / "tables.d").iterdir()} == {second.name, third.name}
    assert not list(tmp_path.glob(".tables.*.tmp"))
    assert Traces.load(tables).steps.equals(chat.steps)


def test_a_directory_of_other_files_is_not_taken_over(chat: Traces, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="notes.txt"):
        chat.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# --- every load checks the commit ---------------------------------------------------------------


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda s: (s / "steps.parquet").unlink(), "steps.parquet is missing"),
        (lambda s: _flip_a_byte(s / "trajectories.parquet"), "trajectories.parquet does not match"),
        (lambda s: _flip_a_byte(s / "ingest.json"), "ingest.json does not match"),
        (
            lambda s: (s / "quarantine.jsonl").write_text(""),
            "quarantine.jsonl has 0 bytes",
        ),
        (lambda s: (s / "snapshot.json").write_text("{"), "cannot read its manifest"),
        (lambda s: shutil.rmtree(s), "which is missing"),
    ],
    ids=["missing", "flipped table", "flipped report", "truncated", "manifest", "dangling"],
)
def test_a_damaged_store_is_refused_loudly(
    chat: Traces, tmp_path: Path, damage: object, said: str
) -> None:
    tables = tmp_path / "tables"
    chat.save(tables)
    damage(tables.resolve())  # type: ignore[operator]
    with pytest.raises(InputError) as caught:
        Traces.load(tables)
    message = str(caught.value)
    assert str(tables) in message and said in message and "--rebuild" in message


def test_a_manifest_of_an_unknown_format_asks_for_a_newer_coach(
    chat: Traces, tmp_path: Path
) -> None:
    chat.save(tmp_path / "tables")
    manifest = tmp_path / "tables" / "snapshot.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"format": 99}))
    with pytest.raises(InputError, match="snapshot format 99.*upgrade coach"):
        Traces.load(tmp_path / "tables")


def _flat_store(traces: Traces, where: Path) -> Path:
    """A store in the layout before snapshots: the files directly in ``where``."""
    traces.save(where.with_name("committed"))
    shutil.copytree(where.with_name("committed"), where)
    (where / "snapshot.json").unlink()
    return where


def test_a_store_of_the_layout_before_snapshots_loads_and_is_upgraded(
    chat: Traces, tmp_path: Path
) -> None:
    flat = _flat_store(chat, tmp_path / "tables")
    loaded = Traces.load(flat)
    assert loaded.trajectories.equals(chat.trajectories)
    loaded.save(flat)
    assert flat.is_symlink() and (flat / "snapshot.json").is_file()
    assert Traces.load(flat).steps.equals(chat.steps)


def test_a_torn_store_of_the_layout_before_snapshots_is_refused(
    chat: Traces, tmp_path: Path, runs: tuple[Path, Path]
) -> None:
    """The measured failure: killed after trajectories.parquet was replaced but before
    steps.parquet, the next run counted the runs without steps as duplicates."""
    flat = _flat_store(chat, tmp_path / "tables")
    more = ingest([runs[0]])
    pq.write_table(more.trajectories, flat / "trajectories.parquet")
    with pytest.raises(InputError) as caught:
        Traces.load(flat)
    assert "cut off" in str(caught.value) and "--rebuild" in str(caught.value)
    assert f"{more.trajectories.num_rows} trajectories rows, 4 in ingest.json" in str(caught.value)


def test_learn_refuses_a_torn_store_and_rebuild_repairs_it(
    tmp_path: Path, runs: tuple[Path, Path]
) -> None:
    config = _config(tmp_path, *runs)
    done = learn(config)
    counts = done.traces.counts
    steps = config.data_dir / "tables" / "steps.parquet"
    pq.write_table(pq.read_table(steps).slice(0, 100), steps)  # in place: the store is torn
    with pytest.raises(InputError, match="steps.parquet has .* bytes.*--rebuild"):
        learn(_config(tmp_path, *runs, mode="propose"))  # not answered as "nothing to do"
    with pytest.raises(InputError, match="steps.parquet"):
        ingest_store(config)
    rebuilt = learn(_config(tmp_path, *runs, rebuild=True))
    assert not rebuilt.unchanged
    assert rebuilt.traces.counts == counts  # read again, nothing counted as a duplicate
    assert Traces.load(config.data_dir / "tables").steps.num_rows == counts["steps"]


def test_rebuild_always_rebuilds_and_a_plain_run_after_it_has_nothing_to_do(
    tmp_path: Path, runs: tuple[Path, Path]
) -> None:
    learn(_config(tmp_path, runs[0]))
    tables = tmp_path / "data" / "tables"
    before = tables.resolve()
    for _ in range(2):
        again = learn(_config(tmp_path, runs[0], rebuild=True))
        assert not again.unchanged
        assert again.traces.counts_this_run["records_read"] == 100
        assert tables.resolve() != before
        before = tables.resolve()
    # the rebuilt store is the store of the same inputs: nothing to do
    assert learn(_config(tmp_path, runs[0])).unchanged
    assert learn(_config(tmp_path, runs[0], strict=True)).unchanged


def test_a_store_changed_by_another_command_is_not_answered_from_the_last_run(
    tmp_path: Path, runs: tuple[Path, Path]
) -> None:
    learn(_config(tmp_path, runs[0]))
    # `coach ingest b.jsonl` into the same store
    both = ingest_store(_config(tmp_path, runs[1])).counts["trajectories"]
    assert both > 100
    again = learn(_config(tmp_path, runs[0]))
    assert not again.unchanged
    assert again.traces.counts["trajectories"] == both


def test_strict_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="3 records quarantined by this run"):
        learn(_config(tmp_path, CHAT, strict=True))
    assert not (tmp_path / "data" / "tables").exists()
    assert not (tmp_path / "sb").exists() and not (tmp_path / "out").exists()


# --- the data dir is a cache directory ---------------------------------------------------------


def test_the_data_dir_is_tagged_as_a_cache_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["ingest", str(CHAT), "--data-dir", str(tmp_path / "d"), "-q"]
    )
    assert result.exit_code == 3, result.output
    tag = (tmp_path / "d" / "CACHEDIR.TAG").read_text().splitlines()
    assert tag[0] == "Signature: 8a477f597d28d172789f06886806bc55"
    assert tag[1].startswith("#") and "coach" in tag[1]


def test_a_directory_of_the_users_own_is_not_tagged(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    ingest_store(Config(paths=(str(CHAT),), data_dir=tmp_path))
    assert not (tmp_path / "CACHEDIR.TAG").exists()
    assert Traces.load(tmp_path / "tables").trajectories.num_rows == 4


def test_a_data_dir_inside_the_traces_is_never_read_as_input(
    tmp_path: Path, runs: tuple[Path, Path]
) -> None:
    traces = tmp_path / "traces"
    traces.mkdir()
    shutil.copy(runs[0], traces / "a.jsonl")
    config = Config(
        paths=(str(traces),),
        data_dir=traces / "store",
        skillbook_dir=tmp_path / "sb",
        out_dir=tmp_path / "out",
    )
    first = learn(config)
    shutil.copy(runs[1], traces / "b.jsonl")
    again = learn(config)
    read = [f.path for f in again.traces.files if f.status == "read"]
    assert read == [str(traces / "b.jsonl")]
    both = ingest([runs[0], runs[1]]).counts["trajectories"]
    assert again.traces.counts["trajectories"] == both > first.traces.counts["trajectories"]
    # another store reading the same folder skips the tagged data dir too
    other = ingest_store(Config(paths=(str(traces),), data_dir=tmp_path / "other"))
    assert not any("store" in Path(f.path).parts and f.status == "read" for f in other.files)
    assert other.counts["trajectories"] == both


def test_ingest_lists_skipped_files_apart_from_those_already_stored(
    tmp_path: Path, runs: tuple[Path, Path]
) -> None:
    traces = tmp_path / "traces"
    traces.mkdir()
    shutil.copy(runs[0], traces / "a.jsonl")
    (traces / "notes.txt").write_text("not a trace")
    args = ["ingest", str(traces), "--data-dir", str(tmp_path / "d"), "-q"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert f"{traces / 'notes.txt'}: skipped, " in first.output
    assert "already in the tables" not in first.output
    again = CliRunner().invoke(main, args)
    assert "1 files already in the tables, not read again" in again.output

"""Ingest plumbing: compression, globs, streaming limits, incremental runs, outcomes from feedback,
and the ``coach ingest`` accounting and exit codes."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import zstandard
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.errors import InputError
from pipeline.ingest import Traces, discover, ingest, outcomes_from_feedback, sniff_format
from pipeline.ingest.formats._common import outcome_from_feedback
from pipeline.ingest.formats._io import ReadOptions, data_suffix, iter_json_records
from pipeline.ingest.schema import to_table

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHAT = FIXTURES / "chat_small.jsonl"
TAU_BENCH = FIXTURES / "testmodel-airline.json"


def _run(run_id: str, outcome: str = "success", text: str = "hello") -> str:
    return json.dumps(
        {"id": run_id, "outcome": outcome, "messages": [{"role": "user", "content": text}]}
    )


def _ids(traces: Traces) -> list[str]:
    return sorted(traces.trajectories.column("trajectory_id").to_pylist())


def _accounted(traces: Traces) -> bool:
    return all(f.records_read == f.ingested + f.deduplicated + f.quarantined for f in traces.files)


# --- compression, globs, discovery --------------------------------------------------------------


def test_gzip_and_zstd_files_ingest_like_the_plain_file(tmp_path: Path) -> None:
    plain = ingest([CHAT])
    data = CHAT.read_bytes()
    gz = tmp_path / "chat.jsonl.gz"
    gz.write_bytes(gzip.compress(data))
    zst = tmp_path / "spans" / "chat.jsonl.zst"
    zst.parent.mkdir()
    zst.write_bytes(zstandard.ZstdCompressor().compress(data))
    for path in (gz, zst):
        traces = ingest([path])
        assert traces.files[0].format == "chat-jsonl"
        assert _ids(traces) == _ids(plain)
        assert traces.steps.num_rows == plain.steps.num_rows
        assert traces.counts["quarantined"] == plain.counts["quarantined"]
    # a directory picks compressed files up too
    assert discover([tmp_path]) == [gz, zst]


def test_data_suffix_looks_under_compression() -> None:
    assert data_suffix(Path("a/runs.jsonl.gz")) == ".jsonl"
    assert data_suffix(Path("spans.JSON.zst")) == ".json"
    assert data_suffix(Path("t.parquet")) == ".parquet"


def test_glob_patterns_expand_and_must_match(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.jsonl").write_text(_run("r1") + "\n")
    (tmp_path / "a" / "two.jsonl").write_text(_run("r2") + "\n")
    (tmp_path / "a" / "notes.txt").write_text("not traces")
    traces = ingest([str(tmp_path / "a" / "*")])
    assert _ids(traces) == ["r1", "r2"]
    read = [Path(f.path).name for f in traces.files if f.status == "read"]
    assert read == ["one.jsonl", "two.jsonl"]
    # what the pattern matched but is not a trace file is listed, not dropped silently
    (skipped,) = [f for f in traces.files if f.status == "skipped"]
    assert Path(skipped.path).name == "notes.txt" and "not a trace file name" in skipped.reason
    with pytest.raises(InputError, match="matches no file"):
        ingest([str(tmp_path / "nothing" / "*.jsonl")])


def test_directory_skips_hidden_and_bookkeeping_files(tmp_path: Path) -> None:
    (tmp_path / "runs.jsonl").write_text(_run("r1") + "\n")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "old.jsonl").write_text(_run("r9") + "\n")
    (tmp_path / "quarantine.jsonl").write_text('{"file": "x", "where": "line 1"}\n')
    assert discover([tmp_path]) == [tmp_path / "runs.jsonl"]


# --- clear errors and limits --------------------------------------------------------------------


def test_empty_file_is_one_quarantined_unit_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    traces = ingest([path])
    (report,) = traces.files
    assert (report.records_read, report.ingested, report.quarantined) == (1, 0, 1)
    assert report.reason == f"{path}: empty file"
    (row,) = traces.quarantine
    assert (row["file"], row["where"], row["reason"]) == (str(path), "file", report.reason)


def test_corrupt_gzip_is_quarantined_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl.gz"
    path.write_bytes(gzip.compress((_run("r1") + "\n").encode())[:-12] + b"garbage!")
    traces = ingest([path], format="chat-jsonl")
    (report,) = traces.files
    assert report.quarantined == 1 and _accounted(traces)
    assert report.reason.startswith(f"{path}: cannot decompress")


def test_over_long_line_is_quarantined_unparsed(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    huge = _run("big", text="x" * 5000)
    path.write_text(_run("r1") + "\n" + huge + "\n" + _run("r2") + "\n")
    traces = ingest([path], max_record_bytes=1000)
    assert _ids(traces) == ["r1", "r2"]
    (row,) = traces.quarantine
    assert row["where"] == "line 2"
    assert "longer than 1000 bytes" in row["reason"]
    assert len(row["raw"]) <= 2001
    assert _accounted(traces)


def test_json_array_is_streamed_item_by_item(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.write_text(json.dumps([{"a": 1}, {"a": 2.5}, {"a": None}], indent=2))
    items = list(iter_json_records(path, ReadOptions(source_uri=str(path))))
    assert items == [("index 0", {"a": 1}), ("index 1", {"a": 2.5}), ("index 2", {"a": None})]


def test_json_lines_are_recognised_without_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text('{"a": 1}\n{"a": 2}\n')
    assert list(iter_json_records(path)) == [("line 1", {"a": 1}), ("line 2", {"a": 2})]


# --- incremental runs ---------------------------------------------------------------------------


def test_reingesting_the_same_files_adds_nothing(tmp_path: Path) -> None:
    first = ingest([CHAT, TAU_BENCH])
    first.save(tmp_path / "tables")
    again = ingest([CHAT, TAU_BENCH], previous=Traces.load(tmp_path / "tables"))
    assert [f.status for f in again.files] == ["unchanged", "unchanged"]
    assert again.counts_this_run["records_read"] == 0
    assert again.counts == first.counts
    assert _ids(again) == _ids(first)
    assert again.steps.num_rows == first.steps.num_rows
    assert again.quarantine == first.quarantine


def test_new_files_are_added_incrementally(tmp_path: Path) -> None:
    first = ingest([CHAT])
    first.save(tmp_path / "tables")
    later = ingest([CHAT, TAU_BENCH], previous=Traces.load(tmp_path / "tables"))
    statuses = {Path(f.path).name: f.status for f in later.files}
    assert statuses == {CHAT.name: "unchanged", TAU_BENCH.name: "read"}
    assert later.counts_this_run["records_read"] == 3
    assert _ids(later) == sorted(_ids(first) + _ids(ingest([TAU_BENCH])))
    # files of earlier runs stay in the store when a run does not name them
    only_new = ingest([TAU_BENCH], previous=later)
    assert {f.status for f in only_new.files} == {"kept", "unchanged"}
    assert _ids(only_new) == _ids(later)


def test_a_growing_jsonl_file_adds_only_its_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text(_run("r1") + "\n" + _run("r2") + "\n")
    first = ingest([path])
    path.write_text(path.read_text() + _run("r3", "failure") + "\n")
    grown = ingest([path], previous=first)
    assert _ids(grown) == ["r1", "r2", "r3"]
    report = grown.files[-1]
    assert (report.records_read, report.ingested, report.deduplicated) == (3, 1, 2)
    assert _accounted(grown)


def test_changed_settings_read_everything_again(tmp_path: Path) -> None:
    first = ingest([TAU_BENCH])
    redone = ingest([TAU_BENCH], previous=first, reward_threshold=0.5)
    assert [f.status for f in redone.files] == ["read"]
    assert "read every input again" in redone.warnings[0]
    assert redone.settings["reward_threshold"] == 0.5


# --- outcomes from feedback ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "name", "expected"),
    [
        ([{"name": "resolved", "value": 1.0}], None, ("success", 1.0, "feedback:resolved")),
        (
            [{"name": "Correctness", "value_text": "incorrect"}],
            None,
            ("failure", 0.0, "feedback:Correctness"),
        ),
        (
            [{"name": "helpfulness", "value": 0.2}, {"name": "reward", "value": 1}],
            None,
            ("success", 1.0, "feedback:reward"),
        ),
        ([{"name": "helpfulness", "value": 0.2}], None, ("failure", 0.2, "feedback:helpfulness")),
        ([{"name": "a", "value": 1.0}, {"name": "b", "value": 0.0}], None, ("unknown", None, None)),
        (
            [{"name": "a", "value": 1.0}, {"name": "b", "value": 0.0}],
            "b",
            ("failure", 0.0, "feedback:b"),
        ),
        ([{"name": "outcome", "value": 1.0, "step_idx": 3}], None, ("unknown", None, None)),
        ([{"name": "outcome", "value_text": "maybe"}], None, ("unknown", None, None)),
    ],
)
def test_outcome_from_feedback(rows: list[dict], name: str | None, expected: tuple) -> None:
    assert outcome_from_feedback(rows, 1.0, name) == expected


def test_outcomes_from_feedback_fill_only_unknown_trajectories() -> None:
    trajectories = to_table(
        "trajectories",
        [
            {"trajectory_id": "a", "outcome_label": "unknown"},
            {"trajectory_id": "b", "outcome_label": "success", "outcome_source": "outcome"},
            {"trajectory_id": "c", "outcome_label": "unknown"},
        ],
    )
    feedback = to_table(
        "feedback",
        [
            {"trajectory_id": "a", "name": "resolved", "value": 0.0},
            {"trajectory_id": "b", "name": "resolved", "value": 0.0},
        ],
    )
    out = outcomes_from_feedback(trajectories, feedback, 1.0).to_pylist()
    labels = {r["trajectory_id"]: (r["outcome_label"], r["outcome_source"]) for r in out}
    assert labels == {
        "a": ("failure", "feedback:resolved"),
        "b": ("success", "outcome"),
        "c": ("unknown", None),
    }
    assert isinstance(outcomes_from_feedback(trajectories, feedback, 1.0), pa.Table)


def test_an_outcome_from_feedback_follows_the_latest_feedback_of_its_name() -> None:
    trajectories = to_table(
        "trajectories",
        [
            {"trajectory_id": "a", "outcome_label": "failure", "outcome_score": 0.0,
             "outcome_source": "feedback:correctness"},
            {"trajectory_id": "b", "outcome_label": "failure", "outcome_score": 0.0,
             "outcome_source": "reward"},
            {"trajectory_id": "c", "outcome_label": "success", "outcome_score": 1.0,
             "outcome_source": "feedback:correctness"},
        ],
    )  # fmt: skip
    feedback = to_table(
        "feedback",
        [
            {"trajectory_id": "a", "name": "correctness", "value": 0.0},
            {"trajectory_id": "b", "name": "correctness", "value": 0.0},
            {"trajectory_id": "c", "name": "correctness", "value": 1.0},
            {"trajectory_id": "a", "name": "correctness", "value": 1.0},  # corrected later
            {"trajectory_id": "b", "name": "correctness", "value": 1.0},
            {"trajectory_id": "c", "name": "helpfulness", "value": 0.0},
        ],
    )
    out = outcomes_from_feedback(trajectories, feedback, 1.0).to_pylist()
    assert [(r["outcome_label"], r["outcome_score"], r["outcome_source"]) for r in out] == [
        ("success", 1.0, "feedback:correctness"),  # the later row wins
        ("failure", 0.0, "reward"),  # a reward is not replaced by feedback
        ("success", 1.0, "feedback:correctness"),  # another name does not outrank it
    ]
    rows = [{"name": "outcome", "value": 0.0}, {"name": "outcome", "value": 1.0}]
    assert outcome_from_feedback(rows, 1.0)[0] == "failure"  # within one record: the first
    assert outcome_from_feedback(rows, 1.0, latest=True)[0] == "success"
    assert outcome_from_feedback(rows, 1.0, "outcome", latest=True)[0] == "success"


def test_feedback_read_later_corrects_the_stored_outcome(tmp_path: Path) -> None:
    """A LangSmith feedback correction read by a later ingest (a new feedback item of the same
    key on the same run) changes the stored trajectory's outcome; nothing is duplicated."""
    formats = Path(__file__).parent / "fixtures" / "formats"
    first = ingest([formats / "langsmith_runs.jsonl", formats / "langsmith_feedback.jsonl"])
    run = "0195f1a0-2222-7000-8000-000000000001"
    outcome = {r["trajectory_id"]: r for r in first.trajectories.to_pylist()}[run]
    assert (outcome["outcome_label"], outcome["outcome_source"]) == (
        "failure",
        "feedback:correctness",
    )
    first.save(tmp_path / "store")
    correction = tmp_path / "correction.jsonl"
    stamp = "2025-03-05T09:00:00.000000"
    item = {"id": "fb-0099", "key": "correctness", "score": 1, "run_id": run, "trace_id": run,
            "created_at": stamp, "modified_at": stamp}  # fmt: skip
    correction.write_text(json.dumps(item) + "\n", encoding="utf-8")
    later = ingest([correction], previous=Traces.load(tmp_path / "store"))
    rows = {r["trajectory_id"]: r for r in later.trajectories.to_pylist()}
    assert later.trajectories.num_rows == first.trajectories.num_rows
    assert (rows[run]["outcome_label"], rows[run]["outcome_score"]) == ("success", 1.0)
    others = {t: r["outcome_label"] for t, r in rows.items() if t != run}
    assert others == {
        r["trajectory_id"]: r["outcome_label"]
        for r in first.trajectories.to_pylist()
        if r["trajectory_id"] != run
    }


# --- the command line ---------------------------------------------------------------------------


def test_cli_ingest_json_adds_up_and_second_run_reads_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    shutil.copy(CHAT, tmp_path / CHAT.name)
    args = ["ingest", str(tmp_path / CHAT.name), "--data-dir", str(tmp_path / "d"), "--json", "-q"]
    first = runner.invoke(main, args)
    assert first.exit_code == 3, first.output  # done, but this run quarantined records
    payload = json.loads(first.output)
    (report,) = payload["files"]
    assert report["records_read"] == 8
    assert report["records_read"] == (
        report["ingested"] + report["deduplicated"] + report["quarantined"]
    )
    assert payload["this_run"]["records_read"] == 8
    second = runner.invoke(main, args)
    assert second.exit_code == 0, second.output  # this run read (and quarantined) nothing
    again = json.loads(second.output)
    assert again["this_run"]["records_read"] == 0
    assert again["files"][0]["status"] == "unchanged"
    assert again["totals"] == payload["totals"]


def test_cli_strict_exits_1_when_this_run_quarantined(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "d"), "-q"]
    strict = runner.invoke(main, ["ingest", str(CHAT), "--strict", *data])
    assert strict.exit_code == 1
    assert "3 records quarantined" in strict.output
    assert "line 3: invalid JSON" in strict.output  # the reasons, since no quarantine.jsonl is
    assert not (tmp_path / "d" / "tables").exists()  # written: nothing is
    clean = tmp_path / "clean.jsonl"
    clean.write_text(_run("ok-1") + "\n")
    assert runner.invoke(main, ["ingest", str(clean), "--strict", *data]).exit_code == 0


def test_cli_formats_lists_every_adapter() -> None:
    from pipeline.ingest.formats import ADAPTERS

    result = CliRunner().invoke(main, ["formats", "--json"])
    assert result.exit_code == 0
    names = [row["name"] for row in json.loads(result.output)["formats"]]
    assert names == [a.NAME for a in ADAPTERS]


@pytest.mark.parametrize("name", ["tau2_small.json", "testmodel-airline.json", "chat_small.jsonl"])
def test_a_utf8_byte_order_mark_is_accepted(name: str, tmp_path: Path) -> None:
    # some Windows tools start UTF-8 files with EF BB BF; the file must read as without it
    source = Path(__file__).parent / "fixtures" / name
    marked = tmp_path / name
    marked.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    assert sniff_format(marked) == sniff_format(source)
    plain, with_bom = ingest([source]), ingest([marked])
    assert with_bom.counts["quarantined"] == plain.counts["quarantined"]
    assert with_bom.trajectories.num_rows == plain.trajectories.num_rows > 0
    assert with_bom.steps.num_rows == plain.steps.num_rows

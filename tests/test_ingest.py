"""Ingest: format sniffing, adapters, quarantine accounting, canonical round trip, input errors.

Fixtures (tests/fixtures/):
- ``chat_small.jsonl``: Chat JSONL, 9 lines = 4 good trajectories, 4 malformed records
  (line 3 invalid JSON, line 5 no id, line 7 outcome "won"), line 9 an exact copy of line 1
  (deduplicated) and 1 blank line (line 6, not a record).
- ``testmodel-airline.json``: tau-bench list, 2 good items and item 2 without ``traj``.
- ``tau2_small.json``: tau2 results, 2 good simulations and simulation 2 without ``id``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError, UnknownFormatError
from pipeline.ingest import Traces, ingest, sniff_format
from pipeline.ingest.schema import to_table

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHAT = FIXTURES / "chat_small.jsonl"
TAU_BENCH = FIXTURES / "testmodel-airline.json"
TAU2 = FIXTURES / "tau2_small.json"
SHARED_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"

TB0 = "tau-bench/testmodel-airline/task-0/trial-0"
TB1 = "tau-bench/testmodel-airline/task-1/trial-0"


@pytest.fixture(scope="module")
def chat() -> Traces:
    return ingest([CHAT])


@pytest.fixture(scope="module")
def all_fixtures() -> Traces:
    return ingest([CHAT, TAU_BENCH, TAU2])


def _trajectories(traces: Traces) -> dict[str, dict]:
    return {row["trajectory_id"]: row for row in traces.trajectories.to_pylist()}


def _steps(traces: Traces, trajectory_id: str) -> list[dict]:
    rows = [s for s in traces.steps.to_pylist() if s["trajectory_id"] == trajectory_id]
    return sorted(rows, key=lambda s: s["step_idx"])


# --- sniffing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"), [(CHAT, "chat-jsonl"), (TAU_BENCH, "tau-bench"), (TAU2, "tau2")]
)
def test_sniff_format_names(path: Path, name: str) -> None:
    assert sniff_format(path) == name


def test_sniff_canonical_parquet(chat: Traces, tmp_path: Path) -> None:
    written = chat.save(tmp_path)
    for name in ("trajectories", "steps", "feedback"):
        assert sniff_format(written[name]) == "canonical"


# --- accounting and quarantine ------------------------------------------------------------------


def test_every_record_accounted_for_per_file(all_fixtures: Traces) -> None:
    reports = {Path(f.path).name: f for f in all_fixtures.files}
    assert set(reports) == {CHAT.name, TAU_BENCH.name, TAU2.name}
    for report in reports.values():
        assert report.records_read == report.ingested + report.deduplicated + report.quarantined
    chat = reports[CHAT.name]
    assert chat.format == "chat-jsonl"
    # 9 lines, one blank: 8 records, 4 good, 1 copy, 3 bad
    assert (chat.records_read, chat.ingested, chat.deduplicated, chat.quarantined) == (8, 4, 1, 3)
    assert chat.trajectories == 4
    tau_bench = reports[TAU_BENCH.name]
    assert (
        tau_bench.format,
        tau_bench.records_read,
        tau_bench.ingested,
        tau_bench.quarantined,
    ) == ("tau-bench", 3, 2, 1)
    tau2 = reports[TAU2.name]
    assert (tau2.format, tau2.records_read, tau2.ingested, tau2.quarantined) == ("tau2", 3, 2, 1)
    counts = all_fixtures.counts
    assert counts["records_read"] == 14
    assert counts["quarantined"] == len(all_fixtures.quarantine) == 5
    assert counts["trajectories"] == all_fixtures.trajectories.num_rows == 8
    assert counts["steps"] == all_fixtures.steps.num_rows
    assert counts["feedback"] == all_fixtures.feedback.num_rows


def test_quarantine_entries_name_file_position_and_reason(all_fixtures: Traces) -> None:
    entries = {(Path(q["file"]).name, q["where"]): q for q in all_fixtures.quarantine}
    assert set(entries) == {
        (CHAT.name, "line 3"),
        (CHAT.name, "line 5"),
        (CHAT.name, "line 7"),
        (TAU_BENCH.name, "index 2"),
        (TAU2.name, "simulations[2]"),
    }
    assert entries[(CHAT.name, "line 3")]["reason"].startswith("invalid JSON")
    assert entries[(CHAT.name, "line 3")]["raw"].startswith('{"id": "chat-broken"')
    assert "missing 'id'" in entries[(CHAT.name, "line 5")]["reason"]
    bad_outcome = entries[(CHAT.name, "line 7")]["reason"]
    assert "'outcome'" in bad_outcome and "'won'" in bad_outcome
    assert "'traj'" in entries[(TAU_BENCH.name, "index 2")]["reason"]
    assert "'id'" in entries[(TAU2.name, "simulations[2]")]["reason"]
    for entry in all_fixtures.quarantine:
        assert set(entry) == {"file", "where", "reason", "raw"}


def test_exact_copy_is_deduplicated(chat: Traces) -> None:
    ids = chat.trajectories.column("trajectory_id").to_pylist()
    assert sorted(ids) == ["chat-001", "chat-002", "chat-003", "chat-004"]
    assert _trajectories(chat)["chat-001"]["n_steps"] == 10
    assert chat.warnings == []


def test_same_id_different_content_from_two_files_keeps_both_with_warning(
    tmp_path: Path,
) -> None:
    first = {"id": "run-1", "outcome": "success", "messages": [{"role": "user", "content": "a"}]}
    second = first | {"outcome": "failure"}
    (tmp_path / "a.jsonl").write_text(json.dumps(first) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps(second) + "\n")
    traces = ingest([tmp_path])
    rows = _trajectories(traces)
    (renamed,) = [t for t in rows if t != "run-1"]
    assert renamed.startswith("run-1~")
    assert rows["run-1"]["outcome_label"] == "success"
    assert rows[renamed]["outcome_label"] == "failure"
    assert [s["trajectory_id"] for s in traces.steps.to_pylist()] == ["run-1", renamed]
    reports = {Path(f.path).name: f for f in traces.files}
    assert (reports["b.jsonl"].records_read, reports["b.jsonl"].renamed) == (1, 1)
    (warning,) = traces.warnings
    assert "'run-1'" in warning and "a.jsonl line 1" in warning and "b.jsonl line 1" in warning


def test_a_later_record_of_the_same_id_in_one_file_supersedes_the_earlier(tmp_path: Path) -> None:
    first = {"id": "run-1", "outcome": "success", "messages": [{"role": "user", "content": "a"}]}
    second = first | {"outcome": "failure"}
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    traces = ingest([path])
    rows = _trajectories(traces)
    assert list(rows) == ["run-1"]
    assert rows["run-1"]["outcome_label"] == "failure"
    assert [s["trajectory_id"] for s in traces.steps.to_pylist()] == ["run-1"]
    (report,) = traces.files
    # the earlier version counts as deduplicated: read, replaced, not lost without a count
    assert (report.records_read, report.ingested, report.deduplicated) == (2, 1, 1)
    assert (report.superseded, report.renamed, report.trajectories) == (1, 0, 1)
    (warning,) = traces.warnings
    assert "'run-1'" in warning and "line 1" in warning and "line 2" in warning
    assert "replaces" in warning


# --- step rows ----------------------------------------------------------------------------------


def test_step_rows_of_chat_trajectory(chat: Traces) -> None:
    steps = _steps(chat, "chat-001")
    assert [s["step_idx"] for s in steps] == list(range(10))
    assert [s["step_type"] for s in steps] == [
        "system",
        "user",
        "tool_call",
        "tool_result",
        "assistant",
        "user",
        "assistant",
        "tool_call",
        "tool_result",
        "assistant",
    ]
    call = steps[2]
    assert call["role"] == "assistant"
    assert call["tool_name"] == "get_user_details"
    assert call["tool_call_id"] == "call_1"
    assert json.loads(call["tool_args"]) == {"user_id": "mia_li_3668"}
    # an assistant message with text and a tool call gives an assistant step, then the call
    assert steps[6]["content_text"] == "Booking it now."
    book = steps[7]
    assert book["tool_name"] == "book_reservation"
    assert json.loads(book["tool_args"]) == {
        "reservation_id": "R1",
        "cabin": "economy",
        "insurance": True,
        "passengers": [{"name": "Mia Li"}],
    }
    # tool results carry no name in the fixture: it is resolved through tool_call_id
    result = steps[8]
    assert result["role"] == "tool"
    assert result["tool_call_id"] == "call_2"
    assert result["tool_name"] == "book_reservation"
    assert result["tool_result_text"] == '{"reservation_id": "R1", "status": "booked"}'
    assert result["is_error"] is False
    assert result["error_message"] is None


def test_error_results_are_flagged(chat: Traces) -> None:
    steps = _steps(chat, "chat-002")
    results = [s for s in steps if s["step_type"] == "tool_result"]
    assert [s["tool_name"] for s in results] == [
        "get_reservation_details",
        "search_direct_flight",
        "search_direct_flight",
        "cancel_reservation",
    ]
    assert [s["is_error"] for s in results] == [False, True, True, False]
    assert results[1]["error_message"] == "Error: flight HAT030 not available on date 2024-05-13"
    # lower-case "error: ..." counts as well
    chat4 = [s for s in _steps(chat, "chat-004") if s["step_type"] == "tool_result"]
    assert [s["is_error"] for s in chat4] == [False, True]


def test_two_tool_calls_in_one_message(chat: Traces) -> None:
    steps = _steps(chat, "chat-004")
    calls = [s for s in steps if s["step_type"] == "tool_call"]
    assert [(s["step_idx"], s["tool_call_id"]) for s in calls] == [(4, "b1"), (5, "b2")]
    assert [json.loads(s["tool_args"])["reservation_id"] for s in calls] == ["R4", "R5"]


def test_tau_bench_rows(all_fixtures: Traces) -> None:
    trajectories = _trajectories(all_fixtures)
    first, second = trajectories[TB0], trajectories[TB1]
    assert first["source_format"] == "tau-bench"
    assert (first["domain"], first["model"], first["dataset"]) == (
        "airline",
        "testmodel",
        "tau-bench-airline",
    )
    assert (first["task_id"], first["trial"], first["user_id"]) == ("0", 0, "mia_li_3668")
    assert (first["outcome_label"], first["outcome_score"], first["outcome_source"]) == (
        "success",
        1.0,
        "reward",
    )
    assert second["outcome_label"] == "failure"
    assert first["termination_reason"] == "user_stop"
    assert second["termination_reason"] == "transfer"
    assert first["system_prompt"].startswith("# Airline Agent Policy")
    assert json.loads(first["metadata"])["task_instruction"].startswith("Your user id is mia")
    error = [s for s in _steps(all_fixtures, TB1) if s["step_type"] == "tool_result"]
    assert [(s["tool_name"], s["is_error"]) for s in error] == [("get_reservation_details", True)]
    assert second["n_tool_errors"] == 1


def test_tau2_rows(all_fixtures: Traces) -> None:
    trajectories = _trajectories(all_fixtures)
    sim0, sim1 = trajectories["sim-0"], trajectories["sim-1"]
    assert sim0["source_format"] == "tau2"
    assert (sim0["domain"], sim0["dataset"], sim0["model"]) == (
        "airline",
        "tau2-airline",
        "test-llm",
    )
    assert sim0["user_id"] == "mia_li_3668"  # parsed from the task's user scenario
    assert sim1["user_id"] == "omar_rossi_1241"
    assert (sim0["outcome_label"], sim1["outcome_label"]) == ("success", "failure")
    assert sim0["cost_usd"] == pytest.approx(0.05)  # agent_cost
    assert sim1["cost_usd"] == pytest.approx(0.007)  # sum of assistant message costs
    assert (sim0["input_tokens"], sim0["output_tokens"]) == (220, 22)
    assert sim0["started_at"].isoformat() == "2025-01-01T10:00:00+00:00"
    assert sim0["ended_at"].isoformat() == "2025-01-01T10:05:00+00:00"
    steps = _steps(all_fixtures, "sim-0")
    # the policy becomes step 0
    assert steps[0]["step_type"] == "system"
    assert steps[0]["content_text"].startswith("# Airline Agent Policy")
    assert [s["step_idx"] for s in steps] == list(range(len(steps)))
    results = [s for s in steps if s["step_type"] == "tool_result"]
    # tau2 tool messages carry {id, content, error}: the flag wins over the text
    assert [(s["tool_name"], s["is_error"]) for s in results] == [
        ("get_user_details", True),
        ("cancel_reservation", False),
    ]
    assert results[0]["error_message"] == "user not found"
    feedback = [f for f in all_fixtures.feedback.to_pylist() if f["trajectory_id"] == "sim-0"]
    assert {f["name"] for f in feedback} == {"reward", "reward.DB", "nl_assertion"}


# --- outcome labels -----------------------------------------------------------------------------


def test_outcome_labels(chat: Traces) -> None:
    rows = _trajectories(chat)
    labels = {
        k: (v["outcome_label"], v["outcome_source"], v["outcome_score"]) for k, v in rows.items()
    }
    assert labels == {
        "chat-001": ("success", "outcome", None),
        "chat-002": ("failure", "reward", 0.0),
        "chat-003": ("failure", "reward", 0.5),  # 0.5 < default threshold 1.0
        "chat-004": ("failure", "outcome", 1.0),  # an explicit outcome beats the reward
    }


def test_reward_threshold_changes_reward_labels_only() -> None:
    rows = _trajectories(ingest([CHAT], reward_threshold=0.5))
    assert rows["chat-003"]["outcome_label"] == "success"  # 0.5 >= 0.5
    assert rows["chat-002"]["outcome_label"] == "failure"
    assert rows["chat-004"]["outcome_label"] == "failure"  # from outcome, not reward


# --- derived trajectory columns -----------------------------------------------------------------


def test_trajectory_derived_columns(chat: Traces) -> None:
    rows = _trajectories(chat)
    derived = {k: (v["n_steps"], v["n_tool_calls"], v["n_tool_errors"]) for k, v in rows.items()}
    assert derived == {
        "chat-001": (10, 2, 0),
        "chat-002": (11, 4, 2),
        "chat-003": (12, 2, 0),
        "chat-004": (9, 2, 1),
    }
    step_counts = pl.from_arrow(chat.steps).group_by("trajectory_id").len()
    for trajectory_id, n in step_counts.iter_rows():
        assert rows[trajectory_id]["n_steps"] == n
    first = rows["chat-001"]
    assert first["system_prompt"] == "You are an airline customer service agent."
    assert first["task_input"].startswith("Hi, I want to book a flight.")
    assert first["final_output"] == "Your flight is booked."
    assert (first["task_id"], first["user_id"], first["model"], first["trial"]) == (
        "t1",
        "mia_li_3668",
        "test-model",
        0,
    )


# --- canonical round trip -----------------------------------------------------------------------


def test_save_then_load_gives_equal_tables(all_fixtures: Traces, tmp_path: Path) -> None:
    all_fixtures.save(tmp_path / "tables")
    loaded = Traces.load(tmp_path / "tables")
    for name in ("trajectories", "steps", "feedback"):
        assert getattr(loaded, name).equals(getattr(all_fixtures, name)), name
    assert loaded.quarantine == all_fixtures.quarantine
    assert loaded.files == all_fixtures.files
    assert loaded.content_hash() == all_fixtures.content_hash()


def test_saved_parquet_files_reingest_as_canonical(all_fixtures: Traces, tmp_path: Path) -> None:
    written = all_fixtures.save(tmp_path / "tables")
    only_tables = tmp_path / "only_tables"
    only_tables.mkdir()
    for name in ("trajectories", "steps", "feedback"):
        shutil.copy(written[name], only_tables / written[name].name)
    again = ingest([only_tables])
    assert {f.format for f in again.files} == {"canonical"}
    assert again.quarantine == []
    assert sorted(again.trajectories.column("trajectory_id").to_pylist()) == sorted(
        all_fixtures.trajectories.column("trajectory_id").to_pylist()
    )
    assert again.trajectories.sort_by("trajectory_id").equals(
        all_fixtures.trajectories.sort_by("trajectory_id")
    )
    assert again.steps.num_rows == all_fixtures.steps.num_rows
    assert again.feedback.num_rows == all_fixtures.feedback.num_rows
    for report in again.files:
        assert report.records_read == report.ingested + report.quarantined


def test_saved_directory_reingests_as_canonical(all_fixtures: Traces, tmp_path: Path) -> None:
    all_fixtures.save(tmp_path / "tables")
    again = ingest([tmp_path / "tables"])
    assert sorted(again.trajectories.column("trajectory_id").to_pylist()) == sorted(
        all_fixtures.trajectories.column("trajectory_id").to_pylist()
    )


def test_orphan_steps_and_feedback_are_quarantined(chat: Traces, tmp_path: Path) -> None:
    written = chat.save(tmp_path / "tables")
    ghost_steps = [
        {
            "trajectory_id": "ghost",
            "step_idx": 0,
            "role": "user",
            "step_type": "user",
            "content_text": "who am I?",
            "is_error": False,
        },
        {
            "trajectory_id": "ghost",
            "step_idx": 1,
            "role": "assistant",
            "step_type": "assistant",
            "content_text": "nobody",
            "is_error": False,
        },
    ]
    steps_path = tmp_path / "steps_with_orphans.parquet"
    pq.write_table(pa.concat_tables([chat.steps, to_table("steps", ghost_steps)]), steps_path)
    feedback_path = tmp_path / "feedback_with_orphan.parquet"
    pq.write_table(
        to_table("feedback", [{"trajectory_id": "ghost", "name": "reward", "value": 1.0}]),
        feedback_path,
    )
    traces = ingest([written["trajectories"], steps_path, feedback_path])
    n_good = chat.steps.num_rows
    assert traces.steps.num_rows == n_good
    assert "ghost" not in set(traces.steps.column("trajectory_id").to_pylist())
    assert traces.feedback.num_rows == 0
    reports = {Path(f.path).name: f for f in traces.files}
    steps_report = reports[steps_path.name]
    assert (
        steps_report.records_read,
        steps_report.ingested,
        steps_report.quarantined,
        steps_report.steps,
    ) == (n_good + 2, n_good, 2, n_good)
    feedback_report = reports[feedback_path.name]
    assert (
        feedback_report.records_read,
        feedback_report.ingested,
        feedback_report.quarantined,
        feedback_report.feedback,
    ) == (1, 0, 1, 0)
    orphans = [q for q in traces.quarantine if Path(q["file"]) == steps_path]
    assert [q["where"] for q in orphans] == [f"row {n_good}", f"row {n_good + 1}"]
    assert all("unknown trajectory 'ghost'" in q["reason"] for q in orphans)
    assert traces.counts["quarantined"] == len(traces.quarantine) == 3
    for report in traces.files:
        assert report.records_read == report.ingested + report.deduplicated + report.quarantined


# --- whole-file errors --------------------------------------------------------------------------


def test_missing_path_is_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InputError, match="nope.jsonl"):
        ingest([missing])


def test_unknown_text_format_is_quarantined_naming_the_formats_tried(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\nnot a trace at all\n", encoding="utf-8")
    with pytest.raises(UnknownFormatError, match="notes.txt"):
        sniff_format(path)
    traces = ingest([path])
    (report,) = traces.files
    assert (report.format, report.records_read, report.quarantined) == ("", 1, 1)
    assert report.reason.startswith(f"{path}: unknown trace format (tried canonical, ")
    assert traces.trajectories.num_rows == 0


def test_non_utf8_line_is_quarantined_naming_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(
        {"id": "x", "outcome": "success", "messages": [{"role": "user", "content": "hi"}]}
    )
    # the first line sniffs as Chat JSONL; the second holds a Latin-1 byte
    path.write_bytes(
        good.encode()
        + b"\n"
        + '{"id": "y", "messages": [], "note": "caf\xe9"}'.encode("latin-1")
        + b"\n"
    )
    traces = ingest([path])
    assert traces.counts["records_read"] == 2
    assert traces.counts["ingested"] == 1
    (row,) = traces.quarantine
    assert row["file"] == str(path)
    assert row["where"] == "line 2"
    assert "not UTF-8" in row["reason"]


def test_non_utf8_document_is_quarantined_naming_file(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(b'{"info": {}, "simulations": [], "note": "caf\xe9"}')
    traces = ingest([path], format="tau2")
    (report,) = traces.files
    assert (report.records_read, report.quarantined) == (1, 1)
    assert report.reason.startswith(f"{path}: not UTF-8 text")
    assert traces.quarantine[0]["reason"] == report.reason


def test_truncated_tau_bench_json_is_quarantined_where_it_stops(tmp_path: Path) -> None:
    path = tmp_path / "gpt-4o-airline.json"
    full = TAU_BENCH.read_text(encoding="utf-8")
    path.write_text(full[: len(full) // 2], encoding="utf-8")
    assert sniff_format(path) == "tau-bench"
    traces = ingest([path])
    # the array is streamed: the items before the cut are ingested, the cut is quarantined
    assert traces.counts["ingested"] < len(json.loads(full))
    (row,) = traces.quarantine
    assert row["file"] == str(path)
    assert "truncated JSON" in row["reason"]
    assert row["where"] == f"index {traces.counts['ingested']}"


# --- the shared real traces ---------------------------------------------------------------------


def test_all_shared_traces_in_one_run() -> None:
    """The four shared data sets, as their README counts them, from the one directory: every
    record ingested, none quarantined, outcomes as published."""
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"shared traces not found at {SHARED_TRACES}")
    traces = ingest([SHARED_TRACES])
    assert traces.quarantine == []
    assert traces.warnings == []
    counts = traces.counts
    assert counts["quarantined"] == counts["deduplicated"] == 0
    assert counts["records_read"] == counts["ingested"]
    frame = pl.from_arrow(traces.trajectories)
    assert isinstance(frame, pl.DataFrame)
    by_format = {
        (fmt, label): n
        for fmt, label, n in frame.group_by("source_format", "outcome_label").len().iter_rows()
    }
    assert by_format == {
        ("tau-bench", "success"): 84,
        ("tau-bench", "failure"): 116,
        ("tau2", "success"): 19 + 36 + 38,
        ("tau2", "failure"): 150 - 93,
        ("mini-swe-agent", "success"): 231,
        ("mini-swe-agent", "failure"): 74,
        ("who-and-when", "failure"): 126,
    }
    # the README beside the data is listed as skipped, with its reason
    skipped = [f for f in traces.files if f.status == "skipped"]
    assert [Path(f.path).name for f in skipped] == ["README.md"]
    assert "not a trace file name" in skipped[0].reason
    formats = {Path(f.path).parent.name: f.format for f in traces.files if f.status == "read"}
    assert formats == {
        "tau-bench": "tau-bench",
        "tau2": "tau2",
        "swe-bench": "swe-bench-results",
        "trajs": "mini-swe-agent",
        "who-and-when": "who-and-when",
    }
    # the SWE-bench outcomes come from results.json, joined on the instance id
    swe = frame.filter(pl.col("source_format") == "mini-swe-agent")
    assert set(swe["outcome_source"]) == {"feedback:resolved"}


def test_real_tau_traces() -> None:
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"shared traces not found at {SHARED_TRACES}")
    traces = ingest([SHARED_TRACES / "tau-bench", SHARED_TRACES / "tau2"])
    assert traces.trajectories.num_rows == 350
    assert traces.quarantine == []
    assert traces.counts["quarantined"] == 0
    frame = pl.from_arrow(traces.trajectories)
    by_format = dict(frame.group_by("source_format").len().iter_rows())
    assert by_format == {"tau-bench": 200, "tau2": 150}
    successes = dict(
        frame.filter(pl.col("outcome_label") == "success")
        .group_by("source_uri")
        .len()
        .with_columns(
            pl.col("source_uri").map_elements(lambda p: Path(p).name, return_dtype=pl.String)
        )
        .iter_rows()
    )
    assert successes == {
        "gpt-4o-airline.json": 84,
        "airline-gpt-oss-120b.json": 19,
        "airline-claude-sonnet-4-5.json": 36,
        "airline-claude-opus-4-6.json": 38,
    }
    for report in traces.files:
        assert report.records_read == report.ingested + report.deduplicated + report.quarantined


def test_two_files_with_the_same_bytes_in_one_run_are_read_once_and_both_listed(
    tmp_path: Path,
) -> None:
    """The first is read and counted; the second is listed as skipped with the reason, and
    the first keeps its own report (it used to be marked unchanged, this run counting 0)."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    shutil.copy(CHAT, first)
    shutil.copy(CHAT, second)
    traces = ingest([first, second])
    by_path = {Path(f.path).name: f for f in traces.files}
    assert by_path["a.jsonl"].status == "read"
    assert by_path["a.jsonl"].records_read == traces.counts_this_run["records_read"] > 0
    assert by_path["b.jsonl"].status == "skipped"
    assert by_path["b.jsonl"].records_read == 0
    assert by_path["b.jsonl"].reason == f"the same bytes as {first}, read in this run"
    # saved and read again, the same two files change nothing
    traces.save(tmp_path / "tables")
    again = ingest([first, second], previous=Traces.load(tmp_path / "tables"))
    assert again.counts_this_run["records_read"] == 0
    by_path = {Path(f.path).name: f for f in again.files}
    assert by_path["a.jsonl"].status == "unchanged"
    assert by_path["b.jsonl"].status == "skipped"
    assert by_path["b.jsonl"].reason == f"the same bytes as {first}, already in the store"

"""Behaviour features derived from the chat JSONL fixture (see tests/test_ingest.py for its shape).

The four good trajectories of ``tests/fixtures/chat_small.jsonl``:

- chat-001: get_user_details, then (after the user says "Yes, please book it.") book_reservation
  {reservation_id R1, cabin economy, insurance true, passengers [...]}; 2 user turns.
- chat-002: get_reservation_details, search_direct_flight twice with identical arguments (both
  "Error: flight HAT030 not available on date 2024-05-13"), cancel_reservation R2 with no
  confirmation (the last user message is the request); 1 user turn.
- chat-003: 4 user turns, none a yes; update_reservation_flights R3 business, then
  transfer_to_human_agents.
- chat-004: user says "ok"; book_reservation R4 business and R5 business in one message; the second
  result is "error: payment declined for card 4111".
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.analyze import FeatureConfig, derive_features, error_signature
from pipeline.ingest import ingest

CHAT = Path(__file__).resolve().parent / "fixtures" / "chat_small.jsonl"


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    return derive_features(ingest([CHAT]).connect(), FeatureConfig())


def _ids(features: pl.DataFrame, trajectory_id: str, kind: str | None = None) -> set[str]:
    frame = features.filter(pl.col("trajectory_id") == trajectory_id)
    if kind is not None:
        frame = frame.filter(pl.col("kind") == kind)
    return set(frame["feature_id"].to_list())


def _row(features: pl.DataFrame, trajectory_id: str, feature_id: str) -> dict:
    rows = features.filter(
        (pl.col("trajectory_id") == trajectory_id) & (pl.col("feature_id") == feature_id)
    ).to_dicts()
    assert len(rows) == 1, (trajectory_id, feature_id, rows)
    return rows[0]


def test_output_columns_and_uniqueness(features: pl.DataFrame) -> None:
    assert features.columns == [
        "trajectory_id",
        "feature_id",
        "kind",
        "step_idx",
        "subject",
        "detail",
    ]
    assert features.schema["step_idx"] == pl.Int64
    assert features.select("trajectory_id", "feature_id").is_duplicated().sum() == 0
    for feature_id, kind in features.select("feature_id", "kind").iter_rows():
        assert feature_id.startswith(kind + ":")


def test_tool_called(features: pl.DataFrame) -> None:
    assert _ids(features, "chat-001", "tool_called") == {
        "tool_called:get_user_details",
        "tool_called:book_reservation",
    }
    assert _ids(features, "chat-002", "tool_called") == {
        "tool_called:get_reservation_details",
        "tool_called:search_direct_flight",
        "tool_called:cancel_reservation",
    }
    # first call of the tool
    assert _row(features, "chat-002", "tool_called:search_direct_flight")["step_idx"] == 4
    assert _row(features, "chat-004", "tool_called:book_reservation")["step_idx"] == 4


def test_tool_order(features: pl.DataFrame) -> None:
    assert _ids(features, "chat-001", "tool_order") == {
        "tool_order:get_user_details->book_reservation"
    }
    # get_reservation_details (step 2) precedes cancel_reservation (step 8) with other calls
    # between: non-adjacent pairs count too. Reads that follow reads are not pairs (the second
    # tool must be a write action), and a tool is not ordered against itself.
    assert _ids(features, "chat-002", "tool_order") == {
        "tool_order:get_reservation_details->cancel_reservation",
        "tool_order:search_direct_flight->cancel_reservation",
    }
    row = _row(features, "chat-002", "tool_order:get_reservation_details->cancel_reservation")
    assert (row["step_idx"], row["subject"], row["detail"]) == (
        8,
        "cancel_reservation",
        "get_reservation_details",
    )
    # chat-004 only calls book_reservation: nothing to order
    assert _ids(features, "chat-004", "tool_order") == set()


def test_write_arg_default_config(features: pl.DataFrame) -> None:
    assert _ids(features, "chat-001", "write_arg") == {
        "write_arg:book_reservation.cabin=economy",
        "write_arg:book_reservation.insurance=true",
        "write_arg:book_reservation.reservation_id=R1",
    }  # passengers is a list, not a scalar: no feature
    assert _ids(features, "chat-004", "write_arg") == {
        "write_arg:book_reservation.cabin=business",
        "write_arg:book_reservation.reservation_id=R4",
        "write_arg:book_reservation.reservation_id=R5",
    }
    # read tools never give write_arg features
    assert not any(
        "get_" in f or "search_" in f
        for f in features.filter(pl.col("kind") == "write_arg")["feature_id"]
    )
    row = _row(features, "chat-001", "write_arg:book_reservation.cabin=economy")
    assert (row["subject"], row["detail"], row["step_idx"]) == (
        "book_reservation.cabin",
        "economy",
        7,
    )


def test_write_arg_only_low_cardinality() -> None:
    # book_reservation.reservation_id takes 3 values (R1, R4, R5), cabin 2, insurance 1
    features = derive_features(ingest([CHAT]).connect(), FeatureConfig(max_arg_values=2))
    write_args = set(features.filter(pl.col("kind") == "write_arg")["feature_id"].to_list())
    assert "write_arg:book_reservation.cabin=economy" in write_args
    assert "write_arg:book_reservation.cabin=business" in write_args
    assert "write_arg:book_reservation.insurance=true" in write_args
    assert not any(f.startswith("write_arg:book_reservation.reservation_id") for f in write_args)
    # cardinality is per (tool, argument): cancel_reservation.reservation_id has one value
    assert "write_arg:cancel_reservation.reservation_id=R2" in write_args


def test_unconfirmed_write(features: pl.DataFrame) -> None:
    unconfirmed = features.filter(pl.col("kind") == "unconfirmed_write")
    assert set(unconfirmed.select("trajectory_id", "feature_id").iter_rows()) == {
        ("chat-002", "unconfirmed_write:cancel_reservation"),
        ("chat-003", "unconfirmed_write:update_reservation_flights"),
    }
    # chat-001 ("Yes, please book it.") and chat-004 ("ok") confirmed before writing
    assert _ids(features, "chat-001", "unconfirmed_write") == set()
    assert _ids(features, "chat-004", "unconfirmed_write") == set()
    assert _row(features, "chat-002", "unconfirmed_write:cancel_reservation")["step_idx"] == 8


def test_tool_error_uses_masked_signature(features: pl.DataFrame) -> None:
    row = _row(
        features,
        "chat-002",
        "tool_error:search_direct_flight:error: flight <n> not available on date <n>",
    )
    assert (row["subject"], row["detail"], row["step_idx"]) == (
        "search_direct_flight",
        "error: flight <n> not available on date <n>",
        5,
    )
    assert _ids(features, "chat-004", "tool_error") == {
        "tool_error:book_reservation:error: payment declined for card <n>"
    }
    assert _ids(features, "chat-001", "tool_error") == set()


def test_repeated_call(features: pl.DataFrame) -> None:
    repeated = features.filter(pl.col("kind") == "repeated_call")
    # only chat-002 repeats a call with identical arguments; chat-004's two book_reservation
    # calls differ in their arguments
    assert repeated.select("trajectory_id", "feature_id").rows() == [
        ("chat-002", "repeated_call:search_direct_flight")
    ]
    assert repeated["step_idx"].to_list() == [6]  # the second, repeated call


def test_transfer(features: pl.DataFrame) -> None:
    transfers = features.filter(pl.col("kind") == "transfer")
    assert transfers.select("trajectory_id", "feature_id", "step_idx").rows() == [
        ("chat-003", "transfer:transfer_to_human_agents", 10)
    ]
    # a transfer is not a write action
    assert not any(
        "transfer_to_human_agents" in f
        for f in features.filter(pl.col("kind").is_in(["write_arg", "unconfirmed_write"]))[
            "feature_id"
        ]
    )


def test_turns_bucket(features: pl.DataFrame) -> None:
    turns = dict(
        features.filter(pl.col("kind") == "turns").select("trajectory_id", "feature_id").iter_rows()
    )
    assert turns == {
        "chat-001": "turns:1-3",  # 2 user messages
        "chat-002": "turns:1-3",  # 1
        "chat-003": "turns:4-6",  # 4
        "chat-004": "turns:1-3",  # 2
    }
    assert features.filter(pl.col("kind") == "turns")["step_idx"].null_count() == 4


def test_termination_feature_from_tau_bench() -> None:
    traces = ingest([Path(__file__).resolve().parent / "fixtures" / "testmodel-airline.json"])
    features = derive_features(traces.connect(), FeatureConfig())
    termination = set(
        features.filter(pl.col("kind") == "termination")
        .select("trajectory_id", "feature_id")
        .iter_rows()
    )
    assert termination == {
        ("tau-bench/testmodel-airline/task-0/trial-0", "termination:user_stop"),
        ("tau-bench/testmodel-airline/task-1/trial-0", "termination:transfer"),
    }


@pytest.mark.parametrize(
    ("message", "signature"),
    [
        (
            "Error: flight HAT030 not available on date 2024-05-13",
            "error: flight <n> not available on date <n>",
        ),
        ("Error: user 'mia_li_3668' not found", "error: user <str> not found"),
        (
            'Error:   reservation "ABC 123"   not found\nTraceback (most recent call last)',
            "error: reservation <str> not found",
        ),
        (
            "Error: insufficient balance 12.50 in gift_card_7890",
            "error: insufficient balance <n> in <n>",
        ),
        ("", ""),
    ],
)
def test_error_signature(message: str, signature: str) -> None:
    assert error_signature(message) == signature


def test_error_signature_is_capped() -> None:
    assert len(error_signature("Error: " + "x" * 500)) == 120


def _canonical_error_traces(tmp_path: Path, result_text: str):
    record = {
        "trajectory_id": "canon-1",
        "outcome_label": "failure",
        "steps": [
            {"step_type": "user", "role": "user", "content_text": "hi"},
            {
                "step_type": "tool_call",
                "role": "assistant",
                "tool_name": "get_thing",
                "tool_call_id": "a",
                "tool_args": {"id": 1},
            },
            {
                "step_type": "tool_result",
                "role": "tool",
                "tool_name": "get_thing",
                "tool_call_id": "a",
                "tool_result_text": result_text,
                "is_error": True,
            },
        ],
    }
    path = tmp_path / "canonical.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return ingest([path])


def test_sql_signature_mirrors_error_signature(tmp_path: Path) -> None:
    # canonical input with no error_message: the SQL signs tool_result_text itself
    text = "Error:  reservation 'R 9'   not found  (code 404)\nsecond line 77"
    features = derive_features(_canonical_error_traces(tmp_path, text).connect(), FeatureConfig())
    details = features.filter(pl.col("kind") == "tool_error")["detail"].to_list()
    assert details == [error_signature(text)] == ["error: reservation <str> not found (code <n>)"]


def test_sql_signature_mirrors_error_signature_leading_newline(tmp_path: Path) -> None:
    text = "\nError: thing 42 missing"
    features = derive_features(_canonical_error_traces(tmp_path, text).connect(), FeatureConfig())
    details = features.filter(pl.col("kind") == "tool_error")["detail"].to_list()
    assert details == [error_signature(text)] == ["error: thing <n> missing"]


def _call(tool: str, call_id: str, error: bool = False) -> list[dict]:
    """A tool call and its result (an error when ``error``), as canonical steps."""
    return [
        {
            "step_type": "tool_call",
            "role": "assistant",
            "tool_name": tool,
            "tool_call_id": call_id,
            "tool_args": {"id": call_id},
        },
        {
            "step_type": "tool_result",
            "role": "tool",
            "tool_name": tool,
            "tool_call_id": call_id,
            "tool_result_text": "Error: service unavailable" if error else "ok",
            "is_error": error,
        },
    ]


def test_unretried_error(tmp_path: Path) -> None:
    user = [{"step_type": "user", "role": "user", "content_text": "hi"}]
    runs = {
        # error, then the same tool again: retried, no feature
        "retried": user + _call("search", "a", error=True) + _call("search", "b"),
        # error, then nothing
        "dropped": user + _call("search", "a", error=True),
        # error, then only a different tool
        "other_tool": user + _call("search", "a", error=True) + _call("transfer", "b"),
        # no error at all
        "clean": user + _call("search", "a"),
    }
    path = tmp_path / "canonical.jsonl"
    path.write_text(
        "".join(
            json.dumps({"trajectory_id": t, "outcome_label": "failure", "steps": s}) + "\n"
            for t, s in runs.items()
        ),
        encoding="utf-8",
    )
    features = derive_features(ingest([path]).connect(), FeatureConfig())
    unretried = features.filter(pl.col("kind") == "unretried_error")
    assert unretried.select("trajectory_id", "feature_id", "step_idx", "subject").rows() == [
        ("dropped", "unretried_error:search", 2, "search"),
        ("other_tool", "unretried_error:search", 2, "search"),
    ]
    # the retried run still shows the error itself
    assert _ids(features, "retried", "tool_error") == {
        "tool_error:search:error: service unavailable"
    }


def test_unretried_error_in_chat_fixture(features: pl.DataFrame) -> None:
    # chat-002's second search_direct_flight error (step 7) is its last call of that tool;
    # chat-004's payment error follows the last book_reservation call
    unretried = features.filter(pl.col("kind") == "unretried_error")
    assert set(unretried.select("trajectory_id", "feature_id", "step_idx").iter_rows()) == {
        ("chat-002", "unretried_error:search_direct_flight", 7),
        ("chat-004", "unretried_error:book_reservation", 7),
    }

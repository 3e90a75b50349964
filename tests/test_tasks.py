"""task_keys: aligning the same task across datasets by instruction similarity and user id."""

from __future__ import annotations

import json

import polars as pl

from pipeline.analyze import task_keys

CANCEL = (
    "Your user id is mia_li_3668. You want to cancel reservation ABC123 because your plans changed."
)
BOOK = (
    "Your user id is omar_rossi_1241. You want to book a one way flight from JFK to SFO in economy."
)
BAG = "Your user id is sofia_kim_7287. You want to add one checked bag to reservation XYZ789."


def _frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (
                t,
                ds,
                dom,
                task,
                user,
                None if text is None else json.dumps({"task_instruction": text}),
            )
            for t, ds, dom, task, user, text in rows
        ],
        schema={
            "trajectory_id": pl.String,
            "dataset": pl.String,
            "domain": pl.String,
            "task_id": pl.String,
            "user_id": pl.String,
            "metadata": pl.String,
        },
        orient="row",
    )


def _reference_rows() -> list[tuple]:
    # the dataset with the most tasks (3) is the reference
    return [
        ("tb-0-0", "tau-bench-airline", "airline", "0", "mia_li_3668", CANCEL),
        ("tb-0-1", "tau-bench-airline", "airline", "0", "mia_li_3668", CANCEL),
        ("tb-1-0", "tau-bench-airline", "airline", "1", "omar_rossi_1241", BOOK),
        ("tb-2-0", "tau-bench-airline", "airline", "2", "sofia_kim_7287", BAG),
    ]


def _keys(frame: pl.DataFrame) -> dict[str, tuple[str | None, bool]]:
    out = task_keys(frame)
    assert out.columns == ["trajectory_id", "task_key", "aligned"]
    assert out["trajectory_id"].to_list() == frame["trajectory_id"].to_list()
    return {t: (k, a) for t, k, a in out.iter_rows()}


def test_aligns_reworded_instruction_with_same_user() -> None:
    frame = _frame(
        _reference_rows()
        + [
            (
                "t2-a-0",
                "tau2-airline",
                "airline",
                "a",
                "omar_rossi_1241",
                "You are omar_rossi_1241. You want to book a one way flight from JFK to SFO in "
                "economy class.",
            ),
            (
                "t2-a-1",
                "tau2-airline",
                "airline",
                "a",
                "omar_rossi_1241",
                "You are omar_rossi_1241. You want to book a one way flight from JFK to SFO in "
                "economy class.",
            ),
            (
                "t2-c-0",
                "tau2-airline",
                "airline",
                "c",
                "mia_li_3668",
                "Cancel reservation ABC123, your plans changed. Your user id is mia_li_3668.",
            ),
            ("t2-none", "tau2-airline", "airline", None, None, None),
        ]
    )
    keys = _keys(frame)
    # reference trajectories keep their own keys
    assert keys["tb-0-0"] == keys["tb-0-1"] == ("tau-bench-airline:0", False)
    assert keys["tb-1-0"] == ("tau-bench-airline:1", False)
    # the other dataset's tasks take the key of the matching reference task
    assert keys["t2-a-0"] == keys["t2-a-1"] == ("tau-bench-airline:1", True)
    assert keys["t2-c-0"] == ("tau-bench-airline:0", True)
    # no task_id: no key
    assert keys["t2-none"] == (None, False)


def test_does_not_align_when_user_ids_differ() -> None:
    same_text_other_user = ("t2-b-0", "tau2-airline", "airline", "b", "noah_muller_9847", CANCEL)
    keys = _keys(_frame(_reference_rows() + [same_text_other_user]))
    # identical instruction, but a different user: not the same task
    assert keys["t2-b-0"] == ("tau2-airline:b", False)
    # control: the same row with the reference task's user id is aligned
    same_user = same_text_other_user[:4] + ("mia_li_3668", CANCEL)
    assert _keys(_frame(_reference_rows() + [same_user]))["t2-b-0"] == ("tau-bench-airline:0", True)


def test_missing_user_id_does_not_block_alignment() -> None:
    row = ("t2-b-0", "tau2-airline", "airline", "b", None, BAG)
    assert _keys(_frame(_reference_rows() + [row]))["t2-b-0"] == ("tau-bench-airline:2", True)


def test_dissimilar_instruction_is_not_aligned() -> None:
    row = (
        "t2-z-0",
        "tau2-airline",
        "airline",
        "z",
        "sofia_kim_7287",
        "Ask about the pet policy for a cat travelling in the cabin.",
    )
    assert _keys(_frame(_reference_rows() + [row]))["t2-z-0"] == ("tau2-airline:z", False)


def test_assignment_is_one_to_one() -> None:
    # two tasks of the other dataset match reference task 0; only the closer one gets its key
    rows = _reference_rows() + [
        ("t2-p-0", "tau2-airline", "airline", "p", "mia_li_3668", CANCEL),
        (
            "t2-q-0",
            "tau2-airline",
            "airline",
            "q",
            "mia_li_3668",
            "Your user id is mia_li_3668. You want to cancel a reservation.",
        ),
    ]
    keys = _keys(_frame(rows))
    assert keys["t2-p-0"] == ("tau-bench-airline:0", True)
    assert keys["t2-q-0"] == ("tau2-airline:q", False)


def test_other_domains_are_not_aligned() -> None:
    row = ("retail-0", "tau2-retail", "retail", "r0", "mia_li_3668", CANCEL)
    assert _keys(_frame(_reference_rows() + [row]))["retail-0"] == ("tau2-retail:r0", False)

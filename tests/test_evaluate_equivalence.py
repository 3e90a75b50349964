"""The Analyzer's results on planted sets are exactly those recorded in
``tests/golden/analysis_equivalence.json`` (written by the per-feature loop that the vectorised
2x2 counting replaced): same rows, counts, odds ratios, p- and q-values, statuses.

The golden predates later feature kinds (``unretried_error``). A new kind adds tests to the
family, which moves every q-value (Benjamini-Hochberg) and ``runs_needed`` (which counts the
tests), so dropping its rows afterwards would not do: the Analyzer here derives only the kinds
the golden was written with (:data:`GOLDEN_KINDS`), and the comparison stays exact."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pipeline.analyze
from pipeline.analyze import Analyzer
from pipeline.ingest import Traces, ingest
from pipeline.synth import (
    PlantedConfig,
    SynthConfig,
    airline_domain,
    generate,
    generate_planted,
    write_jsonl,
)

GOLDEN = Path(__file__).parent / "golden" / "analysis_equivalence.json"

# The feature kinds pipeline.features derived when the golden was written.
GOLDEN_KINDS = (
    "tool_called",
    "tool_order",
    "write_arg",
    "unconfirmed_write",
    "tool_error",
    "repeated_call",
    "transfer",
    "turns",
    "termination",
)


def _traces(directory: Path, records: Any) -> Traces:
    return ingest([write_jsonl(directory / "runs.jsonl", records)])


CASES: dict[str, Callable[[Path], Traces]] = {
    "within_task_cmh": lambda d: _traces(d, generate(SynthConfig(seed=7))),
    "tasks_do_not_repeat_fisher": lambda d: _traces(
        d, generate(SynthConfig(n_tasks=200, trials=1, effect=-3.0, seed=3))
    ),
    "planted_rules": lambda d: _traces(
        d, generate_planted(PlantedConfig(n_trajectories=1000, seed=5))
    ),
    "two_agents_two_domains_clogit": lambda d: _traces(
        d,
        generate_planted(
            PlantedConfig(
                domains=(airline_domain(0.3), airline_domain(0.3, name="rail")),
                agents=("a", "b"),
                n_trajectories=160,
                trials=6,
                seed=2,
            )
        ),
    ),
}


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def results_records(traces: Traces) -> dict[str, Any]:
    """The Analyzer's results as JSON-ready records (non-finite floats as strings)."""
    analysis = Analyzer().run(traces)
    return {
        "results": [
            {k: _plain(v) for k, v in row.items()} for row in analysis.results.iter_rows(named=True)
        ],
        "untested": analysis.untested,
    }


@pytest.fixture
def golden_kinds_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the Analyzer's feature table hold only the kinds in :data:`GOLDEN_KINDS`."""
    original = pipeline.analyze.create_feature_table

    def create(con: Any, config: Any, name: str = "features") -> int:
        original(con, config, name)
        kinds = ", ".join(f"'{k}'" for k in GOLDEN_KINDS)
        con.execute(f"delete from {name} where kind not in ({kinds})")
        ((count,),) = con.execute(f"select count(*) from {name}").fetchall()
        return int(count)

    monkeypatch.setattr(pipeline.analyze, "create_feature_table", create)


@pytest.mark.parametrize("name", sorted(CASES))
def test_results_equal_the_recorded_ones(
    name: str, tmp_path: Path, golden_kinds_only: None
) -> None:
    expected = json.loads(GOLDEN.read_text())[name]
    assert {row["kind"] for row in expected["results"]} <= set(GOLDEN_KINDS)
    actual = json.loads(json.dumps(results_records(CASES[name](tmp_path))))
    assert actual["untested"] == expected["untested"]
    assert len(actual["results"]) == len(expected["results"])
    for got, want in zip(actual["results"], expected["results"], strict=True):
        assert got == want, (name, want["feature_id"])

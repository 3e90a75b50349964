"""The Analyzer's results on planted sets are exactly those recorded in
``tests/golden/analysis_equivalence.json`` (written by the per-feature loop that the vectorised
2x2 counting replaced): same rows, counts, odds ratios, p- and q-values, statuses."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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


@pytest.mark.parametrize("name", sorted(CASES))
def test_results_equal_the_recorded_ones(name: str, tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text())[name]
    actual = json.loads(json.dumps(results_records(CASES[name](tmp_path))))
    assert actual["untested"] == expected["untested"]
    assert len(actual["results"]) == len(expected["results"])
    for got, want in zip(actual["results"], expected["results"], strict=True):
        assert got == want, (name, want["feature_id"])

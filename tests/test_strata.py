"""How a namespace is stratified is a typed value (:class:`pipeline.analyze.Stratification`)
that code branches on; its sentence, stored in the evidence, is today's text exactly. The
Analysis is plain data: no open connection, and it saves and loads with its strata."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import pytest
from synth import PlantedConfig, generate_planted, write_jsonl

from pipeline.analyze import Analysis, Analyzer, StrataKind, Stratification
from pipeline.ingest import ingest

SENTENCES = [
    (
        Stratification(StrataKind.TASK, 200, 4, tasks=50),
        "task (50 tasks), adjusted for agent (4 agents)",
    ),
    (Stratification(StrataKind.TASK, 60, 1, tasks=30), "task (30 tasks)"),
    (
        Stratification(StrataKind.TASK, 60, 2, tasks=30, aligned=12),
        "task (30 tasks; 12 runs aligned across datasets by instruction), "
        "adjusted for agent (2 agents)",
    ),
    (Stratification(StrataKind.AGENT, 40, 3), "agent (3 agents); tasks do not repeat"),
    (Stratification(StrataKind.DOMAIN, 40, 1), "none finer than the domain; tasks do not repeat"),
    (
        Stratification(StrataKind.NOT_TESTED, 12, 1, outcome="success"),
        "not tested: all 12 labelled runs are successes, nothing to contrast",
    ),
    (
        Stratification(StrataKind.NOT_TESTED, 1, 1, outcome="failure"),
        "not tested: the only labelled run is a failure, nothing to contrast",
    ),
]


@pytest.mark.parametrize(("how", "sentence"), SENTENCES)
def test_the_sentence_is_made_from_the_value(how: Stratification, sentence: str) -> None:
    assert how.describe() == sentence
    assert str(how) == sentence
    assert Stratification.from_dict(how.to_dict()) == how


def test_code_branches_on_the_kind() -> None:
    by_task = Stratification(StrataKind.TASK, 200, 4, tasks=50)
    assert by_task.tested and by_task.by_task and by_task.adjusted_for_agent
    one_agent = Stratification(StrataKind.TASK, 60, 1, tasks=30)
    assert one_agent.by_task and not one_agent.adjusted_for_agent
    for kind in (StrataKind.AGENT, StrataKind.DOMAIN):
        how = Stratification(kind, 40, 3)
        assert how.tested and not how.by_task and not how.adjusted_for_agent
    assert not Stratification(StrataKind.NOT_TESTED, 5, 1, outcome="success").tested


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError):
        Stratification.from_dict({"kind": "tasks", "runs": 1, "agents": 1})


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    directory = tmp_path_factory.mktemp("planted")
    records = generate_planted(PlantedConfig(n_trajectories=200, seed=3))
    return Analyzer().run(ingest([write_jsonl(directory / "runs.jsonl", records)]))


def test_the_analysis_holds_no_connection(analysis: Analysis) -> None:
    for item in dataclasses.fields(analysis):
        assert not isinstance(getattr(analysis, item.name), duckdb.DuckDBPyConnection)
    assert analysis.feature_file is not None and analysis.feature_file.is_file()
    assert all(isinstance(how, Stratification) for how in analysis.strata.values())
    assert analysis.namespaces == {n: how.describe() for n, how in analysis.strata.items()}
    assert set(analysis.results["stratification"]) <= set(analysis.namespaces.values())


def test_save_and_load_keep_the_strata(analysis: Analysis, tmp_path: Path) -> None:
    analysis.save(tmp_path)
    loaded = Analysis.load(tmp_path)
    assert loaded.strata == analysis.strata
    assert loaded.untested == analysis.untested
    assert loaded.feature_file is None
    for name in ("results", "features", "units", "clusters"):
        assert getattr(loaded, name).equals(getattr(analysis, name)), name
    assert Analysis.load(tmp_path, pointers=False).features.height == 0

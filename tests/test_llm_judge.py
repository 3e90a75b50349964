"""The LLM judge (--llm-label) against the loopback OpenAI-compatible server: one call per
trajectory without an outcome, cached, within the budgets, verdicts applied in memory only and
marked in the evidence."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from llm_server import ScriptedLLM, default_skill, start_server
from synth import SynthConfig, generate, write_jsonl

from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.ingest import Traces
from pipeline.learn import LearnResult, learn
from pipeline.llm import LLMConfig, parse_verdict

_ID = re.compile(r'<trace_excerpt id="([^"]+)">')


@pytest.fixture(scope="module")
def traces_with_unknown(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A planted set where every 6th run lost its outcome; returns the file and the true
    outcome of each unlabelled run."""
    records = list(generate(SynthConfig(n_tasks=30, trials=4, seed=3)))
    hidden = {}
    for n, record in enumerate(records):
        if n % 6 == 0:
            hidden[record["id"]] = record.pop("outcome")
    path = tmp_path_factory.mktemp("judge") / "runs.jsonl"
    return write_jsonl(path, records), hidden


def judged_ids(server: ScriptedLLM) -> list[str]:
    """Trajectory ids of the judge requests the server received (retries included)."""
    out = []
    for body in server.requests:
        text = "\n".join(str(m.get("content") or "") for m in body["messages"])
        match = _ID.search(text)
        if match and "outcome, confidence and reason" not in text:
            out.append(match.group(1))
        elif match:
            out.append(match.group(1) + " (retry)")
    return out


class Judge:
    """A responder: the true outcome for judge requests (an invalid reply for ``bad`` ids),
    a well-formed skill for distillation requests."""

    def __init__(self, truth: dict[str, str], bad: frozenset[str] = frozenset()) -> None:
        self.truth = truth
        self.bad = bad

    def __call__(self, body: dict[str, Any]) -> str:
        text = "\n".join(str(m.get("content") or "") for m in body["messages"])
        match = _ID.search(text)
        if match is None:
            return default_skill(body)
        tid = match.group(1)
        if tid in self.bad:
            return "It looks fine to me."
        return json.dumps(
            {"outcome": self.truth[tid], "confidence": 0.8, "reason": "the tool call completed"}
        )


@pytest.fixture
def make_server() -> Iterator[Any]:
    started: list[ScriptedLLM] = []

    def make(responder: Any) -> ScriptedLLM:
        server = start_server(responder, hang_s=1.0)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def run(tmp: Path, path: Path, server: ScriptedLLM, **overrides: Any) -> LearnResult:
    rebuild = overrides.pop("rebuild", False)
    settings: dict[str, Any] = {
        "enabled": True,
        "model": "any",
        "base_url": server.base_url,
        "timeout_s": 2.0,
        "max_retries": 0,
        "backoff_s": 0.01,
        "label": True,
    }
    llm = LLMConfig(**(settings | overrides))
    config = Config(
        paths=(str(path),),
        data_dir=tmp / ".coach",
        skillbook_dir=tmp / "skillbook",
        out_dir=tmp / "prompts_out",
        llm=llm,
        rebuild=rebuild,
    )
    return learn(config)


def test_unknown_runs_are_labelled_once_each_and_cached(
    tmp_path: Path, traces_with_unknown: tuple[Path, dict[str, str]], make_server: Any
) -> None:
    path, hidden = traces_with_unknown
    server = make_server(Judge(hidden))
    result = run(tmp_path, path, server)
    sent = judged_ids(server)
    # one request per unlabelled run, and never one for a run that had an outcome
    assert sorted(sent) == sorted(hidden)
    labelled = result.summary()["llm"]["labelled"]
    expected = {label: list(hidden.values()).count(label) for label in set(hidden.values())}
    assert labelled["calls"] == len(hidden)
    assert labelled["cache_hits"] == 0
    assert labelled["labelled"] == len(hidden)
    assert labelled["by_label"] == expected

    # applied in memory: the analysed traces carry the verdicts and a feedback row each
    trajectories = pl.from_arrow(result.traces.trajectories)
    assert isinstance(trajectories, pl.DataFrame)
    judged = trajectories.filter(pl.col("outcome_source") == "llm_judge")
    assert dict(zip(judged["trajectory_id"], judged["outcome_label"], strict=True)) == hidden
    feedback = pl.from_arrow(result.traces.feedback)
    assert isinstance(feedback, pl.DataFrame)
    rows = feedback.filter(pl.col("name") == "llm_judge")
    assert rows.height == len(hidden)
    assert set(rows["source"]) == {"any"}
    assert set(rows["comment"]) == {"the tool call completed"}
    assert result.analysis.units.height == trajectories.height

    # the stored tables keep the labels as ingested
    stored = pl.from_arrow(Traces.load(tmp_path / ".coach" / "tables").trajectories)
    assert isinstance(stored, pl.DataFrame)
    unknown = stored.filter(pl.col("outcome_label") == "unknown")
    assert sorted(unknown["trajectory_id"]) == sorted(hidden)
    assert "llm_judge" not in set(stored["outcome_source"].drop_nulls())

    # a forced second full run answers every verdict from the cache
    before = len(judged_ids(server))
    again = run(tmp_path, path, server, rebuild=True)
    labelled = again.summary()["llm"]["labelled"]
    assert len(judged_ids(server)) == before
    assert (labelled["calls"], labelled["cache_hits"]) == (0, len(hidden))
    assert labelled["labelled"] == len(hidden)


def test_evidence_and_skillbook_mark_judged_runs(
    tmp_path: Path, traces_with_unknown: tuple[Path, dict[str, str]], make_server: Any
) -> None:
    path, hidden = traces_with_unknown
    result = run(tmp_path, path, make_server(Judge(hidden)))
    skills = list(result.skillbook.skills.values())
    assert skills, "the planted behaviour should give at least one skill"
    for skill in skills:
        if skill.evidence.get("kind") == "failure_cluster":
            continue
        # every run of the one namespace is in each contrast: all judged runs count
        assert skill.evidence["llm_judged"] == len(hidden)
    text = (tmp_path / "skillbook" / "SKILLBOOK.md").read_text(encoding="utf-8")
    assert f"{len(hidden)} of the {len(result.analysis.units)} runs labelled by an LLM judge" in (
        text
    )


def test_without_label_flag_nothing_is_judged(
    tmp_path: Path, traces_with_unknown: tuple[Path, dict[str, str]], make_server: Any
) -> None:
    path, hidden = traces_with_unknown
    server = make_server(Judge(hidden))
    result = run(tmp_path, path, server, label=False)
    assert judged_ids(server) == []
    assert "labelled" not in result.summary()["llm"]
    assert all("llm_judged" not in s.evidence for s in result.skillbook.skills.values())
    assert result.analysis.units.height == result.traces.counts["trajectories"] - len(hidden)


def test_budget_stops_labelling_and_the_rest_stay_unknown(
    tmp_path: Path, traces_with_unknown: tuple[Path, dict[str, str]], make_server: Any
) -> None:
    path, hidden = traces_with_unknown
    server = make_server(Judge(hidden))
    result = run(tmp_path, path, server, max_calls=3)
    summary = result.summary()
    labelled = summary["llm"]["labelled"]
    assert len(judged_ids(server)) == 3
    assert labelled["labelled"] == 3
    assert labelled["kept_unknown"] == {"budget": len(hidden) - 3}
    assert labelled["budget_reached"] == "max LLM calls (3)"
    # the budget is shared: distillation has nothing left
    assert summary["llm"]["usage"]["calls"] == 0
    assert len(server.requests) == 3
    assert summary["llm_calls"] == 3
    trajectories = pl.from_arrow(result.traces.trajectories)
    assert isinstance(trajectories, pl.DataFrame)
    assert (trajectories["outcome_label"] == "unknown").sum() == len(hidden) - 3


def test_invalid_reply_is_retried_once_then_stays_unknown(
    tmp_path: Path, traces_with_unknown: tuple[Path, dict[str, str]], make_server: Any
) -> None:
    path, hidden = traces_with_unknown
    bad = sorted(hidden)[0]
    server = make_server(Judge(hidden, frozenset({bad})))
    result = run(tmp_path, path, server)
    sent = judged_ids(server)
    assert sent.count(bad) == 1 and sent.count(bad + " (retry)") == 1
    labelled = result.summary()["llm"]["labelled"]
    assert labelled["kept_unknown"] == {"invalid": 1}
    assert labelled["labelled"] == len(hidden) - 1
    trajectories = pl.from_arrow(result.traces.trajectories)
    assert isinstance(trajectories, pl.DataFrame)
    row = trajectories.filter(pl.col("trajectory_id") == bad)
    assert row["outcome_label"].to_list() == ["unknown"]


def test_label_needs_llm() -> None:
    with pytest.raises(ConfigError, match="label needs enabled"):
        LLMConfig(label=True)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ('{"outcome": "partial", "confidence": 0.5, "reason": "half done"}', True),
        ('```json\n{"outcome": "failure", "confidence": 1, "reason": "x"}\n```', True),
        ('{"outcome": "won", "confidence": 0.5, "reason": "x"}', False),
        ('{"outcome": "success", "confidence": 1.5, "reason": "x"}', False),
        ('{"outcome": "success", "confidence": true, "reason": "x"}', False),
        ('{"outcome": "success", "confidence": 0.9}', False),
        ("success", False),
    ],
)
def test_parse_verdict(text: str, valid: bool) -> None:
    value, why = parse_verdict(text)
    assert (value is not None) == valid
    assert bool(why) != valid

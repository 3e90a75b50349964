"""The planted-rule generator: every rule shows up as the features that count as recovering it,
and the pipeline recovers strong rules and nothing on random labels."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from synth import (
    RULE_KINDS,
    DomainSpec,
    PlantedConfig,
    PlantedRule,
    TaskKind,
    airline_domain,
    generate_planted,
    rule_features,
    score_recovery,
    write_jsonl,
)

from pipeline.analyze import Analyzer, FeatureConfig, derive_features
from pipeline.extract import SkillExtractor
from pipeline.ingest import ingest
from pipeline.skillbook import Candidate


def _write(tmp_path: Path, config: PlantedConfig) -> Path:
    return write_jsonl(tmp_path / "planted.jsonl", generate_planted(config))


def test_generation_is_deterministic_and_sized() -> None:
    config = PlantedConfig(n_trajectories=123, trials=5, seed=4)
    first, second = list(generate_planted(config)), list(generate_planted(config))
    assert first == second
    assert len(first) == 123
    assert len({r["id"] for r in first}) == 123
    assert list(generate_planted(PlantedConfig(n_trajectories=123, seed=5))) != first


def test_each_planted_rule_is_exactly_its_features(tmp_path: Path) -> None:
    """For every rule, the runs that broke it (metadata.broken_rules) are the runs showing its
    defining feature, so 'recovered' is well-defined."""
    domain = airline_domain()
    path = _write(tmp_path, PlantedConfig(domains=(domain,), n_trajectories=600, seed=1))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    traces = ingest([path])
    features = derive_features(traces.connect(), FeatureConfig())

    def having(feature_id: str) -> set[str]:
        return set(features.filter(pl.col("feature_id") == feature_id)["trajectory_id"])

    def broke(kind: str) -> set[str]:
        return {r["id"] for r in records if kind in r["metadata"]["broken_rules"]}

    def of_kind(write: str) -> set[str]:
        return {r["id"] for r in records if r["metadata"]["task_type"] == write}

    rules = {r.kind: r for r in domain.rules}
    assert set(rules) == set(RULE_KINDS)
    for kind in RULE_KINDS:
        assert broke(kind), kind
        assert rule_features(rules[kind], domain), kind
    assert having("unconfirmed_write:cancel_reservation") == broke("missing_confirmation")
    assert having("write_arg:book_flight.cabin=Economy Class") == broke("wrong_arg")
    assert of_kind("update_reservation") - having(
        "tool_order:get_reservation_details->update_reservation"
    ) == broke("wrong_order")
    signature = next(f for f in rule_features(rules["no_retry"], domain) if "tool_error" in f)
    unretried = having(signature) - having("repeated_call:search_flights")
    assert unretried == broke("no_retry")
    assert having("transfer:transfer_to_human_agents") == broke("needless_transfer")
    # every feature id the mapping names exists in the data
    for rule in domain.rules:
        assert rule_features(rule, domain) <= set(features["feature_id"]), rule.kind


def test_domains_users_and_agents_are_configurable(tmp_path: Path) -> None:
    shop = DomainSpec(
        name="shop",
        kinds=(TaskKind("refund_order", "get_order", (("method", ("card", "voucher")),)),),
        rules=(PlantedRule("missing_confirmation", "refund_order", 0.3, 0.3),),
        noise_tools=("get_store_hours",),
    )
    config = PlantedConfig(
        domains=(airline_domain(), shop),
        n_trajectories=80,
        trials=4,
        n_users=3,
        agents=("a", "b"),
    )
    records = list(generate_planted(config))
    meta = [r["metadata"] for r in records]
    assert {m["domain"] for m in meta} == {"airline", "shop"}
    assert {m["agent"] for m in meta} == {"a", "b"}
    assert len({(m["domain"], m["user_id"]) for m in meta}) <= 6
    assert {m["task_type"] for m in meta if m["domain"] == "shop"} == {"refund_order"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "typo", "tool": "x"}, "unknown rule kind"),
        ({"kind": "wrong_arg", "tool": "x"}, "needs arg"),
        ({"kind": "wrong_order", "tool": "x"}, "needs before"),
        ({"kind": "missing_confirmation", "tool": "x", "rate": 2.0}, "rate"),
    ],
)
def test_bad_rules_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlantedRule(**kwargs)  # type: ignore[arg-type]


def test_strong_rules_are_recovered_without_false_positives(tmp_path: Path) -> None:
    domain = airline_domain(effect=0.4)
    path = _write(tmp_path, PlantedConfig(domains=(domain,), n_trajectories=1200, seed=0))
    candidates = SkillExtractor().run(Analyzer().run(ingest([path])))
    recovery = score_recovery(candidates, [domain])
    assert recovery.recall == 1.0
    assert recovery.precision == 1.0
    assert {r["kind"] for r in recovery.rules if r["recovered"]} == set(RULE_KINDS)


def test_random_labels_give_no_active_skill(tmp_path: Path) -> None:
    path = _write(tmp_path, PlantedConfig(n_trajectories=1200, random_labels=True, seed=2))
    candidates = SkillExtractor().run(Analyzer().run(ingest([path])))
    assert [c.pattern_id for c in candidates if c.significant] == []


def test_score_recovery_counts_mirror_features_and_false_positives() -> None:
    domain = airline_domain()

    def candidate(pattern: str, significant: bool = True) -> Candidate:
        return Candidate(pattern, pattern, "domain:airline", "s", "i", significant, {})

    recovery = score_recovery(
        [
            candidate("write_arg:book_flight.cabin=economy"),  # the mirror image of wrong_arg
            candidate("tool_called:get_weather"),  # noise: a false positive
            candidate("unconfirmed_write:cancel_reservation", significant=False),  # not active
        ],
        [domain],
    )
    assert recovery.precision == 0.5
    assert recovery.recall == 1 / 5
    assert recovery.false_positives == [("domain:airline", "tool_called:get_weather")]
    assert score_recovery([], [domain]).precision is None

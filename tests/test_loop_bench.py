"""The closed-loop benchmark's simulator (``bench/loop_sim.py``, ``bench/loop.py``), its pure
parts only: one night played under a given manifest (assignment, compliance, recorded
versions, unique tasks, times within the night) and what a skill is to the simulation. The
benchmark itself (``make loop``) runs coach night after night and is never a timed test."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from loop import play_night  # noqa: E402
from loop_arms import assignment_point, manifest_arms  # noqa: E402
from loop_sim import (  # noqa: E402
    DAY,
    EPOCH,
    SimConfig,
    Told,
    behaviour,
    classify_skill,
    draw_requests,
    loop_domains,
    told_by,
)
from synth import rule_features  # noqa: E402

NIGHT = 3


def _skill(skill_id: str, namespace: str, pattern: str, direction: str) -> dict[str, Any]:
    return {
        "id": skill_id,
        "namespace": namespace,
        "section": "procedures",
        "status": "proposed",
        "instruction": f"do {pattern}",
        "source": {"method": "rule", "pattern_id": pattern, "direction": direction},
        "evidence": {},
    }


@pytest.fixture
def night(tmp_path: Path) -> dict[str, Any]:
    """One night of 600 runs: the retail namespace runs an experiment whose candidate arm holds
    the skill of its missing-confirmation rule and its decoy; the others run their control."""
    config = SimConfig(runs_per_night=600, n_users=400)
    retail = next(d for d in config.domains if d.spec.name == "retail")
    rule = next(r for r in retail.spec.rules if r.kind == "missing_confirmation")
    skills = {
        "sk-rule": _skill(
            "sk-rule", retail.namespace, sorted(rule_features(rule, retail.spec))[0], "harmful"
        ),
        "sk-decoy": _skill("sk-decoy", retail.namespace, f"tool_called:{retail.decoy}", "helpful"),
    }
    (tmp_path / "control.md").write_text("Base prompt.\n", encoding="utf-8")
    (tmp_path / "candidate.md").write_text("Base prompt.\n\n- two lines\n", encoding="utf-8")
    manifest: dict[str, Any] = {
        "namespaces": {
            d.namespace: {
                "assignment_id": None,
                "experiment": None,
                "arms": [
                    {
                        "arm": "control",
                        "file": "control.md",
                        "prompt_version": f"pv-control-{d.spec.name}",
                        "skill_ids": [],
                        "share": 1.0,
                        "range": [0.0, 1.0],
                    }
                ],
            }
            for d in config.domains
        }
    }
    manifest["namespaces"][retail.namespace] = {
        "assignment_id": "ex-test",
        "experiment": {"id": "ex-test"},
        "arms": [
            {
                "arm": "candidate",
                "file": "candidate.md",
                "prompt_version": "pv-candidate",
                "skill_ids": ["sk-rule", "sk-decoy"],
                "share": 0.5,
                "range": [0.0, 0.5],
            },
            {
                "arm": "control",
                "file": "control.md",
                "prompt_version": "pv-control-retail",
                "skill_ids": [],
                "share": 0.5,
                "range": [0.5, 1.0],
            },
        ],
    }
    arms = manifest_arms(manifest, tmp_path)
    records, facts = play_night(config, NIGHT, arms, skills, manifest)
    return {
        "config": config,
        "retail": retail,
        "rule_index": retail.spec.rules.index(rule),
        "skills": skills,
        "records": records,
        "facts": facts,
        "texts": {a.prompt_version: a.text for ns in arms.values() for a in ns},
    }


def test_a_night_runs_unique_tasks_within_the_night(night: dict[str, Any]) -> None:
    records = night["records"]
    assert len(records) == 600
    assert len({r["id"] for r in records}) == 600
    assert len({r["metadata"]["task_id"] for r in records}) == 600
    start, end = EPOCH + (NIGHT - 1) * DAY, EPOCH + NIGHT * DAY
    for record in records:
        for message in record["messages"]:
            at = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00")).timestamp()
            assert start <= at < end
        assert record["metadata"]["user_id"]
    assert {r["metadata"]["domain"] for r in records} == {"airline", "retail", "telecom"}
    assert len({r["metadata"]["agent"] for r in records}) == 4


def test_units_get_the_arm_of_their_assignment_point(night: dict[str, Any]) -> None:
    for record, fact in zip(night["records"], night["facts"], strict=True):
        if fact["namespace"] != "domain:retail":
            assert fact["arm"] == "control"
            continue
        point = assignment_point("domain:retail", fact["user"], "ex-test")
        assert fact["arm"] == ("candidate" if point < 0.5 else "control")
        # the system message is the arm's prompt text, exactly
        assert record["messages"][0]["content"] == night["texts"][fact["prompt_version"]]
    arms = [f["arm"] for f in night["facts"] if f["namespace"] == "domain:retail"]
    assert 0.35 < arms.count("candidate") / len(arms) < 0.65


def test_the_stated_share_of_runs_records_its_version(night: dict[str, Any]) -> None:
    versioned = [r for r in night["records"] if "prompt_version" in r["metadata"]]
    assert 0.62 < len(versioned) / len(night["records"]) < 0.78
    facts = {f["id"]: f for f in night["facts"]}
    for record in versioned:
        assert record["metadata"]["prompt_version"] == facts[record["id"]]["prompt_version"]


def test_agents_follow_the_prompt_with_compliance(night: dict[str, Any]) -> None:
    config, retail, index = night["config"], night["retail"], night["rule_index"]
    told = told_by(night["skills"].values(), retail)
    assert told == Told(frozenset({index}), decoy=True)
    requests = [r for r in draw_requests(config, NIGHT) if r.domain is retail]
    kept = natural = decoys = 0
    for request in requests:
        broken, decoy = behaviour(request, told)
        untold, untold_decoy = behaviour(request, Told())
        assert untold == request.natural and untold_decoy == request.decoy_natural
        if request.natural[index]:
            natural += 1
            kept += not broken[index]
        decoys += decoy and not request.decoy_natural
        # a prompt changes only the rules it names
        assert all(broken[i] == request.natural[i] for i in range(len(broken)) if i != index)
    assert natural > 30
    assert 0.65 < kept / natural < 0.95  # compliance 0.8
    not_natural = sum(not r.decoy_natural for r in requests)
    assert 0.65 < decoys / not_natural < 0.95
    # in the played night, candidate-arm runs break the rule less often than control runs
    by_arm: dict[str, list[bool]] = {}
    for fact in night["facts"]:
        if fact["namespace"] == "domain:retail":
            by_arm.setdefault(fact["arm"], []).append("missing_confirmation" in fact["broken"])
    assert sum(by_arm["candidate"]) / len(by_arm["candidate"]) < sum(by_arm["control"]) / len(
        by_arm["control"]
    )


def test_skills_are_classified_by_their_pattern() -> None:
    domains = loop_domains()
    airline = domains[0]
    transfer = next(r for r in airline.spec.rules if r.kind == "needless_transfer")
    for feature in rule_features(transfer, airline.spec):
        skill = _skill("a", airline.namespace, feature, "harmful")
        assert classify_skill(skill, domains) == "rule:airline:needless_transfer"
    decoy = f"tool_called:{airline.decoy}"
    assert classify_skill(_skill("b", airline.namespace, decoy, "helpful"), domains) == "decoy"
    assert classify_skill(_skill("c", airline.namespace, decoy, "harmful"), domains) == (
        "anti-decoy"
    )
    noise = _skill("d", airline.namespace, "tool_called:get_weather", "harmful")
    assert classify_skill(noise, domains) == "noise"
    # a rule's feature in the direction that breaks it is a rule turned around
    order = next(r for r in domains[2].spec.rules if r.kind == "wrong_order")
    (feature,) = rule_features(order, domains[2].spec)
    assert classify_skill(_skill("f", domains[2].namespace, feature, "helpful"), domains) == (
        "rule:telecom:wrong_order"
    )
    assert classify_skill(_skill("g", domains[2].namespace, feature, "harmful"), domains) == (
        "anti-rule:telecom:wrong_order"
    )
    # a rule's feature in another domain's namespace recovers nothing there
    other = _skill("e", "domain:retail", "transfer:transfer_to_human_agents", "harmful")
    assert classify_skill(other, domains) == "noise"

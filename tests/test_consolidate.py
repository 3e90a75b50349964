"""Consolidation: several views of one behaviour become one skill (pipeline/consolidate.py),
the Skillbook keeps its ids when views are consolidated, and on planted data no two active
skills of a namespace share 80% of their supporting trajectories."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import polars as pl
import pytest
from synth import PlantedConfig, airline_domain, generate_planted, write_jsonl

from pipeline.analyze import Analyzer, AnalyzerConfig
from pipeline.analyze.overlap import OVERLAP_SCHEMA, containment, jaccard
from pipeline.consolidate import action_of, consolidate
from pipeline.extract import ExtractorConfig, SkillExtractor
from pipeline.ingest import ingest
from pipeline.skillbook import Candidate, MergePolicy, Skillbook, skill_id

NS = "domain:airline"


def cand(feature: str, n_with: int, p: float, *, direction: str = "harmful", sig: bool = True):
    return Candidate(
        id=skill_id(NS, feature),
        pattern_id=feature,
        namespace=NS,
        section="pitfalls",
        instruction=f"about {feature}",
        significant=sig,
        evidence={"n_with": n_with, "p_value": p, "odds_ratio": 0.3, "direction": direction},
    )


def overlaps(*rows: tuple[str, str, int]) -> pl.DataFrame:
    data = [(NS, *sorted((a, b)), n) for a, b, n in rows]
    return pl.DataFrame(data, schema=OVERLAP_SCHEMA, orient="row")


FEATURES = {
    (NS, "tool_called:update"): ("tool_called", "update"),
    (NS, "tool_order:get_user->update"): ("tool_order", "update"),
    (NS, "tool_order:search->update"): ("tool_order", "update"),
    (NS, "write_arg:update.cabin=business"): ("write_arg", "update.cabin"),
    (NS, "tool_called:search"): ("tool_called", "search"),
    (NS, "transfer:transfer_to_human"): ("transfer", "transfer_to_human"),
    (NS, "tool_called:transfer_to_human"): ("tool_called", "transfer_to_human"),
}


def test_overlap_measures():
    assert jaccard(10, 10, 10) == 1.0
    assert jaccard(10, 30, 10) == pytest.approx(1 / 3)
    assert containment(10, 30, 10) == 1.0
    assert jaccard(0, 0, 0) == containment(0, 5, 0) == 0.0
    assert action_of("write_arg", "update.cabin") == "update"
    assert action_of("tool_order", "update") == "update"
    assert action_of("turns", "user turns") == "turns:user turns"


def test_views_of_one_action_become_one_skill_with_corroborating_patterns():
    cands = [
        cand("tool_called:update", 100, 0.001),
        cand("tool_order:get_user->update", 60, 0.01),
        cand("tool_order:search->update", 30, 0.02),  # nested, same action
        cand("tool_called:search", 95, 0.03),  # another action, overlap 0.5: kept apart
    ]
    out = consolidate(
        cands,
        overlaps(
            ("tool_called:update", "tool_order:get_user->update", 60),
            ("tool_called:update", "tool_order:search->update", 30),
            ("tool_called:update", "tool_called:search", 65),
            ("tool_order:get_user->update", "tool_order:search->update", 5),
        ),
        FEATURES,
    )
    assert sorted(c.pattern_id for c in out) == ["tool_called:search", "tool_called:update"]
    head = next(c for c in out if c.pattern_id == "tool_called:update")
    patterns = head.evidence["patterns"]
    assert [p["pattern_id"] for p in patterns] == [
        "tool_order:get_user->update",
        "tool_order:search->update",
    ]
    assert patterns[0]["overlap"] == 0.6 and patterns[1]["overlap"] == 0.3
    assert "patterns" not in next(c for c in out if c.pattern_id == "tool_called:search").evidence


def test_same_runs_through_two_names_merge_across_sections_and_kinds():
    a = cand("transfer:transfer_to_human", 50, 0.002)
    b = cand("tool_called:transfer_to_human", 50, 0.002)
    b = Candidate(**{**b.__dict__, "section": "escalation"})
    out = consolidate(
        [a, b],
        overlaps(("transfer:transfer_to_human", "tool_called:transfer_to_human", 50)),
        FEATURES,
    )
    assert len(out) == 1
    # the same runs: the more specific kind of behaviour is the headline
    assert out[0].pattern_id == "transfer:transfer_to_human"


def test_opposite_directions_and_low_overlap_stay_apart():
    out = consolidate(
        [
            cand("tool_called:update", 100, 0.001),
            cand("write_arg:update.cabin=business", 40, 0.01, direction="helpful"),
            cand("tool_called:search", 90, 0.01),
        ],
        overlaps(
            ("tool_called:update", "write_arg:update.cabin=business", 40),
            ("tool_called:update", "tool_called:search", 79),
        ),
        FEATURES,
    )
    assert len(out) == 3


def test_values_of_one_argument_are_one_behaviour():
    feats = {
        **FEATURES,
        (NS, "write_arg:book.insurance=yes"): ("write_arg", "book.insurance"),
        (NS, "write_arg:book.insurance=no"): ("write_arg", "book.insurance"),
        (NS, "write_arg:book.cabin=basic"): ("write_arg", "book.cabin"),
    }
    out = consolidate(
        [
            cand("write_arg:book.insurance=yes", 40, 0.01),
            cand("write_arg:book.insurance=no", 60, 0.02, direction="helpful"),
            cand("write_arg:book.cabin=basic", 30, 0.03, direction="helpful"),
        ],
        overlaps(),
        feats,
    )
    assert sorted(c.pattern_id for c in out) == [
        "write_arg:book.cabin=basic",
        "write_arg:book.insurance=yes",
    ]


def test_significant_pattern_is_the_headline():
    out = consolidate(
        [
            cand("tool_called:update", 100, 0.0001, sig=False),
            cand("write_arg:update.cabin=business", 95, 0.01),
        ],
        overlaps(("tool_called:update", "write_arg:update.cabin=business", 95)),
        FEATURES,
    )
    assert [c.pattern_id for c in out] == ["write_arg:update.cabin=business"]
    assert out[0].significant


def test_threshold_is_checked():
    with pytest.raises(ValueError, match="not in"):
        consolidate([], overlaps(), FEATURES, threshold=0)


def test_existing_skill_absorbs_the_new_view_and_keeps_its_id():
    book = Skillbook()
    policy = MergePolicy(mode="auto")
    old = cand("tool_order:get_user->update", 60, 0.01)
    other = cand("tool_order:search->update", 30, 0.02)
    book.merge([old, other], policy=policy, now="2026-01-01T00:00:00Z")
    assert {s.id for s in book.skills.values() if s.status == "active"} == {old.id, other.id}
    head = consolidate(
        [cand("tool_called:update", 100, 0.001), old, other],
        overlaps(
            ("tool_called:update", "tool_order:get_user->update", 60),
            ("tool_called:update", "tool_order:search->update", 30),
        ),
        FEATURES,
    )
    assert len(head) == 1
    book.merge(head, policy=policy, now="2026-01-02T00:00:00Z")
    live = {s.id for s in book.skills.values() if s.status == "active"}
    assert live == {old.id}, "the oldest active member keeps the consolidated skill"
    assert skill_id(NS, "tool_called:update") not in book.skills, "no new id appears"
    kept = book.skills[old.id]
    assert kept.evidence["patterns"][0]["pattern_id"] == "tool_order:get_user->update"
    retired = book.skills[other.id]
    assert retired.status == "retired" and retired.source["merged_into"] == old.id
    # a later run with the same group changes nothing about which id holds it
    book.merge(head, policy=policy, now="2026-01-03T00:00:00Z")
    assert {s.id for s in book.skills.values() if s.status == "active"} == {old.id}
    assert book.skills[other.id].status == "retired"


def _supporting(con: duckdb.DuckDBPyConnection, feature_id: str, ids: list[str]) -> set[str]:
    rows = con.execute(
        "select distinct trajectory_id from features where feature_id = ?", [feature_id]
    ).fetchall()
    return {r[0] for r in rows} & set(ids)


@pytest.fixture(scope="module")
def planted_analysis(tmp_path_factory: pytest.TempPathFactory):
    """2,000 planted airline runs, five rules at 20 points: every rule shows through several
    features (tool_called, tool_order, write_arg, unconfirmed_write views of the same runs)."""
    work: Path = tmp_path_factory.mktemp("planted")
    config = PlantedConfig(domains=(airline_domain(effect=0.2),), n_trajectories=2000, seed=1)
    path = write_jsonl(work / "planted.jsonl", generate_planted(config))
    return Analyzer(AnalyzerConfig()).run(ingest([path]))


def _shared_pairs(analysis, candidates) -> list[tuple[str, str, float, float]]:
    assert analysis.feature_file is not None
    active = [c for c in candidates if c.significant]
    by_ns: dict[str, list[Candidate]] = {}
    for c in active:
        by_ns.setdefault(c.namespace, []).append(c)
    found = []
    con = duckdb.connect()
    con.execute(f"create view features as select * from read_parquet('{analysis.feature_file}')")
    for namespace, group in by_ns.items():
        ids = analysis.units.filter(pl.col("namespace") == namespace)["trajectory_id"].to_list()
        sets = {c.pattern_id: _supporting(con, c.pattern_id, ids) for c in group}
        for a, b in itertools.combinations(sorted(sets), 2):
            both = len(sets[a] & sets[b])
            j = jaccard(len(sets[a]), len(sets[b]), both)
            share = both / max(1, min(len(sets[a]), len(sets[b])))
            found.append((a, b, j, share))
    return found


def test_no_two_active_skills_share_most_of_their_runs_on_planted_data(planted_analysis):
    before = SkillExtractor(ExtractorConfig(consolidate=None)).run(planted_analysis)
    after = SkillExtractor().run(planted_analysis)
    raw = _shared_pairs(planted_analysis, before)
    assert any(j >= 0.8 for *_, j, _ in raw), "the planted set has several views of one rule"
    pairs = _shared_pairs(planted_analysis, after)
    heavy = [(a, b, j) for a, b, j, _ in pairs if j >= 0.8]
    assert not heavy, heavy
    nested_same_action = [
        (a, b, share)
        for a, b, _, share in pairs
        if share >= 0.8
        and action_of(a.split(":")[0], _subject(a)) == action_of(b.split(":")[0], _subject(b))
    ]
    assert not nested_same_action, nested_same_action
    assert sum(c.significant for c in after) < sum(c.significant for c in before)
    # every pattern of the earlier candidates is still accounted for, as a headline or in one
    kept = {c.pattern_id for c in after} | {
        p["pattern_id"] for c in after for p in c.evidence.get("patterns", [])
    }
    assert kept == {c.pattern_id for c in before}


def _subject(feature_id: str) -> str:
    kind, _, rest = feature_id.partition(":")
    if kind == "tool_order":
        return rest.split("->")[-1]
    if kind == "write_arg":
        return rest.partition("=")[0]
    if kind == "tool_error":
        return rest.partition(":")[0]
    return rest

"""The parts of a prompt experiment that need no traces: the factorial design, each skill's
effect on it, prompt versions and their matching, the manifest and a unit's arm, and the
Skillbook's refusal of two experiments on one namespace."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.errors import InputError, SkillbookError
from pipeline.experiment import (
    ArmCounts,
    VersionHistory,
    assign_unit,
    design_arms,
    load_manifest,
    match_exposures,
    prompt_version,
    seal_manifest,
    skill_effect,
)
from pipeline.skillbook import Skill, Skillbook


@pytest.mark.parametrize("k", range(1, 8))
def test_the_design_balances_every_skill_against_every_other(k: int) -> None:
    skills = [f"s{i}" for i in range(k)]
    arms = design_arms(skills)
    assert len(arms) >= k + 1 and len(arms) & (len(arms) - 1) == 0
    assert arms[0] == () and len(set(arms)) == len(arms)  # control first, every arm distinct
    half = len(arms) // 2
    for skill in skills:
        assert sum(skill in arm for arm in arms) == half
    for a, b in itertools.combinations(skills, 2):
        # orthogonal columns: each pair of skills appears together in a quarter of the arms
        assert sum(a in arm and b in arm for arm in arms) == len(arms) // 4


def test_one_skill_gives_control_and_candidate() -> None:
    assert design_arms(["s"]) == [(), ("s",)]
    with pytest.raises(ValueError, match="twice"):
        design_arms(["s", "s"])


def test_skill_effect_by_hand() -> None:
    arms = {"control": (), "candidate": ("s",)}
    counts = {
        "a": {"control": ArmCounts(100, 50), "candidate": ArmCounts(100, 70)},
        "b": {"control": ArmCounts(300, 60), "candidate": ArmCounts(100, 30)},
        "c": {"control": ArmCounts(10, 5)},  # saw one arm only: left out
    }
    d, variance, n_with, n_without = skill_effect(counts, arms, "s")
    # agent a: +0.20 over 200 runs; agent b: 0.30 - 0.20 = +0.10 over 400 runs
    assert d == pytest.approx((200 * 0.20 + 400 * 0.10) / 600)
    pa, pb = 120 / 200, 90 / 400
    expected = (
        200**2 * pa * (1 - pa) * (1 / 100 + 1 / 100) + 400**2 * pb * (1 - pb) * (1 / 100 + 1 / 300)
    ) / 600**2
    assert variance == pytest.approx(expected)
    assert (n_with, n_without) == (200, 400)


def test_the_factorial_estimate_is_free_of_the_other_skills() -> None:
    # success rate 0.5 + 0.2 (s1) - 0.1 (s2) + 0.0 (s3), the same in every arm's expectation
    skills = ["s1", "s2", "s3"]
    effect = {"s1": 0.2, "s2": -0.1, "s3": 0.0}
    design = design_arms(skills)
    arms = {f"arm{i}": added for i, added in enumerate(design)}
    n = [400, 100, 100, 100]  # unequal shares: control larger
    counts = {
        "a": {
            name: ArmCounts(n[i], round(n[i] * (0.5 + sum(effect[s] for s in added))))
            for i, (name, added) in enumerate(arms.items())
        }
    }
    for skill, true in effect.items():
        assert skill_effect(counts, arms, skill)[0] == pytest.approx(true)


def test_a_prompt_version_ignores_line_ends_and_trailing_space() -> None:
    text = "You help travellers.\n\n## Procedures\n- Confirm before booking.\n"
    assert prompt_version(text) == prompt_version(text.replace("\n", "\r\n") + "  \n\n")
    assert prompt_version(text) != prompt_version(text.replace("before", "after"))
    assert prompt_version(text).startswith("pv-") and len(prompt_version(text)) == 19


def _history(tmp_path: Path) -> VersionHistory:
    history = VersionHistory.load(tmp_path)
    control = "Base.\n- Confirm before booking."
    candidate = "Base.\n- Confirm before booking.\n- Look up the user first."
    for arm, text, lines in [
        ("control", control, ["Confirm before booking."]),
        ("candidate", candidate, ["Confirm before booking.", "Look up the user first."]),
    ]:
        history.add(
            {
                "prompt_version": prompt_version(text),
                "namespace": "domain:airline",
                "arm": arm,
                "assignment_id": "ex-1",
                "skill_ids": [],
                "lines": lines,
                "aliases": ["langfuse:airline:7"] if arm == "candidate" else [],
            }
        )
    history.save()
    return VersionHistory.load(tmp_path)


def test_trajectories_are_matched_by_version_then_prompt_then_lines(tmp_path: Path) -> None:
    history = _history(tmp_path)
    control = "Base.\n- Confirm before booking."
    candidate = "Base.\n- Confirm before booking.\n- Look up the user first."
    row = {"domain": "airline", "agent_name": "a"}
    rows = [
        {
            **row,
            "trajectory_id": "1",
            "prompt_version": prompt_version(candidate),
            "system_prompt": None,
        },
        {
            **row,
            "trajectory_id": "2",
            "prompt_version": "langfuse:airline:7",
            "system_prompt": None,
        },
        {**row, "trajectory_id": "3", "prompt_version": None, "system_prompt": control + "\r\n"},
        {
            **row,
            "trajectory_id": "4",
            "prompt_version": None,
            "system_prompt": "Today is Monday.\n" + candidate,
        },
        {**row, "trajectory_id": "5", "prompt_version": None, "system_prompt": "Unrelated."},
        {
            **row,
            "trajectory_id": "6",
            "prompt_version": "pv-0000000000000000",
            "system_prompt": None,
        },
        {
            **row,
            "trajectory_id": "7",
            "prompt_version": prompt_version(candidate),
            "system_prompt": control,
        },
        {**row, "trajectory_id": "8", "prompt_version": None, "system_prompt": None, "count": 3},
    ]
    found, report = match_exposures(rows, history)
    methods = [(e.trajectory_id, e.method) for e in found]
    assert methods == [
        ("1", "recorded"),
        ("2", "recorded"),
        ("3", "system_prompt"),
        ("4", "skill_lines"),
        ("5", "unmatched"),
        ("6", "unmatched"),
        ("7", "unmatched"),
        ("8", "unmatched"),
    ]
    assert found[1].prompt_version == prompt_version(candidate)  # an alias resolves
    assert found[3].prompt_version == prompt_version(candidate)  # the most lines win
    assert report.methods == {"recorded": 2, "system_prompt": 1, "skill_lines": 1, "unmatched": 6}
    assert report.recorded_unknown == 1 and report.mismatched == 1
    assert report.unmatched_reasons == {
        "no version and no system prompt": 3,
        "recorded version unknown": 1,
        "system prompt matches no rendered version": 1,
        f"recorded version {prompt_version(candidate)} but the system prompt is "
        f"{prompt_version(control)}": 1,
    }


def test_a_damaged_version_history_is_an_error_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "prompt_versions.jsonl").write_text('{"prompt_version": "pv-1"}\nnot json\n')
    with pytest.raises(InputError, match="line 2"):
        VersionHistory.load(tmp_path)


def _manifest() -> dict:
    return seal_manifest(
        {
            "skillbook_version": 3,
            "template_sha256": "0" * 64,
            "prompts": {},
            "namespaces": {
                "domain:airline": {
                    "assignment_id": "ex-abc",
                    "experiment": {"id": "ex-abc"},
                    "arms": [
                        {
                            "arm": "control",
                            "file": "domain-airline.md",
                            "prompt_version": "pv-c",
                            "skill_ids": [],
                            "share": 0.7,
                            "range": [0.3, 1.0],
                        },
                        {
                            "arm": "candidate",
                            "file": "domain-airline.candidate.md",
                            "prompt_version": "pv-t",
                            "skill_ids": ["sk-1"],
                            "share": 0.3,
                            "range": [0.0, 0.3],
                        },
                    ],
                },
                "global": {
                    "assignment_id": None,
                    "experiment": None,
                    "arms": [
                        {
                            "arm": "control",
                            "file": "global.md",
                            "prompt_version": "pv-g",
                            "skill_ids": [],
                            "share": 1.0,
                            "range": [0.0, 1.0],
                        }
                    ],
                },
            },
        }
    )


def test_units_are_assigned_by_their_share_and_always_the_same(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(_manifest(), indent=2))
    manifest = load_manifest(path)
    arms = Counter(assign_unit(manifest, "domain:airline", f"user-{i}").arm for i in range(20_000))
    assert arms["candidate"] / 20_000 == pytest.approx(0.3, abs=0.015)
    first = assign_unit(manifest, "domain:airline", "user-42")
    assert assign_unit(manifest, "domain:airline", "user-42") == first
    assert assign_unit(manifest, "global", "user-42").arm == "control"
    with pytest.raises(InputError, match="no prompt for namespace"):
        assign_unit(manifest, "domain:retail", "user-42")


def test_a_hand_edited_or_future_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    edited = _manifest()
    edited["namespaces"]["domain:airline"]["arms"][1]["share"] = 0.9
    path.write_text(json.dumps(edited))
    with pytest.raises(InputError, match="changed after coach wrote it"):
        load_manifest(path)
    path.write_text(json.dumps({**_manifest(), "format_version": 99}))
    with pytest.raises(InputError, match="newer than this coach"):
        load_manifest(path)
    path.write_text(json.dumps({"prompts": {}}))
    with pytest.raises(InputError, match="render it again"):
        load_manifest(path)


def test_two_running_experiments_on_one_namespace_are_refused(tmp_path: Path) -> None:
    running = {"namespace": "domain:airline", "status": "running", "skill_ids": [], "arms": []}
    document = {
        "format_version": 3,
        "version": 2,
        "experiments": [{**running, "id": "ex-1"}, {**running, "id": "ex-2"}],
        "skills": [],
    }
    with pytest.raises(SkillbookError, match="two experiments are running on domain:airline"):
        Skillbook.from_dict(document)
    document["experiments"][1]["namespace"] = "domain:retail"
    assert len(Skillbook.from_dict(document).experiments) == 2


@pytest.mark.parametrize(
    ("pattern", "key"),
    [
        ("transfer:transfer_to_human_agents", "transfer_to_human_agents call"),
        ("tool_called:transfer_to_human_agents", "transfer_to_human_agents call"),
        ("unretried_error:search", "search error"),
        ("tool_error:search:error: try again", "search error"),
        ("write_arg:book.cabin=Economy Class", "book arg cabin"),
        ("write_arg:book.cabin=economy", "book arg cabin"),
        ("unconfirmed_write:book", "book unconfirmed_write"),
        ("tool_order:get_user->book", "book after get_user"),
        ("", None),
    ],
)
def test_twins_share_a_behaviour_key(pattern: str, key: str | None) -> None:
    from pipeline.experiment.lifecycle import behaviour_key

    skill = Skill(
        "sk-1", "proposed", "pitfalls", "global", "x", {}, {"pattern_id": pattern}, None, None
    )
    assert behaviour_key(skill) == key


def _proposed(skill_id: str, namespace: str = "domain:x", **extra: object) -> Skill:
    source = {"pattern_id": f"tool_called:{skill_id}"}
    return Skill(
        skill_id,
        "proposed",
        "procedures",
        namespace,
        f"Do {skill_id}.",
        {},
        source,
        None,
        None,
        **extra,
    )  # type: ignore[arg-type]


def test_each_earlier_experiment_counts_once() -> None:
    from pipeline.experiment import ExperimentSettings
    from pipeline.experiment.looks import _evidence

    own = [(0.02, 4e-4), (0.0, 4e-4), (-0.01, 4e-4)]
    earlier = [
        {
            "experiment_id": f"ex-{i}",
            "difference": d,
            "variance": v,
            "exposures_with": 100,
            "exposures_without": 100,
            "decision": "continue",
            "kind": "experiment",
        }
        for i, (d, v) in enumerate(own[:2])
    ]
    # the latest experiment's stored figures are combined ones; its own runs gave (-0.01, 4e-4)
    previous = {
        **earlier[0],
        "experiment_id": "ex-2",
        "difference": 0.003,
        "variance": 1.3e-4,
        "own_difference": -0.01,
        "own_variance": 4e-4,
        "earlier": earlier,
        "p_value": 1.0,
        "ci_low": -1.0,
        "ci_high": 1.0,
    }
    skill = _proposed("s", experiment=previous)
    experiment = {
        "id": "ex-3",
        "namespace": "domain:x",
        "skill_ids": ["s"],
        "arms": [{"arm": "control", "skill_ids": []}, {"arm": "candidate", "skill_ids": ["s"]}],
    }
    counts = {"a": {"control": ArmCounts(100, 50), "candidate": ArmCounts(100, 50)}}
    evidence = _evidence(skill, experiment, counts, ExperimentSettings(), "2026-01-01T00:00:00Z")
    assert evidence is not None
    variances = [4e-4, 4e-4, 4e-4, evidence["own_variance"]]
    assert evidence["variance"] == pytest.approx(1 / sum(1 / v for v in variances), rel=1e-4)
    assert [e["difference"] for e in evidence["earlier"]] == [0.02, 0.0, -0.01]


def test_a_decision_is_taken_on_the_interval_and_drift_resets_it() -> None:
    from pipeline.experiment import Decision, decide_estimate

    # earlier looks said "helps" (interval above 0); now the runs say it harms
    look = decide_estimate(
        -0.2, 1e-4, 2000, alpha=0.05, previous_p=1e-6, previous_interval=(0.05, 0.2)
    )
    assert look.decision == Decision.REJECT_HARM and look.interval[1] < 0
    # a small p from earlier looks alone does not promote on a negative estimate
    look = decide_estimate(
        -0.001, 1e-2, 200, alpha=0.05, previous_p=1e-3, previous_interval=(-0.3, 0.3)
    )
    assert look.decision == Decision.CONTINUE


def test_a_holdback_share_with_nothing_to_hold_back_does_not_restart_experiments() -> None:
    from pipeline.experiment import ExperimentSettings, run_experiments
    from pipeline.skillbook import MergePolicy

    book = Skillbook({"s": _proposed("s")})
    settings = ExperimentSettings(holdback_share=0.1)
    first = run_experiments(
        book, [], {}, policy=MergePolicy(), settings=settings, now="2026-01-01T00:00:00Z"
    )
    version = book.version
    again = run_experiments(
        book, [], {}, policy=MergePolicy(), settings=settings, now="2026-01-02T00:00:00Z"
    )
    assert first.started and not again.started and not again.ended and book.version == version

"""The loop end to end through the command line: ``coach learn`` starts an experiment for a
proposed skill and renders its arms, an agent runtime picks each user's prompt with ``coach
assign``, the runs come back as Chat JSONL (some with their prompt version, some without), and
the next ``coach learn`` reads which version each ran under and promotes the skill when its arm
did better; a person can stop an experiment, and a second one on the namespace is refused."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.experiment import assign_unit, load_manifest

T0 = 1_790_000_000  # the first learn; the night's runs come an hour later
SKILL = "sk-000000000001"
INSTRUCTION = "Before calling book_trip, read the booking back to the user and get a yes."


def _skillbook(directory: Path) -> None:
    directory.mkdir(parents=True)
    skill = {
        "id": SKILL,
        "status": "proposed",
        "section": "escalation",
        "namespace": "domain:travel",
        "instruction": INSTRUCTION,
        "evidence": {"direction": "harmful", "odds_ratio": 0.5, "ci_low": 0.2, "ci_high": 1.1},
        "source": {"method": "rule", "pattern_id": "unconfirmed_write:book_trip"},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    document = {"format_version": 3, "version": 1, "history": [], "skills": [skill]}
    (directory / "skillbook.json").write_text(json.dumps(document))


def _run(unit: str, n: int, system: str, success: bool, version: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"task_id": f"t-{unit}-{n}", "domain": "travel", "user_id": unit}
    metadata["agent"] = f"agent-{n % 2}"
    if version is not None:
        metadata["prompt_version"] = version
    return {
        "id": f"run-{unit}-{n}",
        "outcome": "success" if success else "failure",
        "metadata": metadata,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "Book me a trip to Lisbon."},
            {"role": "assistant", "content": "Done."},
        ],
    }


def _write(path: Path, runs: list[dict[str, Any]], mtime: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    os.utime(path, (mtime, mtime))


def _learn(work: Path, epoch: int, *extra: str) -> dict[str, Any]:
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    result = CliRunner().invoke(
        main,
        [
            "learn",
            str(work / "traces"),
            "--data-dir",
            str(work / "data"),
            "--skillbook",
            str(work / "sb"),
            "--out",
            str(work / "out"),
            "--json",
            "-q",
            *extra,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(T0))
    monkeypatch.delenv("COACH_CONFIG", raising=False)
    _skillbook(tmp_path / "sb")
    base = "You help travellers book trips."
    _write(tmp_path / "traces" / "night0.jsonl", [_run("u0", 0, base, True, None)], T0 - 3600)
    return tmp_path


def _night(work: Path, rates: dict[str, float], seed: int, recorded_share: float) -> int:
    """Night ``seed`` (after the learn of night ``seed - 1``): 800 users on the arms of the
    current manifest; returns the runs written."""
    rng = random.Random(seed)
    manifest = load_manifest(work / "out" / "manifest.json")
    runs = []
    for i in range(800):
        unit = f"user-{seed}-{i}"
        arm = assign_unit(manifest, "domain:travel", unit)
        system = (work / "out" / arm.file).read_text(encoding="utf-8")
        version = arm.prompt_version if rng.random() < recorded_share else None
        runs.append(_run(unit, i, system, rng.random() < rates[arm.arm], version))
    _write(work / "traces" / f"night-{seed}.jsonl", runs, T0 + 86_400 * (seed - 1) + 3600)
    return len(runs)


def test_a_helpful_skill_is_promoted_by_its_experiment(work: Path) -> None:
    first = _learn(work, T0)
    assert first["experiments"]["started"] and first["experiments"]["running"][0]["skill_ids"] == [
        SKILL
    ]
    manifest = load_manifest(work / "out" / "manifest.json")
    arms = manifest["namespaces"]["domain:travel"]["arms"]
    assert [a["arm"] for a in arms] == ["control", "candidate"]
    assert SKILL in arms[1]["skill_ids"] and SKILL not in arms[0]["skill_ids"]
    assert INSTRUCTION in (work / "out" / arms[1]["file"]).read_text()
    assert INSTRUCTION not in (work / "out" / arms[0]["file"]).read_text()

    _night(work, {"control": 0.5, "candidate": 0.8}, seed=1, recorded_share=0.5)
    second = _learn(work, T0 + 86_400)
    methods = second["experiments"]["versions"]["methods"]
    # the night-0 run used the base prompt, which is the control prompt: matched, but dated
    # before the experiment, it is not counted in it
    assert methods["recorded"] + methods["system_prompt"] == 801
    assert methods["recorded"] > 300 and methods["system_prompt"] > 300
    assert second["experiments"]["promoted"] == [SKILL]
    skill = json.loads((work / "sb" / "skillbook.json").read_text())["skills"][0]
    assert skill["status"] == "active"
    evidence = skill["experiment"]
    assert evidence["decision"] == "promote" and evidence["ci_low"] > 0
    assert evidence["exposures_with"] + evidence["exposures_without"] == 800
    assert evidence["difference"] == pytest.approx(0.3, abs=0.1)
    assert skill["history"][-1]["action"] == "promote"
    # the experiment ended with the decision; the skill is now in the one prompt every unit gets
    manifest = load_manifest(work / "out" / "manifest.json")
    entry = manifest["namespaces"]["domain:travel"]
    assert entry["experiment"] is None and [a["arm"] for a in entry["arms"]] == ["control"]
    assert INSTRUCTION in (work / "out" / entry["arms"][0]["file"]).read_text()
    assert not list((work / "out").glob("*.candidate.md"))


def test_a_harmful_skill_is_rejected_and_never_proposed_again(work: Path) -> None:
    _learn(work, T0)
    _night(work, {"control": 0.7, "candidate": 0.35}, seed=1, recorded_share=1.0)
    done = _learn(work, T0 + 86_400)
    assert done["experiments"]["rejected"] == [SKILL]
    skill = json.loads((work / "sb" / "skillbook.json").read_text())["skills"][0]
    assert skill["status"] == "rejected" and skill["experiment"]["decision"] == "reject_harm"
    assert skill["experiment"]["ci_high"] < 0


def test_no_effect_promotes_nothing_over_a_week(work: Path) -> None:
    _learn(work, T0)
    for night in range(1, 8):
        _night(work, {"control": 0.6, "candidate": 0.6}, seed=night, recorded_share=0.7)
        done = _learn(work, T0 + 86_400 * night)
        assert not done["experiments"]["promoted"]
    skill = json.loads((work / "sb" / "skillbook.json").read_text())["skills"][0]
    assert skill["status"] in ("proposed", "rejected")
    assert skill["experiment"]["looks"] >= 1


def test_assign_stop_and_a_second_experiment(work: Path) -> None:
    _learn(work, T0)
    runner = CliRunner()
    out = ["--out", str(work / "out")]
    shown = runner.invoke(main, ["assign", "domain:travel", "user-7", *out, "--json"])
    assert shown.exit_code == 0, shown.output
    assigned = json.loads(shown.output)
    assert assigned["arm"] in ("control", "candidate") and assigned["prompt_version"].startswith(
        "pv-"
    )
    again = runner.invoke(main, ["assign", "domain:travel", "user-7", *out, "--json"])
    assert json.loads(again.output) == assigned
    sb = ["--skillbook", str(work / "sb"), *out, "--data-dir", str(work / "data")]
    second = runner.invoke(main, ["experiment", "start", "domain:travel", "--skill", SKILL, *sb])
    assert second.exit_code == 1 and "already running on domain:travel" in second.output
    stopped = runner.invoke(main, ["experiment", "stop", "domain:travel", "--note", "pause", *sb])
    assert stopped.exit_code == 0, stopped.output
    assert not list((work / "out").glob("*.candidate.md"))
    listed = runner.invoke(
        main, ["experiment", "list", "--all", "--skillbook", str(work / "sb"), "--json"]
    )
    [experiment] = json.loads(listed.output)["experiments"]
    assert experiment["status"] == "ended" and "pause" in experiment["ended_because"]
    (work / "out" / "manifest.json").write_text(
        (work / "out" / "manifest.json").read_text().replace('"share": 1.0', '"share": 0.9')
    )
    edited = runner.invoke(main, ["assign", "domain:travel", "user-7", *out])
    assert edited.exit_code == 1 and "changed after coach wrote it" in edited.output


def test_experiments_can_be_switched_off(work: Path) -> None:
    _learn(work, T0)
    _night(work, {"control": 0.5, "candidate": 0.5}, seed=1, recorded_share=1.0)
    done = _learn(work, T0 + 86_400, "--no-experiments")
    assert list(done["experiments"]["ended"].values()) == ["experiments switched off"]
    assert not list((work / "out").glob("*.candidate.md"))
    assert not done["experiments"]["running"]


def test_the_readme_runtime_snippet_picks_the_arm_coach_assigns(work: Path) -> None:
    _learn(work, T0)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    snippet = readme.split("<!-- runtime-snippet -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # the README's own lines, as written
    manifest = load_manifest(work / "out" / "manifest.json")
    arms = set()
    for i in range(200):
        text, version = namespace["pick_prompt"](str(work / "out"), "domain:travel", f"u{i}")
        arm = assign_unit(manifest, "domain:travel", f"u{i}")
        assert version == arm.prompt_version
        assert text == (work / "out" / arm.file).read_text(encoding="utf-8")
        arms.add(arm.arm)
    assert arms == {"control", "candidate"}


def test_a_holdback_retires_an_active_skill_that_now_harms(work: Path) -> None:
    _learn(work, T0)
    _night(work, {"control": 0.5, "candidate": 0.8}, seed=1, recorded_share=1.0)
    assert _learn(work, T0 + 86_400)["experiments"]["promoted"] == [SKILL]
    # from now on a fifth of the units get the prompt without the active skill
    started = _learn(work, T0 + 2 * 86_400, "--holdback-share", "0.2", "--rebuild")
    [running] = started["experiments"]["running"]
    assert running["arms"] == ["control", "holdback"] and running["skill_ids"] == []
    entry = load_manifest(work / "out" / "manifest.json")["namespaces"]["domain:travel"]
    holdback = next(a for a in entry["arms"] if a["arm"] == "holdback")
    assert holdback["share"] == 0.2 and SKILL not in holdback["skill_ids"]
    assert INSTRUCTION not in (work / "out" / holdback["file"]).read_text()
    # the world changed: the skill now hurts, and the runs without it do better
    _night(work, {"control": 0.4, "holdback": 0.75}, seed=3, recorded_share=1.0)
    done = _learn(work, T0 + 3 * 86_400, "--holdback-share", "0.2")
    assert done["experiments"]["retired"] == [SKILL]
    skill = json.loads((work / "sb" / "skillbook.json").read_text())["skills"][0]
    assert skill["status"] == "retired" and skill["experiment"]["kind"] == "holdback"
    assert skill["experiment"]["earlier"][0]["decision"] == "promote"
    assert INSTRUCTION not in (work / "out" / "domain-travel.md").read_text()


def test_a_person_approving_a_skill_under_test_takes_it_out_of_the_arms(work: Path) -> None:
    _learn(work, T0)
    sb = [
        "--skillbook",
        str(work / "sb"),
        "--out",
        str(work / "out"),
        "--data-dir",
        str(work / "data"),
    ]
    approved = CliRunner().invoke(main, ["skills", "approve", SKILL, "--actor", "ada", *sb])
    assert approved.exit_code == 0, approved.output
    entry = load_manifest(work / "out" / "manifest.json")["namespaces"]["domain:travel"]
    assert [a["arm"] for a in entry["arms"]] == ["control"]
    text = (work / "out" / "domain-travel.md").read_text()
    assert text.count(INSTRUCTION) == 1
    assert not list((work / "out").glob("*.candidate.md"))
    done = _learn(work, T0 + 86_400, "--rebuild")
    assert "no longer proposed" in next(iter(done["experiments"]["ended"].values()))

"""Closed-loop benchmark (``make loop``): simulated production traffic night after night against
coach's prompt experiments, and whether the loop converges to the right skills.

Each night, ``--runs`` requests (three domains, tasks never repeat, several agents, many users)
are played by agents that follow their arm's prompt with compliance ``c`` (``bench/loop_sim.py``
describes the planted rules, the decoys and the noise); each run's user is assigned to an arm
of the prompts manifest coach rendered the night before (night 1: the base prompt), its system
message is that arm's prompt text, and ``--versioned-share`` of the runs record the prompt
version in ``metadata.prompt_version``. Then ``coach learn`` runs on every night so far (one
data dir, Skillbook and prompts dir for the whole loop) with ``SOURCE_DATE_EPOCH`` at the end of
the night. The same loop with outcomes drawn independently of behaviour (random labels) runs
for ``--seeds`` seeds. Writes ``<out>.md`` and ``<out>.json``.

Usage: python bench/loop.py [--nights 10] [--runs 500] [--seeds 20] [--jobs 2] [--quick]
       [--out bench/out/loop_results]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loop_arms import Arm, assign, base_arm, manifest_arms  # noqa: E402
from loop_report import (  # noqa: E402
    design_power,
    is_bad,
    planted_effects,
    report,
    summarise_random,
    summarise_sensitivity,
)
from loop_sim import (  # noqa: E402
    BASE_PROMPT,
    COMPLIANCE,
    DAY,
    EPOCH,
    RULE_EFFECT,
    VERSIONED_SHARE,
    SimConfig,
    classify_skill,
    draw_requests,
    expected_success,
    loop_domains,
    oracle,
    play,
    told_by,
)
from machine import machine, write_results  # noqa: E402

import pipeline.experiment as experiment_api  # noqa: E402

EXPERIMENT_OPTIONS = (
    "--experiment-share",
    "--no-experiments",
    "--holdback-share",
    "--experiment-alpha",
)


def coach_command() -> list[str]:
    """How to run coach: the console script beside this Python, else ``python -m pipeline``."""
    script = Path(sys.executable).with_name("coach")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipeline"]


def learn_options() -> set[str]:
    """The experiment options ``coach learn --help`` knows (they are being added)."""
    text = subprocess.run(
        [*coach_command(), "learn", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return {option for option in EXPERIMENT_OPTIONS if option in text}


def run_learn(work: Path, night: int, extra: list[str]) -> tuple[dict[str, Any], float]:
    """``coach learn`` over every night so far, at the end of ``night``; its ``--json`` summary
    and the seconds it took."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH + night * DAY)}
    command = [
        *coach_command(),
        "learn",
        str(work / "traces"),
        "--data-dir",
        str(work / "data"),
        "--skillbook",
        str(work / "skillbook"),
        "--out",
        str(work / "prompts"),
        "--json",
        "-q",
        *extra,
    ]
    if (work / "base_prompt.md").exists():
        command += ["--base-prompt", str(work / "base_prompt.md")]
    start = time.perf_counter()
    for attempt in range(3):
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        # coach crashing (its source being edited while the loop runs): try again, saying so
        if done.returncode in (0, 3) or not _crashed(done.stderr) or attempt == 2:
            break
        print(
            f"loop: coach learn crashed at night {night}, trying again in 30 s: "
            f"{done.stderr.strip().splitlines()[-1]}",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(30)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 3):
        raise RuntimeError(
            f"coach learn failed at night {night} (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )
    return json.loads(done.stdout), seconds


def write_night(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write one night's records as Chat JSONL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def _crashed(stderr: str) -> bool:
    """Whether coach crashed (a Python traceback) rather than reporting an error."""
    return "Traceback (most recent call last)" in stderr


def read_skillbook(work: Path) -> dict[str, Any]:
    path = work / "skillbook" / "skillbook.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"skills": []}


def read_manifest(work: Path) -> dict[str, Any] | None:
    path = work / "prompts" / "manifest.json"
    if not path.exists():
        return None
    if hasattr(experiment_api, "load_manifest"):
        try:
            return dict(experiment_api.load_manifest(path))
        except Exception:  # noqa: BLE001 - an older manifest: read it as it is
            pass
    return json.loads(path.read_text(encoding="utf-8"))


def check_assignment(manifest: Mapping[str, Any], namespace: str, unit: str, arm: Arm) -> None:
    """The library's ``assign_unit`` (when there is one) gives the arm the fallback gave."""
    if "namespaces" not in manifest or not hasattr(experiment_api, "assign_unit"):
        return
    library = experiment_api.assign_unit(manifest, namespace, unit)
    if library.arm != arm.arm or library.prompt_version != arm.prompt_version:
        raise AssertionError(
            f"assign_unit gives {library.arm} ({library.prompt_version}) for {unit} in "
            f"{namespace}, the fallback {arm.arm} ({arm.prompt_version})"
        )


def play_night(
    config: SimConfig,
    night: int,
    arms: Mapping[str, list[Arm]],
    skills: Mapping[str, Mapping[str, Any]],
    manifest: Mapping[str, Any] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The records of ``night`` under the arms of ``manifest``, and each run's facts with its
    success probability under its namespace's control prompt and under the oracle prompt."""
    domains = {d.namespace: d for d in config.domains}
    told = {
        (ns, arm.arm): told_by([skills[i] for i in arm.skill_ids if i in skills], domains[ns])
        for ns, ns_arms in arms.items()
        if ns in domains
        for arm in ns_arms
    }
    records, facts = [], []
    for request in draw_requests(config, night):
        namespace = request.domain.namespace
        ns_arms = arms.get(namespace) or [base_arm(namespace, config.base_prompt(namespace))]
        arm = assign(ns_arms, namespace, request.user)
        if manifest is not None:
            check_assignment(manifest, namespace, request.user, arm)
        arm_told = told.get((namespace, arm.arm)) or told_by([], request.domain)
        control = next((a for a in ns_arms if a.arm == "control"), ns_arms[0])
        control_told = told.get((namespace, control.arm)) or told_by([], request.domain)
        record, fact = play(request, arm, arm_told, config)
        fact["p_control"] = expected_success(request, control_told, config)
        fact["p_oracle"] = expected_success(request, oracle(request.domain), config)
        fact["skill_ids"] = list(arm.skill_ids)
        records.append(record)
        facts.append(fact)
    return records, facts


def match_check(
    work: Path, records: list[dict[str, Any]], facts: list[dict[str, Any]]
) -> dict[str, Any]:
    """Of the runs that did not record their version but ran a rendered prompt: how many does
    coach's matcher (``pipeline.experiment.match_exposures`` over the Skillbook's version
    history) resolve to the version they really ran under."""
    truth = {
        f["id"]: f["prompt_version"] for f in facts if not f["versioned"] and f["prompt_version"]
    }
    out: dict[str, Any] = {"unversioned": sum(not f["versioned"] for f in facts)}
    out["checkable"] = len(truth)
    if not truth or not hasattr(experiment_api, "match_exposures"):
        out["right"] = None
        return out
    history = experiment_api.VersionHistory.load(work / "skillbook")
    rows = [
        {
            "trajectory_id": r["id"],
            "domain": r["metadata"]["domain"],
            "agent_name": r["metadata"]["agent"],
            "prompt_version": None,
            "system_prompt": r["messages"][0]["content"],
        }
        for r in records
        if r["id"] in truth
    ]
    exposures, matched = experiment_api.match_exposures(rows, history)
    out["right"] = sum(e.prompt_version == truth[e.trajectory_id] for e in exposures)
    out["methods"] = dict(matched.methods)
    return out


EVIDENCE_KEYS = (
    "looks",
    "exposures_with",
    "exposures_without",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
    "alpha",
    "decision",
)


def _evidence(skill: Mapping[str, Any] | None) -> dict[str, Any]:
    """The skill's pattern and its latest experiment figures."""
    if skill is None:
        return {}
    experiment = skill.get("experiment") or {}
    return {
        "pattern": (skill.get("source") or {}).get("pattern_id", ""),
        "namespace": skill.get("namespace"),
        **{k: experiment.get(k) for k in EVIDENCE_KEYS},
    }


def skill_state(book: Mapping[str, Any], config: SimConfig) -> dict[str, Any]:
    """The Skillbook after a night's learn: skills by status with what they are, the skills
    under test in running experiments, and which planted rules are active."""
    skills = {s["id"]: s for s in book.get("skills", [])}
    labels = {i: classify_skill(s, config.domains) for i, s in skills.items()}
    by_status: dict[str, list[dict[str, str]]] = {}
    for skill in book.get("skills", []):
        by_status.setdefault(skill["status"], []).append(
            {
                "id": skill["id"],
                "namespace": skill["namespace"],
                "pattern": (skill.get("source") or {}).get("pattern_id", ""),
                "label": labels[skill["id"]],
                "decision": (skill.get("experiment") or {}).get("decision"),
                "difference": (skill.get("experiment") or {}).get("difference"),
            }
        )
    running = [e for e in book.get("experiments", []) if e.get("status") == "running"]
    under_test = sorted({i for e in running for i in e.get("skill_ids", [])})
    active = by_status.get("active", [])
    rules = {
        f"{d.spec.name}:{r.kind}": any(s["label"] == f"rule:{d.spec.name}:{r.kind}" for s in active)
        for d in config.domains
        for r in d.spec.rules
    }
    return {
        "by_status": by_status,
        "under_test": [
            {"id": i, "label": labels.get(i, "?"), **_evidence(skills.get(i))} for i in under_test
        ],
        "experiments_running": len(running),
        "experiments_total": len(book.get("experiments", [])),
        "rules_active": rules,
        "bad_active": [s for s in active if is_bad(s["label"])],
    }


def arm_rates(facts: list[dict[str, Any]]) -> dict[str, Any]:
    """Success per namespace and arm, and overall per arm; control and oracle expected rates."""
    cells: dict[str, dict[str, list[int]]] = {}
    for f in facts:
        for ns in (f["namespace"], "all"):
            arm = f["arm"] if ns != "all" or f["arm"] == "control" else "candidates"
            cell = cells.setdefault(ns, {}).setdefault(arm, [0, 0])
            cell[0] += 1
            cell[1] += f["success"]
    expected: dict[str, dict[str, float]] = {}
    for ns in {f["namespace"] for f in facts} | {"all"}:
        mine = [f for f in facts if ns in ("all", f["namespace"])]
        expected[ns] = {
            "control": sum(f["p_control"] for f in mine) / len(mine),
            "oracle": sum(f["p_oracle"] for f in mine) / len(mine),
        }
    return {
        "arms": {
            ns: {arm: {"n": n, "rate": s / n} for arm, (n, s) in sorted(by.items())}
            for ns, by in sorted(cells.items())
        },
        "expected": expected,
    }


def run_loop(
    config: SimConfig, nights: int, work: Path, extra: list[str], label: str
) -> dict[str, Any]:
    """One closed loop of ``nights`` nights in ``work``; one row per night."""
    (work / "traces").mkdir(parents=True, exist_ok=True)
    if not config.domain_base_prompts:
        (work / "base_prompt.md").write_text(BASE_PROMPT + "\n", encoding="utf-8")
    rows: list[dict[str, Any]] = []
    ever: dict[str, dict[str, Any]] = {}
    for night in range(1, nights + 1):
        manifest = read_manifest(work)
        arms = manifest_arms(manifest, work / "prompts") if manifest else {}
        book = read_skillbook(work)
        skills = {s["id"]: s for s in book.get("skills", [])}
        records, facts = play_night(config, night, arms, skills, manifest)
        write_night(work / "traces" / f"night-{night:02d}.jsonl", records)
        summary, seconds = run_learn(work, night, extra)
        state = skill_state(read_skillbook(work), config)
        for skill in state["by_status"].get("active", []):
            ever.setdefault(skill["id"], {**skill, "first_active_night": night})
        row = {
            "night": night,
            "runs": len(facts),
            "arms_running": {ns: [a.arm for a in v] for ns, v in sorted(arms.items())},
            **arm_rates(facts),
            "versions": match_check(work, records, facts),
            "coach_versions": {
                k: summary[k]
                for k in ("exposures", "versions", "experiments", "prompt_versions")
                if k in summary
            },
            "state": state,
            "learn_seconds": round(seconds, 2),
        }
        # the control prompt coach leaves for the next night, on this night's requests
        new_manifest = read_manifest(work)
        if new_manifest is not None:
            new_arms = manifest_arms(new_manifest, work / "prompts")
            controls = {ns: [a for a in v if a.arm == "control"][:1] for ns, v in new_arms.items()}
            _, next_facts = play_night(
                config,
                night,
                controls,
                {s["id"]: s for s in read_skillbook(work).get("skills", [])},
                None,
            )
            row["next_control_expected"] = arm_rates(next_facts)["expected"]
        rows.append(row)
        _progress(label, row)
    return {"seed": config.seed, "nights": rows, "ever_active": list(ever.values())}


def _progress(label: str, row: dict[str, Any]) -> None:
    state = row["state"]
    active = state["by_status"].get("active", [])
    expected = row["expected"]["all"]
    print(
        f"loop {label}: night {row['night']}: control {expected['control']:.3f} vs oracle "
        f"{expected['oracle']:.3f}; active {sorted(s['label'] for s in active)}; "
        f"under test {len(state['under_test'])}; rejected "
        f"{len(state['by_status'].get('rejected', []))} ({row['learn_seconds']}s)",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nights", type=int, default=10)
    parser.add_argument("--runs", type=int, default=500, help="runs per night, all domains")
    parser.add_argument("--seeds", type=int, default=20, help="random-label seeds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the main loop")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--compliance", type=float, default=COMPLIANCE)
    parser.add_argument("--versioned-share", type=float, default=VERSIONED_SHARE)
    parser.add_argument("--experiment-share", type=float, default=None)
    parser.add_argument(
        "--rule-effect",
        type=float,
        default=RULE_EFFECT,
        help="points of success (a fraction) a run loses by breaking a planted rule",
    )
    parser.add_argument(
        "--sensitivity-effects",
        default="0.5",
        help="rule effects (comma-separated fractions; empty: none) of extra main loops "
        "reported beside the main one, to show what stronger or weaker rules give",
    )
    parser.add_argument("--experiment-alpha", type=float, default=None)
    parser.add_argument(
        "--domain-base-prompts",
        action="store_true",
        help="a base prompt of each domain's own, taken by coach from the traces (default: "
        "one base prompt file for every domain, --base-prompt)",
    )
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--quick", action="store_true", help="4 nights, 300 runs, 2 seeds")
    parser.add_argument("--keep", type=Path, default=None, help="keep the loops' files here")
    parser.add_argument("--out", default="bench/out/loop_results")
    args = parser.parse_args(argv)
    if args.quick:
        args.nights, args.runs, args.seeds = min(args.nights, 4), min(args.runs, 300), 2
    known = learn_options()
    extra: list[str] = []
    if args.experiment_share is not None and "--experiment-share" in known:
        extra += ["--experiment-share", str(args.experiment_share)]
    if args.experiment_alpha is not None and "--experiment-alpha" in known:
        extra += ["--experiment-alpha", str(args.experiment_alpha)]
    base = SimConfig(
        runs_per_night=args.runs,
        n_users=args.users,
        compliance=args.compliance,
        versioned_share=args.versioned_share,
        seed=args.seed,
        domain_base_prompts=args.domain_base_prompts,
        domains=loop_domains(effect=args.rule_effect),
    )
    sensitivity = [float(e) for e in args.sensitivity_effects.split(",") if e.strip()]
    configs = (
        [("main", base)]
        + [(f"effect-{e}", replace(base, domains=loop_domains(effect=e))) for e in sensitivity]
        + [
            (f"random-{s}", replace(base, random_labels=True, seed=1000 + s))
            for s in range(args.seeds)
        ]
    )
    start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="coach-loop-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [
                pool.submit(run_loop, config, args.nights, root / label, extra, label)
                for label, config in configs
            ]
            loops = [f.result() for f in futures]
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    main_loop = loops[0]
    sensitivity_loops = loops[1 : 1 + len(sensitivity)]
    random_loops = loops[1 + len(sensitivity) :]
    info = machine()
    command = "python bench/loop.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    settings = {
        "nights": args.nights,
        "runs_per_night": args.runs,
        "random_label_seeds": args.seeds,
        "users": args.users,
        "compliance": args.compliance,
        "rule_effect": args.rule_effect,
        "versioned_share": args.versioned_share,
        "domain_base_prompts": args.domain_base_prompts,
        "effects": planted_effects(base),
        "power": design_power(base, args.runs, args.nights, planted_effects(base)),
        "sensitivity": [
            summarise_sensitivity(e, loop, planted_effects(replace(base, domains=loop_domains(e))))
            for e, loop in zip(sensitivity, sensitivity_loops, strict=True)
        ],
        "coach_options_known": sorted(known),
        "coach_options_passed": extra,
        "seconds": round(time.perf_counter() - start, 1),
    }
    random_summary = summarise_random(random_loops)
    text = report(main_loop, random_summary, base, settings, info, command.strip())
    write_results(
        Path(args.out),
        text,
        {
            "command": command.strip(),
            "machine": info,
            "settings": settings,
            "main": main_loop,
            "random_labels": random_summary,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Markdown report and the targets of the closed-loop benchmark (``bench/loop.py``)."""

from __future__ import annotations

from typing import Any

from loop_power import power_table
from loop_sim import (
    DECOY_EFFECT,
    RULE_EFFECT,
    RULE_RATE,
    SimConfig,
    Told,
    draw_requests,
    expected_success,
)
from machine import machine_line


def is_bad(label: str) -> bool:
    """A skill that must never be active: the decoy, a rule turned around, or noise."""
    return label in ("decoy", "noise") or label.startswith("anti-rule:")


GAP_POINTS = 3.0
RANDOM_SHARE = 0.05
MATCHED_SHARE = 0.95


def planted_effects(config: SimConfig, nights: int = 4) -> list[dict[str, Any]]:
    """What telling the agents of a domain one thing does to the domain's expected success
    rate (points, on ``nights`` nights of requests), against its base prompt: each planted rule,
    the decoy, and the oracle (all the domain's rules)."""
    rows = []
    for domain in config.domains:
        requests = [
            r
            for night in range(1, nights + 1)
            for r in draw_requests(config, night)
            if r.domain is domain
        ]
        base = sum(expected_success(r, Told(), config) for r in requests) / len(requests)
        told = [(f"rule {r.kind}", Told(frozenset({i}))) for i, r in enumerate(domain.spec.rules)]
        told += [("decoy", Told(decoy=True))]
        told += [("oracle", Told(frozenset(range(len(domain.spec.rules)))))]
        for what, t in told:
            rate = sum(expected_success(r, t, config) for r in requests) / len(requests)
            rows.append(
                {
                    "domain": domain.spec.name,
                    "told": what,
                    "base": base,
                    "rate": rate,
                    "points": (rate - base) * 100,
                }
            )
    return rows


POWER_EFFECTS = (5.0, 10.0, 15.0, 20.0)


def design_power(
    config: SimConfig, runs: int, nights: int, effects: list[dict[str, Any]]
) -> dict[str, Any]:
    """What coach's test can see at this design (:mod:`loop_power`): per effect (points), the
    chance that one skill under test is promoted by each night, with ``runs / domains`` runs of
    its namespace a night at the domains' mean base rate; the planted rules' own effects (at
    this setting) among the rows."""
    per_domain = runs // len(config.domains)
    bases = {e["domain"]: e["base"] for e in effects}
    rate = sum(bases.values()) / len(bases)
    planted = sorted({round(e["points"], 1) for e in effects if e["told"].startswith("rule ")})
    return {
        "runs_per_namespace": per_domain,
        "rate": round(rate, 3),
        "rows": power_table(
            [0.0, *sorted(set(POWER_EFFECTS) | set(planted))],
            runs=per_domain,
            rate=rate,
            nights=nights,
        ),
        "planted": planted,
    }


def summarise_sensitivity(
    effect: float, loop: dict[str, Any], effects: list[dict[str, Any]]
) -> dict[str, Any]:
    """A main loop run at another rule effect: the rules active after the last night, the gap to
    the oracle on that night, and the bad skills ever active."""
    last = loop["nights"][-1]
    expected = last["expected"]["all"]
    rules = last["state"]["rules_active"]
    return {
        "rule_effect": effect,
        "rule_points": [round(e["points"], 1) for e in effects if e["told"].startswith("rule ")],
        "rules_active": sum(bool(v) for v in rules.values()),
        "rules": len(rules),
        "missing": sorted(k for k, v in rules.items() if not v),
        "gap": round((expected["oracle"] - expected["control"]) * 100, 1),
        "bad_ever_active": sorted(s["label"] for s in loop["ever_active"] if is_bad(s["label"])),
        "first_active": {
            s["label"]: s["first_active_night"]
            for s in loop["ever_active"]
            if s["label"].startswith("rule:")
        },
    }


def summarise_random(loops: list[dict[str, Any]]) -> dict[str, Any]:
    """Per random-label seed: the skills ever active (with the night they became active) and
    the experiments run; the share of seeds where any skill was ever promoted."""
    seeds = []
    for loop in loops:
        last = loop["nights"][-1]["state"] if loop["nights"] else {}
        seeds.append(
            {
                "seed": loop["seed"],
                "ever_active": loop["ever_active"],
                "experiments": last.get("experiments_total", 0),
                "rejected": len(last.get("by_status", {}).get("rejected", [])),
                "versions": _versions(loop),
            }
        )
    promoted = sum(bool(s["ever_active"]) for s in seeds)
    return {
        "seeds": seeds,
        "seeds_promoting": promoted,
        "share_promoting": promoted / len(seeds) if seeds else None,
    }


def _versions(loop: dict[str, Any]) -> dict[str, int | None]:
    rows = [n["versions"] for n in loop["nights"]]
    known = [r for r in rows if r.get("right") is not None]
    return {
        "unversioned": sum(r["unversioned"] for r in rows),
        "checkable": sum(r["checkable"] for r in known),
        "right": sum(r["right"] for r in known) if known else None,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _labels(skills: list[dict[str, Any]]) -> str:
    if not skills:
        return "none"
    counts: dict[str, int] = {}
    for s in skills:
        counts[s["label"]] = counts.get(s["label"], 0) + 1
    return ", ".join(f"{k}{f' x{v}' if v > 1 else ''}" for k, v in sorted(counts.items()))


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def targets(main: dict[str, Any], random: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """(target, met, figure) for each target of the brief."""
    nights = main["nights"]
    last = nights[-1]
    rules = last["state"]["rules_active"]
    missing = [k for k, v in rules.items() if not v]
    bad = [s for s in main["ever_active"] if is_bad(s["label"])]
    expected = last["expected"]["all"]
    gap = (expected["oracle"] - expected["control"]) * 100
    versions = _versions(main)
    share = (
        versions["right"] / versions["checkable"]
        if versions["right"] is not None and versions["checkable"]
        else None
    )
    rand = random["share_promoting"]
    return [
        (
            f"every planted helpful rule active by night {last['night']}",
            not missing,
            f"{len(rules) - len(missing)}/{len(rules)} active"
            + (f"; missing {', '.join(missing)}" if missing else ""),
        ),
        (
            "no harmful (decoy, a rule turned around) or noise skill active on any night",
            not bad,
            "none"
            if not bad
            else "; ".join(
                f"{s['label']} {s['pattern']} ({s['namespace']}, night {s['first_active_night']})"
                for s in bad
            ),
        ),
        (
            f"control arm's success at night {last['night']} within {GAP_POINTS:.0f} points of "
            "the oracle prompt",
            gap <= GAP_POINTS,
            f"control {expected['control'] * 100:.1f}%, oracle {expected['oracle'] * 100:.1f}% "
            f"(gap {gap:+.1f} points; expected rates on that night's requests)",
        ),
        (
            f"random labels: at most {RANDOM_SHARE:.0%} of seeds promote any skill",
            None if rand is None else rand <= RANDOM_SHARE,
            f"{random['seeds_promoting']}/{len(random['seeds'])} seeds ({_pct(rand)})",
        ),
        (
            f"unversioned traces: at least {MATCHED_SHARE:.0%} matched to the right version",
            None if share is None else share >= MATCHED_SHARE,
            f"{versions['right']}/{versions['checkable']} ({_pct(share)}) of the unversioned runs "
            "that ran a rendered prompt"
            if share is not None
            else "no rendered prompt versions to check yet",
        ),
    ]


def report(
    main: dict[str, Any],
    random: dict[str, Any],
    config: SimConfig,
    settings: dict[str, Any],
    info: dict[str, Any],
    command: str,
) -> str:
    rules = ", ".join(
        f"{d.spec.name}: {r.kind} ({r.tool})" for d in config.domains for r in d.spec.rules
    )
    decoys = ", ".join(f"{d.spec.name}: {d.decoy}" for d in config.domains)
    lines = [
        "# Closed-loop benchmark: prompt experiments night after night",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {info and machine_line(info)}; {settings['seconds']} s in all.",
        "",
        f"{settings['nights']} nights of {settings['runs_per_night']} runs over "
        f"{len(config.domains)} domains (tasks never repeat), {len(config.agents)} agents, "
        f"{settings['users']} users (the units of assignment); agents follow their arm's "
        f"prompt with compliance {settings['compliance']}; {settings['versioned_share']:.0%} "
        "of runs record `metadata.prompt_version`, the rest are matched by their system "
        "prompt. "
        + (
            "Each domain has a base prompt of its own, which coach takes from the traces. "
            if settings.get("domain_base_prompts")
            else "One base prompt for every domain, given to coach as `--base-prompt`. "
        )
        + "`coach learn` runs after each night on all nights so far, "
        f"`SOURCE_DATE_EPOCH` at the night's end; experiment options known to this coach: "
        f"{', '.join(settings['coach_options_known']) or 'none'}; passed: "
        f"{' '.join(settings['coach_options_passed']) or 'none'}.",
        "",
        f"Planted helpful rules (each broken naturally by {RULE_RATE} x (0.5 + difficulty) of "
        f"the runs, costing {settings.get('rule_effect', RULE_EFFECT) * 100:.0f} points of "
        f"success): {rules}. Decoys "
        "(called on their own mostly on easy requests, so they look helpful offline; each call "
        f"costs {DECOY_EFFECT * 100:.0f} x difficulty points, so telling agents to call them "
        f"hurts): {decoys}. Noise tools, a repeated lookup and a `notify` argument: no effect. "
        "The oracle prompt holds exactly the planted rules; control and oracle rates are the "
        "expected success (mean success probability) of the same night's requests under each "
        "prompt.",
        "",
        "What a prompt line does to its domain's expected success rate, with compliance "
        f"{settings['compliance']} (points against the base prompt; an experiment's candidate "
        "arm differs from control by this much):",
        "",
        "| domain | base prompt | each planted rule alone | decoy | oracle (all its rules) |",
        "|---|---:|---|---:|---:|",
    ]
    for name in dict.fromkeys(e["domain"] for e in settings["effects"]):
        mine = [e for e in settings["effects"] if e["domain"] == name]
        rules = ", ".join(
            f"{e['told'].removeprefix('rule ')} {e['points']:+.1f}"
            for e in mine
            if e["told"].startswith("rule ")
        )
        by = {e["told"]: e for e in mine}
        lines.append(
            f"| {name} | {_pct(mine[0]['base'])} | {rules} | {by['decoy']['points']:+.1f} | "
            f"{by['oracle']['points']:+.1f} |"
        )
    lines += [
        "",
        "## Targets",
        "",
    ]
    for name, ok, figure in targets(main, random):
        lines.append(f"- **{_verdict(ok)}** {name}: {figure}")
    lines += _sensitivity_lines(settings) + [
        "",
        "## Main loop, night by night",
        "",
        "Success of the runs in the control arm and in the candidate arms (observed), the "
        "expected success of the whole night under the control prompt and under the oracle; "
        "the Skillbook after that night's learn (skills by what they are: `rule:<domain>:<kind>`"
        " recovers a planted rule, `decoy`, `anti-decoy` (avoid the decoy: harmless), `noise`).",
        "",
        "| night | control (obs) | candidates (obs) | control (exp) | oracle (exp) | gap | "
        "active after | under test after | rejected after | unversioned matched | learn s |",
        "|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|",
    ]
    for row in main["nights"]:
        arms = row["arms"]["all"]
        exp = row["expected"]["all"]
        state = row["state"]
        v = row["versions"]
        matched = f"{v['right']}/{v['checkable']}" if v.get("right") is not None else "n/a"
        candidates = arms.get("candidates")
        lines.append(
            f"| {row['night']} | {_pct(arms.get('control', {}).get('rate'))} "
            f"(n={arms.get('control', {}).get('n', 0)}) | "
            + (f"{_pct(candidates['rate'])} (n={candidates['n']})" if candidates else "-")
            + f" | {_pct(exp['control'])} | {_pct(exp['oracle'])} | "
            f"{(exp['oracle'] - exp['control']) * 100:+.1f} | "
            f"{_labels(state['by_status'].get('active', []))} | "
            f"{_labels(state['under_test'])} | "
            f"{_labels(state['by_status'].get('rejected', []))} | {matched} | "
            f"{row['learn_seconds']} |"
        )
    lines += [
        "",
        "Per namespace: the arms that ran and their observed success (n), expected success "
        "under the control prompt and the oracle.",
        "",
        "| night | namespace | arms (success, n) | control (exp) | oracle (exp) |",
        "|---:|---|---|---:|---:|",
    ]
    for row in main["nights"]:
        for ns, arms in row["arms"].items():
            if ns == "all":
                continue
            cells = ", ".join(f"{a} {_pct(c['rate'])} ({c['n']})" for a, c in arms.items())
            exp = row["expected"][ns]
            lines.append(
                f"| {row['night']} | {ns} | {cells} | {_pct(exp['control'])} | "
                f"{_pct(exp['oracle'])} |"
            )
    last = main["nights"][-1]["state"]
    lines += ["", "Skills ever active in the main loop:", ""]
    for s in main["ever_active"]:
        lines.append(
            f"- night {s['first_active_night']}: {s['label']} `{s['pattern']}` ({s['namespace']})"
        )
    if not main["ever_active"]:
        lines.append("- none")
    lines += ["", "Skills rejected by the end (decision, difference in points):", ""]
    for s in last["by_status"].get("rejected", []):
        diff = s.get("difference")
        lines.append(
            f"- {s['label']} `{s['pattern']}` ({s['namespace']}): {s.get('decision')}"
            + (f", {diff * 100:+.1f}" if isinstance(diff, int | float) else "")
        )
    if not last["by_status"].get("rejected"):
        lines.append("- none")
    lines += [
        "",
        "Skills under test after the last night, with their experiment's latest look "
        "(difference with minus without, points; always-valid interval; p against the "
        "skill's alpha):",
        "",
        "| skill | namespace | pattern | looks | runs with / without | difference | interval "
        "| p | alpha |",
        "|---|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for s in sorted(last["under_test"], key=lambda s: (str(s.get("namespace")), s["label"])):
        if s.get("looks") is None:
            lines.append(
                f"| {s['label']} | {s.get('namespace')} | `{s.get('pattern')}` | 0 | - | - | - "
                "| - | - |"
            )
            continue
        lines.append(
            f"| {s['label']} | {s['namespace']} | `{s['pattern']}` | {s['looks']} | "
            f"{s['exposures_with']} / {s['exposures_without']} | "
            f"{s['difference'] * 100:+.1f} | [{s['ci_low'] * 100:+.1f}, "
            f"{s['ci_high'] * 100:+.1f}] | {s['p_value']:.3g} | {s['alpha']:.3g} |"
        )
    lines += [
        "",
        "## Random labels",
        "",
        f"The same loop with outcomes drawn with probability {config.random_label_rate} "
        f"whatever the run did, {len(random['seeds'])} seeds x {settings['nights']} nights.",
        "",
        "| seed | skills ever active | experiments | rejected | unversioned matched |",
        "|---:|---|---:|---:|---:|",
    ]
    for s in random["seeds"]:
        active = ", ".join(
            f"{a['label']} `{a['pattern']}` (night {a['first_active_night']})"
            for a in s["ever_active"]
        )
        v = s["versions"]
        matched = f"{v['right']}/{v['checkable']}" if v["right"] is not None else "n/a"
        lines.append(
            f"| {s['seed']} | {active or 'none'} | {s['experiments']} | {s['rejected']} | "
            f"{matched} |"
        )
    return "\n".join(lines) + "\n"


def _sensitivity_lines(settings: dict[str, Any]) -> list[str]:
    """The design's power table and the loops at other rule effects."""
    power = settings.get("power")
    lines: list[str] = []
    if power:
        nights = len(power["rows"][0]["by_night"])
        shown = [n for n in (4, 6, 8, 9, nights) if n <= nights]
        shown = list(dict.fromkeys(shown))
        lines += [
            "",
            "## What the test can see at this design",
            "",
            "The chance that one skill under test is promoted by the learn after each night, "
            "from coach's own sequential test fed simulated nightly estimates "
            f"(`bench/loop_power.py`: {power['runs_per_namespace']} runs of its namespace a "
            f"night, half with the skill, success rate about {power['rate']:.0%}, 2,000 "
            "simulated experiments per row; effect 0 is the chance of promoting a skill that "
            "does nothing). The planted rules' own effects at this setting: "
            + ", ".join(f"{p:+.1f}" for p in power["planted"])
            + " points.",
            "",
            "| effect (points) | " + " | ".join(f"by night {n}" for n in shown) + " |",
            "|---:|" + "---:|" * len(shown),
        ]
        for row in power["rows"]:
            lines.append(
                f"| {row['effect']:+.1f} | "
                + " | ".join(f"{row['by_night'][n - 1]:.1%}" for n in shown)
                + " |"
            )
    for s in settings.get("sensitivity", []):
        lines += [
            "",
            f"Sensitivity: the same main loop with planted rules costing "
            f"{s['rule_effect'] * 100:.0f} points when broken (each worth "
            + ", ".join(f"{p:+.1f}" for p in s["rule_points"])
            + " points in the prompt): "
            f"{s['rules_active']}/{s['rules']} rules active after the last night"
            + (f" (missing {', '.join(s['missing'])})" if s["missing"] else "")
            + ", first active on nights "
            + (", ".join(f"{k} {v}" for k, v in sorted(s["first_active"].items())) or "none")
            + f"; gap to the oracle on the last night {s['gap']:+.1f} points; harmful or noise "
            f"skills ever active: {', '.join(s['bad_ever_active']) or 'none'}.",
        ]
    return lines

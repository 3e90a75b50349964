"""The simulated production traffic of the closed-loop benchmark (``bench/loop.py``): pure parts,
no ``coach`` run.

Three domains whose tasks never repeat (every request is a new task id), several agents, many
users (the units of assignment). Each request is drawn once with all its random numbers
(common random numbers), so the same request can be played under any prompt: the arm it was
assigned to, the control prompt, or the oracle prompt that holds exactly the planted rules.

What a prompt does to an agent (compliance ``c``, :data:`COMPLIANCE` by default): for a skill
whose pattern is one of a planted rule's features (``tests/synth.py: rule_features``), with
probability ``c`` the run does not break that rule; for a decoy skill ("call the decoy tool"),
with probability ``c`` the run calls the decoy tool; any other (noise) skill changes nothing.

The planted rules and the decoys, in success-rate points:

- A request's base success probability is uniform in [0.55, 0.95]; its difficulty ``d`` in
  [0, 1] is 1 at 0.55. Each agent adds its own offset (``AGENT_OFFSETS``).
- A rule (rate ``r``, effect ``e``) is broken naturally with probability ``r * (0.5 + d)``
  (harder requests break rules more often, as in ``synth.generate_planted``); a broken rule
  costs ``e``.
- A decoy tool is called naturally with probability ``0.6 * (1 - d)**2`` (mostly on easy
  requests) and costs ``DECOY_EFFECT * d`` whenever it is called: harmless where agents call it
  of their own accord, harmful on the hard requests they call it on only when told to. Offline it
  looks helpful (the runs that call it are the easy ones); told to call it, agents lose about
  ``c * DECOY_EFFECT * 0.45`` points.
- Noise tools are called with probability ``0.2 + 0.6 d`` (``synth._planted_run``) and cost
  nothing; a repeated lookup and a ``notify`` argument neither.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from loop_arms import Arm  # noqa: E402
from synth import (  # noqa: E402
    DomainSpec,
    PlantedRule,
    TaskKind,
    _call,
    _eligible,
    _planted_run,
    rule_features,
)

COMPLIANCE = 0.8
VERSIONED_SHARE = 0.7
BASE_LOW, BASE_HIGH = 0.55, 0.95
RULE_RATE, RULE_EFFECT = 0.4, 0.3
DECOY_EFFECT = 0.3
AGENT_OFFSETS = {"agent-a": 0.03, "agent-b": 0.0, "agent-c": -0.02, "agent-d": -0.04}
BASE_PROMPT = "You are a customer service agent. Follow the policy of the business you serve."
# 2025-01-01T00:00:00Z: night n (1-based) runs from EPOCH + (n - 1) days to EPOCH + n days.
EPOCH = 1735689600
DAY = 86400


@dataclass(frozen=True)
class LoopDomain:
    """A domain of the loop: its synth spec (task kinds, planted rules, noise tools) and the
    decoy tool that looks helpful offline and hurts when agents are told to call it."""

    spec: DomainSpec
    decoy: str

    @property
    def namespace(self) -> str:
        return f"domain:{self.spec.name}"


def loop_domains(effect: float = RULE_EFFECT, rate: float = RULE_RATE) -> tuple[LoopDomain, ...]:
    """The three domains, five planted rules in all, each rule eligible in every run of its
    domain (so that an arm-level experiment can see it within a few nights)."""
    airline = DomainSpec(
        name="airline",
        kinds=(
            TaskKind(
                "cancel_reservation", "get_reservation_details", (("reason", ("change", "other")),)
            ),
            TaskKind(
                "update_reservation",
                "get_reservation_details",
                (("cabin", ("economy", "business")),),
            ),
        ),
        rules=(
            PlantedRule("no_retry", "get_reservation_details", effect, rate),
            PlantedRule("needless_transfer", "transfer_to_human_agents", effect, rate),
        ),
        noise_tools=("get_weather",),
    )
    retail = DomainSpec(
        name="retail",
        kinds=(
            TaskKind(
                "return_items",
                "get_order_details",
                (("refund_method", ("original_payment", "gift_card")),),
            ),
        ),
        rules=(
            PlantedRule("missing_confirmation", "return_items", effect, rate),
            PlantedRule(
                "wrong_arg",
                "return_items",
                effect,
                rate,
                arg="refund_method",
                wrong_value="Original Payment Method",
            ),
        ),
        user_tool="get_customer_details",
        noise_tools=("get_store_hours",),
    )
    telecom = DomainSpec(
        name="telecom",
        kinds=(TaskKind("change_plan", "get_plan_details", (("tier", ("basic", "unlimited")),)),),
        rules=(PlantedRule("wrong_order", "change_plan", effect, rate, before="get_plan_details"),),
        user_tool="get_customer_details",
        noise_tools=("get_network_status",),
    )
    return (
        LoopDomain(airline, "offer_travel_credit"),
        LoopDomain(retail, "offer_discount_code"),
        LoopDomain(telecom, "run_speed_test"),
    )


@dataclass(frozen=True)
class SimConfig:
    """One simulated production: ``runs_per_night`` requests a night spread evenly over the
    domains, ``n_users`` users (the units), ``agents``; ``compliance`` of agents with their
    prompt; ``versioned_share`` of runs that record ``metadata.prompt_version``;
    ``random_labels``: outcomes drawn with probability ``random_label_rate`` whatever the run
    did."""

    domains: tuple[LoopDomain, ...] = field(default_factory=loop_domains)
    runs_per_night: int = 500
    n_users: int = 3000
    agents: tuple[str, ...] = tuple(AGENT_OFFSETS)
    compliance: float = COMPLIANCE
    versioned_share: float = VERSIONED_SHARE
    random_labels: bool = False
    random_label_rate: float = 0.6
    seed: int = 0
    domain_base_prompts: bool = False

    def base_prompt(self, namespace: str) -> str:
        """The base prompt runs of ``namespace`` get before coach rendered one: one for every
        domain (``BASE_PROMPT``, also given to coach as ``--base-prompt``), or with
        ``domain_base_prompts`` one of each domain's own (coach then takes it from the traces)."""
        if not self.domain_base_prompts:
            return BASE_PROMPT
        name = namespace.split(":", 1)[-1]
        return f"You are the {name} customer service agent. Follow the {name} policy."


# ---------------------------------------------------------------------------------------------
# Skills -> behaviour
# ---------------------------------------------------------------------------------------------


def skill_pattern(skill: Mapping[str, Any]) -> str:
    """A Skillbook skill's pattern id (``source.pattern_id``, else ``evidence.pattern_id``)."""
    source = skill.get("source") or {}
    return str(source.get("pattern_id") or (skill.get("evidence") or {}).get("pattern_id") or "")


def skill_direction(skill: Mapping[str, Any]) -> str:
    """``helpful`` or ``harmful``: as learned (``source.direction``, ``evidence.direction``),
    else from the wording."""
    for where in ("source", "evidence"):
        direction = (skill.get(where) or {}).get("direction")
        if direction in ("helpful", "harmful"):
            return str(direction)
    text = str(skill.get("instruction", "")).lower()
    return "harmful" if text.startswith(("avoid", "do not", "don't")) else "helpful"


def _keeping_direction(rule: PlantedRule, feature: str) -> str:
    """The direction a skill on ``feature`` must have to keep ``rule``: ``helpful`` for the
    rule's mirror images (the lookup before the write, the correct argument values, the retry),
    ``harmful`` for the behaviour itself."""
    if feature.startswith(("tool_order:", "repeated_call:")):
        return "helpful"
    if rule.kind == "wrong_arg" and not feature.endswith(f"={rule.wrong_value}"):
        return "helpful"
    return "harmful"


def classify_skill(skill: Mapping[str, Any], domains: Iterable[LoopDomain]) -> str:
    """What a skill is in the simulation: ``rule:<domain>:<kind>`` (its pattern recovers a
    planted rule of its namespace), ``decoy`` (it tells agents to call a decoy tool),
    ``anti-decoy`` (it tells them to avoid it: harmless), ``anti-rule:<domain>:<kind>`` (a rule's
    feature in the direction that breaks it: harmful, though agents ignore it here),
    ``improvement`` (a proposal to change the base instructions: never rendered) or ``noise``
    (anything else)."""
    pattern = skill_pattern(skill)
    if skill.get("section") == "improvements" or pattern.startswith("improvement:"):
        return "improvement"
    for domain in domains:
        if skill.get("namespace") not in (domain.namespace, "global"):
            continue
        for rule in domain.spec.rules:
            if pattern in rule_features(rule, domain.spec):
                keeps = _keeping_direction(rule, pattern) == skill_direction(skill)
                return f"{'' if keeps else 'anti-'}rule:{domain.spec.name}:{rule.kind}"
        if pattern.split(":", 1)[-1].split("->")[0] == domain.decoy or pattern.endswith(
            domain.decoy
        ):
            return "decoy" if skill_direction(skill) == "helpful" else "anti-decoy"
    return "noise"


@dataclass(frozen=True)
class Told:
    """What a prompt tells the agents of one domain: the planted rules they are told to keep
    (indices into the domain's rules) and whether to call / avoid the decoy tool."""

    rules: frozenset[int] = frozenset()
    decoy: bool = False
    avoid_decoy: bool = False


def told_by(skills: Iterable[Mapping[str, Any]], domain: LoopDomain) -> Told:
    """The :class:`Told` of a prompt carrying ``skills`` (Skillbook skill dicts)."""
    rules: set[int] = set()
    decoy = avoid = False
    for skill in skills:
        label = classify_skill(skill, [domain])
        if label.startswith("rule:"):
            kind = label.rsplit(":", 1)[1]
            rules.update(i for i, r in enumerate(domain.spec.rules) if r.kind == kind)
        decoy |= label == "decoy"
        avoid |= label == "anti-decoy"
    return Told(frozenset(rules), decoy, avoid)


def oracle(domain: LoopDomain) -> Told:
    """The oracle prompt: exactly the planted rules."""
    return Told(frozenset(range(len(domain.spec.rules))))


# ---------------------------------------------------------------------------------------------
# Requests and runs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request with every random number it needs, so that it can be played under any
    prompt with the same draws."""

    index: int
    domain: LoopDomain
    kind: TaskKind
    task: str
    user: str
    agent: str
    base: float
    difficulty: float
    started_at: int
    natural: tuple[bool, ...]  # per rule of the domain: broken when not told otherwise
    comply: tuple[bool, ...]  # per rule: would keep it when told to
    decoy_natural: bool
    decoy_comply: bool
    u_outcome: float
    versioned: bool
    seed: int


def draw_requests(config: SimConfig, night: int) -> list[Request]:
    """The requests of ``night`` (1-based): deterministic in (config.seed, night)."""
    rng = random.Random(f"loop-{config.seed}-{night}")
    start = EPOCH + (night - 1) * DAY
    requests = []
    for index in range(config.runs_per_night):
        domain = config.domains[index % len(config.domains)]
        kind = rng.choice(domain.spec.kinds)
        base = rng.uniform(BASE_LOW, BASE_HIGH)
        difficulty = (BASE_HIGH - base) / (BASE_HIGH - BASE_LOW)
        eligible = [_eligible(r, domain.spec, kind) for r in domain.spec.rules]
        natural = tuple(
            ok and rng.random() < min(0.95, r.rate * (0.5 + difficulty))
            for ok, r in zip(eligible, domain.spec.rules, strict=True)
        )
        comply = tuple(rng.random() < config.compliance for _ in domain.spec.rules)
        requests.append(
            Request(
                index=index,
                domain=domain,
                kind=kind,
                task=f"{domain.spec.name}-s{config.seed}-n{night:02d}-{index:05d}",
                user=f"user-{rng.randrange(config.n_users):05d}",
                agent=rng.choice(config.agents),
                base=base,
                difficulty=difficulty,
                started_at=start + 60 + rng.randrange(DAY - 600),
                natural=natural,
                comply=comply,
                decoy_natural=rng.random() < 0.6 * (1 - difficulty) ** 2,
                decoy_comply=rng.random() < config.compliance,
                u_outcome=rng.random(),
                versioned=rng.random() < config.versioned_share,
                seed=rng.getrandbits(64),
            )
        )
    return requests


def behaviour(request: Request, told: Told) -> tuple[tuple[bool, ...], bool]:
    """The rules the run breaks (per rule of the domain) and whether it calls the decoy tool,
    under a prompt that tells ``told``."""
    broken = tuple(
        nat and not (i in told.rules and ok)
        for i, (nat, ok) in enumerate(zip(request.natural, request.comply, strict=True))
    )
    decoy = request.decoy_natural
    if told.decoy and request.decoy_comply:
        decoy = True
    if told.avoid_decoy and request.decoy_comply:
        decoy = False
    return broken, decoy


def success_probability(
    request: Request, broken: tuple[bool, ...], decoy: bool, config: SimConfig
) -> float:
    """The run's probability of success (see the module docstring)."""
    if config.random_labels:
        return config.random_label_rate
    p = request.base + AGENT_OFFSETS.get(request.agent, 0.0)
    p -= sum(r.effect for r, b in zip(request.domain.spec.rules, broken, strict=True) if b)
    if decoy:
        p -= DECOY_EFFECT * request.difficulty
    return min(0.98, max(0.02, p))


def expected_success(request: Request, told: Told, config: SimConfig) -> float:
    """The success probability of ``request`` played under a prompt that tells ``told``."""
    broken, decoy = behaviour(request, told)
    return success_probability(request, broken, decoy, config)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def play(
    request: Request, arm: Arm, told: Told, config: SimConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Chat JSONL record of ``request`` run under ``arm`` (whose skills tell ``told``), and
    the run's facts for the benchmark (not given to coach)."""
    domain = request.domain
    broken, decoy = behaviour(request, told)
    p = success_probability(request, broken, decoy, config)
    rng = random.Random(request.seed)
    rates = {
        r: (1.0 if b else 0.0)
        for r, b in zip(domain.spec.rules, broken, strict=True)
        if _eligible(r, domain.spec, request.kind)
    }
    messages, _ = _planted_run(
        rng,
        domain.spec,
        request.kind,
        request.task,
        request.user,
        rates,
        0.2 + 0.6 * request.difficulty,
    )
    messages[0] = {"role": "system", "content": arm.text}
    if decoy:
        call_id = f"c{len(messages)}"
        messages[-1:-1] = [
            _call(call_id, domain.decoy, {"user_id": request.user}),
            {"role": "tool", "tool_call_id": call_id, "content": '{"status": "offered"}'},
        ]
    for offset, message in enumerate(messages):
        message["timestamp"] = _iso(request.started_at + 2 * offset)
    success = request.u_outcome < p
    metadata: dict[str, Any] = {
        "task_id": request.task,
        "task_type": request.kind.write,
        "domain": domain.spec.name,
        "agent": request.agent,
        "user_id": request.user,
        "started_at": _iso(request.started_at),
    }
    if request.versioned and arm.prompt_version:
        metadata["prompt_version"] = arm.prompt_version
    record = {
        "id": f"s{config.seed}-n{request.task.split('-n', 1)[1]}-{domain.spec.name}",
        "messages": messages,
        "outcome": "success" if success else "failure",
        "metadata": metadata,
    }
    facts = {
        "id": record["id"],
        "namespace": domain.namespace,
        "arm": arm.arm,
        "prompt_version": arm.prompt_version,
        "versioned": "prompt_version" in metadata,
        "user": request.user,
        "agent": request.agent,
        "success": success,
        "p": p,
        "broken": [r.kind for r, b in zip(domain.spec.rules, broken, strict=True) if b],
        "decoy": decoy,
    }
    return record, facts

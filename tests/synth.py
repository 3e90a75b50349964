"""Synthetic Chat JSONL trajectories with planted behaviours, for tests and evaluation.

Each task has its own base success probability (tasks differ in difficulty, as real ones do) and a
kind (``booking`` tasks are harder and always call ``book_trip``: a confound that a naive contrast
mistakes for a harmful tool). Planted behaviour: in a share of runs the agent calls the write
action without an explicit user confirmation, which lowers the log-odds of success by
``effect``. A noise behaviour (calling ``get_weather``) has no effect.

:func:`generate_planted` is the planted-rule benchmark: configurable domains, task kinds, tools
and users, rules of every kind in :data:`RULE_KINDS` with a known effect on the success rate,
noise behaviours without one, and :func:`rule_features` mapping each rule onto the feature ids
that count as recovering it; :func:`score_recovery` scores the skills that would be active
against them (``make eval``).

Run as a script, it writes a planted set: ``python tests/synth.py planted.jsonl --seed 7``
(``--tasks``, ``--trials``, ``--agents a,b`` as in :class:`SynthConfig`).
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.skillbook import Candidate

__all__ = [
    "DomainSpec",
    "PlantedConfig",
    "PlantedRule",
    "Recovery",
    "RETRY_ERROR",
    "RULE_KINDS",
    "SynthConfig",
    "TaskKind",
    "airline_domain",
    "generate",
    "generate_planted",
    "rule_features",
    "score_recovery",
    "write_jsonl",
]


@dataclass(frozen=True)
class SynthConfig:
    """``n_tasks`` x ``trials`` trajectories per agent in ``agents``; ``effect``: change in
    log-odds of success when the write action is unconfirmed (negative lowers success);
    ``p_unconfirmed``: share of runs with that behaviour; ``p_noise``: share calling the noise
    tool; ``seed``: random seed."""

    n_tasks: int = 60
    trials: int = 6
    agents: tuple[str, ...] = ("agent-a",)
    effect: float = -2.5
    p_unconfirmed: float = 0.4
    p_noise: float = 0.5
    seed: int = 0
    domain: str = "travel"


def _call(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
        ],
    }


def generate(config: SynthConfig) -> Iterator[dict[str, Any]]:
    """Yield Chat JSONL records (see :mod:`pipeline.ingest.formats.chat_jsonl`)."""
    rng = random.Random(config.seed)
    tasks = []
    for task in range(config.n_tasks):
        kind = "booking" if task % 2 == 0 else "cancellation"
        base = rng.uniform(-1.5, 0.0) if kind == "booking" else rng.uniform(0.5, 2.0)
        tasks.append((task, kind, base))
    for agent in config.agents:
        for task, kind, base in tasks:
            for trial in range(config.trials):
                unconfirmed = rng.random() < config.p_unconfirmed
                noise = rng.random() < config.p_noise
                logit = base + (config.effect if unconfirmed else 0.0)
                success = rng.random() < 1 / (1 + math.exp(-logit))
                write = "book_trip" if kind == "booking" else "cancel_trip"
                messages: list[dict[str, Any]] = [
                    {"role": "system", "content": "You are a travel agent. Follow the policy."},
                    {"role": "user", "content": f"I need help with my {kind}, task {task}."},
                    _call("c1", "get_user", {"user_id": f"u{task}"}),
                    {"role": "tool", "tool_call_id": "c1", "content": '{"name": "Ada"}'},
                ]
                if noise:
                    messages += [
                        _call("c2", "get_weather", {"city": "Paris"}),
                        {"role": "tool", "tool_call_id": "c2", "content": "sunny"},
                    ]
                messages.append(
                    {"role": "assistant", "content": f"I can do the {kind}. Shall I proceed?"}
                )
                messages.append(
                    {
                        "role": "user",
                        "content": "Hmm, what does it cost?"
                        if unconfirmed
                        else "Yes, please proceed.",
                    }
                )
                messages += [
                    _call("c3", write, {"trip_id": f"T{task}"}),
                    {"role": "tool", "tool_call_id": "c3", "content": "done"},
                    {"role": "assistant", "content": "All done."},
                ]
                yield {
                    "id": f"{agent}-task{task}-trial{trial}",
                    "messages": messages,
                    "outcome": "success" if success else "failure",
                    "metadata": {
                        "task_id": str(task),
                        "agent": agent,
                        "domain": config.domain,
                        "trial": trial,
                        "task_type": kind,
                    },
                }


def write_jsonl(path: Path, records: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> Path:
    """Write records one JSON object per line; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Planted-rule benchmark: several kinds of rules, each with a known effect, plus noise.
# ---------------------------------------------------------------------------------------------

RULE_KINDS = (
    "missing_confirmation",
    "wrong_arg",
    "wrong_order",
    "no_retry",
    "needless_transfer",
)

# The transient error the ``no_retry`` rule plants (a tool result flagged ``error``).
RETRY_ERROR = "Error: service temporarily unavailable, please retry"


@dataclass(frozen=True)
class PlantedRule:
    """A behaviour that lowers the success rate of the runs that show it.

    ``kind`` (one of :data:`RULE_KINDS`) and what it is about:

    ===================== ===============================================================
    missing_confirmation  write action ``tool`` called without an explicit yes from the user
    wrong_arg             write action ``tool`` called with ``arg`` = ``wrong_value`` (the wrong
                          shape: a display label where the tool takes an enum value)
    wrong_order           write action ``tool`` called before ``before`` (the lookup of its
                          task kind) instead of after it
    no_retry              ``tool`` returned :data:`RETRY_ERROR` and the agent did not retry
    needless_transfer     transfer tool ``tool`` called on a request the agent had handled
    ===================== ===============================================================

    ``effect``: drop in the probability of success (0.2 = 20 points of success rate) of a run
    that breaks the rule, against the same run keeping it. ``rate``: share of the eligible runs
    (those of the task kinds that call ``tool``; every run for ``needless_transfer``) that break
    it, on average over tasks (harder tasks break it more often, see :class:`PlantedConfig`).
    """

    kind: str
    tool: str
    effect: float = 0.2
    rate: float = 0.3
    arg: str | None = None
    wrong_value: str | None = None
    before: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in RULE_KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}; choose one of {RULE_KINDS}")
        if self.kind == "wrong_arg" and not (self.arg and self.wrong_value):
            raise ValueError("a wrong_arg rule needs arg and wrong_value")
        if self.kind == "wrong_order" and not self.before:
            raise ValueError("a wrong_order rule needs before (the tool that should come first)")
        if not 0 <= self.rate <= 1 or not -1 <= self.effect <= 1:
            raise ValueError("rate must be in [0, 1] and effect in [-1, 1]")


@dataclass(frozen=True)
class TaskKind:
    """A kind of task: the lookup tool it calls, then the write action it ends in, with the
    write action's low-cardinality arguments and their correct values (drawn uniformly; they
    have no effect unless a ``wrong_arg`` rule names them)."""

    write: str
    lookup: str
    args: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class DomainSpec:
    """A domain (one namespace, ``domain:<name>``): its task kinds, tools, planted rules and
    noise. Noise behaviours, none of which affects success: calling each of ``noise_tools``
    (more often on harder tasks: a confound that only a within-task contrast sees through),
    calling ``user_tool`` twice with the same arguments (``p_repeat``), and a boolean ``notify``
    argument on every write action."""

    name: str
    kinds: tuple[TaskKind, ...]
    rules: tuple[PlantedRule, ...] = ()
    user_tool: str = "get_user_details"
    transfer_tool: str = "transfer_to_human_agents"
    noise_tools: tuple[str, ...] = ("get_weather",)
    p_repeat: float = 0.2


def airline_domain(effect: float = 0.2, rate: float = 0.3, name: str = "airline") -> DomainSpec:
    """The default benchmark domain: three task kinds (book, cancel, update) and one planted rule
    of each kind in :data:`RULE_KINDS`, all with the same ``effect`` and ``rate``."""
    return DomainSpec(
        name=name,
        kinds=(
            TaskKind(
                "book_flight",
                "search_flights",
                (("cabin", ("economy", "business")), ("insurance", ("yes", "no"))),
            ),
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
            PlantedRule("missing_confirmation", "cancel_reservation", effect, rate),
            PlantedRule(
                "wrong_arg", "book_flight", effect, rate, arg="cabin", wrong_value="Economy Class"
            ),
            PlantedRule(
                "wrong_order", "update_reservation", effect, rate, before="get_reservation_details"
            ),
            PlantedRule("no_retry", "search_flights", effect, rate),
            PlantedRule("needless_transfer", "transfer_to_human_agents", effect, rate),
        ),
        noise_tools=("get_weather", "get_travel_tips"),
    )


@dataclass(frozen=True)
class PlantedConfig:
    """``n_trajectories`` runs in all, ``trials`` runs per task, tasks spread over ``domains``
    round robin and over each domain's task kinds round robin; ``n_users`` users per domain (a
    task belongs to one user); ``agents`` run the tasks in turn.

    Each task gets a base success probability uniform in [``base_low``, ``base_high``]; its
    difficulty ``d`` in [0, 1] (1 at ``base_low``) raises how often its runs break each rule
    (rate x (0.5 + d)) and call the noise tools (0.2 + 0.6 d). A run succeeds with probability
    base - the sum of the effects of the rules it breaks, clipped to [0.02, 0.98]; with
    ``random_labels`` it succeeds with probability 0.5 whatever it did.
    """

    domains: tuple[DomainSpec, ...] = field(default_factory=lambda: (airline_domain(),))
    n_trajectories: int = 2000
    trials: int = 8
    n_users: int = 50
    agents: tuple[str, ...] = ("agent-a",)
    base_low: float = 0.55
    base_high: float = 0.95
    random_labels: bool = False
    seed: int = 0


def rule_features(rule: PlantedRule, domain: DomainSpec) -> frozenset[str]:
    """The feature ids (:mod:`pipeline.analyze.features`) that count as recovering ``rule``:

    ===================== ===================================================================
    missing_confirmation  ``unconfirmed_write:<tool>``
    wrong_arg             ``write_arg:<tool>.<arg>=<value>`` for the wrong value and for each
                          correct value of that argument (the correct values are its mirror
                          image: runs that use them succeed more often)
    wrong_order           ``tool_order:<before>-><tool>`` (its absence is the rule)
    no_retry              ``unretried_error:<tool>`` (the behaviour itself),
                          ``tool_error:<tool>:<signature of RETRY_ERROR>``, ``repeated_call:<tool>``
                          (the retry itself)
    needless_transfer     ``transfer:<tool>``, ``tool_called:<tool>``
    ===================== ===================================================================
    """
    if rule.kind == "missing_confirmation":
        return frozenset({f"unconfirmed_write:{rule.tool}"})
    if rule.kind == "wrong_arg":
        values = {str(rule.wrong_value)}
        for kind in domain.kinds:
            if kind.write == rule.tool:
                values.update(v for arg, vs in kind.args if arg == rule.arg for v in vs)
        return frozenset(f"write_arg:{rule.tool}.{rule.arg}={v}" for v in values)
    if rule.kind == "wrong_order":
        return frozenset({f"tool_order:{rule.before}->{rule.tool}"})
    if rule.kind == "no_retry":
        from pipeline.analyze import error_signature

        return frozenset(
            {
                f"unretried_error:{rule.tool}",
                f"tool_error:{rule.tool}:{error_signature(RETRY_ERROR)}",
                f"repeated_call:{rule.tool}",
            }
        )
    return frozenset({f"transfer:{rule.tool}", f"tool_called:{rule.tool}"})


class _Run:
    """Builds one trajectory's chat messages."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.calls = 0

    def call(self, name: str, args: dict[str, Any], result: str, error: bool = False) -> None:
        self.calls += 1
        call_id = f"c{self.calls}"
        self.messages.append(_call(call_id, name, args))
        tool: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": result}
        if error:
            tool["error"] = True
        self.messages.append(tool)

    def say(self, role: str, text: str) -> None:
        self.messages.append({"role": role, "content": text})


def _planted_run(
    rng: random.Random,
    domain: DomainSpec,
    kind: TaskKind,
    task: str,
    user: str,
    rates: dict[PlantedRule, float],
    p_noise: float,
) -> tuple[list[dict[str, Any]], list[PlantedRule]]:
    """The messages of one run and the rules it broke."""
    broken = [r for r, p in rates.items() if rng.random() < p]
    kinds = {r.kind for r in broken}
    run = _Run()
    run.say("system", f"You are a {domain.name} agent. Follow the policy.")
    verb = kind.write.split("_")[0]
    run.say("user", f"Hi, I am {user}. I would like to {verb} ({task}).")
    run.call(domain.user_tool, {"user_id": user}, json.dumps({"user_id": user, "tier": "gold"}))
    if rng.random() < domain.p_repeat:
        run.call(domain.user_tool, {"user_id": user}, json.dumps({"user_id": user, "tier": "gold"}))
    for noise in domain.noise_tools:
        if rng.random() < p_noise:
            run.call(noise, {"city": rng.choice(["Paris", "Lima", "Oslo"])}, "sunny")
    late_lookup = "wrong_order" in kinds
    lookup_args = {"id": f"R-{task}"}

    def lookup() -> None:
        retry_rule = any(r.kind == "no_retry" and r.tool == kind.lookup for r in rates)
        if retry_rule and "no_retry" in kinds:
            run.call(kind.lookup, lookup_args, RETRY_ERROR, error=True)
            return
        if retry_rule and rng.random() < 0.15:  # an error that the agent does retry
            run.call(kind.lookup, lookup_args, RETRY_ERROR, error=True)
        run.call(kind.lookup, lookup_args, json.dumps({"id": f"R-{task}", "status": "ok"}))

    if not late_lookup:
        lookup()
    args: dict[str, Any] = {"id": f"R-{task}"}
    for arg, values in kind.args:
        args[arg] = rng.choice(values)
    for rule in broken:
        if rule.kind == "wrong_arg":
            args[str(rule.arg)] = rule.wrong_value
    args["notify"] = rng.random() < 0.5
    run.say("assistant", f"I can {verb} this for you: {json.dumps(args)}. Shall I proceed?")
    if "missing_confirmation" in kinds:
        run.say("user", "What happens to my miles after that?")
    else:
        run.say("user", "Yes, please go ahead.")
    run.call(kind.write, args, json.dumps({"status": "done"}))
    if late_lookup:
        lookup()
    if "needless_transfer" in kinds:
        run.call(domain.transfer_tool, {"summary": "customer request"}, "transferred")
    run.say("assistant", "Is there anything else I can help with?")
    return run.messages, broken


def _eligible(rule: PlantedRule, domain: DomainSpec, kind: TaskKind) -> bool:
    if rule.kind == "needless_transfer":
        return rule.tool == domain.transfer_tool
    if rule.kind == "no_retry":
        return rule.tool == kind.lookup
    if rule.kind == "wrong_order":
        return rule.tool == kind.write and rule.before == kind.lookup
    return rule.tool == kind.write


def generate_planted(config: PlantedConfig) -> Iterator[dict[str, Any]]:
    """Yield ``config.n_trajectories`` Chat JSONL records (see
    :mod:`pipeline.ingest.formats.chat_jsonl`) with the planted rules and noise of
    :class:`PlantedConfig`; ``metadata`` carries task_id, task_type (the write action), domain,
    agent, user_id, trial and ``broken_rules`` (the kinds of the rules the run broke).
    Deterministic for a given config."""
    rng = random.Random(config.seed)
    n_tasks = max(1, math.ceil(config.n_trajectories / max(config.trials, 1)))
    emitted = 0
    for index in range(n_tasks):
        domain = config.domains[index % len(config.domains)]
        local = index // len(config.domains)
        kind = domain.kinds[local % len(domain.kinds)]
        task = f"{domain.name}-{local}"
        user = f"user_{rng.randrange(config.n_users)}"
        base = rng.uniform(config.base_low, config.base_high)
        span = config.base_high - config.base_low
        difficulty = (config.base_high - base) / span if span > 0 else 0.5
        rates = {
            r: min(0.95, r.rate * (0.5 + difficulty))
            for r in domain.rules
            if _eligible(r, domain, kind)
        }
        p_noise = 0.2 + 0.6 * difficulty
        for trial in range(config.trials):
            if emitted >= config.n_trajectories:
                return
            agent = config.agents[emitted % len(config.agents)]
            messages, broken = _planted_run(rng, domain, kind, task, user, rates, p_noise)
            p = base - sum(r.effect for r in broken)
            p = 0.5 if config.random_labels else min(0.98, max(0.02, p))
            success = rng.random() < p
            yield {
                "id": f"{task}-{agent}-t{trial}",
                "messages": messages,
                "outcome": "success" if success else "failure",
                "metadata": {
                    "task_id": task,
                    "task_type": kind.write,
                    "domain": domain.name,
                    "agent": agent,
                    "user_id": user,
                    "trial": trial,
                    "broken_rules": sorted(r.kind for r in broken),
                },
            }
            emitted += 1


@dataclass(frozen=True)
class Recovery:
    """Planted rules against the skills that would be active.

    ``active``: (namespace, feature_id) of the significant candidates. ``true_positive``: those
    that recover some planted rule. ``rules``: per planted rule, ``{"domain", "kind", "tool",
    "effect", "recovered": bool, "by": [feature ids that recovered it]}``. ``precision``:
    true positives / active (None without any active skill); ``recall``: rules recovered /
    rules planted (None without any planted rule).
    """

    active: tuple[tuple[str, str], ...]
    true_positive: tuple[tuple[str, str], ...]
    rules: tuple[dict[str, Any], ...]

    @property
    def precision(self) -> float | None:
        return len(self.true_positive) / len(self.active) if self.active else None

    @property
    def recall(self) -> float | None:
        if not self.rules:
            return None
        return sum(r["recovered"] for r in self.rules) / len(self.rules)

    @property
    def false_positives(self) -> list[tuple[str, str]]:
        return sorted(set(self.active) - set(self.true_positive))


def score_recovery(candidates: Iterable[Candidate], domains: Sequence[DomainSpec]) -> Recovery:
    """Score the significant ``candidates`` (the skills ``auto`` mode would activate) against
    the rules planted in ``domains`` (rule -> feature ids: :func:`synth.rule_features`;
    a domain's namespace is ``domain:<name>``)."""
    active = sorted({(c.namespace, c.pattern_id) for c in candidates if c.significant})
    wanted: dict[tuple[str, str], list[int]] = {}
    rules: list[dict[str, Any]] = []
    for domain in domains:
        namespace = f"domain:{domain.name}"
        for rule in domain.rules:
            if rule.effect == 0:
                continue
            for feature_id in rule_features(rule, domain):
                wanted.setdefault((namespace, feature_id), []).append(len(rules))
            rules.append(
                {
                    "domain": domain.name,
                    "kind": rule.kind,
                    "tool": rule.tool,
                    "effect": rule.effect,
                    "recovered": False,
                    "by": [],
                }
            )
    hits = [key for key in active if key in wanted]
    for key in hits:
        for index in wanted[key]:
            rules[index]["recovered"] = True
            rules[index]["by"].append(key[1])
    return Recovery(tuple(active), tuple(hits), tuple(rules))


def main(argv: Sequence[str] | None = None) -> None:
    """Write :func:`generate` records for the options of :class:`SynthConfig` to a JSONL file."""
    import argparse

    parser = argparse.ArgumentParser(description="Write a planted synthetic set (Chat JSONL).")
    parser.add_argument("path", type=Path)
    parser.add_argument("--seed", type=int, default=SynthConfig.seed)
    parser.add_argument("--tasks", type=int, default=SynthConfig.n_tasks)
    parser.add_argument("--trials", type=int, default=SynthConfig.trials)
    parser.add_argument("--agents", default=",".join(SynthConfig.agents))
    parser.add_argument(
        "--rules",
        type=int,
        metavar="RUNS",
        help="write RUNS runs of the five planted rules of airline_domain instead "
        "(generate_planted; --seed and --effect apply)",
    )
    parser.add_argument(
        "--effect", type=float, default=0.2, help="with --rules: each rule's effect"
    )
    args = parser.parse_args(argv)
    if args.rules:
        planted = PlantedConfig(
            domains=(airline_domain(effect=args.effect),), n_trajectories=args.rules, seed=args.seed
        )
        write_jsonl(args.path, generate_planted(planted))
        return
    config = SynthConfig(
        seed=args.seed,
        n_tasks=args.tasks,
        trials=args.trials,
        agents=tuple(args.agents.split(",")),
    )
    write_jsonl(args.path, generate(config))


if __name__ == "__main__":
    main(sys.argv[1:])

"""The arms of a prompt experiment and the effect of each skill under test on them.

One skill under test gives two arms: ``control`` (the active skills) and ``candidate`` (the
active skills and the one under test). Several skills under test are tested at once, each on
all of the experiment's traffic, by a two-level factorial design: with ``k`` skills there are
``m = 2**q`` arms (the smallest ``q`` with ``m > k``); arm ``r`` (``r = 0 .. m - 1``) holds the
skill of design column ``c_j`` when the number of bits set in ``r & c_j`` is odd (the rows of a
Sylvester-Hadamard matrix, Box, Hunter and Hunter, *Statistics for Experimenters*, 2nd ed.,
ch. 5-6). The columns are the single bits first (a full factorial while ``k <= q``), then the
other masks, so that every arm's set of skills differs; arm 0 holds none (it is ``control``).
Each column is in half of the arms and every two columns are orthogonal, so each skill's main
effect is estimated free of the others' (assuming no interaction between prompt lines; with
``k > q`` interactions are aliased with main effects, the price of a fractional design).

The effect of skill ``j`` is the mean success rate of the arms holding it minus the mean of the
arms without it (each arm weighted equally, which keeps the estimate unbiased whatever the
arms' shares), computed within each agent and averaged over agents weighted by their number of
trajectories (direct standardisation). Its variance takes each agent's pooled success rate
(exact under the null of no effect, as in :mod:`pipeline.experiment.sequential`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["ArmCounts", "design_arms", "skill_effect"]


def _columns(k: int, q: int) -> list[int]:
    """``k`` distinct non-zero ``q``-bit masks: the single bits first, then the rest in order."""
    singles = [1 << b for b in range(q)]
    others = [c for c in range(1, 1 << q) if c not in singles]
    return (singles + others)[:k]


def design_arms(skill_ids: Sequence[str]) -> list[tuple[str, ...]]:
    """The skills under test each arm adds, arm 0 (control) first: one tuple per arm of the
    design described in the module docstring (``[(), (skill,)]`` for one skill).

    Raises:
        ValueError: no skill, or the same skill twice.
    """
    if not skill_ids:
        raise ValueError("an experiment tests at least one skill")
    if len(set(skill_ids)) != len(skill_ids):
        raise ValueError("a skill is listed twice in one experiment")
    k = len(skill_ids)
    q = max(1, k.bit_length())
    columns = _columns(k, q)
    return [
        tuple(s for s, c in zip(skill_ids, columns, strict=True) if bin(r & c).count("1") % 2)
        for r in range(1 << q)
    ]


@dataclass(frozen=True)
class ArmCounts:
    """Trajectories with a known outcome (``n``) and successes of one arm for one agent."""

    n: int
    successes: int

    def __post_init__(self) -> None:
        if not 0 <= self.successes <= self.n:
            raise ValueError(f"successes must be within [0, n], not {self.successes} of {self.n}")


def skill_effect(
    counts: Mapping[str, Mapping[str, ArmCounts]], arms: Mapping[str, Sequence[str]], skill: str
) -> tuple[float, float, int, int]:
    """The agent-standardised effect of ``skill`` on the success rate (see the module
    docstring).

    Args:
        counts: ``{agent: {arm: ArmCounts}}``.
        arms: ``{arm: skills under test it adds}`` for every arm of the experiment.
        skill: a skill under test.

    Returns:
        ``(difference, variance, exposures_with, exposures_without)``: the difference in
        success rate (arms with minus arms without, a fraction), its variance, and the
        trajectories of the agents used on each side. Agents that did not see every arm are
        left out; ``(0.0, 0.0, 0, 0)`` when none saw all.
    """
    with_ = [a for a, added in arms.items() if skill in added]
    without = [a for a in arms if a not in with_]
    if not with_ or not without:
        raise ValueError(f"{skill} is in every arm or in none")
    total_weight = difference = variance_sum = 0.0
    n_with = n_without = 0
    for by_arm in counts.values():
        if any(by_arm.get(a) is None or by_arm[a].n == 0 for a in arms):
            continue
        n = sum(by_arm[a].n for a in arms)
        pooled = sum(by_arm[a].successes for a in arms) / n
        rate = {a: by_arm[a].successes / by_arm[a].n for a in arms}
        d = sum(rate[a] for a in with_) / len(with_) - sum(rate[a] for a in without) / len(without)
        inverse = (
            sum(1 / by_arm[a].n for a in with_) / len(with_) ** 2
            + sum(1 / by_arm[a].n for a in without) / len(without) ** 2
        )
        total_weight += n
        difference += n * d
        variance_sum += n * n * pooled * (1 - pooled) * inverse
        n_with += sum(by_arm[a].n for a in with_)
        n_without += sum(by_arm[a].n for a in without)
    if total_weight == 0:
        return 0.0, 0.0, 0, 0
    return difference / total_weight, variance_sum / total_weight**2, n_with, n_without

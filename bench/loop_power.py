"""How likely coach's sequential test is to promote a planted rule by a given night, at the
closed-loop benchmark's design: the test itself (``pipeline.experiment.decide_estimate``), fed
simulated nightly estimates, without any ``coach learn`` run.

One skill under test in a namespace of ``runs`` runs a night, split evenly between the arms with
the skill and those without (the balanced factorial design), success rate about ``rate``: each
night's estimate of the skill's effect is normal with the true effect as its mean and variance
``4 * rate * (1 - rate) / runs``; the look after night ``k`` sees the pooled estimate of nights
2 to ``k`` (night 1 proposes, the first arms run on night 2), with the running p-value and
interval carried as in :mod:`pipeline.experiment.looks`.
"""

from __future__ import annotations

import random
from typing import Any

from pipeline.experiment import Decision, ExperimentSettings, decide_estimate


def promotion_chance(
    effect: float,
    *,
    runs: int,
    rate: float,
    nights: int,
    seeds: int = 2000,
    settings: ExperimentSettings | None = None,
    seed: int = 0,
) -> list[float]:
    """The share of ``seeds`` simulated experiments that promoted the skill by each night's
    learn, nights 1 to ``nights`` (night 1: 0, no arm has run). ``effect``: the candidate arm's
    difference in success rate (a fraction); ``runs``: runs of the namespace a night."""
    settings = settings or ExperimentSettings()
    alpha = settings.alpha / settings.max_under_test
    per_night = 4 * rate * (1 - rate) / runs
    rng = random.Random(seed)
    promoted_by = [0] * nights
    for _ in range(seeds):
        total = 0.0
        p, interval = 1.0, (-1.0, 1.0)
        for night in range(2, nights + 1):
            total += rng.gauss(effect, per_night**0.5)
            looks = night - 1
            look = decide_estimate(
                total / looks,
                per_night / looks,
                runs * looks,
                alpha=alpha,
                tau=settings.tau,
                max_exposures=settings.max_exposures,
                min_effect=settings.min_effect,
                previous_p=p,
                previous_interval=interval,
            )
            p, interval = look.p_value, look.interval
            if look.decision != Decision.CONTINUE:
                if look.decision == Decision.PROMOTE:
                    for later in range(night - 1, nights):
                        promoted_by[later] += 1
                break
    return [count / seeds for count in promoted_by]


def power_table(
    effects_points: list[float], *, runs: int, rate: float, nights: int, seeds: int = 2000
) -> list[dict[str, Any]]:
    """One row per effect (in points): ``effect``, ``by_night`` (the promotion chance after each
    night's learn) for :func:`promotion_chance`."""
    return [
        {
            "effect": e,
            "by_night": [
                round(x, 3)
                for x in promotion_chance(e / 100, runs=runs, rate=rate, nights=nights, seeds=seeds)
            ],
        }
        for e in effects_points
    ]

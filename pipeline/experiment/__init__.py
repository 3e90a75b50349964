"""Prompt experiments: the skills under test are shown to a random share of traffic (the
candidate arm beside the control arm), and an always-valid sequential test decides, night after
night, whether they help there.

Parts: :mod:`~pipeline.experiment.assign` (deterministic assignment of a unit to an arm),
:mod:`~pipeline.experiment.sequential` (the mixture SPRT on the agent-stratified difference in
success rate, and its decision). Other modules import them from here only.
"""

from __future__ import annotations

from pipeline.experiment.assign import CANDIDATE, CONTROL, arm_for, assignment_point
from pipeline.experiment.sequential import (
    DEFAULT_TAU,
    Decision,
    Look,
    StratumCounts,
    confidence_sequence,
    decide,
    mixture_likelihood_ratio,
    risk_difference,
)

__all__ = [
    "CANDIDATE",
    "CONTROL",
    "DEFAULT_TAU",
    "Decision",
    "Look",
    "StratumCounts",
    "arm_for",
    "assignment_point",
    "confidence_sequence",
    "decide",
    "mixture_likelihood_ratio",
    "risk_difference",
]

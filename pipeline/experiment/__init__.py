"""Prompt experiments: the skills under test are shown to a random share of traffic (the
candidate arm beside the control arm), and an always-valid sequential test decides, night after
night, whether they help there.

Parts, each depending only on those before it: :mod:`~pipeline.experiment.assign`
(deterministic assignment of a unit to an arm), :mod:`~pipeline.experiment.sequential` (the
mixture SPRT and its decision), :mod:`~pipeline.experiment.design` (the arms of a factorial
experiment and each skill's effect on them), :mod:`~pipeline.experiment.versions` (prompt
versions, their history, and which version each trajectory ran under),
:mod:`~pipeline.experiment.manifest` (the prompts manifest and a unit's arm) and
:mod:`~pipeline.experiment.lifecycle` (the nightly round: look, decide, end, start). Other
modules import them from here only.
"""

from __future__ import annotations

from pipeline.experiment.assign import CANDIDATE, CONTROL, arm_for, assignment_point
from pipeline.experiment.design import ArmCounts, design_arms, skill_effect
from pipeline.experiment.lifecycle import (
    METHOD,
    ExperimentSettings,
    Round,
    arm_names,
    run_experiments,
    start_experiment,
    stop_experiment,
)
from pipeline.experiment.manifest import (
    MANIFEST_FORMAT,
    Assignment,
    assign_unit,
    load_manifest,
    manifest_checksum,
    seal_manifest,
    set_ranges,
)
from pipeline.experiment.sequential import (
    DEFAULT_TAU,
    Decision,
    Look,
    StratumCounts,
    confidence_sequence,
    decide,
    decide_estimate,
    mixture_likelihood_ratio,
    one_sided_likelihood_ratio,
    risk_difference,
)
from pipeline.experiment.versions import (
    MATCH_METHODS,
    VERSION_HISTORY,
    AliasesRecorded,
    Exposure,
    MatchReport,
    VersionHistory,
    match_exposures,
    normalise_prompt,
    prompt_version,
    record_aliases,
)

__all__ = [
    "CANDIDATE",
    "CONTROL",
    "DEFAULT_TAU",
    "MANIFEST_FORMAT",
    "MATCH_METHODS",
    "METHOD",
    "VERSION_HISTORY",
    "AliasesRecorded",
    "ArmCounts",
    "Assignment",
    "Decision",
    "ExperimentSettings",
    "Exposure",
    "Look",
    "MatchReport",
    "Round",
    "StratumCounts",
    "VersionHistory",
    "arm_for",
    "arm_names",
    "assign_unit",
    "assignment_point",
    "confidence_sequence",
    "decide",
    "decide_estimate",
    "design_arms",
    "load_manifest",
    "manifest_checksum",
    "match_exposures",
    "normalise_prompt",
    "prompt_version",
    "record_aliases",
    "run_experiments",
    "seal_manifest",
    "set_ranges",
    "skill_effect",
    "start_experiment",
    "stop_experiment",
    "mixture_likelihood_ratio",
    "one_sided_likelihood_ratio",
    "risk_difference",
]

"""The one frozen configuration of a run, built by the CLI or by library users.

Plain dataclasses only: importing this module loads none of the analysis stack nor the LLM
client, so that a ``learn`` with nothing new to do stays quick (:func:`pipeline.learn.learn`).
:class:`AnalyzerConfig` and :class:`FeatureConfig` are also importable from
:mod:`pipeline.analyze`, and :class:`LLMConfig` from :mod:`pipeline.llm`, whose settings they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, SettingError
from pipeline.skillbook import DEFAULT_HALF_LIFE_DAYS

__all__ = [
    "RENDER_SETTINGS",
    "AnalyzerConfig",
    "Config",
    "FeatureConfig",
    "LLMConfig",
    "render_options",
    "render_settings",
    "timestamp",
]

# The file in a data dir that keeps how the prompts were last rendered, so that commands which
# render them again after a review decision (``coach skills approve`` ...) render them the same.
RENDER_SETTINGS = "render.json"

DEFAULT_ENDPOINT = "https://api.openai.com/v1"


@dataclass(frozen=True)
class FeatureConfig:
    """How features are derived (:mod:`pipeline.analyze.features`).

    ``write_tool_pattern``: regex (case-insensitive, searched in the tool name) for write actions,
    the tool calls that change state. ``transfer_tool_pattern``: regex for hand-offs to a human.
    ``confirmation_pattern``: regex a user message must match to count as explicit confirmation.
    ``max_arg_values``: a write argument with more distinct values than this (ids, free text) is
    not turned into ``write_arg`` features.
    """

    write_tool_pattern: str = (
        r"^(book|cancel|update|modify|create|delete|remove|add|send|exchange|return|refund|"
        r"issue|set|submit|post|write|edit|change|pay|place|make|upgrade|apply)"
    )
    transfer_tool_pattern: str = r"(transfer|escalat|handoff|hand_off)"
    confirmation_pattern: str = (
        r"\b(yes|yeah|yep|yup|confirm|confirmed|proceed|go ahead|sure|ok|okay|please do|correct|"
        r"that'?s right|do it|sounds good|absolutely|affirmative)\b"
    )
    max_arg_values: int = 8


@dataclass(frozen=True)
class AnalyzerConfig:
    """Analyzer settings (:class:`pipeline.analyze.Analyzer`).

    ``min_support``: fewest trajectories with, and without, a feature for it to be tested.
    ``fdr``: false discovery rate level for q-values. ``min_strata``: fewest informative strata
    (both outcomes and both feature values present) for a stratified test.
    ``align_tasks``: align task ids across datasets (:func:`pipeline.analyze.task_keys`).
    ``examples_per_feature``: example pointers kept in
    :attr:`pipeline.analyze.Analysis.features` per
    (namespace, feature, outcome). ``memory_limit`` (DuckDB size text, ``None`` for DuckDB's
    default of 80% of RAM) and ``threads`` (``None``: one per core): the DuckDB connection the
    features are derived and counted in (:meth:`pipeline.ingest.Traces.connect`); past the
    limit DuckDB spills to a temp directory.
    """

    min_support: int = 10
    fdr: float = 0.05
    min_strata: int = 3
    align_tasks: bool = True
    features: FeatureConfig = field(default_factory=FeatureConfig)
    examples_per_feature: int = 20
    memory_limit: str | None = "512MB"
    threads: int | None = None


@dataclass(frozen=True)
class LLMConfig:
    """LLM settings of a run (all optional; ``enabled`` is False by default), for
    :class:`pipeline.llm.LLMClient`.

    ``model``, ``base_url`` (default ``OPENAI_BASE_URL`` or OpenAI's), ``api_key`` (default
    ``OPENAI_API_KEY``; a local server without keys gets a placeholder). ``timeout_s``: per
    HTTP request (seconds). ``max_retries`` and ``backoff_s``: see :mod:`pipeline.llm`.
    ``max_calls``, ``max_tokens``, ``max_usd``: run budgets (None = unlimited).
    ``usd_per_1k_input`` / ``usd_per_1k_output``: prices for the cost estimate (USD per 1,000
    tokens). ``max_output_tokens``: completion limit per call. ``excerpt_tokens``: budget of the
    trace excerpts in one prompt (tokens, estimated at 4 characters each). ``max_clusters``:
    failure clusters distilled per namespace. ``concurrency``: requests in flight at once.
    ``auto``: LLM-worded skills may become active like rule-worded ones (default: proposed).
    ``label``: label trajectories without an outcome with the LLM judge (needs ``enabled``;
    see :mod:`pipeline.llm.judge`). ``label_rubric``: a rubric for the judge, plain text or a Jinja
    template replacing ``pipeline/llm/templates/judge.md.j2``. ``template_file``: a
    Jinja template replacing ``pipeline/llm/templates/distill.md.j2``. ``cache_path``: the DuckDB
    cache (default ``<data dir>/llm_cache.duckdb``). ``structured``: ``auto`` (JSON schema, with
    the fallback), ``json_schema`` or ``json`` (schema in the prompt only).
    """

    enabled: bool = False
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 1.0
    max_calls: int | None = None
    max_tokens: int | None = None
    max_usd: float | None = None
    usd_per_1k_input: float = 0.0
    usd_per_1k_output: float = 0.0
    max_output_tokens: int = 400
    excerpt_tokens: int = 1200
    max_clusters: int = 5
    concurrency: int = 4
    auto: bool = False
    label: bool = False
    label_rubric: Path | None = None
    template_file: Path | None = None
    cache_path: Path | None = None
    structured: str = "auto"

    def __post_init__(self) -> None:
        """Check the values.

        Raises:
            SettingError: a value out of its range, or a conflict; ``setting`` names the field.
        """
        if self.structured not in ("auto", "json_schema", "json"):
            raise SettingError(
                "structured",
                "{structured} must be auto, json_schema or json, not {value!r}",
                value=self.structured,
            )
        for name in ("max_calls", "max_tokens", "max_usd"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise SettingError(
                    name, f"{{{name}}} must not be negative, not {{value}}", value=value
                )
        for name in ("usd_per_1k_input", "usd_per_1k_output", "backoff_s"):
            if getattr(self, name) < 0:
                raise SettingError(
                    name,
                    f"{{{name}}} must not be negative, not {{value}}",
                    value=getattr(self, name),
                )
        if self.label and not self.enabled:
            raise SettingError("label", "{label} needs {enabled} (and a {model}): set both")
        if self.enabled and not self.model:
            raise SettingError("model", "{enabled} needs a {model}: name one (or set COACH_MODEL)")
        if self.concurrency < 1:
            raise SettingError(
                "concurrency", "{concurrency} must be >= 1, not {value}", value=self.concurrency
            )
        if self.max_retries < 0:
            raise SettingError(
                "max_retries", "{max_retries} must be >= 0, not {value}", value=self.max_retries
            )
        if not self.timeout_s > 0:
            raise SettingError(
                "timeout_s", "{timeout_s} must be > 0, not {value}", value=self.timeout_s
            )

    @property
    def endpoint(self) -> str:
        """The base URL actually used (no trailing slash)."""
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_ENDPOINT).rstrip("/")


def timestamp() -> str:
    """Now as ISO-8601 UTC (seconds). Honours ``SOURCE_DATE_EPOCH`` (reproducible-builds.org)
    so that runs can be made byte-for-byte reproducible.

    Raises:
        ConfigError: ``SOURCE_DATE_EPOCH`` is not an integer.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            moment = datetime.fromtimestamp(int(epoch), tz=UTC)
        except ValueError as exc:
            raise ConfigError(f"SOURCE_DATE_EPOCH must be an integer, not {epoch!r}") from exc
    else:
        moment = datetime.now(tz=UTC)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Config:
    """Everything a ``learn`` run needs.

    ``paths``: trace files/directories. ``format``: adapter name or None to sniff.
    ``reward_threshold``: reward at or above it is success. ``outcome_feedback``: the feedback
    name taken as the outcome where a format has none. ``max_record_bytes``: longest JSON Lines
    line parsed (bytes). ``rebuild``: read every input again instead of adding only new files to
    the stored tables. ``strict``: a run that quarantines anything fails before it writes
    anything. ``data_dir``: where the canonical tables and analysis are kept.
    ``skillbook_dir``: holds skillbook.json and SKILLBOOK.md.
    ``out_dir``: rendered prompts. ``mode``: ``auto`` or ``propose``. ``template_dir`` and
    ``base_prompt_file``: optional overrides for rendering. ``max_prompt_chars``: size budget of
    the skills part of each prompt (characters). ``max_lessons``: line budget of each prompt,
    the most lessons it carries, ranked by expected impact (None or 0: no limit; what does
    not fit is listed in ``SKILLBOOK.md``, see :mod:`pipeline.render.lessons`). ``llm``:
    optional LLM distillation (:class:`LLMConfig`; off unless ``llm.enabled``). ``section_modes``: per
    section learning mode overriding ``mode``, as ((section, ``auto`` | ``propose`` | ``off``),
    ...). ``half_life_days``: recency weighting of evidence across runs (days).
    ``experiments``: whether proposed skills are tested on live traffic by prompt experiments
    (:mod:`pipeline.experiment`); ``experiment_share``: the share of units given candidate
    prompts (0 < share < 1; None: balanced, every arm the same share); ``experiment_alpha``:
    each experiment's error rate (0 < alpha < 1); ``holdback_share``: the share of units given
    prompts without some of a namespace's active skills, so that a skill that stopped helping
    is caught (0: no holdback).
    """

    paths: tuple[str, ...] = ("traces",)
    format: str | None = None
    reward_threshold: float = 1.0
    outcome_feedback: str | None = None
    max_record_bytes: int = 64 << 20
    rebuild: bool = False
    strict: bool = False
    data_dir: Path = Path(".coach")
    skillbook_dir: Path = Path("skillbook")
    out_dir: Path = Path("prompts_out")
    mode: str = "auto"
    analyzer: AnalyzerConfig = field(default_factory=AnalyzerConfig)
    template_dir: Path | None = None
    base_prompt_file: Path | None = None
    max_prompt_chars: int = 4000
    max_lessons: int | None = 12
    llm: LLMConfig = field(default_factory=LLMConfig)
    section_modes: tuple[tuple[str, str], ...] = ()
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS
    experiments: bool = True
    experiment_share: float | None = None
    experiment_alpha: float = 0.05
    holdback_share: float = 0.0

    def __post_init__(self) -> None:
        """Check the values.

        Raises:
            SettingError: a value out of its range; ``setting`` names the field (``fdr`` and
                ``min_support`` for those of ``analyzer``).
        """
        if self.mode not in ("auto", "propose"):
            raise SettingError(
                "mode", "{mode} must be auto or propose, not {value!r}", value=self.mode
            )
        for section, mode in self.section_modes:
            if mode not in ("auto", "propose", "off"):
                raise SettingError(
                    "section_modes",
                    "{section_modes} {section}={mode}: the mode must be auto, propose or off",
                    section=section,
                    mode=mode,
                )
        if not self.half_life_days > 0:
            raise SettingError(
                "half_life_days",
                "{half_life_days} must be positive, not {value}",
                value=self.half_life_days,
            )
        for name, value in (
            ("experiment_share", self.experiment_share),
            ("experiment_alpha", self.experiment_alpha),
        ):
            if value is not None and not 0 < value < 1:
                raise SettingError(
                    name,
                    "{" + name + "} must be between 0 and 1 (exclusive), not {value}",
                    value=value,
                )
        if not 0 <= self.holdback_share < 1 - (self.experiment_share or 0):
            raise SettingError(
                "holdback_share",
                "{holdback_share} must be at least 0 and below 1 - {experiment_share}, not {value}",
                value=self.holdback_share,
            )
        if not 0 < self.analyzer.fdr < 1:
            raise SettingError(
                "fdr", "{fdr} must be between 0 and 1, not {value}", value=self.analyzer.fdr
            )
        if self.analyzer.min_support < 1:
            raise SettingError(
                "min_support",
                "{min_support} must be at least 1, not {value}",
                value=self.analyzer.min_support,
            )
        if self.max_lessons is not None and self.max_lessons < 0:
            raise SettingError(
                "max_lessons",
                "{max_lessons} must be a number of lessons (0: no limit), not {value}",
                value=self.max_lessons,
            )
        if self.max_record_bytes < 1:
            raise SettingError(
                "max_record_bytes",
                "{max_record_bytes} must be positive, not {value}",
                value=self.max_record_bytes,
            )


def render_settings(config: Config) -> dict[str, str | int | None]:
    """How ``config`` renders the prompts, JSON-ready: ``template_dir`` and
    ``base_prompt_file`` (absolute path text or None), ``max_prompt_chars`` (characters) and
    ``max_lessons`` (lessons; None: no limit). What :data:`RENDER_SETTINGS` holds."""
    return {
        "template_dir": str(config.template_dir.resolve()) if config.template_dir else None,
        "base_prompt_file": (
            str(config.base_prompt_file.resolve()) if config.base_prompt_file else None
        ),
        "max_prompt_chars": config.max_prompt_chars,
        "max_lessons": config.max_lessons,
    }


def render_options(saved: object) -> dict[str, Any]:
    """The :class:`Config` keyword arguments of a :func:`render_settings` dict read back:
    entries of the wrong type (a file edited by hand, or of another version) are left out, so
    their defaults apply."""
    if not isinstance(saved, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ("template_dir", "base_prompt_file"):
        if key in saved and (saved[key] is None or isinstance(saved[key], str)):
            out[key] = Path(saved[key]) if saved[key] else None
    for key in ("max_prompt_chars", "max_lessons"):
        value = saved.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            out[key] = value
        elif key == "max_lessons" and key in saved and value is None:
            out[key] = None
    return out

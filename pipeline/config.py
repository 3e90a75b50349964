"""The one frozen configuration of a run, built by the CLI or by library users."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.analyze import AnalyzerConfig
from pipeline.errors import ConfigError
from pipeline.llm import LLMConfig

__all__ = ["Config", "timestamp"]


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
    the stored tables. ``data_dir``: where the canonical tables and analysis are kept.
    ``skillbook_dir``: holds skillbook.json and SKILLBOOK.md.
    ``out_dir``: rendered prompts. ``mode``: ``auto`` or ``propose``. ``template_dir`` and
    ``base_prompt_file``: optional overrides for rendering. ``max_prompt_chars``: size budget of
    the skills part of each prompt (characters). ``llm``: optional LLM distillation
    (:class:`pipeline.llm.LLMConfig`; off unless ``llm.enabled``). ``section_modes``: per
    section learning mode overriding ``mode``, as ((section, ``auto`` | ``propose`` | ``off``),
    ...). ``half_life_days``: recency weighting of evidence across runs (days).
    """

    paths: tuple[str, ...] = ("traces",)
    format: str | None = None
    reward_threshold: float = 1.0
    outcome_feedback: str | None = None
    max_record_bytes: int = 64 << 20
    rebuild: bool = False
    data_dir: Path = Path(".coach")
    skillbook_dir: Path = Path("skillbook")
    out_dir: Path = Path("prompts_out")
    mode: str = "auto"
    analyzer: AnalyzerConfig = field(default_factory=AnalyzerConfig)
    template_dir: Path | None = None
    base_prompt_file: Path | None = None
    max_prompt_chars: int = 4000
    llm: LLMConfig = field(default_factory=LLMConfig)
    section_modes: tuple[tuple[str, str], ...] = ()
    half_life_days: float = 30.0

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "propose"):
            raise ConfigError(f"mode must be auto or propose, not {self.mode!r}")
        for section, mode in self.section_modes:
            if mode not in ("auto", "propose", "off"):
                raise ConfigError(
                    f"--section-mode {section}={mode}: the mode must be auto, propose or off"
                )
        if not self.half_life_days > 0:
            raise ConfigError(f"--half-life-days must be positive, not {self.half_life_days}")
        if not 0 < self.analyzer.fdr < 1:
            raise ConfigError(f"--fdr must be between 0 and 1, not {self.analyzer.fdr}")
        if self.analyzer.min_support < 1:
            raise ConfigError("--min-support must be at least 1")

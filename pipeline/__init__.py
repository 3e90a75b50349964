"""coach: an offline learning layer for AI agents.

Traces in, evidence-backed skills out: ``ingest`` -> :class:`Analyzer` -> :class:`SkillExtractor`
-> :class:`Skillbook` merge -> :class:`PromptGenerator`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from pipeline.analyze import Analysis, Analyzer, AnalyzerConfig
from pipeline.config import Config
from pipeline.extract import Candidate, SkillExtractor
from pipeline.ingest import FileReport, Traces, ingest
from pipeline.learn import LearnResult, learn
from pipeline.render import PromptGenerator
from pipeline.skillbook import Skill, Skillbook

__all__ = [
    "Analysis",
    "Analyzer",
    "AnalyzerConfig",
    "Candidate",
    "Config",
    "FileReport",
    "LearnResult",
    "PromptGenerator",
    "Skill",
    "SkillExtractor",
    "Skillbook",
    "Traces",
    "__version__",
    "ingest",
    "learn",
]

"""coach: an offline learning layer for AI agents.

Traces in, evidence-backed skills out: ``ingest`` -> :class:`Analyzer` -> :class:`SkillExtractor`
-> :class:`Skillbook` merge -> :class:`PromptGenerator`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from pipeline.ingest import FileReport, Traces, ingest

__all__ = ["FileReport", "Traces", "__version__", "ingest"]

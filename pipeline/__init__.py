"""coach: an offline learning layer for AI agents.

Traces in, evidence-backed skills out, one stage package after another::

    from pipeline.ingest import ingest

    traces = ingest(["traces/"])                        # pipeline.ingest
    analysis = Analyzer().run(traces)                   # pipeline.analyze
    candidates = SkillExtractor().run(analysis)         # pipeline.extract
    book = Skillbook.load(path); book.merge(candidates)  # pipeline.skillbook
    prompts = PromptGenerator().run(book, bases)        # pipeline.render

:func:`pipeline.learn.learn` runs them all in order, as ``coach learn`` does.

The classes below are imported on first use (PEP 562), so that ``import pipeline`` loads
nothing of the analysis stack (polars, DuckDB, pyarrow, numpy).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.version import __version__

if TYPE_CHECKING:
    from pipeline.analyze import Analysis, Analyzer
    from pipeline.config import AnalyzerConfig, Config
    from pipeline.extract import SkillExtractor
    from pipeline.ingest import FileReport, Traces
    from pipeline.learn import LearnResult
    from pipeline.render import PromptGenerator
    from pipeline.skillbook import Candidate, Skill, Skillbook

# public name -> the package or module whose face defines it
_EXPORTS = {
    "Analysis": "pipeline.analyze",
    "Analyzer": "pipeline.analyze",
    "AnalyzerConfig": "pipeline.config",
    "Candidate": "pipeline.skillbook",
    "Config": "pipeline.config",
    "FileReport": "pipeline.ingest",
    "LearnResult": "pipeline.learn",
    "PromptGenerator": "pipeline.render",
    "Skill": "pipeline.skillbook",
    "SkillExtractor": "pipeline.extract",
    "Skillbook": "pipeline.skillbook",
    "Traces": "pipeline.ingest",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


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
]

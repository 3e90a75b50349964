"""coach: an offline learning layer for AI agents.

Traces in, evidence-backed skills out: ``ingest`` -> :class:`Analyzer` -> :class:`SkillExtractor`
-> :class:`Skillbook` merge -> :class:`PromptGenerator`.

The names below are imported on first use (PEP 562), so that ``import pipeline.config`` or a
``coach learn`` with nothing new to do does not load the analysis stack (polars, DuckDB,
pyarrow, numpy).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pipeline.analyze import Analysis, Analyzer
    from pipeline.config import AnalyzerConfig, Config
    from pipeline.extract import Candidate, SkillExtractor
    from pipeline.ingest import FileReport, Traces, ingest
    from pipeline.learn import LearnResult, learn
    from pipeline.render import PromptGenerator
    from pipeline.skillbook import Skill, Skillbook

# public name -> the module that defines it
_EXPORTS = {
    "Analysis": "pipeline.analyze",
    "Analyzer": "pipeline.analyze",
    "AnalyzerConfig": "pipeline.config",
    "Candidate": "pipeline.extract",
    "Config": "pipeline.config",
    "FileReport": "pipeline.ingest",
    "LearnResult": "pipeline.learn",
    "PromptGenerator": "pipeline.render",
    "Skill": "pipeline.skillbook",
    "SkillExtractor": "pipeline.extract",
    "Skillbook": "pipeline.skillbook",
    "Traces": "pipeline.ingest",
    "ingest": "pipeline.ingest",
    "learn": "pipeline.learn",
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


class _Package(types.ModuleType):
    """The ``pipeline`` package, whose ``ingest`` and ``learn`` are the functions of those names,
    not the submodules that the import system binds on their package when they are loaded."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("ingest", "learn") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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

"""Every output a person reads: the system prompts of each namespace
(:class:`PromptGenerator`), the comparison of two versions of the Skillbook and prompts
(:func:`diff_snapshots`) with its Markdown for a pull request (:func:`markdown_summary`), and
the offline HTML report (:func:`render_report`).

Trace-derived text is escaped and redacted on the way in; templates run sandboxed. The names
below are imported on first use (PEP 562): rendering prompts loads neither matplotlib nor
polars, which only the report needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.render.ace import from_ace, to_ace
    from pipeline.render.agents_md import agents_md
    from pipeline.render.diff import (
        LIVE_STATUSES,
        PromptChange,
        PromptDiff,
        SkillChange,
        diff_snapshots,
    )
    from pipeline.render.diff_md import COMMENT_LIMIT, example_sources, markdown_summary
    from pipeline.render.prompts import (
        DEFAULT_TEMPLATE,
        NOT_RENDERED,
        PRECEDENCE,
        SECTION_TITLES,
        PromptGenerator,
        RenderedPrompt,
        base_prompts,
        compose,
        namespace_rank,
        prompt_filename,
    )
    from pipeline.render.report import REPORT_SECTIONS, ReportData, load_report_data, render_report
    from pipeline.render.skillbook_md import (
        evidence_line,
        history_line,
        save_skillbook,
        skillbook_markdown,
    )
    from pipeline.render.snapshots import Snapshot, snapshot_from_git, snapshot_from_path

# public name -> the module of this package that defines it
_EXPORTS = {
    "COMMENT_LIMIT": "pipeline.render.diff_md",
    "DEFAULT_TEMPLATE": "pipeline.render.prompts",
    "LIVE_STATUSES": "pipeline.render.diff",
    "NOT_RENDERED": "pipeline.render.prompts",
    "PRECEDENCE": "pipeline.render.prompts",
    "PromptChange": "pipeline.render.diff",
    "PromptDiff": "pipeline.render.diff",
    "PromptGenerator": "pipeline.render.prompts",
    "REPORT_SECTIONS": "pipeline.render.report",
    "RenderedPrompt": "pipeline.render.prompts",
    "ReportData": "pipeline.render.report",
    "SECTION_TITLES": "pipeline.render.prompts",
    "SkillChange": "pipeline.render.diff",
    "Snapshot": "pipeline.render.snapshots",
    "agents_md": "pipeline.render.agents_md",
    "base_prompts": "pipeline.render.prompts",
    "compose": "pipeline.render.prompts",
    "diff_snapshots": "pipeline.render.diff",
    "evidence_line": "pipeline.render.skillbook_md",
    "example_sources": "pipeline.render.diff_md",
    "from_ace": "pipeline.render.ace",
    "history_line": "pipeline.render.skillbook_md",
    "load_report_data": "pipeline.render.report",
    "markdown_summary": "pipeline.render.diff_md",
    "namespace_rank": "pipeline.render.prompts",
    "prompt_filename": "pipeline.render.prompts",
    "render_report": "pipeline.render.report",
    "save_skillbook": "pipeline.render.skillbook_md",
    "skillbook_markdown": "pipeline.render.skillbook_md",
    "snapshot_from_git": "pipeline.render.snapshots",
    "snapshot_from_path": "pipeline.render.snapshots",
    "to_ace": "pipeline.render.ace",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "COMMENT_LIMIT",
    "DEFAULT_TEMPLATE",
    "LIVE_STATUSES",
    "NOT_RENDERED",
    "PRECEDENCE",
    "PromptChange",
    "PromptDiff",
    "PromptGenerator",
    "REPORT_SECTIONS",
    "RenderedPrompt",
    "ReportData",
    "SECTION_TITLES",
    "SkillChange",
    "Snapshot",
    "agents_md",
    "base_prompts",
    "compose",
    "diff_snapshots",
    "evidence_line",
    "example_sources",
    "from_ace",
    "history_line",
    "load_report_data",
    "markdown_summary",
    "namespace_rank",
    "prompt_filename",
    "render_report",
    "save_skillbook",
    "skillbook_markdown",
    "snapshot_from_git",
    "snapshot_from_path",
    "to_ace",
]

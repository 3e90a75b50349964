"""Names of :mod:`pipeline.render`, for type checkers and for the lazy loader that reads this stub."""

from .ace import (
    from_ace as from_ace,
    to_ace as to_ace,
)
from .agents_md import agents_md as agents_md
from .diff import (
    LIVE_STATUSES as LIVE_STATUSES,
    PromptChange as PromptChange,
    PromptDiff as PromptDiff,
    SkillChange as SkillChange,
    diff_snapshots as diff_snapshots,
)
from .diff_md import (
    COMMENT_LIMIT as COMMENT_LIMIT,
    example_sources as example_sources,
    markdown_summary as markdown_summary,
)
from .lessons import (
    PromptBudget as PromptBudget,
    impact as impact,
    over_budget as over_budget,
    rank as rank,
)
from .prompts import (
    DEFAULT_TEMPLATE as DEFAULT_TEMPLATE,
    NOT_RENDERED as NOT_RENDERED,
    PRECEDENCE as PRECEDENCE,
    SECTION_TITLES as SECTION_TITLES,
    BasePrompt as BasePrompt,
    PromptGenerator as PromptGenerator,
    RenderedPrompt as RenderedPrompt,
    base_prompts as base_prompts,
    compose as compose,
    namespace_rank as namespace_rank,
    neutralise as neutralise,
    prompt_filename as prompt_filename,
)
from .report import (
    REPORT_SECTIONS as REPORT_SECTIONS,
    ReportData as ReportData,
    load_report_data as load_report_data,
    render_report as render_report,
)
from .skillbook_md import (
    evidence_line as evidence_line,
    history_line as history_line,
    save_skillbook as save_skillbook,
    skillbook_markdown as skillbook_markdown,
)
from .snapshots import (
    Snapshot as Snapshot,
    snapshot_from_git as snapshot_from_git,
    snapshot_from_path as snapshot_from_path,
)

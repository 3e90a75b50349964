"""Names of :mod:`pipeline`, for type checkers and for the lazy loader that reads this stub."""

from .analyze import (
    Analysis as Analysis,
    Analyzer as Analyzer,
)
from .config import (
    AnalyzerConfig as AnalyzerConfig,
    Config as Config,
)
from .extract import SkillExtractor as SkillExtractor
from .ingest import (
    FileReport as FileReport,
    Traces as Traces,
)
from .learn import LearnResult as LearnResult
from .render import PromptGenerator as PromptGenerator
from .skillbook import (
    Candidate as Candidate,
    Skill as Skill,
    Skillbook as Skillbook,
)
from .version import __version__ as __version__

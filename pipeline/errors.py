"""Errors raised by coach.

The tree is small on purpose; every error a user can meet says what went wrong and how to fix it::

    CoachError                      base class of every error coach raises on purpose
    ├── InputError                  a path, file or record cannot be read as a trace
    │   └── UnknownFormatError      no format adapter recognised the file
    ├── ConfigError                 an option or configuration value is invalid
    ├── SkillbookError              the Skillbook file is unreadable or of an unknown format version
    │   └── LockError               another run holds the Skillbook lock
    └── TemplateError               a prompt template cannot be loaded or rendered

A malformed *record* inside an otherwise readable file is not an exception: it is quarantined
(see :mod:`pipeline.ingest`) and counted.
"""

from __future__ import annotations

__all__ = [
    "CoachError",
    "ConfigError",
    "InputError",
    "LockError",
    "SkillbookError",
    "TemplateError",
    "UnknownFormatError",
]


class CoachError(Exception):
    """Base class of every error coach raises on purpose."""


class InputError(CoachError):
    """A path, file or record cannot be read as a trace (missing, unreadable, not UTF-8, ...)."""


class UnknownFormatError(InputError):
    """No format adapter recognised the file; the message names the formats tried."""


class ConfigError(CoachError):
    """An option or configuration value is invalid."""


class SkillbookError(CoachError):
    """The Skillbook file is unreadable, corrupt, or of an unknown ``format_version``."""


class LockError(SkillbookError):
    """Another run holds the Skillbook lock; wait for it or remove a stale lock file."""


class TemplateError(CoachError):
    """A prompt template cannot be found, loaded or rendered."""

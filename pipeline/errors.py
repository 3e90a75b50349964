"""Errors raised by coach.

The tree is small on purpose; every error a user can meet says what went wrong and how to fix it::

    CoachError                      base class of every error coach raises on purpose
    ├── InputError                  a path, file or record cannot be read as a trace
    │   └── UnknownFormatError      no format adapter recognised the file
    ├── ConfigError                 an option or configuration value is invalid
    │   ├── SettingError            one setting is out of range or conflicts with another
    │   └── SettingsFileError       the settings file is missing, not TOML, or has a bad key
    ├── SkillbookError              the Skillbook file is unreadable or of an unknown format version
    │   └── LockError               another run holds the Skillbook lock
    ├── TemplateError               a prompt template cannot be loaded or rendered
    └── RemoteError                 a tool's server (Phoenix) is down, refuses the key, or answers
                                    with something unreadable or cut off

The command line reports :class:`SettingError` and :class:`SettingsFileError` as bad usage
(exit 2, naming the option or the file and key) and every other error as a domain error (exit 1).

A malformed *record* inside an otherwise readable file is not an exception: it is quarantined
(see :mod:`pipeline.ingest`) and counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = [
    "CoachError",
    "ConfigError",
    "InputError",
    "LockError",
    "RemoteError",
    "SettingError",
    "SettingsFileError",
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


class SettingError(ConfigError):
    """A setting of a run (:class:`pipeline.config.Config`, :class:`pipeline.config.LLMConfig`)
    is out of its range, not one of its choices, or in conflict with another setting.

    ``setting`` names it as the field is called (``fdr``, ``max_calls``, ``model``, ...), so
    that the command line can name its option. ``template`` is the message with each setting it
    mentions as ``{name}``: ``str(error)`` names the settings, and :meth:`describe` lets a
    caller name them its own way (the command line, by their options).
    """

    def __init__(self, setting: str, template: str, **values: object) -> None:
        self.setting = setting
        self.template = template
        self.values = values
        super().__init__(self.describe(lambda name: name))

    def describe(self, name_of: Callable[[str], str]) -> str:
        """The message with each setting ``{name}`` written as ``name_of(name)``."""
        names = {n: name_of(n) for n in re.findall(r"{(\w+)}", self.template)}
        return self.template.format(**(names | {k: v for k, v in self.values.items()}))


class SettingsFileError(ConfigError):
    """The settings file (``coach.toml``, ``[tool.coach]`` in ``pyproject.toml``, or the file
    ``COACH_CONFIG`` names) does not exist, is not TOML, or has a key that is no option or a
    value its option does not accept; the message names the file and the key."""


class SkillbookError(CoachError):
    """The Skillbook file is unreadable, corrupt, or of an unknown ``format_version``."""


class LockError(SkillbookError):
    """Another run holds the Skillbook lock; wait for it or remove a stale lock file."""


class TemplateError(CoachError):
    """A prompt template cannot be found, loaded or rendered."""


class RemoteError(CoachError):
    """A server coach reads from or writes to (Phoenix's REST API) cannot be reached, refuses
    the credentials, answers with an error, or sends a page that is cut off or not what its API
    documents; the message names the endpoint and what to check."""

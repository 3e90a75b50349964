"""Settings files: ``coach.toml``, or ``[tool.coach]`` in ``pyproject.toml``, as defaults for the
command line.

The file is looked up in the current directory (``COACH_CONFIG`` names one explicitly): first
``coach.toml``, then ``pyproject.toml`` if it has a ``[tool.coach]`` table. Keys are the long
option names of the ``coach`` commands, with dashes or underscores (``base-url``,
``max_llm_calls``); top-level keys apply to every command that has the option, and a table named
after a command applies to that command only::

    # coach.toml
    llm = true
    model = "llama3.1"
    base-url = "http://localhost:11434/v1"
    max-llm-calls = 50

    [learn]
    mode = "propose"

Precedence: an option given on the command line, then its environment variable, then the file,
then the built-in default (click's ``default_map``). Relative paths are relative to the current
directory. Read with :mod:`tomllib` (TOML 1.0).

The file is input to the command line like its options: a missing ``COACH_CONFIG`` file, a file
that is not TOML, a key that is no option and a value its option does not accept raise
:class:`~pipeline.errors.SettingsFileError` naming the file and the key, which ``coach`` reports
as bad usage (exit 2).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import click

from pipeline.errors import SettingsFileError

__all__ = ["default_map", "find_settings", "load_settings"]


def find_settings(directory: Path) -> Path | None:
    """The settings file for ``directory``: ``$COACH_CONFIG`` if set, else ``coach.toml``, else
    ``pyproject.toml`` when it has a ``[tool.coach]`` table; None when there is none.

    Raises:
        SettingsFileError: ``COACH_CONFIG`` names a file that does not exist.
    """
    named = os.environ.get("COACH_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise SettingsFileError(f"COACH_CONFIG={named}: no such file")
        return path
    if (directory / "coach.toml").is_file():
        return directory / "coach.toml"
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file() and "tool" in _read(pyproject) and "coach" in _read(pyproject)["tool"]:
        return pyproject
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsFileError(f"{path}: not a valid TOML file: {exc}") from exc


def load_settings(path: Path) -> dict[str, Any]:
    """The coach settings in ``path``: the whole file for ``coach.toml`` (or any other name),
    the ``[tool.coach]`` table for ``pyproject.toml``.

    Raises:
        SettingsFileError: the file is not valid TOML, or the table is not a table.
    """
    data = _read(path)
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("coach", {})
    if not isinstance(data, dict):
        raise SettingsFileError(f"{path}: [tool.coach] must be a table")
    return data


def _params(command: click.Command) -> dict[str, click.Option]:
    """Setting key (long option name without dashes, with underscores) -> its option."""
    keys = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        keys[param.name] = param
        for opt in param.opts + param.secondary_opts:
            if opt.startswith("--"):
                keys[opt[2:].replace("-", "_")] = param
    return keys


def _check(
    command: click.Command, option: click.Option, value: Any, source: Path, where: str
) -> None:
    """Raise :class:`SettingsFileError` naming ``source`` and the key ``where`` when ``option``
    of ``command`` does not accept ``value`` (its type, range, choices and callback)."""
    ctx = click.Context(command, info_name=command.name)
    try:
        option.process_value(ctx, value)
    except click.BadParameter as exc:
        flag = max(option.opts, key=len)
        raise SettingsFileError(
            f"{source}: {where} = {value!r} is not a valid {flag} of 'coach {command.name}': "
            f"{exc.message}"
        ) from exc


def default_map(
    group: click.Group, settings: dict[str, Any], source: Path, command: str | None = None
) -> dict[str, Any]:
    """click's ``default_map`` for ``group`` from ``settings`` (see the module docstring):
    ``{command name: {parameter name: value}}``.

    ``command``: the command about to run; its values are checked as its options check a value
    given on the command line (None: every command's).

    Raises:
        SettingsFileError: a key is no option of any command (or of the command its table
            names), or its value is not one the option accepts; the message names the file
            and the key.
    """
    commands = group.commands
    params = {name: _params(cmd) for name, cmd in commands.items()}
    out: dict[str, dict[str, Any]] = {name: {} for name in commands}
    used = set()
    for key, value in settings.items():
        if key in commands and isinstance(value, dict):
            continue
        norm = key.replace("-", "_")
        for name, keys in params.items():
            if norm in keys:
                if command in (None, name):
                    _check(commands[name], keys[norm], value, source, repr(key))
                out[name][keys[norm].name or norm] = value
                used.add(key)
        if key not in used:
            raise SettingsFileError(f"{source}: {key!r} is not an option of any coach command")
    for name, table in settings.items():
        if name not in commands or not isinstance(table, dict):
            continue
        for key, value in table.items():
            norm = key.replace("-", "_")
            if norm not in params[name]:
                raise SettingsFileError(
                    f"{source}: [{name}] {key!r} is not an option of 'coach {name}'"
                )
            if command in (None, name):
                _check(commands[name], params[name][norm], value, source, f"[{name}] {key!r}")
            out[name][params[name][norm].name or norm] = value
    return {name: values for name, values in out.items() if values}

"""The line of a failed command's output that names the error (:func:`error_line`), for the
formats whose tool results are command output (mini-swe-agent, Who&When)."""

from __future__ import annotations

import re

__all__ = ["error_line"]

_EXCEPTION_LINE = re.compile(
    r"^(?:E\s+)?([A-Za-z_][\w.]*(?:Error|Exception)(?::.*)?)$", re.MULTILINE
)
_BANNER = re.compile(r"^[=\-_*#~+. ]*$|^={3,}.*={3,}$|^_{3,}.*_{3,}$")


def error_line(output: str) -> str | None:
    """The line of a failed command's ``output`` that names the error, at most 500 characters:

    1. the last exception line -- the first unindented line after a Python ``Traceback (most
       recent call last):`` block, or a ``<name>Error: ...`` / ``<name>Exception: ...`` line
       (pytest's ``E   `` prefix dropped);
    2. else the last pytest summary line (``FAILED ...`` / ``ERROR ...``);
    3. else the first line that is neither blank nor a ``=====`` / ``_____`` banner.

    ``None`` when there is none.
    """
    exception = summary = first = None
    in_traceback = False
    for line in output.splitlines():
        text = line.strip()
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
            continue
        if in_traceback:
            if line and not line[0].isspace():
                exception, in_traceback = text, False
            continue
        match = _EXCEPTION_LINE.match(line)
        if match:
            exception = match.group(1).strip()
        elif line.startswith(("FAILED ", "ERROR ")):
            summary = text
        elif first is None and text and not _BANNER.match(text):
            first = text
    found = exception or summary or first
    return found[:500] if found else None

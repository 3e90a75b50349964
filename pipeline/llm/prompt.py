"""The prompts coach sends to a model are Jinja templates, rendered in one sandboxed environment
(:data:`ENVIRONMENT`: undefined names are errors, block tags leave no blank lines). The defaults
ship as package data in ``pipeline/llm/templates/``  (``distill.md.j2``, ``judge.md.j2``); a user
may replace them (``--llm-template``, ``--llm-label-rubric``).

These prompts are read by a model, not by people, so they are not part of
:mod:`pipeline.render`. Their trace-derived text is untrusted data, passed between delimiters
(``<trace_excerpt>``, ``<task_input>``, ``<final_output>``) that it must not be able to close or
open: the builders of a prompt's context pass trace text through :func:`as_data`, and the
environment passes **every value a template prints** through :func:`escape_data` as well (Jinja's
``finalize``), whatever the template, so that no field can be forgotten.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from pipeline.llm.screen import normalise
from pipeline.redact import redact

__all__ = ["DELIMITERS", "ENVIRONMENT", "as_data", "escape_data", "package_template"]

# The tags that delimit untrusted data in the prompts.
DELIMITERS = ("trace_excerpt", "task_input", "final_output")
_LT = re.compile(r"&(?:lt|#0*60|#x0*3c);", re.I)
_GT = re.compile(r"&(?:gt|#0*62|#x0*3e);", re.I)
_DELIMITER_NAMES = re.compile(
    "|".join(r"\b" + r"[\s_\-]*".join(d.split("_")) + r"\b" for d in DELIMITERS), re.I
)


def escape_data(text: str) -> str:
    """Text made safe to place inside a delimited block of a prompt, its lines kept:
    :func:`~pipeline.llm.screen.normalise` (NFKC; zero-width, bidirectional and other invisible
    characters removed, so nothing is smuggled past a reader), redacted
    (:func:`pipeline.redact.redact`), angle brackets (also as HTML references) replaced by single
    guillemets, and the names of the delimiters (:data:`DELIMITERS`) written with a space
    (``trace excerpt``), so that it can neither close nor open one."""
    text = redact(normalise(str(text)))
    text = _GT.sub("\u203a", _LT.sub("\u2039", text))
    text = text.replace("<", "\u2039").replace(">", "\u203a")
    return _DELIMITER_NAMES.sub(lambda m: " ".join(re.split(r"[\s_\-]+", m.group(0))), text)


def as_data(text: Any, limit: int = 240) -> str:
    """Trace text made safe to embed in a prompt as one line of delimited data:
    :func:`escape_data` with whitespace collapsed to single spaces, cut to at most ``limit``
    characters (the last one an ellipsis when cut)."""
    text = escape_data(" ".join(normalise(str(text)).split()))
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _finalize(value: Any) -> Any:
    """What the environment prints for ``{{ value }}``: numbers as they are, anything else as
    :func:`escape_data` of its text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return escape_data(value if isinstance(value, str) else str(value))


ENVIRONMENT = SandboxedEnvironment(
    undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, finalize=_finalize
)


def package_template(name: str) -> str:
    """The source text of the default template ``name`` (e.g. ``"distill.md.j2"``) shipped in
    ``pipeline/llm/templates/``.

    Raises:
        FileNotFoundError: no such template in the package.
    """
    return (resources.files("pipeline.llm") / "templates" / name).read_text("utf-8")

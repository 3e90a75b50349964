"""The one Jinja environment for every output a person reads: the system prompts,
``SKILLBOOK.md``, the ``AGENTS.md`` section, the pull-request Markdown and the HTML report.

:func:`environment` makes it: a :class:`~jinja2.sandbox.SandboxedEnvironment` (a template
cannot reach Python internals, so a user template or trace text that looks like template code
is printed, never evaluated), :class:`~jinja2.StrictUndefined` (a misspelt name is an error,
not an empty string), ``trim_blocks``, ``lstrip_blocks`` and ``keep_trailing_newline`` (a line
holding only a ``{% ... %}`` tag leaves nothing behind; a template's last newline is kept), and
autoescaping for ``.html`` templates only. Its loader reads ``pipeline/render/templates/``,
after a user's template directory when one is given (``--templates DIR``).

Trace-derived text is made safe on the way in by the functions below, also registered as
filters:

- ``redact``: personal data and secrets replaced (:func:`pipeline.redact.redact`);
- ``one_line``: whitespace runs, newlines included, become one space;
- ``md``: one line, Markdown-active characters (``\\ ` * _ [ ] < > | #``) backslash-escaped, for
  inline text and table cells (GitHub Flavored Markdown, https://github.github.com/gfm/ ,
  section 2.4 "Backslash escapes");
- :func:`prompt_text` (``prompt_text``): redacted, one line, Markdown- and template-active
  characters (``\\ ` * { } [ ] < > # |``) escaped: skill text as a prompt carries it.

and numbers are formatted for people by ``pct`` (a share as a whole percentage), ``num`` (a
figure with ``digits`` decimals) and ``pval`` (a p- or q-value).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.redact import redact

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "environment",
    "markdown_inline",
    "num",
    "one_line",
    "pct",
    "prompt_text",
    "pval",
]

_PROMPT_SPECIAL = re.compile(r"([\\`*{}\[\]<>#|])")
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def one_line(text: Any) -> str:
    """``text`` as a string on one line: every run of whitespace becomes one space, ends
    trimmed."""
    return " ".join(str(text).split())


def markdown_inline(text: Any) -> str:
    """Inline Markdown-safe text: one line (:func:`one_line`), HTML and table-breaking
    characters (``\\ ` * _ [ ] < > | #``) backslash-escaped. Not redacted."""
    return _INLINE_SPECIAL.sub(r"\\\1", one_line(text))


def prompt_text(text: str) -> str:
    """Skill text made inert for a prompt: personal data and secrets redacted
    (:func:`pipeline.redact.redact`), one line, Markdown- and template-active characters
    (``\\ ` * { } [ ] < > # |``) backslash-escaped."""
    return _PROMPT_SPECIAL.sub(r"\\\1", one_line(redact(text)))


def pct(value: Any) -> str:
    """A share (0..1) as a whole percentage, ``0.456`` -> ``46%``; ``n/a`` for None."""
    return "n/a" if value is None else f"{100 * value:.0f}%"


def num(value: Any, digits: int = 2) -> str:
    """A figure for people: a float with ``digits`` decimals, in scientific notation when it is
    non-zero and smaller than ``10**-digits`` (``1.2e-05``); ``n/a`` for None, NaN or an
    infinity; anything else (an int, a string) as ``str``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float) and value != 0 and abs(value) < 10**-digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def pval(value: Any) -> str:
    """A p- or q-value: :func:`num` with 4 decimals; ``<1e-06`` for a stored 0 (the analysis
    floors smaller values to 0)."""
    if isinstance(value, int | float) and value == 0:
        return "<1e-06"
    return num(value, 4)


FILTERS = {
    "md": markdown_inline,
    "num": num,
    "one_line": one_line,
    "pct": pct,
    "prompt_text": prompt_text,
    "pval": pval,
    "redact": redact,
}


@lru_cache(maxsize=8)
def environment(template_dir: Path | None = None) -> SandboxedEnvironment:
    """The environment for people-facing outputs (see the module docstring), its templates
    looked up in ``template_dir`` first when given, then in ``pipeline/render/templates/``.
    Environments are cached per ``template_dir``.

    Returns:
        a :class:`~jinja2.sandbox.SandboxedEnvironment`; ``get_template(name)`` raises
        :class:`jinja2.TemplateNotFound` or :class:`jinja2.TemplateSyntaxError`, rendering
        raises :class:`jinja2.UndefinedError` or :class:`jinja2.sandbox.SecurityError` (all
        :class:`jinja2.TemplateError`).
    """
    # jinja2 is imported here, on first render: the CLI imports the formatters above on every
    # command, including a rerun that renders nothing (tests/test_rerun.py)
    from jinja2 import (
        BaseLoader,
        ChoiceLoader,
        FileSystemLoader,
        PackageLoader,
        StrictUndefined,
        select_autoescape,
    )
    from jinja2.sandbox import SandboxedEnvironment

    package: BaseLoader = PackageLoader("pipeline.render", "templates")
    loader = (
        package
        if template_dir is None
        else ChoiceLoader([FileSystemLoader(str(template_dir)), package])
    )
    env = SandboxedEnvironment(
        loader=loader,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=select_autoescape(
            enabled_extensions=("html", "html.j2"), default_for_string=False, default=False
        ),
    )
    env.filters.update(FILTERS)
    return env

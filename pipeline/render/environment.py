"""The one Jinja environment for every output a person reads: the system prompts,
``SKILLBOOK.md``, the ``AGENTS.md`` section, the pull-request Markdown and the HTML report.

:func:`environment` makes it: a :class:`~jinja2.sandbox.SandboxedEnvironment` (a template
cannot reach Python internals, so a user template or trace text that looks like template code
is printed, never evaluated), :class:`~jinja2.StrictUndefined` (a misspelt name is an error,
not an empty string), ``trim_blocks``, ``lstrip_blocks`` and ``keep_trailing_newline`` (a line
holding only a ``{% ... %}`` tag leaves nothing behind; a template's last newline is kept), and
autoescaping for ``.html`` templates only. Its loader reads ``pipeline/render/templates/``,
after a user's template directory when one is given (``--templates DIR``).

Every value a template prints (``{{ ... }}``, after its filters) passes the environment's
``finalize`` hook (:func:`finalize`): personal data and secrets are replaced
(:func:`pipeline.redact.redact`) before the HTML templates escape it (there braces become
entities too, so that no client-side template engine reads them), so no output carries them
whatever its template. Two kinds of value pass unchanged: :class:`markupsafe.Markup` (HTML made
by coach from redacted text, such as the report's charts) and :class:`Verbatim` (text the team
wrote for the output, such as a base prompt file).

Trace-derived text is made safe for its output kind by the functions below, also registered as
filters:

- ``redact``: personal data and secrets replaced (:func:`pipeline.redact.redact`);
- ``one_line``: whitespace runs, newlines included, become one space;
- ``md`` (:func:`markdown_inline`): redacted, one line, Markdown- and template-active
  characters (``\\ ` * [ ] < > | # { }``, ``%`` next to a brace, and ``_`` where it could
  start or end emphasis) backslash-escaped,
  for inline text, headings and table cells (GitHub Flavored Markdown,
  https://github.github.com/gfm/ , section 2.4 "Backslash escapes"; an ``_`` inside a word
  never starts emphasis, section 6.2);
- ``code`` (:func:`code_span`): one line as a Markdown code span whose backtick fence is longer
  than any run of backticks inside (section 6.1), so no text can close it, template delimiters
  broken (:func:`break_template_syntax`);
- :func:`prompt_text` (``prompt_text``): redacted, one line, Markdown- and template-active
  characters (``\\ ` * { } [ ] < > # |``, ``%`` next to a brace) escaped: skill text as a
  prompt carries it.

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
    "Verbatim",
    "break_template_syntax",
    "code_span",
    "environment",
    "finalize",
    "fence",
    "markdown_inline",
    "num",
    "one_line",
    "pct",
    "prompt_text",
    "pval",
    "visible_controls",
]

# a % next to a brace too: "\\{%" would still open a Jinja block
_PROMPT_SPECIAL = re.compile(r"[\\`*{}\[\]<>#|]|(?<=\{)%|%(?=\})")
_INLINE_SPECIAL = re.compile(
    r"[\\`*\[\]<>|#{}]|(?<=\{)%|%(?=\})|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])"
)
_BACKTICKS = re.compile(r"`+")
# C0 controls but tab, newline and carriage return; DEL and C1; bidirectional overrides and
# isolates (they reorder what a reader sees, CVE-2021-42574)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Between the two characters of a template delimiter ({{ }} {% %} {# #}: Jinja, Django, Liquid,
# Mustache, Go templates, AngularJS).
_DELIMITER = re.compile(r"(?<=\{)(?=[{%#])|(?<=[}%#])(?=\})")


class Verbatim(str):
    """Text the team wrote for an output (a base prompt file), printed as it is: the
    environment's :func:`finalize` does not redact it."""

    __slots__ = ()


def one_line(text: Any) -> str:
    """``text`` as a string on one line: every run of whitespace becomes one space, ends
    trimmed."""
    return " ".join(str(text).split())


def markdown_inline(text: Any) -> str:
    """Inline Markdown-safe text: redacted (:func:`pipeline.redact.redact`), one line
    (:func:`one_line`), HTML-, link-, code-, emphasis- and table-breaking characters
    (``\\ ` * [ ] < > | # { }``, ``%`` next to a brace, and ``_`` unless inside a word)
    backslash-escaped."""
    return _INLINE_SPECIAL.sub(lambda m: "\\" + m.group(0), one_line(redact(str(text))))


def visible_controls(text: str) -> str:
    """``text`` with every control character but tab, newline and carriage return, and every
    bidirectional override or isolate, written as its escape (``\\x1b``, ``\\u202e``), so that a
    terminal or viewer shows it instead of acting on it."""
    return _CONTROL.sub(
        lambda m: (
            f"\\x{ord(m.group(0)):02x}" if ord(m.group(0)) < 0x100 else f"\\u{ord(m.group(0)):04x}"
        ),
        text,
    )


def break_template_syntax(text: str) -> str:
    """``text`` with a backslash between the two characters of every template delimiter
    (``{{`` -> ``{\\{``, ``{%`` -> ``{\\%``, ``{#``, ``}}`` -> ``}\\}``, ``%}``, ``#}``), so that no
    template engine that reads it later (Jinja, Django, Liquid, Mustache, AngularJS) acts on
    it. Other braces are kept."""
    return _DELIMITER.sub(lambda _m: "\\", text)


def code_span(text: Any) -> str:
    """``text`` on one line as a Markdown code span, fenced by one more backtick than its
    longest run of backticks (padded with a space where it starts or ends with one), so that
    nothing in it is Markdown or HTML, with its template delimiters broken
    (:func:`break_template_syntax`). Redacted by :func:`finalize` when printed."""
    value = break_template_syntax(one_line(text))
    ticks = "`" * (max((len(run) for run in _BACKTICKS.findall(value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{ticks}{pad}{value}{pad}{ticks}"


def fence(text: str) -> str:
    """A fence for a Markdown code block holding ``text``: at least three backticks, and more
    than its longest run of backticks (GFM section 4.5)."""
    return "`" * max(3, max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)


def finalize(value: Any) -> Any:
    """The environment's ``finalize`` hook, applied to every printed value: a string redacted
    (:func:`pipeline.redact.redact`) with its control characters made visible
    (:func:`visible_controls`), any other value but a number or None as its redacted
    ``str``, a number unless its digits are personal data; :class:`Verbatim` and
    :class:`markupsafe.Markup` (``__html__``) values unchanged."""
    if isinstance(value, Verbatim) or hasattr(value, "__html__"):
        return value
    if isinstance(value, str):
        return visible_controls(redact(value))
    if value is None or isinstance(value, bool | float):
        return value
    text = str(value)
    cleaned = visible_controls(redact(text))
    return value if isinstance(value, int) and cleaned == text else cleaned


def prompt_text(text: str) -> str:
    """Skill text made inert for a prompt: personal data and secrets redacted
    (:func:`pipeline.redact.redact`), one line, Markdown- and template-active characters
    (``\\ ` * { } [ ] < > # |``, ``%`` next to a brace) backslash-escaped."""
    return _PROMPT_SPECIAL.sub(lambda m: "\\" + m.group(0), one_line(redact(text)))


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
    "code": code_span,
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
        pass_eval_context,
        select_autoescape,
    )
    from jinja2.nodes import EvalContext
    from jinja2.sandbox import SandboxedEnvironment
    from markupsafe import Markup, escape

    package: BaseLoader = PackageLoader("pipeline.render", "templates")
    loader = (
        package
        if template_dir is None
        else ChoiceLoader([FileSystemLoader(str(template_dir)), package])
    )

    @pass_eval_context
    def finalize_for(context: EvalContext, value: Any) -> Any:
        # in HTML, braces too are entities: no client-side template engine reads them
        out = finalize(value)
        if context.autoescape and isinstance(out, str) and not hasattr(out, "__html__"):
            return Markup(str(escape(out)).replace("{", "&#123;").replace("}", "&#125;"))
        return out

    env = SandboxedEnvironment(
        loader=loader,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=finalize_for,
        autoescape=select_autoescape(
            enabled_extensions=("html", "html.j2"), default_for_string=False, default=False
        ),
    )
    env.filters.update(FILTERS)
    return env

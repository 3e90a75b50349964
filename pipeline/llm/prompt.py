"""The prompts coach sends to a model are Jinja templates, rendered in one sandboxed environment
(:data:`ENVIRONMENT`: undefined names are errors, block tags leave no blank lines). The defaults
ship as package data in ``pipeline/llm/templates/`` (``distill.md.j2``, ``judge.md.j2``); a user
may replace them (``--llm-template``, ``--llm-label-rubric``).

These prompts are read by a model, not by people, so they are not part of
:mod:`pipeline.render`: their trace-derived text is made safe by
:func:`pipeline.llm.items.as_data` before it reaches a template.
"""

from __future__ import annotations

from importlib import resources

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["ENVIRONMENT", "package_template"]

ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def package_template(name: str) -> str:
    """The source text of the default template ``name`` (e.g. ``"distill.md.j2"``) shipped in
    ``pipeline/llm/templates/``.

    Raises:
        FileNotFoundError: no such template in the package.
    """
    return (resources.files("pipeline.llm") / "templates" / name).read_text("utf-8")

"""Every output a person reads: the system prompts of each namespace
(:class:`PromptGenerator`), the comparison of two versions of the Skillbook and prompts
(:func:`diff_snapshots`) with its Markdown for a pull request (:func:`markdown_summary`), and
the offline HTML report (:func:`render_report`).

Trace-derived text is escaped and redacted on the way in; templates run sandboxed. The names
below are imported on first use (PEP 562): rendering prompts loads neither matplotlib nor
polars, which only the report needs.
"""

import lazy_loader

# the names of pipeline.render.__init__.pyi, each imported from its module on first use (SPEC 1)
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)

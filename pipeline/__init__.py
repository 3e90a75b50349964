"""coach: an offline learning layer for AI agents.

Traces in, evidence-backed skills out, one stage package after another::

    from pipeline.ingest import ingest

    traces = ingest(["traces/"])                        # pipeline.ingest
    analysis = Analyzer().run(traces)                   # pipeline.analyze
    candidates = SkillExtractor().run(analysis)         # pipeline.extract
    book = Skillbook.load(path); book.merge(candidates)  # pipeline.skillbook
    prompts = PromptGenerator().run(book, bases)        # pipeline.render

:func:`pipeline.learn.learn` runs them all in order, as ``coach learn`` does.

The classes below are imported on first use (PEP 562), so that ``import pipeline`` loads
nothing of the analysis stack (polars, DuckDB, pyarrow, numpy).
"""

import lazy_loader

# the names of pipeline.__init__.pyi, each imported from its module on first use (SPEC 1)
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)

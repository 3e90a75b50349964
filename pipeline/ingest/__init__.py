"""The ingest stage: trace files in, the canonical tables out.

:func:`ingest` discovers the input files (:mod:`~pipeline.ingest.discovery`), sniffs each one's
format and reads it with its adapter (:mod:`pipeline.ingest.formats`), converts the records to
the three canonical tables (:mod:`~pipeline.ingest.schema`) and returns them as
:class:`Traces`, which :mod:`~pipeline.ingest.store` saves to and loads from a data directory.

The names below are imported on first use (PEP 562): discovering files and reading the store's
bookkeeping (what a ``coach learn`` with nothing new needs) loads neither the adapters nor
pyarrow.
"""

import lazy_loader

# the names of pipeline.ingest.__init__.pyi, each imported from its module on first use (SPEC 1)
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)

"""The ``coach`` command line: click commands only. Each command parses its options, builds one
frozen :class:`~pipeline.config.Config` (or the settings it needs), calls the library and
prints: data on stdout, progress and diagnostics on stderr. Exit codes: 0 success, 1 a domain
error, 2 bad usage, 3 done but this run quarantined input (``ingest``, ``learn``).
"""

from pipeline.cli.commands import main

__all__ = ["main"]

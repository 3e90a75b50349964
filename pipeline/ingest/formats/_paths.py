"""Names of trace files: the compression suffixes read through (gzip ``.gz``, Zstandard
``.zst``) and a file's data suffix under them. Standard library only, so that finding the input
files (:func:`pipeline.ingest.discovery.discover`) loads no decompressor or JSON streamer.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["COMPRESSED_SUFFIXES", "data_suffix"]

COMPRESSED_SUFFIXES = (".gz", ".zst")


def data_suffix(path: Path) -> str:
    """The data suffix of ``path`` in lower case, under any compression suffix:
    ``runs.jsonl.gz`` -> ``.jsonl``, ``spans.json`` -> ``.json``."""
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""

"""One JSON document read fast: by orjson, where it reads the document exactly as
:func:`~pipeline.ingest.formats._io.load_json` (Python's ``json`` with the depth limit of
:func:`~pipeline.ingest.formats._jsontext.loads`) does, else by ``load_json`` itself.

orjson follows RFC 8259 strictly and reads containers nested up to 1024 levels; Python's reader
also takes ``NaN``/``Infinity``, lone surrogate escapes and integers of any length (orjson
refuses the first two, and reads an integer beyond 64 bits as a float). So the document is
given to orjson wrapped in ``1024 - MAX_DEPTH`` arrays (it then refuses exactly the documents
nested more than :data:`~pipeline.ingest.formats._jsontext.MAX_DEPTH` levels deep, without a
walk over the parsed value), unless it holds a run of digits an integer beyond 64 bits would
need; whatever orjson refuses is read again by ``load_json``, which gives the same value or the
same error as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import zstandard

from pipeline.errors import InputError
from pipeline.ingest.formats._io import load_json, open_binary
from pipeline.ingest.formats._jsontext import MAX_DEPTH

__all__ = ["ORJSON_DEPTH", "load_document", "read_document"]

# How many levels orjson reads (tests/test_ingest_vectorised_tau2.py checks it).
ORJSON_DEPTH = 1024
_PAD = ORJSON_DEPTH - MAX_DEPTH
_OPEN, _CLOSE = b"[" * _PAD, b"]" * _PAD
# The start of a run of 19 digits not after a digit, a "." or an exponent's "e": perhaps an
# integer beyond int64, which orjson reads otherwise than Python. Found by mapping digits to
# "0", "." and "e" to themselves and all else to " " (faster than a regular expression).
_DIGITS = bytes(48 if 48 <= c <= 57 else c if c in b".eE" else 32 for c in range(256))
_LONG_RUN = b" " + b"0" * 19


def load_document(path: Path, max_bytes: int) -> Any:
    """The file parsed as one JSON document, as :func:`~pipeline.ingest.formats._io.load_json`
    parses it.

    Raises:
        InputError: as ``load_json`` (unreadable, too large, empty, not UTF-8, not JSON, nested
            too deeply).
    """
    return read_document(path, max_bytes)[0]


def read_document(path: Path, max_bytes: int) -> tuple[Any, bool]:
    """``(value, by_orjson)``: the file parsed as :func:`load_document` parses it, and whether
    orjson parsed it (then the value holds no NaN or infinity, no integer beyond 64 bits and no
    lone surrogate).

    Raises:
        InputError: as :func:`load_document`.
    """
    try:
        with open_binary(path) as stream:
            data = stream.read(max_bytes + 1)
    except (InputError, OSError, EOFError, zstandard.ZstdError):
        data = b""  # load_json reads it again and says what is wrong
    data = data.removeprefix(b"\xef\xbb\xbf")
    long_run = (b" " + data.translate(_DIGITS)).find(_LONG_RUN) >= 0
    if data.strip() and len(data) <= max_bytes and not long_run:
        try:
            value = orjson.loads(b"".join((_OPEN, data, _CLOSE)))
        except orjson.JSONDecodeError:
            pass
        else:
            for _ in range(_PAD):
                value = value[0]
            return value, True
    return load_json(path, max_bytes), False

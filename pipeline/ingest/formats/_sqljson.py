"""SQL fragments for reading JSON with DuckDB the way Python's ``json`` reads it: the JSON type
of a value (:func:`json_type`), whether a number is an integer Python and Arrow read alike
(:func:`is_int64`, :func:`is_integer`), and which lines DuckDB may parse at all
(:data:`PARSABLE`).
"""

from __future__ import annotations

__all__ = ["PARSABLE", "is_int64", "is_integer", "json_type"]

# A bare inf or nan (any case, perhaps signed) after ``prefix``: one pattern per prefix, each
# opening with a literal, which RE2 scans for several times faster than a class.
_BARE = "[-+]?([iI][nN][fF]|[nN][aA][nN])"
_NOT_PYTHON = " or ".join(
    f"regexp_matches(line, '{prefix}\\s*{tail}')"
    for prefix, tail in ((",", "[\\]}]"), (":", _BARE), (",", _BARE), ("\\[", _BARE))
)
# The lines of ``lines`` (column ``line``) DuckDB's parser reads as Python's does: valid JSON to
# it, and without the trailing commas and inf/nan it takes but Python does not.
PARSABLE = f"json_valid(line) and not ({_NOT_PYTHON})"


def json_type(expr: str) -> str:
    """The JSON type of ``expr`` (a JSON value as DuckDB writes it: minified, so its first
    character says) as ``VARCHAR``, ``OBJECT``, ``ARRAY``, ``BOOLEAN``, ``NULL`` or ``NUMBER``;
    ``MISSING`` for SQL NULL (an absent key)."""
    return (
        f"(case left(({expr})::varchar, 1) when '\"' then 'VARCHAR' when '{{' then 'OBJECT' "
        "when '[' then 'ARRAY' when 't' then 'BOOLEAN' when 'f' then 'BOOLEAN' "
        f"when 'n' then 'NULL' else case when ({expr}) is null then 'MISSING' else 'NUMBER' "
        "end end)"
    )


def is_int64(expr: str) -> str:
    """Whether the JSON number ``expr`` is an integer that fits int64 (at most 18 digits) and
    reads back as the same text (not ``-0``)."""
    return f"(regexp_full_match(({expr})::varchar, '-?(0|[1-9][0-9]{{0,17}})') and ({expr})::varchar <> '-0')"


def is_integer(expr: str) -> str:
    """Whether the JSON number ``expr`` is written as an integer (any length)."""
    return f"regexp_full_match(({expr})::varchar, '-?[0-9]+')"

"""When an action goes wrong: the tool result or argument value that marks the runs where
the action failed (part of :func:`pipeline.analyze.alternatives`).

Among the runs that took the action (at most ``max_runs`` of each outcome), the scalar
``key=value`` pair of the last tool result before the action (a JSON object flattened to dotted
keys; lists, nulls, strings over :data:`MAX_VALUE_CHARS` characters, identifiers such as
``reservation_id`` or ``R-54`` and text that is not JSON skipped) or of the action call's
arguments, whose key takes from 2 to :data:`MAX_CATEGORIES` values among those runs, shown by at
least :data:`MIN_RUNS` runs, is tested with the two-sided Fisher exact test
(:func:`pipeline.analyze.stats.fisher`), with Benjamini-Hochberg q-values over all the pairs
tested. The condition is the pair with the smallest p among those more frequent in failed runs,
shown by at least :data:`MIN_CONDITION_SHARE` of the failed ones, with p and q below
:data:`ALPHA`.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import duckdb

from pipeline.analyze.stats import benjamini_hochberg, fisher
from pipeline.redact import redact

__all__ = [
    "ALPHA",
    "MAX_CATEGORIES",
    "MAX_VALUE_CHARS",
    "MIN_CONDITION_SHARE",
    "MIN_RUNS",
    "best_condition",
]

MAX_VALUE_CHARS = 40  # longest string value a condition is made of (characters)
MIN_RUNS = 5  # fewest runs (of both outcomes) that must show a condition's pair
# least share of the failed runs that took the action a condition must cover: it says *when* the
# action goes wrong, not a corner of it
MIN_CONDITION_SHARE = 0.25
# most distinct values a key may take among the runs that took the action: a condition names a
# kind of situation (a cabin class, a status), not one of many names, amounts or texts
MAX_CATEGORIES = 10
ALPHA = 0.05  # a condition's p-value must be below this
_JSON_CHARS = 65536  # longest tool result read (characters): it must stay whole to parse


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, value text) of the scalars of a JSON object (see the module docstring)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif not prefix or value is None or isinstance(value, list):
        return
    elif isinstance(value, bool | int | float):
        yield prefix, json.dumps(value)
    elif isinstance(value, str) and len(value) <= MAX_VALUE_CHARS:
        yield prefix, value


def _scalars(text: str | None) -> set[tuple[str, str]]:
    """The pairs of :func:`_flatten` of ``text`` parsed as JSON, identifiers left out (see
    :func:`_identifier`); none when it is not JSON (or nested too deep to walk)."""
    try:
        pairs = set(_flatten(json.loads(text))) if text else set()
    except (ValueError, RecursionError):
        return set()
    return {(k, v) for k, v in pairs if not _identifier(k, v)}


_ID_KEY = re.compile(r"(^|[._])id$|[a-z]Id$|_ids?$", re.IGNORECASE)
_ID_VALUE = re.compile(r"(?=.*[A-Za-z])(?=.*[0-9])")


def _identifier(key: str, value: str) -> bool:
    """Whether ``key=value`` names one record rather than a kind of situation: a key such as
    ``id``, ``reservation_id``, ``user.id`` or ``orderId``, or a value mixing letters and
    digits (``R-airline-54``, ``2024-05-01T10:00``). Such pairs mark a task, not a condition."""
    return bool(_ID_KEY.search(key)) or bool(_ID_VALUE.match(value))


def best_condition(
    con: duckdb.DuckDBPyConnection,
    calls: dict[str, tuple[int, str | None, str | None]],
    success: dict[str, bool],
) -> dict[str, Any] | None:
    """The condition under which an action goes wrong (the method is in the module docstring).

    Args:
        con: DuckDB connection with the ``steps`` view (:mod:`pipeline.ingest.schema`).
        calls: per trajectory id that took the action, its step_idx, tool name and argument
            text (JSON).
        success: the outcome of each of those trajectories.

    Returns:
        None when no pair qualifies, else ``{"text", "source" ("result" | "argument"),
        "tool", "key", "value", "rate_failed", "rate_succeeded" (fractions, 3 decimals),
        "p_value" (6 decimals)}``, texts redacted.
    """
    placed = sorted((t, idx) for t, (idx, _, _) in calls.items())
    n = Counter(success[t] for t, _ in placed)
    if not (n[True] and n[False]):
        return None
    results = con.execute(
        f"""
        with a as (select unnest($ids::varchar[]) as trajectory_id,
                          unnest($steps::bigint[]) as action_idx)
        select a.trajectory_id, coalesce(r.tool_name, 'unknown_tool'),
               left(r.tool_result_text, {_JSON_CHARS})
        from a join steps r on r.trajectory_id = a.trajectory_id
        where r.step_type = 'tool_result' and r.step_idx < a.action_idx
        qualify row_number() over (partition by a.trajectory_id order by r.step_idx desc) = 1
        """,
        {"ids": [t for t, _ in placed], "steps": [i for _, i in placed]},
    ).fetchall()
    last = {t: (tool, text) for t, tool, text in results}
    seen: dict[bool, Counter[tuple[str, str, str, str]]] = {True: Counter(), False: Counter()}
    for trajectory_id, _ in placed:
        _, tool_name, args = calls[trajectory_id]
        pairs = {("argument", tool_name or "unknown_tool", k, v) for k, v in _scalars(args)}
        if trajectory_id in last:
            tool, text = last[trajectory_id]
            pairs |= {("result", tool, k, v) for k, v in _scalars(text)}
        seen[success[trajectory_id]].update(pairs)
    values: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for source, tool, key, value in set(seen[False]) | set(seen[True]):
        values[(source, tool, key)].add(value)
    tested = []
    for pair in sorted(set(seen[False]) | set(seen[True])):
        if not 2 <= len(values[pair[:3]]) <= MAX_CATEGORIES:
            # one value everywhere tells only which tool came last; many values are names,
            # amounts or texts, not a kind of situation
            continue
        failed, succeeded = seen[False][pair], seen[True][pair]
        if failed + succeeded < MIN_RUNS:
            continue
        p = fisher(failed, n[False] - failed, succeeded, n[True] - succeeded).p_value
        tested.append((p, pair, failed / n[False], succeeded / n[True]))
    if not tested:
        return None
    # Benjamini-Hochberg over every pair tested, whichever way it points
    q_values = benjamini_hochberg([row[0] for row in tested])
    found = [
        (p, -rate_failed, pair, rate_failed, rate_succeeded)
        for (p, pair, rate_failed, rate_succeeded), q in zip(tested, q_values, strict=True)
        if p < ALPHA
        and q < ALPHA
        and rate_failed > rate_succeeded
        and rate_failed >= MIN_CONDITION_SHARE
    ]
    best = min(found, default=None)
    if best is None:
        return None
    p, _, (source, tool, key, value), rate_failed, rate_succeeded = best
    tool, key, value = redact(tool), redact(key), redact(value)
    return {
        "text": f"{tool} returned {key}={value}" if source == "result" else f"{key}={value}",
        "source": source,
        "tool": tool,
        "key": key,
        "value": value,
        "rate_failed": round(rate_failed, 3),
        "rate_succeeded": round(rate_succeeded, 3),
        "p_value": round(p, 6),
    }

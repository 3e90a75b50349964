"""What runs that went the other way did instead, and when an action goes wrong.

A skill rests on a tested behaviour feature of a namespace (:mod:`pipeline.analyze.features`)
and a direction: ``harmful`` (the feature is more common in failed runs) or ``helpful``.
:func:`alternatives` adds what the effect alone does not tell a prompt engineer:

``instead``
    What successful runs of the same stratum (the same task where tasks repeat: the units'
    ``stratum``) did where failed runs took the action (a tool result, for error features,
    stands for its call). Harmful: each failed run showing the feature (a *source*) is paired
    with up to :data:`COUNTERPARTS` successful runs of its stratum without it; helpful:
    successful runs showing it with failed runs without it. The point: the source's last tool
    call before the action that the counterpart also made (the source's *n*-th call to that
    tool: the counterpart's *n*-th, or last), then as many user messages as the source had
    between that call and the action; without such a call, as many user messages as the source
    had before the action. The counterpart's next agent action there is an :class:`Action`.
    A call to the action's tool is the same action (``SAME``), unless the feature is about
    arguments (``write_arg``, ``repeated_call``) and they differ. The most common action other
    than ``SAME`` wins (ties in the order of :class:`Action`), with its most common tool (ties
    by name); ``SAME`` only when every counterpart took the same action.
``condition``
    Among the runs showing the feature (at most ``max_runs`` of each outcome), the scalar
    ``key=value`` pair of the last tool result before the action (a JSON object flattened to
    dotted keys; lists, nulls, strings over :data:`MAX_VALUE_CHARS` characters, identifiers
    such as ``reservation_id`` or ``R-54`` and text that is not JSON skipped) or of the action
    call's arguments that is more frequent in failed runs, shown by at least :data:`MIN_RUNS`
    runs and by at least :data:`MIN_CONDITION_SHARE` of the failed ones, with the smallest
    two-sided Fisher exact p
    (:func:`pipeline.analyze.stats.fisher`), if p and its Benjamini-Hochberg q over the pairs
    tried are below :data:`ALPHA`.
``exemplars``
    (trajectory, step) pointers with short text redacted by :func:`pipeline.redact.redact`:
    harmful, counterparts' steps doing the winning action (role ``instead``; none for ``end``;
    for ``SAME``, the call with the user message before it, which is where such runs differ);
    helpful, successful runs' steps showing the feature (role ``shown``).

Rows are selected and capped in DuckDB; only the steps of the sampled runs come to Python.
Public through :mod:`pipeline.analyze`.
"""

from __future__ import annotations

import enum
import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from pipeline.analyze.condition import (
    ALPHA,
    MAX_VALUE_CHARS,
    MIN_RUNS,
    best_condition,
)
from pipeline.config import FeatureConfig
from pipeline.redact import redact

__all__ = ["ALPHA", "COUNTERPARTS", "MAX_TEXT_CHARS", "MAX_VALUE_CHARS", "MIN_RUNS", "Action",
           "Target", "alternatives"]  # fmt: skip

COUNTERPARTS = 3  # counterparts paired with each source run
MAX_TEXT_CHARS = 200  # longest exemplar text (characters, after redaction)

_UNITS = "coach_instead_units"
_ARGUMENT_KINDS = frozenset({"write_arg", "repeated_call"})  # features about the arguments
# the longest content and argument text read (characters): exemplars show the first 200 after
# redaction, and arguments and results must stay whole to parse as JSON
_CONTENT_CHARS = 4000
_JSON_CHARS = 65536


class Action(enum.Enum):
    """What a run did at the aligned point: ``REPLY`` an assistant message without a tool
    call (an answer, a refusal, a question), ``TRANSFER`` a call to a transfer tool
    (``FeatureConfig.transfer_tool_pattern``), ``OTHER_TOOL`` a call to another tool,
    ``OTHER_ARGS`` a call to the action's tool with other arguments, ``END`` no further agent
    action, ``SAME`` the same action (what differed came before it, such as the user's explicit
    yes). The order breaks ties between equally common actions; ``SAME`` is reported only
    when no run did anything else."""

    REPLY = "reply"
    TRANSFER = "transfer"
    OTHER_TOOL = "other_tool"
    OTHER_ARGS = "other_args"
    END = "end"
    SAME = "same_action"

    def describe(self, tool: str | None) -> str:
        """Plain English, e.g. ``called get_user_details``."""
        return {
            Action.REPLY: "replied to the user without a tool call",
            Action.TRANSFER: "transferred to a human agent",
            Action.OTHER_TOOL: f"called {tool}",
            Action.OTHER_ARGS: f"called {tool} with other arguments",
            Action.END: "ended the run",
            Action.SAME: f"called {tool} too, after different steps before it",
        }[self]


@dataclass(frozen=True)
class Target:
    """A skill to explain: ``key`` (the caller's, e.g. a skill id; the key of the answer),
    ``namespace`` (as in the units), ``feature_id`` and ``direction`` (``"harmful"``: the
    feature is more common in failed runs; ``"helpful"``: in successful ones).

    Raises:
        ValueError: ``direction`` is neither.
    """

    key: str
    namespace: str
    feature_id: str
    direction: str

    def __post_init__(self) -> None:
        if self.direction not in ("harmful", "helpful"):
            raise ValueError(f"direction must be harmful or helpful, not {self.direction!r}")


@dataclass(frozen=True)
class _Step:
    idx: int
    type: str
    text: str | None
    tool: str | None
    call_id: str | None
    args: str | None


_Run = list[_Step]


def alternatives(
    con: duckdb.DuckDBPyConnection,
    units: pl.DataFrame,
    targets: Sequence[Target],
    config: FeatureConfig,
    *,
    max_exemplars: int = 2,
    max_runs: int = 200,
) -> dict[str, dict[str, Any]]:
    """What runs that went the other way did instead, when the action goes wrong, and
    exemplars, for each of ``targets`` (the method is in the module docstring).

    Args:
        con: DuckDB connection with the ``steps`` view (:mod:`pipeline.ingest.schema`) and a
            ``features`` view or table with at least trajectory_id (varchar), feature_id
            (varchar), step_idx (bigint; the first step showing the feature). A temporary
            view ``coach_instead_units`` is registered and dropped again.
        units: one row per labelled trajectory (:attr:`pipeline.analyze.Analysis.units`):
            trajectory_id (str), namespace (str), success (bool), stratum (str).
        targets: the skills to explain; features without a step (``turns``, ``termination``)
            have nothing to say.
        config: ``transfer_tool_pattern`` tells a transfer from another tool.
        max_exemplars: most exemplars per target. max_runs: most source runs per target, and
            most runs of each outcome for the condition (the first by trajectory id).

    Returns:
        ``{target.key: entry}`` for the targets with an ``instead`` or a ``condition``, in the
        order of ``targets``; each entry JSON-ready, every float rounded::

            {"instead": {"action": "reply" | "transfer" | "other_tool" | "other_args" | "end",
                         "tool": str | None, "share": float (of the pairs, 3 decimals),
                         "pairs": int (aligned source-counterpart pairs),
                         "summary": str},                         # absent: no counterparts
             "condition": {"text": str, "source": "result" | "argument", "tool": str,
                           "key": str, "value": str, "rate_failed": float,
                           "rate_succeeded": float (3 decimals), "p_value": float (6 decimals)},
                                                                  # absent: none significant
             "exemplars": [{"trajectory_id": str, "step_idx": int, "text": str (redacted, at
                            most 200 characters), "role": "instead" | "shown"}]}

    Raises:
        duckdb.Error: ``steps`` or ``features`` is missing or lacks a column.
        polars.exceptions.ColumnNotFoundError: ``units`` lacks a column.
    """
    frame = units.select("trajectory_id", "namespace", "success", "stratum")
    con.register(_UNITS, frame.to_arrow())
    try:
        entries = ((t.key, _explain(con, t, config, max_exemplars, max_runs)) for t in targets)
        return {key: entry for key, entry in entries if entry}
    finally:
        con.unregister(_UNITS)


def _explain(
    con: duckdb.DuckDBPyConnection,
    target: Target,
    config: FeatureConfig,
    max_exemplars: int,
    max_runs: int,
) -> dict[str, Any]:
    """The entry of one target (empty when there is nothing to say)."""
    harmful = target.direction == "harmful"
    shown = con.execute(
        f"""
        select trajectory_id, step_idx, success, stratum from (
            select f.trajectory_id, min(f.step_idx) as step_idx, any_value(u.success) as success,
                   any_value(u.stratum) as stratum
            from features f join {_UNITS} u on u.trajectory_id = f.trajectory_id
            where f.feature_id = $feature and u.namespace = $namespace
              and f.step_idx is not null
            group by f.trajectory_id)
        qualify row_number() over (partition by success order by trajectory_id) <= $cap
        order by trajectory_id
        """,
        {"feature": target.feature_id, "namespace": target.namespace, "cap": max_runs},
    ).fetchall()
    if not shown:
        return {}
    # (trajectory id, stratum) of the runs showing the feature with the source outcome
    sources = [(t, stratum) for t, _, success, stratum in shown if success != harmful]
    pairs = _pair(con, target, sources, counterpart_success=harmful)
    wanted = sorted({t for t, _, _, _ in shown} | {c for cs in pairs.values() for c in cs})
    runs = _steps(con, wanted)
    # the action step of every run showing the feature (a tool result stands for its call)
    actions = {t: _action(runs.get(t, []), int(i)) for t, i, _, _ in shown}
    by_args = target.feature_id.split(":", 1)[0] in _ARGUMENT_KINDS
    instead, chosen = _instead(runs, actions, pairs, config, by_args)
    calls = {
        t: (runs[t][p].idx, runs[t][p].tool, runs[t][p].args)
        for t, p in actions.items()
        if p is not None
    }
    condition = best_condition(con, calls, {t: bool(success) for t, _, success, _ in shown})
    entry: dict[str, Any] = {
        k: v for k, v in (("instead", instead), ("condition", condition)) if v is not None
    }
    if not entry:
        return {}
    role = "instead" if harmful else "shown"
    if not harmful:
        chosen = [(t, p) for t, _ in sources if (p := actions.get(t)) is not None]
    same = instead is not None and instead["action"] == Action.SAME.value
    entry["exemplars"] = [
        {
            "trajectory_id": t,
            "step_idx": runs[t][p].idx,
            "text": _with_user(runs[t], p) if same else _text(runs[t][p]),
            "role": role,
        }
        for t, p in chosen[:max_exemplars]
    ]
    return entry


def _with_user(run: _Run, position: int) -> str:
    """The exemplar text of the call at ``position`` with the last user message before it:
    ``user: "<message>" -> tool(args)``, redacted and cut as :func:`_text` does."""
    user = next((s for s in reversed(run[:position]) if s.type == "user"), None)
    if user is None:
        return _text(run[position])
    said = " ".join(redact(user.text or "").split())[:80]
    text = f'user: "{said}" -> ' + " ".join(redact(_call_text(run[position])).split())
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def _call_text(step: _Step) -> str:
    return f"{step.tool}({step.args or ''})" if step.type == "tool_call" else step.text or ""


def _pair(
    con: duckdb.DuckDBPyConnection,
    target: Target,
    sources: list[tuple[str, str]],
    counterpart_success: bool,
) -> dict[str, list[str]]:
    """For each source run (trajectory id, stratum), up to :data:`COUNTERPARTS`
    runs of its stratum with outcome ``counterpart_success`` that do not show the feature:
    the i-th source of a stratum (by id) takes the stratum's candidates (by id) from position
    ``i * COUNTERPARTS`` on, cyclically, so that sources share the counterparts out."""
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for trajectory_id, stratum in sources:
        by_stratum[stratum].append(trajectory_id)
    strata = sorted(by_stratum)
    rows = con.execute(
        f"""
        with need as (select unnest($strata::varchar[]) as stratum,
                             unnest($n::bigint[]) as n)
        select trajectory_id, stratum from (
            select u.trajectory_id, u.stratum, need.n,
                   row_number() over (partition by u.stratum order by u.trajectory_id) as rank
            from {_UNITS} u join need on u.stratum = need.stratum
            where u.namespace = $namespace and u.success = $success
              and not exists (select 1 from features f
                              where f.trajectory_id = u.trajectory_id
                                and f.feature_id = $feature))
        where rank <= n order by stratum, trajectory_id
        """,
        {
            "strata": strata,
            "n": [COUNTERPARTS * len(by_stratum[s]) for s in strata],
            "namespace": target.namespace,
            "success": counterpart_success,
            "feature": target.feature_id,
        },
    ).fetchall()
    candidates: dict[str, list[str]] = defaultdict(list)
    for trajectory_id, stratum in rows:
        candidates[stratum].append(trajectory_id)
    pairs: dict[str, list[str]] = {}
    for stratum, ids in by_stratum.items():
        pool = candidates.get(stratum, [])
        for i, source in enumerate(sorted(ids)):
            take = min(COUNTERPARTS, len(pool))
            pairs[source] = [pool[(i * COUNTERPARTS + j) % len(pool)] for j in range(take)]
    return pairs


def _steps(con: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[str, _Run]:
    """The steps of the trajectories ``ids`` in order (texts cut to what is used)."""
    rows = con.execute(
        f"""
        select trajectory_id, step_idx, step_type, left(content_text, {_CONTENT_CHARS}),
               tool_name, tool_call_id, left(tool_args, {_JSON_CHARS})
        from steps where trajectory_id in (select unnest($ids::varchar[]))
        order by trajectory_id, step_idx
        """,
        {"ids": ids},
    ).fetchall()
    runs: dict[str, _Run] = defaultdict(list)
    for trajectory_id, *step in rows:
        runs[trajectory_id].append(_Step(int(step[0]), *step[1:]))
    return dict(runs)


def _answers(result: _Step, call: _Step) -> bool:
    """``result`` is the result of ``call`` (by call id, else by tool name)."""
    by_id = bool(call.call_id and result.call_id)
    same = result.call_id == call.call_id if by_id else result.tool == call.tool
    return result.type == "tool_result" and same


def _action(run: _Run, step_idx: int) -> int | None:
    """The position in ``run`` of the action at ``step_idx``: the step itself, or for a tool
    result the call it answers; None when the run has no such step."""
    pos = next((p for p, step in enumerate(run) if step.idx == step_idx), None)
    if pos is None or run[pos].type != "tool_result":
        return pos
    calls = (p for p in range(pos - 1, -1, -1) if run[p].type == "tool_call")
    return next((p for p in calls if _answers(run[pos], run[p])), pos)


def _aligned(source: _Run, action: int, other: _Run) -> int | None:
    """The position of ``other``'s next agent action at the point where ``source`` took the
    action at position ``action`` (see the module docstring), or None: the run ended."""
    called = {step.tool for step in other if step.type == "tool_call"}
    calls = [p for p in range(action) if source[p].type == "tool_call"]
    landmark = next((p for p in reversed(calls) if source[p].tool in called), None)
    start, since = -1, 0
    if landmark is not None:
        tool = source[landmark].tool
        nth = sum(source[p].tool == tool for p in calls if p <= landmark)
        mine = [p for p, step in enumerate(other) if step.type == "tool_call" and step.tool == tool]
        call = mine[min(nth, len(mine)) - 1]
        start = next(
            (p for p in range(call + 1, len(other)) if _answers(other[p], other[call])), call
        )
        since = landmark + 1
    users = sum(step.type == "user" for step in source[since:action])
    theirs = [p for p in range(start + 1, len(other)) if other[p].type == "user"]
    if users and theirs:
        start = theirs[min(users, len(theirs)) - 1]
    for p in range(start + 1, len(other)):
        step = other[p]
        if step.type == "tool_call":
            return p
        preamble = p + 1 < len(other) and other[p + 1].type == "tool_call"
        if step.type == "assistant" and (step.text or "").strip() and not preamble:
            return p
    return None


def _same_args(a: str | None, b: str | None) -> bool:
    try:
        return bool(json.loads(a or "null") == json.loads(b or "null"))
    except (ValueError, RecursionError):
        return (a or "") == (b or "")


def _classify(
    step: _Step | None, action: _Step, transfer: str, by_args: bool
) -> tuple[Action, str | None] | None:
    """The :class:`Action` of ``step`` (None: the run ended) against the source's ``action``
    with its tool; ``SAME`` when it is the same action (``by_args``: other arguments are
    not)."""
    if step is None:
        return Action.END, None
    if step.type != "tool_call":
        return Action.REPLY, None
    if step.tool == action.tool and action.type == "tool_call":
        same = not by_args or _same_args(step.args, action.args)
        return (Action.SAME if same else Action.OTHER_ARGS), step.tool
    if step.tool and re.search(transfer, step.tool, re.IGNORECASE):
        return Action.TRANSFER, step.tool
    return Action.OTHER_TOOL, step.tool


def _instead(
    runs: dict[str, _Run],
    actions: dict[str, int | None],
    pairs: dict[str, list[str]],
    config: FeatureConfig,
    by_args: bool,
) -> tuple[dict[str, Any] | None, list[tuple[str, int]]]:
    """The ``instead`` part and the (counterpart, position) of the pairs that did it, sorted
    by trajectory id and step, one per counterpart."""
    found: list[tuple[Action, str | None, str, int | None]] = []
    n_pairs = 0
    for source in sorted(pairs):
        action = actions.get(source)
        if action is None:
            continue
        run = runs[source]
        for other in pairs[source]:
            theirs = runs.get(other, [])
            pos = _aligned(run, action, theirs)
            step = None if pos is None else theirs[pos]
            kind = _classify(step, run[action], config.transfer_tool_pattern, by_args)
            n_pairs += 1
            if kind is not None:
                found.append((kind[0], kind[1], other, pos))
    if not found:
        return None, []
    counts = Counter(kind for kind, _, _, _ in found)
    order = list(Action)
    choices: list[Action] = [kind for kind in counts if kind is not Action.SAME]
    winner = min(choices or [Action.SAME], key=lambda kind: (-counts[kind], order.index(kind)))
    tools = Counter(tool for kind, tool, _, _ in found if kind is winner and tool is not None)
    tool = min(tools, key=lambda name: (-tools[name], name)) if tools else None
    chosen: dict[str, int] = {}
    for done, name, other, pos in sorted(found, key=lambda row: (row[2], row[3] or 0)):
        if done is winner and name == tool and pos is not None:
            chosen.setdefault(other, pos)
    return {
        "action": winner.value,
        "tool": tool,
        "share": round(counts[winner] / n_pairs, 3),
        "pairs": n_pairs,
        "summary": winner.describe(tool),
    }, sorted(chosen.items())


def _text(step: _Step) -> str:
    """The exemplar text of ``step``: ``tool(args)`` or the message, redacted, whitespace
    folded, at most :data:`MAX_TEXT_CHARS` characters."""
    text = " ".join(redact(_call_text(step)).split())
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"

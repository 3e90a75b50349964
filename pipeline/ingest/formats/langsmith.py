"""LangSmith runs and feedback, as the langsmith SDK returns them (``client.list_runs`` /
``client.read_run`` / ``client.list_feedback`` serialized to JSON Lines or a JSON array).

Follows the ``Run`` and ``Feedback`` schemas of the langsmith Python SDK
(https://github.com/langchain-ai/langsmith-sdk, ``python/langsmith/schemas.py``, langsmith 0.3/0.4)
and the LangChain tracer that fills them (``langchain_core/tracers/langchain.py``,
langchain-core 0.3), documented at https://docs.smith.langchain.com.

Records (a ``/runs/query`` page ``{"runs": [...], "cursors": {...}}`` is unwrapped, and so is
an SDK batch-ingest payload ``{"post": [run], "patch": [run]}``, each posted run completed by its
patch: see :mod:`~pipeline.ingest.formats._langsmith_batch`):

- run: ``{"id", "name", "run_type": "llm" | "chain" | "tool" | "retriever" | "prompt" | "parser" |
  "embedding", "start_time", "end_time", "inputs", "outputs", "error", "parent_run_id",
  "trace_id", "dotted_order", "session_id" (the project id), "extra": {"metadata", "runtime",
  "invocation_params"}, "tags", "events", "status", "prompt_tokens", "completion_tokens",
  "total_tokens", "total_cost", "reference_example_id", "feedback_stats": {key: {"n", "avg",
  "values"}}, "child_runs": [run], "feedback": [feedback]}``. Runs are grouped by trace
  (``trace_id``, else the root id in ``dotted_order``, else the parent chain): one trajectory per
  trace, id = ``trace_id`` (the root run's id), steps in ``dotted_order`` (else ``start_time``)
  order; a run's nested ``child_runs`` belong to the same record;
- feedback: ``{"id", "run_id", "trace_id", "key", "score", "value", "comment", "correction",
  "feedback_source": {"type"}}``, inline in a run's ``feedback`` list or as records of their own.
  A feedback record becomes a ``feedback`` row of trajectory ``trace_id``, else of the trace of
  run ``run_id`` when that run is in the same file, else of ``run_id`` itself, which is right
  only when ``run_id`` is a root run (feedback on a child run of another file without
  ``trace_id`` ends as an orphan, quarantined by ingest).

Steps (read by :mod:`pipeline.ingest.formats._langsmith_runs`): an ``llm`` run's ``inputs.messages``
(LangChain messages, serialized by ``dumpd`` and batched ``[[...]]``, or OpenAI chat messages;
``inputs.prompts`` for completion models) give the messages the trajectory does not have yet
(see :class:`~pipeline.ingest.formats._messages.Conversation`), its
``outputs.generations[0][0].message`` (or an OpenAI ``choices[0].message``) the assistant step
and tool calls, with ``prompt_tokens``/``completion_tokens`` (else ``outputs.usage_metadata``,
else the message's ``usage_metadata``) and the model of ``extra.invocation_params`` /
``extra.metadata.ls_model_name``; a ``tool`` (or ``retriever``) run gives a ``tool_result``
paired with the LLM's ``tool_call`` (by the ``ToolMessage``'s ``tool_call_id``, else by name; a
``tool_call`` step is added when none announced it), ``inputs`` as arguments (LangChain's
``{"input": str}`` parsed), ``outputs.output`` as result, and ``error`` (or ``status: "error"``
of the ToolMessage) as ``is_error``. Chains, prompts and parsers are structure. A trace without
llm runs gets user and assistant steps from the root run's inputs and outputs.

In a trace whose runs name more than one agent, each step's ``actor`` is the
``extra.metadata.lc_agent_name`` of its run or of the nearest ancestor run that has one
(LangChain's ``create_agent(name=...)``, langchain 1.x ``langchain/agents/factory.py``, sets it
on the agent's graph, and runs inherit their parent's metadata); user messages have none. Runs
carry no other documented agent identity (``langgraph_node`` names graph nodes such as ``agent``
and ``tools``, not agents), so without ``lc_agent_name`` ``actor`` stays null.

Outcome: every feedback (``score`` as ``value``, ``value`` as ``value_text``, ``feedback_source.
type`` as ``source``) becomes a ``feedback`` row, trajectory-level when on the root run or on a
run that produced no step, else on that run's first step; without feedback, the root run's
``feedback_stats`` averages are used. The outcome is
:func:`~pipeline.ingest.formats._common.outcome_from_feedback` over them, ``unknown`` without any (a
root ``error`` sets ``termination_reason`` to ``error``, not the outcome). The prompt version is
``extra.metadata.prompt_version`` (or a top-level ``metadata.prompt_version``) of the root run,
else of the first run, in step order, that has one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.ingest.formats._common import (
    FeedbackRows,
    Quarantined,
    Record,
    finish_trajectory,
    json_text,
    outcome_from_feedback,
    parse_time,
    tool_error_count,
    truncate,
)
from pipeline.ingest.formats._io import TRACE_IDS, ReadOptions, first_page_record, iter_page_records
from pipeline.ingest.formats._langsmith_batch import expand_batches, sniff_batch
from pipeline.ingest.formats._langsmith_runs import (
    add_llm_run,
    add_tool_run,
    run_agent,
    run_error,
    run_extra,
    run_prompt_version,
)
from pipeline.ingest.formats._messages import (
    Conversation,
    chat_messages,
    output_messages,
    text_of,
)

__all__ = ["NAME", "read", "sniff"]

NAME = "langsmith"

RUN_TYPES = frozenset({"llm", "chain", "tool", "retriever", "prompt", "parser", "embedding"})
_TOOL_RUNS = frozenset({"tool", "retriever"})
_THREAD_KEYS = ("thread_id", "session_id", "conversation_id")


def _is_run(record: Mapping[str, Any]) -> bool:
    return "id" in record and str(record.get("run_type") or "").lower() in RUN_TYPES


def _is_feedback(record: Mapping[str, Any]) -> bool:
    return (
        "key" in record
        and "run_type" not in record
        and ("run_id" in record or "trace_id" in record)
        and any(k in record for k in ("score", "value", "feedback_source", "correction"))
    )


def sniff(path: Path, head: bytes) -> bool:
    """True when the first record (JSON Lines line, array item, or first item of a ``runs``
    page) is a LangSmith run (``id`` and a ``run_type`` of llm/chain/tool/retriever/prompt/
    parser/embedding), a batch payload ``{"post", "patch"}`` whose first run is one (or whose
    first patch has ``dotted_order`` and ``trace_id``) or feedback (``key``, ``run_id`` or
    ``trace_id``, and ``score``, ``value``, ``feedback_source`` or ``correction``)."""
    record = first_page_record(head, "runs")
    run = sniff_batch(record, head)
    if isinstance(run, Mapping):
        return _is_run(run) or bool(run.get("dotted_order") and run.get("trace_id"))
    return isinstance(record, Mapping) and (_is_run(record) or _is_feedback(record))


# --- runs -------------------------------------------------------------------------------------


def _flatten(run: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """``run`` and its nested ``child_runs``, depth first, children given their parent and trace."""
    children = run.get("child_runs")
    top = {k: v for k, v in run.items() if k != "child_runs"}
    yield top
    for child in children if isinstance(children, list) else []:
        if isinstance(child, Mapping):
            inherited = {"parent_run_id": top.get("id"), "trace_id": top.get("trace_id")}
            yield from _flatten({**inherited, **{k: v for k, v in child.items() if v is not None}})


def _root_of_dotted_order(dotted_order: Any) -> str | None:
    """The root run id in a dotted order ``20230914T223155647Z1b64098b-....<child>``."""
    if not isinstance(dotted_order, str) or "Z" not in dotted_order:
        return None
    root = dotted_order.split(".", 1)[0].split("Z", 1)[1]
    return root or None


def _order_key(runs: list[tuple[int, dict[str, Any]]]) -> Any:
    """Sort key for the runs of a trace: ``dotted_order`` when every run has one (the execution
    order LangSmith defines), else ``start_time``; ties keep file order."""
    if all(isinstance(r.get("dotted_order"), str) and r["dotted_order"] for _, r in runs):
        return lambda pair: (pair[1]["dotted_order"], pair[0])

    def by_start(pair: tuple[int, dict[str, Any]]) -> tuple[bool, float, int]:
        stamp = parse_time(pair[1].get("start_time"))
        return stamp is None, stamp.timestamp() if stamp else 0.0, pair[0]

    return by_start


def feedback_row(
    feedback: Mapping[str, Any], trajectory_id: str, step_idx: int | None
) -> dict[str, Any]:
    """A ``feedback`` row from a LangSmith ``Feedback``: ``score`` (bool/int/float) is the value,
    ``value`` (str/dict) the text, ``feedback_source.type`` the source, ``comment`` (with
    ``correction`` appended) the comment.

    Raises:
        ValueError: the feedback has no ``key``.
    """
    key = feedback.get("key")
    if not isinstance(key, str) or not key:
        raise ValueError(f"feedback {feedback.get('id')!r} has no 'key'")
    score = feedback.get("score")
    value = feedback.get("value")
    source = feedback.get("feedback_source")
    comment = feedback.get("comment")
    correction = feedback.get("correction")
    if correction not in (None, "", {}):
        fix = f"correction: {text_of(correction)}"
        comment = f"{comment}\n{fix}" if comment else fix
    return {
        "trajectory_id": trajectory_id,
        "step_idx": step_idx,
        "name": key,
        "value": float(score) if isinstance(score, int | float) else None,
        "value_text": None if value is None else text_of(value),
        "source": text_of(source.get("type")) if isinstance(source, Mapping) else None,
        "comment": text_of(comment),
    }


def _money(value: Any) -> float | None:
    """A cost in USD from a number or a decimal string (the SDK's ``Decimal``), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _stats_rows(stats: Any, trajectory_id: str) -> list[dict[str, Any]]:
    """Rows from a run's ``feedback_stats`` (``{key: {"n", "avg", "values": {label: count}}}``):
    the average as value, else the most frequent label as text."""
    rows = []
    for key, stat in (stats or {}).items() if isinstance(stats, Mapping) else []:
        if not isinstance(stat, Mapping):
            continue
        avg, values = stat.get("avg"), stat.get("values")
        text = None
        if not isinstance(avg, int | float) and isinstance(values, Mapping) and values:
            text = str(max(values.items(), key=lambda kv: kv[1] or 0)[0])
        if isinstance(avg, int | float) or text is not None:
            rows.append(
                {
                    "trajectory_id": trajectory_id,
                    "name": str(key),
                    "value": float(avg) if isinstance(avg, int | float) else None,
                    "value_text": text,
                    "source": "feedback_stats",
                    "comment": f"n={stat.get('n')}" if stat.get("n") is not None else None,
                }
            )
    return rows


def _trajectory(
    trace_id: str,
    runs: list[tuple[int, dict[str, Any]]],
    options: ReadOptions,
    where: str,
    records: int,
) -> tuple[Record, dict[str, int]]:
    """The trajectory of one trace and the first step index of each run that produced steps."""
    ordered = [run for _, run in sorted(runs, key=_order_key(runs))]
    root = next(
        (r for r in ordered if str(r.get("id")) == trace_id),
        next((r for r in ordered if not r.get("parent_run_id")), {}),
    )
    conversation = Conversation(trace_id)
    by_id = {str(r.get("id")): r for r in ordered}
    step_of: dict[str, int] = {}
    models: list[str] = []
    has_llm = any(str(r.get("run_type")).lower() == "llm" for r in ordered)
    conversation.actor = run_agent(root, by_id)
    if not has_llm:
        given = root.get("inputs")
        messages = chat_messages(given)
        if messages is None and given not in (None, {}):
            inner = given.get("input") if isinstance(given, Mapping) else None
            messages = [{"role": "user", "content": text_of(inner if inner else given)}]
        conversation.add_input(messages or [], parse_time(root.get("start_time")))
    for run in ordered:
        run_type = str(run.get("run_type") or "").lower()
        before = len(conversation.steps)
        conversation.actor = run_agent(run, by_id)
        try:
            if run_type == "llm":
                model = add_llm_run(conversation, run)
                if model:
                    models.append(model)
            elif run_type in _TOOL_RUNS:
                add_tool_run(conversation, run)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"run {run.get('id')!r} ({run_type} {run.get('name')!r}) of trace {trace_id}: {exc}"
            ) from exc
        if len(conversation.steps) > before:
            step_of.setdefault(str(run.get("id")), before)
    if not has_llm:
        conversation.actor = run_agent(root, by_id)
        outputs = root.get("outputs")
        if isinstance(outputs, Mapping) and set(outputs) == {"output"}:
            outputs = outputs["output"]
        answer = output_messages(outputs)
        conversation.add_answer(
            [m for m in answer if m["role"] == "assistant"][-1:],
            parse_time(root.get("end_time") or root.get("start_time")),
        )
    steps = conversation.finish()
    root_id = str(root.get("id")) if root else trace_id
    feedback = []
    for run in ordered:
        run_id, given = str(run.get("id")), run.get("feedback")
        for item in given if isinstance(given, list) else []:
            if isinstance(item, Mapping):
                step = None if run_id == root_id else step_of.get(run_id)
                feedback.append(feedback_row(item, trace_id, step))
    if not feedback:
        feedback = _stats_rows(root.get("feedback_stats"), trace_id)
    label, score, source = outcome_from_feedback(
        feedback, options.reward_threshold, options.outcome_feedback
    )
    metadata, _ = run_extra(root)
    cost = _money(root.get("total_cost"))
    if cost is None:
        costs = [_money(r.get("total_cost")) for r in ordered if r.get("run_type") == "llm"]
        cost = sum(c for c in costs if c is not None) if any(costs) else None
    ends = [t for t in (parse_time(r.get("end_time")) for r in ordered) if t is not None]
    thread = next((metadata[k] for k in _THREAD_KEYS if metadata.get(k)), None)
    trajectory = {
        "trajectory_id": trace_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        "dataset": metadata.get("dataset"),
        "domain": metadata.get("domain"),
        "task_id": None
        if root.get("reference_example_id") is None
        else str(root["reference_example_id"]),
        "agent_name": root.get("name"),
        "model": Counter(models).most_common(1)[0][0] if models else None,
        "session_id": None if thread is None else str(thread),
        "user_id": None if metadata.get("user_id") is None else str(metadata["user_id"]),
        "started_at": parse_time(root.get("start_time")),
        "ended_at": parse_time(root.get("end_time")) or (max(ends) if ends else None),
        "outcome_label": label,
        "outcome_score": score,
        "outcome_source": source,
        "termination_reason": "error" if root.get("error") else None,
        "prompt_version": run_prompt_version(root, ordered),
        "n_tool_errors": tool_error_count(steps),
        "cost_usd": cost,
        "metadata": json_text(
            {
                key: value
                for key, value in {
                    "name": root.get("name"),
                    "run_type": root.get("run_type"),
                    "project_id": root.get("session_id"),
                    "tags": root.get("tags") or None,
                    "status": root.get("status"),
                    "error": run_error(root.get("error")),
                    "metadata": dict(metadata) or None,
                }.items()
                if value is not None
            }
        ),
    }
    record = Record(finish_trajectory(trajectory, steps), steps, feedback, where, records)
    return record, step_of


# --- reading ----------------------------------------------------------------------------------


def _resolve(
    runs: dict[str, dict[str, Any]], pending: list[tuple[str, list[dict[str, Any]]]]
) -> Iterator[tuple[str, str | None, list[dict[str, Any]]]]:
    """``(where, trace_id, runs)`` for records whose top run has a parent but no trace id,
    walking parent links through ``runs`` (id -> run); ``None`` when the chain leaves the file."""
    for where, record in pending:
        seen: set[str] = set()
        current: dict[str, Any] | None = record[0]
        trace_id = None
        while current is not None and trace_id is None:
            parent = current.get("parent_run_id")
            if parent is None or str(parent) in seen:
                break
            seen.add(str(parent))
            current = runs.get(str(parent))
            if current is not None:
                trace_id = current.get("trace_id") or _root_of_dotted_order(
                    current.get("dotted_order")
                )
                if trace_id is None and not current.get("parent_run_id"):
                    trace_id = current.get("id")
        yield where, None if trace_id is None else str(trace_id), record


def read(path: Path, options: ReadOptions) -> Iterator[Record | Quarantined | FeedbackRows]:
    """Yield one :class:`Record` per trace, :class:`FeedbackRows` per feedback record, and
    :class:`Quarantined` for records that cannot be used (a trace that fails counts all its
    records).

    Raises:
        InputError: unreadable, empty, or a whole document that is too large or not JSON.
    """
    traces: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    counts: Counter[str] = Counter()
    first_where: dict[str, str] = {}
    by_id: dict[str, dict[str, Any]] = {}
    pending: list[tuple[str, list[dict[str, Any]]]] = []
    feedback_records: list[tuple[str, Mapping[str, Any]]] = []
    order = 0
    records = iter_page_records(path, replace(options, trace_ids=TRACE_IDS), "runs")
    for item in expand_batches(records):
        if isinstance(item, Quarantined):
            yield item
            continue
        where, record = item
        if not isinstance(record, Mapping):
            yield Quarantined(where, "record is not a JSON object", truncate(record))
            continue
        if _is_feedback(record):
            feedback_records.append((where, record))
            continue
        if not _is_run(record):
            reason = "not a LangSmith run or feedback"
            if "run_type" in record and "id" not in record:
                reason = "run has no 'id'"
            elif "run_type" in record:
                reason = f"run has unknown run_type {record.get('run_type')!r}"
            keys = ", ".join(sorted(str(k) for k in record)[:12])
            trace_id = record.get("trace_id") if "run_type" in record else None
            yield Quarantined(
                where,
                f"{reason} (keys: {keys})",
                truncate(record),
                trajectory_ids=(str(trace_id),) if trace_id else (),
            )
            continue
        flat = list(_flatten(record))
        top = flat[0]
        found = (
            top.get("trace_id")
            or _root_of_dotted_order(top.get("dotted_order"))
            or (None if top.get("parent_run_id") else top.get("id"))
        )
        for run in flat:
            if not run.get("trace_id"):
                run["trace_id"] = found
            by_id[str(run.get("id"))] = run
        if found is None:
            pending.append((where, flat))
            continue
        for run in flat:
            traces.setdefault(str(found), []).append((order, run))
            order += 1
        counts[str(found)] += 1
        first_where.setdefault(str(found), where)
    for where, resolved, flat in _resolve(by_id, pending):
        if resolved is None:
            yield Quarantined(
                where,
                f"run {flat[0].get('id')!r} has parent_run_id {flat[0].get('parent_run_id')!r} "
                "but no trace_id or dotted_order, and its parent is not in the file",
                truncate(flat[0]),
            )
            continue
        for run in flat:
            run["trace_id"] = resolved
            traces.setdefault(resolved, []).append((order, run))
            order += 1
        counts[resolved] += 1
        first_where.setdefault(resolved, where)
    step_of: dict[str, tuple[str, int | None]] = {}
    for trace_id, group in traces.items():
        at = f"trace {trace_id} ({first_where[trace_id]})"
        try:
            built, steps = _trajectory(trace_id, group, options, at, counts[trace_id])
        except (ValueError, TypeError) as exc:
            yield Quarantined(at, str(exc), truncate(group[0][1]), counts[trace_id])
            continue
        for _, run in group:
            run_id = str(run.get("id"))
            step_of[run_id] = (trace_id, None if run_id == trace_id else steps.get(run_id))
        yield built
    for where, feedback in feedback_records:
        yield _loose_feedback(where, feedback, step_of)


def _loose_feedback(
    where: str, feedback: Mapping[str, Any], step_of: Mapping[str, tuple[str, int | None]]
) -> FeedbackRows | Quarantined:
    """A feedback record's row: trajectory ``trace_id``, else the trace of run ``run_id`` in this
    file (with that run's first step), else ``run_id`` itself (right when it is a root run)."""
    run_id = None if feedback.get("run_id") is None else str(feedback["run_id"])
    known = step_of.get(run_id) if run_id else None
    trajectory_id = feedback.get("trace_id") or (known[0] if known else run_id)
    if not trajectory_id:
        return Quarantined(where, "feedback has neither run_id nor trace_id", truncate(feedback))
    try:
        row = feedback_row(feedback, str(trajectory_id), known[1] if known else None)
    except ValueError as exc:
        return Quarantined(where, str(exc), truncate(feedback))
    return FeedbackRows([row], where)

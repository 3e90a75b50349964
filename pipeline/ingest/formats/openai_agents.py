"""OpenAI Agents SDK traces: trace and span items, one trajectory per ``trace_id``.

Specification: the tracing module of the OpenAI Agents SDK, openai/openai-agents-python v0.17.3
(https://github.com/openai/openai-agents-python, ``src/agents/tracing/traces.py``,
``spans.py``, ``span_data.py``, ``processors.py``; the tracing guide is
https://openai.github.io/openai-agents-python/tracing/), and its TypeScript twin
openai/openai-agents-js ``packages/agents-core/src/tracing/spans.ts``.

Items, as ``Trace.export()`` / ``Span.export()`` give them and ``BackendSpanExporter`` posts
them to ``/v1/traces/ingest`` as ``{"data": [items]}``:

- trace: ``{"object": "trace", "id": "trace_<32 hex>", "workflow_name", "group_id",
  "metadata"}``;
- span: ``{"object": "trace.span", "id": "span_<24 hex>", "trace_id", "parent_id",
  "started_at", "ended_at" (ISO 8601), "span_data": {"type", ...}, "error": {"message", "data"}
  | null}`` with ``span_data`` one of ``agent`` (``name``, ``handoffs``, ``tools``,
  ``output_type``), ``function`` (``name``, ``input``: JSON text, ``output``, ``mcp_data``),
  ``generation`` (``input`` / ``output``: chat messages, ``model``, ``model_config``,
  ``usage``: {``input_tokens``, ``output_tokens``}), ``response`` (``response_id``, ``usage``;
  custom processors of the JS SDK also keep ``_input`` and ``_response``, a Responses
  ``Response``), ``handoff`` (``from_agent``, ``to_agent``), ``guardrail`` (``name``,
  ``triggered``), ``custom`` (``name``, ``data``), ``mcp_tools``, ``transcription``, ``speech``,
  ``speech_group``. Version 0.24.0 also writes ``custom`` spans named ``task`` (one per run)
  and ``turn`` (one per agent turn, the parent of its ``generation``) with ``data``
  ``{"sdk_span_type", "usage", ...}``: they give no step and their usage is not counted again
  (the output of 0.24.0 is in tests/fixtures/real_exports/openai-agents-*.jsonl).

A file is JSON Lines of items (what a custom ``TracingProcessor`` writing ``export()`` per line
gives), JSON Lines of ``{"data": [items]}`` batches, a JSON array of items, or one
``{"data": [items]}`` document. Every item is one source record. A span written twice (on
start and on end) is kept once, the later copy winning. A trace's items must be in one file.

Mapping (spans ordered by ``started_at``, ties by file order; the steps are built by
:class:`~pipeline.ingest.formats._openai_agents_spans.AgentsStepBuilder`):

- ``function`` span: a ``tool_call`` step (``tool_name`` = ``name``, ``tool_args`` = ``input``)
  unless a generation already emitted that call, then a ``tool_result`` step (``output``).
  ``is_error`` is true exactly when the span has an ``error``; ``error_message`` is
  ``error.message`` with ``error.data.error`` appended (``Error running tool (non-fatal):
  <exception>``). The call id comes from the generation's matching tool call (same name, first
  unmatched), else it is the span id.
- ``generation`` span: its ``input`` messages, deduplicated -- the first generation of a trace
  contributes every input message; later ones only system / developer / user messages not seen
  before (their assistant and tool messages repeat steps already taken) -- then its ``output``
  (an assistant message with ``tool_calls``, or a streamed ``Response``) with the span's
  ``model`` and ``usage`` tokens on the first output step.
- ``response`` span: with ``_input`` / ``_response`` the same as a generation (Responses items,
  see :mod:`pipeline.ingest.formats.openai_responses`); otherwise only its ``usage`` tokens count.
  Runs on the default Responses model therefore have tool steps but no message text.
- ``handoff`` span: a step with ``step_type`` ``handoff``, ``tool_name`` = ``to_agent``, the call
  id of the model's ``transfer_to_<agent>`` call.
- ``guardrail`` span with ``triggered`` true: a step with ``step_type`` ``guardrail``,
  ``tool_name`` = the guardrail's name and ``is_error`` true (a tripwire aborts the run with
  an exception); untriggered guardrails give no step. ``n_tool_errors`` counts only tool
  results.
- ``agent`` spans: ``agent_name`` is the first agent's name; ``metadata.agents`` lists all. In
  a trace with more than one agent, each step's ``actor`` is the ``name`` of the nearest
  ``agent`` span above the span that produced it (following ``parent_id``; a handoff belongs to
  the agent handing off); user messages have none, and single-agent traces leave it null.
- Trace: ``group_id`` -> ``session_id``; ``workflow_name`` -> ``dataset`` (unless
  ``metadata.dataset``) and ``metadata.workflow_name``; ``metadata`` keys are copied into
  ``metadata`` (``user_id``, ``task_id``, ``domain`` also to their columns).
- Tokens: the trajectory's are the sums over generation and response spans.
- ``termination_reason``: the error message of the first-starting non-tool span with an
  error (e.g. ``Max turns exceeded``); all span errors are listed in ``metadata.span_errors``.
- Outcome: the SDK records none. Trace ``metadata`` keys named like outcomes (``outcome``,
  ``success``, ``reward``, ``score``, ... -- numeric strings as numbers) become feedback rows
  (source ``metadata``) read by ``outcome_from_feedback``; without them the outcome is
  ``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.ingest.formats._common import (
    Parsed,
    Quarantined,
    Record,
    finish_trajectory,
    json_text,
    metadata_feedback,
    outcome_from_feedback,
    parse_time,
    tool_error_count,
    truncate,
)
from pipeline.ingest.formats._io import TRACE_IDS, ReadOptions, first_record, iter_json_records
from pipeline.ingest.formats._jsontext import first_item
from pipeline.ingest.formats._openai_agents_spans import AgentsStepBuilder, span_error, usage_tokens

__all__ = ["NAME", "read", "sniff"]

NAME = "openai-agents"

_OBJECTS = ("trace", "trace.span")


# --- sniffing -----------------------------------------------------------------------------------


def _is_item(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("object") in _OBJECTS and "id" in value


def sniff(path: Path, head: bytes) -> bool:
    """True when the first record (JSON Lines line, array item, or the first of a ``data``
    batch) is an Agents SDK item: ``"object": "trace"`` or ``"trace.span"`` with an ``id``."""
    record = first_record(head)
    if isinstance(record, Mapping) and isinstance(record.get("data"), list):
        record = record["data"][0] if record["data"] else None
    if record is None and head.lstrip().startswith(b"{"):
        record = first_item(head, "data")
    return _is_item(record)


# --- grouping -----------------------------------------------------------------------------------


@dataclass
class _Trace:
    """The items of one trace id, in file order."""

    where: str
    trace: Mapping[str, Any] | None = None
    spans: dict[str, tuple[int, Mapping[str, Any]]] = field(default_factory=dict)
    records: int = 0


def _items(where: str, obj: Any) -> Iterator[tuple[str, Any] | Quarantined]:
    """The items of one read record: a ``{"data": [...]}`` batch gives each of its items."""
    if isinstance(obj, Mapping) and "data" in obj and "object" not in obj:
        data = obj["data"]
        if not isinstance(data, list):
            yield Quarantined(where, "'data' is not a list of trace and span items", truncate(obj))
        elif not data:
            yield Quarantined(where, "'data' holds no items", truncate(obj))
        else:
            prefix = "" if where == "document" else f"{where} "
            for index, item in enumerate(data):
                yield f"{prefix}data[{index}]", item
        return
    yield where, obj


def _group(path: Path, options: ReadOptions) -> Iterator[Quarantined | dict[str, _Trace]]:
    """Quarantined items as they come, then the traces of the file by id (insertion order)."""
    traces: dict[str, _Trace] = {}
    order = 0
    for record in iter_json_records(path, replace(options, trace_ids=TRACE_IDS)):
        if isinstance(record, Quarantined):
            yield record
            continue
        if record[0] == "document" and not (
            _is_item(record[1]) or (isinstance(record[1], Mapping) and "data" in record[1])
        ):
            raise InputError(
                f"{path}: not OpenAI Agents SDK tracing data (expected trace/span items, an "
                'array of them, or a {"data": [...]} batch)'
            )
        for item in _items(*record):
            if isinstance(item, Quarantined):
                yield item
                continue
            where, obj = item
            if not isinstance(obj, Mapping) or obj.get("object") not in _OBJECTS:
                kind = obj.get("object") if isinstance(obj, Mapping) else type(obj).__name__
                yield Quarantined(
                    where, f"not a trace or span item (object {kind!r})", truncate(obj)
                )
                continue
            is_span = obj["object"] == "trace.span"
            trace_id = obj.get("trace_id") if is_span else obj.get("id")
            if not isinstance(trace_id, str) or not trace_id:
                missing = "trace_id" if is_span else "id"
                yield Quarantined(where, f"{obj['object']} item without {missing!r}", truncate(obj))
                continue
            trace = traces.setdefault(trace_id, _Trace(where))
            trace.records += 1
            if is_span:
                span_id = obj.get("id")
                key = str(span_id) if span_id else f"#{order}"
                first = trace.spans.get(key)
                trace.spans[key] = (first[0] if first else order, obj)
                order += 1
            else:
                trace.trace = obj
    yield traces


# --- trajectories -------------------------------------------------------------------------------


def _sort_key(entry: tuple[int, Mapping[str, Any]]) -> tuple[bool, float, int]:
    order, span = entry
    stamp = parse_time(span.get("started_at")) or parse_time(span.get("ended_at"))
    return stamp is None, stamp.timestamp() if stamp else 0.0, order


def _spans(trace_id: str, trace: _Trace) -> list[Mapping[str, Any]]:
    """The spans of ``trace`` in start order, each checked to have a typed ``span_data``.

    Raises:
        ValueError: naming the span (its position in the file among the trace's spans and id).
    """
    ordered = sorted(trace.spans.values(), key=lambda e: e[0])
    for number, (_, span) in enumerate(ordered):
        data = span.get("span_data")
        label = f"span {number} ({span.get('id')}) of trace {trace_id}"
        if not isinstance(data, Mapping):
            raise ValueError(f"{label}: 'span_data' is not an object")
        if not isinstance(data.get("type"), str):
            raise ValueError(f"{label}: 'span_data' has no 'type'")
        error = span.get("error")
        if error is not None and not isinstance(error, Mapping):
            raise ValueError(f"{label}: 'error' is not an object")
    return [span for _, span in sorted(ordered, key=_sort_key)]


def _agent_of(span: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The name of the nearest ``agent`` span above ``span`` (following ``parent_id``), or
    ``None`` when there is none in the trace (or it has no name)."""
    seen: set[str] = set()
    parent = span.get("parent_id")
    while parent is not None and str(parent) in by_id and str(parent) not in seen:
        seen.add(str(parent))
        current = by_id[str(parent)]
        data = current["span_data"]
        if data["type"] == "agent":
            return str(data["name"]) if data.get("name") else None
        parent = current.get("parent_id")
    return None


def _record(trace_id: str, trace: _Trace, options: ReadOptions) -> Record:
    spans = _spans(trace_id, trace)
    by_id = {str(span["id"]): span for span in spans if span.get("id")}
    builder = AgentsStepBuilder(trace_id)
    agents: list[str] = []
    errors: list[dict[str, Any]] = []
    termination: str | None = None
    for number, span in enumerate(spans):
        data = span["span_data"]
        kind = data["type"]
        builder.actor = _agent_of(span, by_id)
        try:
            if kind == "agent" and data.get("name"):
                if str(data["name"]) not in agents:
                    agents.append(str(data["name"]))
            elif kind == "generation":
                builder.model_call(
                    span,
                    data.get("input"),
                    data.get("output"),
                    data.get("model"),
                    data.get("usage"),
                )
            elif kind == "response":
                response = data.get("_response")
                response = response if isinstance(response, Mapping) else {}
                if data.get("_input") is not None or response:
                    builder.model_call(
                        span,
                        data.get("_input"),
                        [response] if response else [],
                        response.get("model"),
                        data.get("usage") or response.get("usage"),
                    )
                else:
                    builder.tokens.append(usage_tokens(data.get("usage")))
            elif kind == "function":
                builder.function(span, data)
            elif kind == "handoff":
                builder.handoff(span, data)
            elif kind == "guardrail":
                builder.guardrail(span, data)
        except ValueError as exc:
            raise ValueError(
                f"span {number} ({span.get('id')}) of trace {trace_id}: {exc}"
            ) from exc
        error = span_error(span.get("error"))
        if error:
            errors.append({"span_id": span.get("id"), "type": kind, "message": error})
            if termination is None and kind not in ("function", "handoff", "guardrail"):
                termination = error
    steps = builder.finish()
    head = trace.trace or {}
    metadata = head.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"trace {trace_id}: 'metadata' is not an object")
    feedback = metadata_feedback(
        trace_id, metadata, source="metadata", outcome_name=options.outcome_feedback
    )
    label, score, source = outcome_from_feedback(
        feedback, options.reward_threshold, options.outcome_feedback
    )
    starts = [t for s in spans if (t := parse_time(s.get("started_at")))]
    ends = [t for s in spans if (t := parse_time(s.get("ended_at")))]
    inputs = [t[0] for t in builder.tokens if t[0] is not None]
    outputs = [t[1] for t in builder.tokens if t[1] is not None]
    trial = metadata.get("trial")
    workflow = head.get("workflow_name")
    trajectory = {
        "trajectory_id": trace_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        "dataset": metadata.get("dataset") or workflow,
        "domain": metadata.get("domain", metadata.get("task_type")),
        "task_id": None if metadata.get("task_id") is None else str(metadata["task_id"]),
        "trial": trial if isinstance(trial, int) and not isinstance(trial, bool) else None,
        "agent_name": agents[0] if agents else None,
        "model": builder.model or metadata.get("model"),
        "session_id": head.get("group_id") or metadata.get("session_id"),
        "user_id": metadata.get("user_id"),
        "started_at": min(starts) if starts else None,
        "ended_at": max(ends) if ends else None,
        "outcome_label": label,
        "outcome_score": score,
        "outcome_source": source,
        "termination_reason": termination or metadata.get("termination_reason"),
        "n_tool_errors": tool_error_count(steps),
        "input_tokens": sum(inputs) if inputs else None,
        "output_tokens": sum(outputs) if outputs else None,
        "metadata": json_text(
            dict(metadata)
            | {
                k: v
                for k, v in {
                    "workflow_name": workflow,
                    "group_id": head.get("group_id"),
                    "agents": agents or None,
                    "span_errors": errors or None,
                }.items()
                if v is not None
            }
        ),
    }
    where = trace.where if trace.records == 1 else f"trace {trace_id} (from {trace.where})"
    return Record(finish_trajectory(trajectory, steps), steps, feedback, where, trace.records)


def read(path: Path, options: ReadOptions) -> Iterator[Parsed]:
    """Yield one :class:`Record` per trace id of ``path`` (``records`` = its trace and span
    items), a :class:`Quarantined` per unusable item, and a :class:`Quarantined` for every trace
    whose spans cannot be used or that has no spans (``records`` = all its items).

    Raises:
        InputError: the file cannot be read, or is a JSON document that is neither an item nor a
            ``{"data": [...]}`` batch.
    """
    for group in _group(path, options):
        if isinstance(group, Quarantined):
            yield group
            continue
        for trace_id, trace in group.items():
            where = f"trace {trace_id} (from {trace.where})"
            if not trace.spans:
                yield Quarantined(
                    where,
                    f"trace {trace_id} has no spans in this file",
                    truncate(trace.trace or trace_id),
                    trace.records,
                )
                continue
            try:
                yield _record(trace_id, trace, options)
            except (ValueError, TypeError, AttributeError) as exc:
                raw = [trace.trace, *[s for _, s in trace.spans.values()]]
                yield Quarantined(where, str(exc), truncate(raw), trace.records)

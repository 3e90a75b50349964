"""Langfuse exports: full-detail traces, observations and scores.

Follows the Langfuse public API definition (https://api.reference.langfuse.com, the Fern types
generated into langfuse-python 3.x ``langfuse/api/commons/types``: ``TraceWithFullDetails``,
``ObservationsView``, ``Score``) and the blob-storage export field reference
(https://langfuse.com/docs/api-and-data-platform/features/blob-storage-export-fields, Langfuse v3/v4).
Keys are camelCase as in the API or snake_case as in the blob-storage export (``trace_id``,
``start_time``, ``usage_details``, ``provided_model_name``, ``string_value`` ...); both are read.

Records, one per JSON Lines line or JSON array item; an API list page ``{"data": [...], "meta":
{...}}`` is unwrapped (streamed when it is the whole file), and a record may be of any kind:

- trace (``GET /api/public/traces/{traceId}``): ``{"id", "timestamp", "name", "userId",
  "sessionId", "release", "version", "tags", "metadata", "input", "output", "environment",
  "htmlPath", "latency", "totalCost", "observations": [observation], "scores": [score]}``. In the
  list endpoint (``GET /api/public/traces``) and the blob-storage ``traces/`` file
  ``observations`` is a list of ids or absent: such a trace is joined with the observations of the
  same file, if any;
- per-trace export ``{"trace": {trace}, "observations": [observation]}``, as the Langfuse UI's
  trace download and its observations are kept together (the framework traces of
  ``langfuse/langfuse``'s ``packages/shared/scripts/seeder/utils/framework-traces/``): read as
  the trace with those observations, one record; a file may hold one or a JSON array of them;
- observation (``GET /api/public/observations``, ``/api/public/v2/observations``, blob-storage
  ``observations/`` and ``observations_v2/``): ``{"id", "traceId", "type": "GENERATION" | "SPAN" |
  "EVENT" | "AGENT" | "TOOL" | "CHAIN" | "RETRIEVER" | "EVALUATOR" | "EMBEDDING" | "GUARDRAIL",
  "name", "startTime", "endTime", "completionStartTime", "parentObservationId", "model"
  (``providedModelName``), "modelParameters", "input", "output", "metadata", "level": "DEBUG" |
  "DEFAULT" | "WARNING" | "ERROR", "statusMessage", "usage": {"input", "output", "total"},
  "usageDetails": {"input", "output", "total", ...}, "costDetails": {"total", ...},
  "calculatedTotalCost"}``; enriched rows also carry the trace's ``traceName``, ``userId``,
  ``sessionId``, ``tags``, ``release``. Observations are grouped by ``traceId``: one trajectory
  per trace;
- score (``GET /api/public/v2/scores``, blob-storage ``scores/``): ``{"id", "traceId",
  "observationId", "sessionId", "name", "value", "stringValue", "dataType": "NUMERIC" | "BOOLEAN" |
  "CATEGORICAL" | "TEXT" | "CORRECTION", "source": "API" | "ANNOTATION" | "EVAL", "comment"}``. A
  score outside a trace record becomes a ``feedback`` row of trajectory ``traceId`` (joined by
  ingest with the trace read from another file); a score without ``traceId`` (session or
  dataset-run score) is quarantined.

Steps, in observation start order (ties: file order): a ``GENERATION``'s input (OpenAI chat
messages, LangChain messages, ``{"messages": [...]}``, or a prompt string) gives the messages not
already in the trajectory (so the history each call repeats is not repeated; assistant messages
are taken from outputs only once a generation has answered), its output gives the assistant step
and tool calls, with the tokens of ``usageDetails`` (else ``usage``) and the model; ``level:
ERROR`` marks the step ``is_error`` with ``statusMessage``. ``TOOL`` and ``RETRIEVER``
observations, and ``SPAN``s named after a tool call still waiting for its result, give a
``tool_result`` (matched with the generation's ``tool_call``; a ``tool_call`` step is added
first when no generation announced it) whose ``is_error`` is ``level == "ERROR"``. A tool's name
is the ``gen_ai.tool.name`` / ``tool.name`` span attribute that observations ingested over
OpenTelemetry keep in ``metadata.attributes`` (pydantic-ai titles its tool spans ``running
tool: <name>``, Microsoft Agent Framework ``execute_tool <name>``), else the observation's
``name``. Other
observation types (``SPAN``, ``AGENT``, ``CHAIN``, ``EVENT``, ...) are structure, not steps; an
``ERROR`` among them sets ``termination_reason`` to ``error``. A trace without generations gets a
user and an assistant step from the trace's (or root observation's) input and output.

Outcome: every score becomes a ``feedback`` row (``value`` for NUMERIC and BOOLEAN, ``value_text``
for CATEGORICAL/TEXT ``stringValue``; ``step_idx`` is the first step of the scored observation,
null for a trace score or an observation without steps); the outcome is
:func:`~pipeline.ingest.formats._common.outcome_from_feedback` over them, ``unknown`` without scores.

Prompt version: the trace metadata's ``prompt_version`` when it has one, else the prompt the first
``GENERATION`` (in start order) is linked to (``promptName`` and ``promptVersion`` of
``ObservationsView``; ``prompt_name`` / ``prompt_version`` in the blob-storage export), as
``langfuse:<name>:<version>``.

What one observation contributes (steps, tokens, cost) is read by
:mod:`~pipeline.ingest.formats._langfuse_observations`; the messages are read and the steps
assembled by :mod:`~pipeline.ingest.formats._messages` (:class:`Conversation`, shared with
:mod:`~pipeline.ingest.formats.langsmith`); list pages are unwrapped by
:func:`~pipeline.ingest.formats._io.iter_page_records`.
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
from pipeline.ingest.formats._jsontext import first_item
from pipeline.ingest.formats._langfuse_observations import (
    add_generation,
    add_tool_observation,
    observation_cost,
    tool_identity,
)
from pipeline.ingest.formats._messages import (
    Conversation,
    chat_messages,
    maybe_json,
    output_messages,
    text_of,
)
from pipeline.ingest.formats._prompt_version import langfuse_prompt_version

__all__ = ["NAME", "read", "sniff"]

NAME = "langfuse"

OBSERVATION_TYPES = frozenset(
    {
        "SPAN",
        "GENERATION",
        "EVENT",
        "AGENT",
        "TOOL",
        "CHAIN",
        "RETRIEVER",
        "EVALUATOR",
        "EMBEDDING",
        "GUARDRAIL",
    }
)
_TOOL_TYPES = frozenset({"TOOL", "RETRIEVER"})
_SCORE_SOURCES = frozenset({"API", "ANNOTATION", "EVAL"})
_TEXT_SCORES = frozenset({"CATEGORICAL", "TEXT", "CORRECTION"})
# Keys only a Langfuse trace has (besides ``id`` and ``timestamp``), for sniffing; or one of the
# API's camelCase ``sessionId`` / ``userId`` with one of its other optional fields.
_TRACE_KEYS = frozenset({"htmlPath", "observations", "scores", "bookmarked", "projectId"})
_TRACE_OWNERS = frozenset({"sessionId", "userId"})
_TRACE_FIELDS = frozenset({"release", "version", "environment", "tags", "public"})
_SCORE_TARGETS = ("traceId", "observationId", "sessionId", "datasetRunId")


# --- Langfuse records ------------------------------------------------------------------------


def _camel(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with snake_case keys (blob-storage export) renamed to the API's camelCase."""
    out = {k: v for k, v in record.items() if "_" not in k.lstrip("_")}
    for key, value in record.items():
        if "_" in key.lstrip("_"):
            first, *rest = key.split("_")
            out.setdefault(first + "".join(p[:1].upper() + p[1:] for p in rest), value)
    return out


def _kind(record: Mapping[str, Any], raw: Mapping[str, Any] | None = None) -> str | None:
    """``observation``, ``score``, ``trace`` or ``None`` for a camelCased record; with the ``raw``
    record (sniffing) a trace must also show Langfuse-specific keys."""
    if "run_type" in record or "runType" in record:
        return None
    if (
        record.get("traceId") is not None
        and str(record.get("type") or "").upper() in OBSERVATION_TYPES
        and "startTime" in record
    ):
        return "observation"
    if (
        any(k in record for k in _SCORE_TARGETS)
        and isinstance(record.get("name"), str)
        and ("value" in record or "stringValue" in record)
        and ("dataType" in record or str(record.get("source")).upper() in _SCORE_SOURCES)
    ):
        return "score"
    is_trace = "id" in record and "timestamp" in record and "traceId" not in record
    if is_trace and (
        raw is None
        or (
            "messages" not in raw
            and (
                any(k in record for k in _TRACE_KEYS)
                or (any(k in raw for k in _TRACE_OWNERS) and any(k in raw for k in _TRACE_FIELDS))
            )
        )
    ):
        return "trace"
    return None


def _export(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """A per-trace export ``{"trace": {...}, "observations": [...]}`` (the Langfuse UI's trace
    download with the trace's observations beside it) as one full-detail trace; ``None`` for any
    other record."""
    trace, observations = raw.get("trace"), raw.get("observations")
    if "id" in raw or not isinstance(trace, Mapping) or not isinstance(observations, list):
        return None
    return {**trace, "observations": observations}


def _sniff_export(record: Mapping[str, Any], head: bytes) -> bool:
    """True for a per-trace export whose trace is a Langfuse trace, or (the head holds only the
    top-level keys of a large document) whose first observation is a Langfuse observation."""
    if "id" in record or not {"trace", "observations"} <= set(record):
        return False
    trace = record["trace"]
    if isinstance(trace, Mapping):
        merged = {**trace, "observations": []}
        return _kind(_camel(merged), merged) == "trace"
    first = first_item(head, "observations")
    return isinstance(first, Mapping) and _kind(_camel(first)) == "observation"


def sniff(path: Path, head: bytes) -> bool:
    """True when the first record (JSON Lines line, array item, first item of a ``data`` page, or
    a single JSON object) is a Langfuse trace (``id``, ``timestamp`` and one of ``htmlPath``,
    ``observations``, ``scores``, ``bookmarked``, ``projectId``, or ``sessionId``/``userId`` with
    ``release``/``version``/``environment``/``tags``/``public``; no ``messages``), a per-trace
    export ``{"trace", "observations"}`` of such a trace, an observation (``traceId``,
    ``startTime`` and a Langfuse observation ``type``) or a score (``name``, ``value`` and a
    ``dataType`` or Langfuse ``source``); snake_case keys count too."""
    record = first_page_record(head, "data")
    if not isinstance(record, Mapping):
        return False
    return _sniff_export(record, head) or _kind(_camel(record), record) is not None


def _score_row(
    score: Mapping[str, Any], trajectory_id: str, step_of: Mapping[str, int]
) -> dict[str, Any]:
    name = score.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"score {score.get('id')!r} has no 'name'")
    value, string_value = score.get("value"), score.get("stringValue")
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    text = None
    if str(score.get("dataType") or "").upper() in _TEXT_SCORES or not (
        numeric or isinstance(value, bool)
    ):
        text = string_value if string_value is not None else text_of(value)
        value = None
    observation = score.get("observationId") or None
    return {
        "trajectory_id": trajectory_id,
        "step_idx": step_of.get(str(observation)) if observation else None,
        "name": name,
        "value": None if value is None else float(value),
        "value_text": text,
        "source": None if score.get("source") is None else str(score["source"]),
        "comment": text_of(score.get("comment")),
    }


def _context(trace: Mapping[str, Any] | None, observations: list[dict[str, Any]]) -> dict[str, Any]:
    """Trace-level fields: from the trace record, else from enriched observation rows."""
    if trace is not None:
        return dict(trace)
    context: dict[str, Any] = {}
    for observation in observations:
        for key, target in (
            ("traceName", "name"),
            ("userId", "userId"),
            ("sessionId", "sessionId"),
            ("tags", "tags"),
            ("release", "release"),
            ("environment", "environment"),
        ):
            if observation.get(key) not in (None, "", []) and target not in context:
                context[target] = observation[key]
    return context


def _start_key(pair: tuple[int, Mapping[str, Any]]) -> tuple[bool, float, int]:
    stamp = parse_time(pair[1].get("startTime"))
    return stamp is None, stamp.timestamp() if stamp else 0.0, pair[0]


def _trajectory(
    trace_id: str,
    trace: Mapping[str, Any] | None,
    observations: list[dict[str, Any]],
    scores: list[Any],
    options: ReadOptions,
    where: str,
    records: int,
) -> Record:
    conversation = Conversation(trace_id)
    step_of: dict[str, int] = {}
    models: list[str] = []
    errors: list[dict[str, Any]] = []
    context = _context(trace, observations)
    root = next((o for o in observations if not o.get("parentObservationId")), {})
    generations = any(str(o.get("type") or "").upper() == "GENERATION" for o in observations)
    if not generations:
        given = maybe_json(context.get("input", root.get("input")))
        if given not in (None, ""):
            conversation.add_input(
                chat_messages(given) or [{"role": "user", "content": text_of(given)}],
                parse_time(context.get("timestamp", root.get("startTime"))),
            )
    ordered = [observation for _, observation in sorted(enumerate(observations), key=_start_key)]
    for observation in ordered:
        kind = str(observation.get("type") or "").upper()
        before = len(conversation.steps)
        try:
            if kind == "GENERATION":
                model = add_generation(conversation, observation)
                if model:
                    models.append(model)
            elif kind in _TOOL_TYPES or (
                kind == "SPAN" and conversation.pending(tool_identity(observation)[0])
            ):
                add_tool_observation(conversation, observation)
            elif str(observation.get("level") or "").upper() == "ERROR":
                errors.append(
                    {
                        "observation": observation.get("id"),
                        "type": kind,
                        "name": observation.get("name"),
                        "statusMessage": observation.get("statusMessage"),
                    }
                )
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"observation {observation.get('id')!r} ({kind} {observation.get('name')!r}) "
                f"of trace {trace_id}: {exc}"
            ) from exc
        if len(conversation.steps) > before and observation.get("id"):
            step_of.setdefault(str(observation["id"]), before)
    if not generations:
        conversation.add_answer(
            output_messages(context.get("output", root.get("output"))),
            parse_time(root.get("endTime") or context.get("timestamp")),
        )
    steps = conversation.finish()
    feedback = [_score_row(_camel(s), trace_id, step_of) for s in scores if isinstance(s, Mapping)]
    label, score, source = outcome_from_feedback(
        feedback, options.reward_threshold, options.outcome_feedback
    )
    metadata = maybe_json(context.get("metadata"))
    fields = metadata if isinstance(metadata, Mapping) else {}
    costs = [c for c in (observation_cost(o) for o in observations) if c is not None]
    total_cost = context.get("totalCost")
    times = [
        t
        for o in observations
        for t in (parse_time(o.get("endTime")), parse_time(o.get("startTime")))
        if t is not None
    ]
    trajectory = {
        "trajectory_id": trace_id,
        "source_format": NAME,
        "source_uri": options.source_uri,
        "dataset": fields.get("dataset"),
        "domain": fields.get("domain"),
        "task_id": None if fields.get("task_id") is None else str(fields["task_id"]),
        "agent_name": context.get("name") or root.get("name"),
        "model": Counter(models).most_common(1)[0][0] if models else None,
        "session_id": context.get("sessionId") or None,
        "user_id": context.get("userId") or None,
        "started_at": parse_time(context.get("timestamp")) or (min(times) if times else None),
        "ended_at": max(times) if times else None,
        "outcome_label": label,
        "outcome_score": score,
        "outcome_source": source,
        "termination_reason": "error" if errors else None,
        "prompt_version": langfuse_prompt_version(fields, ordered),
        "n_tool_errors": tool_error_count(steps),
        "cost_usd": float(total_cost)
        if isinstance(total_cost, int | float)
        else (sum(costs) if costs else None),
        "metadata": json_text(
            {
                key: value
                for key, value in {
                    "name": context.get("name"),
                    "tags": context.get("tags") or None,
                    "environment": context.get("environment"),
                    "release": context.get("release"),
                    "version": context.get("version"),
                    "htmlPath": context.get("htmlPath"),
                    "metadata": metadata or None,
                    "errors": errors or None,
                }.items()
                if value is not None
            }
        ),
    }
    return Record(finish_trajectory(trajectory, steps), steps, feedback, where, records)


def _unknown_reason(record: Mapping[str, Any]) -> str:
    """Why a record is none of trace, observation, score."""
    if "startTime" in record or "parentObservationId" in record:
        if not record.get("traceId"):
            return f"observation {record.get('id')!r} has no traceId"
        if str(record.get("type") or "").upper() not in OBSERVATION_TYPES:
            return f"observation {record.get('id')!r} has unknown type {record.get('type')!r}"
    keys = ", ".join(sorted(str(k) for k in record)[:12])
    return f"not a Langfuse trace, observation or score (keys: {keys})"


def _embedded(trace: Mapping[str, Any]) -> bool:
    """True for a full-detail trace: ``observations`` is a list of objects (or empty)."""
    observations = trace.get("observations")
    return isinstance(observations, list) and all(isinstance(o, Mapping) for o in observations)


def _build(
    trace_id: str,
    trace: Mapping[str, Any] | None,
    observations: list[dict[str, Any]],
    options: ReadOptions,
    where: str,
    records: int,
) -> Record | Quarantined:
    scores = trace.get("scores") if trace is not None else None
    try:
        return _trajectory(
            trace_id,
            trace,
            observations,
            scores if isinstance(scores, list) else [],
            options,
            where,
            records,
        )
    except (ValueError, TypeError) as exc:
        raw = trace if trace is not None else observations[0] if observations else trace_id
        return Quarantined(where, str(exc), truncate(raw), records)


def read(path: Path, options: ReadOptions) -> Iterator[Record | Quarantined | FeedbackRows]:
    """Yield a :class:`Record` per trace (a full-detail trace record, or the observations of one
    ``traceId`` with the file's trace record of that id, if any), :class:`FeedbackRows` per loose
    score, and :class:`Quarantined` for what cannot be used (with the number of records it
    stands for).

    Raises:
        InputError: unreadable, empty, or a whole document that is too large or not JSON.
    """
    waiting: dict[str, tuple[str, dict[str, Any]]] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in iter_page_records(path, replace(options, trace_ids=TRACE_IDS), "data"):
        if isinstance(item, Quarantined):
            yield item
            continue
        where, raw = item
        if not isinstance(raw, Mapping):
            yield Quarantined(where, "record is not a JSON object", truncate(raw))
            continue
        raw = _export(raw) or raw
        record = _camel(raw)
        kind = _kind(record)
        if kind == "observation":
            groups.setdefault(str(record["traceId"]), []).append(record)
        elif kind == "score":
            trace_id = record.get("traceId")
            if not trace_id:
                yield Quarantined(
                    where,
                    f"score {record.get('id')!r} ({record.get('name')!r}) has no traceId "
                    "(a session or dataset-run score); only trace scores are ingested",
                    truncate(raw),
                )
                continue
            try:
                yield FeedbackRows([_score_row(record, str(trace_id), {})], where)
            except ValueError as exc:
                yield Quarantined(where, str(exc), truncate(raw))
        elif kind == "trace":
            trace_id = record.get("id")
            if not isinstance(trace_id, str | int) or trace_id == "":
                yield Quarantined(where, "trace has no 'id'", truncate(raw))
            elif _embedded(record):
                observations = [_camel(o) for o in record["observations"]]
                yield _build(str(trace_id), record, observations, options, where, 1)
            else:
                waiting[str(trace_id)] = (where, record)
        else:
            observation = "startTime" in record or "parentObservationId" in record
            trace_id = record.get("traceId") if observation else None
            yield Quarantined(
                where,
                _unknown_reason(record),
                truncate(raw),
                trajectory_ids=(str(trace_id),) if trace_id else (),
            )
    for trace_id, observations in groups.items():
        where, trace = waiting.pop(trace_id, (f"trace {trace_id}", None))
        records = len(observations) + (trace is not None)
        yield _build(trace_id, trace, observations, options, where, records)
    for trace_id, (where, trace) in waiting.items():
        yield _build(trace_id, trace, [], options, where, 1)

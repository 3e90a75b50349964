"""SWE-bench evaluation results: which task instances a run resolved.

A results file holds no trajectories, only outcomes; each instance becomes :class:`FeedbackRows`
for the trajectory whose id is the ``instance_id`` (the :mod:`.mini_swe_agent` adapter uses that
id), and ingest then sets the outcome from the ``resolved`` row. Shapes read (SWE-bench
https://github.com/SWE-bench/SWE-bench, ``swebench/harness``, 2025):

- a results summary ``{"instances": [{"instance_id": str, "resolved": bool, "patch_applied":
  bool}], "total", "passed", "failed", ...}`` (as in gruckion/mini-swe-agent
  ``swebench_results/*/results_summary.json``), or a JSON Lines file / JSON array of such
  instance objects;
- the harness's run report (``reporting.py`` ``make_run_report``, ``schema_version`` 2; sb-cli
  reports use the same lists): ``{"resolved_ids", "unresolved_ids", "error_ids",
  "empty_patch_ids", "completed_ids", "incomplete_ids", "submitted_ids": [instance_id]}``;
- a leaderboard submission's ``results/results.json`` (SWE-bench/experiments) ``{"resolved",
  "no_generation", "no_logs": [instance_id]}``, and the older ``get_model_report`` lists
  ``generated``, ``with_logs``, ``install_fail``, ``reset_failed``, ``no_apply``, ``applied``,
  ``test_errored``, ``test_timeout``;
- a per-instance grading report (``grading.py`` ``get_eval_report``, ``report.json``)
  ``{instance_id: {"patch_is_None", "patch_exists", "patch_successfully_applied", "resolved",
  "tests_status": {"FAIL_TO_PASS": {"success": [...], "failure": [...]}, "PASS_TO_PASS": ...}}}``,
  or that inner object alone in ``<instance_id>/report.json``.

Feedback rows per instance (source ``swe-bench``): ``resolved`` 1.0 / 0.0; ``patch_applied``
1.0 / 0.0 when known; ``eval_status`` (text: ``resolved``, ``unresolved``, ``error``,
``empty_patch``, ``no_generation``, ...; the first list in that order naming the instance) for
list reports; ``fail_to_pass`` / ``pass_to_pass`` (share of those tests passing) for grading
reports. A record is an instance: an item of ``instances``, an id of the lists (counted once;
``incomplete_ids``, the dataset instances that got no prediction, are not records), or a key of
a grading report. List reports name only what they list: in ``results/results.json`` the
unresolved instances are not named, so their trajectories stay ``unknown``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.ingest.formats._common import FeedbackRows, Quarantined, feedback_row, truncate
from pipeline.ingest.formats._io import ReadOptions, json_documents, peek_first_json_line

__all__ = ["NAME", "read", "sniff"]

NAME = "swe-bench-results"
SOURCE = "swe-bench"

# (list, eval_status) in precedence order: an instance takes the status of the first list naming it.
_LISTS = (
    ("resolved_ids", "resolved"),
    ("resolved", "resolved"),
    ("error_ids", "error"),
    ("empty_patch_ids", "empty_patch"),
    ("no_generation", "no_generation"),
    ("no_logs", "no_logs"),
    ("install_fail", "install_fail"),
    ("reset_failed", "reset_failed"),
    ("no_apply", "no_apply"),
    ("test_errored", "test_errored"),
    ("test_timeout", "test_timeout"),
    ("unresolved_ids", "unresolved"),
    ("applied", "unresolved"),
    ("with_logs", "unresolved"),
    ("generated", "unresolved"),
    ("completed_ids", "unresolved"),
    ("submitted_ids", "unresolved"),
)
_GRADING_KEYS = ("patch_is_None", "patch_exists", "patch_successfully_applied", "tests_status")
_INSTANCES = re.compile(rb'"instances"\s*:\s*\[\s*\{')
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def sniff(path: Path, head: bytes) -> bool:
    """True for a JSON results summary (``instances`` with ``instance_id`` / ``resolved``), a
    harness run report (``resolved_ids``), a leaderboard ``results.json`` (``resolved`` with
    ``no_generation``), a grading ``report.json`` (``patch_successfully_applied``), or JSON Lines /
    a list of ``{"instance_id", "resolved"}`` objects -- and not a trajectory (no ``messages``)."""
    text = head.lstrip()
    if text[:1] not in (b"{", b"[") or b'"messages"' in head or b'"trajectory_format"' in head:
        return False
    if _INSTANCES.search(head):
        return b'"instance_id"' in head and b'"resolved"' in head
    if b'"resolved_ids"' in head:
        return b'"unresolved_ids"' in head or b'"schema_version"' in head
    if b'"resolved"' in head and (b'"no_generation"' in head or b'"no_logs"' in head):
        return True
    if b'"patch_successfully_applied"' in head and b'"resolved"' in head:
        return True
    first = peek_first_json_line(head)
    if text[:1] == b"[":
        match = re.match(rb"\[\s*(\{.*?\})\s*[,\]]", text, re.DOTALL)
        first = peek_first_json_line(match.group(1)) if match else None
    return isinstance(first, dict) and "instance_id" in first and "resolved" in first


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"'{what}' is not true/false: {value!r}")


def _instance_rows(
    instance_id: str,
    resolved: bool,
    *,
    patch_applied: bool | None = None,
    status: str | None = None,
    tests: Any = None,
) -> list[dict[str, Any]]:
    rows = [feedback_row(instance_id, "resolved", 1.0 if resolved else 0.0, source=SOURCE)]
    if patch_applied is not None:
        rows.append(feedback_row(instance_id, "patch_applied", float(patch_applied), source=SOURCE))
    if status is not None:
        rows.append(feedback_row(instance_id, "eval_status", status, source=SOURCE))
    if isinstance(tests, Mapping):
        for key, name in (("FAIL_TO_PASS", "fail_to_pass"), ("PASS_TO_PASS", "pass_to_pass")):
            group = tests.get(key)
            if not isinstance(group, Mapping):
                continue
            success, failure = group.get("success") or [], group.get("failure") or []
            if not isinstance(success, list) or not isinstance(failure, list):
                continue
            passed, total = len(success), len(success) + len(failure)
            if total:
                rows.append(
                    feedback_row(
                        instance_id,
                        name,
                        passed / total,
                        source=SOURCE,
                        comment=f"{passed}/{total} tests pass",
                    )
                )
    return rows


def _instance(obj: Any, where: str) -> FeedbackRows:
    """An ``{"instance_id", "resolved", "patch_applied"}`` object (or a grading report with its
    ``instance_id``)."""
    if not isinstance(obj, Mapping):
        raise ValueError("instance is not a JSON object")
    instance_id = obj.get("instance_id")
    if not isinstance(instance_id, str) or not instance_id:
        raise ValueError("missing 'instance_id'")
    if "resolved" not in obj:
        raise ValueError(f"instance {instance_id!r} has no 'resolved'")
    applied = obj.get("patch_applied", obj.get("patch_successfully_applied"))
    rows = _instance_rows(
        instance_id,
        _flag(obj["resolved"], "resolved"),
        patch_applied=None if applied is None else _flag(applied, "patch_applied"),
        tests=obj.get("tests_status"),
    )
    return FeedbackRows(rows, where)


def _list_report(report: Mapping[str, Any]) -> Iterator[FeedbackRows | Quarantined]:
    status: dict[str, tuple[str, str]] = {}
    for key, label in _LISTS:
        ids = report.get(key)
        if not isinstance(ids, list):
            continue
        for index, instance_id in enumerate(ids):
            where = f"{key}[{index}]"
            if not isinstance(instance_id, str) or not instance_id:
                yield Quarantined(
                    where, "instance id is not a non-empty string", truncate(instance_id)
                )
            elif instance_id not in status:
                status[instance_id] = (label, where)
    for instance_id, (label, where) in status.items():
        rows = _instance_rows(instance_id, label == "resolved", status=label)
        yield FeedbackRows(rows, where)


def _document(obj: Any, path: Path) -> Iterator[FeedbackRows | Quarantined]:
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: a SWE-bench results file is a JSON object or list")
    if isinstance(obj.get("instances"), list):
        seen: dict[str, str] = {}
        for index, item in enumerate(obj["instances"]):
            where = f"instances[{index}]"
            try:
                rows = _instance(item, where)
            except (ValueError, TypeError) as exc:
                yield Quarantined(where, str(exc), truncate(item))
                continue
            instance_id = rows.rows[0]["trajectory_id"]
            if instance_id in seen:
                yield Quarantined(
                    where,
                    f"instance {instance_id!r} listed twice (first at {seen[instance_id]})",
                    truncate(item),
                )
                continue
            seen[instance_id] = where
            yield rows
        return
    if isinstance(obj.get("resolved_ids"), list) or isinstance(obj.get("resolved"), list):
        yield from _list_report(obj)
        return
    if "resolved" in obj and ("instance_id" in obj or any(k in obj for k in _GRADING_KEYS)):
        instance = dict(obj)
        instance.setdefault("instance_id", path.parent.name)
        yield _instance(instance, "document")
        return
    if obj and all(isinstance(v, Mapping) and "resolved" in v for v in obj.values()):
        for instance_id, report in obj.items():
            try:
                yield _instance({**report, "instance_id": instance_id}, instance_id)
            except (ValueError, TypeError) as exc:
                yield Quarantined(instance_id, str(exc), truncate(report))
        return
    raise InputError(
        f"{path}: not a SWE-bench results file (expected 'instances', 'resolved_ids', a "
        "'resolved' list or a grading report keyed by instance id)"
    )


def read(path: Path, options: ReadOptions) -> Iterator[FeedbackRows | Quarantined]:
    """Yield one :class:`FeedbackRows` per evaluated instance of ``path``, or a
    :class:`Quarantined` for an instance without an id or with a ``resolved`` that is not
    true/false.

    Raises:
        InputError: unreadable, not UTF-8, or a JSON document of none of the shapes above.
    """
    for item in json_documents(path, options):
        if isinstance(item, Quarantined):
            yield item
            continue
        where, obj = item
        if where == "document":
            try:
                yield from _document(obj, path)
            except (ValueError, TypeError) as exc:
                yield Quarantined(where, str(exc), truncate(obj))
            continue
        try:
            yield _instance(obj, where)
        except (ValueError, TypeError) as exc:
            yield Quarantined(where, str(exc), truncate(obj))

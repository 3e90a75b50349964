"""The state one ingest shares between its files (:class:`Run`, :class:`Seen`) and the
settling of a record's trajectory id against it (:func:`settle`): deduplicated, renamed,
superseding an earlier version (the rules are in :mod:`pipeline.ingest._intake`), with the
content hash of records built one by one (:func:`record_sha256`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.ingest.formats import FeedbackRows, Record
from pipeline.ingest.schema import TABLES
from pipeline.ingest.store import FileReport

__all__ = ["Run", "Seen", "feedback_key", "is_duplicate", "record_sha256", "safe_text", "settle"]

# How a renamed id ends: "~" and the first 8 hex digits of the record's SHA-256.
_RENAMED = re.compile(r"^(.*)~[0-9a-f]{8}$")


def safe_text(text: str) -> str:
    """``text`` with characters UTF-8 cannot hold (lone surrogates) escaped, so that it can be
    written to the quarantine and the accounting."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class Seen:
    """A trajectory id already taken: where its record was read (``<path> line 3``), its content
    hash (``None`` for canonical table rows), the path of its file (``source_uri``) and how many
    source records it was built from."""

    where: str
    digest: str | None
    path: str
    records: int = 1


@dataclass
class Run:
    """State shared by the files of one ingest.

    ``seen``: trajectory id -> :class:`Seen`; ``stored``: the ids held by the previous store;
    ``renamed_from``: ``(original id, path)`` -> the ``<id>~<hash>`` it was kept under;
    ``superseded``: ids of the previous store whose rows a later version replaces;
    ``stored_feedback``: keys of feedback rows already stored; ``loose``: feedback items to
    attach once every file is read; the quarantine and warnings of the run.
    """

    seen: dict[str, Seen] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)
    renamed_from: dict[tuple[str, str], str] = field(default_factory=dict)
    superseded: set[str] = field(default_factory=set)
    stored_feedback: set[str] = field(default_factory=set)
    loose: list[tuple[FileReport, FeedbackRows]] = field(default_factory=list)
    quarantine: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def remember_stored(self, ids: list[str], uris: list[Any], digests: list[Any]) -> None:
        """Take the trajectories of the previous store as seen (renamed ones under their
        original id too, so that a corrected record finds the version it replaces)."""
        for trajectory_id, uri, digest in zip(ids, uris, digests, strict=True):
            self.seen[trajectory_id] = Seen(str(uri), digest, str(uri))
            self.stored.add(trajectory_id)
            renamed = _RENAMED.match(trajectory_id)
            if renamed:
                self.renamed_from.setdefault((renamed.group(1), str(uri)), trajectory_id)

    def quarantine_row(self, path: str, where: str, reason: str, raw: str) -> None:
        """Add a quarantine entry (its text made writable as UTF-8)."""
        self.quarantine.append(
            {
                "file": safe_text(path),
                "where": safe_text(where),
                "reason": safe_text(reason),
                "raw": safe_text(raw),
            }
        )


def feedback_key(row: dict[str, Any]) -> str:
    """A feedback row as text, to recognise a row already stored."""
    return json.dumps([row.get(k) for k in TABLES["feedback"].names], default=str)


# Trajectory columns left out of the content hash: where the record was read, the hash itself,
# and columns added after stores were written (a stored run's hash was computed without them).
_UNHASHED = frozenset({"source_uri", "record_sha256", "prompt_version"})


def record_sha256(record: Record) -> str:
    """SHA-256 (hex) of a record's content: its trajectory row without ``source_uri``,
    ``record_sha256`` and ``prompt_version`` (a column newer than the stored hashes; the fields
    it is read from are mostly in the hashed ``metadata`` too), its step rows and its feedback
    rows, as sorted-key JSON.

    Raises:
        RecursionError: a value nested beyond the recursion limit (the readers refuse such
            values first, see :mod:`pipeline.ingest.formats._jsontext`).
    """
    trajectory = {k: v for k, v in record.trajectory.items() if k not in _UNHASHED}
    payload = json.dumps(
        [trajectory, record.steps, record.feedback], sort_keys=True, default=str
    ).encode("utf-8", "surrogatepass")
    return hashlib.sha256(payload).hexdigest()


def is_duplicate(path: Path, trajectory_id: str, digest: str, run: Run) -> bool:
    """True when :func:`settle` would count a record (read from ``path``, content hash
    ``digest``) as deduplicated and change nothing else: its id, or the id it was renamed to
    in this file, was taken with the same content, or its renamed id is taken. False also when
    it would supersede a version first (so that a record is built before it replaces one)."""
    prior, own = _own_id(run, trajectory_id, str(path))
    if own is not None and own in run.seen:
        return run.seen[own].digest == digest
    return prior is not None and (
        prior.digest == digest or f"{trajectory_id}~{digest[:8]}" in run.seen
    )


def _own_id(run: Run, trajectory_id: str, source: str) -> tuple[Seen | None, str | None]:
    """The record this run first saw under ``trajectory_id`` (or None), and the id under which
    the file ``source`` holds ``trajectory_id``: the id itself when that file took it, the id it
    was renamed to in that file, or None when the file has not ingested it yet."""
    prior = run.seen.get(trajectory_id)
    own = (
        trajectory_id
        if prior is not None and prior.path == source
        else run.renamed_from.get((trajectory_id, source))
    )
    return prior, own


def settle(
    path: Path,
    trajectory_id: str,
    digest: str,
    where: str,
    records: int,
    report: FileReport,
    run: Run,
    supersede: Callable[[str], None],
) -> str | None:
    """The id under which a record read from ``path`` (``where`` in it, built from
    ``records`` source records, content hash ``digest``) is ingested: its own, or
    ``<id>~<hash>`` when another file's record took the id with other content; ``None`` when
    it is counted as deduplicated. A later version from the same file supersedes the earlier
    (see :mod:`pipeline.ingest._intake`): a version this run read is dropped by
    ``supersede(id)``, a stored one is marked in ``run.superseded``. Warnings and counts go to
    ``run`` and ``report``."""
    source = str(path)
    where = f"{path} {where}".strip()
    prior, own = _own_id(run, trajectory_id, source)
    if own is not None and own in run.seen:
        earlier = run.seen[own]
        if earlier.digest == digest:
            report.deduplicated += records
            return None
        del run.seen[own]
        run.renamed_from.pop((trajectory_id, source), None)
        if own in run.stored:
            run.superseded.add(own)
            what = "the stored version"
        else:
            supersede(own)
            report.deduplicated += earlier.records  # the earlier version, from this file
            what = "the earlier version"
        report.superseded += 1
        run.warnings.append(
            f"{where}: trajectory_id {trajectory_id!r} was read before from {earlier.where} "
            f"with different content; this later version from the same file replaces {what}"
        )
        prior = run.seen.get(trajectory_id)
    if prior is not None:
        if prior.digest == digest:
            report.deduplicated += records
            return None
        new_id = f"{trajectory_id}~{digest[:8]}"
        if new_id in run.seen:
            report.deduplicated += records
            return None
        run.warnings.append(
            f"{where}: trajectory_id {trajectory_id!r} was already read from {prior.where} "
            f"with different content; both kept, this one as {new_id!r}"
        )
        report.renamed += 1
        run.renamed_from[(trajectory_id, source)] = new_id
        trajectory_id = new_id
    run.seen[trajectory_id] = Seen(where, digest, source, records)
    return trajectory_id

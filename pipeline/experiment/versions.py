"""Prompt versions: a stable name for every rendered prompt, the history of every version coach
has rendered, and which version each trajectory ran under.

A prompt's version is ``pv-`` and the first 16 hex digits of the SHA-256 of its normalised text
(:func:`normalise_prompt`: Unicode NFC, line ends as ``\\n``, trailing spaces of each line and
blank lines at both ends removed), so the same text is the same version on any machine, and a
runtime that strips a final newline or writes CRLF still runs the same version.

Every version rendered is appended once to ``prompt_versions.jsonl`` beside the Skillbook
(:class:`VersionHistory`), so that versions stay resolvable after later runs have replaced the
prompt files. One line per (version, namespace, arm, assignment)::

    {"prompt_version": "pv-...", "namespace": str, "arm": "control" | "candidate" | ...,
     "assignment_id": str | null, "experiment_id": str | null, "skill_ids": [str],
     "lines": [str] (the skill lines as they appear in the text), "file": str,
     "base_prompt": str (the base prompt as printed in it),
     "first_rendered_at": ISO-8601, "skillbook_version": int, "aliases": [str]}

``aliases`` are other names the same prompt goes by in a team's tools, as its traces record
them: ``langfuse:<name>:<version>`` for a Langfuse prompt version, the version's id for a Phoenix
one. Whoever registers a prompt there records them (:func:`record_aliases`).

:func:`match_exposures` resolves each trajectory's version: the version the trace recorded when
it is known (``recorded``); else the exact hash of its system prompt (``system_prompt``); else
the version of its namespace whose skill lines its system prompt contains, the one with the
most lines when several do (``skill_lines``); else none (``unmatched``, with the reason). A
recorded version that is unknown, or that contradicts the system prompt's own known version, is
counted and never guessed.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.fileio import atomic_write, lock

__all__ = [
    "MATCH_METHODS",
    "VERSION_HISTORY",
    "AliasesRecorded",
    "Exposure",
    "MatchReport",
    "VersionHistory",
    "match_exposures",
    "normalise_prompt",
    "prompt_version",
    "record_aliases",
]

VERSION_HISTORY = "prompt_versions.jsonl"
# How a trajectory's version was found, in the order they are tried.
MATCH_METHODS = ("recorded", "system_prompt", "skill_lines", "unmatched")


def normalise_prompt(text: str) -> str:
    """``text`` in the form that is hashed: NFC, ``\\r\\n`` and ``\\r`` as ``\\n``, trailing
    whitespace of every line removed, leading and trailing blank lines removed."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def prompt_version(text: str) -> str:
    """The version of a prompt: ``pv-`` + the first 16 hex digits of SHA-256 over the UTF-8 of
    :func:`normalise_prompt` of ``text``."""
    digest = hashlib.sha256(normalise_prompt(text).encode("utf-8")).hexdigest()
    return f"pv-{digest[:16]}"


_KEY_FIELDS = ("prompt_version", "namespace", "arm", "assignment_id")


class VersionHistory:
    """Every prompt version coach has rendered: ``VersionHistory.load(skillbook_dir)``, then
    :meth:`add` and :meth:`save`. Entries are dicts (see the module docstring), oldest first.

    Raises:
        InputError (from :meth:`load`): a line is not a JSON object with a prompt version.
    """

    def __init__(self, path: Path, entries: Sequence[dict[str, Any]] = ()) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = list(entries)
        self._keys = {self._key(e) for e in self.entries}
        self._new = 0

    @staticmethod
    def _key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(entry.get(k) for k in _KEY_FIELDS)

    @classmethod
    def load(cls, directory: Path) -> VersionHistory:
        """The history kept in ``directory / prompt_versions.jsonl`` (empty when missing)."""
        path = directory / VERSION_HISTORY
        entries: list[dict[str, Any]] = []
        if path.exists():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError as exc:
                    raise InputError(f"{path}, line {number}: not JSON ({exc})") from exc
                if not isinstance(entry, dict) or not str(
                    entry.get("prompt_version", "")
                ).startswith("pv-"):
                    raise InputError(f"{path}, line {number}: not a prompt version entry")
                entries.append(entry)
        return cls(path, entries)

    def add(self, entry: dict[str, Any]) -> bool:
        """Record ``entry`` unless the same (version, namespace, arm, assignment) is known.
        Returns whether it was new."""
        key = self._key(entry)
        if key in self._keys:
            return False
        self._keys.add(key)
        self.entries.append(entry)
        self._new += 1
        return True

    def add_aliases(self, rows: Iterable[Mapping[str, Any]]) -> tuple[int, list[str]]:
        """Add each row's ``alias`` to the ``aliases`` of the entries of its ``prompt_version``,
        ``namespace`` and ``arm`` (every assignment of them), unless they have it already.

        Returns the number of aliases added and, for rows whose version, namespace and arm no
        entry holds, ``"<namespace> <arm> <prompt_version>"`` (no alias could be recorded).
        """
        added = 0
        unrecorded = []
        for row in rows:
            key = (row["prompt_version"], row["namespace"], row["arm"])
            entries = [
                e
                for e in self.entries
                if (e["prompt_version"], e.get("namespace"), e.get("arm")) == key
            ]
            if not entries:
                unrecorded.append(f"{row['namespace']} {row['arm']} {row['prompt_version']}")
            for entry in entries:
                aliases = list(entry.get("aliases") or [])
                if row["alias"] not in aliases:
                    entry["aliases"] = [*aliases, row["alias"]]
                    added += 1
        self._new += added
        return added, unrecorded

    def save(self) -> None:
        """Write the history atomically when :meth:`add` added anything."""
        if self._new:
            text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in self.entries)
            atomic_write(self.path, text)
            self._new = 0

    def bases(self) -> dict[str, str]:
        """``{prompt version: the base prompt printed in it}`` (entries that record one)."""
        return {
            e["prompt_version"]: e["base_prompt"]
            for e in self.entries
            if isinstance(e.get("base_prompt"), str)
        }

    def by_version(self) -> dict[str, list[dict[str, Any]]]:
        """``{prompt version or alias: [entries]}``."""
        found: dict[str, list[dict[str, Any]]] = {}
        for entry in self.entries:
            for name in (entry["prompt_version"], *entry.get("aliases", ())):
                found.setdefault(name, []).append(entry)
        return found


@dataclass(frozen=True)
class AliasesRecorded:
    """What :func:`record_aliases` did: the ``history`` file written to (None: there is none),
    the number of aliases ``added``, and the ``unrecorded`` rows
    (``"<namespace> <arm> <prompt_version>"``) whose version the history does not hold."""

    history: Path | None
    added: int
    unrecorded: list[str]


def record_aliases(directory: Path, rows: Sequence[Mapping[str, Any]]) -> AliasesRecorded:
    """Record each row's ``alias`` (a prompt registry's name for its ``prompt_version``,
    ``namespace`` and ``arm``) in ``directory / prompt_versions.jsonl``
    (:meth:`VersionHistory.add_aliases`), under the Skillbook lock (``.skillbook.lock``), and
    write the history atomically when anything was added. Without a history file nothing is
    written and every row is unrecorded.

    Raises:
        InputError: the history has a line that is not a prompt version entry.
        LockError: another coach run holds the Skillbook lock.
    """
    if not (directory / VERSION_HISTORY).is_file():
        unrecorded = [f"{r['namespace']} {r['arm']} {r['prompt_version']}" for r in rows]
        return AliasesRecorded(None, 0, unrecorded)
    with lock(directory / ".skillbook.lock"):
        history = VersionHistory.load(directory)
        added, unrecorded = history.add_aliases(rows)
        history.save()
    return AliasesRecorded(history.path, added, unrecorded)


@dataclass(frozen=True)
class Exposure:
    """One trajectory's resolved version: ``prompt_version`` (None when unmatched), ``method``
    (one of :data:`MATCH_METHODS`) and, when unmatched or doubtful, ``note``."""

    trajectory_id: str
    prompt_version: str | None
    method: str
    note: str = ""


@dataclass
class MatchReport:
    """How the trajectories' versions were found: ``methods`` counts each of
    :data:`MATCH_METHODS`; ``recorded_unknown`` counts recorded versions coach never rendered
    (those runs were then matched by their system prompt, or not at all); ``mismatched``
    counts recorded versions that contradict the system prompt's own known version (left
    unmatched); ``unmatched_reasons`` counts why the rest could not be matched."""

    methods: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MATCH_METHODS, 0))
    recorded_unknown: int = 0
    mismatched: int = 0
    unmatched_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "methods": dict(self.methods),
            "recorded_unknown": self.recorded_unknown,
            "mismatched": self.mismatched,
            "unmatched_reasons": dict(sorted(self.unmatched_reasons.items())),
        }


def _namespaces(domain: str | None, agent: str | None) -> set[str]:
    """The namespaces whose prompt a run of ``domain`` by ``agent`` may have used."""
    found = {"global"}
    if domain:
        found.add(f"domain:{domain}")
    if agent:
        found.add(f"agent:{agent}")
    return found


def _by_lines(text: str, candidates: Iterable[dict[str, Any]]) -> tuple[str | None, str]:
    """The version among ``candidates`` whose skill lines ``text`` contains, the one with the
    most lines; (None, reason) when none or several different ones tie."""
    best: list[dict[str, Any]] = []
    most = -1
    for entry in candidates:
        lines = entry.get("lines") or []
        if not lines or not all(line in text for line in lines):
            continue
        if len(lines) > most:
            best, most = [entry], len(lines)
        elif len(lines) == most:
            best.append(entry)
    versions = {e["prompt_version"] for e in best}
    if len(versions) == 1:
        return versions.pop(), ""
    if not versions:
        return None, "system prompt matches no rendered version"
    return None, "system prompt matches several versions equally"


def match_exposures(
    rows: Iterable[Mapping[str, Any]], history: VersionHistory
) -> tuple[list[Exposure], MatchReport]:
    """Resolve the prompt version of each trajectory.

    Args:
        rows: one mapping per trajectory with ``trajectory_id``, ``domain``, ``agent_name``,
            ``prompt_version`` (as recorded, or None) and ``system_prompt`` (or None); or one
            per group of trajectories alike in those, with their number as ``count``.
        history: the versions coach rendered.

    Returns:
        One :class:`Exposure` per row, in order, and the :class:`MatchReport`.
    """
    known = history.by_version()
    by_text_hash = {e["prompt_version"] for e in history.entries}
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for entry in history.entries:
        by_namespace.setdefault(entry["namespace"], []).append(entry)
    report = MatchReport()
    cache: dict[tuple[str, frozenset[str]], tuple[str | None, str, str]] = {}
    exposures = []
    for row in rows:
        weight = int(row.get("count", 1))
        recorded = row.get("prompt_version")
        prompt = row.get("system_prompt")
        own = prompt_version(prompt) if prompt else None
        exposure: Exposure
        if recorded and recorded in known:
            resolved = known[recorded][0]["prompt_version"]
            if own is not None and own in by_text_hash and own != resolved:
                report.mismatched += weight
                exposure = Exposure(
                    row["trajectory_id"],
                    None,
                    "unmatched",
                    f"recorded version {recorded} but the system prompt is {own}",
                )
            else:
                exposure = Exposure(row["trajectory_id"], resolved, "recorded")
        else:
            if recorded:
                report.recorded_unknown += weight
            exposure = _by_prompt(row, own, prompt, by_text_hash, by_namespace, cache)
            if recorded and exposure.method == "unmatched":
                exposure = Exposure(
                    row["trajectory_id"], None, "unmatched", "recorded version unknown"
                )
        report.methods[exposure.method] += weight
        if exposure.method == "unmatched":
            reasons = report.unmatched_reasons
            reasons[exposure.note] = reasons.get(exposure.note, 0) + weight
        exposures.append(exposure)
    return exposures, report


def _by_prompt(
    row: Mapping[str, Any],
    own: str | None,
    prompt: str | None,
    by_text_hash: set[str],
    by_namespace: Mapping[str, list[dict[str, Any]]],
    cache: dict[tuple[str, frozenset[str]], tuple[str | None, str, str]],
) -> Exposure:
    """A run without a known recorded version: by its system prompt's hash, then its lines."""
    if not prompt or own is None:
        return Exposure(row["trajectory_id"], None, "unmatched", "no version and no system prompt")
    if own in by_text_hash:
        return Exposure(row["trajectory_id"], own, "system_prompt")
    spaces = frozenset(_namespaces(row.get("domain"), row.get("agent_name")))
    key = (own, spaces)
    if key not in cache:
        text = normalise_prompt(prompt)
        candidates = [e for ns in sorted(spaces) for e in by_namespace.get(ns, ())]
        version, reason = _by_lines(text, candidates)
        cache[key] = (version, "skill_lines" if version else "unmatched", reason)
    version, method, reason = cache[key]
    return Exposure(row["trajectory_id"], version, method, reason)

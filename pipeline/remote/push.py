"""What the prompt pushes (:mod:`pipeline.remote.phoenix_prompts`,
:mod:`pipeline.remote.langfuse_prompts`) share: the result of a push, and how a push that
fails after registering some versions still records their aliases before it says so.

A push registers each arm of the prompt manifest as a version in the tool's prompt management
and records the tool's name for that version as an alias of coach's ``prompt_version`` in the
Skillbook's version history (:func:`pipeline.experiment.record_aliases`), so that runs which
record the tool's version come back linked to coach's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pipeline.errors import CoachError, RemoteError
from pipeline.experiment import record_aliases

__all__ = ["PromptPush", "failed_after_some"]


@dataclass(kw_only=True)
class PromptPush:
    """What a push did: ``rows``, one per arm (``name``, ``namespace``, ``arm``,
    ``prompt_version``, ``file``, ``status``: ``created`` or ``unchanged``, ``alias``: the
    tool's name of the version, and the tool's own version field), the ``history`` file the
    aliases went to (None: not recorded), ``aliases_added`` (new aliases written) and
    ``unrecorded`` (arms whose version the history does not hold, so no alias could be recorded
    for them). A subclass names its ``TARGET`` (``phoenix``) and the field that holds the
    server's address (``ADDRESS``: ``endpoint``, ``host``)."""

    TARGET: ClassVar[str] = ""
    ADDRESS: ClassVar[str] = ""

    rows: list[dict[str, Any]] = field(default_factory=list)
    history: Path | None = None
    aliases_added: int = 0
    unrecorded: list[str] = field(default_factory=list)

    @property
    def created(self) -> int:
        """How many versions this push added."""
        return sum(r["status"] == "created" for r in self.rows)

    def record(self, directory: Path) -> None:
        """Record each row's alias in the version history of ``directory``
        (:func:`~pipeline.experiment.record_aliases`) and keep what was recorded.

        Raises:
            InputError: the history has a line that is not an entry.
            LockError: another coach run holds the Skillbook lock.
        """
        recorded = record_aliases(directory, self.rows)
        self.history, self.aliases_added = recorded.history, recorded.added
        self.unrecorded = recorded.unrecorded

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``target``, the address, ``created``, ``unchanged``, ``history``,
        ``aliases_added``, ``unrecorded`` and the rows as ``prompts``."""
        return {
            "target": self.TARGET,
            self.ADDRESS: getattr(self, self.ADDRESS),
            "created": self.created,
            "unchanged": len(self.rows) - self.created,
            "history": None if self.history is None else str(self.history),
            "aliases_added": self.aliases_added,
            "unrecorded": list(self.unrecorded),
            "prompts": self.rows,
        }


def failed_after_some(
    error: RemoteError, result: PromptPush, history_dir: Path | None, made: str = ""
) -> RemoteError:
    """The error to raise when ``error`` stopped a push that had registered versions already
    (``result.created`` > 0): their aliases are recorded first in ``history_dir`` (when given;
    a failure to record is named, not raised), and the message says what was registered
    (``made``: their names, optional), whether the aliases were recorded, and that pushing
    again registers the rest."""
    aliases = "their aliases not recorded (no --skillbook history)"
    if history_dir is not None:
        try:
            result.record(history_dir)
        except CoachError as failed:
            aliases = f"their aliases not recorded ({failed})"
        else:
            if result.history is not None:
                aliases = "their aliases recorded"
    named = f" ({made})" if made else ""
    return RemoteError(
        f"{error}; before this, {result.created} version(s) were registered{named}, {aliases}: "
        "push again to register the rest (versions already there are skipped and their aliases "
        "recorded)"
    )

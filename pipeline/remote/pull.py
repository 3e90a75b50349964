"""What the incremental trace pulls (:mod:`pipeline.remote.langfuse`,
:mod:`pipeline.remote.langsmith`) share: the retry settings of their clients, the reading of the
server's ISO 8601 times, the result of a pull, the pulled file, and the cursor.

- :class:`RetryingClient`: the retry settings and retry count of a source's client, whose
  :class:`~pipeline.remote.http.JsonClient` retries through :meth:`RetryingClient.retry_policy`;
- :func:`iso_time`: a time the server sent, or a :class:`~pipeline.errors.RemoteError`;
- :class:`TracePull`: what a pull did, and its JSON summary;
- :class:`PulledFile`: the JSON Lines file a pull writes trace by trace as it reads them, under a
  temporary name that becomes the file only when the pull is done (nothing read: no file; a
  failure: no file);
- :class:`CursorFormat`: reading (checked) and writing (atomically) a source's pull cursor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar

from pipeline.errors import InputError, RemoteError
from pipeline.fileio import atomic_write, replacing
from pipeline.progress import Ticker
from pipeline.remote.http import JsonClient, Retry

__all__ = ["CursorFormat", "PulledFile", "RetryingClient", "TracePull", "digest", "iso_time"]


def digest(text: str) -> str:
    """12 hex digits of the SHA-256 of ``text`` (UTF-8): a short, stable name for a server, a
    project or a key in a file name or a cursor."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def iso_time(text: Any, where: str, what: str, noun: str = "time") -> datetime:
    """The timezone-aware time of ISO 8601 ``text`` (``Z`` for UTC; without a zone: UTC).

    Raises:
        RemoteError: ``text`` is not ISO 8601; the message says that ``where``
            (``Langfuse at https://...``) sent ``what`` (``trace 123``) with such a ``noun``.
    """
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError as exc:
        raise RemoteError(
            f"{where} sent {what} with a {noun} that is not ISO 8601: {str(text)[:60]!r}"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(kw_only=True)
class RetryingClient:
    """The retry settings of a source's client (keyword-only, after the source's own fields):
    a 429 or 5xx is retried up to ``max_retries`` times, after the ``Retry-After`` the server
    names (seconds or an HTTP date), else ``backoff_s * 2**n``, each wait at most ``max_wait_s``
    seconds (:class:`~pipeline.remote.http.Retry`); ``timeout_s`` is per request, in seconds.
    ``sleep`` and ``on_retry`` (told what is retried) are for progress and tests. A subclass sets
    :attr:`http` in its ``__post_init__``, with :meth:`retry_policy` as its retry."""

    timeout_s: float = 30.0
    max_retries: int = 4
    backoff_s: float = 1.0
    max_wait_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    on_retry: Callable[[str], None] = lambda _m: None
    http: JsonClient = field(init=False, repr=False)

    def retry_policy(self) -> Retry:
        """A :class:`~pipeline.remote.http.Retry` with these settings; it tells ``on_retry`` as
        it is at each retry (it may be set after the client is built)."""
        return Retry(
            self.max_retries,
            self.backoff_s,
            self.max_wait_s,
            self.sleep,
            lambda message: self.on_retry(message),
        )

    @property
    def retries(self) -> int:
        """The retries made so far."""
        assert self.http.retry is not None
        return self.http.retry.retries


@dataclass(kw_only=True)
class TracePull:
    """What a pull did: ``file`` written (None when nothing new), the ``traces`` in it,
    ``already`` traces listed again that an earlier pull wrote, ``waiting`` traces left for the
    next pull, ``vanished`` traces deleted between the list and their reading, list ``pages``
    read, ``retries`` made, whether it was the ``first_pull`` (no cursor yet), the ids of the
    traces written, and the ``cursor`` file.

    A source's result names its :attr:`source`, the fields that say where it pulled from
    (:attr:`place`, such as ``host``) and those that count what the file holds besides traces
    (:attr:`contents`, such as ``observations``)."""

    source: ClassVar[str]
    place: ClassVar[tuple[str, ...]]
    contents: ClassVar[tuple[str, ...]]

    file: Path | None = None
    cursor: Path
    traces: int = 0
    already: int = 0
    waiting: int = 0
    vanished: int = 0
    pages: int = 0
    retries: int = 0
    first_pull: bool = True
    trace_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the trace ids): ``source``, the :attr:`place` fields,
        ``file`` and ``cursor`` (paths as text), ``first_pull``, ``traces``, the
        :attr:`contents` counts, ``already_pulled_traces``, ``waiting_traces``,
        ``vanished_traces``, ``pages`` and ``retries``."""
        return {
            "source": self.source,
            **{name: getattr(self, name) for name in self.place},
            "file": None if self.file is None else str(self.file),
            "cursor": str(self.cursor),
            "first_pull": self.first_pull,
            "traces": self.traces,
            **{name: getattr(self, name) for name in self.contents},
            "already_pulled_traces": self.already,
            "waiting_traces": self.waiting,
            "vanished_traces": self.vanished,
            "pages": self.pages,
            "retries": self.retries,
        }


class PulledFile:
    """The JSON Lines file of a pull from ``source`` at ``url`` that started at ``now`` (UTC):
    ``out_dir/<source>-<host name>-<%Y%m%dT%H%M%S%fZ>.jsonl``, one JSON object a line (keys
    sorted, UTF-8).

    Used as a context manager: each :meth:`write` appends a trace's records to a temporary file
    beside :attr:`path` (opened at the first write, so a pull that finds nothing new leaves no
    file), flushed, so that a pull holds one trace at a time; leaving the block normally renames
    it to :attr:`path` atomically (:func:`pipeline.fileio.replacing`); leaving it with an
    exception removes it, and ``out_dir`` too when the first write made it and it is empty.
    ``ticker`` (optional) is told the records and bytes of each write, and the file when it is
    done (:class:`~pipeline.progress.Ticker`: records written, bytes written, files written)."""

    def __init__(
        self, out_dir: Path, source: str, url: str, now: datetime, ticker: Ticker | None = None
    ) -> None:
        name = urllib.parse.urlsplit(url).hostname or source  # no port: no colon in the name
        self.path = out_dir / f"{source}-{name}-{now.strftime('%Y%m%dT%H%M%S%fZ')}.jsonl"
        self._stack = contextlib.ExitStack()
        self._handle: IO[str] | None = None
        self._made_dir = False
        self._ticker = ticker

    def __enter__(self) -> PulledFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> bool:
        suppressed = bool(self._stack.__exit__(kind, error, trace))
        if error is not None and self._made_dir:
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()  # only when empty
        if error is None and self._handle is not None and self._ticker is not None:
            self._ticker.add(files=1)
        return suppressed

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append ``records`` (JSON-ready mappings), one line each, and flush them.

        Raises:
            OSError: the folder or the temporary file cannot be made or written.
        """
        if self._handle is None:
            self._made_dir = not self.path.parent.exists()
            tmp = self._stack.enter_context(replacing(self.path))
            self._handle = self._stack.enter_context(tmp.open("w", encoding="utf-8"))
        count = size = 0
        for record in records:
            line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
            self._handle.write(line)
            count += 1
            size += len(line.encode("utf-8"))
        self._handle.flush()
        if self._ticker is not None:
            self._ticker.add(records=count, size=size)

    @property
    def written(self) -> Path | None:
        """:attr:`path` when anything was written, else None."""
        return None if self._handle is None else self.path


@dataclass(frozen=True)
class CursorFormat:
    """The pull cursor of a ``source`` (``langfuse``) that ``label`` names for people
    (``Langfuse``): a JSON object with ``format_version`` (``version``), ``source``, a list
    ``ids``, the fields in ``strings`` as text and those in ``optional_strings`` as text or
    null, and the fields that say which server and project it belongs to."""

    source: str
    label: str
    version: int = 1
    strings: tuple[str, ...] = ()
    optional_strings: tuple[str, ...] = ()

    def load(self, path: Path, identity: Mapping[str, str]) -> dict[str, Any] | None:
        """The cursor at ``path``, checked, or None when there is none. ``identity`` (the first
        entry the server, such as ``{"endpoint": url, "project": name}``) must match its fields.

        Raises:
            InputError: the file is unreadable, not such a cursor, or of another server or
                project (copied from another data dir?); each message says to remove it.
        """
        if not path.exists():
            return None
        try:
            cursor = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{path}: the pull cursor is unreadable ({exc}); remove it to pull from the start"
            ) from exc
        if (
            not isinstance(cursor, dict)
            or cursor.get("format_version") != self.version
            or cursor.get("source") != self.source
            or not isinstance(cursor.get("ids"), list)
            or not all(isinstance(cursor.get(name), str) for name in self.strings)
            or not all(
                cursor.get(name) is None or isinstance(cursor.get(name), str)
                for name in self.optional_strings
            )
        ):
            raise InputError(
                f"{path}: not a {self.label} pull cursor of format {self.version}; remove it to "
                "pull from the start"
            )
        if any(cursor.get(name) != value for name, value in identity.items()):
            found = _place({name: cursor.get(name) for name in identity})
            raise InputError(
                f"{path}: this cursor is for {self.label} at {found}, not {_place(identity)} "
                "(copied from another data dir?); remove it to pull from the start, or use "
                "another --data-dir"
            )
        return cursor

    def save(self, path: Path, state: Mapping[str, Any]) -> None:
        """Write ``state`` with this ``format_version`` and ``source`` to ``path`` as indented
        JSON, keys sorted, atomically (:func:`pipeline.fileio.atomic_write`)."""
        cursor = {"format_version": self.version, "source": self.source, **state}
        atomic_write(path, json.dumps(cursor, indent=2, sort_keys=True) + "\n")


def _place(identity: Mapping[str, Any]) -> str:
    """``'https://a', project 'p'``: the first value, then the others with their names."""
    (_first, value), *others = identity.items()
    return f"{value!r}" + "".join(f", {name} {other!r}" for name, other in others)

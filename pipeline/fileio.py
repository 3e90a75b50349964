"""Safe writes of lasting artifacts: atomic replace, and a lock against concurrent runs.

Fault injection, the one seam for crash tests: when the environment variable
``COACH_TEST_KILL_AT`` is ``PHASE:NAME``, :func:`atomic_write` sends its own process SIGKILL (no
clean-up runs, as with a crash or ``kill -9``) at that phase of writing a file whose name matches
the glob ``NAME``: ``before`` anything is written, ``during`` (the temporary file is written and
synced but has not replaced the target) or ``after`` the target is replaced. For example
``before:v*.json`` stops a run before its Skillbook snapshot, ``after:skillbook.json`` between
the Skillbook's JSON and Markdown, ``during:*`` inside the first lasting write. Every lasting
artifact is written through :func:`atomic_write`, so tests can stop a run at any write point and
check that what it leaves is whole.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import LockError

__all__ = ["FAULT_ENV", "atomic_write", "lock", "sweep_temporary"]

FAULT_ENV = "COACH_TEST_KILL_AT"
_TMP_SUFFIX = ".tmp"
_held: dict[Path, int] = {}


def _fault(phase: str, path: Path) -> None:
    """SIGKILL this process when :data:`FAULT_ENV` is ``phase:<glob matching path's name>``
    (see the module docstring); otherwise do nothing."""
    wanted = os.environ.get(FAULT_ENV)
    if (
        wanted
        and wanted.startswith(f"{phase}:")
        and fnmatch.fnmatchcase(path.name, wanted[len(phase) + 1 :])
    ):
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a part:
    a temporary file in the same directory, fsync, ``os.replace``, then fsync of the directory
    (so the rename itself survives a power loss). Creates parent dirs."""
    _fault("before", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    try:
        # mkstemp creates the file 0600; give it the mode an ordinary new file would have
        # (0666 less the umask), or the mode of the file it replaces
        os.chmod(tmp, _file_mode(path))
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        _fault("during", path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)
    _fault("after", path)


def _file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sweep_temporary(directory: Path, older_than_s: float = 0.0) -> list[Path]:
    """Remove the temporary files that an interrupted :func:`atomic_write` left in ``directory``
    (``.<name>.<random>.tmp``) and its subdirectories, older than ``older_than_s`` seconds.
    Call it only while holding the lock of ``directory``. Returns the paths removed."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    cutoff = time.time() - older_than_s
    for path in directory.rglob(f".*{_TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_mtime <= cutoff:
                path.unlink()
                removed.append(path)
    return removed


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """Hold ``path`` (a lock file holding the owner's pid) for the duration of the block.

    The file is created with its content in one step (a hard link of a complete temporary file),
    so another process never reads an empty lock. A lock left by a process that no longer runs
    (e.g. killed) is taken over. Re-entrant within one process: a nested ``lock`` of the same
    path does nothing.

    Raises:
        LockError: another live process holds the lock.
    """
    path = path.absolute()
    if _held.get(path) == os.getpid():
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    with os.fdopen(fd, "w") as handle:
        handle.write(str(os.getpid()))
    try:
        for _ in range(2):
            try:
                os.link(tmp, path)
            except FileExistsError:
                try:
                    pid = int(path.read_text().strip() or "0")
                except (OSError, ValueError):
                    pid = 0
                if pid and _alive(pid):
                    raise LockError(
                        f"{path}: another coach run (pid {pid}) holds this lock; wait "
                        "for it to finish (or remove the lock file if that process is not coach)"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            break
        else:
            raise LockError(
                f"{path}: could not take the lock; remove the file if no coach run is active"
            )
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _held[path] = os.getpid()
    try:
        yield
    finally:
        _held.pop(path, None)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

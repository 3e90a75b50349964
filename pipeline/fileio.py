"""Safe writes of lasting artifacts: atomic replace (of a file, a Parquet table, a hard link, a
symbolic link), directory sync, the cache-directory tag, and a lock against concurrent runs.

Fault injection, the one seam for crash tests: when the environment variable
``COACH_TEST_KILL_AT`` is ``PHASE:NAME``, :func:`replacing` (under :func:`atomic_write`,
:func:`atomic_write_parquet` and :func:`atomic_link`) and :func:`atomic_symlink` send their own
process SIGKILL (no clean-up runs, as with a crash or ``kill -9``) at that phase of writing a
file whose name matches the glob ``NAME``: ``before`` anything is written, ``during`` (the
temporary file is written and synced but has not replaced the target) or ``after`` the target is
replaced. For example ``before:v*.json`` stops a run before its Skillbook snapshot,
``after:skillbook.json`` between the Skillbook's JSON and Markdown, ``before:tables`` just
before a new snapshot of the canonical tables is committed, ``during:*`` inside the first lasting
write. Every lasting artifact is written through these functions, so tests can stop a run at any
write point and check that what it leaves is whole.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import secrets
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import LockError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CACHEDIR_SIGNATURE",
    "CACHEDIR_TAG",
    "FAULT_ENV",
    "atomic_link",
    "atomic_symlink",
    "atomic_write",
    "atomic_write_parquet",
    "fsync_directory",
    "lock",
    "replacing",
    "sweep_temporary",
    "tag_cache_directory",
]

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


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Atomically replace ``path`` with what the block writes to the temporary path it is given
    (a fresh, empty file in the same directory, named ``.<name>.<random>.tmp``): on leaving the
    block the temporary file is synced and renamed over ``path`` (``os.replace``), and the
    directory is synced (so the rename itself survives a power loss); readers see the old or the
    new file, never a part. Creates parent dirs. If the block raises, the temporary file is
    removed and ``path`` is left as it was.

    This is the fault seam (see the module docstring): ``before`` the block, ``during`` (the
    temporary file is complete and synced, ``path`` not yet replaced), ``after`` the rename.
    """
    _fault("before", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        # mkstemp creates the file 0600; give it the mode an ordinary new file would have
        # (0666 less the umask), or the mode of the file it replaces
        mode = _file_mode(path)
        yield tmp
        os.chmod(tmp, mode)
        _fsync_file(tmp)
        _fault("during", path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)
    _fault("after", path)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text is encoded as UTF-8) to ``path`` so that readers see the old or the
    new file, never a part (:func:`replacing`). Creates parent dirs."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with replacing(path) as tmp:
        tmp.write_bytes(payload)


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    """Write the Arrow ``table`` as a Parquet file at ``path`` (pyarrow's default settings),
    atomically (:func:`replacing`). Creates parent dirs."""
    import pyarrow.parquet as pq

    with replacing(path) as tmp:
        pq.write_table(table, tmp)


def atomic_link(source: Path, path: Path) -> None:
    """Make ``path`` a hard link of the file ``source`` (a copy where the file system cannot
    link, e.g. across devices), atomically (:func:`replacing`). For files that are never
    changed in place once written, such as a committed snapshot's tables."""
    with replacing(path) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def atomic_symlink(path: Path, target: str) -> None:
    """Point the symbolic link ``path`` at ``target`` (relative to ``path``'s directory, or
    absolute) in one step: a new link under a temporary name renamed over the old one, so that
    readers always find the old or the new target. ``path`` must not be a real directory.
    Fault seam phases as for :func:`replacing` (the link's temporary name is
    ``.<name>.<random>.tmp``).

    Raises:
        OSError: ``path`` is a directory, or the link cannot be made.
    """
    _fault("before", path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
    os.symlink(target, tmp)
    try:
        _fault("during", path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)
    _fault("after", path)


CACHEDIR_TAG = "CACHEDIR.TAG"
# The first line of a cache directory tag (https://bford.info/cachedir/).
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


def tag_cache_directory(directory: Path, owner: str, ours: Collection[str] = ()) -> bool:
    """Write ``CACHEDIR.TAG`` into ``directory`` (which exists) unless it is there, or
    ``directory`` holds an entry that is not named in ``ours`` (nor a temporary file of this
    module): a directory of the user's own is not tagged. The tag follows the Cache Directory
    Tagging Specification (https://bford.info/cachedir/): the signature line, then comment lines
    naming ``owner``. Backup tools and coach's own file discovery skip a directory holding it.
    Returns True when the tag was written."""
    tag = directory / CACHEDIR_TAG
    if tag.is_file():
        return False
    allowed = {*ours, CACHEDIR_TAG}
    for entry in directory.iterdir():
        if entry.name not in allowed and not (
            entry.name.startswith(".") and entry.name.endswith(_TMP_SUFFIX)
        ):
            return False
    atomic_write(
        tag,
        f"{CACHEDIR_SIGNATURE.decode()}\n# This file is a cache directory tag created by {owner}.\n"
        "# For information about cache directory tags see https://bford.info/cachedir/\n",
    )
    return True


def _file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> None:
    """Sync ``directory`` so that the names created, renamed or removed in it survive a power
    loss (ignored where the system cannot sync a directory)."""
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
            # a file, or the symbolic link of an interrupted atomic_symlink
            if (path.is_symlink() or path.is_file()) and path.lstat().st_mtime <= cutoff:
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

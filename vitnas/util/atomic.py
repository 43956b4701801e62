"""Atomic writing: a reader (or a resumed run) sees the old file or folder or the new one, never half of one.

Checkpoint pointers, device profiles, search state and exports all go through here.
A file is written beside its target, flushed and fsynced, then renamed over it. A folder
whose files must agree (an export: its config.json vouches for its weights' SHA-256) is
built under a hidden temporary name beside the target, every file fsynced, and the
finished folder renamed into place (`staged_folder`). Replacing an existing folder (only
when asked) swaps the two atomically with Linux's ``renameat2(RENAME_EXCHANGE)``;
elsewhere the old folder is renamed aside first, leaving a moment in which neither name
exists. A kill while building leaves the target untouched and a hidden
``.NAME.PID-START.*.staging`` folder beside it, named after the process that built it;
the next `staged_folder` for that target deletes such leftovers once their process has
ended (never a live process's work in progress).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from vitnas.errors import VitnasError

__all__ = ["check_target", "prepare_directory", "raise_if_disk_full", "remove_stale_staging", "reporting_disk_full",
           "running_process", "staged_folder", "write_bytes_atomically", "write_text_atomically"]

logger = logging.getLogger(__name__)

_NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device": libraries that wrap the OSError keep these words
_SAME_START_S = 0.05  # a live pid whose start time differs from the recorded one by more is another process


def write_text_atomically(path: str | Path, text: str, error: type[VitnasError] = VitnasError) -> Path:
    """Replaces `path` with `text` atomically (creating its folder); an OS failure is one `error` line."""
    return write_bytes_atomically(path, text.encode(), error)


def write_bytes_atomically(path: str | Path, data: bytes, error: type[VitnasError] = VitnasError) -> Path:
    """Replaces `path` with `data` atomically (creating its folder); an OS failure is one `error` line."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp's 0600 would make shared results unreadable to others
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as problem:
        raise_if_disk_full(problem, path, error)
        raise error(f"{path}: cannot be written ({problem.strerror or problem})") from None
    return path


def raise_if_disk_full(problem: BaseException, what: str | Path, error: type[VitnasError] = VitnasError) -> None:
    """Turns running out of disk space while writing `what` into one `error` line with the fix.

    A full disk is the one write failure a user can always fix, so it gets its own words
    wherever vitnas writes. Besides a plain ``OSError(ENOSPC)`` this recognises the
    libraries that re-wrap it (safetensors' SafetensorError keeps the OS's words).
    Anything else returns, for the caller to report or re-raise.

    Raises:
        error: ``disk full while writing WHAT: ...`` when `problem` is a full disk.
    """
    full = isinstance(problem, OSError) and problem.errno == errno.ENOSPC
    if full or _NO_SPACE in str(problem):
        raise error(f"disk full while writing {what}: free some space, or write to another disk") from None


@contextlib.contextmanager
def reporting_disk_full(what: str | Path, error: type[VitnasError] = VitnasError) -> Iterator[None]:
    """`raise_if_disk_full` for a block of writes: a full disk inside it becomes one `error` line."""
    try:
        yield
    except Exception as problem:  # VitnasError and every other failure pass on unchanged
        raise_if_disk_full(problem, what, error)
        raise


def prepare_directory(path: str | Path, what: str, error: type[VitnasError] = VitnasError) -> Path:
    """Creates output folder `path` up front, so a bad ``--out`` fails before any work, not after an epoch.

    Raises:
        error: one line naming `what` (e.g. ``--out``) when `path` is a file or cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise error(f"{what} {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise error(f"{what} {path}: cannot be created ({problem.strerror or problem})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise error(f"{what} {path}: is not writable")
    return path


def check_target(target: Path, overwrite: bool, error: type[VitnasError] = VitnasError) -> None:
    """Refuses an existing `target` unless `overwrite`, before any work is done.

    Raises:
        error: `target` exists (and `overwrite` is off) or is not a folder.
    """
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise error(f"{target}: exists and is not a folder")
        if not overwrite:
            raise error(f"{target}: already exists; export to a new folder, or replace it with --overwrite "
                              "(overwrite=True in Python)")


@contextlib.contextmanager
def staged_folder(target: Path, overwrite: bool, error: type[VitnasError] = VitnasError) -> Iterator[Path]:
    """Yields an empty temporary folder beside `target`; on success it becomes `target` in one rename.

    On any exception the temporary folder is removed and `target` is left as it was.

    Raises:
        error: `target` exists (and `overwrite` is off), or the file system refuses.
    """
    target = Path(target)
    check_target(target, overwrite, error)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(target)
        staging = Path(tempfile.mkdtemp(prefix=_leftover_prefix(target), suffix=".staging", dir=target.parent))
    except OSError as problem:
        raise error(f"{target}: cannot be created ({problem.strerror or problem})") from None
    try:
        with reporting_disk_full(target, error):
            yield staging
            _sync_tree(staging, _umask())
        _publish(staging, target, overwrite, error)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a swap it holds the old folder


def remove_stale_staging(target: str | Path) -> list[Path]:
    """Deletes the staging and set-aside folders that killed writers left beside `target`; returns them.

    Only folders whose process has ended go: another process's folder may be its export
    in progress. A folder without its process in the name (written before names carried
    it) is left alone, since whether its writer still runs cannot be told.
    """
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)-(\d+)\.\w+\.(staging|old)")
    try:
        entries = list(target.parent.iterdir())
    except OSError:  # no folder yet, or unreadable: nothing of ours can be there
        return []
    stale = []
    for entry in entries:
        owner = pattern.fullmatch(entry.name)
        if owner and entry.is_dir() and not entry.is_symlink() and running_process(
                int(owner[1]), int(owner[2]) / 100) is None:
            shutil.rmtree(entry, ignore_errors=True)
            stale.append(entry)
    if stale:
        logger.info("removed %d folder%s a killed export left beside %s", len(stale), "s" * (len(stale) > 1), target)
    return stale


def running_process(pid: int, started: float) -> Any:
    """The live `psutil.Process` `pid` if it is the one that started at `started` (epoch seconds), else None.

    A leftover names its process by pid and start time, because the system hands the pid
    of an ended process to later ones.
    """
    import psutil

    with contextlib.suppress(psutil.Error):
        process = psutil.Process(pid)
        if abs(process.create_time() - started) <= _SAME_START_S and process.status() != psutil.STATUS_ZOMBIE:
            return process
    return None


def _leftover_prefix(target: Path) -> str:
    """The start of a temporary folder's name beside `target`: hidden, and naming this process (pid, start time)."""
    import psutil

    me = psutil.Process()
    return f".{target.name}.{me.pid}-{round(me.create_time() * 100)}."


def _publish(staging: Path, target: Path, overwrite: bool, error: type[VitnasError]) -> None:
    """Moves the finished folder to `target`; an existing one is swapped out (and then deleted by the caller)."""
    try:
        if target.exists():
            check_target(target, overwrite, error)  # it may have appeared while we worked
            if not _exchange(staging, target):
                aside = Path(tempfile.mkdtemp(prefix=_leftover_prefix(target), suffix=".old", dir=target.parent))
                os.replace(target, aside / target.name)
                os.rename(staging, target)
                os.rename(aside, staging)  # the caller removes the old folder with the staging name
        else:
            os.rename(staging, target)
        _sync_directory(target.parent)
    except OSError as problem:
        raise error(f"{target}: cannot be put in place ({problem.strerror or problem})") from None


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swaps two paths (Linux ``renameat2``, RENAME_EXCHANGE); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False  # old kernel or a file system without exchange
    raise OSError(code, os.strerror(code), str(second))


def _sync_tree(folder: Path, umask: int) -> None:
    """fsyncs every file under `folder` and the folders themselves, so the rename publishes durable data.

    Also gives them the permissions a plain ``mkdir`` / ``open`` would (the temporary
    folder and some writers create them private to the user).
    """
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            os.chmod(path, 0o666 & ~umask)
            with open(path, "rb") as stream:
                os.fsync(stream.fileno())
        os.chmod(root, 0o777 & ~umask)
        _sync_directory(Path(root))


def _umask() -> int:
    """The process umask, read without changing it (Linux); 0o022 where it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _sync_directory(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some systems cannot open or fsync a directory
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)

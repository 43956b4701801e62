"""Writing a whole folder atomically: a reader sees the old folder or the new one, never half of one.

`vitnas.atomic` replaces single files; an export is several files that must agree (the
SHA-256 in ``config.json`` vouches for ``model.safetensors``). So the folder is built
under a hidden temporary name beside the target, every file is fsynced, and the
finished folder is renamed into place. Replacing an existing folder (only when asked)
swaps the two atomically with Linux's ``renameat2(RENAME_EXCHANGE)``; elsewhere the old
folder is renamed aside first, leaving a moment in which neither name exists.

A kill while building leaves a hidden ``.NAME.*.staging`` folder beside the target and
the target untouched; such leftovers are safe to delete.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from vitnas.errors import ExportError

__all__ = ["check_target", "staged_folder"]


def check_target(target: Path, overwrite: bool) -> None:
    """Refuses an existing `target` unless `overwrite`, before any work is done.

    Raises:
        ExportError: `target` exists (and `overwrite` is off) or is not a folder.
    """
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise ExportError(f"{target}: exists and is not a folder")
        if not overwrite:
            raise ExportError(f"{target}: already exists; export to a new folder, or replace it with --overwrite "
                              "(overwrite=True in Python)")


@contextlib.contextmanager
def staged_folder(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yields an empty temporary folder beside `target`; on success it becomes `target` in one rename.

    On any exception the temporary folder is removed and `target` is left as it was.

    Raises:
        ExportError: `target` exists (and `overwrite` is off), or the file system refuses.
    """
    target = Path(target)
    check_target(target, overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".staging", dir=target.parent))
    except OSError as error:
        raise ExportError(f"{target}: cannot be created ({error.strerror or error})") from None
    try:
        yield staging
        _sync_tree(staging, _umask())
        _publish(staging, target, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a swap it holds the old folder


def _publish(staging: Path, target: Path, overwrite: bool) -> None:
    """Moves the finished folder to `target`; an existing one is swapped out (and then deleted by the caller)."""
    try:
        if target.exists():
            check_target(target, overwrite)  # it may have appeared while we worked
            if not _exchange(staging, target):
                aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
                os.replace(target, aside / target.name)
                os.rename(staging, target)
                os.rename(aside, staging)  # the caller removes the old folder with the staging name
        else:
            os.rename(staging, target)
        _sync_directory(target.parent)
    except OSError as error:
        raise ExportError(f"{target}: cannot be put in place ({error.strerror or error})") from None


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

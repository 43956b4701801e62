"""Atomic file writing: a reader (or a resumed run) sees the old file or the new one, never half of one.

Checkpoint pointers, device profiles, search state and exports all go through here.
A temporary file is written beside the target, flushed and fsynced, then renamed over it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vitnas.errors import VitnasError

__all__ = ["write_bytes_atomically", "write_text_atomically", "prepare_directory"]


def write_text_atomically(path: str | Path, text: str, error: type[VitnasError] = VitnasError) -> Path:
    """Replaces `path` with `text` atomically (creating its folder); an OS failure is one `error` line."""
    return write_bytes_atomically(path, text.encode(), error)


def write_bytes_atomically(path: str | Path, data: bytes, error: type[VitnasError] = VitnasError) -> Path:
    """Replaces `path` with `data` atomically (creating its folder); an OS failure is one `error` line."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
        raise error(f"{path}: cannot be written ({problem.strerror or problem})") from None
    return path


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

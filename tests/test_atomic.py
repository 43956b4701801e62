"""The one atomic writer: readable like any file, and a full disk is one line with the fix."""

from __future__ import annotations

import errno
import os

import pytest

from vitnas.atomic import write_text_atomically
from vitnas.errors import VitnasError


def test_written_files_get_the_umask_permissions_not_mkstemps(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomically(tmp_path / "a" / "best.json", "{}\n")
    finally:
        os.umask(old)
    assert path.read_text() == "{}\n" and (path.stat().st_mode & 0o777) == 0o644


def test_a_full_disk_is_one_line_naming_the_fix_and_leaves_the_old_file(tmp_path, monkeypatch):
    path = write_text_atomically(tmp_path / "results.json", "old\n")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(VitnasError, match=r"^disk full while writing \S+/results\.json: free some space, or write "
                                          r"to another disk$"):
        write_text_atomically(path, "new\n")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["results.json"]

"""The one atomic writer: readable like any file, and a full disk is one line with the fix."""

from __future__ import annotations

import errno
import os

import psutil
import pytest

from vitnas.errors import VitnasError
from vitnas.util.atomic import remove_stale_staging, write_text_atomically


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


def test_only_leftovers_of_ended_processes_are_removed_and_only_the_targets(tmp_path):
    me = f"{os.getpid()}-{round(psutil.Process().create_time() * 100)}"
    names = {
        f".m.{os.getpid()}-1.abc.old": False,  # this pid, but another start time: an ended process the pid went to
        f".m.{me}.abc.staging": True,  # this process's work in progress
        ".m.abc.staging": True,  # no process in the name (an older vitnas): cannot tell, kept
        f".mm.{os.getpid()}-1.abc.staging": True,  # another target's
    }
    for name in names:
        (tmp_path / name).mkdir()
    assert remove_stale_staging(tmp_path / "m") == [tmp_path / f".m.{os.getpid()}-1.abc.old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(name for name, kept in names.items() if kept)

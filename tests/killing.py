"""What the real-SIGKILL tests share: a ``python -m vitnas`` subprocess, killed once a state exists on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch


def start_vitnas(args: list[str], log: Path) -> subprocess.Popen:
    """``python -m vitnas ARGS`` on one torch thread (as the in-process runs it is compared with), output in `log`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as handle:
        return subprocess.Popen([sys.executable, "-m", "vitnas", *args], env=env, stdout=handle,
                                stderr=subprocess.STDOUT)


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], what: str, log: Path,
              timeout: float = 240.0) -> None:
    """SIGKILLs `process` as soon as `ready()` holds (polled every 10 ms); fails if it exits or times out first."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert process.poll() is None, f"exited ({process.returncode}) before {what}:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def finish(process: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    """Waits for `process` to succeed."""
    assert process.wait(timeout) == 0, log.read_text()[-2000:]


def assert_bitwise_equal(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    """The same tensors, bit for bit; else names the three that differ most."""
    assert left.keys() == right.keys()
    differing = {k: (left[k].double() - right[k].double()).abs().max().item() for k in left
                 if not torch.equal(left[k], right[k])}
    largest = sorted(differing.items(), key=lambda item: -item[1])[:3]
    assert not differing, f"{len(differing)} tensors differ, most: {largest}"

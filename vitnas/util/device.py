"""Which device a latency is measured on, and what that device is called.

A latency profile holds only on the hardware it was measured on, so every profile
records the device's model name (the GPU's name, or the CPU's model name) and is
refused on a machine whose device is called something else. Timing code also needs
one place that knows how to wait for a device to finish its queued work.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

from vitnas.errors import LatencyError, VitnasError

__all__ = ["resolve_device", "device_name", "available_device_names", "cpu_name", "cuda_version", "synchronize", "slug"]

_CPUINFO = Path("/proc/cpuinfo")


def resolve_device(device: str | torch.device, error: type[VitnasError] = LatencyError) -> torch.device:
    """Parses and checks a device, pinning a bare ``"cuda"`` to the current GPU's index.

    Every command that takes a device checks it here, before any work, so a typo or a
    GPU this machine lacks is one line rather than a traceback from deep inside torch.

    Raises:
        error: the string is no torch device, is neither CPU nor CUDA, or names a
            GPU this machine does not have (one line naming what to use instead).
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise error(f"device: {device!r} is not a device: use cpu, cuda or cuda:N") from None
    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type != "cuda":
        raise error(f"device: {device!r} is not supported: use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise error(f"device: {device!r} asked for, but CUDA is not available on this machine: use cpu")
    index = torch.cuda.current_device() if resolved.index is None else resolved.index
    count = torch.cuda.device_count()
    if index >= count:
        raise error(f"device: {device!r} asked for, but this machine has {count} GPU(s): "
                    f"use cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def device_name(device: str | torch.device) -> str:
    """The model name of a device: the GPU's name, or the CPU's model name."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return torch.cuda.get_device_name(resolved)
    return cpu_name()


def available_device_names(device_type: str) -> list[str]:
    """Names of every device of a type on this machine (empty where there is none)."""
    if device_type == "cpu":
        return [cpu_name()]
    if device_type == "cuda" and torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def cpu_name() -> str:
    """The CPU's model name: /proc/cpuinfo's ``model name`` on Linux, else what `platform` knows."""
    try:
        for line in _CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def cuda_version(device: str | torch.device) -> str | None:
    """The CUDA version PyTorch was built with, for a CUDA device; None for the CPU."""
    return torch.version.cuda if resolve_device(device).type == "cuda" else None


def synchronize(device: torch.device) -> None:
    """Waits until `device` has run everything queued on it (a no-op on the CPU, which runs eagerly)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def slug(text: str) -> str:
    """A file-name-safe form of a name: lower case, runs of other characters as one ``-``."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "device"

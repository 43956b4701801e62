"""Timing a model's forward pass the way it will run when deployed.

Latency here is the wall time of one inference request: the device is idle when the
request starts (on CUDA everything queued is synchronised first), and the time runs
until its output exists. On CUDA the time is taken by CUDA events recorded around the
forward pass and read after the end event has synchronised, so host-side launch
overhead counts (as it does for a real request) while the host clock's jitter does
not. On the CPU, where PyTorch runs eagerly, `time.perf_counter` brackets the call.

Every measurement warms up first (allocator, kernel autotuning, lazy init, and the
whole compilation when ``compile=True``), runs under `torch.inference_mode`, times
many repetitions with Python's garbage collector paused (as `timeit` does), and
summarises them robustly: median and 10th/90th percentiles of all timings, mean and
standard deviation of the timings left after trimming the fastest and slowest 10%.

Reduced precision casts the whole model (``model.to(torch.bfloat16)``) rather than
running it under autocast: a deployed model is cast once, whereas autocast re-casts
every weight on every call, which would bill the model for work deployment never does.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from vitnas.errors import LatencyError
from vitnas.nn.vit import ViT
from vitnas.nn.vit_config import vit_config
from vitnas.space.arch import Arch
from vitnas.space.space import SearchSpace
from vitnas.util.device import device_name, resolve_device, synchronize
from vitnas.util.dtypes import canonical_dtype, torch_dtype
from vitnas.util.fields import require_int, require_number

__all__ = [
    "Measurement", "build_model", "measure", "measure_arch", "measure_archs", "summarise", "throughput",
    "throughput_arch", "time_forward", "torch_dtype",
]

logger = logging.getLogger(__name__)

_COMPILE_WARMUP = 3  # calls that absorb torch.compile's tracing and autotuning before any timing


@dataclass(frozen=True)
class Measurement:
    """Latency of one model at one batch size, dtype and device."""

    median_ms: float  # median over all timed repetitions
    p10_ms: float  # 10th percentile over all repetitions
    p90_ms: float  # 90th percentile over all repetitions
    mean_ms: float  # mean after trimming the fastest and slowest `trim` fraction
    std_ms: float  # standard deviation of the same trimmed timings
    repeats: int  # timed forward passes
    batch: int  # images per forward pass
    dtype: str  # "fp32", "bf16" or "fp16"
    device: str  # torch device the model ran on, e.g. "cuda:0" or "cpu"
    device_name: str  # the device's model name, e.g. "NVIDIA H100 80GB HBM3"
    images_per_s: float  # batch / median latency

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.median_ms:.3f} ms median (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, "
            f"trimmed mean {self.mean_ms:.3f} ± {self.std_ms:.3f}; {self.repeats} runs), "
            f"{self.images_per_s:.1f} images/s at batch {self.batch} {self.dtype} on {self.device} ({self.device_name})"
        )


def build_model(space: SearchSpace, arch: Arch, device: str | torch.device = "cpu", dtype: str = "fp32",
                seed: int = 0) -> ViT:
    """The standalone `vitnas.nn.vit.ViT` of `arch`, as users deploy it, randomly initialised.

    Weights do not change latency, so no supernet is needed. The model is created on the
    meta device and materialised directly on `device`, then filled from its own seeded
    generator: fast even for large models on a GPU, deterministic, and the global RNG
    is left untouched. Filling (rather than leaving memory uninitialised) keeps NaNs and
    denormals, which slow CPUs down, out of the timing.
    """
    target = resolve_device(device)
    with torch.device("meta"):
        model = ViT(vit_config(space, arch))
    model = model.to_empty(device=target)
    generator = torch.Generator(device=target).manual_seed(seed)
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.normal_(0.0, 0.02, generator=generator)
            else:
                tensor.zero_()
    return model.to(dtype=torch_dtype(dtype)).eval()


def measure(
    model: nn.Module,
    device: str | torch.device = "cpu",
    batch: int = 1,
    dtype: str = "fp32",
    img_size: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
    compile: bool = False,
    channels_last: bool = False,
    trim: float = 0.1,
) -> Measurement:
    """Latency of one forward pass of `model` on a random batch.

    The caller's model is never changed: where it must move, change dtype or memory
    format, or leave training mode, a copy is timed.

    Args:
        model: any module taking (B, C, H, W) images; a `vitnas.nn.vit.ViT` supplies its
            own input size and channels through its ``config``.
        device: "cpu", "cuda" or "cuda:N".
        batch: images per forward pass.
        dtype: "fp32", "bf16" or "fp16"; the model is cast to it (see the module docstring).
        img_size: input side; defaults to ``model.config.img_size``.
        warmup: untimed calls first; ``compile`` adds 3 more, the first of which compiles.
        repeats: timed calls.
        compile: time ``torch.compile(model)``.
        channels_last: lay the input images and convolution weights out as NHWC.
        trim: fraction of the fastest and of the slowest timings left out of mean and std.

    Raises:
        LatencyError: a setting is out of range, the device is
            absent, or the input size cannot be told.
    """
    _check_settings(trim=trim)
    timings = time_forward(model, device, batch, dtype, img_size, warmup, repeats, compile, channels_last)
    return summarise(timings, batch, dtype, device, trim)


def time_forward(
    model: nn.Module,
    device: str | torch.device = "cpu",
    batch: int = 1,
    dtype: str = "fp32",
    img_size: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
    compile: bool = False,
    channels_last: bool = False,
) -> np.ndarray:
    """Milliseconds of each of `repeats` timed forward passes, in order: the raw data `measure` summarises.

    Arguments and errors are those of `measure`.
    """
    _check_settings(batch=batch, warmup=warmup, repeats=repeats)
    runner, images, target = _prepare(model, device, batch, dtype, img_size, compile, channels_last)
    return _timed_runs(runner, images, target, warmup + (_COMPILE_WARMUP if compile else 0), repeats)


def summarise(timings: Sequence[float], batch: int, dtype: str, device: str | torch.device,
              trim: float = 0.1) -> Measurement:
    """The `Measurement` of raw millisecond timings: median and percentiles of all, mean and std trimmed."""
    _check_settings(trim=trim)
    target = resolve_device(device)
    ordered = np.sort(np.asarray(timings, dtype=np.float64))
    if ordered.size == 0:
        raise LatencyError("timings: need at least one")
    cut = int(len(ordered) * trim)
    kept = ordered[cut : len(ordered) - cut] if len(ordered) > 2 * cut else ordered
    median = float(np.median(ordered))
    return Measurement(
        median_ms=median,
        p10_ms=float(np.percentile(ordered, 10)),
        p90_ms=float(np.percentile(ordered, 90)),
        mean_ms=float(kept.mean()),
        std_ms=float(kept.std(ddof=1)) if len(kept) > 1 else 0.0,
        repeats=len(ordered),
        batch=batch,
        dtype=canonical_dtype(dtype),
        device=str(target),
        device_name=device_name(target),
        images_per_s=batch * 1000.0 / median,
    )


def measure_arch(space: SearchSpace, arch: Arch, device: str | torch.device = "cpu", batch: int = 1,
                 dtype: str = "fp32", **settings: Any) -> Measurement:
    """Latency of the standalone model of `arch` (see `build_model`); `settings` go to `measure`."""
    _check_settings(batch=batch, **{k: v for k, v in settings.items() if k in ("warmup", "repeats", "trim")})
    model = build_model(space, arch, device, dtype)
    return measure(model, device, batch, dtype, **settings)


def measure_archs(
    space: SearchSpace,
    archs: Sequence[Arch],
    device: str | torch.device = "cpu",
    batch: int = 1,
    dtype: str = "fp32",
    rounds: int = 3,
    seed: int = 0,
    warmup: int = 10,
    repeats: int = 30,
    compile: bool = False,
    channels_last: bool = False,
    trim: float = 0.1,
    progress: bool = False,
) -> list[Measurement]:
    """Latencies of many archs, measured in `rounds` interleaved passes.

    Each pass visits every arch once, in a fresh random order, builds its model, warms
    it up and times ``ceil(repeats / rounds)`` calls; an arch's statistics pool its
    timings from all passes. Anything that drifts while a profile is taken (another job
    on a shared host, clocks settling, heat) then lands on every arch alike instead of
    on whichever archs happened to be timed during it.

    Raises:
        LatencyError: as `measure`, or `rounds` below 1.
    """
    _check_settings(batch=batch, warmup=warmup, repeats=repeats, trim=trim, rounds=rounds)
    order = np.random.default_rng(seed)
    per_round = math.ceil(repeats / rounds)
    pooled: list[list[np.ndarray]] = [[] for _ in archs]
    with tqdm(total=rounds * len(archs), desc=f"timing {space.name} archs", disable=not progress) as bar:
        for _ in range(rounds):
            for index in order.permutation(len(archs)).tolist():
                model = build_model(space, archs[index], device, dtype)
                pooled[index].append(
                    time_forward(model, device, batch, dtype, None, warmup, per_round, compile, channels_last)
                )
                bar.update()
    return [summarise(np.concatenate(timings), batch, dtype, device, trim) for timings in pooled]


def throughput(
    model: nn.Module,
    device: str | torch.device = "cpu",
    batch: int = 64,
    dtype: str = "fp32",
    img_size: int | None = None,
    warmup: int = 5,
    rounds: int = 5,
    calls_per_round: int = 10,
    compile: bool = False,
    channels_last: bool = False,
) -> float:
    """Images per second when batches follow each other back to back.

    Unlike `measure`, calls within a round are not synchronised one by one: the host
    queues the next batch while the device works on the current one, as a serving loop
    or an offline job does. Each round is timed as a whole (CUDA events around it on a
    GPU); the median round is reported.

    Raises:
        LatencyError: as `measure`.
    """
    _check_settings(batch=batch, warmup=warmup, repeats=rounds, calls_per_round=calls_per_round)
    runner, images, target = _prepare(model, device, batch, dtype, img_size, compile, channels_last)

    def one_round(inputs: Tensor) -> None:
        for _ in range(calls_per_round):
            runner(inputs)

    timings = _timed_runs(one_round, images, target, warmup + (_COMPILE_WARMUP if compile else 0), rounds)
    return batch * calls_per_round * 1000.0 / float(np.median(timings))


def throughput_arch(space: SearchSpace, arch: Arch, device: str | torch.device = "cpu", batch: int = 64,
                    dtype: str = "fp32", **settings: Any) -> float:
    """`throughput` of the standalone model of `arch` (see `build_model`); `settings` go to `throughput`."""
    _check_settings(batch=batch)
    return throughput(build_model(space, arch, device, dtype), device, batch, dtype, **settings)


def _check_settings(**settings: float) -> None:
    minimum = {"batch": 1, "warmup": 0, "repeats": 1, "calls_per_round": 1, "rounds": 1}
    for name, value in settings.items():
        if name == "trim":
            require_number("trim", value, LatencyError, at_least=0, below=0.5)
        else:
            require_int(name, value, LatencyError, low=minimum[name])


def _prepare(model: nn.Module, device: str | torch.device, batch: int, dtype: str, img_size: int | None,
             compile: bool, channels_last: bool) -> tuple[Callable[[Tensor], Any], Tensor, torch.device]:
    """Puts (a copy of) the model in deployment form and makes its input batch."""
    target, cast = resolve_device(device), torch_dtype(dtype)
    tensors = list(model.parameters()) + list(model.buffers())
    if channels_last or model.training or any(
        t.device != target or (t.is_floating_point() and t.dtype != cast) for t in tensors
    ):
        model = copy.deepcopy(model).to(device=target, dtype=cast).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
    images = _example_images(model, batch, img_size, target, cast)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    if compile:
        logger.info("compiling the model; the first warm-up calls include compilation")
        return torch.compile(model), images, target
    return model, images, target


def _example_images(model: nn.Module, batch: int, img_size: int | None, device: torch.device,
                    dtype: torch.dtype) -> Tensor:
    """A random (B, C, H, W) batch from a private generator (the global RNG is not touched)."""
    config = getattr(model, "config", None)
    size = img_size if img_size is not None else getattr(config, "img_size", None)
    if size is None:
        raise LatencyError("img_size: the model has no config.img_size, so pass the input size")
    in_chans = getattr(config, "in_chans", 3)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, in_chans, size, size, generator=generator).to(device=device, dtype=dtype)


def _timed_runs(call: Callable[[Tensor], Any], images: Tensor, device: torch.device, warmup: int,
                repeats: int) -> np.ndarray:
    """Milliseconds of `repeats` calls, each started on an idle device, after `warmup` calls."""
    collecting = gc.isenabled()
    with torch.inference_mode():
        for _ in range(warmup):
            call(images)
        synchronize(device)
        gc.collect()
        gc.disable()
        try:
            timer = _cuda_timings if device.type == "cuda" else _cpu_timings
            return np.asarray(timer(call, images, device, repeats), dtype=np.float64)
        finally:
            if collecting:
                gc.enable()


def _cpu_timings(call: Callable[[Tensor], Any], images: Tensor, device: torch.device, repeats: int) -> list[float]:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(images)
        timings.append((time.perf_counter() - start) * 1000.0)
    return timings


def _cuda_timings(call: Callable[[Tensor], Any], images: Tensor, device: torch.device, repeats: int) -> list[float]:
    """CUDA-event timings: synchronise, record start, run, record end, wait for the end event."""
    timings = []
    with torch.cuda.device(device):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(repeats):
            torch.cuda.synchronize(device)
            start.record()
            call(images)
            end.record()
            end.synchronize()
            timings.append(start.elapsed_time(end))
    return timings

"""Device profiles: a latency predictor fitted on one device, saved as JSON with its pedigree.

`build_profile` measures sampled sub-networks of a space (always including its
largest and smallest, so the fit spans the whole range) as the standalone models users
deploy, fits a `LatencyPredictor` on most of them and reports its error on the archs
it never saw. The profile file records what the numbers are only true for (the
device's name, torch and CUDA versions, dtype, batch size, how the timings were taken),
the space itself, the fitted coefficients, the held-out error and every measurement,
so a profile can be audited, re-fitted, and refused on a device it does not describe.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from vitnas.errors import LatencyError, ProfileError, VitnasError
from vitnas.latency.measure import measure_archs
from vitnas.latency.predictor import LatencyPredictor, prediction_error
from vitnas.latency.profile_schema import FORMAT, VERSION, read_profile_fields
from vitnas.space.arch import Arch
from vitnas.space.space import SearchSpace, load_space
from vitnas.util.atomic import write_text_atomically
from vitnas.util.device import available_device_names, cuda_version, device_name, resolve_device, slug
from vitnas.util.dtypes import canonical_dtype
from vitnas.util.fields import require_int, require_number

__all__ = ["DeviceProfile", "ProfileSample", "build_profile", "load_profile", "sample_archs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileSample:
    """One measured arch of a profile."""

    arch: Arch
    median_ms: float
    p10_ms: float
    p90_ms: float
    holdout: bool  # True: kept out of the fit, used to report the predictor's error

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch.to_dict(), "median_ms": self.median_ms, "p10_ms": self.p10_ms,
                "p90_ms": self.p90_ms, "holdout": self.holdout}


@dataclass(frozen=True, eq=False)
class DeviceProfile:
    """A fitted latency predictor and the facts it holds under."""

    device: str  # the device's model name: the GPU's name, or the CPU's model name
    device_type: str  # "cuda" or "cpu"
    torch: str  # torch version the measurements ran under
    cuda: str | None  # CUDA version torch was built with; None for a CPU profile
    dtype: str  # "fp32", "bf16" or "fp16"
    batch: int  # images per forward pass; predictions are latencies of a batch this size
    predictor: LatencyPredictor  # holds the space
    mape: float  # mean relative error on the held-out archs (a fraction)
    max_error: float  # largest relative error on the held-out archs (a fraction)
    kendall_tau: float | None  # rank agreement on the held-out archs
    measurements: tuple[ProfileSample, ...] = field(repr=False)  # every measured arch, training and held out
    settings: Mapping[str, Any] = field(default_factory=dict)  # how timings were taken (warmup, repeats, ...)
    created: str = ""  # UTC time the profile was built, ISO 8601

    @property
    def space(self) -> SearchSpace:
        return self.predictor.space

    @property
    def samples(self) -> int:
        return len(self.measurements)

    @property
    def holdout(self) -> int:
        return sum(sample.holdout for sample in self.measurements)

    def predict(self, arch: Arch) -> float:
        """Predicted milliseconds of one forward pass of `arch` at this profile's batch and dtype."""
        return self.predictor.predict(arch)

    def predict_many(self, archs: Iterable[Arch]) -> np.ndarray:
        """`predict` of each arch, as an array of milliseconds."""
        return self.predictor.predict_many(archs)

    def predict_throughput(self, arch: Arch) -> float:
        """Predicted images per second of `arch` run batch after batch at this profile's batch size."""
        return self.batch * 1000.0 / self.predict(arch)

    def default_filename(self) -> str:
        """``profile_<device>_<space>_<dtype>_b<batch>.json``: named after what it holds for."""
        return f"profile_{slug(self.device)}_{slug(self.space.name)}_{self.dtype}_b{self.batch}.json"

    def check_device(self, where: str = "profile",
                     remedy: str = "build a profile here (vitnas latency profile) or load with check_device=False",
                     ) -> None:
        """Raises ProfileError, ending in `remedy`, unless this machine has a device of the profile's name."""
        names = available_device_names(self.device_type)
        if self.device not in names:
            here = ", ".join(repr(name) for name in names) if names else f"no {self.device_type} device"
            raise ProfileError(f"{where}: measured on {self.device_type} {self.device!r}, but this machine has {here}; "
                               f"{remedy}")

    def save(self, path: str | Path | None = None) -> Path:
        """Writes the profile as JSON, atomically; into a directory (or here, for None) as `default_filename`.

        Raises:
            ProfileError: the file cannot be written.
        """
        if path is None:
            return self.save(Path.cwd())
        target = Path(path)
        if target.is_dir() or str(path).endswith(("/", os.sep)):
            target = target / self.default_filename()
        write_text_atomically(target, json.dumps(self.to_dict(), indent=1) + "\n", ProfileError)
        return target

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION,
            "device": self.device, "device_type": self.device_type, "torch": self.torch, "cuda": self.cuda,
            "dtype": self.dtype, "batch": self.batch,
            "space": self.space.name, "space_config": self.space.to_dict(),
            "samples": self.samples, "holdout": self.holdout,
            "mape": self.mape, "max_error": self.max_error, "kendall_tau": self.kendall_tau,
            "predictor": self.predictor.to_dict(), "settings": dict(self.settings), "created": self.created,
            "measurements": [sample.to_dict() for sample in self.measurements],
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "profile") -> DeviceProfile:
        """Rebuilds a profile from `to_dict` output.

        Raises:
            ProfileError: a field is missing or of the wrong type, naming it after `where`.
        """
        fields = read_profile_fields(data, where)
        try:
            space = load_space(fields.pop("space_config"))
            predictor = LatencyPredictor.from_dict(space, fields.pop("predictor"))
            measurements = _samples(space, fields.pop("measurements"))
        except VitnasError as error:
            raise ProfileError(f"{where}: {error}") from None
        return cls(predictor=predictor, measurements=measurements, **fields)

    def __str__(self) -> str:
        tau = "n/a" if self.kendall_tau is None else f"{self.kendall_tau:.3f}"
        return (
            f"profile of {self.space.name} on {self.device} ({self.device_type}), {self.dtype}, batch {self.batch}: "
            f"{self.samples} archs measured, {self.holdout} held out: MAPE {100 * self.mape:.2f}%, "
            f"max error {100 * self.max_error:.2f}%, Kendall tau {tau}"
        )


def build_profile(
    space: SearchSpace | str,
    device: str | torch.device = "cpu",
    batch: int = 1,
    dtype: str = "fp32",
    samples: int = 200,
    seed: int = 0,
    holdout_fraction: float = 0.2,
    warmup: int = 10,
    repeats: int = 30,
    rounds: int = 3,
    compile: bool = False,
    channels_last: bool = False,
    trim: float = 0.1,
    progress: bool = False,
) -> DeviceProfile:
    """Measures `samples` archs of `space` on `device`, fits a predictor, and reports its held-out error.

    Args:
        space: a `SearchSpace` or what `vitnas.load_space` takes.
        samples: archs measured: the largest, the smallest and distinct random ones.
        seed: seeds the arch sample and the held-out split.
        holdout_fraction: share of the random archs kept out of the fit (at least one;
            the largest and smallest are always fitted on, so predictions interpolate).
        warmup, repeats, rounds, compile, channels_last, trim: as `vitnas.latency.measure_archs`
            (``repeats`` timed calls per arch in all, spread over ``rounds`` interleaved passes).
        progress: show a progress bar.

    Raises:
        LatencyError: a setting is out of range, or the device or dtype is unavailable.
    """
    space = space if isinstance(space, SearchSpace) else load_space(space)
    target = resolve_device(device)
    dtype = canonical_dtype(dtype)
    held_count = _holdout_count(samples, holdout_fraction)
    rng = np.random.default_rng(seed)
    archs = sample_archs(space, samples, rng)
    held = set(rng.choice(np.arange(2, samples), size=held_count, replace=False).tolist())
    settings = {"rounds": rounds, "warmup": warmup, "repeats": repeats, "compile": compile,
                "channels_last": channels_last, "trim": trim}
    name = device_name(target)
    timings = measure_archs(space, archs, target, batch, dtype, seed=seed, progress=progress, **settings)
    train, test = [i for i in range(samples) if i not in held], sorted(held)
    predictor = LatencyPredictor.fit(space, [archs[i] for i in train], [timings[i].median_ms for i in train])
    error = prediction_error(predictor.predict_many(archs[i] for i in test), [timings[i].median_ms for i in test])
    logger.info("%s on %s, %s batch %d: held-out %s", space.name, name, dtype, batch, error)
    return DeviceProfile(
        device=name, device_type=target.type, torch=torch.__version__, cuda=cuda_version(target),
        dtype=dtype, batch=batch, predictor=predictor,
        mape=error.mape, max_error=error.max_error, kendall_tau=error.kendall_tau,
        measurements=tuple(
            ProfileSample(arch, m.median_ms, m.p10_ms, m.p90_ms, holdout=i in held)
            for i, (arch, m) in enumerate(zip(archs, timings))
        ),
        settings={**settings, "seed": seed, "threads": torch.get_num_threads(),
                  "float32_matmul_precision": torch.get_float32_matmul_precision()},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def load_profile(path: str | Path, check_device: bool = True) -> DeviceProfile:
    """Loads a profile saved by `DeviceProfile.save`.

    Args:
        path: the JSON file.
        check_device: refuse a profile measured on a device this machine does not have.

    Raises:
        ProfileError: the file is missing, not JSON, malformed, or of another device.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ProfileError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProfileError(
            f"{path}: not a device profile: invalid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    profile = DeviceProfile.from_dict(data, where=str(path))
    if check_device:
        profile.check_device(where=str(path))
    _warn_on_version_drift(profile, str(path))
    return profile


def sample_archs(space: SearchSpace, count: int, rng: np.random.Generator, max_draws: int | None = None) -> list[Arch]:
    """The largest and smallest arch, then distinct random ones: `count` archs in all.

    Raises:
        LatencyError: fewer than 3 asked for, or `max_draws` random draws (default
            100 per arch) found too few distinct archs.
    """
    _check_samples(count)
    found = list(dict.fromkeys([space.largest(), space.smallest()]))
    seen = set(found)
    budget = 100 * count if max_draws is None else max_draws
    for _ in range(budget):
        if len(found) == count:
            break
        arch = space.sample(rng)
        if arch not in seen:
            seen.add(arch)
            found.append(arch)
    if len(found) < count:
        raise LatencyError(
            f"samples: only {len(found)} distinct archs of {space.name} in {budget} draws; ask for fewer"
        )
    return found


def _samples(space: SearchSpace, raw: list[dict[str, Any]]) -> tuple[ProfileSample, ...]:
    """Measurements read back from JSON, each arch checked against the profile's space."""
    samples = []
    for index, sample in enumerate(raw):
        try:
            arch = Arch.from_dict(sample["arch"])
            space.validate(arch)
        except VitnasError as error:
            raise ProfileError(f"measurements[{index}].arch: {error}") from None
        samples.append(
            ProfileSample(arch, sample["median_ms"], sample["p10_ms"], sample["p90_ms"], sample["holdout"])
        )
    return tuple(samples)


def _holdout_count(samples: int, fraction: float) -> int:
    require_number("holdout_fraction", fraction, LatencyError, above=0, below=1)
    _check_samples(samples)
    return min(samples - 2, max(1, round(fraction * samples)))


def _check_samples(count: int) -> None:
    """A profile measures the largest and the smallest arch and holds at least one out: three archs or more."""
    require_int("samples", count, LatencyError, low=3, what="an integer >= 3 (largest, smallest and one held out)")


def _warn_on_version_drift(profile: DeviceProfile, where: str) -> None:
    """Logs where the software or threading differs from the profile's: timings may have moved."""
    if profile.torch != torch.__version__:
        logger.warning("%s: measured under torch %s, running %s", where, profile.torch, torch.__version__)
    if profile.device_type == "cuda" and profile.cuda != torch.version.cuda:
        logger.warning("%s: measured under CUDA %s, running %s", where, profile.cuda, torch.version.cuda)
    threads = profile.settings.get("threads")
    if profile.device_type == "cpu" and threads is not None and threads != torch.get_num_threads():
        logger.warning("%s: measured with %s CPU threads, running %d", where, threads, torch.get_num_threads())

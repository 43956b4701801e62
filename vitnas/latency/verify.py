"""Verification: measuring the archs a search chose, for real, against their predictions.

A budget only holds if the predictor was right about the archs that matter, which are
not the random ones it was scored on: search drives candidates to the edge of the
budget, where a systematic error does most harm. So the final archs are built and
timed on the profile's device, at its batch size, dtype and timing settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from vitnas.errors import ProfileError
from vitnas.latency.measure import Measurement, measure_archs
from vitnas.latency.predictor import PredictionError, prediction_error
from vitnas.latency.profile import DeviceProfile
from vitnas.space.arch import Arch
from vitnas.space.space import SearchSpace
from vitnas.util.device import device_name, resolve_device

__all__ = ["Verification", "verify", "summary", "format_verification"]


@dataclass(frozen=True)
class Verification:
    """One arch's predicted and measured latency."""

    arch: Arch
    predicted_ms: float
    measured: Measurement

    @property
    def error(self) -> float:
        """Signed relative error of the prediction: (predicted - measured) / measured."""
        return (self.predicted_ms - self.measured.median_ms) / self.measured.median_ms


def verify(
    profile: DeviceProfile,
    space: SearchSpace,
    archs: Sequence[Arch],
    device: str | torch.device | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    check_device: bool = True,
    progress: bool = False,
) -> list[Verification]:
    """Measures the archs as the profile's were measured (interleaved passes) and pairs each with its prediction.

    Args:
        profile: the device profile whose predictions are checked.
        space: the space of `archs`; must be the profile's.
        archs: the archs to time.
        device: where to time them; defaults to the profile's kind of device (``"cuda"``,
            the current GPU, or ``"cpu"``). Its name must be the profile's.
        warmup, repeats: override the profile's timing settings.
        check_device: refuse a device whose name is not the profile's; False measures
            anyway, to see how far a profile transfers to other hardware.
        progress: show a progress bar.

    Raises:
        ProfileError: `space` is not the profile's space, or the device is not the profile's.
        ArchError: an arch is not in the space.
    """
    if space.name != profile.space.name:
        raise ProfileError(f"profile: made for space {profile.space.name!r}, asked to verify {space.name!r}")
    target = resolve_device(device if device is not None else profile.device_type)
    if check_device and device_name(target) != profile.device:
        raise ProfileError(
            f"device: {target} is {device_name(target)!r}, but the profile was measured on {profile.device!r}"
        )
    keys = ("rounds", "warmup", "repeats", "compile", "channels_last", "trim")
    settings = {key: profile.settings[key] for key in keys if key in profile.settings}
    settings.update({key: value for key, value in (("warmup", warmup), ("repeats", repeats)) if value is not None})
    predicted = [profile.predict(arch) for arch in archs]
    measured = measure_archs(space, archs, target, profile.batch, profile.dtype, progress=progress, **settings)
    return [Verification(arch, p, m) for arch, p, m in zip(archs, predicted, measured)]


def summary(results: Sequence[Verification]) -> PredictionError:
    """MAPE, max error and Kendall tau of a verification."""
    return prediction_error([r.predicted_ms for r in results], [r.measured.median_ms for r in results])


def format_verification(results: Sequence[Verification]) -> str:
    """A table of predicted vs measured milliseconds per arch, with the error summary."""
    lines = [f"{'#':>3} {'predicted ms':>13} {'measured ms':>12} {'p10-p90 ms':>17} {'error':>8}  arch"]
    for index, result in enumerate(results):
        m = result.measured
        lines.append(
            f"{index:>3} {result.predicted_ms:>13.3f} {m.median_ms:>12.3f} "
            f"{f'{m.p10_ms:.3f}-{m.p90_ms:.3f}':>17} {100 * result.error:>+7.2f}%  {result.arch}"
        )
    if results:
        lines.append(str(summary(results)))
    return "\n".join(lines)

"""Latency: measured on the target device, predicted for every sub-network.

`measure` times a model (warm-up, CUDA events or perf counters, trimmed statistics);
`build_profile` measures sampled archs of a space on one device, fits a fast
`LatencyPredictor` and reports its held-out error; the resulting `DeviceProfile`
saves to JSON and `load_profile` refuses it on a device of another name; `verify`
measures the archs a search chose against their predictions. (The budgets that use
a profile are the search's: `vitnas.search.budget`.)

Names load on first use, so the `vitnas latency` verbs can parse arguments without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas._lazy import export_lazily

_MODULES = {
    "measure": ("Measurement", "build_model", "measure", "measure_arch", "measure_archs", "summarise", "throughput",
                "throughput_arch", "time_forward"),
    "predictor": ("LatencyPredictor", "PredictionError", "prediction_error"),
    "profile": ("DeviceProfile", "ProfileSample", "build_profile", "load_profile", "sample_archs"),
    "verify": ("Verification", "format_verification", "verify"),
}
_LAZY = {name: f"vitnas.latency.{module}" for module, names in _MODULES.items() for name in names}
_LAZY["device_name"] = "vitnas.util.device"  # (`Budget` moved to vitnas.search; vitnas._moved serves the old name)

__all__ = sorted(_LAZY)

export_lazily(__name__, _LAZY)

if TYPE_CHECKING:
    from vitnas.util.device import device_name
    from vitnas.latency.measure import (Measurement, build_model, measure, measure_arch, measure_archs, summarise,
                                        throughput, throughput_arch, time_forward)
    from vitnas.latency.predictor import LatencyPredictor, PredictionError, prediction_error
    from vitnas.latency.profile import DeviceProfile, ProfileSample, build_profile, load_profile, sample_archs
    from vitnas.latency.verify import Verification, format_verification, verify

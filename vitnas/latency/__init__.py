"""Latency: measured on the target device, predicted for every sub-network.

`measure` times a model (warm-up, CUDA events or perf counters, trimmed statistics);
`build_profile` measures sampled archs of a space on one device, fits a fast
`LatencyPredictor` and reports its held-out error; the resulting `DeviceProfile`
saves to JSON and `load_profile` refuses it on a device of another name. `Budget`
states limits on latency, throughput, FLOPs and parameters; `verify` measures the
archs a search chose against their predictions.
"""

from vitnas.latency.budget import Budget
from vitnas.latency.device import device_name
from vitnas.latency.measure import (
    Measurement,
    build_model,
    measure,
    measure_arch,
    measure_archs,
    summarise,
    throughput,
    throughput_arch,
    time_forward,
)
from vitnas.latency.predictor import LatencyPredictor, PredictionError, prediction_error
from vitnas.latency.profile import DeviceProfile, ProfileSample, build_profile, load_profile, sample_archs
from vitnas.latency.verify import Verification, format_verification, verify

__all__ = [
    "Budget",
    "DeviceProfile",
    "LatencyPredictor",
    "Measurement",
    "PredictionError",
    "ProfileSample",
    "Verification",
    "build_model",
    "build_profile",
    "device_name",
    "format_verification",
    "load_profile",
    "measure",
    "measure_arch",
    "measure_archs",
    "prediction_error",
    "sample_archs",
    "summarise",
    "throughput",
    "throughput_arch",
    "time_forward",
    "verify",
]

"""Reading a device profile's JSON defensively: every fault is one line naming the field.

A profile travels between machines and may be hand-edited or truncated; loading one
must say exactly what is wrong with it rather than fail deep inside with a KeyError.
"""

from __future__ import annotations

from typing import Any

from vitnas.errors import ProfileError
from vitnas.util.dtypes import DTYPE_NAMES
from vitnas.util.fields import require_int

__all__ = ["FORMAT", "VERSION", "read_profile_fields"]

FORMAT = "vitnas-latency-profile"
VERSION = 1

_NUMBER = (int, float)
_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {  # field -> (types, may be null)
    "device": ((str,), False),
    "device_type": ((str,), False),
    "torch": ((str,), False),
    "cuda": ((str,), True),
    "dtype": ((str,), False),
    "batch": ((int,), False),
    "space": ((str,), False),
    "space_config": ((dict,), False),
    "samples": ((int,), False),
    "holdout": ((int,), False),
    "mape": (_NUMBER, False),
    "max_error": (_NUMBER, False),
    "kendall_tau": (_NUMBER, True),
    "predictor": ((dict,), False),
    "settings": ((dict,), False),
    "created": ((str,), False),
    "measurements": ((list,), False),
}
_SAMPLE: dict[str, tuple[type, ...]] = {
    "arch": (dict,), "median_ms": _NUMBER, "p10_ms": _NUMBER, "p90_ms": _NUMBER, "holdout": (bool,),
}


def read_profile_fields(data: Any, where: str) -> dict[str, Any]:
    """The checked fields of a profile dict, as `DeviceProfile`'s constructor arguments plus
    ``space_config``, ``predictor`` and ``measurements`` (still raw, for the caller to build).

    Raises:
        ProfileError: the data is not a profile, or a field is missing, mistyped or inconsistent.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(f"{where}: not a device profile (expected a JSON object with format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise ProfileError(f"{where}: profile version {data.get('version')!r} is not {VERSION}; rebuild the profile")
    fields = {key: _typed(data, key, kinds, nullable, where) for key, (kinds, nullable) in _FIELDS.items()}
    if fields["device_type"] not in ("cpu", "cuda"):
        raise ProfileError(f"{where}: device_type: {fields['device_type']!r} is not 'cpu' or 'cuda'")
    if fields["dtype"] not in DTYPE_NAMES:
        raise ProfileError(f"{where}: dtype: {fields['dtype']!r} is not one of {list(DTYPE_NAMES)}")
    require_int(f"{where}: batch", fields["batch"], ProfileError)
    if fields["space_config"].get("name") != fields["space"]:
        raise ProfileError(f"{where}: space: {fields['space']!r} differs from space_config's name")
    for index, sample in enumerate(fields["measurements"]):
        if not isinstance(sample, dict):
            raise ProfileError(f"{where}: measurements[{index}]: expected an object")
        for key, kinds in _SAMPLE.items():
            _typed(sample, key, kinds, False, f"{where}: measurements[{index}]")
    held = sum(sample["holdout"] for sample in fields["measurements"])
    if (fields["samples"], fields["holdout"]) != (len(fields["measurements"]), held):
        raise ProfileError(
            f"{where}: samples/holdout say {fields['samples']}/{fields['holdout']}, "
            f"measurements hold {len(fields['measurements'])}/{held}"
        )
    for derived in ("space", "samples", "holdout"):
        del fields[derived]
    return fields


def _typed(data: dict[str, Any], key: str, kinds: tuple[type, ...], nullable: bool, where: str) -> Any:
    if key not in data:
        raise ProfileError(f"{where}: missing field {key!r}")
    value = data[key]
    if value is None and nullable:
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(kind.__name__ for kind in kinds)
        raise ProfileError(f"{where}: field {key!r}: expected {expected}, got {type(value).__name__}")
    return value

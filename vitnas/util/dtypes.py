"""Numeric precisions by name: one table for training, latency and profiles.

vitnas writes precisions as ``fp32`` / ``bf16`` / ``fp16`` (what profiles and reports
record) and also accepts torch's names (``float32``, ``bfloat16``, ``float16``). torch is
imported only when a `torch.dtype` is asked for, so the CLI can validate a name cheaply.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from vitnas.errors import DtypeError

if TYPE_CHECKING:
    import torch

__all__ = ["DTYPE_NAMES", "DtypeError", "canonical_dtype", "dtype_arg", "torch_dtype"]

DTYPE_NAMES = ("fp32", "bf16", "fp16")
_ALIASES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}


def canonical_dtype(name: str, field: str = "dtype") -> str:
    """``fp32``, ``bf16`` or ``fp16`` for any accepted spelling (torch's names included).

    Raises:
        DtypeError: one line naming `field` and the accepted names.
    """
    text = str(name).strip().lower().removeprefix("torch.")
    if text in DTYPE_NAMES:
        return text
    if text in _ALIASES:
        return _ALIASES[text]
    raise DtypeError(f"{field}: {name!r} is not one of {', '.join(DTYPE_NAMES)} "
                     f"(or torch's {', '.join(sorted(set(_ALIASES) - {'float', 'half'}))})")


def torch_dtype(name: str) -> torch.dtype:
    """The `torch.dtype` of a precision name."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[canonical_dtype(name)]


def dtype_arg(text: str) -> str:
    """An argparse ``type=``: the canonical name, or argparse's own one-line usage error."""
    try:
        return canonical_dtype(text)
    except DtypeError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("dtype: ")) from None

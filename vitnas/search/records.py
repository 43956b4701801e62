"""What a search remembers: one `Record` per proposed arch, and reading records and RNG state back.

Kept apart from the algorithm so the state format (what `state_dict` writes and a
resumed run reads) is in one short place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from vitnas.errors import VitnasError
from vitnas.space.arch import Arch

if TYPE_CHECKING:
    from vitnas.space.space import SearchSpace

__all__ = ["STATE_FORMAT", "STATE_VERSION", "Record", "as_accuracy", "generator_from_state", "read_records"]

STATE_FORMAT = "vitnas-search-state"  # the "format" field of every saved search state
STATE_VERSION = 1  # bumped when the state's layout changes
_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


@dataclass(frozen=True)
class Record:
    """One proposed arch: where it came from and, once told, its accuracy."""

    arch: Arch
    generation: int  # the generation that proposed it (0: the initial population)
    index: int  # proposal order over the whole run: the one order history is kept in
    budget: str  # name of the budget it was proposed for (it meets that budget)
    accuracy: float | None = None  # search-split accuracy; None while pending

    def to_dict(self) -> dict[str, Any]:
        data = {"arch": self.arch.to_dict(), "generation": self.generation, "index": self.index, "budget": self.budget}
        if self.accuracy is not None:
            data["accuracy"] = self.accuracy
        return data


def read_records(rows: Iterable[Mapping[str, Any]], space: SearchSpace, told: bool) -> list[Record]:
    """Records from `Record.to_dict` rows, each arch checked against `space`.

    Raises:
        VitnasError: an arch outside the space or a bad accuracy; KeyError or TypeError
            for a missing or mistyped field (the caller names the state).
    """
    records = []
    for row in rows:
        arch = Arch.from_dict(row["arch"])
        space.validate(arch)
        accuracy = as_accuracy(row["accuracy"], arch) if told else None
        records.append(Record(arch, int(row["generation"]), int(row["index"]), str(row["budget"]), accuracy))
    return records


def as_accuracy(value: Any, arch: Arch) -> float:
    """`value` as a finite float; raises VitnasError naming the arch otherwise (a NaN would break ranking)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise VitnasError(f"tell: accuracy must be a number, got {value!r} for {arch}")
    if not math.isfinite(float(value)):
        raise VitnasError(f"tell: accuracy must be finite, got {value!r} for {arch}")
    return float(value)


def generator_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """A numpy Generator at a saved ``bit_generator.state``: it draws what the saved one would have drawn."""
    name = state["bit_generator"]
    if name not in _GENERATORS:
        raise VitnasError(f"state: rng: unknown bit generator {name!r} (known: {', '.join(_GENERATORS)})")
    generator = np.random.Generator(getattr(np.random, name)())
    generator.bit_generator.state = dict(state)
    return generator

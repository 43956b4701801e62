"""Hardware budgets: the limits a searched arch must stay within.

A budget is what the rest of vitnas (search, export reports) asks of an arch. MACs
(multiply-accumulates) and parameters are exact closed-form counts; latency and
throughput are predicted by a device profile, because MACs alone mislead on real
hardware (token pruning at batch 1 can be slower than none; GPUs have tail effects).
Any combination may be set; an unset limit (None) does not constrain.
"""

from __future__ import annotations

import warnings
from dataclasses import InitVar, dataclass, fields
from typing import Any

from vitnas.errors import BudgetError
from vitnas.latency.profile import DeviceProfile
from vitnas.space.arch import Arch
from vitnas.space.cost import count_macs, count_params
from vitnas.space.space import SearchSpace
from vitnas.util.fields import require_int, require_number

__all__ = ["Budget"]


@dataclass(frozen=True)
class Budget:
    """Upper limits on cost and a lower limit on speed; None leaves a quantity free."""

    latency_ms: float | None = None  # most milliseconds per forward pass, at the profile's batch size and dtype
    min_throughput: float | None = None  # fewest images per second, at the profile's batch size
    max_macs: int | None = None  # most multiply-accumulates per image (as `vitnas.count_macs` counts them)
    max_params: int | None = None  # most parameters (as `vitnas.count_params`)
    # The old name of max_macs, taken as a keyword for one release (with a DeprecationWarning); not a field.
    max_flops: InitVar[int | None] = None

    def __post_init__(self, max_flops: int | None) -> None:
        if max_flops is not None:
            self._take_old_max_flops(max_flops)
        for name in ("latency_ms", "min_throughput"):
            require_number(f"Budget.{name}", getattr(self, name), BudgetError, above=0, optional=True)
        for name in ("max_macs", "max_params"):
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():
                object.__setattr__(self, name, int(value))  # 4.6e9 written as a float is still a count
                value = int(value)
            require_int(f"Budget.{name}", value, BudgetError, optional=True)

    @property
    def needs_profile(self) -> bool:
        """Whether checking this budget needs a device profile (a latency or throughput limit is set)."""
        return self.latency_ms is not None or self.min_throughput is not None

    def check(self, space: SearchSpace, arch: Arch, profile: DeviceProfile | None = None) -> list[str]:
        """The constraints `arch` violates, one readable line each; empty when it fits.

        Raises:
            BudgetError: a latency or throughput limit is set but no profile is given, or the
                profile is of another space.
            ArchError: `arch` is not in `space`.
        """
        self._check_profile(space, profile)
        violations = []
        if self.max_macs is not None and (macs := count_macs(space, arch)) > self.max_macs:
            violations.append(f"MACs {macs / 1e6:.2f} M > max_macs {self.max_macs / 1e6:.2f} M")
        if self.max_params is not None and (params := count_params(space, arch)) > self.max_params:
            violations.append(f"params {params / 1e6:.3f} M > max_params {self.max_params / 1e6:.3f} M")
        if profile is not None and self.needs_profile:
            latency = profile.predict(arch)
            where = f"(predicted, batch {profile.batch} {profile.dtype} on {profile.device})"
            if self.latency_ms is not None and latency > self.latency_ms:
                violations.append(f"latency {latency:.3f} ms > latency_ms {self.latency_ms:g} ms {where}")
            speed = profile.batch * 1000.0 / latency
            if self.min_throughput is not None and speed < self.min_throughput:
                violations.append(f"throughput {speed:.1f} images/s < min_throughput {self.min_throughput:g} {where}")
        return violations

    def satisfied(self, space: SearchSpace, arch: Arch, profile: DeviceProfile | None = None) -> bool:
        """Whether `arch` meets every limit (see `check`)."""
        return not self.check(space, arch, profile)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __str__(self) -> str:
        limits = [f"{name} {value:g}" for name, value in self.to_dict().items() if value is not None]
        return "budget: " + (", ".join(limits) if limits else "unconstrained")

    def _take_old_max_flops(self, value: int) -> None:
        if self.max_macs is not None:
            raise BudgetError("Budget.max_flops: the old name of max_macs; give only max_macs")
        warnings.warn("Budget: max_flops= is now max_macs= (the old name goes in the next release)",
                      DeprecationWarning, stacklevel=4)
        object.__setattr__(self, "max_macs", value)

    def _check_profile(self, space: SearchSpace, profile: DeviceProfile | None) -> None:
        if not self.needs_profile:
            return
        if profile is None:
            field = "latency_ms" if self.latency_ms is not None else "min_throughput"
            raise BudgetError(
                f"Budget.{field}: a latency or throughput budget needs a device profile "
                "(build one with vitnas latency profile, load it with vitnas.load_profile)"
            )
        if profile.space.name != space.name:
            raise BudgetError(f"profile: made for space {profile.space.name!r}, asked about space {space.name!r}")


def _old_max_flops(budget: Budget) -> int | None:
    """``budget.max_flops``: the old name of `Budget.max_macs`, read for one release."""
    warnings.warn("Budget.max_flops is now Budget.max_macs (the old name goes in the next release)",
                  DeprecationWarning, stacklevel=2)
    return budget.max_macs


# After the dataclass is built: its __init__ takes max_flops= (an InitVar), and reading it gives max_macs.
Budget.max_flops = property(_old_max_flops)  # type: ignore[assignment]

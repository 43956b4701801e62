"""Named budgets and the costs a search checks them against.

A search run may hold several budgets at once ("<= 4 ms", "<= 1.3 G MACs"), and every
output (best.json, the progress bar, the final table) names each one, so a budget here
carries a short name derived from its limits. The search checks budgets against cached
cost dicts rather than calling `Budget.check` per candidate: rejection sampling costs
thousands of archs, and one cached `costs(arch)` call then serves every budget. The
comparisons are the ones `Budget.check` makes (a limit holds when the cost equals it),
so both always agree.

`vitnas.latency` and `vitnas.space.cost` are imported lazily: they pull in torch, and
`import vitnas.search` should stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from vitnas.errors import BudgetError
from vitnas.space.arch import Arch
from vitnas.util.fields import require_number
from vitnas.util.renamed import renamed_value, upgraded

if TYPE_CHECKING:
    from vitnas.latency.profile import DeviceProfile
    from vitnas.search.budget import Budget
    from vitnas.space.space import SearchSpace

__all__ = [
    "CostFunction",
    "CostModel",
    "NamedBudget",
    "budget_name",
    "budgets_from_limits",
    "cheapest_corners",
    "meets",
    "named_budget",
    "unreachable_message",
    "violated_limits",
]

CostFunction = Callable[[Arch], Mapping[str, float]]
"""``costs(arch) -> {"macs": count, "params": count, "latency_ms"?: ms, "throughput"?: images/s}``."""

# (Budget field, cost key, True when the limit is an upper bound)
_LIMITS = (
    ("latency_ms", "latency_ms", True),
    ("min_throughput", "throughput", False),
    ("max_macs", "macs", True),
    ("max_params", "params", True),
)


def budget_name(budget: Budget) -> str:
    """A short name for `budget`'s limits, such as ``latency_ms<=4`` or ``macs<=1.3G,params<=10M``."""
    parts = []
    if budget.latency_ms is not None:
        parts.append(f"latency_ms<={budget.latency_ms:.4g}")
    if budget.min_throughput is not None:
        parts.append(f"throughput>={budget.min_throughput:.4g}")
    if budget.max_macs is not None:
        parts.append(f"macs<={budget.max_macs / 1e9:.4g}G")
    if budget.max_params is not None:
        parts.append(f"params<={budget.max_params / 1e6:.4g}M")
    return ",".join(parts) if parts else "unconstrained"


@dataclass(frozen=True)
class NamedBudget:
    """A budget and the short name outputs report it under (derived from its limits when not given)."""

    budget: Budget  # the limits an arch must meet
    name: str = ""  # key of this budget in best.json and `best()`; "" derives it with `budget_name`

    def __post_init__(self) -> None:
        from vitnas.search.budget import Budget

        if not isinstance(self.budget, Budget):
            raise BudgetError(f"NamedBudget.budget: expected a vitnas.Budget, got {type(self.budget).__name__}")
        if not isinstance(self.name, str) or "\n" in self.name:
            raise BudgetError(f"NamedBudget.name: expected a one-line string, got {self.name!r}")
        if not self.name:
            object.__setattr__(self, "name", budget_name(self.budget))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "budget": self.budget.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> NamedBudget:
        """Rebuilds a budget from `to_dict` output; raises BudgetError naming the bad field."""
        from vitnas.search.budget import Budget

        if not isinstance(data, dict) or not isinstance(data.get("budget"), dict):
            raise BudgetError("budget: expected an object with 'name' and a 'budget' object")
        try:
            budget = Budget(**upgraded(data["budget"]))  # max_flops in a state written before the rename
        except TypeError as error:
            raise BudgetError(f"budget {data.get('name', '?')}: {error}") from None
        return cls(budget=budget, name=data.get("name", ""))


def named_budget(
    latency_ms: float | None = None,
    macs: float | None = None,
    params: float | None = None,
    min_throughput: float | None = None,
    name: str = "",
    *,
    flops: float | None = None,
) -> NamedBudget:
    """One budget from CLI-style values: milliseconds, G MACs and millions of parameters.

    ``flops=`` is the old name of ``macs=``, taken for one release.

    Raises:
        BudgetError: a value is not positive (naming it).
    """
    from vitnas.search.budget import Budget

    macs = renamed_value(macs, flops, "flops", "macs", "named_budget", BudgetError)
    budget = Budget(
        latency_ms=latency_ms,
        min_throughput=min_throughput,
        max_macs=None if macs is None else _scaled(macs, 1e9, "macs"),
        max_params=None if params is None else _scaled(params, 1e6, "params"),
    )
    return NamedBudget(budget, name)


def budgets_from_limits(
    latency_ms: float | Iterable[float] | None = None,
    macs: float | Iterable[float] | None = None,
    params: float | Iterable[float] | None = None,
    *,
    flops: float | Iterable[float] | None = None,
) -> list[NamedBudget]:
    """One budget per value, as ``vitnas search --latency-ms 4,8 --macs 1.3`` asks (three budgets).

    Each value stands alone: ``--macs 1.3 --params 10`` is two budgets, each with its best arch.
    ``flops=`` is the old name of ``macs=``, taken for one release.
    """
    macs = renamed_value(macs, flops, "flops", "macs", "budgets_from_limits", BudgetError)
    budgets = [named_budget(latency_ms=value) for value in _values(latency_ms)]
    budgets += [named_budget(macs=value) for value in _values(macs)]
    budgets += [named_budget(params=value) for value in _values(params)]
    return budgets


def meets(budget: Budget, costs: Mapping[str, float]) -> bool:
    """Whether `costs` (a `CostFunction` result) meet every limit `budget` sets."""
    return not violated_limits(budget, costs)


def violated_limits(budget: Budget, costs: Mapping[str, float]) -> list[str]:
    """The `Budget` fields whose limits `costs` miss (a limit holds when equal, as in `Budget.check`).

    Raises:
        BudgetError: the budget sets a limit the costs do not give (latency without a profile).
    """
    missed = []
    for field, key, upper in _LIMITS:
        limit = getattr(budget, field)
        if limit is None:
            continue
        if key not in costs:
            raise BudgetError(
                f"budget {budget_name(budget)}: {field} needs a device profile, and the costs give no {key}"
            )
        if (costs[key] > limit) if upper else (costs[key] < limit):
            missed.append(field)
    return missed


class CostModel:
    """The `CostFunction` of a space: exact MACs and params, and predicted latency with a profile.

    Attributes:
        space: the space archs are costed in.
        profile: the device profile predicting latency, or None (then no latency or throughput).
    """

    def __init__(self, space: SearchSpace, profile: DeviceProfile | None = None) -> None:
        if profile is not None and profile.space.name != space.name:
            raise BudgetError(f"profile: made for space {profile.space.name!r}, asked about space {space.name!r}")
        self.space = space
        self.profile = profile

    @property
    def cost_key(self) -> str:
        """The cost a Pareto front is drawn against: predicted latency with a profile, else MACs."""
        return "latency_ms" if self.profile is not None else "macs"

    def __call__(self, arch: Arch) -> dict[str, float]:
        from vitnas.space.cost import count_macs, count_params

        costs: dict[str, float] = {"macs": count_macs(self.space, arch), "params": count_params(self.space, arch)}
        if self.profile is not None:
            latency = float(self.profile.predict(arch))
            costs["latency_ms"] = latency
            costs["throughput"] = self.profile.batch * 1000.0 / latency
        return costs


def cheapest_corners(space: SearchSpace) -> list[Arch]:
    """`space.smallest()` at every (img_size, patch_size) the space allows.

    Every other gene at its minimum minimises MACs and params; the patch size alone
    pulls two ways (a coarser patch means fewer tokens but a larger embedding kernel),
    so the cheapest arch in params may sit at another corner.
    """
    smallest = space.smallest()
    patch = space.spec.patch
    corners = [replace(smallest, img_size=i, patch_size=p) for i in patch.img_sizes for p in patch.sizes]
    return [smallest] + [arch for arch in corners if arch != smallest and space.contains(arch)]


def unreachable_message(
    named: NamedBudget, space_name: str, lowest: Mapping[str, float], draws: int
) -> str:
    """The one-line BudgetError text for a budget no sub-network met.

    Args:
        named: the budget.
        space_name: the space searched.
        lowest: the best value of each cost key found (lowest; highest for throughput).
        draws: how many archs were tried.
    """
    for field, key, upper in _LIMITS:
        limit = getattr(named.budget, field)
        if limit is None or key not in lowest or ((lowest[key] <= limit) if upper else (lowest[key] >= limit)):
            continue
        exact = key in ("macs", "params")  # exact minima from `cheapest_corners`; latency is predicted
        word = "reachable" if exact else "found"
        which = "largest" if key == "throughput" else "smallest"
        return (
            f"budget {named.name}: no sub-network meets it; the {which} {word} is "
            f"{_format_cost(key, lowest[key])} (space {space_name})"
        )
    return (
        f"budget {named.name}: no sub-network meeting all its limits found in {draws} draws "
        f"(space {space_name}); loosen a limit or raise max_tries"
    )


def _format_cost(key: str, value: float) -> str:
    if key == "macs":
        return f"{value / 1e9:.4g} G MACs"
    if key == "params":
        return f"{value / 1e6:.4g} M params"
    if key == "latency_ms":
        return f"{value:.4g} ms predicted"
    return f"{value:.4g} images/s predicted"


def _scaled(value: float, unit: float, field: str) -> int:
    return max(1, round(require_number(field, value, BudgetError, above=0) * unit))


def _values(value: float | Iterable[float] | None) -> Sequence[float]:
    if value is None:
        return ()
    if isinstance(value, (int, float)):
        return (value,)
    return tuple(value)

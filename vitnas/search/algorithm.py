"""The machinery every search algorithm shares: ask/tell, history, budgets, results, state.

An algorithm proposes archs (`ask`), receives their accuracies (`tell`) and keeps the
history; it never evaluates anything itself, so the same object drives an in-process
loop, Ray actors or a Ray Tune searcher. Two properties make parallel and resumed runs
give the serial run's answer:

* **Order independence.** `tell` only records; every decision (ranking parents,
  choosing the best, writing the state) sorts by a deterministic key: accuracy, then
  MACs, then the arch's JSON; history is kept in proposal order (`Record.index`),
  never arrival order. Results arriving in any order give the same next proposals.
* **Exact state.** `state_dict` holds the config, budgets, generation, history, pending
  archs and the numpy Generator's bit-generator state, all as JSON; a restored
  algorithm draws exactly the numbers the uninterrupted one would have drawn.

A generation is proposed whole: `ask` returns nothing new until every pending arch has
been told, then the next generation.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from vitnas.errors import BudgetError, VitnasError
from vitnas.space.arch import Arch
from vitnas.search.budgets import (
    CostFunction,
    NamedBudget,
    cheapest_corners,
    meets,
    unreachable_message,
)
from vitnas.search.config import EvolutionConfig
from vitnas.search.pareto import pareto_front
from vitnas.search.records import (
    STATE_FORMAT,
    STATE_VERSION,
    Record,
    as_accuracy,
    generator_from_state,
    read_records,
)

if TYPE_CHECKING:
    from vitnas.search.budget import Budget
    from vitnas.space.space import SearchSpace

__all__ = ["SearchAlgorithm", "split_evenly"]

logger = logging.getLogger(__name__)

class SearchAlgorithm(ABC):
    """Ask/tell search under several budgets sharing one history; subclasses choose what to propose.

    Attributes:
        space: the space archs are drawn from.
        budgets: the named budgets, in the order given; every proposal meets at least one.
        config: population sizes, operators, bounds and the seed.
        rng: the only source of randomness, seeded from ``config.seed``.
        generation: the generation being proposed or evaluated (0: the initial population).
    """

    name: ClassVar[str] = ""  # the algorithm's name in `make_algorithm` and in saved states

    def __init__(
        self,
        space: SearchSpace,
        budgets: Sequence[NamedBudget | Budget],
        costs: CostFunction,
        config: EvolutionConfig | None = None,
    ) -> None:
        """Checks the budgets against the costs (a latency budget needs latency costs).

        Args:
            space: the space to search.
            budgets: one or more budgets; a plain `Budget` is named after its limits.
            costs: ``costs(arch) -> {"macs", "params", "latency_ms"?, ...}`` (e.g. a
                `CostModel`); called once per arch, the result cached.
            config: defaults to `EvolutionConfig()`.

        Raises:
            BudgetError: no budget, two of one name, or a limit the costs cannot check.
            VitnasError: fewer population members than budgets.
        """
        self.space = space
        self.config = config if config is not None else EvolutionConfig()
        self.budgets = _named_budgets(budgets)
        self._costs = costs
        self._cost_cache: dict[Arch, dict[str, float]] = {}
        self._json_cache: dict[Arch, str] = {}
        self.rng = np.random.default_rng(self.config.seed)
        self.generation = 0
        self._history: dict[Arch, Record] = {}
        self._pending: dict[Arch, Record] = {}
        self._next_index = 0
        self._check_setup()

    # -- what a subclass decides -----------------------------------------------------------------
    @abstractmethod
    def _propose(self) -> list[tuple[Arch, str]]:
        """The new archs of generation `self.generation`, each with the budget it was drawn for."""

    # -- ask / tell ------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Whether every generation has been proposed and evaluated."""
        return self.generation >= self.config.generations and not self._pending

    def ask(self) -> list[Arch]:
        """The next generation's archs, all new to the run; empty while archs are pending or when done.

        Raises:
            BudgetError: in generation 0, a budget that no sub-network meets (one line,
                naming the budget and the smallest value the space reaches).
        """
        if self._pending:
            return []
        while not self.done:
            proposals = self._propose()
            if proposals:
                for arch, budget in proposals:
                    self._pending[arch] = Record(arch, self.generation, self._next_index, budget)
                    self._next_index += 1
                logger.debug("generation %d: %d archs proposed", self.generation, len(proposals))
                return [arch for arch, _ in proposals]
            logger.warning("generation %d: no new arch found for any budget; skipping it", self.generation)
            self.generation += 1
        return []

    def tell(self, results: Mapping[Arch, float]) -> None:
        """Records accuracies of pending archs, in any order; the last one of a generation closes it.

        A result told twice with the same accuracy is ignored (an at-least-once backend may
        deliver twice); nothing is recorded unless every result is valid.

        Raises:
            VitnasError: an arch that is not pending, an accuracy that is not a finite
                number, or a second, different accuracy for an arch.
        """
        if not isinstance(results, Mapping):
            raise VitnasError(f"tell: expected a mapping of Arch to accuracy, got {type(results).__name__}")
        accepted = []
        for arch, accuracy in results.items():
            value = as_accuracy(accuracy, arch)
            if arch in self._history:
                if self._history[arch].accuracy != value:
                    raise VitnasError(f"tell: arch already told with accuracy {self._history[arch].accuracy}: {arch}")
                continue
            if arch not in self._pending:
                raise VitnasError(f"tell: arch was not proposed by this search (or not yet): {arch}")
            accepted.append((arch, value))
        for arch, value in accepted:
            self._history[arch] = replace(self._pending.pop(arch), accuracy=value)
        if accepted and not self._pending:
            self._close_generation()

    @property
    def pending(self) -> list[Arch]:
        """Archs asked for and not yet told, in proposal order (what a resumed backend re-runs)."""
        return [record.arch for record in sorted(self._pending.values(), key=lambda r: r.index)]

    def proposal(self, arch: Arch) -> Record | None:
        """The record of `arch` (its generation, the budget it was drawn for, its accuracy once told), or None."""
        return self._pending.get(arch) or self._history.get(arch)

    @property
    def history(self) -> list[Record]:
        """Every evaluated arch, in proposal order."""
        return sorted(self._history.values(), key=lambda r: r.index)

    @property
    def evaluations(self) -> int:
        return len(self._history)

    # -- costs and budgets ----------------------------------------------------------------------
    def costs(self, arch: Arch) -> dict[str, float]:
        """The cost dict of `arch`, computed once per arch."""
        found = self._cost_cache.get(arch)
        if found is None:
            found = self._cost_cache[arch] = dict(self._costs(arch))
        return found

    def meets(self, arch: Arch, budget: NamedBudget) -> bool:
        """Whether `arch` meets every limit of `budget` (compared as `Budget.check` does)."""
        return meets(budget.budget, self.costs(arch))

    @property
    def cost_key(self) -> str:
        """What the Pareto front trades accuracy against: latency when the costs predict it, else MACs."""
        return "latency_ms" if "latency_ms" in self.costs(self.space.smallest()) else "macs"

    def budget(self, name: str) -> NamedBudget:
        """The budget of this name; raises VitnasError listing the names otherwise."""
        for named in self.budgets:
            if named.name == name:
                return named
        raise VitnasError(f"budget {name!r}: not a budget of this search ({', '.join(b.name for b in self.budgets)})")

    # -- results --------------------------------------------------------------------------------
    def ranked(self, budget: NamedBudget | str) -> list[Record]:
        """Evaluated archs meeting `budget`, best first: accuracy, then fewer MACs, then the arch JSON."""
        named = self.budget(budget) if isinstance(budget, str) else budget
        members = [record for record in self._history.values() if self.meets(record.arch, named)]
        return sorted(members, key=self._rank_key)

    def best(self, budget_name: str) -> tuple[Arch, float]:
        """The most accurate evaluated arch meeting the budget, and its accuracy.

        Raises:
            VitnasError: an unknown budget, or none of its archs evaluated yet.
        """
        ranked = self.ranked(budget_name)
        if not ranked:
            raise VitnasError(f"budget {budget_name}: no evaluated arch meets it yet")
        return ranked[0].arch, float(ranked[0].accuracy)

    def best_per_budget(self) -> dict[str, tuple[Arch, float]]:
        """`best` of every budget that has an evaluated arch, in budget order."""
        found = {}
        for named in self.budgets:
            ranked = self.ranked(named)  # ranked once per budget: it sorts the whole history
            if ranked:
                found[named.name] = (ranked[0].arch, float(ranked[0].accuracy))
        return found

    def population(self) -> dict[str, list[Arch]]:
        """Per budget, the top-k evaluated archs (``config.parents``) the next generation breeds from."""
        return {named.name: [r.arch for r in self.ranked(named)[: self.config.parents]] for named in self.budgets}

    def results(self) -> list[dict[str, Any]]:
        """One row per evaluated arch, in proposal order: arch, accuracy, generation, budget and costs."""
        return [
            {"arch": r.arch, "accuracy": r.accuracy, "generation": r.generation, "budget": r.budget}
            | self.costs(r.arch)
            for r in self.history
        ]

    def pareto(self) -> list[dict[str, Any]]:
        """The `pareto_front` of `results` against `cost_key`."""
        return pareto_front(self.results(), self.cost_key)

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The whole state as JSON-ready data; `load_state_dict` continues exactly from it."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "algorithm": self.name,
            "space": self.space.name,
            "config": self.config.to_dict(),
            "budgets": [named.to_dict() for named in self.budgets],
            "generation": self.generation,
            "next_index": self._next_index,
            "population": {name: [a.to_dict() for a in archs] for name, archs in self.population().items()},
            "history": [record.to_dict() for record in self.history],
            "pending": [record.to_dict() for record in sorted(self._pending.values(), key=lambda r: r.index)],
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replaces this algorithm's whole state (config and budgets included) with a saved one.

        Raises:
            VitnasError: the state is of another format, algorithm or space, malformed, or
                its population disagrees with its history under these costs (another
                profile or space than the run's).
        """
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise VitnasError(f"state: not a search state (expected format {STATE_FORMAT!r})")
        if state.get("algorithm") != self.name:
            raise VitnasError(f"state: saved by algorithm {state.get('algorithm')!r}, loading into {self.name!r}")
        if state.get("space") != self.space.name:
            raise VitnasError(f"state: saved for space {state.get('space')!r}, loading into {self.space.name!r}")
        before = dict(vars(self))
        try:
            self._load(state)
        except (KeyError, TypeError, ValueError) as error:  # VitnasError is a ValueError
            vars(self).update(before)  # all or nothing: a bad state leaves this algorithm as it was
            if isinstance(error, VitnasError):
                raise (error if str(error).startswith("state") else VitnasError(f"state: {error}")) from None
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise VitnasError(f"state: malformed ({type(error).__name__}: {detail})") from None

    @classmethod
    def from_state(cls, state: Mapping[str, Any], space: SearchSpace, costs: CostFunction) -> SearchAlgorithm:
        """A new algorithm continuing from `state` (see `load_state_dict`)."""
        try:
            config = EvolutionConfig.from_dict(state["config"])
            budgets = [NamedBudget.from_dict(data) for data in state["budgets"]]
        except (KeyError, TypeError) as error:
            raise VitnasError(f"state: malformed ({error})") from None
        algorithm = cls(space, budgets, costs, config)
        algorithm.load_state_dict(state)
        return algorithm

    # -- shared proposal machinery --------------------------------------------------------------
    def _uniform_population(self, first: bool) -> list[tuple[Arch, str]]:
        """``config.population`` new archs drawn uniformly inside the budgets, split among them.

        Rejection sampling from `space.sample` is uniform over the archs meeting a budget.
        In generation 0 (`first`), a budget met by no draw falls back to the cheapest
        archs, and raises BudgetError when those miss it too.
        """
        taken = self._taken()
        proposals: list[tuple[Arch, str]] = []
        for named, count in zip(self.budgets, split_evenly(self.config.population, len(self.budgets))):
            found = self._draw(count, named, lambda: self.space.sample(self.rng), taken)
            if not found and first and not any(self.meets(arch, named) for arch, _ in proposals):
                found = [a for a in cheapest_corners(self.space) if a not in taken and self.meets(a, named)][:count]
                taken.update(found)
                if not found:
                    raise BudgetError(self._unreachable(named))
            if not found:
                logger.warning("generation %d, budget %s: no new arch found", self.generation, named.name)
            proposals += [(arch, named.name) for arch in found]
        return proposals

    def _draw(
        self,
        count: int,
        named: NamedBudget,
        propose: Callable[[], Arch],
        taken: set[Arch],
        patience: int | None = None,
    ) -> list[Arch]:
        """Up to `count` new archs from `propose` that meet `named`, in at most ``config.max_tries`` draws.

        `taken` (history, pending and this generation's picks) grows with each pick, so
        no arch is ever proposed twice in a run. With `patience`, gives up after that many
        draws in a row found nothing: breeding from near-identical parents stalls for good,
        while uniform draws inside a tight budget only succeed rarely (no patience there).
        """
        found: list[Arch] = []
        draws = since_last = 0
        while len(found) < count and draws < self.config.max_tries and (patience is None or since_last < patience):
            arch = propose()
            draws += 1
            since_last += 1
            if arch not in taken and self.meets(arch, named):
                taken.add(arch)
                found.append(arch)
                since_last = 0
        if len(found) < count:
            logger.info("budget %s: %d of %d new archs in %d draws", named.name, len(found), count, draws)
        return found

    def _taken(self) -> set[Arch]:
        return set(self._history) | set(self._pending)

    # -- internals ------------------------------------------------------------------------------
    def _rank_key(self, record: Record) -> tuple[float, float, str]:
        return (-float(record.accuracy), self.costs(record.arch)["macs"], self._json(record.arch))

    def _json(self, arch: Arch) -> str:
        text = self._json_cache.get(arch)
        if text is None:
            text = self._json_cache[arch] = arch.to_json()
        return text

    def _close_generation(self) -> None:
        summary = ", ".join(f"{name} {acc:.4f}" for name, (_, acc) in self.best_per_budget().items())
        logger.info("generation %d done: %d evaluated; best %s", self.generation, self.evaluations, summary)
        self.generation += 1

    def _unreachable(self, named: NamedBudget) -> str:
        """The BudgetError line: the best value of each cost over the cheapest archs and a sample."""
        survey = np.random.default_rng(self.config.seed)  # a separate stream: the run's rng is not touched
        draws = min(self.config.max_tries, 500)
        archs = cheapest_corners(self.space) + [self.space.sample(survey) for _ in range(draws)]
        costs = [self.costs(arch) for arch in archs]
        lowest = {key: min(c[key] for c in costs) for key in costs[0] if key != "throughput"}
        if "throughput" in costs[0]:
            lowest["throughput"] = max(c["throughput"] for c in costs)
        return unreachable_message(named, self.space.name, lowest, self.config.max_tries)

    def _check_setup(self) -> None:
        budgets = len(self.budgets)
        if self.config.population < budgets:
            raise VitnasError(
                f"EvolutionConfig.population: {self.config.population} is fewer than the {budgets} budgets"
            )
        smallest = self.costs(self.space.smallest())
        for named in self.budgets:
            meets(named.budget, smallest)  # raises BudgetError for a limit the costs cannot check

    def _load(self, state: Mapping[str, Any]) -> None:
        self.config = EvolutionConfig.from_dict(state["config"])
        self.budgets = _named_budgets([NamedBudget.from_dict(data) for data in state["budgets"]])
        self._check_setup()
        self._history = {r.arch: r for r in read_records(state["history"], self.space, told=True)}
        self._pending = {r.arch: r for r in read_records(state["pending"], self.space, told=False)}
        self.generation = int(state["generation"])
        self._next_index = int(state["next_index"])
        self.rng = generator_from_state(state["rng"])
        saved = {name: [Arch.from_dict(a) for a in archs] for name, archs in state["population"].items()}
        if saved != self.population():
            raise VitnasError("state: its population disagrees with its history under these costs (another profile?)")


def _named_budgets(budgets: Sequence[NamedBudget | Budget] | NamedBudget | Budget) -> tuple[NamedBudget, ...]:
    """The budgets as named budgets (one budget alone is fine), checked for distinct names."""
    if isinstance(budgets, NamedBudget) or not isinstance(budgets, Sequence):
        budgets = [budgets]
    named = tuple(b if isinstance(b, NamedBudget) else NamedBudget(b) for b in budgets)
    if not named:
        raise BudgetError("budgets: a search needs at least one budget (NamedBudget(Budget()) for none)")
    names = [b.name for b in named]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise BudgetError(f"budgets: two budgets named {repeated[0]!r}; give each a distinct name")
    return named


def split_evenly(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal shares, the larger ones first: 50 in 3 -> 17, 17, 16."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]

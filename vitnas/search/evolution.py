"""Evolution (AutoFormer / ViT-ResNAS) and random search, chosen by name.

Both start from the same generation 0: ``population`` archs drawn uniformly inside the
budgets. Evolution then breeds each generation from the top ``parents`` evaluated archs
of every budget, by mutation (`SearchSpace.mutate`) and crossover
(`SearchSpace.crossover`), keeping a child only when it meets that budget and is new
to the run. Random search draws a fresh uniform population every generation, which
makes it the baseline evolution must beat at equal evaluations. When a budget's parents
are so alike that crossover (or mutation) yields no new arch within ``max_tries``
draws (or ``max_tries // 10`` draws in a row), the shortfall is filled with further
mutants, then with uniform draws, so each generation still evaluates
``mutations + crossovers`` archs while the space allows.

The children quota of a generation (``mutations`` + ``crossovers``) is split among the
budgets as the initial population is, so a run's evaluation count does not grow with
the number of budgets; every budget still breeds from its own top-k of the shared history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from vitnas.errors import VitnasError
from vitnas.search.algorithm import SearchAlgorithm, split_evenly
from vitnas.search.budgets import CostFunction, NamedBudget
from vitnas.search.config import EvolutionConfig
from vitnas.space.arch import Arch

if TYPE_CHECKING:
    from vitnas.search.budget import Budget
    from vitnas.space.space import SearchSpace

__all__ = ["ALGORITHMS", "Evolution", "RandomSearch", "algorithm_from_state", "make_algorithm"]


class Evolution(SearchAlgorithm):
    """Evolutionary search: top-k parents per budget, mutation and crossover, duplicates rejected."""

    name = "evolution"

    def _propose(self) -> list[tuple[Arch, str]]:
        if self.generation == 0:
            return self._uniform_population(first=True)
        taken = self._taken()
        budgets = len(self.budgets)
        mutations = split_evenly(self.config.mutations, budgets)
        crossovers = split_evenly(self.config.crossovers, budgets)
        proposals: list[tuple[Arch, str]] = []
        for index, named in enumerate(self.budgets):
            parents = [record.arch for record in self.ranked(named)[: self.config.parents]]
            wanted = mutations[index] + crossovers[index]
            patience = max(1, self.config.max_tries // 10)
            children = self._draw(mutations[index], named, lambda: self._mutant(parents), taken, patience)
            if len(parents) >= 2:  # a crossover of an arch with itself is that arch
                children += self._draw(crossovers[index], named, lambda: self._cross(parents), taken, patience)
            if len(children) < wanted:  # close parents breed duplicates: mutate further, then draw afresh
                children += self._draw(wanted - len(children), named, lambda: self._mutant(parents), taken, patience)
                children += self._draw(wanted - len(children), named, lambda: self.space.sample(self.rng), taken)
            proposals += [(child, named.name) for child in children]
        return proposals

    def _mutant(self, parents: Sequence[Arch]) -> Arch:
        parent = parents[int(self.rng.integers(len(parents)))]
        return self.space.mutate(parent, self.config.mutation_prob, self.rng)

    def _cross(self, parents: Sequence[Arch]) -> Arch:
        first, second = self.rng.choice(len(parents), size=2, replace=False)
        return self.space.crossover(parents[int(first)], parents[int(second)], self.rng)


class RandomSearch(SearchAlgorithm):
    """Random search: every generation, ``population`` new archs drawn uniformly inside the budgets."""

    name = "random"

    def _propose(self) -> list[tuple[Arch, str]]:
        return self._uniform_population(first=self.generation == 0)


ALGORITHMS: dict[str, type[SearchAlgorithm]] = {Evolution.name: Evolution, RandomSearch.name: RandomSearch}
"""The algorithms `make_algorithm` knows, by name (``vitnas search --algorithm NAME``)."""


def make_algorithm(
    name: str,
    space: SearchSpace,
    budgets: Sequence[NamedBudget | Budget],
    costs: CostFunction,
    config: EvolutionConfig | None = None,
) -> SearchAlgorithm:
    """The search algorithm called `name`, ready to `ask`.

    Raises:
        VitnasError: an unknown name (listing the known ones), or what the algorithm raises.
    """
    return _algorithm_class(name)(space, budgets, costs, config)


def algorithm_from_state(state: Mapping[str, Any], space: SearchSpace, costs: CostFunction) -> SearchAlgorithm:
    """The algorithm a `state_dict` came from, continuing exactly where it was saved."""
    if not isinstance(state, Mapping):
        raise VitnasError(f"state: expected an object, got {type(state).__name__}")
    return _algorithm_class(state.get("algorithm")).from_state(state, space, costs)


def _algorithm_class(name: Any) -> type[SearchAlgorithm]:
    if name not in ALGORITHMS:
        raise VitnasError(f"algorithm: unknown {name!r} (known: {', '.join(ALGORITHMS)})")
    return ALGORITHMS[name]

"""`EvolutionConfig`: the knobs of a search, shared by evolution and random search.

The defaults are AutoFormer's and ViT-ResNAS's (population 50, top 10 parents, 25
mutations and 25 crossovers per generation, each gene redrawn with probability 0.1,
20 generations), so a run without options searches as the papers did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from vitnas.errors import VitnasError
from vitnas.util.fields import require_int, require_number

__all__ = ["EvolutionConfig"]


@dataclass(frozen=True)
class EvolutionConfig:
    """How a search proposes archs: population sizes, operators, bounds and the seed."""

    population: int = 50  # archs drawn in generation 0 (and in every random-search generation), split among the budgets
    parents: int = 10  # top-k evaluated archs per budget that the next generation is bred from
    mutation_prob: float = 0.1  # chance that a mutation redraws each gene (AutoFormer's 0.1)
    mutations: int = 25  # mutated children per generation after the first, split among the budgets
    crossovers: int = 25  # crossover children per generation after the first, split among the budgets
    generations: int = 20  # generations evaluated in all, generation 0 (the initial population) included
    # max_tries: breeding also stops after max_tries // 10 draws in a row without a new arch
    max_tries: int = 10_000  # draws per budget and operator in a generation before settling for fewer archs
    seed: int = 0  # seeds the one numpy Generator every random choice of the search comes from

    def __post_init__(self) -> None:
        for name, low in (
            ("population", 1),
            ("parents", 1),
            ("mutations", 0),
            ("crossovers", 0),
            ("generations", 1),
            ("max_tries", 1),
            ("seed", 0),
        ):
            require_int(f"EvolutionConfig.{name}", getattr(self, name), VitnasError, low=low)
        require_number("EvolutionConfig.mutation_prob", self.mutation_prob, VitnasError, above=0, at_most=1)
        if self.mutations + self.crossovers == 0:
            raise VitnasError("EvolutionConfig.mutations: mutations and crossovers are both 0; evolution needs one")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> EvolutionConfig:
        """Rebuilds a config from `to_dict` output; raises VitnasError naming an unknown or bad field."""
        if not isinstance(data, dict):
            raise VitnasError(f"EvolutionConfig: expected an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VitnasError(f"EvolutionConfig.{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
        return cls(**data)

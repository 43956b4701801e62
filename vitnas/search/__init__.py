"""Search: find the best sub-network of a trained supernet under hardware budgets.

The algorithms here are pure: they propose archs (`ask`), take accuracies (`tell`),
keep the history and save it all as JSON (`state_dict`). Evaluating candidates is the
backends' job, so the same algorithm runs in-process, on Ray workers or under Ray Tune;
nothing in this package's algorithm modules imports ray or torch.

`search_supernet` (the `vitnas search` verb), the fitness evaluator and the backends load
on first use: they need torch, and the Ray backend and Tune searcher need ray. Calling the
package, ``vitnas.search(...)``, as vitnas 0.1 did still works for one release, with a warning.
"""

from vitnas._lazy import export_lazily
from vitnas.search.algorithm import SearchAlgorithm
from vitnas.search.budgets import (
    CostFunction,
    CostModel,
    NamedBudget,
    budget_name,
    budgets_from_limits,
    meets,
    named_budget,
    violated_limits,
)
from vitnas.search.config import EvolutionConfig
from vitnas.search.evolution import ALGORITHMS, Evolution, RandomSearch, algorithm_from_state, make_algorithm
from vitnas.search.pareto import pareto_front
from vitnas.search.records import STATE_FORMAT, Record

_LAZY = {
    "Budget": "vitnas.search.budget",
    "search_supernet": "vitnas.search.driver",
    "SearchSettings": "vitnas.search.driver",
    "SearchResult": "vitnas.search.report",
    "Choice": "vitnas.search.report",
    "FitnessEvaluator": "vitnas.search.fitness",
    "FitnessSettings": "vitnas.search.fitness",
    "Backend": "vitnas.search.backend",
    "Evaluation": "vitnas.search.backend",
    "LocalBackend": "vitnas.search.backend",
    "RayBackend": "vitnas.search.ray_backend",
    "VitnasSearcher": "vitnas.search.tune",
}
export_lazily(__name__, _LAZY)

__all__ = [*_LAZY,
    "ALGORITHMS",
    "STATE_FORMAT",
    "CostFunction",
    "CostModel",
    "Evolution",
    "EvolutionConfig",
    "NamedBudget",
    "RandomSearch",
    "Record",
    "SearchAlgorithm",
    "algorithm_from_state",
    "budget_name",
    "budgets_from_limits",
    "make_algorithm",
    "meets",
    "named_budget",
    "pareto_front",
    "violated_limits",
]

"""The pure search algorithm: determinism, order independence, exact resume, budgets, Pareto front.

No model is trained or run: accuracy is a synthetic, deterministic function of the arch
(mostly its FLOPs, plus a fixed per-gene bonus), so a search has something to climb and
every run is exactly reproducible.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from vitnas.errors import BudgetError, VitnasError
from vitnas.search.budget import Budget
from vitnas.space.arch import Arch
from vitnas.space.cost import count_macs, count_params
from vitnas.search import (
    CostModel,
    Evolution,
    EvolutionConfig,
    NamedBudget,
    RandomSearch,
    algorithm_from_state,
    budgets_from_limits,
    make_algorithm,
    meets,
    named_budget,
    pareto_front,
)
from vitnas.space.space import load_space

SMALL = EvolutionConfig(population=12, parents=4, mutations=6, crossovers=6, generations=4, max_tries=300, seed=0)


@pytest.fixture(scope="module")
def space():
    return load_space("tiny32")


@pytest.fixture(scope="module")
def costs(space):
    return CostModel(space)


def _unit(text: str) -> float:
    """A fixed pseudo-random number in [0, 1) for a string (stable across runs, unlike hash())."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16**12


def _genes(arch: Arch) -> list[str]:
    genes = [f"img{arch.img_size}", f"patch{arch.patch_size}"]
    for s, stage in enumerate(arch.stages):
        genes.append(f"s{s}dim{stage.embed_dim}")
        for b, (heads, ratio, rate) in enumerate(zip(stage.num_heads, stage.mlp_ratio, stage.keep_rate)):
            genes += [f"s{s}b{b}h{heads}", f"s{s}b{b}m{ratio}", f"s{s}b{b}k{rate}"]
    return genes


def fitness(space, arch: Arch) -> float:
    """Synthetic accuracy: normalised MACs plus a per-gene bonus (an additive landscape evolution can climb)."""
    macs = count_macs(space, arch) / count_macs(space, space.largest())
    bonus = float(np.mean([_unit(gene) for gene in _genes(arch)]))
    return 0.5 * macs + 0.5 * bonus


def run(algorithm, space, shuffle_seed: int | None = None, stop_after: int | None = None) -> list[list[Arch]]:
    """Drives `algorithm` to the end (or `stop_after` generations); returns every batch asked.

    With `shuffle_seed`, each batch's results are told in a shuffled order and in several pieces.
    """
    batches = []
    while not algorithm.done and (stop_after is None or algorithm.generation < stop_after):
        batch = algorithm.ask()
        assert batch, "ask returned nothing while the search is not done"
        batches.append(batch)
        order = list(batch)
        if shuffle_seed is not None:
            np.random.default_rng(shuffle_seed + len(batches)).shuffle(order)
            for start in range(0, len(order), 5):
                algorithm.tell({arch: fitness(space, arch) for arch in order[start : start + 5]})
        else:
            algorithm.tell({arch: fitness(space, arch) for arch in order})
    return batches


def half_macs(space) -> NamedBudget:
    """A MACs budget halfway between the smallest and largest sub-network."""
    middle = (count_macs(space, space.smallest()) + count_macs(space, space.largest())) / 2
    return NamedBudget(Budget(max_macs=int(middle)))


def test_same_seed_same_run_and_another_seed_differs(space, costs):
    budgets = [half_macs(space)]
    first = Evolution(space, budgets, costs, SMALL)
    second = Evolution(space, budgets, costs, SMALL)
    other = Evolution(space, budgets, costs, replace(SMALL, seed=1))
    assert run(first, space) == run(second, space)
    assert first.best_per_budget() == second.best_per_budget()
    assert json.dumps(first.state_dict()) == json.dumps(second.state_dict())
    assert run(other, space)[0] != first.history[0].arch and other.history != first.history


def test_results_in_any_order_give_the_same_search(space, costs):
    budgets = budgets_from_limits(macs=[0.004, 0.008])
    serial = Evolution(space, budgets, costs, SMALL)
    shuffled = Evolution(space, budgets, costs, SMALL)
    assert run(serial, space) == run(shuffled, space, shuffle_seed=7)
    assert serial.best_per_budget() == shuffled.best_per_budget()
    assert serial.state_dict() == shuffled.state_dict()


@pytest.mark.parametrize("cls", [Evolution, RandomSearch])
def test_state_round_trips_through_json_and_resumes_exactly(space, costs, cls):
    budgets = budgets_from_limits(macs=[0.006], params=[0.1])
    whole = cls(space, budgets, costs, SMALL)
    whole_batches = run(whole, space)

    resumed = cls(space, budgets, costs, SMALL)
    batches = run(resumed, space, stop_after=2)
    state = json.loads(json.dumps(resumed.state_dict()))
    restored = algorithm_from_state(state, space, costs)
    assert type(restored) is cls and restored.state_dict() == state
    batches += run(restored, space)
    assert batches == whole_batches
    assert restored.best_per_budget() == whole.best_per_budget()
    assert restored.state_dict() == whole.state_dict()


def test_state_saved_mid_generation_keeps_pending_archs(space, costs):
    budgets = [half_macs(space)]
    whole = Evolution(space, budgets, costs, SMALL)
    run(whole, space)

    partial = Evolution(space, budgets, costs, SMALL)
    run(partial, space, stop_after=1)
    batch = partial.ask()
    told = batch[: len(batch) // 2]
    partial.tell({arch: fitness(space, arch) for arch in told})
    state = json.loads(json.dumps(partial.state_dict()))
    restored = Evolution.from_state(state, space, costs)
    assert restored.pending == batch[len(batch) // 2 :]
    assert restored.ask() == []  # nothing new while a generation is under evaluation
    restored.tell({arch: fitness(space, arch) for arch in restored.pending})
    run(restored, space)
    assert restored.state_dict() == whole.state_dict()


def test_restoring_under_other_costs_or_another_algorithm_is_refused(space, costs):
    algorithm = Evolution(space, [half_macs(space)], costs, SMALL)
    run(algorithm, space, stop_after=2)
    state = json.loads(json.dumps(algorithm.state_dict()))

    def doubled(arch):
        return {key: 2 * value for key, value in costs(arch).items()}

    with pytest.raises(VitnasError, match="population disagrees") as error:
        Evolution.from_state(state, space, doubled)
    assert "\n" not in str(error.value)
    with pytest.raises(VitnasError, match="saved by algorithm 'evolution'"):
        RandomSearch.from_state(state, space, costs)
    with pytest.raises(VitnasError, match="space 'tiny32'"):
        Evolution.from_state(state, load_space("resnas"), CostModel(load_space("resnas")))


@pytest.mark.parametrize("cls", [Evolution, RandomSearch])
def test_every_proposal_is_new_and_meets_a_budget(space, costs, cls):
    budgets = budgets_from_limits(macs=[0.004, 0.008], params=[0.1])
    algorithm = cls(space, budgets, costs, SMALL)
    proposed = [arch for batch in run(algorithm, space) for arch in batch]
    assert len(proposed) == len(set(proposed)) == algorithm.evaluations
    for record in algorithm.history:
        assert record.budget in {b.name for b in budgets}
        assert algorithm.budget(record.budget).budget.satisfied(space, record.arch)  # the budget it was drawn for
    for named in budgets:
        arch, accuracy = algorithm.best(named.name)
        assert named.budget.satisfied(space, arch)
        assert accuracy == max(r.accuracy for r in algorithm.history if named.budget.satisfied(space, r.arch))


def test_several_budgets_share_one_history_and_cost_each_arch_once(space):
    calls: list[Arch] = []
    model = CostModel(space)

    def counted(arch):
        calls.append(arch)
        return model(arch)

    budgets = budgets_from_limits(macs=[0.003, 0.009], params=[0.08])
    algorithm = Evolution(space, budgets, counted, SMALL)
    run(algorithm, space)
    assert len(calls) == len(set(calls))  # cached per arch
    best = algorithm.best_per_budget()
    assert list(best) == ["macs<=0.003G", "macs<=0.009G", "params<=0.08M"]
    evaluated = {record.arch for record in algorithm.history}
    assert all(arch in evaluated for arch, _ in best.values())
    assert {record.budget for record in algorithm.history} == set(best)  # each budget bred its own children
    assert best["macs<=0.003G"][1] <= best["macs<=0.009G"][1]  # a looser budget sees a superset


def test_a_budget_no_sub_network_meets_is_one_named_line(space, costs):
    smallest_macs = count_macs(space, space.smallest()) / 1e9
    algorithm = Evolution(space, [named_budget(macs=1e-6)], costs, SMALL)
    with pytest.raises(BudgetError) as error:
        algorithm.ask()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("budget macs<=1e-06G: no sub-network meets it")
    assert f"smallest reachable is {smallest_macs:.4g} G MACs (space tiny32)" in message

    lowest_params = min(count_params(space, replace(space.smallest(), patch_size=p)) for p in (4, 8)) / 1e6
    with pytest.raises(BudgetError, match=rf"budget params<=0.001M: .* is {lowest_params:.4g} M params"):
        Evolution(space, budgets_from_limits(macs=[0.01], params=[0.001]), costs, SMALL).ask()


class FakeProfile:
    """Stands in for a DeviceProfile: latency a fixed affine function of MACs."""

    batch, dtype, device = 8, "fp32", "fake"

    def __init__(self, space):
        self.space = space

    def predict(self, arch: Arch) -> float:
        return 0.2 + count_macs(self.space, arch) / 2e6


def test_latency_budgets_use_the_profile(space):
    profile = FakeProfile(space)
    costs = CostModel(space, profile)
    limit = profile.predict(space.largest()) / 2
    algorithm = Evolution(space, budgets_from_limits(latency_ms=[limit]), costs, SMALL)
    assert algorithm.budgets[0].name == f"latency_ms<={limit:.4g}" and algorithm.cost_key == "latency_ms"
    run(algorithm, space)
    arch, _ = algorithm.best(algorithm.budgets[0].name)
    assert profile.predict(arch) <= limit
    assert algorithm.pareto() and all("latency_ms" in row for row in algorithm.pareto())

    fastest = profile.predict(space.smallest())  # latency grows with MACs here, so the smallest is the fastest
    with pytest.raises(BudgetError, match=rf"smallest found is {fastest:.4g} ms predicted \(space tiny32\)$"):
        Evolution(space, budgets_from_limits(latency_ms=[0.25]), costs, SMALL).ask()
    with pytest.raises(BudgetError, match="latency_ms needs a device profile"):
        Evolution(space, budgets_from_limits(latency_ms=[4]), CostModel(space), SMALL)


def test_throughput_and_latency_limits_agree_with_budget_check(space):
    profile = FakeProfile(space)
    costs = CostModel(space, profile)
    speed = profile.batch * 1000 / profile.predict(space.largest()) * 1.5
    budget = Budget(min_throughput=speed, latency_ms=profile.predict(space.largest()) * 0.8)
    rng = np.random.default_rng(5)
    archs = [space.sample(rng) for _ in range(60)]
    verdicts = [meets(budget, costs(arch)) for arch in archs]
    assert verdicts == [budget.satisfied(space, arch, profile) for arch in archs]
    assert any(verdicts) and not all(verdicts)
    algorithm = Evolution(space, budget, costs, SMALL)  # one budget alone needs no list
    assert algorithm.budgets[0].name.startswith("latency_ms<=") and ",throughput>=" in algorithm.budgets[0].name
    run(algorithm, space, stop_after=2)
    assert budget.satisfied(space, algorithm.best(algorithm.budgets[0].name)[0], profile)


def test_meets_agrees_with_budget_check(space, costs):
    rng = np.random.default_rng(3)
    budget = Budget(max_macs=6_000_000, max_params=90_000)
    archs = [space.sample(rng) for _ in range(60)] + [space.smallest(), space.largest()]
    verdicts = [meets(budget, costs(arch)) for arch in archs]
    assert verdicts == [budget.satisfied(space, arch) for arch in archs]
    assert any(verdicts) and not all(verdicts)
    at_limit = Budget(max_macs=count_macs(space, space.smallest()))
    assert meets(at_limit, costs(space.smallest()))  # a limit holds when equal, as in Budget.check


def test_evolution_beats_random_search_at_equal_evaluations(space, costs):
    budgets = [half_macs(space)]
    config = EvolutionConfig(population=16, parents=4, mutations=8, crossovers=8, generations=6, max_tries=300)
    margins = []
    for seed in range(3):
        evolution = Evolution(space, budgets, costs, replace(config, seed=seed))
        random = RandomSearch(space, budgets, costs, replace(config, seed=seed))
        run(evolution, space)
        run(random, space)
        assert evolution.evaluations == random.evaluations == 16 * 6
        margins.append(evolution.best(budgets[0].name)[1] - random.best(budgets[0].name)[1])
    assert all(margin > 0 for margin in margins), margins


def test_pareto_front_of_known_points():
    points = [
        {"id": "a", "accuracy": 0.50, "macs": 1.0},
        {"id": "b", "accuracy": 0.70, "macs": 2.0},
        {"id": "c", "accuracy": 0.60, "macs": 2.5},  # dominated by b
        {"id": "d", "accuracy": 0.80, "macs": 3.0},
        {"id": "e", "accuracy": 0.80, "macs": 3.5},  # as accurate as d, costlier
        {"id": "f", "accuracy": 0.40, "macs": 1.0},  # as cheap as a, less accurate
        {"id": "g", "accuracy": 0.70, "macs": 2.0},  # equal to b: neither dominates
        {"id": "h", "accuracy": 0.90, "macs": 5.0},
    ]
    assert [p["id"] for p in pareto_front(points, "macs")] == ["a", "b", "g", "d", "h"]
    assert [p["id"] for p in pareto_front(points[::-1], "macs")] == ["a", "g", "b", "d", "h"]
    assert pareto_front([], "macs") == []


@pytest.mark.parametrize(
    "field, value",
    [
        ("population", 0),
        ("parents", 2.5),
        ("mutation_prob", 0.0),
        ("mutation_prob", 1.5),
        ("mutations", -1),
        ("generations", True),
        ("max_tries", 0),
        ("seed", -3),
    ],
)
def test_bad_config_is_one_line_naming_the_field(field, value):
    with pytest.raises(VitnasError, match=rf"^EvolutionConfig\.{field}: ") as error:
        EvolutionConfig(**{field: value})
    assert "\n" not in str(error.value)


def test_bad_setup_is_one_line(space, costs):
    with pytest.raises(VitnasError, match=r"^EvolutionConfig\.mutations: .*both 0"):
        EvolutionConfig(mutations=0, crossovers=0)
    with pytest.raises(VitnasError, match=r"^algorithm: unknown 'annealing' \(known: evolution, random\)$"):
        make_algorithm("annealing", space, [half_macs(space)], costs)
    with pytest.raises(BudgetError, match="two budgets named 'macs<=0.005G'"):
        Evolution(space, budgets_from_limits(macs=[0.005, 0.005]), costs)
    with pytest.raises(VitnasError, match="population: 2 is fewer than the 3 budgets"):
        Evolution(space, budgets_from_limits(macs=[0.004, 0.005, 0.006]), costs, replace(SMALL, population=2))
    with pytest.raises(BudgetError, match="^macs: expected a positive number"):
        named_budget(macs=-1)


def test_tell_accepts_only_pending_archs(space, costs):
    algorithm = make_algorithm("random", space, [half_macs(space)], costs, SMALL)
    batch = algorithm.ask()
    outsider = next(arch for arch in [space.largest(), space.smallest()] if arch not in batch)
    with pytest.raises(VitnasError, match="not proposed"):
        algorithm.tell({batch[0]: 0.5, outsider: 0.1})
    assert algorithm.evaluations == 0  # all or nothing
    with pytest.raises(VitnasError, match="finite"):
        algorithm.tell({batch[0]: float("nan")})
    algorithm.tell({batch[0]: 0.5})
    algorithm.tell({batch[0]: 0.5})  # delivered twice: counted once
    assert algorithm.evaluations == 1
    with pytest.raises(VitnasError, match="already told"):
        algorithm.tell({batch[0]: 0.6})


def test_budget_names_derive_from_limits():
    assert [b.name for b in budgets_from_limits(latency_ms=[4, 8.5], macs=1.3, params=10)] == [
        "latency_ms<=4",
        "latency_ms<=8.5",
        "macs<=1.3G",
        "params<=10M",
    ]
    combined = named_budget(macs=1.3, params=10)
    assert combined.name == "macs<=1.3G,params<=10M" and combined.budget.max_macs == 1_300_000_000
    assert NamedBudget(Budget()).name == "unconstrained"
    assert named_budget(latency_ms=4, name="edge").name == "edge"
    assert NamedBudget.from_dict(json.loads(json.dumps(combined.to_dict()))) == combined

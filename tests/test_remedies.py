"""The ranking remedies as recipe options: ElasticViT's complexity window and NASViT's gradient-conflict projection."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from vitnas.space.cost import count_macs
from vitnas.train.gradient_projection import ConflictProjection
from vitnas.train.supernet import train_supernet
from vitnas.train.recipe import RecipeError, SamplerConfig, load_recipe
from vitnas.train.samplers import ComplexityWindow, build_sampler, step_rng

TINY = {
    "space": "tiny32",
    "data": {"name": "synthetic", "synthetic_size": 32},
    "epochs": 1,
    "batch_size": 16,
    "optimizer": {"lr": 1e-3, "lr_per_512": None},
    "schedule": {"warmup_epochs": 0},
    "sampler": {"name": "sandwich", "num_random": 2},
    "log_every": 1,
}


# -- complexity-aware sampling ------------------------------------------------------------------------

def test_the_window_sweeps_the_whole_range_in_bounded_steps(spaces):
    space = spaces["tiny32"]
    window = ComplexityWindow(space, 0.25, period=20)
    low, high = math.log(count_macs(space, space.smallest())), math.log(count_macs(space, space.largest()))
    bounds = [window.bounds(step) for step in range(40)]
    centres = [(a + b) / 2 for a, b in bounds]
    assert bounds[0][0] == pytest.approx(low) and bounds[10][1] == pytest.approx(high)  # both ends are reached
    assert bounds[20] == bounds[0]  # periodic: a function of the step alone
    assert max(abs(b - a) for a, b in zip(centres, centres[1:])) <= 2 * (high - low) / 20 + 1e-9
    assert all(b - a <= 0.25 * (high - low) + 1e-9 for a, b in bounds)


def test_random_sub_networks_come_from_the_steps_window(spaces):
    space = spaces["tiny32"]
    config = SamplerConfig(name="sandwich", num_random=1, complexity_window=0.3, complexity_period=10)
    sampler = build_sampler(space, config, distill=True)
    inside = 0
    for step in range(30):
        plan = sampler.plan(step_rng(0, step), 8, step)
        assert plan[0].pieces[0].arch == space.largest() and plan[1].pieces[0].arch == space.smallest()
        low, high = sampler.window.bounds(step)
        inside += low - 1e-9 <= math.log(count_macs(space, plan[2].pieces[0].arch)) <= high + 1e-9
    assert inside >= 27  # the rare miss is the nearest of 32 draws
    again = build_sampler(space, config, distill=True).plan(step_rng(0, 7), 8, 7)
    assert again == build_sampler(space, config, distill=True).plan(step_rng(0, 7), 8, 7)  # resume draws the same


@pytest.mark.parametrize("overrides, message", [
    (["sampler.complexity_window=0"], r"sampler.complexity_window: expected a number in \(0, 1\], or null, got 0"),
    (["sampler.name=multi", "sampler.complexity_window=0.2"], "applies to the single and sandwich samplers"),
    (["sampler.complexity_period=1"], r"sampler.complexity_period: expected an integer >= 2 \(steps\), got 1"),
    (["sampler.name=single", "gradient_projection=true"], "gradient_projection: needs the largest sub-network"),
])
def test_remedy_settings_are_checked_in_one_line(overrides, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(TINY, overrides)


# -- gradient-conflict projection -----------------------------------------------------------------------

def test_a_conflicting_pass_loses_its_conflicting_component_only():
    model = nn.Linear(2, 1, bias=False)
    unused = nn.Parameter(torch.ones(3))  # no pass touches it: it must keep no gradient
    projection = ConflictProjection([*model.parameters(), unused])
    projection.begin_step()
    reference, agreeing, conflicting = (torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]),
                                        torch.tensor([[-1.0, 2.0]]))
    for gradient in (reference, agreeing, conflicting):
        (model.weight * gradient).sum().backward()  # d/dw = gradient
        projection.end_pass()
    # reference + agreeing as they are + conflicting without its component along the reference: (0, 2)
    assert torch.equal(model.weight.grad, torch.tensor([[2.0, 3.0]]))
    assert unused.grad is None and projection.take_counts() == (1, 2) and projection.take_counts() == (0, 0)


def test_training_with_both_remedies_takes_steps_and_logs_the_conflicts(tmp_path):
    overrides = ["gradient_projection=true", "sampler.complexity_window=0.3", "sampler.complexity_period=4"]
    metrics = train_supernet(TINY, tmp_path / "run", overrides=overrides)
    assert metrics["epoch"] == 1
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    shares = [row["gradient_conflicts"] for row in logged if "gradient_conflicts" in row]
    assert len(shares) == 2 and all(0.0 <= share <= 1.0 for share in shares)


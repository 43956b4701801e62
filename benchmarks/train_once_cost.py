"""Does training once pay? The supernet's training step against its largest sub-network's alone, side by side.

Issue 21: one supernet training stands in for training every sub-network; it is worth it
if it costs at most twice training the largest sub-network alone for the same epochs.
Both rows time the trainer's own optimizer step (`vitnas.train.step.train_step`) on the
same batches of the recipe's training data, alternating one supernet step and one
stand-alone step so that load and clock drift hit both alike:

- supernet: the recipe's sampler plans, with distillation on (as after its warm-up);
- stand-alone: the largest sub-network as a plain `ViT` with the recipe's stand-alone
  form (`vitnas.rank.runs.standalone_recipe`: the same optimizer, no distillation).

The epoch rows add what both pay alike: the loader's time per batch (read once, timed
on its own) and one validation pass per epoch (the supernet validates its largest and
smallest sub-networks, the stand-alone run its one network).

    python benchmarks/train_once_cost.py --recipe fmnist28_fmnist --steps 40 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import vitnas
from vitnas.nn.vit import ViT
from vitnas.nn.vit_config import vit_config
from vitnas.rank.runs import standalone_recipe
from vitnas.train.context import build_context
from vitnas.train.metrics import validate
from vitnas.train.recipe import load_recipe
from vitnas.train.samplers import step_rng
from vitnas.train.standalone import StandaloneTrainee, init_weights
from vitnas.train.step import train_step
from vitnas.train.supernet import build_supernet_context


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)  # a benchmark's own choice; library code never sets it
    recipe = load_recipe(args.recipe, args.overrides)
    supernet = build_supernet_context(recipe, "cpu")
    space = supernet.trainee.space
    largest = space.largest()
    alone = build_context(standalone_recipe(recipe, recipe.epochs), StandaloneTrainee(init_weights(ViT(
        vit_config(space, largest)))), 0, 1, torch.device("cpu"))
    batches, loader_seconds = _read_batches(supernet.loader, args.steps + 2)
    supernet.trainee.begin_epoch(recipe.distill_warmup_epochs, supernet.optimizer)  # distillation on
    first = recipe.distill_warmup_epochs * len(supernet.loader)
    super_times, alone_times = [], []
    for index, (images, labels) in enumerate(batches):
        step = first + index
        plan = supernet.trainee.plan(step_rng(recipe.seed, step, None), images.shape[0], step)
        super_times.append(_timed(lambda: train_step(supernet, images, labels, plan)))
        plan = alone.trainee.plan(step_rng(recipe.seed, step, None), images.shape[0], step)
        alone_times.append(_timed(lambda: train_step(alone, images, labels, plan)))
    super_step, alone_step = (statistics.median(times[2:]) for times in (super_times, alone_times))
    super_val, alone_val = _timed(lambda: validate(supernet, 0, 0)), _timed(lambda: validate(alone, 0, 0))
    steps = len(supernet.loader)
    super_epoch = steps * (loader_seconds + super_step) + super_val
    alone_epoch = steps * (loader_seconds + alone_step) + alone_val
    _report(args, recipe, space, largest, loader_seconds, (super_step, alone_step), (super_val, alone_val),
            (super_epoch, alone_epoch), steps)


def _read_batches(loader, count: int) -> tuple[list, float]:
    """The first `count` batches of `loader`, and its median seconds per batch (augmentation included)."""
    batches, durations = [], []
    iterator = iter(loader)
    for _ in range(count):
        started = time.perf_counter()
        batches.append(next(iterator))
        durations.append(time.perf_counter() - started)
    return batches, statistics.median(durations[1:])


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _report(args, recipe, space, largest, loader_seconds, step, validation, epoch, steps) -> None:
    print(f"recipe {args.recipe} ({recipe.sampler.name} sampler, distillation {recipe.distill}), space {space.name}; "
          f"batch {recipe.batch_size}, {steps} steps per epoch; {args.steps} timed steps each, alternating; "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}")
    macs = vitnas.count_macs(space, largest) / 1e6
    print(f"largest sub-network: {macs:.1f} M MACs; loader {loader_seconds * 1e3:.0f} ms per batch (both pay it)")
    print(f"{'':<24}{'supernet':>10}{'largest alone':>15}{'ratio':>8}")
    print(f"{'train step (ms)':<24}{step[0] * 1e3:>10.0f}{step[1] * 1e3:>15.0f}{step[0] / step[1]:>8.2f}")
    print(f"{'validation (s)':<24}{validation[0]:>10.1f}{validation[1]:>15.1f}{validation[0] / validation[1]:>8.2f}")
    print(f"{'epoch, estimated (min)':<24}{epoch[0] / 60:>10.1f}{epoch[1] / 60:>15.1f}{epoch[0] / epoch[1]:>8.2f}")
    print(f"{recipe.epochs} epochs: supernet {epoch[0] * recipe.epochs / 60:.0f} min, largest alone "
          f"{epoch[1] * recipe.epochs / 60:.0f} min: training once costs {epoch[0] / epoch[1]:.2f}x the largest alone")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="fmnist28_fmnist", help="supernet recipe: shipped name or file")
    parser.add_argument("--steps", type=int, default=40, help="timed steps of each (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, key=value")
    return parser.parse_args()


if __name__ == "__main__":
    main()

"""Training a supernet from a recipe: `vitnas train RECIPE --out DIR [--resume] [key=value ...]`.

Everything here is what makes the run a supernet's: the trainee that lets the recipe's
sampler choose the sub-networks of each step (several per step, see
`vitnas.train.samplers`), and building the supernet the recipe's space describes. The
epochs, steps, checkpoints and metrics are the generic loop's (`vitnas.train.loop`),
which `vitnas.train.standalone` shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from vitnas.data import DataConfig
from vitnas.nn.reducers import KeptFraction
from vitnas.space.arch import Arch
from vitnas.space.space import load_space
from vitnas.supernet.masked import masked_forward, mixed_head_widths, unmasked_reducers
from vitnas.supernet.rewire import rewire
from vitnas.supernet.supernet import SuperViT
from vitnas.train.checkpoint import CheckpointError
from vitnas.train.context import Context, build_context
from vitnas.train.distributed import distributed_setup
from vitnas.train.loop import fit
from vitnas.train.recipe import Recipe, RecipeError, load_recipe
from vitnas.train.rundir import TRAINING_FILES, run_recipe, start_over
from vitnas.train.samplers import Pass, Piece, build_sampler
from vitnas.train.trainee import Trainee
from vitnas.util.atomic import prepare_directory
from vitnas.util.seeding import seed_run

__all__ = ["SupernetTrainee", "build_supernet_context", "train_supernet"]


def train_supernet(recipe: str | Path | dict, out: str | Path, resume: bool | None = None,
                   overrides: Sequence[str] = (), device: str | None = None, fresh: bool = False) -> dict:
    """Trains a supernet; returns the final metrics (validation top-1 of largest and smallest).

    Args:
        recipe: recipe file, shipped recipe name or dict.
        out: run directory (checkpoints, metrics.jsonl).
        resume: None (default): continue the run in `out` if it holds one, else start
            (`vitnas.train.rundir`: the stored recipe, which `recipe` must equal; `overrides`
            apply to both, e.g. ``epochs=400`` extends it). True: `out` must hold a run;
            False: it must not.
        overrides: ``key=value`` recipe overrides.
        device: ``cpu`` or ``cuda[:N]`` for a single-process run (default: CUDA when present;
            under ``torchrun`` each rank takes its own GPU).
        fresh: delete the run's files in `out` first (once the recipe has been checked) and start over.
    """
    out = Path(out)
    if fresh:
        load_recipe(recipe, overrides)  # a malformed recipe must not cost the run it would replace
        start_over(out, TRAINING_FILES)
    config, resuming = run_recipe(recipe, out, resume, overrides)
    prepare_directory(out, "--out", CheckpointError)  # a bad --out fails now, not after the first epoch
    return fit(build_supernet_context(config, device), out, resuming)


def build_supernet_context(config: Recipe, device: str | None = None) -> Context:
    """The run of a supernet: this process's rank and device, seeded RNGs, the recipe's supernet on it.

    A masked multi-arch sampler is refused here, before any data loads, where the space has what it cannot run.
    """
    rank, world, device = distributed_setup(device)
    seed_run(config.seed)
    space = load_space(config.space)
    if config.sampler.name == "multi" and config.sampler.variant == "masked" and (
            why := mixed_head_widths(space) or unmasked_reducers(space)):
        raise RecipeError(f"sampler.variant: masked: {why}")
    model = SuperViT(space, drop_path_rate=config.drop_path).to(device)
    return build_context(config, SupernetTrainee(model, config), rank, world, device)


class SupernetTrainee(Trainee):
    """A supernet: each step trains the sub-networks its recipe's sampler draws."""

    def __init__(self, model: SuperViT, recipe: Recipe) -> None:
        self.model, self.recipe, self.space = model, recipe, model.space
        self.num_classes, self.img_size, self.in_chans = model.num_classes, model.space.img_size, model.space.in_chans
        self.sampler = build_sampler(model.space, recipe.sampler, recipe.distill and recipe.distill_warmup_epochs == 0)

    def begin_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        recipe = self.recipe
        distill = recipe.distill and epoch >= recipe.distill_warmup_epochs
        self.sampler = build_sampler(self.space, recipe.sampler, distill)
        self.sampler.set_epoch(epoch)
        if recipe.sampler.rewire and epoch < recipe.sampler.width_warmup_epochs:
            rewire(self.model, optimizer)  # identical weights on every rank give identical permutations

    def plan(self, rng: np.random.Generator, batch: int, step: int = 0) -> list[Pass]:
        return self.sampler.plan(rng, batch, step)

    def forward(self, images: Tensor, pieces: list[Piece], masked: bool) -> list[Tensor]:
        """Logits of each piece; consecutive pieces (a multi pass) go through one `forward_multi` call,
        or one `masked_forward` call for the masked variant."""
        if len(pieces) == 1:
            return [self.model(images[pieces[0].start:pieces[0].stop], pieces[0].arch)]
        start, stop = pieces[0].start, pieces[-1].stop
        sizes = [p.stop - p.start for p in pieces]
        archs = [p.arch for p in pieces]
        if masked:
            logits = masked_forward(self.model, images[start:stop], archs, sizes)
        else:
            logits = self.model.forward_multi(images[start:stop], archs, sizes)
        return list(logits.split(sizes))

    def forward_kept(
        self, images: Tensor, pieces: list[Piece], masked: bool
    ) -> tuple[list[Tensor], list[tuple[KeptFraction, ...]]]:
        """Sliced passes run piece by piece (as `forward_multi` does), each returning its records.

        A masked pass records nothing: it refuses the reducers that record (`unmasked_reducers`).
        """
        if masked and len(pieces) > 1:
            return super().forward_kept(images, pieces, masked)
        outputs = [self.model.forward_kept(images[p.start:p.stop], p.arch) for p in pieces]
        return [logits for logits, _ in outputs], [kept for _, kept in outputs]

    def teach(self, images: Tensor, arch: Arch | None) -> Tensor:
        return self.model(images, arch)

    def validation(self) -> list[tuple[str, Arch | None]]:
        return [("val_top1_largest", self.space.largest()), ("val_top1_smallest", self.space.smallest())]

    def class_error(self, data: DataConfig, classes: int) -> str:
        return (f"data: {data.name} has {classes} classes but space {self.space.name} has {self.space.num_classes} "
                "(set num_classes in the space file)")

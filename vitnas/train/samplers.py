"""Samplers: which sub-networks train on which rows of each batch.

A sampler turns a step's random generator into a plan: a list of passes, each one
forward-backward over one autograd graph, made of pieces (an arch and a row range of
the batch, with a role). Gradients of all passes accumulate into one optimizer step.

The generator is seeded from (run seed, global step), so every DDP rank draws the
same sub-networks and a resumed run draws what the uninterrupted one would have,
without any sampler state to save. For the same reason the complexity window
(`ComplexityWindow`) is a function of the step, not a walk that would need its state.

Roles:
- ``supervised``: hard-label loss; a piece marked ``teacher`` also publishes its detached
  soft labels for its rows;
- ``distilled``: KL divergence to the latest published soft labels of its rows;
- ``teacher``: a no-grad forward that only publishes soft labels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import math
import typing

import numpy as np

from vitnas.space.arch import Arch
from vitnas.space.cost import count_macs
from vitnas.space.space import SearchSpace
from vitnas.train.recipe import SamplerConfig

__all__ = ["ComplexityWindow", "Piece", "Pass", "Sampler", "build_sampler", "step_rng"]


@dataclass(frozen=True)
class Piece:
    arch: Arch | None  # None: a standalone model's one network (`vitnas.train.standalone`)
    start: int  # first batch row
    stop: int  # one past the last batch row
    role: str  # supervised | distilled | teacher
    teacher: bool = False  # supervised pieces only: publish soft labels for the following pieces


@dataclass(frozen=True)
class Pass:
    pieces: tuple[Piece, ...]
    masked: bool = False  # run the non-teacher pieces as one full-width masked forward


def step_rng(seed: int, step: int, rank: int | None = None) -> np.random.Generator:
    """The generator of one training step: identical on every rank (or per rank) and after resume."""
    return np.random.default_rng([seed, step] if rank is None else [seed, step, rank])


class Sampler(ABC):
    """Base class: `plan(rng, batch)` returns the passes of one step.

    With ``width_warmup_epochs`` W, width and depth genes (embed dims, heads, MLP ratios,
    depths) draw at epoch e only from their top ``1 + e * (K - 1) / W`` of K choices, so
    training opens up from the widest networks (ViT-ResNAS); `set_epoch` moves it on.
    """

    def __init__(self, space: SearchSpace, config: SamplerConfig, distill: bool) -> None:
        self.space = space
        self.config = config
        self.distill = distill
        self.epoch = 0
        self.step = 0
        self.window = (ComplexityWindow(space, config.complexity_window, config.complexity_period)
                       if config.complexity_window is not None else None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def random_arch(self, rng: np.random.Generator) -> Arch:
        """A random arch within the width choices open at this epoch (and the step's MACs window, if any)."""
        if self.window is not None:
            return self.window.draw(lambda: self._within_warmup(self.space.sample(rng), rng), self.step)
        return self._within_warmup(self.space.sample(rng), rng)

    def smallest_arch(self) -> Arch:
        """The smallest arch within the width choices open at this epoch."""
        return self._within_warmup(self.space.smallest(), None)

    def _within_warmup(self, arch: Arch, rng: np.random.Generator | None) -> Arch:
        warmup = self.config.width_warmup_epochs
        if warmup == 0 or self.epoch >= warmup:
            return arch
        genes = self.space.to_sample(arch, rng)
        for label, categorical in self.space.mutables.items():
            if not label.endswith(_WIDTH_GENES):
                continue
            values = sorted(categorical.values)
            allowed = values[len(values) - min(1 + self.epoch * (len(values) - 1) // warmup, len(values)):]
            if genes[label] not in allowed:
                genes[label] = allowed[rng.integers(len(allowed))] if rng is not None else allowed[0]
        return self.space.arch_from_sample(genes)

    def plan(self, rng: np.random.Generator, batch: int, step: int = 0) -> list[Pass]:
        """The passes of training step `step` over a batch of `batch` rows."""
        self.step = step
        return self._plan(rng, batch)

    @abstractmethod
    def _plan(self, rng: np.random.Generator, batch: int) -> list[Pass]:
        """The passes of the current step."""

    def _student(self) -> str:
        return "distilled" if self.distill else "supervised"


class SingleSampler(Sampler):
    """One uniformly random sub-network per step (AutoFormer, SPOS)."""

    def _plan(self, rng: np.random.Generator, batch: int) -> list[Pass]:
        return [Pass((Piece(self.random_arch(rng), 0, batch, "supervised"),))]


class SandwichSampler(Sampler):
    """Largest, smallest and `num_random` random sub-networks on the whole batch, one pass each.

    The largest learns from the labels and teaches the others in place (BigNAS, OFA).
    """

    def _plan(self, rng: np.random.Generator, batch: int) -> list[Pass]:
        passes = [Pass((Piece(self.space.largest(), 0, batch, "supervised", teacher=self.distill),))]
        students = [self.smallest_arch()] + [self.random_arch(rng) for _ in range(self.config.num_random)]
        passes += [Pass((Piece(arch, 0, batch, self._student()),)) for arch in students]
        return passes


class MultiSampler(Sampler):
    """K sub-networks on K sub-batches in one forward-backward pass (the idea of ViT-ResNAS).

    With ``include_largest`` sub-batch 0 trains the largest sub-network; with distillation
    the others learn from its soft labels, computed by a no-grad forward of the largest
    on their rows. With ``shared_token_shape`` the random sub-networks of a step share
    patch size, resolution, keep rates and reducers (one sequence length and one reducer per
    stage, as the masked variant needs).
    """

    def _plan(self, rng: np.random.Generator, batch: int) -> list[Pass]:
        count = min(self.config.subnets, batch)
        bounds = np.linspace(0, batch, count + 1).round().astype(int)
        archs = [self.random_arch(rng) for _ in range(count)]
        if self.config.shared_token_shape:
            donor = self.space.to_sample(archs[0], rng)
            archs = archs[:1] + [_with_token_shape(self.space, arch, donor, rng) for arch in archs[1:]]
        largest = self.config.include_largest
        if largest:
            archs[0] = self.space.largest()
        distilled = largest and self.distill and count > 1
        pieces = [Piece(archs[0], int(bounds[1]), batch, "teacher")] if distilled else []
        for index, arch in enumerate(archs):
            role = "distilled" if distilled and index > 0 else "supervised"
            pieces.append(Piece(arch, int(bounds[index]), int(bounds[index + 1]), role))
        return [Pass(tuple(pieces), masked=self.config.variant == "masked")]


class SuperViTSampler(Sampler):
    """SuperViT's four configurations per step, at the largest width and depth.

    (finest tokens, keep 1) learns from labels and teaches (finest tokens, keep r);
    (a random coarser token grid, keep 1) learns from labels and teaches (that grid,
    keep r'). Width and depth stay the largest, as in SuperViT's fixed-width backbone.
    """

    def _plan(self, rng: np.random.Generator, batch: int) -> list[Pass]:
        full = self.space.largest()
        patch = self.space.spec.patch
        shapes = [(r, p) for r in patch.img_sizes for p in patch.sizes if (r, p) != (full.img_size, full.patch_size)]
        coarse_shape = shapes[rng.integers(len(shapes))] if shapes else (full.img_size, full.patch_size)
        coarse = self.space.arch(img_size=coarse_shape[0], patch_size=coarse_shape[1])
        passes = []
        for teacher in (full, coarse):
            passes.append(Pass((Piece(teacher, 0, batch, "supervised", teacher=self.distill),)))
            passes.append(Pass((Piece(_reduced(self.space, teacher, rng), 0, batch, self._student()),)))
        return passes


_WIDTH_GENES = (".depth", ".embed_dim", ".num_heads", ".mlp_ratio")


class ComplexityWindow:
    """ElasticViT's complexity-aware sampling, in a form that needs no state.

    Sub-networks of very different size pull shared weights different ways (gradient
    conflict); ElasticViT bounds the MACs gap between the sub-networks of consecutive
    steps while still covering every size. Here the random sub-networks of step t come
    from a window of `width` (a fraction of the log-MACs range of the space) whose centre
    sweeps from the smallest arch to the largest and back every `period` steps, so the
    centre moves by ``2 / period`` of the range per step. A function of the step, so a
    resumed run and every DDP rank draw what an uninterrupted single run would.
    """

    TRIES = 32  # uniform draws before settling for the one nearest the window

    def __init__(self, space: SearchSpace, width: float, period: int) -> None:
        self.space, self.width, self.period = space, width, period
        self.low = math.log(count_macs(space, space.smallest()))
        self.high = math.log(count_macs(space, space.largest()))

    def bounds(self, step: int) -> tuple[float, float]:
        """The window of `step` in log-MACs."""
        phase = (step % self.period) / self.period
        position = 2 * phase if phase < 0.5 else 2 - 2 * phase  # 0 -> 1 -> 0 over one period
        span = self.high - self.low
        centre = self.low + position * span
        half = self.width * span / 2
        return max(self.low, centre - half), min(self.high, centre + half)

    def draw(self, sample: typing.Callable[[], Arch], step: int) -> Arch:
        """The first of up to `TRIES` draws of `sample` inside the window; else the draw nearest to it."""
        low, high = self.bounds(step)
        nearest, distance = None, math.inf
        for _ in range(self.TRIES):
            arch = sample()
            macs = math.log(count_macs(self.space, arch))
            gap = max(low - macs, macs - high, 0.0)
            if gap == 0.0:
                return arch
            if gap < distance:
                nearest, distance = arch, gap
        return nearest


def _reduced(space: SearchSpace, arch: Arch, rng: np.random.Generator) -> Arch:
    """`arch` with one keep rate below 1, drawn once, at all its reduction blocks (as is, if none)."""
    genes = space.to_sample(arch, rng)
    rate_labels = [label for label in genes if label.endswith(".keep_rate")]
    rates = sorted({r for label in rate_labels for r in space.mutables[label].values if r < 1.0})
    if not rates:
        return arch
    rate = rates[rng.integers(len(rates))]
    for label in rate_labels:
        genes[label] = rate
    return space.arch_from_sample(genes)


def _with_token_shape(space: SearchSpace, arch: Arch, donor: dict, rng: np.random.Generator) -> Arch:
    """`arch` with the resolution, patch size, keep-rate and reducer genes of the `donor` sample.

    The reducer goes with the keep rates: a masked pass shares one reducer per stage.
    """
    genes = space.to_sample(arch, rng)
    for label in genes:
        if label in ("img_size", "patch_size") or label.endswith((".keep_rate", ".reducer")):
            genes[label] = donor[label]
    return space.arch_from_sample(genes)


SAMPLER_CLASSES = {"single": SingleSampler, "sandwich": SandwichSampler, "multi": MultiSampler,
                   "supervit": SuperViTSampler}


def build_sampler(space: SearchSpace, config: SamplerConfig, distill: bool) -> Sampler:
    return SAMPLER_CLASSES[config.name](space, config, distill)

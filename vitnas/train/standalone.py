"""Training one standalone `vitnas.nn.vit.ViT` with a recipe: retraining, fine-tuning, rank checks.

The supernet's loop (`vitnas.train.loop.fit`) trains it: the recipe's optimizer, schedule,
Mixup / CutMix, label smoothing, precision, EMA, DDP under ``torchrun``, atomic
checkpoints with an exact resume, and ``metrics.jsonl``. The network is fixed, so each
step is one pass of one network over the whole batch, and the recipe's ``space`` and
``sampler`` do not apply.

With a teacher (any module mapping the same images to logits over the same classes,
e.g. the supernet's largest sub-network), the network learns from the teacher's soft
labels by the KL divergence of in-place distillation (`vitnas.train.step`), in place of the
hard labels. The recipe's ``distill`` must be on; its ``distill_warmup_epochs`` (which
waits for a supernet's own teacher to learn) does not apply to a teacher trained before.

A checkpoint of a standalone run records the model's `ViTConfig` (``model.json``) in
place of a space, and a resume refuses a checkpoint of another model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn

from vitnas.data import DataConfig
from vitnas.nn.reducers import KeptFraction
from vitnas.nn.vit import ViT, ViTConfig
from vitnas.space.arch import Arch
from vitnas.train.checkpoint import MODEL_FILE, CheckpointError
from vitnas.train.context import build_context
from vitnas.train.distributed import distributed_setup
from vitnas.train.loop import fit
from vitnas.train.recipe import Recipe, RecipeError
from vitnas.train.rundir import run_recipe
from vitnas.train.samplers import Pass, Piece
from vitnas.train.trainee import Trainee
from vitnas.util.atomic import prepare_directory
from vitnas.util.seeding import seed_run

__all__ = ["StandaloneTrainee", "init_weights", "train_standalone"]

log = logging.getLogger(__name__)


def train_standalone(
    model: ViT | ViTConfig,
    recipe: str | Path | Mapping[str, Any] | Recipe | None,
    out: str | Path,
    *,
    resume: bool | None = None,
    overrides: Sequence[str] = (),
    teacher: nn.Module | None = None,
    image_size: int | None = None,
) -> dict[str, Any]:
    """Trains one standalone ViT into run directory `out`; returns the final metrics.

    Args:
        model: a `ViT` to train from its weights (fine-tuning; it is trained in place), or a
            `ViTConfig` to train from scratch (initialised as the supernet is, seeded by the
            recipe's seed, so the same recipe gives the same network).
        recipe: recipe file, shipped name, dict or `Recipe`; its ``data`` is the training data
            (may be None when `out` holds a run to continue: then it is not checked).
        out: run directory: checkpoints (with ``model.json``) and ``metrics.jsonl``.
        resume: None (default): continue the run in `out` if it holds one, else start
            (`vitnas.train.rundir`: the stored recipe, which `recipe` must equal; `overrides`
            apply to both). True: `out` must hold a run; False: it must not. A continued run
            must train the same network as `model`.
        overrides: ``key=value`` recipe overrides.
        teacher: distil from this module's soft labels (see the module docstring).
        image_size: side of the training images (default: the model's ``img_size``); a model
            exported from a resized-input space takes the space's image size and resizes inside.

    Returns:
        ``{"epoch", "step", "val_top1"}`` of the last validation (of the EMA weights, if on).

    Raises:
        RecipeError: `out` holds a run of another recipe (any run, with ``resume=False``; none,
            with ``resume=True``), a malformed recipe or override, data whose class count
            differs from the head, or a teacher without ``distill``.
        CheckpointError: a damaged checkpoint, or one of another model.
        DataError: the data cannot be found or read.
    """
    out = Path(out)
    config, resuming = run_recipe(recipe, out, resume, overrides)
    if teacher is not None and not config.distill:
        raise RecipeError("distill: false, but a teacher was given: set distill=true, or train without the teacher")
    prepare_directory(out, "--out", CheckpointError)
    rank, world, device = distributed_setup()
    seed_run(config.seed)
    network = (model if isinstance(model, ViT) else init_weights(ViT(model))).set_drop_path_rate(config.drop_path)
    _explain(config, teacher)
    trainee = StandaloneTrainee(network.to(device), teacher.to(device).eval() if teacher is not None else None,
                                image_size)
    return fit(build_context(config, trainee, rank, world, device), out, resuming)


def init_weights(model: ViT) -> ViT:
    """Re-initialises every weight as `vitnas.supernet.supernet.SuperViT` initialises its own, from torch's global RNG.

    Linear layers truncated-normal (std 0.02) with zero biases, position tables
    truncated-normal (std 0.02), the class token normal (std 1e-6), convolutions and
    LayerNorms at PyTorch's defaults (timm's ViT recipe). Returns `model`.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.LayerNorm)):
            module.reset_parameters()
        elif isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    with torch.no_grad():
        for stage in model.stages:
            trunc_normal_(stage.pos_embed, std=0.02)
        nn.init.normal_(model.cls_token, std=1e-6)
    return model


class StandaloneTrainee(Trainee):
    """One fixed ViT: each step is one pass over the whole batch (a teacher's no-grad pass first, if any)."""

    def __init__(self, model: ViT, teacher: nn.Module | None = None, image_size: int | None = None) -> None:
        self.model, self.teacher = model, teacher
        self.num_classes, self.in_chans = model.config.num_classes, model.config.in_chans
        self.img_size = image_size or model.config.img_size
        _check_teacher(teacher, model.config)

    def plan(self, rng: np.random.Generator, batch: int, step: int = 0) -> list[Pass]:
        if self.teacher is None:
            return [Pass((Piece(None, 0, batch, "supervised"),))]
        return [Pass((Piece(None, 0, batch, "teacher"), Piece(None, 0, batch, "distilled")))]

    def forward(self, images: Tensor, pieces: list[Piece], masked: bool) -> list[Tensor]:
        return [self.model(images[piece.start:piece.stop]) for piece in pieces]

    def forward_kept(
        self, images: Tensor, pieces: list[Piece], masked: bool
    ) -> tuple[list[Tensor], list[tuple[KeptFraction, ...]]]:
        outputs = [self.model.forward_kept(images[piece.start:piece.stop]) for piece in pieces]
        return [logits for logits, _ in outputs], [kept for _, kept in outputs]

    def teach(self, images: Tensor, arch: Arch | None) -> Tensor:
        return self.teacher(images)

    def validation(self) -> list[tuple[str, Arch | None]]:
        return [("val_top1", None)]

    def class_error(self, data: DataConfig, classes: int) -> str:
        return (f"data: {data.name} has {classes} classes but the model's head has {self.num_classes} "
                "(fine-tune with a new head: --num-classes N, num_classes= in Python)")

    def model_config(self) -> dict[str, Any]:
        return self.model.config.to_dict()

    def check_checkpoint(self, loaded: dict[str, Any]) -> None:
        if loaded["model_config"] != json.loads(json.dumps(self.model_config())):  # as stored: tuples are lists
            what = "a supernet" if loaded["model_config"] is None else "another model"
            raise CheckpointError(f"{loaded['folder']}: holds {what}, not this run's model ({MODEL_FILE} differs)")


def _check_teacher(teacher: nn.Module | None, config: ViTConfig) -> None:
    """A teacher that says its class count (a ViT does) must have the student's: KL needs one label space."""
    teacher_config = getattr(teacher, "config", None)
    classes = getattr(teacher_config, "num_classes", getattr(teacher, "num_classes", None))
    if classes is not None and classes != config.num_classes:
        raise RecipeError(f"teacher: predicts {classes} classes, the model {config.num_classes}; "
                          "distillation needs the same classes")
    channels = getattr(teacher_config, "in_chans", None)
    if channels is not None and channels != config.in_chans:
        raise RecipeError(f"teacher: takes {channels}-channel images, the model {config.in_chans}")


def _explain(config: Recipe, teacher: nn.Module | None) -> None:
    """Says which recipe fields a standalone run leaves aside, so nobody expects them to act."""
    log.info("standalone training: one network per step; the recipe's space (%s) and sampler (%s) do not apply",
             config.space, config.sampler.name)
    if teacher is not None and config.distill_warmup_epochs:
        log.info("distill_warmup_epochs %d: the teacher is trained already; distilling from the first step",
                 config.distill_warmup_epochs)

"""Setting up a run around a trainee: optimizer, schedule, data loaders, Mixup, EMA, precision.

Built once per run (`build_context`) and passed to every part of the loop, so the loop's
functions take one argument for all of it and a supernet run and a standalone run are
set up by the same code from the same recipe fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from timm.data import Mixup
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from vitnas.data import build_dataset, num_classes_of
from vitnas.train.gradient_projection import ConflictProjection
from vitnas.train.metrics_log import MetricsLog
from vitnas.train.recipe import Recipe, RecipeError
from vitnas.train.trainee import Trainee
from vitnas.util.seeding import loader_generator

__all__ = ["Context", "build_context"]


@dataclass
class Context:
    """What the loop needs, built once."""

    recipe: Recipe
    trainee: Trainee
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loader: DataLoader
    val_loader: DataLoader
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None for fp32
    rank: int
    world: int
    mixup: Mixup | None
    ema: Any
    scaler: torch.amp.GradScaler | None = None  # fp16 loss scaling
    projection: ConflictProjection | None = None  # NASViT gradient-conflict projection (recipe.gradient_projection)
    metrics_log: MetricsLog | None = None  # rank 0's metrics file / TensorBoard writer

    @property
    def model(self) -> nn.Module:
        return self.trainee.model


def build_context(config: Recipe, trainee: Trainee, rank: int, world: int, device: torch.device) -> Context:
    """Optimizer, schedule, data, Mixup, EMA and precision of a run, around a trainee already on `device`."""
    model = trainee.model
    optimizer = create_optimizer_v2(model, opt=config.optimizer.name, lr=config.learning_rate(),
                                    weight_decay=config.optimizer.weight_decay, momentum=config.optimizer.momentum)
    loader, val_loader = _loaders(config, trainee, rank, world)
    schedule = config.schedule
    scheduler, _ = create_scheduler_v2(optimizer, sched=schedule.name, num_epochs=config.epochs,
                                       warmup_epochs=schedule.warmup_epochs, warmup_lr=schedule.warmup_lr,
                                       min_lr=schedule.min_lr, step_on_epochs=False,
                                       updates_per_epoch=len(loader))
    mixup = None
    if config.mixup > 0 or config.cutmix > 0:
        mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix,
                      label_smoothing=config.label_smoothing, num_classes=trainee.num_classes)
    ema = None
    if config.ema_decay is not None:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=config.ema_decay)
    dtype, scaler = _precision(config, device)
    projection = ConflictProjection(model.parameters()) if config.gradient_projection else None
    return Context(config, trainee, optimizer, scheduler, loader, val_loader, device, dtype, rank, world, mixup, ema,
                   scaler, projection)


def _precision(config: Recipe, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """The autocast dtype (None: fp32) and, for fp16, the loss scaler (fp16 gradients underflow unscaled)."""
    precision = config.precision if config.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    if precision == "fp16" and device.type != "cuda":
        raise RecipeError("precision: fp16 training needs a GPU (use bf16 or fp32 on CPU)")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return dtype, torch.amp.GradScaler("cuda") if precision == "fp16" else None


def _loaders(config: Recipe, trainee: Trainee, rank: int, world: int) -> tuple[DataLoader, DataLoader]:
    """This rank's shuffled training shard (full batches only) and its disjoint share of the validation split.

    Refuses, before training starts, a batch that does not split over the ranks, data whose class count
    differs from the head, and a training split too small for one batch.
    """
    data = config.data
    train_set = build_dataset(data, "train", trainee.img_size, trainee.in_chans)
    val_set = build_dataset(data, "val", trainee.img_size, trainee.in_chans)
    if config.batch_size % world:
        raise RecipeError(f"batch_size: {config.batch_size} does not split over {world} ranks")
    classes = num_classes_of(data) or len(getattr(train_set, "classes", ())) or None
    if classes is not None and classes != trainee.num_classes:
        raise RecipeError(trainee.class_error(data, classes))
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed,
                                 drop_last=True)
    loader = DataLoader(train_set, batch_size=config.batch_size // world, sampler=sampler, drop_last=True,
                        num_workers=config.num_workers, pin_memory=torch.cuda.is_available(),
                        generator=loader_generator(config.seed))
    if len(loader) == 0:
        raise RecipeError(f"batch_size: {data.name}'s train split holds {len(train_set)} images, not one full "
                          f"batch of {config.batch_size}; lower batch_size or add images")
    val_shard = Subset(val_set, range(rank, len(val_set), world))  # every image exactly once over the ranks
    val_loader = DataLoader(val_shard, batch_size=max(256, config.batch_size), num_workers=config.num_workers)
    return loader, val_loader

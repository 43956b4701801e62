"""Training a supernet from a recipe: `vitnas train RECIPE --out DIR [--fresh] [key=value ...]`.

One step = the sampler's plan (several sub-networks, see `vitnas.train.samplers`), gradients
accumulated over its passes, one optimizer step. The loop itself (`fit`) only sees a
`Trainee`: the model and which of its networks run each step. `SupernetTrainee` is the
supernet's; `vitnas.train.standalone` trains one fixed ViT through the same loop, so
fine-tuning shares the recipe, AMP, EMA, DDP, checkpoint and exact-resume machinery.

Under ``torchrun`` every rank trains the same sub-networks on its own shard; gradients
are averaged with one flat all-reduce after the step's passes. Parameters a step did
not touch get zero gradients first, so there is no DDP unused-parameter hang and no
per-step graph bookkeeping. Checkpoints are written at the end of each epoch (see `vitnas.train.checkpoint`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.data import Mixup
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from vitnas.data import DataConfig, build_dataset, num_classes_of
from vitnas.evaluate import count_correct
from vitnas.nn.reducers import KeptFraction, keep_ratio_loss
from vitnas.space.arch import Arch
from vitnas.space.space import SearchSpace, load_space
from vitnas.supernet.masked import masked_forward, mixed_head_widths, unmasked_reducers
from vitnas.supernet.rewire import rewire
from vitnas.supernet.supernet import SuperViT
from vitnas.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vitnas.train.gradient_projection import ConflictProjection
from vitnas.train.recipe import Recipe, RecipeError, load_recipe
from vitnas.train.rundir import TRAINING_FILES, run_recipe, start_over
from vitnas.train.samplers import Pass, Piece, build_sampler, step_rng
from vitnas.util.atomic import prepare_directory, reporting_disk_full
from vitnas.util.seeding import loader_generator, restore_rng_state, rng_state, seed_run

__all__ = ["Context", "SupernetTrainee", "Trainee", "build_context", "distributed_setup", "fit", "train"]

log = logging.getLogger(__name__)


class Trainee(ABC):
    """What the loop trains: a model, and which of its networks run on which rows of each step.

    The loop (`fit`) owns everything else: data, optimizer, schedule, precision, EMA,
    DDP, checkpoints and metrics. A supernet plans several sub-networks per step
    (`SupernetTrainee`); a standalone model plans its one network
    (`vitnas.train.standalone.StandaloneTrainee`), so both share one loop and one resume.
    """

    model: nn.Module  # the module whose parameters train
    num_classes: int  # head size: the data must have as many classes
    img_size: int  # side of the images the data pipeline produces
    in_chans: int
    space: SearchSpace | None = None  # saved with each checkpoint (supernets)

    def begin_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        """Called before each epoch's first step (samplers open up, rewiring)."""

    @abstractmethod
    def plan(self, rng: np.random.Generator, batch: int, step: int = 0) -> list[Pass]:
        """The passes of training step `step` over a batch of `batch` rows."""

    @abstractmethod
    def forward(self, images: Tensor, pieces: list[Piece], masked: bool) -> list[Tensor]:
        """Logits of each learning piece of one pass, with gradients."""

    def forward_kept(
        self, images: Tensor, pieces: list[Piece], masked: bool
    ) -> tuple[list[Tensor], list[tuple[KeptFraction, ...]]]:
        """`forward`, and per piece what its DynamicViT reductions kept (the keep-ratio loss's input).

        The default records nothing: a trainee whose model has no such reducer need not override it.
        """
        return self.forward(images, pieces, masked), [() for _ in pieces]

    @abstractmethod
    def teach(self, images: Tensor, arch: Arch | None) -> Tensor:
        """Logits whose softmax the distilled pieces learn from (called without gradients)."""

    @abstractmethod
    def validation(self) -> list[tuple[str, Arch | None]]:
        """(metric name, arch) of each network scored on the validation split."""

    @abstractmethod
    def class_error(self, data: DataConfig, classes: int) -> str:
        """The one-line message for data of `classes` classes that does not fit the head."""

    def model_config(self) -> dict[str, Any] | None:
        """What a checkpoint records of a standalone model (None: a supernet, recorded by its space)."""
        return None

    def check_checkpoint(self, loaded: dict[str, Any]) -> None:
        """Refuses a checkpoint of another model before its weights are loaded."""


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


def train(recipe: str | Path | dict, out: str | Path, resume: bool | None = None, overrides: Sequence[str] = (),
          device: str | None = None, fresh: bool = False) -> dict:
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
    return fit(_build(config, device), out, resuming)


def fit(context: Context, out: Path, resume: bool) -> dict[str, Any]:
    """The epochs of a run: train, validate every `eval_every` epochs, checkpoint; returns the last metrics."""
    config = context.recipe
    start_epoch, step, metrics = 0, 0, {}
    if resume:
        start_epoch, step, metrics = _restore(context, out)
    for epoch in range(start_epoch, config.epochs):
        step = _train_epoch(context, epoch, step, out)
        context.scheduler.step(epoch + 1)
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            metrics = _validate(context, epoch, step)
            _log_metrics(context, out, metrics)
        if context.rank == 0:
            _save(context, out, epoch, step, metrics)
    if context.metrics_log is not None:
        context.metrics_log.close()
    if context.world > 1:
        dist.barrier()
    return metrics


def _build(config: Recipe, device: str | None = None) -> Context:
    rank, world, device = distributed_setup(device)
    seed_run(config.seed)
    space = load_space(config.space)
    if config.sampler.name == "multi" and config.sampler.variant == "masked" and (
            why := mixed_head_widths(space) or unmasked_reducers(space)):
        raise RecipeError(f"sampler.variant: masked: {why}")
    model = SuperViT(space, drop_path_rate=config.drop_path).to(device)
    return build_context(config, SupernetTrainee(model, config), rank, world, device)


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


def distributed_setup(device: str | None = None) -> tuple[int, int, torch.device]:
    """(rank, world size, device): one process (on `device`, default CUDA when present), or one rank of
    ``torchrun`` (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return dist.get_rank(), world, torch.device("cuda", local_rank)
    return dist.get_rank(), world, torch.device("cpu")


def _loaders(config: Recipe, trainee: Trainee, rank: int, world: int) -> tuple[DataLoader, DataLoader]:
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


def _train_epoch(context: Context, epoch: int, step: int, out: Path) -> int:
    recipe, model, trainee = context.recipe, context.model, context.trainee
    trainee.begin_epoch(epoch, context.optimizer)
    context.loader.sampler.set_epoch(epoch)
    rank = context.rank if recipe.sampler.rank_specific else None
    model.train()
    progress = tqdm(context.loader, desc=f"epoch {epoch + 1}/{recipe.epochs}", disable=context.rank != 0,
                    leave=False, dynamic_ncols=True)
    started, seen, subnets = time.perf_counter(), 0, 0
    for images, labels in progress:
        images, labels = images.to(context.device, non_blocking=True), labels.to(context.device, non_blocking=True)
        targets = labels
        if context.mixup is not None:
            images, targets = context.mixup(images, labels)
        plan = trainee.plan(step_rng(recipe.seed, step, rank), images.shape[0], step)
        loss = _train_step(context, images, targets, plan)
        step += 1
        context.scheduler.step_update(num_updates=step)
        if context.ema is not None:
            context.ema.update(model, step=step)
        seen += images.shape[0] * context.world
        subnets += sum(1 for p in plan for piece in p.pieces if piece.role != "teacher")
        if step % recipe.log_every == 0:
            elapsed, value = time.perf_counter() - started, loss.item()
            lr = context.optimizer.param_groups[0]["lr"]
            progress.set_postfix(loss=f"{value:.3f}", img_s=f"{seen / elapsed:.0f}", lr=f"{lr:.2e}")
            metrics = {"epoch": epoch, "step": step, "loss": value, "lr": lr, "images_per_s": seen / elapsed,
                       "subnets_per_s": subnets / elapsed}
            if context.projection is not None:  # share of smaller sub-networks' gradients that conflicted
                conflicts, passes = context.projection.take_counts()
                metrics["gradient_conflicts"] = conflicts / max(passes, 1)
            _log_metrics(context, out, metrics)
    return step


def _train_step(context: Context, images: Tensor, targets: Tensor, plan: list[Pass]) -> Tensor:
    """Runs every pass of the plan, averages gradients over ranks, takes one optimizer step; returns the summed loss."""
    model, recipe = context.model, context.recipe
    context.optimizer.zero_grad(set_to_none=True)
    soft = torch.zeros(images.shape[0], context.trainee.num_classes, device=images.device)
    total = torch.zeros((), device=images.device)
    scaler, projection = context.scaler, context.projection
    if projection is not None:
        projection.begin_step()
    for step_pass in plan:
        loss = _pass_loss(context, images, targets, step_pass, soft)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if projection is not None:
            projection.end_pass()  # the first pass (the largest) is the reference; later ones lose their conflict
        total += loss.detach()  # stays on the device: no synchronisation per pass
    if context.world > 1:
        _average_gradients(model, context.world)
    if scaler is not None:
        scaler.unscale_(context.optimizer)  # once per step, after every pass (clipping needs true norms)
    if recipe.optimizer.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.optimizer.grad_clip)
    if scaler is not None:
        scaler.step(context.optimizer)  # skips the step if an fp16 gradient overflowed
        scaler.update()
    else:
        context.optimizer.step()
    return total


def _pass_loss(context: Context, images: Tensor, targets: Tensor, step_pass: Pass, soft: Tensor) -> Tensor:
    """Loss of one pass (one graph), weighted by each piece's share of the batch; fills `soft` for teachers."""
    trainee, batch = context.trainee, images.shape[0]
    autocast = torch.autocast(context.device.type, dtype=context.dtype, enabled=context.dtype is not None)
    with autocast:
        for piece in step_pass.pieces:
            if piece.role == "teacher":
                with torch.no_grad():
                    logits = trainee.teach(images[piece.start:piece.stop], piece.arch)
                soft[piece.start:piece.stop] = logits.float().softmax(-1)
        learners = [p for p in step_pass.pieces if p.role != "teacher"]
        outputs, kept = trainee.forward_kept(images, learners, step_pass.masked)
    loss = images.new_zeros(())
    for piece, logits, records in zip(learners, outputs, kept):
        rows = slice(piece.start, piece.stop)
        logits = logits.float()
        if piece.role == "distilled":
            piece_loss = F.kl_div(logits.log_softmax(-1), soft[rows], reduction="batchmean")
        else:
            piece_loss = _supervised_loss(logits, targets[rows], context.recipe.label_smoothing)
            if piece.teacher:
                soft[rows] = logits.detach().softmax(-1)
        if (ratio_loss := keep_ratio_loss(records)) is not None:  # DynamicViT: keep what the arch keeps
            piece_loss = piece_loss + context.recipe.keep_ratio_weight * ratio_loss
        loss = loss + piece_loss * (piece.stop - piece.start) / batch
    return loss


def _supervised_loss(logits: Tensor, targets: Tensor, label_smoothing: float) -> Tensor:
    if targets.dim() == 2:  # Mixup / CutMix soft targets (label smoothing already folded in)
        return torch.sum(-targets * logits.log_softmax(-1), dim=-1).mean()
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def _average_gradients(model: torch.nn.Module, world: int) -> None:
    """Averages gradients over ranks with one flat all-reduce; untouched parameters count as zero."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    flat = torch.cat([p.grad.reshape(-1) for p in parameters])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for parameter in parameters:
        count = parameter.numel()
        parameter.grad.copy_(flat[offset:offset + count].view_as(parameter))
        offset += count


def _validate(context: Context, epoch: int, step: int) -> dict[str, Any]:
    model = context.ema.module if context.ema is not None else context.model
    metrics: dict[str, Any] = {"epoch": epoch + 1, "step": step}
    for name, arch in context.trainee.validation():
        counts = torch.tensor(count_correct(model, context.val_loader, arch, context.device, context.dtype),
                              dtype=torch.float64, device=context.device)
        if context.world > 1:
            dist.all_reduce(counts)  # the ranks hold disjoint shards of the validation set
        metrics[name] = (counts[0] / counts[1].clamp(min=1)).item()
    if context.rank == 0:  # "val top-1 largest 0.5, smallest 0.4" or "val top-1 0.5"
        scores = [f"{name.removeprefix('val_top1').lstrip('_')} {metrics[name]:.4f}".lstrip() for name in metrics
                  if name.startswith("val_top1")]
        log.info("epoch %d: val top-1 %s", epoch + 1, ", ".join(scores))
    return metrics


class MetricsLog:
    """OUT/metrics.jsonl, plus OUT/tensorboard where TensorBoard (or tensorboardX) is installed."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                return
        self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, metrics: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "metrics.jsonl"
        with reporting_disk_full(path), open(path, "a") as handle:
            handle.write(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}))
            handle.write("\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, metrics["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _log_metrics(context: Context, out: Path, metrics: dict[str, Any]) -> None:
    """Rank 0 appends `metrics` to the run's log (opened on first use)."""
    if context.rank != 0:
        return
    if context.metrics_log is None or context.metrics_log.out != out:
        context.metrics_log = MetricsLog(out)
    context.metrics_log.write(metrics)


def _save(context: Context, out: Path, epoch: int, step: int, metrics: dict[str, Any]) -> None:
    state = {
        "optimizer": context.optimizer.state_dict(),
        "scheduler": context.scheduler.state_dict(),
        "scaler": context.scaler.state_dict() if context.scaler is not None else {},
        **rng_state(context.loader.generator),
    }
    meta = {"epoch": epoch + 1, "step": step, "metrics": metrics}
    ema = context.ema.module.state_dict() if context.ema is not None else None
    save_checkpoint(out, step, context.model.state_dict(), context.trainee.space, context.recipe, state, meta, ema,
                    model_config=context.trainee.model_config())


def _restore(context: Context, out: Path) -> tuple[int, int, dict[str, Any]]:
    loaded = load_checkpoint(out, map_location=context.device)
    context.trainee.check_checkpoint(loaded)
    context.model.load_state_dict(loaded["model"], strict=True)
    if context.ema is not None and loaded["ema"] is not None:
        context.ema.module.load_state_dict(loaded["ema"], strict=True)
    state = loaded["state"]
    context.optimizer.load_state_dict(state["optimizer"])
    context.scheduler.load_state_dict(state["scheduler"])
    restore_rng_state(state, context.loader.generator)
    if context.scaler is not None and state.get("scaler"):
        context.scaler.load_state_dict(state["scaler"])
    log.info("resumed from %s (epoch %d, step %d)", loaded["folder"], loaded["meta"]["epoch"], loaded["meta"]["step"])
    meta = loaded["meta"]
    return meta["epoch"], meta["step"], meta.get("metrics", {})


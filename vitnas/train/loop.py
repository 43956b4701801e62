"""The training loop: epochs of steps, validation, a checkpoint per epoch, exact resume.

One step = the trainee's plan (several sub-networks for a supernet, see
`vitnas.train.samplers`), gradients accumulated over its passes, one optimizer step
(`vitnas.train.step`). The loop itself (`fit`) only sees a `Trainee`: the model and which
of its networks run each step. `vitnas.train.supernet` trains a supernet through it;
`vitnas.train.standalone` trains one fixed ViT, so fine-tuning shares the recipe, AMP,
EMA, DDP, checkpoint and exact-resume machinery.

Under ``torchrun`` every rank trains the same sub-networks on its own shard; gradients
are averaged with one flat all-reduce after the step's passes (`vitnas.train.distributed`).
Checkpoints are written at the end of each epoch (see `vitnas.train.checkpoint`) with every
RNG's state, so a resumed run continues bit for bit.

The parts: `vitnas.train.context` sets a run up, `vitnas.train.step` is one optimizer
step, `vitnas.train.metrics` validates and logs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.distributed as dist
from tqdm import tqdm

from vitnas.train.checkpoint import load_checkpoint, save_checkpoint
from vitnas.train.metrics import log_metrics, validate
from vitnas.train.samplers import step_rng
from vitnas.train.step import train_step
from vitnas.util.seeding import restore_rng_state, rng_state

if TYPE_CHECKING:
    from vitnas.train.context import Context

__all__ = ["fit", "train_epoch"]

log = logging.getLogger(__name__)




def fit(context: Context, out: Path, resume: bool) -> dict[str, Any]:
    """The epochs of a run: train, validate every `eval_every` epochs, checkpoint; returns the last metrics."""
    config = context.recipe
    start_epoch, step, metrics = 0, 0, {}
    if resume:
        start_epoch, step, metrics = _restore(context, out)
    for epoch in range(start_epoch, config.epochs):
        step = train_epoch(context, epoch, step, out)
        context.scheduler.step(epoch + 1)
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            metrics = validate(context, epoch, step)
            log_metrics(context, out, metrics)
        if context.rank == 0:
            _save(context, out, epoch, step, metrics)
    if context.metrics_log is not None:
        context.metrics_log.close()
    if context.world > 1:
        dist.barrier()
    return metrics


def train_epoch(context: Context, epoch: int, step: int, out: Path) -> int:
    """One pass over this rank's shard; returns the step count after it.

    Each step's plan is drawn from an RNG seeded by (seed, step[, rank]), not from a running
    stream, so a resumed run draws the same sub-networks as an uninterrupted one.
    """
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
        loss = train_step(context, images, targets, plan)
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
            log_metrics(context, out, metrics)
    return step


def _save(context: Context, out: Path, epoch: int, step: int, metrics: dict[str, Any]) -> None:
    """Checkpoints the run after `epoch`: weights, EMA, optimizer, schedule, scaler and every RNG (exact resume)."""
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
    """Loads what `_save` wrote into the context; returns (finished epochs, steps, last metrics)."""
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

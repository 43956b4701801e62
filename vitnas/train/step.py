"""One optimizer step: every pass of the sampler's plan, its losses, one update.

A step's plan holds several passes (one graph each, e.g. the largest sub-network, then
smaller ones distilled from it); their gradients accumulate before the single optimizer
step, so the largest network's soft labels (`soft`) are ready before the pieces that learn
from them run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from vitnas.nn.reducers import keep_ratio_loss
from vitnas.train.distributed import average_gradients
from vitnas.train.samplers import Pass

if TYPE_CHECKING:
    from vitnas.train.context import Context

__all__ = ["train_step"]


def train_step(context: Context, images: Tensor, targets: Tensor, plan: list[Pass]) -> Tensor:
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
        average_gradients(model, context.world)
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
    """Cross-entropy against hard labels (smoothed by the recipe), or against Mixup / CutMix's soft targets,
    which hold the smoothing already."""
    if targets.dim() == 2:  # Mixup / CutMix soft targets (label smoothing already folded in)
        return torch.sum(-targets * logits.log_softmax(-1), dim=-1).mean()
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)

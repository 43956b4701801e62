"""What a run reports: validation top-1 of the trainee's networks, and the log the numbers go to.

Validation sums correct counts over the ranks' disjoint shards, so every image counts once
whatever the world size; only rank 0 writes, so the log has one line per event.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from vitnas.evaluate import count_correct
from vitnas.train.metrics_log import MetricsLog

if TYPE_CHECKING:
    from vitnas.train.context import Context

__all__ = ["log_metrics", "validate"]

log = logging.getLogger(__name__)


def validate(context: Context, epoch: int, step: int) -> dict[str, Any]:
    """Top-1 of each network the trainee names (of the EMA weights, if on) after `epoch`; logged on rank 0."""
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


def log_metrics(context: Context, out: Path, metrics: dict[str, Any]) -> None:
    """Rank 0 appends `metrics` to the run's log (opened on first use)."""
    if context.rank != 0:
        return
    if context.metrics_log is None or context.metrics_log.out != out:
        context.metrics_log = MetricsLog(out)
    context.metrics_log.write(metrics)

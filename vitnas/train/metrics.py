"""What a run reports: validation top-1 of the trainee's networks, and the log the numbers go to.

Validation sums correct counts over the ranks' disjoint shards, so every image counts once
whatever the world size; only rank 0 writes, so the log has one line per event.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from vitnas.evaluate import count_correct
from vitnas.util.atomic import reporting_disk_full

if TYPE_CHECKING:
    from vitnas.train.context import Context

__all__ = ["MetricsLog", "log_metrics", "validate"]

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


def log_metrics(context: Context, out: Path, metrics: dict[str, Any]) -> None:
    """Rank 0 appends `metrics` to the run's log (opened on first use)."""
    if context.rank != 0:
        return
    if context.metrics_log is None or context.metrics_log.out != out:
        context.metrics_log = MetricsLog(out)
    context.metrics_log.write(metrics)

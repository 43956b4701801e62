"""The run's metrics log: ``OUT/metrics.jsonl``, plus ``OUT/tensorboard`` where TensorBoard is installed.

Its own module because the run's `vitnas.train.context.Context` holds one, while
`vitnas.train.metrics`, which fills it, reads the context: apart, neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vitnas.util.atomic import reporting_disk_full

__all__ = ["MetricsLog"]


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

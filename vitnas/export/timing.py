"""Timing an exported model at the batch sizes its model card reports (the export's own latency numbers)."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["LATENCY_REPEATS", "LATENCY_WARMUP", "measure_latency"]

LATENCY_WARMUP, LATENCY_REPEATS = 3, 20  # per batch size: enough for a stable median, cheap for big models on CPU


def measure_latency(model: nn.Module, batches: tuple[int, ...], device: str, image_size: int) -> list[dict[str, Any]]:
    """Median latency at each batch size on `device`: bf16 on CUDA (as deployed there), fp32 on CPU."""
    if not batches:
        return []
    from vitnas.latency.measure import measure

    dtype = "bf16" if str(device).startswith("cuda") else "fp32"
    return [measure(model, device, batch, dtype, img_size=image_size, warmup=LATENCY_WARMUP,
                    repeats=LATENCY_REPEATS).to_dict() for batch in batches]

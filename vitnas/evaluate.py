"""Top-k accuracy and throughput of a standalone model, an export folder, or one sub-network of a supernet."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from vitnas.data import DataConfig, build_dataset, parse_data
from vitnas.errors import ArchError, VitnasError
from vitnas.space.arch import Arch
from vitnas.supernet.supernet import SuperViT
from vitnas.util.device import resolve_device

__all__ = ["evaluate", "evaluate_loader", "evaluate_topk", "count_correct", "count_topk"]


def evaluate(
    model: nn.Module,
    arch: Arch | None = None,
    data: str | Path | DataConfig = "digits",
    split: str = "val",
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> float:
    """Top-1 accuracy in [0, 1].

    Args:
        model: a `SuperViT` (then `arch` names the sub-network) or any model mapping
            images to logits with a `config.img_size` (`vitnas.ViT`) or an `img_size` attribute.
        data: "digits", "cifar10:/path", "cifar100:/path", an ImageFolder root, or a DataConfig.
    """
    return evaluate_topk(model, arch, data, split, batch_size, device, ks=(1,))["top1"]


def evaluate_topk(
    model: nn.Module,
    arch: Arch | None = None,
    data: str | Path | DataConfig = "digits",
    split: str = "val",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    ks: Sequence[int] = (1, 5),
    img_size: int | None = None,
    in_chans: int | None = None,
) -> dict[str, Any]:
    """Top-k accuracies and forward-pass throughput over one split.

    Args:
        model, arch, data, split, batch_size, device: as for `evaluate`.
        ks: the k of each top-k accuracy reported; a k above the class count counts as the class count.
        img_size, in_chans: input size of the images built from `data` (default: the model's);
            an export folder's ``config.json`` names them.

    Returns:
        ``{"top1": ..., "top5": ..., "images_per_s": ..., "images": N}``: accuracies in [0, 1];
        images/s of the forward passes alone (data loading excluded; the first batch, which
        pays one-off setup, is left out of the timing when there are several).
    """
    if isinstance(model, SuperViT):
        if arch is None:
            raise ArchError("evaluate: a supernet needs arch= (e.g. space.largest())")
        size, chans = model.space.img_size, model.space.in_chans
    else:
        config = getattr(model, "config", None)
        size = getattr(config, "img_size", None) or getattr(model, "img_size", None)
        chans = getattr(config, "in_chans", 3)
    size, chans = img_size or size, in_chans or chans
    if size is None:
        raise ArchError("evaluate: the model has no config.img_size or img_size attribute; pass img_size=")
    device = next(model.parameters()).device if device is None else resolve_device(device, VitnasError)
    dataset = build_dataset(parse_data(data) if not isinstance(data, DataConfig) else data, split, size, chans)
    loader = DataLoader(dataset, batch_size=batch_size)
    correct, total, speed = count_topk(model, loader, arch, torch.device(device), ks=ks)
    return {**{f"top{k}": correct[k] / max(total, 1) for k in ks}, "images_per_s": speed, "images": total}


def evaluate_loader(
    model: nn.Module, loader: DataLoader, arch: Arch | None, device: torch.device, dtype: torch.dtype | None = None
) -> float:
    """Top-1 over a loader, restoring the model's train/eval mode afterwards."""
    correct, total = count_correct(model, loader, arch, device, dtype)
    return correct / max(total, 1)


def count_correct(
    model: nn.Module, loader: DataLoader, arch: Arch | None, device: torch.device, dtype: torch.dtype | None = None
) -> tuple[int, int]:
    """(correct top-1 predictions, images) over a loader; ranks sum these to score a sharded set."""
    correct, total, _ = count_topk(model, loader, arch, device, dtype, ks=(1,), timed=False)
    return correct[1], total


@torch.no_grad()
def count_topk(
    model: nn.Module,
    loader: DataLoader,
    arch: Arch | None,
    device: torch.device,
    dtype: torch.dtype | None = None,
    ks: Sequence[int] = (1, 5),
    timed: bool = True,
) -> tuple[dict[int, int], int, float]:
    """({k: correct top-k predictions}, images, forward images/s) over a loader, restoring train/eval mode.

    Throughput times the forward passes only, synchronising CUDA around each; the first
    batch is left out of it when there are several (lazy initialisation, autotuning).
    With ``timed=False`` (validation during training) nothing is synchronised and images/s is NaN.
    """
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks {tuple(ks)!r}: expected positive integers")
    was_training = model.training
    model.eval()
    correct, total = {k: 0 for k in ks}, 0
    timings: list[tuple[int, float]] = []  # (images, seconds) of each forward pass
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            if timed:
                _synchronize(device)
            start = time.perf_counter()
            logits = model(images, arch) if isinstance(model, SuperViT) else model(images)
            if timed:
                _synchronize(device)
            timings.append((labels.numel(), time.perf_counter() - start))
            ranked = logits.topk(min(max(ks), logits.shape[-1]), dim=-1).indices  # (B, k)
            hits = ranked == labels[:, None]
            for k in ks:
                correct[k] += hits[:, :k].any(dim=-1).sum().item()
            total += labels.numel()
    model.train(was_training)
    kept = timings[1:] if len(timings) > 1 else timings
    seconds = sum(t for _, t in kept)
    speed = sum(n for n, _ in kept) / seconds if timed and seconds > 0 else float("nan")
    return correct, total, speed


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def __getattr__(name: str) -> Any:  # evaluate_folder moved to vitnas.export.evaluate (one release)
    from vitnas._moved import moved_attribute

    return moved_attribute(__name__, name)

"""Top-1 accuracy of a standalone model or of one sub-network of a supernet."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from vitnas.arch import Arch
from vitnas.data import DataConfig, build_dataset, parse_data
from vitnas.errors import ArchError
from vitnas.supernet import SuperViT

__all__ = ["evaluate", "evaluate_loader", "count_correct"]


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
    if isinstance(model, SuperViT):
        if arch is None:
            raise ArchError("evaluate: a supernet needs arch= (e.g. space.largest())")
        img_size, in_chans = model.space.img_size, model.space.in_chans
    else:
        config = getattr(model, "config", None)
        img_size = getattr(config, "img_size", None) or getattr(model, "img_size")
        in_chans = getattr(config, "in_chans", 3)
    if device is None:
        device = next(model.parameters()).device
    dataset = build_dataset(parse_data(data) if not isinstance(data, DataConfig) else data, split, img_size, in_chans)
    loader = DataLoader(dataset, batch_size=batch_size)
    return evaluate_loader(model, loader, arch, torch.device(device))


def evaluate_loader(
    model: nn.Module, loader: DataLoader, arch: Arch | None, device: torch.device, dtype: torch.dtype | None = None
) -> float:
    """Top-1 over a loader, restoring the model's train/eval mode afterwards."""
    correct, total = count_correct(model, loader, arch, device, dtype)
    return correct / max(total, 1)


@torch.no_grad()
def count_correct(
    model: nn.Module, loader: DataLoader, arch: Arch | None, device: torch.device, dtype: torch.dtype | None = None
) -> tuple[int, int]:
    """(correct top-1 predictions, images) over a loader; ranks sum these to score a sharded set."""
    was_training = model.training
    model.eval()
    correct, total = 0, 0
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            logits = model(images, arch) if isinstance(model, SuperViT) else model(images)
            correct += (logits.argmax(-1) == labels).sum().item()
            total += labels.numel()
    model.train(was_training)
    return correct, total

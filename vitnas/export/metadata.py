"""What an export folder says about its model besides the weights: inputs, classes, provenance.

A deployed model is only usable with the preprocessing it was trained with, so
``config.json`` records the input normalisation the training data used: digits are
scaled to [-1, 1] (mean and std 0.5, as `vitnas.data.load_digits` does); ImageFolder
and CIFAR images go through timm's validation transform (ImageNet mean and std,
bilinear resize, centre crop of `crop_pct`); Fashion-MNIST through the same transform
with its own grey-level mean and std. Class names are recorded where the data
set has them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vitnas.data import DataConfig, FashionMnistDataset, normalisation

__all__ = ["CIFAR10_CLASSES", "class_names", "input_spec"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def input_spec(data: DataConfig | None, img_size: int, in_chans: int) -> dict[str, Any]:
    """How images must be prepared for the model: size, channels and, where the data is known, normalisation.

    Args:
        data: the training data (None when exporting an in-memory supernet without naming it).
        img_size: side of the images the data pipeline produces (the space's image size).
        in_chans: image channels.
    """
    spec: dict[str, Any] = {"image_size": img_size, "in_chans": in_chans}
    if data is None:
        spec["note"] = "normalisation unknown: the supernet was exported without naming its data"
    elif data.name == "digits":
        spec.update(mean=[0.5] * in_chans, std=[0.5] * in_chans, interpolation="bilinear", crop_pct=1.0,
                    note="pixels scaled to [0, 1], resized bilinearly, then (x - mean) / std: [-1, 1], "
                         "as vitnas.data.load_digits does")
    elif data.name == "synthetic":
        spec.update(mean=[0.0] * in_chans, std=[1.0] * in_chans,
                    note="synthetic data: standard-normal pixels, used as given")
    else:
        from timm.data import DEFAULT_CROP_PCT

        crop_pct = 1.0 if img_size <= 64 else DEFAULT_CROP_PCT  # as vitnas.data's validation transform
        mean, std = normalisation(data, in_chans)
        spec.update(mean=list(mean), std=list(std), interpolation="bilinear",
                    crop_pct=crop_pct, note="timm's validation transform: resize, centre crop of crop_pct, "
                                            "pixels in [0, 1], then (x - mean) / std")
    return spec


def class_names(data: DataConfig | None, num_classes: int) -> list[str] | None:
    """The class names in label order, where the data set has them; None otherwise.

    ImageFolder names are the class folders of ``ROOT/train`` in sorted order (as
    torchvision's ImageFolder numbers them), read only if the folder exists here.
    """
    if data is None:
        return None
    names: list[str] | None = None
    if data.name == "digits":
        names = [str(digit) for digit in range(10)]
    elif data.name == "cifar10":
        names = list(CIFAR10_CLASSES)
    elif data.name == "fashion_mnist":
        names = list(FashionMnistDataset.CLASSES)
    elif data.name == "imagefolder" and data.root and (Path(data.root) / "train").is_dir():
        with os.scandir(Path(data.root) / "train") as entries:
            names = sorted(entry.name for entry in entries if entry.is_dir())
    return names if names is not None and len(names) == num_classes else None

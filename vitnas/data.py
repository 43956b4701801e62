"""Built-in data: scikit-learn's handwritten digits, no download.

1,797 real 8x8 scans of the digits 0-9 (they ship inside scikit-learn), upscaled
bilinearly to the space's resolution and repeated over its input channels. The
train/val split is fixed (a seeded permutation), so accuracies are comparable across
runs and machines.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["load_digits", "DIGITS_VAL_FRACTION"]

DIGITS_VAL_FRACTION = 0.2
_SPLIT_SEED = 20211121  # fixed forever: changing it changes every reported digits accuracy


def load_digits(split: str, img_size: int = 32, in_chans: int = 3) -> tuple[Tensor, Tensor]:
    """Images (N, in_chans, img_size, img_size), normalised to mean 0 / std 1 per pixel range, and labels (N,).

    Args:
        split: "train" (1,438 images) or "val" (359 images).
    """
    from sklearn.datasets import load_digits as sklearn_digits

    if split not in ("train", "val"):
        raise ValueError(f"digits: split must be 'train' or 'val', got {split!r}")
    digits = sklearn_digits()
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(digits.target))
    num_val = round(len(order) * DIGITS_VAL_FRACTION)
    chosen = order[:num_val] if split == "val" else order[num_val:]
    images = torch.from_numpy(digits.images[chosen]).float().div(16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False)
    images = images.sub(0.5).div(0.5).expand(-1, in_chans, -1, -1).contiguous()
    return images, torch.from_numpy(digits.target[chosen]).long()

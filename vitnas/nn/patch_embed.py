"""Patchifying and position embeddings for any patch size and resolution.

FlexiViT-style ("flexi" spaces): one kernel is stored and PI-resampled to each patch
size with timm's cached resampler, and one position-embedding grid is resampled to
each token grid with timm's `resample_abs_pos_embed`; gradients reach the stored
tensors. SuperViT-style ("resize" spaces): the input is resized and one kernel is
used as is. Both resize inputs with `resize_input`, so the supernet and an exported
model see the same pixels.
"""

from __future__ import annotations

import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from torch import Tensor

__all__ = ["resize_input", "patchify", "resample_pos_embed"]


def resize_input(x: Tensor, img_size: int) -> Tensor:
    """Bilinearly resizes a (B, C, H, W) batch to img_size x img_size (a no-op if it already is).

    No antialiasing: ONNX's Resize only gained it in opset 18, and a sub-network trained on
    resized inputs learns whatever the resize does.
    """
    if x.shape[-2] == img_size and x.shape[-1] == img_size:
        return x
    return F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)


def patchify(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Non-overlapping patch embedding: (B, C, H, W) -> (B, H/p * W/p, D) with p = weight's kernel side."""
    patch = weight.shape[-1]
    return F.conv2d(x, weight, bias, stride=patch).flatten(2).transpose(1, 2)


def resample_pos_embed(pos_embed: Tensor, grid: int) -> Tensor:
    """Resamples a (1, 1 + G*G, D) table (class position first) to (1, 1 + grid*grid, D), bicubic."""
    base = round((pos_embed.shape[1] - 1) ** 0.5)
    if base == grid:
        return pos_embed
    return resample_abs_pos_embed(pos_embed, new_size=[grid, grid], old_size=[base, base], num_prefix_tokens=1)

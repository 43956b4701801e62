"""Residual spatial reduction between stages (the idea of ViT-ResNAS, written anew).

The token grid is halved by a strided 3x3 convolution, and a parameter-free skip
(2x2 average pooling, channels zero-padded to the new width) keeps the block
residual, so a freshly initialised reduction starts close to "pool and pad". The
class token goes through a linear layer with the same zero-padded skip. Odd grids
round up (the pooling uses ceil mode and averages the partial windows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["spatial_reduction", "reduce_normalised", "pad_channels"]


def spatial_reduction(
    x: Tensor,
    grid: int,
    norm_weight: Tensor,
    norm_bias: Tensor,
    conv_weight: Tensor,
    conv_bias: Tensor,
    cls_weight: Tensor,
    cls_bias: Tensor,
    eps: float,
) -> Tensor:
    """Halves the token grid and changes the width.

    Args:
        x: (B, 1 + grid * grid, D_in), class token first.
        conv_weight: (D_out, D_in, 3, 3); cls_weight: (D_out, D_in).

    Returns:
        (B, 1 + g * g, D_out) with g = ceil(grid / 2).
    """
    normed = F.layer_norm(x, (x.shape[-1],), norm_weight, norm_bias, eps)
    return reduce_normalised(x, normed, grid, conv_weight, conv_bias, cls_weight, cls_bias)


def reduce_normalised(
    x: Tensor, normed: Tensor, grid: int, conv_weight: Tensor, conv_bias: Tensor, cls_weight: Tensor, cls_bias: Tensor
) -> Tensor:
    """The reduction given the tokens `x` and their normalised form (the masked pass normalises its own way)."""
    batch, _, dim = x.shape
    out_dim = conv_weight.shape[0]
    image = normed[:, 1:].transpose(1, 2).reshape(batch, dim, grid, grid)  # (B, D_in, g, g)
    main = F.conv2d(image, conv_weight, conv_bias, stride=2, padding=1)  # (B, D_out, g', g')
    raw = x[:, 1:].transpose(1, 2).reshape(batch, dim, grid, grid)
    skip = pad_channels(F.avg_pool2d(raw, kernel_size=2, stride=2, ceil_mode=True), out_dim, dim=1)
    patches = (main + skip).flatten(2).transpose(1, 2)  # (B, g'^2, D_out)
    cls = F.linear(normed[:, :1], cls_weight, cls_bias) + pad_channels(x[:, :1], out_dim, dim=2)
    return torch.cat([cls, patches], dim=1)


def pad_channels(x: Tensor, width: int, dim: int) -> Tensor:
    """Zero-pads (or crops) dimension `dim` of x to `width`."""
    extra = width - x.shape[dim]
    if extra == 0:
        return x
    return F.pad(x, [0, 0] * (x.dim() - 1 - dim) + [0, extra])

"""Per-sample channel-masked variants of the shared layers (the idea of ViT-ResNAS, written anew).

In a masked multi-architecture pass every tensor keeps the supernet's maximal width
and each sample zeroes the channels, heads and hidden units its sub-network does not
have. Linear maps, convolutions and attention are then exact as they are: a zero input
channel contributes nothing and receives no gradient. What is not exact as it is:

- LayerNorm would average over the zeros too; `masked_layer_norm` takes the mean and
  variance over each sample's active channels only and re-masks its output.
- Attention must drop whole heads before the output projection mixes them, and a
  reducer's class attention must average over the active heads only: both are the
  ``head_mask`` argument of `vitnas.nn.attention`.

`masked_spatial_reduction` is `vitnas.nn.spatial_reduction` with the masked
LayerNorm; the average-pooled skip is zero-padded by the masks themselves.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vitnas.nn.spatial_reduction import reduce_normalised

__all__ = ["masked_layer_norm", "masked_spatial_reduction"]


def masked_layer_norm(x: Tensor, mask: Tensor, width: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """LayerNorm of each sample over its active channels only, zero elsewhere.

    Equals ``F.layer_norm`` of the sliced sub-network on the active channels, so sample b
    sees what its own sub-network computes. Written with plain tensor ops so autograd
    derives the backward (no hand-written gradient to keep in sync).

    Args:
        x: (B, N, D), already zero outside `mask`.
        mask: (B, 1, D) bool, a sample's active channels.
        width: (B, 1, 1) float, the number of active channels of each sample.
        weight, bias: (D,), the stored (maximal) affine parameters.

    Returns:
        (B, N, D): fp32 under autocast (as ``F.layer_norm`` there), else x's dtype.
    """
    autocast = torch.is_autocast_enabled(x.device.type)
    values = x.float()
    mean = values.sum(dim=-1, keepdim=True) / width  # (B, N, 1)
    centred = (values - mean) * mask  # (B, N, D)
    variance = centred.square().sum(dim=-1, keepdim=True) / width  # (B, N, 1)
    out = (centred * torch.rsqrt(variance + eps) * weight + bias) * mask
    return out if autocast else out.to(x.dtype)


def masked_spatial_reduction(
    x: Tensor,
    grid: int,
    in_mask: Tensor,
    in_width: Tensor,
    out_mask: Tensor,
    weights: tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor],
    eps: float,
) -> Tensor:
    """Residual spatial reduction at full width, per-sample masked.

    The input is zero beyond each sample's input width, so the average-pooled skip is
    already zero-padded there; masking the output with `out_mask` crops it where a
    sample's output width is the smaller one, as the sliced reduction does.

    Args:
        x: (B, 1 + grid * grid, D_in), class token first, zero outside `in_mask`.
        in_mask: (B, 1, D_in) bool; in_width: (B, 1, 1) float active input channels.
        out_mask: (B, 1, D_out) bool.
        weights: the stored norm weight and bias, conv weight (D_out, D_in, 3, 3) and bias,
            class-token linear weight (D_out, D_in) and bias.

    Returns:
        (B, 1 + g * g, D_out) with g = ceil(grid / 2), zero outside `out_mask`.
    """
    norm_weight, norm_bias, conv_weight, conv_bias, cls_weight, cls_bias = weights
    normed = masked_layer_norm(x, in_mask, in_width, norm_weight, norm_bias, eps)
    return reduce_normalised(x, normed, grid, conv_weight, conv_bias, cls_weight, cls_bias) * out_mask

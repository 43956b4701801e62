"""Per-sample channel-masked variants of the shared layers (the idea of ViT-ResNAS, written anew).

In a masked multi-architecture pass every tensor keeps the supernet's maximal width
and each sample zeroes the channels, heads and hidden units its sub-network does not
have. Linear maps, convolutions and attention are then exact as they are: a zero input
channel contributes nothing and receives no gradient. Three things are not, and get a
variant here:

- LayerNorm would average over the zeros too; `masked_layer_norm` takes the mean and
  variance over each sample's active channels only and re-masks its output.
- The token reducer ranks tokens by the class attention averaged over heads;
  `masked_class_attention` averages over each sample's active heads only.
- Attention must drop whole heads before the output projection mixes them;
  `masked_multi_head_attention` does that and otherwise runs the same fused
  `scaled_dot_product_attention` as `vitnas.layers.multi_head_attention`.

`masked_spatial_reduction` is `vitnas.layers.spatial_reduction` with the masked
LayerNorm; the average-pooled skip is zero-padded by the masks themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vitnas.layers.spatial_reduction import reduce_normalised

__all__ = ["masked_layer_norm", "masked_class_attention", "masked_multi_head_attention", "masked_spatial_reduction"]


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


def masked_class_attention(q: Tensor, k: Tensor, head_mask: Tensor) -> Tensor:
    """The class token's attention over the other tokens, averaged over each sample's active heads.

    Args:
        q, k: (B, H, N, hd), token 0 being the class token.
        head_mask: (B, H, 1, 1) bool; every sample needs at least one active head.

    Returns:
        (B, N - 1) in fp32, as `vitnas.layers.class_attention` of the sliced sub-network.
    """
    scale = q.shape[-1] ** -0.5
    logits = (q[:, :, :1] * scale) @ k.transpose(-2, -1)  # (B, H, 1, N)
    probs = logits.float().softmax(dim=-1)[:, :, 0, 1:]  # (B, H, N - 1)
    weights = head_mask[:, :, :, 0].float()  # (B, H, 1)
    return (probs * weights).sum(dim=1) / weights.sum(dim=1)  # (B, N - 1)


def masked_multi_head_attention(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    head_width: int,
    head_mask: Tensor,
    need_class_attention: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Self-attention at full width with each sample's inactive heads zeroed before the projection.

    Args:
        x: (B, N, D), class token first, zero outside the sample's active channels.
        qkv_weight: (3 * A, D) with rows [q; k; v], A = H * head_width.
        proj_weight: (D, A).
        head_width: width of one head (the same for every sample: masks drop whole heads).
        head_mask: (B, H, 1, 1) bool, the first h heads of a sample with h heads.
        need_class_attention: also return the class attention over the active heads.

    Returns:
        The attention output (B, N, D) (the projection bias is not masked: the caller masks
        channels), and the class attention (B, N - 1) in fp32, or None.
    """
    batch, tokens, _ = x.shape
    qkv = F.linear(x, qkv_weight, qkv_bias)  # (B, N, 3A)
    q, k, v = qkv.view(batch, tokens, 3, -1, head_width).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, hd)
    out = F.scaled_dot_product_attention(q, k, v) * head_mask  # (B, H, N, hd)
    out = F.linear(out.transpose(1, 2).reshape(batch, tokens, -1), proj_weight, proj_bias)  # (B, N, D)
    return out, masked_class_attention(q, k, head_mask) if need_class_attention else None


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

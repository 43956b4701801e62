"""Multi-head self-attention, the one implementation every forward path calls.

The main product runs through `F.scaled_dot_product_attention` (flash / memory-efficient
kernels on GPU). Token reducers need more than its output (the class token's attention
row, the keys), which SDPA does not return, so the block hands q and k to the
reducer's scorer: `class_attention` recomputes just the class row, O(N) instead of
materialising the O(N^2) attention matrix.

In a masked multi-arch pass (`vitnas.supernet.masked`) tensors keep the supernet's full width
and `head_mask` zeroes each sample's inactive heads before the output projection mixes
them; everywhere else it is None.
"""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

__all__ = ["self_attention", "cross_attention", "class_attention", "Scorer"]

# (q, k, head_mask, bias) -> scores a token reducer ranks by
Scorer = Callable[[Tensor, Tensor, "Tensor | None", "Tensor | None"], Tensor]


def self_attention(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    head_width: int,
    head_mask: Tensor | None = None,
    bias: Tensor | None = None,
    scorer: Scorer | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Self-attention over all tokens.

    Args:
        x: tokens, shape (B, N, D); token 0 is the class token.
        qkv_weight: (3 * A, D) with rows [q; k; v], A = heads * head_width.
        proj_weight: (D, A).
        head_width: width of one head.
        head_mask: (B, H, 1, 1) bool, a sample's active heads (masked passes only).
        bias: additive attention bias broadcastable to (B, H, N, N), or None.
        scorer: a token reducer's scorer, called with (q, k, head_mask, bias).

    Returns:
        The attention output (B, N, D), and the scorer's result or None.
    """
    batch, tokens, _ = x.shape
    qkv = F.linear(x, qkv_weight, qkv_bias)  # (B, N, 3A)
    q, k, v = qkv.view(batch, tokens, 3, -1, head_width).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, hd)
    bias = bias.to(q.dtype) if bias is not None else None  # SDPA wants the query's dtype (autocast)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, N, hd)
    if head_mask is not None:
        out = out * head_mask
    out = F.linear(out.transpose(1, 2).reshape(batch, tokens, -1), proj_weight, proj_bias)  # (B, N, D)
    return out, scorer(q, k, head_mask, bias) if scorer is not None else None


def class_attention(q: Tensor, k: Tensor, head_mask: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """The class token's softmax attention over the other tokens, averaged over (active) heads.

    Args:
        q, k: (B, H, N, hd), token 0 being the class token.
        head_mask: (B, H, 1, 1) bool: average over each sample's active heads only; None: all.
        bias: the attention's additive bias, broadcastable to (B, H, N, N), or None.

    Returns:
        (B, N - 1) in fp32; row b sums to 1 minus the class token's attention to itself.
    """
    scale = q.shape[-1] ** -0.5
    logits = (q[:, :, :1] * scale) @ k.transpose(-2, -1)  # (B, H, 1, N)
    if bias is not None:
        logits = logits + bias[..., :1, :]
    probs = logits.float().softmax(dim=-1)[:, :, 0, 1:]  # (B, H, N - 1)
    if head_mask is None:
        return probs.mean(dim=1)
    weights = head_mask[:, :, :, 0].float()  # (B, H, 1)
    return (probs * weights).sum(dim=1) / weights.sum(dim=1)  # (B, N - 1)


def cross_attention(
    queries: Tensor,
    context: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    head_width: int,
    head_mask: Tensor | None = None,
) -> Tensor:
    """A self-attention's weights run as cross-attention: q from `queries`, k and v from `context`.

    Token reducers that build or restore tokens by attention (STViT) call it with the
    block's own weights, so they add no parameters and a supernet shares them.

    Args:
        queries: (B, M, D). context: (B, N, D).
        qkv_weight, qkv_bias, proj_weight, proj_bias, head_width, head_mask: as in `self_attention`.

    Returns:
        (B, M, D): the attention output for each query.
    """
    batch, count, _ = queries.shape
    attn_dim = qkv_weight.shape[0] // 3
    q_bias, kv_bias = (qkv_bias[:attn_dim], qkv_bias[attn_dim:]) if qkv_bias is not None else (None, None)
    q = F.linear(queries, qkv_weight[:attn_dim], q_bias).view(batch, count, -1, head_width).transpose(1, 2)
    kv = F.linear(context, qkv_weight[attn_dim:], kv_bias)  # (B, N, 2A)
    k, v = kv.view(batch, context.shape[1], 2, -1, head_width).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, hd)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, H, M, hd), q being (B, H, M, hd) too
    if head_mask is not None:
        out = out * head_mask
    return F.linear(out.transpose(1, 2).reshape(batch, count, -1), proj_weight, proj_bias)  # (B, M, D)

"""EViT: keep the tokens the class token attends to most, fuse the rest into one token.

The baseline reducer of SuperViT and EViT: no parameters, the keep rate is a forward
argument, and the class-attention row comes from a separate ``q_cls · Kᵀ`` product
(O(N)) rather than from the fused attention, which does not return probabilities.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vitnas.nn.attention import class_attention
from vitnas.nn.reducers.base import TokenReducer, Tokens, kept_token_count

__all__ = ["EViT", "fuse_inattentive_tokens"]


class EViT(TokenReducer):
    """Class-attention top-k; the dropped tokens become one attention-weighted token."""

    name = "evit"

    def score(self, q: Tensor, k: Tensor, head_mask: Tensor | None, bias: Tensor | None) -> Tensor:
        return class_attention(q, k, head_mask, bias)  # (B, N - 1)

    def reduce(self, tokens: Tokens, scores: Tensor, keep_rate: float) -> Tokens:
        return tokens.with_x(fuse_inattentive_tokens(tokens.x, scores, keep_rate))


def fuse_inattentive_tokens(x: Tensor, class_attention: Tensor, keep_rate: float) -> Tensor:
    """Keeps the tokens the class token attends to most; fuses the rest into one token.

    Args:
        x: (B, 1 + n, D), class token first.
        class_attention: (B, n), the class token's attention to each other token.
        keep_rate: fraction of the n tokens to keep.

    Returns:
        (B, 1 + k + 1, D): class token, the k kept tokens in order of attention, and the
        attention-weighted sum of the dropped ones; `x` itself where nothing is dropped.
    """
    patches = x.shape[1] - 1
    kept = kept_token_count(patches, keep_rate)
    if kept >= patches:
        return x
    order = class_attention.argsort(dim=1, descending=True)  # (B, n)
    ranked = x[:, 1:].gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, n, D)
    weights = class_attention.gather(1, order[:, kept:]).unsqueeze(-1).to(x.dtype)  # (B, n - k, 1)
    fused = (ranked[:, kept:] * weights).sum(dim=1, keepdim=True)  # (B, 1, D)
    return torch.cat([x[:, :1], ranked[:, :kept], fused], dim=1)

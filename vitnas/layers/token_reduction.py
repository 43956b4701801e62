"""Token reduction by class attention with one fused token (EViT-style).

Speed comes from fewer tokens only if every image of a (sub-)batch keeps the same
number of tokens, cut out with gather; masks save nothing. So the count kept at a
block is a pure function of the token count and the keep rate, shared with the cost
model and the latency predictor through `tokens_after_reduction`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["kept_token_count", "tokens_after_reduction", "fuse_inattentive_tokens"]


def kept_token_count(num_patch_tokens: int, keep_rate: float) -> int:
    """Patch tokens kept: ``ceil(keep_rate * n)``, at least 1.

    The tiny epsilon keeps float noise (0.7 * 100 = 70.00000000000001) from adding a token.
    """
    return max(1, math.ceil(keep_rate * num_patch_tokens - 1e-9))


def tokens_after_reduction(num_tokens: int, keep_rate: float) -> int:
    """Sequence length after a reduction of a sequence of `num_tokens` (class token included)."""
    patches = num_tokens - 1
    kept = kept_token_count(patches, keep_rate)
    return num_tokens if kept >= patches else 1 + kept + 1


def fuse_inattentive_tokens(x: Tensor, class_attention: Tensor, keep_rate: float) -> Tensor:
    """Keeps the patch tokens the class token attends to most; fuses the rest into one token.

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

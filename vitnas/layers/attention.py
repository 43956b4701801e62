"""Multi-head self-attention, shared by the supernet and the standalone ViT.

The main product runs through `F.scaled_dot_product_attention` (flash / memory-efficient
kernels on GPU). Token reducers need the class token's attention over the patches,
which SDPA does not return, so `class_attention` recomputes just that one row from
q and k: O(N) instead of materialising the O(N^2) attention matrix.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["multi_head_attention", "class_attention"]


def multi_head_attention(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    num_heads: int,
    need_class_attention: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Self-attention over all tokens.

    Args:
        x: tokens, shape (B, N, D); token 0 is the class token.
        qkv_weight: (3 * A, D) with rows [q; k; v], A = num_heads * head_dim.
        proj_weight: (D, A).
        num_heads: heads; each is A / num_heads wide.
        need_class_attention: also return the class token's attention over the other tokens.

    Returns:
        The attention output (B, N, D), and the class attention (B, N - 1) averaged over
        heads (fp32), or None.
    """
    batch, tokens, _ = x.shape
    qkv = F.linear(x, qkv_weight, qkv_bias)  # (B, N, 3A)
    q, k, v = qkv.view(batch, tokens, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, N, hd)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, hd)
    out = F.linear(out.transpose(1, 2).reshape(batch, tokens, -1), proj_weight, proj_bias)
    return out, class_attention(q, k) if need_class_attention else None


def class_attention(q: Tensor, k: Tensor) -> Tensor:
    """The class token's softmax attention over the other tokens, averaged over heads.

    Args:
        q, k: (B, h, N, hd), token 0 being the class token.

    Returns:
        (B, N - 1) in fp32; row b sums to 1 minus the class token's attention to itself.
    """
    scale = q.shape[-1] ** -0.5
    logits = (q[:, :, :1] * scale) @ k.transpose(-2, -1)  # (B, h, 1, N)
    return logits.float().softmax(dim=-1).mean(dim=1)[:, 0, 1:]

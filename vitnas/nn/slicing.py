"""First-k slicing of shared weights.

Every slice is made contiguous: the supernet then feeds its kernels exactly the
tensors an extracted model holds, so both compute the same numbers (and rank tokens
identically), and a copied slice is what `extract` stores anyway.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["slice_rows_cols", "slice_vector", "slice_qkv"]


def slice_rows_cols(weight: Tensor, rows: int, cols: int) -> Tensor:
    """The top-left (rows, cols) block of a (out, in, ...) weight."""
    return weight[:rows, :cols].contiguous()


def slice_vector(vector: Tensor, size: int) -> Tensor:
    return vector[:size].contiguous()


def slice_qkv(weight: Tensor, bias: Tensor | None, attn_dim: int, in_dim: int) -> tuple[Tensor, Tensor | None]:
    """The first `attn_dim` rows of each of the q, k and v blocks of a fused (3A_max, D_max) projection."""
    max_attn = weight.shape[0] // 3
    w = weight.view(3, max_attn, -1)[:, :attn_dim, :in_dim].reshape(3 * attn_dim, in_dim)
    b = bias.view(3, max_attn)[:, :attn_dim].reshape(3 * attn_dim) if bias is not None else None
    return w, b

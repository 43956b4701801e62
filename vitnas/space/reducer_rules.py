"""What the space side knows of each token reducer: its rules and the integer arithmetic of its shapes.

A reducer is two things. Its *forward* (scoring, gathering, merging tokens) is torch
code in `vitnas.nn.reducers`. Its *shape arithmetic* (how many tokens it leaves, the
parameters and MACs it adds, what its stage end costs) is a pure function of integers,
and that is what a search space needs: the closed-form costs (`vitnas.space.cost`), the
per-block layout (`vitnas.space.blocks`) and the checks of a space file all live below
the layers, so that costing millions of candidates, checking a space or printing
``vitnas space`` needs no torch. So the arithmetic lives here, one class per reducer
beside the rules a space file is checked by, and each `vitnas.nn.reducers.TokenReducer`
answers its count and cost questions from its entry here (`TokenReducer.info`).
`tests/test_reducers.py` holds the two halves together: the forward leaves exactly
`tokens_after` tokens and `torch.utils.flop_counter` counts exactly these MACs.

Adding a reducer therefore means an entry in `REDUCERS` (its rules and arithmetic) and
a `TokenReducer` of the same name (its forward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ReducerInfo", "REDUCERS", "kept_token_count", "merged_count"]


def kept_token_count(num_patch_tokens: int, keep_rate: float) -> int:
    """Tokens kept for full computation: ``ceil(keep_rate * n)``, at least 1.

    The tiny epsilon keeps float noise (0.7 * 100 = 70.00000000000001) from adding a token.
    """
    return max(1, math.ceil(keep_rate * num_patch_tokens - 1e-9))


def merged_count(patches: int, keep_rate: float) -> int:
    """ToMe's r: tokens merged away among `patches`, to keep ``ceil(keep_rate * n)``, at most the size of set A."""
    return max(0, min(patches - kept_token_count(patches, keep_rate), math.ceil(patches / 2)))


@dataclass(frozen=True)
class ReducerInfo:
    """What a space file, a standalone config and the costs must know of a token reducer, without torch.

    Sequence lengths count the class token; `n` is the number of other tokens. The
    defaults describe a reducer that keeps ``ceil(keep_rate * n)`` tokens, adds nothing
    and computes nothing at its stage end; each reducer overrides what differs.
    """

    preserves_grid: bool  # every grid token survives to the end of its stage: may reduce before a spatial reduction
    min_keep_rate: float  # smallest keep rate the reducer can honour exactly

    def tokens_after(self, tokens: int, keep_rate: float) -> int:
        """Sequence length after the reduction of a sequence of `tokens` (class token included)."""
        return 1 + kept_token_count(tokens - 1, keep_rate)

    def extra_macs(self, tokens: int, keep_rate: float, embed_dim: int, num_heads: int, head_dim: int) -> int:
        """Multiply-accumulates per image the reducer adds to a block that `tokens` enter (scoring, matching)."""
        return 0

    def extra_params(self, embed_dim: int) -> int:
        """Parameters the reducer adds to its block (those of `TokenReducer.build_parameters`)."""
        return 0

    def finish_macs(self, grid_tokens: int, tokens: int, embed_dim: int, num_heads: int, head_dim: int) -> int:
        """MACs per image of the reducer's stage end, in a stage entered by `grid_tokens` and left by `tokens`.

        `num_heads` and `head_dim` are those of the stage's first block that reduced (whose
        attention STViT-R recovers with).
        """
        return 0


class _EViT(ReducerInfo):
    """Class-attention top-k; the rest fused into one token (Evo-ViT counts alike: k slow tokens, one summary)."""

    def tokens_after(self, tokens: int, keep_rate: float) -> int:
        patches = tokens - 1
        kept = kept_token_count(patches, keep_rate)
        return tokens if kept >= patches else 1 + kept + 1

    def extra_macs(self, tokens: int, keep_rate: float, embed_dim: int, num_heads: int, head_dim: int) -> int:
        return tokens * num_heads * head_dim  # q_cls @ K^T


class _ToMe(ReducerInfo):
    """Bipartite matching merges r = `merged_count` tokens, at most half."""

    def tokens_after(self, tokens: int, keep_rate: float) -> int:
        return tokens - merged_count(tokens - 1, keep_rate)

    def extra_macs(self, tokens: int, keep_rate: float, embed_dim: int, num_heads: int, head_dim: int) -> int:
        patches = tokens - 1
        if merged_count(patches, keep_rate) == 0:
            return 0
        return math.ceil(patches / 2) * (patches // 2) * head_dim  # similarities of A x B


class _STViT(ReducerInfo):
    """k pooled semantic tokens, refined by one cross-attention over the m tokens they came from."""

    def extra_macs(self, tokens: int, keep_rate: float, embed_dim: int, num_heads: int, head_dim: int) -> int:
        """The refinement: q of k centres, k/v of the m tokens, q @ k^T and attention @ v, output projection."""
        tokens_in = tokens - 1
        kept = kept_token_count(tokens_in, keep_rate)
        if kept >= tokens_in:
            return 0
        attn = num_heads * head_dim
        return 2 * kept * embed_dim * attn + 2 * tokens_in * embed_dim * attn + 2 * kept * tokens_in * attn


class _STViTRecovery(_STViT):
    """STViT's semantic tokens; the image tokens recovered by cross-attention at the stage end."""

    def finish_macs(self, grid_tokens: int, tokens: int, embed_dim: int, num_heads: int, head_dim: int) -> int:
        """The recovery: q of the n image tokens, k/v of the k semantic ones, both products, output projection."""
        image, semantic = grid_tokens - 1, tokens - 1
        if semantic >= image:
            return 0
        attn = num_heads * head_dim
        return 2 * image * embed_dim * attn + 2 * semantic * embed_dim * attn + 2 * image * semantic * attn


class _DynamicViT(ReducerInfo):
    """A learned predictor (LayerNorm, Linear, then an MLP to two logits) scores each patch token."""

    def extra_macs(self, tokens: int, keep_rate: float, embed_dim: int, num_heads: int, head_dim: int) -> int:
        patches = tokens - 1
        if kept_token_count(patches, keep_rate) >= patches:
            return 0
        dim = embed_dim
        return patches * (dim * dim + dim * (dim // 2) + (dim // 2) * (dim // 4) + (dim // 4) * 2)

    def extra_params(self, embed_dim: int) -> int:
        dim, half, quarter = embed_dim, embed_dim // 2, embed_dim // 4
        return 2 * dim + (dim * dim + dim) + (dim * half + half) + (half * quarter + quarter) + (quarter * 2 + 2)


# Token reducers by the name a space file or a `BlockConfig` gives them.
REDUCERS: dict[str, ReducerInfo] = {
    "evit": _EViT(preserves_grid=False, min_keep_rate=0.0),  # class-attention top-k, rest fused into one
    "evo_vit": _EViT(preserves_grid=True, min_keep_rate=0.0),  # top-k slow, rest set aside and updated fast
    "tome": _ToMe(preserves_grid=False, min_keep_rate=0.5),  # bipartite matching merges at most half
    "stvit": _STViT(preserves_grid=False, min_keep_rate=0.0),  # pooled, attention-refined semantic tokens
    "stvit_r": _STViTRecovery(preserves_grid=True, min_keep_rate=0.0),  # the same; image tokens recovered at stage end
    "dynamicvit": _DynamicViT(preserves_grid=False, min_keep_rate=0.0),  # learned predictor's top-k, rest dropped
}

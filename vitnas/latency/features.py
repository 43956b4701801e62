"""The work terms a latency predictor weighs: what an arch computes, counted per image.

Latency is modelled as a non-negative combination of terms whose cost each kernel
scales with: matrix-product MACs (by kind, because attention's batched products,
the projections and the MLP reach different efficiencies), elements the memory-bound
ops read and write (LayerNorm, residual adds, GELU, softmax, the token gather), the
weights each pass reads (at batch 1 with few tokens a projection is bound by reading
its weights, not by its MACs), and fixed per-call overheads (kernel launches: one
constant per block, per reducing block, per spatial reduction and per model). Each
token reducer also has a term of its own (one per block it reduces at), because their
launches differ (ToMe's matching and scatters, Evo-ViT's set-aside bookkeeping, EViT's
one gather): with the reducer a searched choice, the profile must tell them apart.
A reducer's stage-end step (STViT-R's recovery attention, `vitnas.space.cost.stage_finish_macs`)
counts in ``attention_macs`` with the reducers' own products.
Activation terms are counted per image and weight terms per pass; either way a
profile is fitted at one batch size, whose factor the coefficients absorb.

Block terms depend only on a block's shape, so a predictor caches one row per
distinct shape; arch terms depend on the patch grid and the stage widths.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vitnas.space.arch import Arch
from vitnas.space.blocks import BlockShape, arch_layout
from vitnas.space.cost import stage_finish_macs
from vitnas.space.reducer_rules import REDUCERS
from vitnas.space.space import SearchSpace
from vitnas.space.spec import stage_grid

__all__ = ["ARCH_FEATURES", "BLOCK_FEATURES", "FEATURES", "REDUCER_FEATURES", "arch_row", "block_row", "feature_row",
           "feature_matrix"]

ARCH_FEATURES: tuple[str, ...] = (
    "constant",  # per forward pass: input handling, class token, final norm, head launches
    "patch_embed_macs",  # the patchifying convolution
    "embed_memory",  # tokens x width entering the first stage (flatten, concat, position add)
    "stage_reductions",  # spatial reductions between stages (a few launches each)
    "reduction_macs",  # their strided convolution and class-token linear
    "head_memory",  # final norm over the last tokens, and the classifier
)
BLOCK_FEATURES: tuple[str, ...] = (
    "blocks",  # per block: its fixed launch overhead
    "qkv_proj_macs",  # q/k/v and output projections
    "attention_macs",  # q @ k^T and attention @ v, and a token reducer's own products (scores, matching)
    "attention_scores",  # heads x tokens^2 softmax elements
    "mlp_macs",  # fc1 and fc2 on the tokens left after any reduction
    "token_memory",  # LayerNorms and residual adds over tokens x width
    "mlp_memory",  # GELU over tokens x hidden
    "weight_memory",  # weights the projections and MLP read once per pass: dominant when there are few token rows
    "reducing_blocks",  # per block with a token reducer: scoring, sort, gather launches
    "reduction_memory",  # tokens x width those ops read and write
)
# per block reducing with that reducer: what its own ops cost beyond the shared reducing_blocks term
REDUCER_FEATURES: tuple[str, ...] = tuple(f"reducer_{name}" for name in REDUCERS)
BLOCK_FEATURES += REDUCER_FEATURES
FEATURES: tuple[str, ...] = ARCH_FEATURES + BLOCK_FEATURES


def block_row(shape: BlockShape) -> np.ndarray:
    """The block terms of one block, in `BLOCK_FEATURES` order."""
    n, after, dim, attn = shape.tokens, shape.tokens_after, shape.embed_dim, shape.attn_dim
    reduces = 1.0 if shape.reducer is not None else 0.0
    return np.array(
        [
            1.0,
            4.0 * n * dim * attn,
            2.0 * n * n * attn + shape.reducer_macs,
            float(shape.num_heads * n * n),
            2.0 * after * dim * shape.mlp_hidden,
            float((n + after) * dim),
            float(after * shape.mlp_hidden),
            float(4 * dim * attn + 2 * dim * shape.mlp_hidden),
            reduces,
            reduces * n * dim,
            *(float(shape.reducer == name) for name in REDUCERS),
        ]
    )


def arch_row(space: SearchSpace, arch: Arch, final_tokens: int) -> np.ndarray:
    """The arch terms, in `ARCH_FEATURES` order; `final_tokens` is the last stage's output length."""
    grid = arch.img_size // arch.patch_size
    dims = [stage.embed_dim for stage in arch.stages]
    reduction_macs = sum(
        stage_grid(grid, index) ** 2 * dims[index] * dims[index - 1] * 9 + dims[index - 1] * dims[index]
        for index in range(1, len(dims))
    )
    return np.array(
        [
            1.0,
            float(grid * grid * dims[0] * space.in_chans * arch.patch_size**2),
            float((1 + grid * grid) * dims[0]),
            float(len(dims) - 1),
            float(reduction_macs),
            float(final_tokens * dims[-1] + dims[-1] * space.num_classes),
        ]
    )


def feature_row(space: SearchSpace, arch: Arch) -> np.ndarray:
    """All terms of `arch`, in `FEATURES` order: the reference the fast predictor path must equal."""
    space.validate(arch)
    layout = arch_layout(space.spec, arch)
    blocks = np.sum([block_row(shape) for shape in layout.blocks], axis=0)
    blocks[BLOCK_FEATURES.index("attention_macs")] += stage_finish_macs(layout.blocks)
    return np.concatenate([arch_row(space, arch, layout.tokens_out), blocks])


def feature_matrix(space: SearchSpace, archs: Sequence[Arch]) -> np.ndarray:
    """One `feature_row` per arch: shape (len(archs), len(FEATURES))."""
    return np.stack([feature_row(space, arch) for arch in archs]) if archs else np.zeros((0, len(FEATURES)))

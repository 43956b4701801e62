"""Closed-form parameter and MAC counts of any arch.

Pure functions of (space, arch): no model is built, so the searcher can cost millions
of candidates. Tests hold them to ``sum(p.numel())`` of the extracted model (exactly)
and to `torch.utils.flop_counter` (within 1%).

The work is counted in **multiply-accumulates (MACs) of matrix products and
convolutions**, per image: the convention behind "DeiT-S: 4.6 GFLOPs", which are MACs. LayerNorm, GELU,
softmax, pooling and the token gather are left out, as `torch.utils.flop_counter`
leaves them out (it reports 2 FLOPs per MAC). The counts are sums over the arch's
layout (`vitnas.space.blocks.arch_layout`, the one arch-to-blocks derivation);
`block_shapes` exposes its blocks, for latency tables. Token counts after a reduction
and a reducer's own parameters and MACs are the reducer's integer rules
(`vitnas.space.reducer_rules`), which its forward in `vitnas.nn.reducers` honours.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from vitnas._moved import moved_attribute
from vitnas.space.arch import Arch
from vitnas.space.blocks import BlockShape, arch_layout
from vitnas.space.reducer_rules import REDUCERS
from vitnas.space.spec import SpaceSpec, StageSpec

__all__ = ["BlockShape", "CheckedSpace", "block_shapes", "stage_output_tokens", "stage_finish_macs", "count_params",
           "count_macs"]


class CheckedSpace(Protocol):
    """What the costs need of a search space: its spec, and the check that an arch lies in it.

    `vitnas.space.space.SearchSpace` is the one there is. A protocol rather than an import
    of it, even for type hints only: the space ranks its reducer choices by these very
    costs (`SearchSpace.largest`, `smallest`), so importing it here would close a circle.
    """

    spec: SpaceSpec

    def validate(self, arch: Arch) -> None: ...


def block_shapes(space: CheckedSpace, arch: Arch) -> list[BlockShape]:
    """Shapes of every block of `arch`, in order.

    Raises:
        ArchError: `arch` is not in `space`.
    """
    space.validate(arch)
    return list(arch_layout(space.spec, arch).blocks)


def stage_output_tokens(spec: StageSpec, tokens: int, grid: int, reducer: str | None = None) -> int:
    """Sequence length leaving a stage whose last block leaves `tokens`: a grid-preserving reducer restores the grid.

    `reducer` is the arch's choice for the stage (`StageArch.reducer`); None takes the space's only one.
    """
    return spec.output_tokens(tokens, grid, reducer)


def stage_finish_macs(shapes: Sequence[BlockShape]) -> int:
    """MACs per image of what reducers compute at their stages' ends (STViT-R's recovery), over all stages.

    A reducer's stage end runs with the attention of the stage's first block that really
    reduced (`ReducerInfo.finish_macs`); stages where nothing was reduced add nothing.
    """
    total = 0
    for stage in sorted({shape.stage for shape in shapes}):
        blocks = [shape for shape in shapes if shape.stage == stage]
        first = next((s for s in blocks if s.reducer is not None and s.tokens_after < s.tokens), None)
        if first is not None:
            total += REDUCERS[first.reducer].finish_macs(blocks[0].tokens, blocks[-1].tokens_after,
                                                         first.embed_dim, first.num_heads, first.head_dim)
    return total


def count_params(space: CheckedSpace, arch: Arch, num_classes: int | None = None) -> int:
    """Parameters of the standalone model of `arch` (as `vitnas.extract` builds it)."""
    space.validate(arch)
    layout = arch_layout(space.spec, arch)
    classes = space.spec.num_classes if num_classes is None else num_classes
    first, last = layout.stages[0].embed_dim, layout.stages[-1].embed_dim
    total = first * space.spec.in_chans * arch.patch_size**2 + first  # patch embedding
    total += first  # class token
    for prev, stage in zip((None,) + layout.stages[:-1], layout.stages):
        dim = stage.embed_dim
        total += stage.tokens_in * dim  # position embedding
        if prev is not None:  # the spatial reduction into the stage: norm, conv, class-token linear
            total += 2 * prev.embed_dim + dim * prev.embed_dim * 9 + dim + prev.embed_dim * dim + dim
    for shape in layout.blocks:
        dim, attn, hidden = shape.embed_dim, shape.attn_dim, shape.mlp_hidden
        total += 4 * dim  # two LayerNorms
        total += 3 * attn * dim + 3 * attn + attn * dim + dim  # qkv, proj
        total += 2 * hidden * dim + hidden + dim  # fc1, fc2
        total += REDUCERS[shape.reducer].extra_params(dim) if shape.reducer else 0
    return total + 2 * last + last * classes + classes  # final norm, head


def count_macs(space: CheckedSpace, arch: Arch, num_classes: int | None = None) -> int:
    """Multiply-accumulates per image of the sub-network `arch` (see the module docstring)."""
    space.validate(arch)
    layout = arch_layout(space.spec, arch)
    classes = space.spec.num_classes if num_classes is None else num_classes
    first = layout.stages[0].embed_dim
    total = layout.grid**2 * first * space.spec.in_chans * arch.patch_size**2  # patch embedding
    for prev, stage in zip(layout.stages, layout.stages[1:]):
        dim = stage.embed_dim
        total += stage.grid**2 * dim * prev.embed_dim * 9 + prev.embed_dim * dim  # conv, class-token linear
    shapes = layout.blocks
    total += stage_finish_macs(shapes)  # e.g. STViT-R's recovery of the image tokens
    for shape in shapes:
        n, dim, attn = shape.tokens, shape.embed_dim, shape.attn_dim
        total += n * dim * 3 * attn + 2 * n * n * attn + n * attn * dim  # qkv, q@k^T and attn@v, proj
        total += shape.reducer_macs  # e.g. EViT's class-token scores q_cls @ k^T
        total += 2 * shape.tokens_after * dim * shape.mlp_hidden  # fc1, fc2
    return total + layout.stages[-1].embed_dim * classes  # head


def __getattr__(name: str) -> Any:  # count_flops, the old name of count_macs (one release)
    return moved_attribute(__name__, name)

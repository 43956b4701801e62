"""Closed-form parameter and MAC counts of any arch.

Pure functions of (space, arch): no model is built, so the searcher can cost millions
of candidates. Tests hold them to ``sum(p.numel())`` of the extracted model (exactly)
and to `torch.utils.flop_counter` (within 1%).

The work is counted in **multiply-accumulates (MACs) of matrix products and
convolutions**, per image: the convention behind "DeiT-S: 4.6 GFLOPs", which are MACs. LayerNorm, GELU,
softmax, pooling and the token gather are left out, as `torch.utils.flop_counter`
leaves them out (it reports 2 FLOPs per MAC). `block_shapes` exposes the per-block
shapes the counts are built from, for latency tables. Token counts after a reduction
and a reducer's own parameters and MACs are the reducer's integer rules
(`vitnas.space.reducer_rules`), which its forward in `vitnas.nn.reducers` honours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from vitnas._moved import moved_attribute
from vitnas.space.reducer_rules import REDUCERS
from vitnas.space.arch import Arch
from vitnas.space.spec import StageSpec, mlp_hidden, stage_grid

if TYPE_CHECKING:  # a space's costs need only its methods: the space module itself asks this one (largest, smallest)
    from vitnas.space.space import SearchSpace

__all__ = ["BlockShape", "block_shape", "block_shapes", "stage_output_tokens", "stage_finish_macs", "count_params",
           "count_macs"]


@dataclass(frozen=True)
class BlockShape:
    """What one transformer block of an arch computes on, per image."""

    stage: int
    tokens: int  # sequence length entering the block (class token included)
    tokens_after: int  # sequence length after its token reduction (== tokens if none)
    embed_dim: int
    num_heads: int
    head_dim: int
    mlp_hidden: int
    keep_rate: float  # < 1.0: the block's reducer scores tokens and may reduce them
    reducer: str | None = None  # name of the block's token reducer, None where keep_rate is 1.0

    @property
    def attn_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def reducer_macs(self) -> int:
        """MACs per image the block's reducer adds (scoring, merging); 0 without one."""
        if self.reducer is None:
            return 0
        reducer = REDUCERS[self.reducer]
        return reducer.extra_macs(self.tokens, self.keep_rate, self.embed_dim, self.num_heads, self.head_dim)


def block_shape(stage: int, tokens: int, embed_dim: int, num_heads: int, head_dim: int, mlp_hidden_dim: int,
                keep_rate: float, reducer: str | None) -> BlockShape:
    """The shape of one block given what enters it; the reducer (if it reduces) sets the length after."""
    reducer = reducer if keep_rate < 1.0 else None
    after = REDUCERS[reducer].tokens_after(tokens, keep_rate) if reducer is not None else tokens
    return BlockShape(stage, tokens, after, embed_dim, num_heads, head_dim, mlp_hidden_dim, keep_rate, reducer)


def block_shapes(space: SearchSpace, arch: Arch) -> list[BlockShape]:
    """Shapes of every block of `arch`, in order."""
    space.validate(arch)
    base_grid = arch.img_size // arch.patch_size
    shapes = []
    for index, (spec, stage) in enumerate(zip(space.stages, arch.stages)):
        tokens = 1 + stage_grid(base_grid, index) ** 2
        for block, (heads, ratio, rate) in enumerate(zip(stage.num_heads, stage.mlp_ratio, stage.keep_rate)):
            reducer = spec.reducer_at(block, stage.reducer) if rate < 1.0 else None
            shape = block_shape(index, tokens, stage.embed_dim, heads, spec.head_width(stage.embed_dim, heads),
                                mlp_hidden(stage.embed_dim, ratio), rate, reducer)
            shapes.append(shape)
            tokens = shape.tokens_after
    return shapes


def stage_output_tokens(spec: StageSpec, tokens: int, grid: int, reducer: str | None = None) -> int:
    """Sequence length leaving a stage whose last block leaves `tokens`: a grid-preserving reducer restores the grid.

    `reducer` is the arch's choice for the stage (`StageArch.reducer`); None takes the space's only one.
    """
    return spec.output_tokens(tokens, grid, reducer)


def stage_finish_macs(shapes: Sequence[BlockShape]) -> int:
    """MACs per image of what reducers compute at their stages' ends (STViT-R's recovery), over all stages.

    A reducer's stage end runs with the attention of the stage's first block that really
    reduced (`TokenReducer.finish_macs`); stages where nothing was reduced add nothing.
    """
    total = 0
    for stage in sorted({shape.stage for shape in shapes}):
        blocks = [shape for shape in shapes if shape.stage == stage]
        first = next((s for s in blocks if s.reducer is not None and s.tokens_after < s.tokens), None)
        if first is not None:
            total += REDUCERS[first.reducer].finish_macs(blocks[0].tokens, blocks[-1].tokens_after,
                                                            first.embed_dim, first.num_heads, first.head_dim)
    return total


def count_params(space: SearchSpace, arch: Arch, num_classes: int | None = None) -> int:
    """Parameters of the standalone model of `arch` (as `vitnas.extract` builds it)."""
    classes = space.num_classes if num_classes is None else num_classes
    base_grid = arch.img_size // arch.patch_size
    first, last = arch.stages[0].embed_dim, arch.stages[-1].embed_dim
    total = first * space.in_chans * arch.patch_size**2 + first  # patch embedding
    total += first  # class token
    for index, stage in enumerate(arch.stages):
        dim = stage.embed_dim
        total += (1 + stage_grid(base_grid, index) ** 2) * dim  # position embedding
        if index:
            prev = arch.stages[index - 1].embed_dim
            total += 2 * prev + dim * prev * 9 + dim + prev * dim + dim  # norm, conv, class-token linear
    for shape in block_shapes(space, arch):
        dim, attn, hidden = shape.embed_dim, shape.attn_dim, shape.mlp_hidden
        total += 4 * dim  # two LayerNorms
        total += 3 * attn * dim + 3 * attn + attn * dim + dim  # qkv, proj
        total += 2 * hidden * dim + hidden + dim  # fc1, fc2
        total += REDUCERS[shape.reducer].extra_params(dim) if shape.reducer else 0
    return total + 2 * last + last * classes + classes  # final norm, head


def count_macs(space: SearchSpace, arch: Arch, num_classes: int | None = None) -> int:
    """Multiply-accumulates per image of the sub-network `arch` (see the module docstring)."""
    classes = space.num_classes if num_classes is None else num_classes
    base_grid = arch.img_size // arch.patch_size
    first = arch.stages[0].embed_dim
    total = base_grid**2 * first * space.in_chans * arch.patch_size**2  # patch embedding
    for index in range(1, len(arch.stages)):
        prev, dim = arch.stages[index - 1].embed_dim, arch.stages[index].embed_dim
        total += stage_grid(base_grid, index) ** 2 * dim * prev * 9 + prev * dim  # conv, class-token linear
    shapes = block_shapes(space, arch)
    total += stage_finish_macs(shapes)  # e.g. STViT-R's recovery of the image tokens
    for shape in shapes:
        n, dim, attn = shape.tokens, shape.embed_dim, shape.attn_dim
        total += n * dim * 3 * attn + 2 * n * n * attn + n * attn * dim  # qkv, q@k^T and attn@v, proj
        total += shape.reducer_macs  # e.g. EViT's class-token scores q_cls @ k^T
        total += 2 * shape.tokens_after * dim * shape.mlp_hidden  # fc1, fc2
    return total + arch.stages[-1].embed_dim * classes  # head


def __getattr__(name: str) -> Any:  # count_flops, the old name of count_macs (one release)
    return moved_attribute(__name__, name)

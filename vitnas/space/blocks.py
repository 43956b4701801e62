"""The one derivation from an arch to the shape of every block it runs.

An `Arch` records choices (a stage's width, each block's head count, MLP ratio and keep
rate, the stage's reducer). What a block computes on follows from those choices and the
space's spec: the width of one head (the space's ``head_dim``, or embed_dim / heads),
the MLP's hidden width (rounded down as timm does), the reducer it runs (none where it
keeps every token, else the stage's choice or the space's only one), and the number of
tokens entering and leaving it (the stage's grid, then what each reducer leaves).

The closed-form costs, the standalone model's config, the supernet's slices and plan,
the masked multi-arch pass and the latency predictor all need exactly these facts.
They used to derive them each on their own, five copies that only tests held together;
a new rule (a searchable reducer, a new head-width convention) now changes here alone.

Pure Python over the spec (`vitnas.space.spec`) and the reducers' integer rules
(`vitnas.space.reducer_rules`): no torch, and no `SearchSpace`, whose `largest` and
`smallest` rank reducers by the costs built on this. The arch is taken as valid:
callers check it against its space first (`SearchSpace.validate`).
"""

from __future__ import annotations

from dataclasses import dataclass

from vitnas.space.arch import Arch, StageArch
from vitnas.space.reducer_rules import REDUCERS
from vitnas.space.spec import SpaceSpec, StageSpec, mlp_hidden, stage_grid

__all__ = ["BlockShape", "StageLayout", "ArchLayout", "arch_layout", "block_shape", "block_reducer"]


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
        return REDUCERS[self.reducer].extra_macs(self.tokens, self.keep_rate, self.embed_dim, self.num_heads,
                                                 self.head_dim)


@dataclass(frozen=True)
class StageLayout:
    """One stage of an arch: its width, token grid and blocks."""

    index: int
    embed_dim: int
    grid: int  # token-grid side in the stage
    in_grid: int | None  # grid side entering its spatial reduction; None for the first stage
    reducer: str | None  # the arch's reducer choice for the stage (`StageArch.reducer`)
    blocks: tuple[BlockShape, ...]
    tokens_out: int  # sequence length leaving the stage (a grid-preserving reducer gives the grid back)

    @property
    def tokens_in(self) -> int:
        """Sequence length entering the first block: the class token and the whole grid."""
        return 1 + self.grid * self.grid


@dataclass(frozen=True)
class ArchLayout:
    """Every block of an arch, stage by stage, with the input it patchifies."""

    img_size: int
    patch_size: int
    stages: tuple[StageLayout, ...]

    @property
    def grid(self) -> int:
        """Token-grid side of the first stage."""
        return self.img_size // self.patch_size

    @property
    def blocks(self) -> tuple[BlockShape, ...]:
        """All blocks, in the order they run."""
        return tuple(block for stage in self.stages for block in stage.blocks)

    @property
    def tokens_out(self) -> int:
        """Sequence length leaving the last stage (what the final norm sees)."""
        return self.stages[-1].tokens_out


def block_reducer(spec: StageSpec, block: int, stage: StageArch) -> str | None:
    """Name of the reducer block `block` of `stage` runs; None where it keeps every token.

    A block reduces where its keep rate is below 1.0, with the stage's chosen reducer
    (`StageArch.reducer`) or, where the space offers no choice, its only one.
    """
    return spec.reducer_at(block, stage.reducer) if stage.keep_rate[block] < 1.0 else None


def block_shape(spec: StageSpec, stage_index: int, stage: StageArch, block: int, tokens: int) -> BlockShape:
    """The shape of block `block` of `stage` when `tokens` enter it; its reducer sets the length after."""
    dim, heads, rate = stage.embed_dim, stage.num_heads[block], stage.keep_rate[block]
    reducer = block_reducer(spec, block, stage)
    after = REDUCERS[reducer].tokens_after(tokens, rate) if reducer is not None else tokens
    return BlockShape(stage_index, tokens, after, dim, heads, spec.head_width(dim, heads),
                      mlp_hidden(dim, stage.mlp_ratio[block]), rate, reducer)


def arch_layout(spec: SpaceSpec, arch: Arch) -> ArchLayout:
    """Lays out every block of `arch` (valid in the space of `spec`), stage by stage."""
    base_grid = arch.img_size // arch.patch_size
    stages = []
    for index, (stage_spec, stage) in enumerate(zip(spec.stages, arch.stages)):
        grid = stage_grid(base_grid, index)
        tokens, blocks = 1 + grid * grid, []
        for block in range(stage.depth):
            blocks.append(block_shape(stage_spec, index, stage, block, tokens))
            tokens = blocks[-1].tokens_after
        in_grid = stage_grid(base_grid, index - 1) if index else None
        stages.append(StageLayout(index, stage.embed_dim, grid, in_grid, stage.reducer, tuple(blocks),
                                  stage_spec.output_tokens(tokens, grid, stage.reducer)))
    return ArchLayout(arch.img_size, arch.patch_size, tuple(stages))

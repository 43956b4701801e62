"""Several sub-networks in one forward-backward pass by channel masks (ViT-ResNAS's idea, written anew).

The batch is split into consecutive sub-batches, one architecture each. The supernet
runs once at its full stored width, and each sample zeroes the channels, heads, MLP
units and whole blocks its own sub-network lacks. Every sub-network therefore gets
its gradients from one backward, and the graph has the same shapes whichever
architectures were drawn. The price: every sample costs a full-width supernet step,
where the sliced multi pass (``supernet(x_i, arch_i)`` per sub-batch, losses summed)
costs only what each sub-network costs. `benchmarks/multi_arch_pass.py` times both.

**Token shape and grouping.** Width, heads, MLP width and depth may differ freely
between the archs of one pass; the sequence length may not. `masked_forward` accepts
any archs and runs one masked pass per *token-shape group* (`token_shape_groups`),
scattering the logits back into batch order. Two archs share a pass when they have
the same ``img_size`` and ``patch_size``, the same token reductions (keep rates and
reducer) in every stage but the last, and, in the last stage, agree on the keep rate of
every block both have and on the reducer where both drop tokens. Reducers group like
keep rates: where a space makes the reducer a choice, archs that chose differently run
in different passes, because a pass shares one `BlockPlan` (and so one reducer) per block.
A block beyond a shorter arch's depth may reduce tokens for its samples too: in the
last stage nothing follows but blocks whose residual branches are masked to zero, and
a reduction never moves the class token, so those samples' class token, logits and
gradients are exactly those of their own sub-network even though their sequence
changed. A reduction in an earlier stage would change what the next stage sees, so
there a missing block counts as keeping every token.

**Heads.** Masks drop whole heads of one width. A stage with ``head_dim`` set (all
shipped spaces) always qualifies; in a stage without it a head is
``embed_dim / num_heads`` wide, and archs whose heads would differ in width at one
block cannot share a pass: `masked_forward` raises `ArchError` and the sliced multi
pass is the way to train them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vitnas.errors import ArchError, VitnasError
from vitnas.nn.block import BlockMasks, BlockPlan, ChannelMask
from vitnas.nn.network import NetworkPlan, StageMasks, StagePlan, network_forward
from vitnas.nn.reducers import get_reducer
from vitnas.space.arch import Arch
from vitnas.space.blocks import BlockShape, StageLayout, arch_layout
from vitnas.space.space import SearchSpace

if TYPE_CHECKING:  # the supernet calls this module; this module only reads the supernet
    from vitnas.supernet.supernet import SuperStage, SuperViT

__all__ = ["masked_forward", "token_shape_groups", "mixed_head_widths", "unmasked_reducers"]


@dataclass(frozen=True)
class _GroupPlan:
    """One masked pass: what its samples share (plan, full-width slices) and their per-sample masks."""

    plan: NetworkPlan  # grids, head widths, keep rates and reducers shared by the pass
    attn_dims: tuple[tuple[int, ...], ...]  # per stage, per block: q/k/v width of the pass (whole heads)
    masks: tuple[StageMasks, ...]


def mixed_head_widths(space: SearchSpace) -> str | None:
    """Why `space` cannot train with masked multi passes, or None when it can.

    Masks drop whole heads of one width, so every stage must give all its heads one width:
    set ``head_dim``, or have every ``embed_dim / num_heads`` choice agree. Checked when a
    recipe is loaded, not at the first step that happens to draw two widths.
    """
    for index, stage in enumerate(space.stages):
        if stage.head_dim is not None:
            continue
        widths = sorted({dim // heads for dim in stage.embed_dims for block in stage.num_heads for heads in block})
        if len(widths) > 1:
            return (f"stages[{index}] of space {space.name} has no head_dim, so its heads are {widths} channels wide "
                    "and masks drop heads of one width only: set head_dim in the space, or use sampler.variant: "
                    "sliced")
    return None


def unmasked_reducers(space: SearchSpace) -> str | None:
    """Why `space` cannot train with masked multi passes for its reducers, or None when it can.

    A reducer the masked pass cannot run (`TokenReducer.masked_pass`: DynamicViT, whose
    predictor and training masks belong to each sub-network) rules it out wherever the
    space offers it, checked when a recipe is loaded rather than at the first step that draws it.
    """
    for index, stage in enumerate(space.stages):
        reduction = stage.token_reduction
        names = [name for name in (reduction.reducers if reduction else ()) if not get_reducer(name).masked_pass]
        if names:
            return (f"stages[{index}] of space {space.name} may reduce tokens with {names[0]}, which the masked "
                    "pass cannot run (its predictor and training masks are per sub-network): use sampler.variant: "
                    "sliced")
    return None


def token_shape_groups(archs: Sequence[Arch]) -> list[list[int]]:
    """Partitions archs into groups that can share one masked pass (see the module docstring).

    Archs are placed deepest-last-stage first, each into the first group it fits, so the
    groups are as few as the prefix rule allows and the result is deterministic.

    Returns:
        Lists of indices into `archs`, each ascending; the groups are ordered by their
        first index.
    """
    order = sorted(range(len(archs)), key=lambda i: -archs[i].stages[-1].depth)
    groups: list[tuple[tuple, tuple[float, ...], str | None, list[int]]] = []
    for index in order:
        fixed, last, reducer = _shape_key(archs[index])
        for key, pattern, group_reducer, members in groups:
            # an arch keeping every token of its last stage runs no reducer of its own: any group's will do
            if key == fixed and pattern[: len(last)] == last and reducer in (None, group_reducer):
                members.append(index)
                break
        else:
            groups.append((fixed, last, reducer, [index]))
    return sorted((sorted(members) for *_, members in groups), key=lambda members: members[0])


def masked_forward(supernet: SuperViT, x: Tensor, archs: Sequence[Arch], sizes: Sequence[int]) -> Tensor:
    """Logits of several sub-networks, each on its own consecutive sub-batch, by channel masks.

    Sub-batch i (``sizes[i]`` samples, in order) runs ``archs[i]``. Archs sharing a token
    shape run in one full-width masked pass of the stored weights; the others in one
    pass per group (`token_shape_groups`). One backward of any loss on the result gives
    each sub-network the gradients its sliced forward ``supernet(x_i, archs[i])`` would.
    Drop path is drawn per sample, at each block's rate, in training mode only, as in the
    sliced blocks.

    Args:
        supernet: the weight-shared supernet.
        x: images (B, C, H, W); each group is resized to its ``img_size``.
        archs: one arch of ``supernet.space`` per sub-batch.
        sizes: sub-batch sizes, positive, summing to B.

    Returns:
        (B, num_classes) logits in batch order.

    Raises:
        VitnasError: sizes do not match the archs or the batch.
        ArchError: an arch lies outside the space, or archs of one group would need
            heads of different widths at one block (a stage without ``head_dim``).
    """
    sizes = _check_call(supernet, x, archs, sizes)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    groups = token_shape_groups(archs)
    # plan every group before computing anything, so a head-width error costs no compute
    plans = [_plan_group(supernet, [archs[i] for i in g], [sizes[i] for i in g], x.device) for g in groups]
    if len(groups) == 1:  # the usual case: one pass over the batch as it is
        return _group_forward(supernet, x, archs[0], plans[0])
    pieces: dict[int, Tensor] = {}  # sub-batch index -> its logits
    for members, plan in zip(groups, plans):
        inputs = torch.cat([x[starts[i] : starts[i] + sizes[i]] for i in members])  # (B_g, C, H, W)
        logits = _group_forward(supernet, inputs, archs[members[0]], plan)  # (B_g, classes)
        pieces.update(zip(members, logits.split([sizes[i] for i in members])))
    return torch.cat([pieces[index] for index in range(len(archs))])  # (B, classes), batch order


def _check_call(supernet: SuperViT, x: Tensor, archs: Sequence[Arch], sizes: Sequence[int]) -> list[int]:
    if not archs or len(archs) != len(sizes):
        raise VitnasError(f"masked_forward: got {len(archs)} archs and {len(sizes)} sub-batch sizes; "
                          "give one size per arch, at least one")
    sizes = [int(size) for size in sizes]
    for index, size in enumerate(sizes):
        if size < 1:
            raise VitnasError(f"masked_forward: sizes[{index}] is {size}; every sub-batch needs a sample")
    if sum(sizes) != x.shape[0]:
        raise VitnasError(f"masked_forward: sub-batch sizes sum to {sum(sizes)}, the batch has {x.shape[0]} samples")
    for index, arch in enumerate(archs):
        try:
            supernet.space.validate(arch)
        except ArchError as error:
            raise ArchError(f"archs[{index}]: {error}") from None
        refused = [block.reducer for block in arch_layout(supernet.space.spec, arch).blocks
                   if block.reducer is not None and not get_reducer(block.reducer).masked_pass]
        if refused:
            raise ArchError(f"archs[{index}]: reducer {refused[0]} cannot run in a masked pass (its predictor "
                            "and training masks are per sub-network); use the sliced multi pass")
    return sizes


def _shape_key(arch: Arch) -> tuple[tuple, tuple[float, ...], str | None]:
    """What must match exactly, the last stage's keep rates (which must agree as prefixes), and its reducer."""
    earlier = []
    for stage in arch.stages[:-1]:
        rates = list(stage.keep_rate)
        while rates and rates[-1] == 1.0:  # a missing block keeps every token, like a rate of 1.0
            rates.pop()
        earlier.append((tuple(rates), stage.reducer))
    last = arch.stages[-1]
    return (arch.img_size, arch.patch_size, tuple(earlier)), last.keep_rate, last.reducer


def _plan_group(supernet: SuperViT, archs: list[Arch], sizes: list[int], device: torch.device) -> _GroupPlan:
    """Per-sample masks of one group, built from one small integer table sent to the device once."""
    layouts = [arch_layout(supernet.space.spec, arch) for arch in archs]
    rows: list[list[int]] = [[] for _ in archs]  # per arch: embed dims and per-block (active, heads, hidden)
    shared = []  # per stage: per block (the shape the pass shares, its attn dim)
    for s, stage in enumerate(supernet.stages):
        stages = [layout.stages[s] for layout in layouts]
        for row, stage_layout in zip(rows, stages):
            row.append(stage_layout.embed_dim)
        depth = max(len(stage_layout.blocks) for stage_layout in stages)
        shared.append([_block_columns(stage, s, i, stages, rows) for i in range(depth)])
    repeats = torch.tensor(sizes, device=device)
    table = torch.tensor(rows, device=device).repeat_interleave(repeats, dim=0, output_size=sum(sizes))  # (B, F)
    plans, masks, column = [], [], 0
    for s, (stage, blocks) in enumerate(zip(supernet.stages, shared)):
        dims = table[:, column]
        channels = ChannelMask(_prefix_mask(dims, stage.max_dim).unsqueeze(1), dims.float().view(-1, 1, 1))  # (B, 1, D)
        masks.append(StageMasks(channels, _block_masks(stage, channels, blocks, table, column + 1)))
        plans.append(_stage_plan(stage, blocks, layouts[0].stages[s]))
        column += 1 + 3 * len(blocks)
    attn_dims = tuple(tuple(attn_dim for _, attn_dim in blocks) for blocks in shared)
    return _GroupPlan(NetworkPlan(archs[0].img_size, tuple(plans)), attn_dims, tuple(masks))


def _block_columns(
    stage: SuperStage, s: int, index: int, stages: list[StageLayout], rows: list[list[int]]
) -> tuple[BlockShape, int]:
    """Appends each arch's (has block, heads, MLP hidden) at one block; returns what the pass shares there.

    The pass shares the keep rate, head width and reducer of the first arch having the block
    (grouping made every arch having it agree on them, `token_shape_groups`), and runs as
    many heads of that width as the stored q/k/v holds.
    """
    active = [stage_layout.blocks[index] for stage_layout in stages if index < len(stage_layout.blocks)]
    widths = sorted({block.head_dim for block in active})
    if len(widths) > 1:
        raise ArchError(
            f"stages[{s}].num_heads[{index}]: the archs of one masked pass need heads {widths} channels wide "
            "(this stage sets no head_dim, so a head is embed_dim / num_heads wide) and masks drop whole heads "
            "of one width only; set head_dim in the space or use the sliced multi pass"
        )
    heads = stage.max_attn_dim // widths[0]
    for row, stage_layout in zip(rows, stages):
        if index < len(stage_layout.blocks):
            block = stage_layout.blocks[index]
            row += [1, block.num_heads, block.mlp_hidden]
        else:  # absent: its branches are gated to zero; all heads keep the class attention finite
            row += [0, heads, 0]
    return active[0], heads * widths[0]


def _stage_plan(stage: SuperStage, blocks: list[tuple[BlockShape, int]], layout: StageLayout) -> StagePlan:
    """The plan a pass shares in one stage: the shared shape of each block, at the group's grid.

    `layout` is any member's layout of the stage (the group shares img_size and patch_size, so grids).
    """
    plans = tuple(
        BlockPlan(
            head_width=shape.head_dim,
            keep_rate=shape.keep_rate,
            reducer=get_reducer(shape.reducer) if shape.reducer is not None else None,
            drop_path_rate=stage.blocks[index].drop_path_rate,
        )
        for index, (shape, _) in enumerate(blocks)
    )
    return StagePlan(layout.grid, plans, layout.in_grid)


def _block_masks(
    stage: SuperStage, channels: ChannelMask, blocks: list[tuple[BlockShape, int]], table: Tensor, column: int
) -> tuple[BlockMasks, ...]:
    """Turns the per-sample (has block, heads, hidden) columns starting at `column` into masks."""
    masks = []
    for shape, attn_dim in blocks:
        has, heads, hidden = table[:, column], table[:, column + 1], table[:, column + 2]
        gate = has.bool().view(-1, 1, 1)
        head_mask = _prefix_mask(heads, attn_dim // shape.head_dim)[:, :, None, None]
        hidden_mask = _prefix_mask(hidden, stage.max_hidden).unsqueeze(1)
        masks.append(BlockMasks(channels, gate, head_mask, hidden_mask))
        column += 3
    return tuple(masks)


def _prefix_mask(counts: Tensor, total: int) -> Tensor:
    """(B, total) bool: True on each row's first counts[b] entries."""
    return torch.arange(total, device=counts.device) < counts[:, None]


def _group_forward(supernet: SuperViT, x: Tensor, arch: Arch, group: _GroupPlan) -> Tensor:
    """One masked pass; `arch` is any member of the group (they share img_size and patch_size).

    The weights are the supernet's own `weights` slices at full stored width (q/k/v at the
    pass's whole heads); the masks do the rest.
    """
    dims = [stage.max_dim for stage in supernet.stages]
    block_dims = [[(attn_dim, stage.max_hidden) for attn_dim in attn_dims]
                  for attn_dims, stage in zip(group.attn_dims, supernet.stages)]
    grids = [stage.grid for stage in group.plan.stages]
    weights = supernet.network_weights(arch.patch_size, dims, grids, block_dims)
    features = network_forward(x, weights, group.plan, supernet.training, group.masks)  # (B, N, D)
    return F.linear(features[:, 0], weights.head_weight, weights.head_bias)  # (B, classes)

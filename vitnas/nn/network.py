"""The one stage and network forward that the supernet, the standalone ViT and the masked pass call.

A network is: resize the input, patchify, prepend the class token, then stages (an
optional residual spatial reduction into the stage, its position embedding, its
blocks), then the final LayerNorm. `NetworkWeights` holds the tensors, named as the
standalone model's state dict names them (`state_dict_of`), and `NetworkPlan` the rest
(resolution, grids, per-block head widths and reducers). The supernet slices its
weights for one arch, the masked pass takes them at full width, the standalone model
hands over its own parameters; all three then run `network_forward`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from vitnas.nn.block import NORM_EPS, BlockMasks, BlockPlan, ChannelMask, Weights, block_forward, layer_norm
from vitnas.nn.channel_masks import masked_spatial_reduction
from vitnas.nn.patch_embed import patchify, resize_input
from vitnas.nn.reducers import Tokens
from vitnas.nn.spatial_reduction import spatial_reduction

__all__ = [
    "StageWeights", "NetworkWeights", "StagePlan", "NetworkPlan", "StageMasks",
    "stage_forward", "network_forward", "network_tokens", "state_dict_of",
]


@dataclass(frozen=True)
class StageWeights:
    pos_embed: Tensor  # (1, 1 + grid * grid, D)
    blocks: tuple[Weights, ...]  # one mapping per block, named as in `vitnas.nn.vit.Block`
    reduction: Weights | None = None  # the spatial reduction into the stage (norm.*, conv.*, cls_proj.*)


@dataclass(frozen=True)
class NetworkWeights:
    patch_weight: Tensor  # (D_0, C, p, p)
    patch_bias: Tensor  # (D_0,)
    cls_token: Tensor  # (1, 1, D_0)
    stages: tuple[StageWeights, ...]
    norm_weight: Tensor  # (D_last,)
    norm_bias: Tensor
    head_weight: Tensor  # (classes, D_last)
    head_bias: Tensor


@dataclass(frozen=True)
class StagePlan:
    grid: int  # token-grid side in the stage
    blocks: tuple[BlockPlan, ...]
    in_grid: int | None = None  # grid side entering its spatial reduction; None for the first stage


@dataclass(frozen=True)
class NetworkPlan:
    img_size: int  # inputs of another size are resized to it
    stages: tuple[StagePlan, ...]


@dataclass(frozen=True)
class StageMasks:
    """Per-sample masks of one stage of a masked multi-arch pass."""

    channels: ChannelMask
    blocks: tuple[BlockMasks, ...]


def stage_forward(
    tokens: Tokens,
    w: StageWeights,
    plan: StagePlan,
    training: bool = False,
    masks: StageMasks | None = None,
    previous: StageMasks | None = None,
) -> Tokens:
    """One stage; `previous` is the stage before's masks (masked passes with a spatial reduction only)."""
    x = tokens.x
    if w.reduction is not None:
        x = _reduce_grid(x, w.reduction, plan.in_grid, masks, previous)  # (B, 1 + g*g, D)
    pos_embed = w.pos_embed if masks is None else w.pos_embed * masks.channels.channels
    tokens = tokens.with_x(x + pos_embed)
    for index, (weights, block_plan) in enumerate(zip(w.blocks, plan.blocks)):
        block_masks = masks.blocks[index] if masks is not None else None
        tokens = block_forward(tokens, weights, block_plan, training, block_masks)
    for reducer in {id(p.reducer): p.reducer for p in plan.blocks if p.reduces}.values():
        tokens = reducer.finish_stage(tokens)
    return tokens


def network_forward(
    images: Tensor, w: NetworkWeights, plan: NetworkPlan, training: bool = False,
    masks: Sequence[StageMasks] | None = None,
) -> Tensor:
    """(B, C, H, W) images -> (B, N, D) final tokens, normalised; the class token first."""
    return network_tokens(images, w, plan, training, masks).x


def network_tokens(
    images: Tensor, w: NetworkWeights, plan: NetworkPlan, training: bool = False,
    masks: Sequence[StageMasks] | None = None,
) -> Tokens:
    """`network_forward` with what the reducers carried to the end (e.g. ``Tokens.kept`` for the keep-ratio loss)."""
    x = patchify(resize_input(images, plan.img_size), w.patch_weight, w.patch_bias)  # (B, N, D)
    x = torch.cat([w.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
    if masks is not None:
        x = x * masks[0].channels.channels
    tokens = Tokens(x)
    for index, (weights, stage_plan) in enumerate(zip(w.stages, plan.stages)):
        stage_masks = masks[index] if masks is not None else None
        previous = masks[index - 1] if masks is not None and index else None
        tokens = stage_forward(tokens, weights, stage_plan, training, stage_masks, previous)
    last = masks[-1].channels if masks is not None else None
    return tokens.with_x(layer_norm(tokens.x, w.norm_weight, w.norm_bias, last))


def state_dict_of(w: NetworkWeights) -> dict[str, Tensor]:
    """The weights under the standalone model's parameter names (``stages.0.blocks.1.attn.qkv.weight``, ...)."""
    state = {"patch_embed.proj.weight": w.patch_weight, "patch_embed.proj.bias": w.patch_bias,
             "cls_token": w.cls_token}
    for index, stage in enumerate(w.stages):
        prefix = f"stages.{index}."
        if stage.reduction is not None:
            state.update({f"{prefix}reduction.{name}": t for name, t in stage.reduction.items()})
        state[f"{prefix}pos_embed"] = stage.pos_embed
        for block, weights in enumerate(stage.blocks):
            state.update({f"{prefix}blocks.{block}.{name}": t for name, t in weights.items()})
    state.update({"norm.weight": w.norm_weight, "norm.bias": w.norm_bias,
                  "head.weight": w.head_weight, "head.bias": w.head_bias})
    return state


def _reduce_grid(
    x: Tensor, w: Weights, grid: int | None, masks: StageMasks | None, previous: StageMasks | None
) -> Tensor:
    """The residual spatial reduction into a stage, masked per sample in a masked pass."""
    if masks is None:
        return spatial_reduction(x, grid, w["norm.weight"], w["norm.bias"], w["conv.weight"], w["conv.bias"],
                                 w["cls_proj.weight"], w["cls_proj.bias"], NORM_EPS)
    weights = (w["norm.weight"], w["norm.bias"], w["conv.weight"], w["conv.bias"], w["cls_proj.weight"],
               w["cls_proj.bias"])
    before = previous.channels
    return masked_spatial_reduction(x, grid, before.channels, before.width, masks.channels.channels, weights, NORM_EPS)

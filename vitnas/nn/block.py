"""The one transformer-block forward that the supernet, the standalone ViT and the masked pass call.

Each caller supplies only the block's weights, as a mapping named like the standalone
model's parameters (``norm1.weight``, ``attn.qkv.weight``, ``mlp.fc1.weight``, ...):
the supernet and the masked pass get theirs from `SuperBlock.weights`, the standalone
`vitnas.nn.vit.Block` from its own parameters. So a sub-network, its export and its
masked training step cannot drift apart: they run this code on those weights.

A block is pre-norm attention, an optional token reducer (between attention and MLP,
as in EViT), and a pre-norm GELU MLP. In a masked multi-arch pass (`BlockMasks`) the
same code runs at full width with per-sample channel, head and hidden-unit masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Mapping

import torch
import torch.nn.functional as F
from timm.layers import drop_path
from torch import Tensor

from vitnas.nn.attention import cross_attention, self_attention
from vitnas.nn.channel_masks import masked_layer_norm
from vitnas.nn.reducers import TokenReducer, Tokens
from vitnas.nn.reducers.base import BlockAttention
from vitnas.nn.reducers.dynamic_vit import policy_bias

__all__ = [
    "NORM_EPS", "Weights", "BlockPlan", "ChannelMask", "BlockMasks", "block_forward", "layer_norm", "attention_bias",
    "attention_of", "drop_path_rates",
]

NORM_EPS = 1e-6  # LayerNorm epsilon, as in timm's ViTs

Weights = Mapping[str, Tensor]


@dataclass(frozen=True)
class BlockPlan:
    """What a block computes besides its weights: fixed for a model, or per call in the supernet."""

    head_width: int  # width of one head; the head count follows from the q/k/v weights
    keep_rate: float = 1.0  # fraction of the non-class tokens kept for full computation
    reducer: TokenReducer | None = None  # how tokens are reduced where keep_rate < 1
    drop_path_rate: float = 0.0  # stochastic depth of both residual branches (training only)

    @property
    def reduces(self) -> bool:
        return self.reducer is not None and self.keep_rate < 1.0


def drop_path_rates(deepest: float, blocks: int) -> list[float]:
    """Each block's stochastic-depth rate, rising linearly from 0 at the first block to `deepest` at the last.

    timm's rule, shared by the supernet (over its deepest blocks) and the standalone ViT
    (over its own), so a recipe's ``drop_path`` means the same in both.

    Raises:
        ValueError: `deepest` outside [0, 1): a rate of 1 would drop every branch.
    """
    if not 0.0 <= deepest < 1.0:
        raise ValueError(f"drop_path_rate: expected a number in [0, 1), got {deepest!r}")
    return torch.linspace(0, deepest, blocks, device="cpu").tolist()  # cpu: models are also built on "meta"


@dataclass(frozen=True)
class ChannelMask:
    """Each sample's active channels in a masked multi-arch pass."""

    channels: Tensor  # (B, 1, D) bool: the sample's first embed_dim channels
    width: Tensor  # (B, 1, 1) fp32: its embed_dim, for the masked LayerNorm


@dataclass(frozen=True)
class BlockMasks:
    """Per-sample masks of one block of a masked multi-arch pass."""

    stage: ChannelMask  # the stage's channel mask
    gate: Tensor  # (B, 1, 1) bool: the sample's sub-network has this block
    heads: Tensor  # (B, H, 1, 1) bool: the sample's first h heads
    hidden: Tensor  # (B, 1, F) bool: the sample's first MLP hidden units


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, mask: ChannelMask | None = None) -> Tensor:
    """LayerNorm over the last dimension, or over each sample's active channels under a mask."""
    if mask is None:
        return F.layer_norm(x, (x.shape[-1],), weight, bias, NORM_EPS)
    return masked_layer_norm(x, mask.channels, mask.width, weight, bias, NORM_EPS)


def block_forward(
    tokens: Tokens, w: Weights, plan: BlockPlan, training: bool = False, masks: BlockMasks | None = None
) -> Tokens:
    """One pre-norm transformer block, reducing tokens between attention and MLP where planned.

    Args:
        tokens: the incoming tokens; ``tokens.x`` is (B, N, D).
        w: the block's weights, named as in `vitnas.nn.vit.Block`.
        plan: head width, keep rate, reducer and drop-path rate.
        training: draw drop-path masks (per sample).
        masks: per-sample masks of a masked multi-arch pass; None elsewhere.

    Returns:
        The tokens after the block, (B, N', D) with N' the reducer's `tokens_after` of N.
    """
    stage_mask = masks.stage if masks is not None else None
    reducer = plan.reducer if plan.reduces else None
    normed = layer_norm(tokens.x, w["norm1.weight"], w["norm1.bias"], stage_mask)
    attended, scores = self_attention(
        normed, w["attn.qkv.weight"], w["attn.qkv.bias"], w["attn.proj.weight"], w["attn.proj.bias"],
        plan.head_width, masks.heads if masks is not None else None, attention_bias(tokens),
        reducer.score if reducer is not None else None,
    )
    tokens = tokens.with_x(tokens.x + drop_path(_gated(attended, masks), plan.drop_path_rate, training))
    if reducer is not None:
        tokens = reducer.reduce_in_block(tokens, scores, plan.keep_rate, w, attention_of(w, plan, masks), training)
    normed = layer_norm(tokens.x, w["norm2.weight"], w["norm2.bias"], stage_mask)
    hidden = F.gelu(F.linear(normed, w["mlp.fc1.weight"], w["mlp.fc1.bias"]))  # (B, N', F)
    if masks is not None:
        hidden = hidden * masks.hidden
    mlp_out = F.linear(hidden, w["mlp.fc2.weight"], w["mlp.fc2.bias"])  # (B, N', D)
    return tokens.with_x(tokens.x + drop_path(_gated(mlp_out, masks), plan.drop_path_rate, training))


def attention_of(w: Weights, plan: BlockPlan, masks: BlockMasks | None = None) -> BlockAttention:
    """The block's attention as a cross-attention residual branch (`BlockAttention`), for reducers that reuse it.

    Pre-norm like the block (norm1 on queries and context), its q/k/v and projection
    weights, and in a masked pass its head mask and channel/block gate.
    """
    return partial(_block_cross_attention, w, plan.head_width, masks)


def _block_cross_attention(w: Weights, head_width: int, masks: BlockMasks | None, queries: Tensor,
                           context: Tensor) -> Tensor:
    stage_mask = masks.stage if masks is not None else None
    out = cross_attention(
        layer_norm(queries, w["norm1.weight"], w["norm1.bias"], stage_mask),
        layer_norm(context, w["norm1.weight"], w["norm1.bias"], stage_mask),
        w["attn.qkv.weight"], w["attn.qkv.bias"], w["attn.proj.weight"], w["attn.proj.bias"],
        head_width, masks.heads if masks is not None else None,
    )
    return _gated(out, masks)


def attention_bias(tokens: Tokens) -> Tensor | None:
    """What the attention adds to its logits for what reducers did to the tokens.

    Proportional attention: log(size) on each key's logits, so a merged token weighs as the
    tokens it holds (ToMe). In training, the keys of tokens a masking reducer dropped are
    masked (DynamicViT, `policy_bias`).

    Returns:
        (B, 1, 1, N) or (B, 1, N, N), or None while no token stands for more than itself
        and none is masked.
    """
    bias = tokens.sizes.log().transpose(1, 2).unsqueeze(1) if tokens.sizes is not None else None
    if tokens.policy is not None:
        bias = policy_bias(tokens.policy) if bias is None else bias + policy_bias(tokens.policy)
    return bias


def _gated(branch: Tensor, masks: BlockMasks | None) -> Tensor:
    """A residual branch, zero outside each sample's channels and wherever its sub-network lacks the block."""
    if masks is None:
        return branch
    return branch * (masks.stage.channels & masks.gate)

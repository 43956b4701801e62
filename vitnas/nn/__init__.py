"""Building blocks shared by the supernet, the standalone ViT and the masked multi-arch pass.

`network_forward` / `stage_forward` / `block_forward` are the one implementation of the
forward pass; each caller supplies only its weights. Token reducers live in
`vitnas.nn.reducers`, behind one `TokenReducer` interface.
"""

from vitnas.nn.attention import class_attention, self_attention
from vitnas.nn.block import NORM_EPS, BlockMasks, BlockPlan, ChannelMask, block_forward
from vitnas.nn.network import (
    NetworkPlan,
    NetworkWeights,
    StageMasks,
    StagePlan,
    StageWeights,
    network_forward,
    stage_forward,
    state_dict_of,
)
from vitnas.nn.patch_embed import patchify, resample_pos_embed, resize_input
from vitnas.nn.reducers import TokenReducer, Tokens, get_reducer, kept_token_count
from vitnas.nn.spatial_reduction import spatial_reduction

__all__ = [
    "NORM_EPS",
    "BlockMasks",
    "BlockPlan",
    "ChannelMask",
    "NetworkPlan",
    "NetworkWeights",
    "StageMasks",
    "StagePlan",
    "StageWeights",
    "TokenReducer",
    "Tokens",
    "block_forward",
    "class_attention",
    "get_reducer",
    "kept_token_count",
    "network_forward",
    "patchify",
    "resample_pos_embed",
    "resize_input",
    "self_attention",
    "spatial_reduction",
    "stage_forward",
    "state_dict_of",
]

"""Building blocks shared by the supernet and the standalone ViT."""

from vitnas.layers.attention import class_attention, multi_head_attention
from vitnas.layers.patch_embed import patchify, resample_pos_embed, resize_input
from vitnas.layers.spatial_reduction import spatial_reduction
from vitnas.layers.token_reduction import fuse_inattentive_tokens, kept_token_count, tokens_after_reduction

__all__ = [
    "class_attention",
    "multi_head_attention",
    "patchify",
    "resample_pos_embed",
    "resize_input",
    "spatial_reduction",
    "fuse_inattentive_tokens",
    "kept_token_count",
    "tokens_after_reduction",
]

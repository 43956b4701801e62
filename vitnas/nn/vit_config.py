"""The standalone-model config of an arch: the one bridge from a search space to `vitnas.nn.vit.ViT`.

It lives beside the standalone model rather than in the export package, so code that
only builds or times standalone models (`vitnas.latency.measure`) never imports the
supernet. It reads the arch's layout (`vitnas.space.blocks`, pure Python) and nothing
heavier: a block's config is its shape there, so the model and the costs agree by
construction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas.nn.vit import BlockConfig, StageConfig, ViTConfig
from vitnas.space.blocks import arch_layout

if TYPE_CHECKING:
    from vitnas.space.arch import Arch
    from vitnas.space.space import SearchSpace

__all__ = ["vit_config"]


def vit_config(space: SearchSpace, arch: Arch, num_classes: int | None = None) -> ViTConfig:
    """The `ViTConfig` of `arch`, validated against `space`.

    Args:
        space: the search space `arch` belongs to; it fixes head widths and input channels.
        arch: the sub-network.
        num_classes: head size; defaults to the space's class count.

    Raises:
        ArchError: `arch` is not in `space`.
    """
    space.validate(arch)
    stages = tuple(
        StageConfig(stage.embed_dim, stage.grid, tuple(
            BlockConfig(block.num_heads, block.head_dim, block.mlp_hidden, block.keep_rate, block.reducer)
            for block in stage.blocks))
        for stage in arch_layout(space.spec, arch).stages
    )
    return ViTConfig(
        img_size=arch.img_size,
        patch_size=arch.patch_size,
        in_chans=space.in_chans,
        num_classes=space.num_classes if num_classes is None else num_classes,
        stages=stages,
    )

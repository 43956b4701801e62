"""The standalone-model config of an arch: the one bridge from a search space to `vitnas.nn.vit.ViT`.

It lives beside the standalone model rather than in the export package, so code that
only builds or times standalone models (`vitnas.latency.measure`) never imports the
supernet. It reads the space's spec (pure Python) and nothing heavier.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas.nn.vit import BlockConfig, StageConfig, ViTConfig
from vitnas.space.spec import mlp_hidden, stage_grid

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
    base_grid = arch.img_size // arch.patch_size
    stages = []
    for index, (spec, stage) in enumerate(zip(space.stages, arch.stages)):
        blocks = tuple(
            BlockConfig(
                num_heads=heads,
                head_dim=spec.head_width(stage.embed_dim, heads),
                mlp_hidden=mlp_hidden(stage.embed_dim, ratio),
                keep_rate=rate,
                reducer=spec.reducer_at(block, stage.reducer) if rate < 1.0 else None,
            )
            for block, (heads, ratio, rate) in enumerate(zip(stage.num_heads, stage.mlp_ratio, stage.keep_rate))
        )
        stages.append(StageConfig(stage.embed_dim, stage_grid(base_grid, index), blocks))
    return ViTConfig(
        img_size=arch.img_size,
        patch_size=arch.patch_size,
        in_chans=space.in_chans,
        num_classes=space.num_classes if num_classes is None else num_classes,
        stages=tuple(stages),
    )

"""Pulling a sub-network out of a supernet as a standalone model, and its timm form.

`extract` returns a `vitnas.nn.vit.ViT` whose weights are contiguous copies of the
supernet's slices (editing one never touches the other) and whose outputs equal
``supernet(x, arch)``. `timm_state_dict` turns such a model into the kwargs and
state dict of timm's `VisionTransformer` when timm can express it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

from vitnas.errors import ExportError
from vitnas.nn.vit import ViT
from vitnas.nn.vit_config import vit_config
from vitnas.space.spec import mlp_hidden

if TYPE_CHECKING:
    from vitnas.space.arch import Arch
    from vitnas.supernet.supernet import SuperViT

__all__ = ["extract", "timm_state_dict", "mlp_ratio_of"]


def extract(supernet: SuperViT, arch: Arch) -> ViT:
    """A standalone ViT for `arch` with copied weights; its outputs equal ``supernet(x, arch)``.

    The model is in eval mode, on the supernet's device and dtype.

    Raises:
        ArchError: `arch` is not in the supernet's space.
    """
    config = vit_config(supernet.space, arch, supernet.num_classes)
    state = supernet.sliced_state_dict(arch)
    reference = next(iter(state.values()))
    model = ViT(config).to(device=reference.device, dtype=reference.dtype)
    model.load_state_dict(state, strict=True)
    return model.eval()


def timm_state_dict(model: ViT) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Kwargs and state dict that timm's `VisionTransformer` loads with ``strict=True``.

    Usage::

        kwargs, state = vitnas.timm_state_dict(vitnas.extract(supernet, arch))
        vit = timm.models.vision_transformer.VisionTransformer(**kwargs)
        vit.load_state_dict(state)

    Raises:
        ExportError: the model has several stages, blocks of different shapes, token
            reduction, or heads whose total width differs from the embed dim; timm's ViT
            has none of these. (A model that resizes its inputs maps to a timm ViT at its
            `img_size`: resize inputs before calling that one.)
    """
    config = model.config
    if len(config.stages) != 1:
        raise ExportError(f"timm form: the model has {len(config.stages)} stages; timm's ViT has one")
    stage = config.stages[0]
    shapes = {(b.num_heads, b.head_dim, b.mlp_hidden) for b in stage.blocks}
    if len(shapes) != 1:
        raise ExportError("timm form: blocks differ in heads or MLP width; timm's ViT repeats one block shape")
    if any(b.keep_rate < 1.0 for b in stage.blocks):
        raise ExportError("timm form: the model drops tokens; timm's ViT keeps all of them")
    num_heads, head_dim, hidden = shapes.pop()
    if num_heads * head_dim != stage.embed_dim:
        raise ExportError(
            f"timm form: {num_heads} heads x {head_dim} = {num_heads * head_dim} differs from embed_dim "
            f"{stage.embed_dim}; timm's ViT ties them"
        )
    if mlp_ratio_of(hidden, stage.embed_dim) is None:
        raise ExportError(f"timm form: MLP width {hidden} is no ratio of embed_dim {stage.embed_dim} timm rounds to")
    kwargs = dict(
        img_size=config.img_size,
        patch_size=config.patch_size,
        in_chans=config.in_chans,
        num_classes=config.num_classes,
        embed_dim=stage.embed_dim,
        depth=len(stage.blocks),
        num_heads=num_heads,
        mlp_ratio=mlp_ratio_of(hidden, stage.embed_dim),
        qkv_bias=True,
        class_token=True,
        global_pool="token",
    )
    state = {}
    for name, tensor in model.state_dict().items():
        state[name.replace("stages.0.", "", 1)] = tensor
    return kwargs, state


def mlp_ratio_of(hidden: int, embed_dim: int) -> float | None:
    """A ratio r with int(embed_dim * r) == hidden, as timm computes the MLP width; None if none is exact."""
    ratio = hidden / embed_dim
    return ratio if mlp_hidden(embed_dim, ratio) == hidden else None

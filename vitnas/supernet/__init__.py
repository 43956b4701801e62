"""The weight-shared supernet: every sub-network of a space in one module.

`supernet.SuperViT` runs one arch, ``model(images, arch)``, or several on sub-batches of one
batch (`SuperViT.forward_multi`), slicing its weights and calling the forward of
`vitnas.nn`; `masked.masked_forward` runs several archs in one full-width pass with
channel masks instead; `rewire.rewire` re-sorts heads and MLP channels by importance so
the first k are the most useful.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas._lazy import export_lazily

_MODULES = {
    "supernet": ("SuperViT",),
    "masked": ("masked_forward", "token_shape_groups"),
    "rewire": ("rewire",),
}
_LAZY = {name: f"vitnas.supernet.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)

export_lazily(__name__, _LAZY)

if TYPE_CHECKING:
    from vitnas.supernet.masked import masked_forward, token_shape_groups
    from vitnas.supernet.rewire import rewire
    from vitnas.supernet.supernet import SuperViT

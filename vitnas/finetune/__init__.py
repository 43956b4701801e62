"""Fine-tuning an exported model (`finetune_model`, the `vitnas finetune` verb) on new data.

The verb is a function, ``vitnas.finetune_model(folder, out, ...)`` (`vitnas.finetune.tune.finetune_model`);
calling the package, ``vitnas.finetune(...)``, as vitnas 0.1 did still works for one release, with a warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas._lazy import export_lazily

_MODULES = {
    "tune": ("finetune_model",),
}
_LAZY = {name: f"vitnas.finetune.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)

export_lazily(__name__, _LAZY)

if TYPE_CHECKING:
    from vitnas.finetune.tune import finetune_model

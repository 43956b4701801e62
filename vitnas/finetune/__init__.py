"""Fine-tuning an exported model (`finetune`, the `vitnas finetune` verb) on new data.

The package is callable as its verb: ``vitnas.finetune(folder, out, ...)`` is `vitnas.finetune.tune.finetune`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas._lazy import export_lazily

_MODULES = {
    "tune": ("finetune",),
}
_LAZY = {name: f"vitnas.finetune.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)

export_lazily(__name__, _LAZY, call="finetune")  # vitnas.finetune(...) is vitnas.finetune.tune.finetune(...)

if TYPE_CHECKING:
    from vitnas.finetune.tune import finetune

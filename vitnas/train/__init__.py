"""Training: recipes, samplers, the loop, checkpoints, standalone training.

`recipe` reads a recipe YAML into dataclasses; `samplers` choose which sub-networks each
step trains (single, sandwich, multi, supervit); `loop` is the training loop and the
`train` verb (supernet) it runs; `standalone` trains one fixed ViT through the same loop;
`checkpoint` writes and reads checkpoints (weights, recipe, RNG state, ``latest``);
`rundir` is the rule every verb follows to start, continue or restart the run in ``--out``.
The package is callable as its verb: ``vitnas.train(recipe, out, ...)`` is
`vitnas.train.loop.train` (and ``import vitnas.train.recipe`` still finds this package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas._lazy import export_lazily

_MODULES = {
    "loop": ("train",),
    "standalone": ("train_standalone",),
    "recipe": ("Recipe", "load_recipe"),
    "checkpoint": ("load_supernet", "latest_checkpoint"),
}
_LAZY = {name: f"vitnas.train.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)

export_lazily(__name__, _LAZY, call="train")  # vitnas.train(...) is vitnas.train.loop.train(...)

if TYPE_CHECKING:
    from vitnas.train.checkpoint import load_supernet, latest_checkpoint
    from vitnas.train.loop import train
    from vitnas.train.recipe import Recipe, load_recipe
    from vitnas.train.standalone import train_standalone

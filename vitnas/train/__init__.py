"""Training: recipes, samplers, the loop, checkpoints, standalone training.

`recipe` reads a recipe YAML into dataclasses; `samplers` choose which sub-networks each
step trains (single, sandwich, multi, supervit); `supernet` holds `train_supernet`, the
`vitnas train` verb (a supernet's trainee, built from the recipe's space); `standalone`
trains one fixed ViT through the same loop; `checkpoint` writes and reads run directories
(weights, recipe, RNG state, ``latest``); `rundir` is the rule every verb follows to start,
continue or restart the run in ``--out``.

The loop is cut by concern: `trainee` (what the loop trains: the interface a supernet and
a standalone ViT implement), `context` (setting a run up: optimizer, schedule, data,
Mixup, EMA, precision), `loop` (epochs, checkpoints, resume), `step` (one optimizer step
and its losses), `metrics` (validation and what goes to the log), `metrics_log` (the log itself), `distributed` (DDP plumbing).

The verb is a function, ``vitnas.train_supernet(recipe, out, ...)``, and this package only
a package; calling ``vitnas.train(...)`` as vitnas 0.1 did still works for one release,
with a warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas._lazy import export_lazily

_MODULES = {
    "supernet": ("train_supernet",),
    "standalone": ("train_standalone",),
    "recipe": ("Recipe", "load_recipe"),
    "checkpoint": ("load_supernet", "latest_checkpoint"),
}
_LAZY = {name: f"vitnas.train.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)

export_lazily(__name__, _LAZY)

if TYPE_CHECKING:
    from vitnas.train.checkpoint import load_supernet, latest_checkpoint
    from vitnas.train.recipe import Recipe, load_recipe
    from vitnas.train.standalone import train_standalone
    from vitnas.train.supernet import train_supernet

"""vitnas: neural architecture search for Vision Transformers.

Train one weight-shared supernet, search it under hardware budgets, export the chosen
sub-networks as standalone ViTs.

Names are loaded on first use (PEP 562), so ``import vitnas`` and ``vitnas --help``
cost no torch, timm, nni or scikit-learn import; ``vitnas.SuperViT`` pulls in what the
supernet needs when it is first touched. The core never imports ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas import _moved
from vitnas._lazy import export_lazily
from vitnas.errors import (ArchError, BudgetError, CheckpointError, ExportError, LatencyError, ProfileError, SpaceError,
                           VitnasError)

__version__ = "0.1.0"

# Public name -> the module that defines it, imported when the name is first asked for.
_LAZY = {
    "Arch": "vitnas.space.arch",
    "StageArch": "vitnas.space.arch",
    "block_shapes": "vitnas.space.cost",
    "count_flops": "vitnas.space.cost",
    "count_params": "vitnas.space.cost",
    "load_supernet": "vitnas.train.checkpoint",
    "evaluate": "vitnas.evaluate",
    "ElasticViT": "vitnas.export.elastic",
    "extract": "vitnas.export.extract",
    "load": "vitnas.export.load",
    "timm_state_dict": "vitnas.export.extract",
    "vit_config": "vitnas.nn.vit_config",
    "Budget": "vitnas.search.budget",
    "DeviceProfile": "vitnas.latency.profile",
    "load_profile": "vitnas.latency.profile",
    "rank_check": "vitnas.rank.check",
    "run": "vitnas.pipeline.stages",
    "SearchSpace": "vitnas.space.space",
    "load_space": "vitnas.space.space",
    "shipped_spaces": "vitnas.space.space",
    "SuperViT": "vitnas.supernet.supernet",
    "train_standalone": "vitnas.train.standalone",
    "ViT": "vitnas.nn.vit",
    "ViTConfig": "vitnas.nn.vit",
}

# Subpackages loaded on first use, each also callable as its verb: vitnas.train(recipe, out, ...),
# vitnas.search(checkpoint, out, ...), vitnas.export(checkpoint, arch, out, ...), vitnas.finetune(folder, out, ...).
# Callable packages rather than functions, so that `import vitnas.train.recipe as r` finds the package.
_SUBMODULES = ("export", "finetune", "search", "train")

_ERRORS = ("ArchError", "BudgetError", "CheckpointError", "ExportError", "LatencyError", "ProfileError", "SpaceError",
           "VitnasError")
__all__ = sorted([*_LAZY, *_SUBMODULES, *_ERRORS])

export_lazily(__name__, _LAZY, submodules=_SUBMODULES)
_moved.install()  # the module paths of vitnas 0.1 (vitnas.arch, vitnas.layers, ...) for one release

if TYPE_CHECKING:  # what static checkers and IDEs see
    from vitnas import export
    from vitnas import search
    from vitnas.evaluate import evaluate
    from vitnas.export.elastic import ElasticViT
    from vitnas.export.extract import extract, timm_state_dict
    from vitnas.export.load import load
    from vitnas.finetune.tune import finetune
    from vitnas.latency.profile import DeviceProfile, load_profile
    from vitnas.nn.vit import ViT, ViTConfig
    from vitnas.nn.vit_config import vit_config
    from vitnas.pipeline.stages import run
    from vitnas.rank.check import rank_check
    from vitnas.search.budget import Budget
    from vitnas.space.arch import Arch, StageArch
    from vitnas.space.cost import block_shapes, count_flops, count_params
    from vitnas.space.space import SearchSpace, load_space, shipped_spaces
    from vitnas.supernet.supernet import SuperViT
    from vitnas.train.checkpoint import load_supernet
    from vitnas.train.supernet import train  # (the package vitnas.train, called, calls this function; so does finetune)
    from vitnas.train.standalone import train_standalone

"""vitnas: neural architecture search for Vision Transformers.

Train one weight-shared supernet, search it under hardware budgets, export the chosen
sub-networks as standalone ViTs.

Each verb of the ``vitnas`` command is a function here, named for what it does and what it
acts on, so that no function shares its name with a package::

    vitnas train       train_supernet(recipe, out, ...)          (package vitnas.train)
    vitnas search      search_supernet(checkpoint, out, ...)     (package vitnas.search)
    vitnas export      export_model(checkpoint, arch, out, ...)  (package vitnas.export)
    vitnas finetune    finetune_model(folder, out, ...)          (package vitnas.finetune)
    vitnas rank-check  rank_check(checkpoint, out, ...)          (package vitnas.rank)
    vitnas run         run_pipeline(...)                         (package vitnas.pipeline)

``vitnas.train`` is therefore always the package (``import vitnas.train.recipe`` and
``vitnas.train.recipe`` agree, and static checkers see what runs). vitnas 0.1 let one call
``vitnas.train``, ``vitnas.search``, ``vitnas.export`` and ``vitnas.finetune`` as their
verbs, and named ``vitnas.run``; those forms still work for one release, with a
`DeprecationWarning` naming the new function (`vitnas._moved`).

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
    "count_macs": "vitnas.space.cost",
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
    "run_pipeline": "vitnas.pipeline.stages",
    "train_supernet": "vitnas.train.supernet",
    "search_supernet": "vitnas.search.driver",
    "export_model": "vitnas.export.writer",
    "finetune_model": "vitnas.finetune.tune",
    "SearchSpace": "vitnas.space.space",
    "load_space": "vitnas.space.space",
    "shipped_spaces": "vitnas.space.space",
    "SuperViT": "vitnas.supernet.supernet",
    "train_standalone": "vitnas.train.standalone",
    "ViT": "vitnas.nn.vit",
    "ViTConfig": "vitnas.nn.vit",
}

# Subpackages reachable as attributes before anything imported them: vitnas 0.1 called these as their verbs
# (vitnas.train(recipe, out)), which still works for one release with a warning. Packages, not verbs: not in __all__.
_SUBMODULES = ("export", "finetune", "search", "train")

_ERRORS = ("ArchError", "BudgetError", "CheckpointError", "ExportError", "LatencyError", "ProfileError", "SpaceError",
           "VitnasError")
__all__ = sorted([*_LAZY, *_ERRORS])

export_lazily(__name__, _LAZY, submodules=_SUBMODULES)
_moved.install()  # the module paths of vitnas 0.1 (vitnas.arch, vitnas.layers, ...) for one release

if TYPE_CHECKING:  # what static checkers and IDEs see
    from vitnas import export, finetune, search, train  # the packages
    from vitnas.evaluate import evaluate
    from vitnas.export.elastic import ElasticViT
    from vitnas.export.extract import extract, timm_state_dict
    from vitnas.export.load import load
    from vitnas.export.writer import export_model
    from vitnas.finetune.tune import finetune_model
    from vitnas.latency.profile import DeviceProfile, load_profile
    from vitnas.nn.vit import ViT, ViTConfig
    from vitnas.nn.vit_config import vit_config
    from vitnas.pipeline.stages import run_pipeline
    from vitnas.rank.check import rank_check
    from vitnas.search.budget import Budget
    from vitnas.search.driver import search_supernet
    from vitnas.space.arch import Arch, StageArch
    from vitnas.space.cost import block_shapes, count_macs, count_params
    from vitnas.space.space import SearchSpace, load_space, shipped_spaces
    from vitnas.supernet.supernet import SuperViT
    from vitnas.train.checkpoint import load_supernet
    from vitnas.train.standalone import train_standalone
    from vitnas.train.supernet import train_supernet

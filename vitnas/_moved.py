"""Old module paths, kept working for one release after the package was cut by pipeline stage.

vitnas 0.1 had 31 flat modules (``vitnas.arch``, ``vitnas.checkpoint``, ``vitnas.layers``, ...).
They now live in packages named after the pipeline's stages (``vitnas.space.arch``,
``vitnas.train.checkpoint``, ``vitnas.nn``, ...). Rather than a shim file per old module,
this one map serves the new module under its old name, with a `DeprecationWarning`:
``import vitnas.arch`` gives the module object ``vitnas.space.arch`` itself (one module,
one set of classes, so ``isinstance`` and monkeypatching see the same objects).

Five old modules now share their name with the package that replaced them
(``vitnas.space``, ``vitnas.supernet``, ``vitnas.train``, ``vitnas.finetune``,
``vitnas.pipeline``). Their names that the package does not export itself are served
from the module that holds them now (`moved_attribute`), with the same warning.

The verbs' functions were renamed so that none shares its name with a package
(``vitnas.train`` is the package, ``vitnas.train_supernet`` the function; see the
docstring of ``vitnas``). `RENAMED` serves each old name, and calling one of the four
packages that used to be callable as their verb (`CALLED_PACKAGES`) still runs it, both
with the same warning, for one release.

Nothing here imports another vitnas module, so the finder costs nothing at ``import vitnas``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings
from typing import Any

__all__ = ["CALLED_PACKAGES", "MOVED_MODULES", "MOVED_INTO_PACKAGE", "MOVED_NAMES", "RENAMED", "call_package",
           "install", "moved_attribute"]

# old module -> the module that holds its code now
MOVED_MODULES: dict[str, str] = {
    "vitnas.atomic": "vitnas.util.atomic",
    "vitnas.yamlfile": "vitnas.util.yamlfile",
    "vitnas.shipped": "vitnas.util.shipped",
    "vitnas.dtypes": "vitnas.util.dtypes",
    "vitnas.seeding": "vitnas.util.seeding",
    "vitnas.latency.device": "vitnas.util.device",
    "vitnas.arch": "vitnas.space.arch",
    "vitnas.space_spec": "vitnas.space.spec",
    "vitnas.cost": "vitnas.space.cost",
    "vitnas.layers": "vitnas.nn",
    "vitnas.layers.attention": "vitnas.nn.attention",
    "vitnas.layers.block": "vitnas.nn.block",
    "vitnas.layers.channel_masks": "vitnas.nn.channel_masks",
    "vitnas.layers.network": "vitnas.nn.network",
    "vitnas.layers.patch_embed": "vitnas.nn.patch_embed",
    "vitnas.layers.slicing": "vitnas.nn.slicing",
    "vitnas.layers.spatial_reduction": "vitnas.nn.spatial_reduction",
    "vitnas.layers.reducers": "vitnas.nn.reducers",
    "vitnas.layers.reducers.base": "vitnas.nn.reducers.base",
    "vitnas.layers.reducers.dynamic_vit": "vitnas.nn.reducers.dynamic_vit",
    "vitnas.layers.reducers.evit": "vitnas.nn.reducers.evit",
    "vitnas.layers.reducers.evo_vit": "vitnas.nn.reducers.evo_vit",
    "vitnas.layers.reducers.stvit": "vitnas.nn.reducers.stvit",
    "vitnas.layers.reducers.tome": "vitnas.nn.reducers.tome",
    "vitnas.vit": "vitnas.nn.vit",
    "vitnas.vit_config": "vitnas.nn.vit_config",
    "vitnas.masked": "vitnas.supernet.masked",
    "vitnas.rewire": "vitnas.supernet.rewire",
    "vitnas.recipe": "vitnas.train.recipe",
    "vitnas.sampling": "vitnas.train.samplers",
    "vitnas.standalone": "vitnas.train.standalone",
    "vitnas.gradient_projection": "vitnas.train.gradient_projection",
    "vitnas.checkpoint": "vitnas.train.checkpoint",
    "vitnas.latency.budget": "vitnas.search.budget",
    "vitnas.finetune_cli": "vitnas.finetune.cli",
    "vitnas.rank_check": "vitnas.rank.check",
    "vitnas.standalone_runs": "vitnas.rank.runs",
    "vitnas.rank_check_cli": "vitnas.rank.cli",
    "vitnas.run_cli": "vitnas.pipeline.cli",
}

# old module whose name is now a package -> the module holding the old module's code
MOVED_INTO_PACKAGE: dict[str, str] = {
    "vitnas.finetune": "vitnas.finetune.tune",
    "vitnas.pipeline": "vitnas.pipeline.stages",
    "vitnas.space": "vitnas.space.space",
    "vitnas.supernet": "vitnas.supernet.supernet",
    "vitnas.train": "vitnas.train.loop",
}

# (package, name) -> the module that defines the name now, for a name that left its package
MOVED_NAMES: dict[tuple[str, str], str] = {
    ("vitnas.latency", "Budget"): "vitnas.search.budget",  # a budget is a search concept
    ("vitnas.evaluate", "evaluate_folder"): "vitnas.export.evaluate",  # reads export folders: above export
    ("vitnas.cli", "read_arch"): "vitnas.space.arch_files",  # the root cli holds no verb
    # reading archs from files checks them against a space; arch.py stays a leaf value (no import circle)
    ("vitnas.space.arch", "read_arch"): "vitnas.space.arch_files",
    ("vitnas.space.arch", "read_archs"): "vitnas.space.arch_files",
    # export/elastic.py, cut along its sections: the envelope arithmetic, the run-time model (stays), the writer
    **{("vitnas.export.elastic", name): "vitnas.export.envelope"
       for name in ("PATCH_KERNEL", "build_envelope", "check_envelope", "envelope_key", "envelope_shapes",
                    "envelope_slice", "as_point_tensor", "point_model", "point_shapes")},
    **{("vitnas.export.elastic", name): "vitnas.export.bundle"
       for name in ("bundle_targets", "check_bundle_request", "write_bundle", "envelope_summary", "size_report")},
    ("vitnas.export.writer", "write_json"): "vitnas.export.schema",
    # vitnas/train.py, cut by concern into the train package's modules (fit and run_recipe stay in loop.py)
    ("vitnas.train", "Trainee"): "vitnas.train.trainee",
    ("vitnas.train", "SupernetTrainee"): "vitnas.train.supernet",
    ("vitnas.train", "Context"): "vitnas.train.context",
    ("vitnas.train", "build_context"): "vitnas.train.context",
    ("vitnas.train", "distributed_setup"): "vitnas.train.distributed",
    ("vitnas.train", "MetricsLog"): "vitnas.train.metrics_log",
    ("vitnas.train", "seed_run"): "vitnas.util.seeding",
}


# The verbs' functions: (module, name) now
_TRAIN = ("vitnas.train.supernet", "train_supernet")
_SEARCH = ("vitnas.search.driver", "search_supernet")
_EXPORT = ("vitnas.export.writer", "export_model")
_FINETUNE = ("vitnas.finetune.tune", "finetune_model")
_RUN = ("vitnas.pipeline.stages", "run_pipeline")

# (package or module, old name) -> (module, new name), for a name renamed to say what it is
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("vitnas.train", "train"): _TRAIN,
    ("vitnas.search", "search"): _SEARCH,
    ("vitnas.search.driver", "search"): _SEARCH,
    ("vitnas.export", "export"): _EXPORT,
    ("vitnas.export.writer", "export"): _EXPORT,
    ("vitnas.finetune", "finetune"): _FINETUNE,
    ("vitnas.finetune.tune", "finetune"): _FINETUNE,
    ("vitnas", "run"): _RUN,
    ("vitnas.pipeline", "run"): _RUN,
    ("vitnas.pipeline.stages", "run"): _RUN,
    # it always counted multiply-accumulates, not FLOPs (torch.utils.flop_counter reports 2 per MAC)
    **{(where, "count_flops"): ("vitnas.space.cost", "count_macs")
       for where in ("vitnas", "vitnas.space", "vitnas.space.cost")},
}

# package that vitnas 0.1 let one call as its verb -> the verb's function now
CALLED_PACKAGES: dict[str, tuple[str, str]] = {
    "vitnas.train": _TRAIN,
    "vitnas.search": _SEARCH,
    "vitnas.export": _EXPORT,
    "vitnas.finetune": _FINETUNE,
}


def call_package(package: str, *args: Any, **kwargs: Any) -> Any:
    """``vitnas.train(...)`` and the like: runs the verb's function, with a `DeprecationWarning` naming it."""
    module, name = CALLED_PACKAGES[package]
    warnings.warn(f"calling {package}(...) is deprecated: call vitnas.{name}(...) ({module}.{name}); "
                  "the old call works until the next release", DeprecationWarning, stacklevel=3)
    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def _warn(old: str, new: str, stacklevel: int) -> None:
    warnings.warn(f"{old} moved to {new}; the old path works until the next release",
                  DeprecationWarning, stacklevel=stacklevel + 1)


def moved_attribute(package: str, name: str) -> Any:
    """``package.name`` for a name that used to be there; raises AttributeError for any other.

    Called by a lazy package (`vitnas._lazy`) for a name it does not export itself, and by
    the module-level ``__getattr__`` of a module in which a name was renamed.
    """
    if (package, name) in RENAMED:
        module, new_name = RENAMED[package, name]
        value = getattr(importlib.import_module(module), new_name)
        warnings.warn(f"{package}.{name} was renamed {module}.{new_name} (vitnas.{new_name}); the old name works "
                      "until the next release", DeprecationWarning, stacklevel=3)  # the caller of __getattr__
        return value
    module = MOVED_NAMES.get((package, name)) or MOVED_INTO_PACKAGE.get(package)
    if module is None or name.startswith("__"):
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name, _MISSING)
    if value is _MISSING:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    _warn(f"{package}.{name}", f"{module}.{name}", 3)  # the caller of the package's __getattr__
    return value


_MISSING = object()


class _Alias(importlib.abc.Loader):
    """Loads an old module name as the new module object itself."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(self.new)
        self.spec = module.__spec__  # the import system overwrites __spec__ with the alias's; put it back
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self.spec


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        _warn(fullname, new, 2)  # the import statement (importlib's own frames are skipped)
        return importlib.util.spec_from_loader(fullname, _Alias(new))


_FINDER = _Finder()


def install() -> None:
    """Puts the finder first on `sys.meta_path` (once), ahead of the path finder.

    First, because an old package path (``vitnas.layers.reducers``) would otherwise be
    found a second time under its old name inside the new package's folder.
    """
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FINDER)

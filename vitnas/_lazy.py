"""Lazy package exports: a public name is imported from its module when first used.

``import vitnas`` and ``vitnas --help`` should not pay for torch, timm, nni or
scikit-learn (several seconds together). A package lists ``name -> module`` and calls
`export_lazily`; attribute access then imports the module (PEP 562).

Some public functions share their module's name (`vitnas.evaluate` the function lives in
`vitnas/evaluate.py`, `vitnas.load` in `vitnas/export/load.py`). Python's import
system binds a submodule onto its package when the submodule is first imported, which
would replace the function by the module. The package's class therefore ignores that
binding for exported names, so `vitnas.evaluate` is always the function, as it was when
these names were imported eagerly. No verb's function shares its name with a package
(``vitnas.train_supernet`` beside the package ``vitnas.train``), so ``import
vitnas.train.recipe`` always finds the package; the four packages vitnas 0.1 let one call
as their verb still run it, with a warning, for one release (`vitnas._moved.call_package`).

A name a package does not export may be one that used to live there (a module that
became this package, or a name that moved to another package): `vitnas._moved` serves
those for one release, with a `DeprecationWarning`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Mapping

from vitnas._moved import CALLED_PACKAGES, call_package, moved_attribute

__all__ = ["export_lazily"]


def export_lazily(package: str, exports: Mapping[str, str], submodules: tuple[str, ...] = ()) -> None:
    """Makes each ``name`` of `exports` resolve to ``getattr(import_module(module), name)`` on first access.

    Each name in `submodules` resolves to the subpackage ``package.name`` itself. A package
    of `vitnas._moved.CALLED_PACKAGES` stays callable as its old verb (deprecated).
    """

    class LazyPackage(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name in submodules:
                value = importlib.import_module(f"{package}.{name}")
            elif name in exports:
                value = getattr(importlib.import_module(exports[name]), name)
            else:
                value = moved_attribute(package, name)  # an old name (warned once), or AttributeError
            self.__dict__[name] = value  # later lookups are plain attribute reads
            return value

        def __setattr__(self, name: str, value: Any) -> None:
            if name in exports and isinstance(value, types.ModuleType) and value.__name__ == f"{package}.{name}":
                return  # the import system binding a submodule over the public function of the same name
            super().__setattr__(name, value)

        def __dir__(self) -> list[str]:
            return sorted(set(self.__dict__) | set(exports) | set(submodules))

        if package in CALLED_PACKAGES:
            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                return call_package(package, *args, **kwargs)

    sys.modules[package].__class__ = LazyPackage

"""Lazy package exports: a public name is imported from its module when first used.

``import vitnas`` and ``vitnas --help`` should not pay for torch, timm, nni or
scikit-learn (several seconds together). A package lists ``name -> module`` and calls
`export_lazily`; attribute access then imports the module (PEP 562).

Some public functions share their module's name (`vitnas.evaluate` the function lives in
`vitnas/evaluate.py`, `vitnas.load` in `vitnas/export/load.py`). Python's import
system binds a submodule onto its package when the submodule is first imported, which
would replace the function by the module. The package's class therefore ignores that
binding for exported names, so `vitnas.evaluate` is always the function, as it was when
these names were imported eagerly. Where a verb shares its name with a package
(`vitnas.train`, `vitnas.search`, `vitnas.export`, `vitnas.finetune`), the package is
callable instead (`call`), so ``import vitnas.train.recipe`` still finds the package.

A name a package does not export may be one that used to live there (a module that
became this package, or a name that moved to another package): `vitnas._moved` serves
those for one release, with a `DeprecationWarning`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Mapping

from vitnas._moved import moved_attribute

__all__ = ["export_lazily"]


def export_lazily(package: str, exports: Mapping[str, str], submodules: tuple[str, ...] = (),
                  call: str | None = None) -> None:
    """Makes each ``name`` of `exports` resolve to ``getattr(import_module(module), name)`` on first access.

    Each name in `submodules` resolves to the subpackage ``package.name`` itself. With
    `call`, the package itself is callable and calls its export `call`: the
    ``vitnas.search`` package is also the ``vitnas.search(...)`` verb, so both
    ``import vitnas.search.tune`` and ``vitnas.search(checkpoint, out, ...)`` work.
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

        if call is not None:
            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                return getattr(self, call)(*args, **kwargs)

    sys.modules[package].__class__ = LazyPackage

"""Lazy package exports: a public name is imported from its module when first used.

``import vitnas`` and ``vitnas --help`` should not pay for torch, timm, nni or
scikit-learn (several seconds together). A package lists ``name -> module`` and calls
`export_lazily`; attribute access then imports the module (PEP 562).

Some public functions share their module's name (`vitnas.train` the function lives in
`vitnas/train.py`). Python's import system binds a submodule onto its package when the
submodule is first imported, which would replace the function by the module. The
package's class therefore ignores that binding for exported names, so `vitnas.train` is
always the function, as it was when these names were imported eagerly.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Mapping

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
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
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

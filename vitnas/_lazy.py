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


def export_lazily(package: str, exports: Mapping[str, str]) -> None:
    """Makes each ``name`` of `exports` resolve to ``getattr(import_module(module), name)`` on first access."""

    class LazyPackage(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            module = exports.get(name)
            if module is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            value = getattr(importlib.import_module(module), name)
            self.__dict__[name] = value  # later lookups are plain attribute reads
            return value

        def __setattr__(self, name: str, value: Any) -> None:
            if name in exports and isinstance(value, types.ModuleType) and value.__name__ == f"{package}.{name}":
                return  # the import system binding a submodule over the public function of the same name
            super().__setattr__(name, value)

        def __dir__(self) -> list[str]:
            return sorted(set(self.__dict__) | set(exports))

    sys.modules[package].__class__ = LazyPackage

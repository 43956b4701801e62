"""The search space: what can be searched, one arch of it, and what an arch costs.

`spec` parses a space file into frozen dataclasses (`reducer_rules` holds what a space
knows of each token reducer: its rules and its token and cost arithmetic);
`space.SearchSpace` samples, mutates and validates archs over it; `arch.Arch` is one
sub-network as a frozen, hashable value (the currency of the whole system), and
`arch_files` reads them from files; `blocks.arch_layout` is the one derivation from an
arch to the shape of each of its blocks, which `cost` sums into parameters and MACs in
closed form and the model config, supernet, masked pass and latency predictor build on.
The bottom of the pipeline: it imports only `vitnas.util` and `vitnas.errors`, and no
torch. Names load on first use, so ``vitnas space --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas._lazy import export_lazily

_MODULES = {
    "arch": ("Arch", "StageArch"),
    "arch_files": ("read_arch", "read_archs"),
    "blocks": ("ArchLayout", "BlockShape", "arch_layout"),
    "space": ("SearchSpace", "load_space", "shipped_spaces"),
    "cost": ("block_shapes", "count_macs", "count_params"),
}
_LAZY = {name: f"vitnas.space.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)

export_lazily(__name__, _LAZY)

if TYPE_CHECKING:
    from vitnas.space.arch import Arch, StageArch
    from vitnas.space.arch_files import read_arch, read_archs
    from vitnas.space.blocks import ArchLayout, BlockShape, arch_layout
    from vitnas.space.cost import block_shapes, count_macs, count_params
    from vitnas.space.space import SearchSpace, load_space, shipped_spaces

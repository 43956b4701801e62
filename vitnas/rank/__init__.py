"""Rank checks: does the supernet order its sub-networks as stand-alone training does?

`check.rank_check` (the `vitnas rank-check` verb) trains a stratified draw of archs from
scratch (`runs`, in-process or as Ray tasks) and compares their accuracies with the
inherited ones (Kendall tau, Spearman rho).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas._lazy import export_lazily

_MODULES = {
    "check": ("rank_check", "format_rank_check", "rank_statistics", "stratified_archs"),
}
_LAZY = {name: f"vitnas.rank.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)

export_lazily(__name__, _LAZY)

if TYPE_CHECKING:
    from vitnas.rank.check import rank_check, format_rank_check, rank_statistics, stratified_archs

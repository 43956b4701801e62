"""`vitnas run` (`run_pipeline`): the whole path, profile, train, search, export, check, resumable stage by stage.

Nothing else in vitnas imports this package: it sits on top of all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitnas._lazy import export_lazily

_MODULES = {
    "stages": ("run_pipeline", "RunSettings", "RunResult", "format_run"),
}
_LAZY = {name: f"vitnas.pipeline.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)

export_lazily(__name__, _LAZY)

if TYPE_CHECKING:
    from vitnas.pipeline.stages import RunResult, RunSettings, format_run, run_pipeline

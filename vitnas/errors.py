"""Every error vitnas raises for bad input, in one place.

Every one carries a single line that names the thing at fault (a file, a field of a
space or an arch) and why, so the CLI can print it without a traceback. This module
imports nothing, so any module may raise any of them (and ``vitnas.CheckpointError``
costs no torch). Each class is also importable from the module that used to define it
(``from vitnas.train.recipe import RecipeError``), which imports it from here.
"""

from __future__ import annotations

__all__ = ["VitnasError", "SpaceError", "ArchError", "ExportError", "LatencyError", "ProfileError", "BudgetError",
           "DtypeError", "DataError", "RecipeError", "CheckpointError", "FitnessError", "BackendError", "SearchError",
           "RankCheckError", "RunError"]


class VitnasError(ValueError):
    """Base class: bad input that the user can fix, described in one line."""


class SpaceError(VitnasError):
    """A search-space file (or dict) is malformed or describes a choice that cannot work."""


class ArchError(VitnasError):
    """An architecture is malformed or lies outside its search space."""


class ExportError(VitnasError):
    """A model cannot be put into the requested form (e.g. an arch timm cannot express)."""


class LatencyError(VitnasError):
    """A latency measurement cannot be made as asked (unknown dtype, absent device, bad settings)."""


class ProfileError(LatencyError):
    """A device profile file is unreadable or malformed, or was made on a different device."""


class BudgetError(VitnasError):
    """A hardware budget is malformed, or asks for something it cannot check (latency without a profile)."""


# -- data and training


class DataError(VitnasError):
    """A data set cannot be found or read."""


class DtypeError(LatencyError):
    """A precision name vitnas does not know (a `LatencyError`: timing is where dtypes are chosen by name)."""


class RecipeError(VitnasError):
    """A recipe file or override is malformed."""


class CheckpointError(VitnasError):
    """A checkpoint is missing, incomplete or corrupt."""


# -- search


class FitnessError(VitnasError):
    """Fitness settings are malformed, or weights do not fit the space they are given with."""


class BackendError(VitnasError):
    """A backend cannot run as asked: Ray missing, a cluster unreachable, workers that cannot start or all died."""


class SearchError(VitnasError):
    """A search cannot run as asked: bad settings, a run directory in the way, an unusable backend."""


# -- the tools after export


class RankCheckError(VitnasError):
    """A rank check cannot run as asked: bad settings, a run directory in the way, an unfillable MACs bin."""


class RunError(VitnasError):
    """`vitnas run` cannot go on as asked: a bad flag, or a stage's artefact that does not fit the others."""

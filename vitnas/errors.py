"""The errors vitnas raises for bad input.

Every one carries a single line that names the thing at fault (a file, a field of a
space or an arch) and why, so the CLI can print it without a traceback.
"""

from __future__ import annotations

__all__ = ["VitnasError", "SpaceError", "ArchError", "ExportError"]


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


__all__ += ["LatencyError", "ProfileError", "BudgetError"]

"""The files vitnas ships: search spaces and training recipes, found in a checkout or a wheel.

The space files live in ``search_spaces/`` and the recipes in ``supernets/`` at the top
of the repository, where people read and edit them; `setup.py` maps the two folders
into the package as ``vitnas.search_spaces`` and ``vitnas.recipes``, so that
``pip install .`` (not only ``-e``) carries them. This module finds them either way,
and turns a mistyped name into one line that names the nearest shipped ones.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

__all__ = ["shipped_files", "unknown_name"]

_REPOSITORY = Path(__file__).resolve().parents[2]  # vitnas/util/shipped.py -> the checkout


def shipped_files(package: str, repository_folder: str) -> dict[str, Path]:
    """Stems and paths of the ``*.yaml`` files of a data package, sorted by name.

    Args:
        package: the installed data package (``vitnas.search_spaces``, ``vitnas.recipes``).
        repository_folder: the same files in a checkout that is not installed.
    """
    try:
        folder = resources.files(package)
        found = {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        found = {}
    if not found and (_REPOSITORY / repository_folder).is_dir():
        found = {p.stem: p for p in (_REPOSITORY / repository_folder).glob("*.yaml")}
    return dict(sorted(found.items()))


def unknown_name(name: str, kind: str, shipped: dict[str, Path]) -> str:
    """One line for a name that is neither a file nor shipped, with the closest shipped names first."""
    close = difflib.get_close_matches(str(name), list(shipped), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return f"{name}: no such file, and not a shipped {kind} ({hint}shipped: {', '.join(shipped)})"

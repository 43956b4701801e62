"""Archs read from files, or named, and checked against a space: what every verb's ``--arch`` takes.

A file holds one JSON arch, a JSON list of them, or JSON lines (as ``vitnas space
--sample`` prints); an entry may also be a search record holding its arch under
``"arch"`` (``best.json``, ``results.jsonl``). ``largest`` and ``smallest`` name the
space's extremes.

Apart from `vitnas.space.arch` because reading is checked against a `SearchSpace`,
and the space module builds archs: `Arch` stays a leaf value that imports nothing of
the space, so no import circle runs through it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitnas.errors import ArchError
from vitnas.space.arch import Arch

if TYPE_CHECKING:  # only its methods are called: reading an arch file must not load NNI (``vitnas export --help``)
    from vitnas.space.space import SearchSpace

__all__ = ["read_arch", "read_archs"]

_NAMED = ("largest", "smallest")


def read_archs(sources: list[str], space: SearchSpace) -> list[Arch]:
    """Archs from files (one JSON arch, a JSON list, or JSON lines) or the names 'largest' / 'smallest'.

    Raises:
        ArchError: a file is missing or unreadable, or holds no valid arch (naming the file).
    """
    archs = []
    for source in sources:
        if source in _NAMED and not Path(source).is_file():
            archs.append(space.largest() if source == "largest" else space.smallest())
            continue
        try:
            text = Path(source).read_text()
        except OSError as error:
            raise ArchError(f"{source}: cannot be read ({error.strerror or error})") from None
        for arch in _parse_archs(text, source):
            try:
                space.validate(arch)
            except ArchError as error:
                raise ArchError(f"{source}: not in space {space.name}: {error}") from None
            archs.append(arch)
    return archs


def read_arch(text: str, space: SearchSpace) -> Arch:
    """One arch: a JSON file holding exactly one, or a space's largest / smallest (`vitnas eval --arch`)."""
    if text not in _NAMED and not Path(text).is_file():
        raise ArchError(f"{text}: no such arch file (or say largest / smallest)")
    archs = read_archs([text], space)
    if len(archs) != 1:
        raise ArchError(f"{text}: holds {len(archs)} archs; eval takes one")
    return archs[0]


def _parse_archs(text: str, source: str) -> list[Arch]:
    """One JSON arch, a JSON list of archs, or JSON lines (as `vitnas space --sample` prints).

    An entry may also be a record holding its arch under ``"arch"`` (a search's
    ``best.json`` or ``results.jsonl``), so search output feeds every verb directly.
    """
    try:
        data = json.loads(text)
        entries, label = (data, "entry") if isinstance(data, list) else ([data], "")
    except json.JSONDecodeError:
        lines = [line for line in text.splitlines() if line.strip()]
        entries, label = ([_json_line(line, source, number) for number, line in enumerate(lines, 1)], "line")
    if not entries:
        raise ArchError(f"{source}: holds no arch")
    archs = []
    for number, entry in enumerate(entries, start=1):
        try:
            record = isinstance(entry, dict) and "arch" in entry and "stages" not in entry
            archs.append(Arch.from_dict(entry["arch"] if record else entry))
        except ArchError as error:
            where = f" {label} {number}" if label else ""
            raise ArchError(f"{source}{where}: {error}") from None
    return archs


def _json_line(line: str, source: str, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise ArchError(f"{source} line {number}: not valid JSON ({error.msg} at column {error.colno})") from None

"""Which sub-networks an export writes: an arch file, an `Arch`, or a search's ``best.json``.

A search's ``best.json`` is a list of records, one per budget, each holding ``name``,
``arch`` and the evidence (accuracies on the named splits, costs, latency). Exporting
from it keeps that evidence, so the model card can say how accurate the model is and
on which split; a plain arch file carries none. A best.json written before MACs were
called ``macs`` says ``flops`` and ``max_flops``; its records are read under the new names,
so every export folder says ``macs``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitnas.errors import ArchError, ExportError
from vitnas.space.arch import Arch
from vitnas.space.arch_files import read_archs
from vitnas.util.renamed import upgraded

if TYPE_CHECKING:
    from vitnas.space.space import SearchSpace

__all__ = ["Target", "folder_names", "read_targets"]

# The parts of a best.json record an export keeps (see `vitnas.search.report.Choice`).
RECORD_KEYS = ("name", "budget", "accuracy", "val_accuracy", "search_split", "report_split", "macs", "params",
               "latency_ms", "measured_latency_ms", "meets_measured")


@dataclass(frozen=True)
class Target:
    """One sub-network to export, with the search's evidence for it when it came from ``best.json``."""

    arch: Arch
    name: str | None = None  # the budget's name in best.json
    record: dict[str, Any] | None = None  # RECORD_KEYS of its best.json record


def read_targets(source: str | Path | Arch, space: SearchSpace, budget: str | None = None,
                 all_budgets: bool = False) -> list[Target]:
    """The sub-networks `source` names, validated against `space`.

    Args:
        source: an `Arch`; the names ``largest`` / ``smallest``; or a file holding one
            JSON arch, or a search's ``best.json`` (a list of records with ``name`` and ``arch``).
        budget: from a best.json, the record of this name (default: the first record).
        all_budgets: from a best.json, every record.

    Raises:
        ExportError: `budget` and `all_budgets` together, a budget that is not in the
            file, or a plain arch file with several archs or with `budget` / `all_budgets`.
        ArchError: the file is unreadable or an arch is malformed or outside `space`.
    """
    if budget is not None and all_budgets:
        raise ExportError("--budget and --all exclude each other: name one budget or take them all")
    if isinstance(source, Arch):
        space.validate(source)
        records = None
    else:
        records = _records(Path(source)) if Path(source).is_file() else None
    if records is None:
        if budget is not None or all_budgets:
            raise ExportError(f"{source}: --budget and --all need a search's best.json; this holds plain archs")
        archs = [source] if isinstance(source, Arch) else read_archs([str(source)], space)
        if len(archs) != 1:
            raise ExportError(f"{source}: holds {len(archs)} archs; export takes one (or a best.json with --all)")
        return [Target(archs[0])]
    chosen = records if all_budgets else [_pick(records, budget, source)]
    return [_target(record, space, source) for record in chosen]


def _records(path: Path) -> list[dict[str, Any]] | None:
    """best.json's records, or None when the file is not a list of records with a name and an arch."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # read_archs reports what is wrong with it, or reads JSON lines
    is_records = isinstance(data, list) and data and all(
        isinstance(entry, dict) and "arch" in entry and "name" in entry for entry in data)
    return [upgraded(entry) for entry in data] if is_records else None


def _pick(records: list[dict[str, Any]], budget: str | None, source: str | Path) -> dict[str, Any]:
    if budget is None:
        return records[0]
    for record in records:
        if record["name"] == budget:
            return record
    names = ", ".join(repr(record["name"]) for record in records)
    raise ExportError(f"{source}: no budget named {budget!r} (it holds {names})")


def _target(record: dict[str, Any], space: SearchSpace, source: str | Path) -> Target:
    where = f"{source}: budget {record['name']!r}"
    try:
        arch = Arch.from_dict(record["arch"])
        space.validate(arch)
    except ArchError as error:
        raise ArchError(f"{where}: {error}") from None
    kept = {key: record[key] for key in RECORD_KEYS if key in record}
    return Target(arch, str(record["name"]), kept)


def folder_names(targets: list[Target]) -> list[str]:
    """One distinct, file-system-safe folder name per target, after its budget name.

    ``latency_ms<=4`` becomes ``latency_ms_le_4``; ``macs<=1.3G,params<=10M`` becomes
    ``macs_le_1.3G__params_le_10M``. Names that collide after cleaning get ``-2``, ``-3``.
    """
    names: list[str] = []
    for index, target in enumerate(targets):
        text = (target.name or f"arch-{index}").replace("<=", "_le_").replace(">=", "_ge_").replace(",", "__")
        text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or f"budget-{index}"
        name, suffix = text, 2
        while name in names:
            name, suffix = f"{text}-{suffix}", suffix + 1
        names.append(name)
    return names

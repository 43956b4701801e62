"""What a search leaves behind: the choice per budget scored on ``val``, the Pareto front, a plot, a table.

This module writes files from plain data; it scores and times nothing (the driver's
finish step does, `vitnas.search.driver`), so it imports nothing of the driver.

``best.json`` is the contract the export work reads: a list with one entry per budget,
each with ``name``, ``budget``, ``arch`` (loadable by `Arch.from_dict`), ``accuracy`` (on
the search split), ``val_accuracy``, ``macs``, ``params`` and, with a profile, the
predicted latency and (where the profile's device is this machine's) the measured one
and whether it meets the budget. Every file is written atomically. A best.json written
before MACs were called ``macs`` says ``flops`` (and ``max_flops``); its readers (the export,
`vitnas run`) take it through `vitnas.util.renamed.upgraded`.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from vitnas.space.arch import Arch
from vitnas.util.atomic import write_bytes_atomically, write_text_atomically

if TYPE_CHECKING:
    from vitnas.search.algorithm import SearchAlgorithm

__all__ = ["Choice", "SearchResult", "format_table", "write_report"]

SEARCH_SPLIT, REPORT_SPLIT = "minival", "val"


@dataclass(frozen=True)
class Choice:
    """The best arch found under one budget, with its evidence."""

    name: str  # the budget's short name, e.g. "latency_ms<=4"
    budget: dict[str, Any]  # the budget's limits (`Budget.to_dict`)
    arch: Arch
    accuracy: float  # top-1 on the search split (what the search chose by)
    val_accuracy: float  # top-1 on the report split
    macs: int  # multiply-accumulates per image
    params: int
    latency_ms: float | None = None  # predicted by the profile
    measured_latency_ms: float | None = None  # measured here, where the profile's device is this machine's
    meets_measured: bool | None = None  # whether the measured latency meets the budget's latency limit

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["arch"] = self.arch.to_dict()
        data.update(search_split=SEARCH_SPLIT, report_split=REPORT_SPLIT)
        return data


@dataclass(frozen=True)
class SearchResult:
    """A finished search: one choice per budget, the front, and where the files are."""

    out: Path
    choices: tuple[Choice, ...]
    front: tuple[dict[str, Any], ...]  # Pareto-optimal candidates (arch as a dict, accuracy, costs)
    cost_key: str  # "latency_ms" with a profile, else "macs"
    evaluations: int  # candidates in the history
    replayed: int  # of those, taken from results.jsonl on resume
    trained_on_search_images: bool

    @property
    def best(self) -> Path:
        return self.out / "best.json"

    @property
    def plot(self) -> Path:
        return self.out / "pareto.png"


def write_report(out: Path, choices: Sequence[Choice], algorithm: SearchAlgorithm,
                 references: dict[str, tuple[Arch, float]], *, device_label: str | None, algorithm_name: str,
                 space_name: str, trained_on_search_images: bool, resumed: int) -> SearchResult:
    """Writes best.json, pareto.json and pareto.png from what the search found; computes nothing.

    Args:
        out: the search's run directory.
        choices: one per budget, already scored on ``val`` and measured (the driver's finish step).
        algorithm: the finished search: its history, front and budgets.
        references: the largest and smallest sub-networks (label -> arch, search top-1), for the plot.
        device_label: the profile's device, batch and dtype, or None without a profile.
        algorithm_name: "evolution" or "random", and `space_name`: the plot's title.
        trained_on_search_images: whether the supernet trained on the search split (a note in the table).
        resumed: candidates taken from results.jsonl.
    """
    front = tuple({**row, "arch": row["arch"].to_dict()} for row in algorithm.pareto())
    write_text_atomically(out / "best.json", json.dumps([c.to_dict() for c in choices], indent=1) + "\n")
    pareto = {"cost_key": algorithm.cost_key, "device": device_label, "front": list(front)}
    write_text_atomically(out / "pareto.json", json.dumps(pareto, indent=1) + "\n")
    title = f"{algorithm_name} search of {space_name}: choices (stars) under budgets (dotted)"
    write_bytes_atomically(out / "pareto.png", _plot(algorithm, choices, references, device_label, title))
    return SearchResult(out, tuple(choices), front, algorithm.cost_key, algorithm.evaluations, resumed,
                        trained_on_search_images)


def _plot(algorithm: SearchAlgorithm, choices: Sequence[Choice], references: dict[str, tuple[Arch, float]],
          device_label: str | None, title: str) -> bytes:
    """pareto.png: every candidate, the front, the choice per budget, largest and smallest for reference."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    key = algorithm.cost_key
    rows = algorithm.results()
    scale, unit = _axis(key, device_label, max(row[key] for row in rows))
    figure, axes = plt.subplots(figsize=(7.5, 5), dpi=120)
    axes.scatter([r[key] * scale for r in rows], [100 * r["accuracy"] for r in rows], s=10, alpha=0.35,
                 color="tab:gray", label=f"candidates ({len(rows)})")
    front = algorithm.pareto()
    axes.plot([r[key] * scale for r in front], [100 * r["accuracy"] for r in front], "-o", color="tab:blue",
              markersize=3, label="Pareto front")
    for label, (arch, accuracy) in references.items():
        axes.scatter([algorithm.costs(arch)[key] * scale], [100 * accuracy], marker="s", s=40, color="tab:green")
        axes.annotate(label, (algorithm.costs(arch)[key] * scale, 100 * accuracy), textcoords="offset points",
                      xytext=(5, -10), fontsize=8, color="tab:green")
    for named in algorithm.budgets:
        limit = named.budget.latency_ms if key == "latency_ms" else named.budget.max_macs
        if limit is not None:
            axes.axvline(limit * scale, color="tab:red", linestyle=":", linewidth=1, alpha=0.6)
    stars: dict[Arch, tuple[float, list[str]]] = {}
    for choice in choices:  # budgets that chose the same arch share one star and one label
        stars.setdefault(choice.arch, (choice.accuracy, []))[1].append(choice.name)
    for arch, (top1, budget_names) in stars.items():
        x, accuracy = algorithm.costs(arch)[key] * scale, 100 * top1
        axes.scatter([x], [accuracy], marker="*", s=160, color="tab:red", zorder=3)
        axes.annotate("\n".join(budget_names), (x, accuracy), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axes.set_xlabel(unit)
    axes.set_ylabel(f"top-1 on {SEARCH_SPLIT} (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _axis(cost_key: str, device_label: str | None, largest: float) -> tuple[float, str]:
    """Scale and label of the cost axis: predicted milliseconds, or MACs in G (M for small spaces)."""
    if cost_key == "latency_ms":
        return 1.0, f"latency (ms, predicted; {device_label})"
    return (1e-9, "MACs per image (G)") if largest >= 1e8 else (1e-6, "MACs per image (M)")


def format_table(result: SearchResult) -> str:
    """The short final table: one line per budget."""
    header = f"{'budget':<22} {'search':>7} {'val':>7} {'MACs':>9} {'params':>8} {'pred ms':>8} {'meas ms':>8}  arch"
    lines = [header]
    for c in result.choices:
        predicted = "-" if c.latency_ms is None else f"{c.latency_ms:.3f}"
        measured = "-" if c.measured_latency_ms is None else f"{c.measured_latency_ms:.3f}"
        lines.append(f"{c.name:<22} {c.accuracy:>7.1%} {c.val_accuracy:>7.1%} {c.macs / 1e6:>8.1f}M "
                     f"{c.params / 1e6:>7.3f}M {predicted:>8} {measured:>8}  {c.arch}")
    note = f"{result.evaluations} candidates"
    if result.replayed:
        note += f" ({result.replayed} taken from results.jsonl on resume)"
    lines.append(f"\n{note}; search top-1 on {SEARCH_SPLIT}, reported top-1 on {REPORT_SPLIT}")
    if result.trained_on_search_images:
        lines.append(f"note: the supernet trained on the {SEARCH_SPLIT} images (recipe data.holdout is off)")
    lines.append(f"files: {result.best}, {result.out / 'pareto.json'}, {result.plot}, {result.out / 'results.jsonl'}")
    return "\n".join(lines)

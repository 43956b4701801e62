"""Inherited against retrained: the archs a search chose, each trained stand-alone with the supernet's recipe.

Issue 21 asks whether a user can deploy a searched sub-network with the weights it inherits
from the supernet. AutoFormer reports inherited accuracy within 0.2 points of retraining;
the target here is a mean gap of at most 0.5 points over the archs of a search's front
(its ``best.json``: one arch per budget; ``largest`` and ``smallest`` name the space's
extremes). Each arch is trained from scratch stand-alone through `vitnas.rank.runs` (the
supernet's recipe without distillation, its epochs unless ``--epochs``, ``key=value``
overrides as `vitnas rank-check` takes them), ``--seeds`` times, one after another or as Ray
tasks. Printed: each arch's inherited and stand-alone top-1 on ``val`` and the gap
(inherited minus stand-alone), then the mean gap and the mean absolute gap.

Resumable: the same command continues where it stopped, and ``--reuse`` takes finished runs
of the same arch and recipe from rank checks or earlier benchmarks.

    python benchmarks/pareto_gap.py --checkpoint runs/fm/super --archs runs/fm/search/best.json largest \\
        --out runs/fm/gap --backend ray --workers 2
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

import vitnas
from vitnas.errors import VitnasError
from vitnas.rank.runs import standalone_recipe, standalone_top1
from vitnas.space.arch import Arch
from vitnas.space.arch_files import read_archs
from vitnas.space.cost import count_macs, count_params
from vitnas.train.checkpoint import load_checkpoint, load_supernet
from vitnas.util.atomic import write_text_atomically


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)  # a benchmark's own choice; library code never sets it
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started = time.perf_counter()
    supernet, space = load_supernet(args.checkpoint)
    base = load_checkpoint(Path(args.checkpoint))["recipe"]
    archs = list(dict.fromkeys(read_archs(args.archs, space)))  # a budget's pick may repeat another's
    epochs = args.epochs or base.epochs
    recipes = [standalone_recipe(base, epochs, args.overrides, seed=k) for k in range(args.seeds)]
    standalone, trained = standalone_top1(archs, space, recipes, args.out, args.reuse, args.backend, args.workers,
                                          float(args.threads))
    rows = [_row(space, supernet, base, arch, standalone[index]) for index, arch in enumerate(archs)]
    summary = _summary(rows, args, epochs, time.perf_counter() - started, trained)
    write_text_atomically(args.out / "summary.json", json.dumps(summary, indent=1) + "\n", VitnasError)
    _print(rows, summary, args)


def _row(space, supernet, base, arch: Arch, seeds: list[float]) -> dict:
    """One arch: its costs, inherited top-1, each seed's stand-alone top-1, their mean and the gap."""
    inherited = vitnas.evaluate(supernet, arch, data=base.data, split="val")
    mean = float(np.mean(seeds))
    return {"arch": arch.to_dict(), "macs": count_macs(space, arch), "params": count_params(space, arch),
            "inherited_top1": inherited, "standalone_seeds": seeds, "standalone_top1": mean, "gap": inherited - mean}


def _summary(rows: list[dict], args: argparse.Namespace, epochs: int, wall: float, trained: float) -> dict:
    gaps = [row["gap"] for row in rows]
    return {"checkpoint": str(args.checkpoint), "archs": args.archs, "epochs": epochs, "seeds": args.seeds,
            "overrides": args.overrides, "mean_gap": float(np.mean(gaps)),
            "mean_abs_gap": float(np.mean(np.abs(gaps))), "max_abs_gap": float(np.max(np.abs(gaps))),
            "wall_s": wall, "training_s": trained, "rows": rows}


def _print(rows: list[dict], summary: dict, args: argparse.Namespace) -> None:
    print(f"device: CPU ({args.threads} torch thread(s) a run, backend {args.backend}), torch {torch.__version__}; "
          f"{summary['epochs']} stand-alone epochs, {args.seeds} seed(s) each"
          + (f", overrides {' '.join(args.overrides)}" if args.overrides else "") + "; top-1 on val")
    print(f"{'MACs':>8} {'params':>8} {'inherited':>10} {'stand-alone':>12} {'gap':>7}  seeds  arch")
    for row in sorted(rows, key=lambda row: row["macs"]):
        seeds = " ".join(f"{top1:.2%}" for top1 in row["standalone_seeds"])
        print(f"{row['macs'] / 1e6:>7.2f}M {row['params'] / 1e6:>7.3f}M {row['inherited_top1']:>10.2%} "
              f"{row['standalone_top1']:>12.2%} {100 * row['gap']:>+6.2f}  {seeds}  {Arch.from_dict(row['arch'])}")
    print(f"inherited minus stand-alone: mean {100 * summary['mean_gap']:+.2f} points, mean absolute "
          f"{100 * summary['mean_abs_gap']:.2f}, largest absolute {100 * summary['max_abs_gap']:.2f} over "
          f"{len(rows)} archs | wall {summary['wall_s']:.0f} s ({summary['training_s']:.0f} s training)")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a trained supernet (vitnas train --out)")
    parser.add_argument("--archs", nargs="+", required=True,
                        help="arch files (a search's best.json, JSON lines) or largest / smallest")
    parser.add_argument("--out", type=Path, default=Path("runs/pareto_gap"), help="benchmark directory")
    parser.add_argument("--seeds", type=int, default=1, help="stand-alone runs per arch, averaged")
    parser.add_argument("--epochs", type=int, default=None, help="stand-alone epochs (default: the recipe's)")
    parser.add_argument("--reuse", action="append", default=[], metavar="DIR",
                        help="an earlier benchmark or rank-check directory whose finished runs may be reused")
    parser.add_argument("--backend", default="local", choices=("local", "ray"), help="runs in turn, or as Ray tasks")
    parser.add_argument("--workers", type=int, default=2, help="Ray: runs at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads a run")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="stand-alone recipe overrides")
    return parser.parse_args()


if __name__ == "__main__":
    main()

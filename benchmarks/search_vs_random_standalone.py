"""The honest end-to-end check of NAS: the searched arch against random archs of similar MACs, all trained stand-alone.

Issue 11: evolution searches the supernet under a MACs budget; its choice and `--random`
archs drawn uniformly from the space with MACs within `--tolerance` of the choice's (and
under the budget) are each trained from scratch with the supernet's recipe (no
distillation), `--seeds` times, through `vitnas.rank.runs`. Printed: each arch's
inherited (supernet) and stand-alone top-1 on ``val``, the searched arch against the
random archs' mean and best, and what one stand-alone retrain gains over inherited
weights. Everything is resumable: an interrupted benchmark continues where it stopped,
and ``--reuse`` takes finished runs of the same archs from earlier benchmarks or rank checks.
Stand-alone recipe overrides (``key=value``, e.g. ``data.train_images=20000``) and the Ray
backend (``--backend ray --workers 2``) work as in `vitnas rank-check`.

    python benchmarks/search_vs_random_standalone.py --checkpoint runs/digits --flops 0.0034 --threads 1 --out /tmp/svr
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

import vitnas
from vitnas.errors import VitnasError
from vitnas.rank.runs import standalone_recipe, standalone_top1
from vitnas.space.arch import Arch
from vitnas.space.cost import count_macs
from vitnas.space.space import SearchSpace
from vitnas.train.checkpoint import load_checkpoint, load_supernet
from vitnas.util.atomic import write_text_atomically


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)  # a benchmark's own choice; library code never sets it
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started = time.perf_counter()
    supernet, space = load_supernet(args.checkpoint)
    base = load_checkpoint(Path(args.checkpoint))["recipe"]
    searched = _search(args)
    archs = [searched, *_similar_archs(space, searched, args.flops * 1e9, args.random, args.tolerance, args.seed)]
    epochs = args.epochs or base.epochs
    recipes = [standalone_recipe(base, epochs, args.overrides, seed=k) for k in range(args.seeds)]
    standalone, trained = standalone_top1(archs, space, recipes, args.out, args.reuse, args.backend, args.workers,
                                          float(args.threads))
    inherited = [vitnas.evaluate(supernet, arch, data=base.data, split="val") for arch in archs]
    rows = [{"arch": arch.to_dict(), "role": "searched" if index == 0 else "random", "macs": count_macs(space, arch),
             "inherited_top1": inherited[index], "standalone_seeds": standalone[index],
             "standalone_top1": float(np.mean(standalone[index]))} for index, arch in enumerate(archs)]
    summary = _summary(rows, args, epochs, time.perf_counter() - started, trained)
    write_text_atomically(args.out / "summary.json", json.dumps(summary, indent=1) + "\n", VitnasError)
    _print(rows, summary, args)


def _search(args: argparse.Namespace) -> Arch:
    """Evolution's choice under the MACs budget (resumed from OUT/search when there)."""
    out = args.out / "search"
    result = vitnas.search_supernet(args.checkpoint, out, macs=args.flops, seed=args.seed, verify=False,
                                    progress=False, resume=(out / "results.jsonl").is_file())
    return result.choices[0].arch


def _similar_archs(space: SearchSpace, searched: Arch, budget: float, count: int, tolerance: float,
                   seed: int) -> list[Arch]:
    """`count` distinct uniform draws with MACs within `tolerance` (relative) of the searched arch's, under `budget`."""
    target = count_macs(space, searched)
    rng, found = np.random.default_rng([seed, 11]), []
    for _ in range(20_000):
        arch = space.sample(rng)
        macs = count_macs(space, arch)
        if abs(math.log(macs / target)) <= math.log1p(tolerance) and macs <= budget and arch != searched \
                and arch not in found:
            found.append(arch)
            if len(found) == count:
                return found
    raise SystemExit(f"only {len(found)} of {count} random archs within {tolerance:.0%} of {target / 1e6:.2f} M MACs "
                     "after 20000 draws: raise --tolerance")


def _summary(rows: list[dict], args: argparse.Namespace, epochs: int, wall: float, trained: float) -> dict:
    searched, randoms = rows[0], rows[1:]
    random_top1 = [row["standalone_top1"] for row in randoms]
    return {"checkpoint": str(args.checkpoint), "flops_budget_g": args.flops, "epochs": epochs, "seeds": args.seeds,
            "overrides": args.overrides,
            "searched_standalone": searched["standalone_top1"], "searched_inherited": searched["inherited_top1"],
            "random_mean": float(np.mean(random_top1)), "random_best": float(np.max(random_top1)),
            "searched_rank": 1 + sum(top1 > searched["standalone_top1"] for top1 in random_top1),
            "retrain_gain": searched["standalone_top1"] - searched["inherited_top1"],
            "wall_s": wall, "training_s": trained, "rows": rows}


def _print(rows: list[dict], summary: dict, args: argparse.Namespace) -> None:
    print(f"device: CPU ({args.threads} torch threads), torch {torch.__version__}; {summary['epochs']} stand-alone "
          f"epochs, {args.seeds} seed(s) each, top-1 on val")
    print(f"{'role':>8} {'MACs':>8} {'inherited':>10} {'stand-alone':>12}  seeds  arch")
    for row in rows:
        seeds = " ".join(f"{top1:.2%}" for top1 in row["standalone_seeds"])
        print(f"{row['role']:>8} {row['macs'] / 1e6:>7.2f}M {row['inherited_top1']:>10.2%} "
              f"{row['standalone_top1']:>12.2%}  {seeds}  {Arch.from_dict(row['arch'])}")
    print(f"searched {summary['searched_standalone']:.2%} vs random mean {summary['random_mean']:.2%}, best "
          f"{summary['random_best']:.2%} (searched ranks {summary['searched_rank']} of {len(rows)}); retrain gain over "
          f"inherited {100 * summary['retrain_gain']:+.2f} points | wall {summary['wall_s']:.0f} s "
          f"({summary['training_s']:.0f} s training)")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a trained supernet (vitnas train --out)")
    parser.add_argument("--flops", type=float, required=True, help="the MACs budget of the search, in G MACs")
    parser.add_argument("--out", type=Path, default=Path("runs/search_vs_random"), help="benchmark directory")
    parser.add_argument("--random", type=int, default=5, help="random archs of similar MACs (issue 11: 5)")
    parser.add_argument("--tolerance", type=float, default=0.1, help="relative MACs difference allowed (default 10%%)")
    parser.add_argument("--seeds", type=int, default=2, help="stand-alone runs per arch, averaged")
    parser.add_argument("--epochs", type=int, default=None, help="stand-alone epochs (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the search and the random draw")
    parser.add_argument("--reuse", action="append", default=[], metavar="DIR",
                        help="an earlier benchmark or rank-check directory whose finished runs may be reused")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a run's, on the Ray backend)")
    parser.add_argument("--backend", default="local", choices=("local", "ray"), help="runs in turn, or as Ray tasks")
    parser.add_argument("--workers", type=int, default=2, help="Ray: runs at once")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="stand-alone recipe overrides, e.g. data.train_images=20000 (as rank-check takes them)")
    return parser.parse_args()


if __name__ == "__main__":
    main()

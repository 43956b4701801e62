"""`vitnas rank-check`: argument parsing and printing only; the work is `vitnas.rank.check.rank_check`.

Importing this module costs no torch: ``vitnas --help`` builds every verb's parser.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from vitnas.train.cli import CONVENTION, add_run_flags, resume_flag

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Adds the ``rank-check`` verb to the `vitnas` command's subparsers."""
    parser = subparsers.add_parser(
        "rank-check", help="measure how truly a supernet ranks sub-networks against stand-alone training",
        description="Draws sub-networks spread over the space's MACs range, trains each stand-alone from scratch "
                    "with the supernet's recipe (no distillation), scores each with inherited and with its own "
                    "weights on a held-out split, and reports Kendall tau, Spearman rho, the top-5 overlap and the "
                    "regret of picking by the supernet. Writes archs.jsonl, summary.json, scatter.png and runs/. "
                    f"Recipe overrides (key=value) for the stand-alone runs may follow the options. {CONVENTION}")
    parser.add_argument("--checkpoint", required=True, help="supernet run (vitnas train --out) or checkpoint folder")
    parser.add_argument("--out", required=True, help="rank-check run directory")
    parser.add_argument("--archs", type=int, default=20, metavar="N", help="sub-networks to train (>= 4; default 20)")
    parser.add_argument("--epochs", type=int, default=None, help="stand-alone epochs each (default: the recipe's)")
    parser.add_argument("--bins", type=int, default=None,
                        help="log-MACs bins to stratify over (default: one per arch)")
    parser.add_argument("--split", default="val", help="held-out split both accuracies use: val (default) or minival")
    parser.add_argument("--seed", type=int, default=0, help="seeds the draw of the sub-networks")
    parser.add_argument("--seeds", type=int, default=1,
                        help="stand-alone runs per arch; their mean is the ground truth and the tau between them "
                             "its ceiling (default 1)")
    parser.add_argument("--reuse", action="append", default=[], metavar="DIR",
                        help="an earlier rank-check directory whose finished stand-alone runs (same arch, recipe, "
                             "epochs, seed) are taken instead of training again; repeatable")
    parser.add_argument("--ema", action="store_true", help="score EMA weights where the recipe keeps them")
    parser.add_argument("--backend", default="local", help="local (one run after another, default) or ray")
    parser.add_argument("--workers", type=int, default=2, help="Ray: runs at once (default: 2)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, help="Ray: CPUs (and torch threads) per run")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPUs (or a fraction) per run")
    parser.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS"),
                        help="attach to this Ray cluster (default: $RAY_ADDRESS, else start a local Ray)")
    parser.add_argument("--device", default=None, help="where accuracies are measured (default: cuda when present)")
    add_run_flags(parser, "kept for old scripts (continuing is the default): refuses an --out without a check")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="stand-alone recipe overrides, e.g. batch_size=64, or data.train_images=20000 (a "
                             "fixed draw of the training images: a cheaper ground truth)")
    parser.set_defaults(handler=_rank_check, takes_overrides=True, interrupted=_runs_kept)


def _runs_kept(args: argparse.Namespace) -> str:
    return f"finished runs are kept in {args.out}: run the same command again to continue"


def _rank_check(args: argparse.Namespace) -> int:
    from vitnas.rank.check import format_rank_check, rank_check

    result = rank_check(args.checkpoint, args.out, archs=args.archs, epochs=args.epochs, seed=args.seed,
                        bins=args.bins, split=args.split, overrides=args.overrides, use_ema=args.ema,
                        seeds=args.seeds, reuse=args.reuse,
                        backend=args.backend, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                        cpus_per_worker=args.cpus_per_worker, ray_address=args.ray_address,
                        resume=resume_flag(args), fresh=args.fresh, device=args.device)
    print(format_rank_check(result))
    return 0

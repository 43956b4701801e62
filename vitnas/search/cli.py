"""`vitnas search`: argument parsing and printing only; the work is `vitnas.search.driver.search_supernet`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from vitnas.train.cli import CONVENTION, add_run_flags, resume_flag
from vitnas.util.renamed import RenamedFlag

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Adds the ``search`` verb to the `vitnas` command's subparsers."""
    parser = subparsers.add_parser(
        "search", help="search a trained supernet under latency / MACs / params budgets",
        description="Evolutionary (or random) search of a trained supernet. Each limit value is one budget; "
                    "every budget gets its best arch. Writes results.jsonl, best.json, pareto.json, pareto.png. "
                    f"{CONVENTION}")
    parser.add_argument("--checkpoint", required=True, help="supernet run (vitnas train --out) or checkpoint folder")
    parser.add_argument("--out", required=True, help="search run directory")
    budgets = parser.add_argument_group("budgets (one budget per value; at least one)")
    budgets.add_argument("--latency-ms", type=_numbers, default=(), metavar="X[,Y...]",
                         help="milliseconds per forward pass at the profile's batch and dtype (needs --profile)")
    budgets.add_argument("--profile", default=None, metavar="PROFILE.json", help="device profile (vitnas latency profile)")
    budgets.add_argument("--profile-other-device", action="store_true",
                         help="use a profile of a device this machine lacks (latency predicted, not verified)")
    budgets.add_argument("--macs", type=_numbers, default=(), metavar="G[,G...]", help="G multiply-accumulates per image")
    budgets.add_argument("--flops", type=_numbers, dest="macs", action=RenamedFlag, new="--macs",
                         help=argparse.SUPPRESS)  # the old name of --macs, for one release
    budgets.add_argument("--params", type=_numbers, default=(), metavar="M[,M...]", help="millions of parameters")
    algorithm = parser.add_argument_group("algorithm")
    algorithm.add_argument("--algorithm", default="evolution", help="evolution (default) or random")
    algorithm.add_argument("--generations", type=int, default=None, help="default: 20")
    algorithm.add_argument("--population", type=int, default=None, help="default: 50")
    algorithm.add_argument("--parents", type=int, default=None, help="top-k parents per budget (default: 10)")
    algorithm.add_argument("--mutation-prob", type=float, default=None, help="per-gene redraw chance (default: 0.1)")
    algorithm.add_argument("--mutations", type=int, default=None, help="children by mutation per generation (25)")
    algorithm.add_argument("--crossovers", type=int, default=None, help="children by crossover per generation (25)")
    algorithm.add_argument("--seed", type=int, default=0)
    execution = parser.add_argument_group("evaluation")
    execution.add_argument("--backend", default="local", help="local (in this process, default) or ray")
    execution.add_argument("--workers", type=int, default=2, help="Ray evaluators (default: 2)")
    execution.add_argument("--gpus-per-worker", type=float, default=0.0, help="fraction of a GPU per Ray evaluator")
    execution.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS"),
                           help="attach to this Ray cluster (default: $RAY_ADDRESS, else start a local Ray)")
    execution.add_argument("--device", default=None, help="local evaluator's device (default: cuda when present)")
    execution.add_argument("--batch-size", type=int, default=None, help="images per fitness pass (default: 256)")
    execution.add_argument("--max-images", type=int, default=None, help="score on the first N search images only")
    execution.add_argument("--search-images", type=int, default=None,
                           help="ImageFolder / CIFAR: minival size drawn from train (default: the recipe's)")
    execution.add_argument("--ema", action="store_true", help="search the checkpoint's EMA weights")
    execution.add_argument("--no-verify", action="store_true", help="do not measure the choices' latency")
    add_run_flags(parser, "kept for old scripts (continuing is the default): refuses an --out without a search")
    parser.set_defaults(handler=_search, interrupted=_search_progress)


def _search_progress(args: argparse.Namespace) -> str:
    """What an interrupted search kept (its evaluations in ``args.out``), in one line for Ctrl-C."""
    from vitnas.search.driver import RESULTS_FILE, SETTINGS_FILE

    out = Path(args.out)
    if not (out / SETTINGS_FILE).is_file():
        return f"no search in {out} yet: run the same command again"
    results = out / RESULTS_FILE
    kept = results.read_bytes().count(b"\n") if results.is_file() else 0
    return f"{kept} evaluations are kept in {results}: run the same command again to continue"


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _search(args: argparse.Namespace) -> int:
    from vitnas.search.driver import search_supernet
    from vitnas.search.report import format_table

    options = {key: value for key, value in (
        ("parents", args.parents), ("mutation_prob", args.mutation_prob), ("mutations", args.mutations),
        ("crossovers", args.crossovers), ("batch_size", args.batch_size), ("max_images", args.max_images),
        ("search_images", args.search_images),
    ) if value is not None}
    if args.ema:
        options["use_ema"] = True
    result = search_supernet(args.checkpoint, args.out, latency_ms=args.latency_ms, profile=args.profile,
                             macs=args.macs, params=args.params, algorithm=args.algorithm, backend=args.backend,
                             workers=args.workers, gpus_per_worker=args.gpus_per_worker, ray_address=args.ray_address,
                             generations=args.generations, population=args.population, seed=args.seed,
                             resume=resume_flag(args), fresh=args.fresh, device=args.device,
                             profile_other_device=args.profile_other_device, verify=not args.no_verify, **options)
    print(format_table(result))
    return 0

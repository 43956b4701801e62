"""The `vitnas run` verb: flags for `vitnas.pipeline.stages.run_pipeline`, and its table printed."""

from __future__ import annotations

import argparse
from typing import Any

from vitnas.export.schema import MODEL_FORMATS
from vitnas.pipeline.stages import DEFAULT_FORMATS
from vitnas.train.cli import CONVENTION
from vitnas.util.renamed import RenamedFlag

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Adds `vitnas run` to the CLI."""
    run = subparsers.add_parser(
        "run", help="the whole path: train, latency profile, search, export, evaluate (resumable)",
        description="Trains a supernet, profiles this device, searches under two latency budgets and one MACs "
                    "budget, exports the best sub-network per budget and an elastic bundle, and evaluates the "
                    f"exports. Finished stages are skipped when it runs again. {CONVENTION}")
    run.add_argument("--out", default="vitnas-run", help="output directory (default: ./vitnas-run)")
    run.add_argument("--fresh", action="store_true", help="delete this run's artefacts in --out and start over")
    run.add_argument("--recipe", default="tiny32_digits", help="training recipe (default: tiny32_digits)")
    run.add_argument("--space", default=None, help="search space replacing the recipe's (shipped name or YAML)")
    run.add_argument("--data", default=None,
                     help="digits, cifar10:/path, cifar100:/path or an ImageFolder root (default: the recipe's)")
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when present)")
    run.add_argument("--latency-ms", type=_floats, default=(), metavar="X,Y",
                     help="latency budgets in ms per batch (default: chosen from the profile)")
    run.add_argument("--macs", type=_floats, default=(), metavar="G",
                     help="MACs budgets in G per image (default: chosen from the space)")
    run.add_argument("--flops", type=_floats, dest="macs", action=RenamedFlag, new="--macs",
                     help=argparse.SUPPRESS)  # the old name of --macs, for one release
    run.add_argument("--backend", choices=("ray", "local"), default="ray", help="search backend (default: ray)")
    run.add_argument("--ray-address", default=None, help="address of a running Ray cluster (ray start --head)")
    run.add_argument("--workers", type=int, default=2, help="Ray actors evaluating candidates (default: 2)")
    run.add_argument("--generations", type=int, default=10, help="evolution generations (default: 10)")
    run.add_argument("--population", type=int, default=30, help="archs in the first generation (default: 30)")
    run.add_argument("--profile-samples", type=int, default=40,
                     help="archs measured for the latency profile (default: 40)")
    run.add_argument("--format", type=_formats, default=DEFAULT_FORMATS, metavar="F,G",
                     help=f"forms of each export folder, comma-separated, of {', '.join(MODEL_FORMATS)} "
                          f"(default: {','.join(DEFAULT_FORMATS)})")
    run.add_argument("--latency-batch", type=int, default=32,
                     help="images per timed forward pass of the profile and the checks (default: 32)")
    run.add_argument("--threads", type=int, default=None,
                     help="torch CPU threads (default: 1 for models under 50M MACs, else torch's choice)")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    run.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. epochs=5")
    run.set_defaults(handler=_run, takes_overrides=True, interrupted=_stages_kept)


def _stages_kept(args: argparse.Namespace) -> str:
    return (f"finished stages, and the training or search under way, are kept in {args.out}: "
            f"run the same command again to continue")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [name for name in names if name not in MODEL_FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{unknown[0] if unknown else text!r}: expected "
                                         f"{', '.join(MODEL_FORMATS[:-1])} or {MODEL_FORMATS[-1]}")
    return names


def _run(args: argparse.Namespace) -> int:
    from vitnas.pipeline.stages import RunSettings, format_run, run_pipeline

    settings = RunSettings(
        recipe=args.recipe, out=args.out, overrides=tuple(args.overrides), space=args.space, data=args.data,
        device=args.device, latency_ms=args.latency_ms, macs=args.macs, backend=args.backend,
        ray_address=args.ray_address, workers=args.workers, generations=args.generations,
        population=args.population, profile_samples=args.profile_samples, formats=args.format,
        latency_batch=args.latency_batch, threads=args.threads, fresh=args.fresh,
        progress=args.progress)
    print(format_run(run_pipeline(settings)))
    return 0

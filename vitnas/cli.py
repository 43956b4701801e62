"""The `vitnas` command: argument parsing and printing only; each verb calls one library function."""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from vitnas.errors import VitnasError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return args.handler(args)
    except VitnasError as error:
        print(f"vitnas: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitnas", description="Neural architecture search for Vision Transformers.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    space = verbs.add_parser("space", help="summarise a search space and sample archs from it")
    space.add_argument("space", help="shipped space name (tiny32, deit, resnas) or YAML path")
    space.add_argument("--sample", type=int, default=0, metavar="N", help="print N random archs as JSON lines")
    space.add_argument("--seed", type=int, default=0)
    space.set_defaults(handler=_space)

    run = verbs.add_parser("run", help="the whole pipeline on the built-in digits data")
    run.add_argument("--space", default="tiny32", help="search space (default: tiny32)")
    run.add_argument("--seed", type=int, default=0)
    run.set_defaults(handler=_run)
    return parser


def _space(args: argparse.Namespace) -> int:
    from vitnas.cost import count_flops, count_params
    from vitnas.space import load_space

    space = load_space(args.space)
    print(space.summary())
    for label, arch in (("largest", space.largest()), ("smallest", space.smallest())):
        print(f"  {label}: {count_params(space, arch) / 1e6:.2f} M params, "
              f"{count_flops(space, arch) / 1e6:.1f} M MACs  ({arch})")
    rng = np.random.default_rng(args.seed)
    for _ in range(args.sample):
        print(space.sample(rng).to_json())
    return 0


def _run(args: argparse.Namespace) -> int:
    from vitnas.pipeline import run

    print(run(space=args.space, seed=args.seed))
    return 0

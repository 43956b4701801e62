"""`vitnas space`: argument parsing and printing only; the work is `vitnas.space.space.SearchSpace`.

Importing this module costs no torch: ``vitnas --help`` builds every verb's parser.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Adds the ``space`` verb to the `vitnas` command's subparsers."""
    space = subparsers.add_parser("space", help="summarise a search space and sample archs from it")
    space.add_argument("space", help="shipped space name (tiny32, deit, resnas) or YAML path")
    space.add_argument("--sample", type=int, default=0, metavar="N", help="print N random archs as JSON lines")
    space.add_argument("--seed", type=int, default=0)
    space.set_defaults(handler=_space)


def _space(args: argparse.Namespace) -> int:
    import numpy as np

    from vitnas.space.cost import count_macs, count_params
    from vitnas.space.space import load_space

    space = load_space(args.space)
    print(space.summary())
    for label, arch in (("largest", space.largest()), ("smallest", space.smallest())):
        print(f"  {label}: {count_params(space, arch) / 1e6:.2f} M params, "
              f"{count_macs(space, arch) / 1e6:.1f} M MACs  ({arch})")
    rng = np.random.default_rng(args.seed)
    for _ in range(args.sample):
        print(space.sample(rng).to_json())
    return 0

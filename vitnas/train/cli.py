"""`vitnas train`: argument parsing and printing only; the work is `vitnas.train.supernet.train_supernet`.

Importing this module costs no torch: ``vitnas --help`` builds every verb's parser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["register", "last_checkpoint"]


def register(subparsers: Any) -> None:
    """Adds the ``train`` verb to the `vitnas` command's subparsers."""
    train = subparsers.add_parser("train", help="train a supernet from a recipe")
    train.add_argument("recipe", help="recipe YAML (or shipped name: tiny32_digits, deit_small_supervit, resnas_tiny)")
    train.add_argument("--out", required=True, help="run directory: checkpoints and metrics.jsonl")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. epochs=5")
    train.set_defaults(handler=_train, takes_overrides=True, interrupted=last_checkpoint)


def _train(args: argparse.Namespace) -> int:
    from vitnas.train.supernet import train_supernet

    metrics = train_supernet(args.recipe, args.out, resume=args.resume, overrides=args.overrides)
    print(json.dumps(metrics))
    return 0


def last_checkpoint(args: argparse.Namespace) -> str:
    """What an interrupted training kept (the last checkpoint in ``args.out``), in one line for Ctrl-C."""
    from vitnas.errors import CheckpointError
    from vitnas.train.checkpoint import latest_checkpoint

    out = Path(args.out)
    try:
        folder = latest_checkpoint(out)
        epoch = json.loads((folder / "meta.json").read_text())["epoch"]
    except (CheckpointError, OSError, ValueError, KeyError):
        return f"no checkpoint in {out} yet: run the same command again to start over"
    return f"the last checkpoint is {folder} (epoch {epoch}): continue with the same command, with --resume"

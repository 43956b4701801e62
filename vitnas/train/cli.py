"""`vitnas train`: argument parsing and printing only; the work is `vitnas.train.supernet.train_supernet`.

Importing this module costs no torch: ``vitnas --help`` builds every verb's parser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["CONVENTION", "add_run_flags", "last_checkpoint", "register", "resume_flag"]

# The help every verb with a run directory shows (`vitnas.train.rundir`): one convention, said once.
CONVENTION = ("Run again, the same command continues the run in --out (a finished run does no work again); "
              "settings other than those the run began with are refused, naming the field; --fresh starts over.")
FRESH_HELP = "delete this verb's files in --out first and start over"
RESUME_HELP = ("kept for old scripts (continuing is the default): refuses an --out without a run, and continues "
               "with the recipe the run stored, not checking the one given")


def register(subparsers: Any) -> None:
    """Adds the ``train`` verb to the `vitnas` command's subparsers."""
    train = subparsers.add_parser("train", help="train a supernet from a recipe",
                                  description=f"Trains a supernet from a recipe into --out. {CONVENTION} "
                                              "key=value overrides apply to the stored recipe too: epochs=N extends "
                                              "a run.")
    train.add_argument("recipe", help="recipe YAML (or shipped name: tiny32_digits, deit_small_supervit, resnas_tiny)")
    train.add_argument("--out", required=True, help="run directory: checkpoints and metrics.jsonl")
    add_run_flags(train)
    train.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. epochs=5")
    train.set_defaults(handler=_train, takes_overrides=True, interrupted=last_checkpoint)


def _train(args: argparse.Namespace) -> int:
    from vitnas.train.supernet import train_supernet

    metrics = train_supernet(args.recipe, args.out, resume=resume_flag(args), overrides=args.overrides,
                             fresh=args.fresh)
    print(json.dumps(metrics))
    return 0


def add_run_flags(parser: argparse.ArgumentParser, resume_help: str = RESUME_HELP) -> None:
    """``--fresh`` and ``--resume``, as every verb with a run directory takes them."""
    restart = parser.add_mutually_exclusive_group()
    restart.add_argument("--fresh", action="store_true", help=FRESH_HELP)
    restart.add_argument("--resume", action="store_true", help=resume_help)


def resume_flag(args: argparse.Namespace) -> bool | None:
    """The library's ``resume`` for the flags: True with --resume (a run must be there), else None (continue if any)."""
    return True if args.resume else None


def last_checkpoint(args: argparse.Namespace) -> str:
    """What an interrupted training kept (the last checkpoint in ``args.out``), in one line for Ctrl-C."""
    from vitnas.errors import CheckpointError
    from vitnas.train.checkpoint import finished_epochs, latest_checkpoint

    out = Path(args.out)
    try:
        folder, epochs = latest_checkpoint(out), finished_epochs(out)
    except (CheckpointError, OSError):
        return f"no checkpoint in {out} yet: run the same command again to start over"
    return f"the last checkpoint is {folder} (epoch {epochs}): run the same command again to continue"

"""The `vitnas` command: the root parser. Each verb comes from its own package's ``cli.py``.

A package's ``cli.py`` has ``register(subparsers)``, which adds its verbs with their flags
and sets, through ``set_defaults``, what the root needs to know of them:

- ``handler``: the function that runs the verb (it calls one library function, prints);
- ``takes_overrides``: True where ``key=value`` recipe overrides may also follow the options;
- ``interrupted``: a function that says, in one line, what a Ctrl-C kept and how to go on
  (default: nothing half-written was kept).

Registering imports no torch: ``vitnas --help`` builds every verb's parser in a blink.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from vitnas.errors import VitnasError

__all__ = ["main", "VERB_MODULES"]

# In pipeline order; each module's register(subparsers) adds its verbs.
VERB_MODULES = (
    "vitnas.space.cli",  # space
    "vitnas.train.cli",  # train
    "vitnas.latency.cli",  # latency measure / profile / verify
    "vitnas.search.cli",  # search
    "vitnas.export.cli",  # export, eval
    "vitnas.finetune.cli",  # finetune
    "vitnas.rank.cli",  # rank-check
    "vitnas.pipeline.cli",  # run
)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "takes_overrides", False) and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = list(args.overrides) + extra  # key=value overrides may follow --out
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("vitnas").setLevel(logging.INFO)  # ours: progress; others' (onnxscript, ray) only warnings
    try:
        return args.handler(args)
    except VitnasError as error:
        print(f"vitnas: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vitnas: interrupted: {getattr(args, 'interrupted', _nothing_kept)(args)}", file=sys.stderr)
        return 130  # what a shell reports for a command ended by SIGINT


def _nothing_kept(args: argparse.Namespace) -> str:
    """What an interrupted verb that keeps no partial work says.

    Every verb writes atomically (checkpoints, fsynced search results, staged exports),
    so an interrupt never leaves half a file; what differs is how to pick up the work.
    """
    return "nothing half-written was kept: run the same command again"


def _parser() -> argparse.ArgumentParser:
    from vitnas import __version__

    parser = argparse.ArgumentParser(prog="vitnas", description="Neural architecture search for Vision Transformers.")
    parser.add_argument("--version", action="version", version=f"vitnas {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)
    for module in VERB_MODULES:
        importlib.import_module(module).register(verbs)
    return parser


def __getattr__(name: str) -> Any:  # vitnas.cli.read_arch moved to vitnas.space.arch_files (one release)
    from vitnas._moved import moved_attribute

    return moved_attribute(__name__, name)

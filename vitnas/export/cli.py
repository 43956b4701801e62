"""`vitnas export`: argument parsing and printing only; the work is `vitnas.export.writer.export`.

Importing this module costs no torch: ``vitnas --help`` builds every verb's parser.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]

_FORMATS = ("safetensors", "timm", "torchscript", "onnx", "elastic")  # as vitnas.export.FORMATS, without torch


def register(subparsers: Any) -> None:
    """Adds the ``export`` verb to the `vitnas` command's subparsers."""
    parser = subparsers.add_parser(
        "export", help="write chosen sub-networks as standalone, checked model folders",
        description="Extracts sub-networks of a trained supernet into folders holding config.json, "
                    "model.safetensors (vitnas.load) and a model card, plus the timm, TorchScript and ONNX forms "
                    "on request, each checked against PyTorch. --format elastic writes one bundle instead: every "
                    "budget of a best.json as a named operating point of one weight envelope (vitnas.load(DIR, "
                    "point=NAME)). An existing --out is refused unless --overwrite.")
    parser.add_argument("--checkpoint", required=True, help="supernet run (vitnas train --out) or checkpoint folder")
    parser.add_argument("--arch", required=True, metavar="ARCH.json",
                        help="an arch JSON file, a search's best.json (its first budget by default), "
                             "or largest / smallest")
    parser.add_argument("--out", required=True, metavar="DIR", help="export folder (with --all: folder of folders)")
    parser.add_argument("--format", nargs="+", choices=_FORMATS, default=["safetensors"], metavar="FORMAT",
                        dest="formats", help=f"any of {', '.join(_FORMATS)} (safetensors is always written; "
                                             "elastic: one bundle of every budget of a best.json, alone)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--budget", default=None, metavar="NAME", help="best.json: export this budget's choice")
    choice.add_argument("--all", action="store_true", dest="all_budgets",
                        help="best.json: one folder per budget under DIR, named after the budget")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DIR (atomically)")
    parser.add_argument("--ema", action="store_true", help="export the checkpoint's EMA weights")
    parser.add_argument("--data", default=None,
                        help="the supernet's data, for normalisation and class names (default: its recipe's)")
    parser.add_argument("--device", default=None, help="where to time the model (default: cuda if present, else cpu)")
    parser.add_argument("--latency-batch", type=int, nargs="*", default=[1, 64], metavar="B",
                        help="batch sizes to time (default: 1 64; none: do not time)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest absolute logit difference a form may show against PyTorch (default: 1e-4)")
    parser.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from vitnas.export.writer import export

    folders = export(args.checkpoint, args.arch, args.out, formats=args.formats, budget=args.budget,
                     all_budgets=args.all_budgets, overwrite=args.overwrite, use_ema=args.ema, data=args.data,
                     latency_batches=args.latency_batch, device=args.device,
                     tolerance=args.tolerance)
    for folder in folders:
        print(folder)
    return 0

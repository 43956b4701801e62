"""`vitnas export` and `vitnas eval`: argument parsing and printing only.

The work is `vitnas.export.writer.export_model`, and for ``eval`` `vitnas.export.evaluate.evaluate_folder`
(an export folder) or `vitnas.evaluate.evaluate_topk` (a supernet run's sub-network, before export).

Importing this module costs no torch: ``vitnas --help`` builds every verb's parser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vitnas.export.schema import FORMATS

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Adds the ``export`` and ``eval`` verbs to the `vitnas` command's subparsers."""
    _register_export(subparsers)
    _register_eval(subparsers)


def _register_export(subparsers: Any) -> None:
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
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=["safetensors"], metavar="FORMAT",
                        dest="formats", help=f"any of {', '.join(FORMATS)} (safetensors is always written; "
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


def _register_eval(subparsers: Any) -> None:
    """Adds the ``eval`` verb: it scores an export folder (or, as before export, a supernet's sub-network)."""
    evaluate = subparsers.add_parser("eval",
                                     help="top-1, top-5 and images/s of an export folder or a supernet's sub-network")
    evaluate.add_argument("run", help="export folder (vitnas export --out), or run or checkpoint directory")
    evaluate.add_argument("--arch", default=None,
                          help="with a run: arch JSON file, or largest / smallest (default: largest)")
    evaluate.add_argument("--data", default="digits", help="digits, cifar10:/path, cifar100:/path or an ImageFolder root")
    evaluate.add_argument("--split", default="val")
    evaluate.add_argument("--ema", action="store_true", help="with a run: use the EMA weights")
    evaluate.add_argument("--point", default=None, metavar="NAME",
                          help="with an elastic bundle: the operating point to evaluate (default: its first)")
    evaluate.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default: 256)")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    evaluate.set_defaults(handler=_eval)


def _export(args: argparse.Namespace) -> int:
    from vitnas.export.writer import export_model

    folders = export_model(args.checkpoint, args.arch, args.out, formats=args.formats, budget=args.budget,
                           all_budgets=args.all_budgets, overwrite=args.overwrite, use_ema=args.ema, data=args.data,
                           latency_batches=args.latency_batch, device=args.device,
                           tolerance=args.tolerance)
    for folder in folders:
        print(folder)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from vitnas.errors import CheckpointError, ExportError, VitnasError
    from vitnas.export.schema import CONFIG_FILE
    from vitnas.util.device import resolve_device

    folder = Path(args.run)
    if args.batch_size < 1:
        raise VitnasError(f"--batch-size {args.batch_size}: expected a positive integer")
    device = str(resolve_device(args.device, VitnasError))
    if (folder / CONFIG_FILE).is_file():  # an export folder; read_config refuses other config.json files
        if args.arch is not None or args.ema:
            raise ExportError(f"{folder}: is an export folder, which holds one model: drop --arch / --ema")
        from vitnas.export.evaluate import evaluate_folder

        result = evaluate_folder(folder, data=args.data, split=args.split, batch_size=args.batch_size,
                                 device=device, point=args.point)
        print(json.dumps(result))
        return 0
    from vitnas.train.checkpoint import holds_checkpoint

    if folder.is_dir() and not holds_checkpoint(folder):
        raise CheckpointError(f"{folder}: neither an export folder (no {CONFIG_FILE}) nor a supernet run "
                              f"or checkpoint (no 'latest' file or meta.json)")
    if args.point is not None:
        raise CheckpointError(f"{folder}: --point names an elastic bundle's operating point; a supernet run takes "
                              f"--arch")
    from vitnas.evaluate import evaluate_topk
    from vitnas.space.arch_files import read_arch
    from vitnas.train.checkpoint import load_supernet

    supernet, space = load_supernet(args.run, use_ema=args.ema)
    supernet = supernet.to(device)
    arch = read_arch(args.arch or "largest", space)
    result = evaluate_topk(supernet, arch, data=args.data, split=args.split, batch_size=args.batch_size,
                           device=device)
    print(json.dumps({"arch": arch.to_dict(), **result}))
    return 0

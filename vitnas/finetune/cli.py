"""`vitnas finetune DIR --out OUT`: argument parsing and printing only; the work is `vitnas.finetune_model`.

Importing this module costs no torch: ``vitnas --help`` builds every verb's parser.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from vitnas.export.schema import MODEL_FORMATS
from vitnas.train.cli import CONVENTION, add_run_flags, last_checkpoint, resume_flag

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Adds the ``finetune`` verb to the `vitnas` command's subparsers."""
    parser = subparsers.add_parser(
        "finetune", help="retrain or fine-tune an exported model standalone, and export the result",
        description="Trains the model of an export folder on its own (optionally distilled from a supernet's "
                    "largest sub-network) with a training recipe: checkpoints, exact resume and torchrun as "
                    "in vitnas train. Writes OUT/export, an export folder recording the fine-tune and its "
                    f"validation top-1. Recipe overrides (key=value) may follow the options. {CONVENTION}")
    parser.add_argument("folder", metavar="DIR", help="export folder (vitnas export --out)")
    parser.add_argument("--out", required=True, help="run directory: checkpoints, metrics.jsonl, export/")
    parser.add_argument("--recipe", default=None,
                        help="recipe YAML or shipped name (default: the recipe DIR's supernet was trained with)")
    parser.add_argument("--data", default=None,
                        help="digits, cifar10:/path, cifar100:/path or an ImageFolder root (default: the recipe's)")
    add_run_flags(parser, "kept for old scripts (continuing is the default): refuses an --out without a run, and "
                          "continues with the recipe the run stored, checking only the settings given")
    parser.add_argument("--teacher", default=None, metavar="CKPT",
                        help="supernet run or checkpoint: distil from its largest sub-network")
    parser.add_argument("--from-scratch", action="store_true", help="re-initialise the weights before training")
    parser.add_argument("--num-classes", type=int, default=None, metavar="N",
                        help="train a new head of N classes (for data with other classes than the model's)")
    parser.add_argument("--format", nargs="+", choices=MODEL_FORMATS, default=["safetensors"], metavar="FORMAT",
                        dest="formats", help=f"export forms: any of {', '.join(MODEL_FORMATS)} (safetensors always)")
    parser.add_argument("--latency-batch", type=int, nargs="*", default=[1, 64], metavar="B",
                        help="batch sizes to time at export (default: 1 64; none: do not time; put it after "
                             "any key=value overrides)")
    parser.add_argument("--device", default=None, help="where to time the export (default: cuda if present, else cpu)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. epochs=5")
    parser.set_defaults(handler=_finetune, takes_overrides=True, interrupted=last_checkpoint)


def _finetune(args: argparse.Namespace) -> int:
    from vitnas.finetune.tune import finetune_model

    metrics = finetune_model(args.folder, args.out, data=args.data, recipe=args.recipe, overrides=args.overrides,
                             resume=resume_flag(args), fresh=args.fresh, teacher=args.teacher,
                             from_scratch=args.from_scratch, num_classes=args.num_classes, formats=args.formats,
                             latency_batches=args.latency_batch, device=args.device)
    print(json.dumps(metrics))
    return 0

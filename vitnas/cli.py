"""The `vitnas` command: argument parsing and printing only; each verb calls one library function."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vitnas.errors import VitnasError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    takes_overrides = args.verb in ("train", "run", "finetune", "rank-check")
    if takes_overrides and all("=" in item and not item.startswith("-") for item in extra):
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
        print(f"vitnas: interrupted: {_where_stopped(args)}", file=sys.stderr)
        return 130  # what a shell reports for a command ended by SIGINT


def _where_stopped(args: argparse.Namespace) -> str:
    """What an interrupted command kept, and how to go on: one line for Ctrl-C.

    Every verb writes atomically (checkpoints, fsynced search results, staged exports),
    so an interrupt never leaves half a file; what differs is how to pick up the work.
    """
    if args.verb in ("train", "finetune"):
        return _last_checkpoint(Path(args.out))
    if args.verb == "rank-check":
        return f"finished runs are kept in {args.out}: continue with the same command, with --resume"
    if args.verb == "search":
        return _search_progress(Path(args.out))
    if args.verb == "run":
        return (f"finished stages, and the training or search under way, are kept in {args.out}: "
                f"run the same command again to resume")
    return "nothing half-written was kept: run the same command again"


def _last_checkpoint(out: Path) -> str:
    from vitnas.train.checkpoint import CheckpointError, latest_checkpoint

    try:
        folder = latest_checkpoint(out)
        epoch = json.loads((folder / "meta.json").read_text())["epoch"]
    except (CheckpointError, OSError, ValueError, KeyError):
        return f"no checkpoint in {out} yet: run the same command again to start over"
    return f"the last checkpoint is {folder} (epoch {epoch}): continue with the same command, with --resume"


def _search_progress(out: Path) -> str:
    from vitnas.search.driver import RESULTS_FILE, SETTINGS_FILE

    if not (out / SETTINGS_FILE).is_file():
        return f"no search in {out} yet: run the same command again"
    results = out / RESULTS_FILE
    kept = results.read_bytes().count(b"\n") if results.is_file() else 0
    return f"{kept} evaluations are kept in {results}: continue with the same command, with --resume"


def _parser() -> argparse.ArgumentParser:
    from vitnas import __version__

    parser = argparse.ArgumentParser(prog="vitnas", description="Neural architecture search for Vision Transformers.")
    parser.add_argument("--version", action="version", version=f"vitnas {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)

    space = verbs.add_parser("space", help="summarise a search space and sample archs from it")
    space.add_argument("space", help="shipped space name (tiny32, deit, resnas) or YAML path")
    space.add_argument("--sample", type=int, default=0, metavar="N", help="print N random archs as JSON lines")
    space.add_argument("--seed", type=int, default=0)
    space.set_defaults(handler=_space)

    train = verbs.add_parser("train", help="train a supernet from a recipe")
    train.add_argument("recipe", help="recipe YAML (or shipped name: tiny32_digits, deit_small_supervit, resnas_tiny)")
    train.add_argument("--out", required=True, help="run directory: checkpoints and metrics.jsonl")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. epochs=5")
    train.set_defaults(handler=_train)

    evaluate = verbs.add_parser("eval", help="top-1, top-5 and images/s of an export folder or a supernet's sub-network")
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

    from vitnas.export.cli import register as register_export
    from vitnas.finetune.cli import register as register_finetune
    from vitnas.latency.cli import register as register_latency
    from vitnas.rank.cli import register as register_rank_check
    from vitnas.search.cli import register as register_search

    register_latency(verbs)
    register_search(verbs)
    register_export(verbs)
    register_finetune(verbs)
    register_rank_check(verbs)

    from vitnas.pipeline.cli import register as register_run

    register_run(verbs)
    return parser


def _space(args: argparse.Namespace) -> int:
    import numpy as np

    from vitnas.space.cost import count_flops, count_params
    from vitnas.space.space import load_space

    space = load_space(args.space)
    print(space.summary())
    for label, arch in (("largest", space.largest()), ("smallest", space.smallest())):
        print(f"  {label}: {count_params(space, arch) / 1e6:.2f} M params, "
              f"{count_flops(space, arch) / 1e6:.1f} M MACs  ({arch})")
    rng = np.random.default_rng(args.seed)
    for _ in range(args.sample):
        print(space.sample(rng).to_json())
    return 0


def _train(args: argparse.Namespace) -> int:
    from vitnas.train.loop import train

    metrics = train(args.recipe, args.out, resume=args.resume, overrides=args.overrides)
    print(json.dumps(metrics))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from vitnas.train.checkpoint import CheckpointError
    from vitnas.errors import ExportError
    from vitnas.export.schema import CONFIG_FILE
    from vitnas.util.device import resolve_device

    folder = Path(args.run)
    if args.batch_size < 1:
        raise VitnasError(f"--batch-size {args.batch_size}: expected a positive integer")
    device = str(resolve_device(args.device, VitnasError))
    if (folder / CONFIG_FILE).is_file():  # an export folder; read_config refuses other config.json files
        if args.arch is not None or args.ema:
            raise ExportError(f"{folder}: is an export folder, which holds one model: drop --arch / --ema")
        from vitnas.evaluate import evaluate_folder

        result = evaluate_folder(folder, data=args.data, split=args.split, batch_size=args.batch_size,
                                 device=device, point=args.point)
        print(json.dumps(result))
        return 0
    if folder.is_dir() and not any((folder / name).is_file() for name in ("latest", "meta.json")):
        raise CheckpointError(f"{folder}: neither an export folder (no {CONFIG_FILE}) nor a supernet run "
                              f"or checkpoint (no 'latest' file or meta.json)")
    if args.point is not None:
        raise CheckpointError(f"{folder}: --point names an elastic bundle's operating point; a supernet run takes "
                              f"--arch")
    from vitnas.train.checkpoint import load_supernet
    from vitnas.evaluate import evaluate_topk

    supernet, space = load_supernet(args.run, use_ema=args.ema)
    supernet = supernet.to(device)
    arch = read_arch(args.arch or "largest", space)
    result = evaluate_topk(supernet, arch, data=args.data, split=args.split, batch_size=args.batch_size,
                           device=device)
    print(json.dumps({"arch": arch.to_dict(), **result}))
    return 0


def read_arch(text: str, space):
    """One arch: a JSON file holding exactly one, or a space's largest / smallest."""
    from vitnas.space.arch import read_archs
    from vitnas.errors import ArchError

    if text not in ("largest", "smallest") and not Path(text).is_file():
        raise ArchError(f"{text}: no such arch file (or say largest / smallest)")
    archs = read_archs([text], space)
    if len(archs) != 1:
        raise ArchError(f"{text}: holds {len(archs)} archs; eval takes one")
    return archs[0]

"""Does the digits supernet rank its sub-networks truly? `vitnas.rank.check` over at least 20 of them.

Issue 11 asks for Kendall tau, Spearman rho, the top-5 overlap and the regret of picking
by the supernet, on digits with the default recipe (``tiny32_digits``): sub-networks
spread over the MACs range, each trained stand-alone from scratch for the recipe's
epochs without distillation, both accuracies on ``val``. Without ``--checkpoint`` the
supernet is trained first, into ``OUT/supernet``. A check already in ``OUT/check`` is
resumed, so an interrupted benchmark continues where it stopped.

    vitnas train tiny32_digits --out /tmp/rc_supernet
    python benchmarks/ranking.py --checkpoint /tmp/rc_supernet --archs 20 --threads 1 --out /tmp/rc
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from pathlib import Path

import torch

import vitnas
from vitnas.rank.check import SETTINGS_FILE, format_rank_check, rank_check


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)  # a benchmark's own choice; library code never sets it
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started = time.perf_counter()
    checkpoint = Path(args.checkpoint) if args.checkpoint else _train_supernet(args.recipe, args.out / "supernet")
    trained = time.perf_counter() - started
    check = args.out / "check"
    result = rank_check(checkpoint, check, archs=args.archs, epochs=args.epochs, seed=args.seed,
                        resume=(check / SETTINGS_FILE).is_file(), progress=args.progress)
    total = time.perf_counter() - started
    stats = result.statistics
    supernet = "" if args.checkpoint else f"{trained:.0f} s supernet training, "
    later = ", partly before a resume" if result.resumed else ""
    print(f"device: {_cpu()} ({args.threads} torch threads), torch {torch.__version__}")
    print(format_rank_check(result))
    print(f"\nKendall tau {stats.kendall_tau:.3f} | Spearman rho {stats.spearman_rho:.3f} | "
          f"top-{stats.top_k} overlap {stats.top_k_overlap}/{stats.top_k} | regret {100 * stats.regret:.2f} points "
          f"mean, {100 * stats.regret_max:.2f} max | {len(result.records)} archs x {result.settings.epochs} epochs | "
          f"wall {total:.0f} s ({supernet}{result.wall_s:.0f} s stand-alone runs and evaluation{later})")


def _train_supernet(recipe: str, out: Path) -> Path:
    """Trains (or finishes training) the recipe's supernet into `out`."""
    vitnas.train_supernet(recipe, out, resume=(out / "latest").is_file())
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a trained supernet to reuse (default: train one)")
    parser.add_argument("--recipe", default="tiny32_digits", help="recipe of the supernet trained without --checkpoint")
    parser.add_argument("--out", type=Path, default=Path("runs/ranking"), help="OUT/check (and OUT/supernet)")
    parser.add_argument("--archs", type=int, default=20, help="sub-networks trained stand-alone (issue 11: >= 20)")
    parser.add_argument("--epochs", type=int, default=None, help="stand-alone epochs (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the draw of the sub-networks")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    return parser.parse_args()


if __name__ == "__main__":
    main()

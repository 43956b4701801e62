"""Evolution against random search at the same number of evaluations, over several seeds.

Issue 8 asks whether the evolutionary search earns its keep: on the trained ``tiny32``
digits supernet, under one MACs budget halfway between the smallest and the largest
sub-network, both algorithms run through `vitnas.search_supernet` (the real tool, in-process
backend) with the same population, generations and evaluation count, for each seed.
The table gives each one's best search-split (minival) top-1, that arch's val top-1, and
after how many evaluations each search first reached its final best ("found at",
evolution/random); the last line counts the seeds where evolution came out ahead.

    python benchmarks/search_vs_random.py --checkpoint runs/tiny32_digits --seeds 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import vitnas
from vitnas.search.driver import search_supernet


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)  # a benchmark's own choice; library code never sets it
    _, space = vitnas.load_supernet(args.checkpoint)
    low, high = (vitnas.count_macs(space, arch) for arch in (space.smallest(), space.largest()))
    budget_g = (low + args.budget_fraction * (high - low)) / 1e9
    config = dict(generations=args.generations, population=args.population, mutations=args.population // 2,
                  crossovers=args.population // 2, parents=args.parents, mutation_prob=args.mutation_prob)
    evaluations = args.population * args.generations
    print(f"space {space.name}: MACs {low / 1e6:.2f} M to {high / 1e6:.2f} M; budget {budget_g * 1e3:.3f} M MACs; "
          f"{evaluations} evaluations per run ({args.generations} generations of {args.population}; evolution breeds "
          f"from the top {args.parents}, mutation probability {args.mutation_prob})")
    print(f"{'seed':>4} {'evolution minival':>18} {'val':>6} {'random minival':>15} {'val':>6} {'found at':>9}  ahead")
    wins, started = 0, time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.seeds):
            scores = {}
            for algorithm in ("evolution", "random"):
                result = search_supernet(args.checkpoint, Path(scratch) / f"{algorithm}-{seed}", macs=budget_g,
                                         algorithm=algorithm, seed=seed, progress=False, verify=False, **config)
                (choice,) = result.choices
                scores[algorithm] = (choice.accuracy, choice.val_accuracy, _found_at(result.out, choice.accuracy))
            ahead = scores["evolution"][0] > scores["random"][0]
            wins += ahead
            print(f"{seed:>4} {scores['evolution'][0]:>18.2%} {scores['evolution'][1]:>6.1%} "
                  f"{scores['random'][0]:>15.2%} {scores['random'][1]:>6.1%} "
                  f"{scores['evolution'][2]:>4}/{scores['random'][2]:<4}  "
                  f"{'evolution' if ahead else 'tie' if scores['evolution'][0] == scores['random'][0] else 'random'}")
    print(f"evolution ahead on minival in {wins} of {args.seeds} seeds; {time.perf_counter() - started:.0f} s in all")


def _found_at(run: Path, best: float) -> int:
    """How many candidates the search had evaluated when it first reached its final best accuracy."""
    lines = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    candidates = [line for line in lines if line["role"] == "candidate"]
    return next(i for i, line in enumerate(candidates, start=1) if line["accuracy"] >= best)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a trained tiny32 supernet (vitnas train tiny32_digits)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--population", type=int, default=20, help="also the children per generation")
    parser.add_argument("--budget-fraction", type=float, default=0.5,
                        help="MACs budget between the smallest (0) and the largest (1) sub-network; issue 8: 0.5")
    parser.add_argument("--parents", type=int, default=10, help="evolution's top-k parents per generation")
    parser.add_argument("--mutation-prob", type=float, default=0.1, help="evolution's per-gene redraw probability")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser.parse_args()


if __name__ == "__main__":
    main()

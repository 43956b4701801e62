"""Which token reducer is most accurate at equal measured latency, on a supernet trained with the reducer as a choice?

The supernet (``--checkpoint``) must come from a space that offers a choice of reducer
(e.g. the shipped ``tiny32_reducers`` space, recipe ``tiny32_reducers_digits``). The same
`--archs` random backbones (depth, widths, patch size and keep rates, at least one keep
rate below 1) are each scored once per reducer the space offers: inherited top-1 on
``val`` and the latency of the exported model measured here, all in one run. Per
reducer it prints the Pareto front of (latency, top-1) and, at a few latency levels
common to all reducers, the best top-1 among its archs that are at least that fast:
accuracy at equal measured latency.

    vitnas train tiny32_reducers_digits --out runs/reducers
    python benchmarks/reducer_accuracy.py --checkpoint runs/reducers --archs 24 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

import vitnas
from vitnas.latency.measure import measure_arch
from vitnas.space.arch import Arch
from vitnas.space.cost import count_macs
from vitnas.space.space import SearchSpace
from vitnas.train.checkpoint import load_checkpoint, load_supernet

LEVELS = (0.25, 0.5, 0.75)  # latency levels, as fractions of the way from the fastest arch to the slowest


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)  # a benchmark's own choice; library code never sets it
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started = time.perf_counter()
    supernet, space = load_supernet(args.checkpoint)
    data = load_checkpoint(Path(args.checkpoint))["recipe"].data
    labels, reducers = _reducer_genes(space)
    rows = []
    for backbone in _backbones(space, args.archs, args.seed):
        for reducer in reducers:
            arch = _with_reducer(space, backbone, labels, reducer)
            latency = measure_arch(space, arch, "cpu", batch=args.batch, warmup=args.warmup, repeats=args.repeats)
            rows.append({"reducer": reducer, "arch": arch.to_dict(), "macs": count_macs(space, arch),
                         "latency_ms": latency.median_ms,
                         "top1": vitnas.evaluate(supernet, arch, data=data, split="val")})
    summary = _summary(rows, reducers)
    print(f"device: CPU ({args.threads} torch threads), batch {args.batch} fp32, torch {torch.__version__}; "
          f"{args.archs} backbones x {len(reducers)} reducers, inherited top-1 on val")
    _print(summary, reducers)
    print(f"wall {time.perf_counter() - started:.0f} s")
    if args.out is not None:
        args.out.write_text(json.dumps({"rows": rows, **summary}, indent=1) + "\n")


def _reducer_genes(space: SearchSpace) -> tuple[list[str], list[str]]:
    """The reducer genes of the space and the reducers they choose from (the same set in every stage)."""
    sample = space.to_sample(space.largest(), np.random.default_rng(0))
    labels = [label for label in sample if label.endswith(".reducer")]
    if not labels:
        raise SystemExit(f"space {space.name} offers no choice of reducer: train a space that does "
                         "(e.g. recipe tiny32_reducers_digits)")
    reducers = sorted(set.intersection(*(set(space.mutables[label].values) for label in labels)))
    return labels, reducers


def _backbones(space: SearchSpace, count: int, seed: int) -> list[Arch]:
    """`count` distinct random archs that reduce tokens somewhere (a keep rate below 1)."""
    rng, found = np.random.default_rng([seed, 10]), []
    while len(found) < count:
        arch = space.sample(rng)
        rates = [rate for stage in arch.stages for rate in stage.keep_rate]
        if min(rates, default=1.0) < 1.0 and arch not in found:
            found.append(arch)
    return found


def _with_reducer(space: SearchSpace, arch: Arch, labels: list[str], reducer: str) -> Arch:
    genes = space.to_sample(arch, np.random.default_rng(0))
    for label in labels:
        genes[label] = reducer
    return space.arch_from_sample(genes)


def _summary(rows: list[dict], reducers: list[str]) -> dict:
    latencies = [row["latency_ms"] for row in rows]
    low, high = min(latencies), max(latencies)
    levels = [low + fraction * (high - low) for fraction in LEVELS]
    at_level = {reducer: [max((row["top1"] for row in rows if row["reducer"] == reducer
                               and row["latency_ms"] <= level), default=None) for level in levels]
                for reducer in reducers}
    fronts = {reducer: _front([row for row in rows if row["reducer"] == reducer]) for reducer in reducers}
    means = {reducer: {"top1": float(np.mean([r["top1"] for r in rows if r["reducer"] == reducer])),
                       "latency_ms": float(np.mean([r["latency_ms"] for r in rows if r["reducer"] == reducer]))}
             for reducer in reducers}
    return {"levels_ms": levels, "best_top1_at_level": at_level, "fronts": fronts, "means": means}


def _front(rows: list[dict]) -> list[dict]:
    """The Pareto-optimal rows: no other row is both at least as fast and more accurate."""
    front, best = [], -1.0
    for row in sorted(rows, key=lambda r: (r["latency_ms"], -r["top1"])):
        if row["top1"] > best:
            front.append({"latency_ms": row["latency_ms"], "top1": row["top1"], "macs": row["macs"]})
            best = row["top1"]
    return front


def _print(summary: dict, reducers: list[str]) -> None:
    levels = summary["levels_ms"]
    print(f"{'reducer':>12} | mean top-1 | mean latency | " + " | ".join(f"best top-1 <= {level:.2f} ms"
                                                                      for level in levels))
    for reducer in reducers:
        means = summary["means"][reducer]
        cells = " | ".join(f"{'-' if value is None else f'{value:.2%}':>22}"
                           for value in summary["best_top1_at_level"][reducer])
        print(f"{reducer:>12} | {means['top1']:>10.2%} | {means['latency_ms']:>9.2f} ms | {cells}")
    for reducer in reducers:
        points = ", ".join(f"{p['latency_ms']:.2f} ms {p['top1']:.1%}" for p in summary["fronts"][reducer])
        print(f"front {reducer}: {points}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a supernet trained with the reducer as a choice")
    parser.add_argument("--archs", type=int, default=24, help="random backbones, each scored with every reducer")
    parser.add_argument("--batch", type=int, default=32, help="latency batch size")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows and summary as JSON here")
    return parser.parse_args()


if __name__ == "__main__":
    main()

"""Builds a device profile and prints the figures issue 4 asks for.

Prints the predictor's held-out MAPE, max error and Kendall tau, how many archs per
second it predicts, and the measured speedup of token pruning (keep rate 0.7 at the
reduction blocks against 1.0) next to its FLOPs ratio. On ``deit`` the pruned shape is
DeiT-S (depth 12, width 384, 6 heads, MLP 4, patch 16, keep 0.7 at blocks 4/7/10);
on other spaces it is the largest arch with the allowed keep rate nearest --keep-rate.

    python benchmarks/latency_predictor.py --space deit --device cuda --batch 64 --dtype bf16 --samples 300
    python benchmarks/latency_predictor.py --space tiny32 --device cpu --batch 16 --samples 80 --threads 1
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

import vitnas
from vitnas.latency import build_profile, measure_archs
from vitnas.latency.predictor import LatencyPredictor


def main() -> None:
    args = _arguments()
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # a benchmark's own choice; library code never sets it
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    space = vitnas.load_space(args.space)
    started = time.perf_counter()
    profile = build_profile(
        space, device=args.device, batch=args.batch, dtype=args.dtype, samples=args.samples, seed=args.seed,
        holdout_fraction=args.holdout, warmup=args.warmup, repeats=args.repeats, rounds=args.rounds, progress=True,
    )
    minutes = (time.perf_counter() - started) / 60
    print(f"device: {profile.device} ({profile.device_type}), torch {profile.torch}, CUDA {profile.cuda}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"profile: space {space.name}, {profile.dtype}, batch {profile.batch}, {profile.samples} archs "
          f"({profile.holdout} held out), warmup {args.warmup}, repeats {args.repeats} in {args.rounds} rounds, "
          f"built in {minutes:.1f} min")
    spread = np.median([(m.p90_ms - m.p10_ms) / m.median_ms for m in profile.measurements])
    print(f"measurement noise: median (p90 - p10) / median over the archs = {100 * spread:.1f}%")
    print(f"held-out MAPE: {100 * profile.mape:.2f}%")
    print(f"held-out max error: {100 * profile.max_error:.2f}%")
    tau = "n/a" if profile.kendall_tau is None else f"{profile.kendall_tau:.3f}"
    print(f"held-out Kendall tau: {tau}")
    cold, warm = _predictions_per_second(profile.predictor, args.seed)
    print(f"predictions per second: {cold:,.0f} (fresh cache), {warm:,.0f} (warm cache)")
    _pruning(space, profile, args)
    if args.out:
        print(f"profile saved to {profile.save(args.out)}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="deit")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtype", default="bf16" if torch.cuda.is_available() else "fp32")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per arch, over all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved passes over the archs")
    parser.add_argument("--keep-rate", type=float, default=0.7, help="pruned keep rate for the speedup figure")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=None, help="also save the profile here (file or directory)")
    return parser.parse_args()


def _predictions_per_second(predictor: LatencyPredictor, seed: int, count: int = 20000) -> tuple[float, float]:
    """Archs per second through a fresh predictor (every block shape new to its cache), then again warm."""
    space = predictor.space
    rng = np.random.default_rng(seed + 1)
    archs = [space.sample(rng) for _ in range(count)]
    fresh = LatencyPredictor(space, predictor.coefficients)
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        fresh.predict_many(archs)
        rates.append(count / (time.perf_counter() - start))
    return rates[0], rates[1]


def _pruning(space: vitnas.SearchSpace, profile, args: argparse.Namespace) -> None:
    """Measured and predicted speedup of the pruned shape over the unpruned one, beside the FLOPs ratio."""
    full, pruned = _pruning_pair(space, args.keep_rate)
    full_ms, pruned_ms = (
        m.median_ms
        for m in measure_archs(space, [full, pruned], args.device, args.batch, args.dtype, rounds=max(args.rounds, 5),
                               warmup=args.warmup, repeats=max(args.repeats, 50))
    )
    flops_ratio = vitnas.count_macs(space, full) / vitnas.count_macs(space, pruned)
    speedup = full_ms / pruned_ms
    predicted = profile.predict(full) / profile.predict(pruned)
    rates = sorted({r for stage in pruned.stages for r in stage.keep_rate if r < 1.0})
    print(f"pruning on {pruned} vs keep rate 1.0, batch {args.batch} {args.dtype}:")
    print(f"  measured {full_ms:.3f} ms -> {pruned_ms:.3f} ms (keep rate {rates}): speedup {speedup:.3f}x, "
          f"FLOPs ratio {flops_ratio:.3f}x, speedup / FLOPs ratio {speedup / flops_ratio:.3f}; "
          f"predicted speedup {predicted:.3f}x")


def _pruning_pair(space: vitnas.SearchSpace, keep_rate: float) -> tuple[vitnas.Arch, vitnas.Arch]:
    shape = {}
    if space.name == "deit":
        shape = dict(depth=12, embed_dim=384, num_heads=6, mlp_ratio=4.0, patch_size=16)
    allowed = sorted({r for stage in space.stages if stage.token_reduction for r in stage.token_reduction.keep_rates
                      if r < 1.0})
    if not allowed:
        raise SystemExit(f"space {space.name} has no token reduction to time")
    rate = min(allowed, key=lambda r: abs(r - keep_rate))
    return space.arch(**shape, keep_rate=1.0), space.arch(**shape, keep_rate=rate)


if __name__ == "__main__":
    main()

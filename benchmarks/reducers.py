"""Token reducers side by side: MACs ratio and measured speedup of the DeiT-S shape at keep 0.7, batch 1 and 64.

Rows: the unreduced DeiT-S shape (``deit`` space: patch 16, embed 384, 6 heads of 64,
depth 12, MLP ratio 4) and the same shape reducing at blocks 4, 7 and 10 (1-based; the
space's blocks 3, 6, 9) at keep rate 0.7 with each reducer of `vitnas.space.spec.REDUCERS`.
ToMe runs at the matching r: at each reduction block it merges r = n - ceil(0.7 n) of its
n patch tokens, so it keeps the others' counts (without their one extra fused/summary token).
Each model is the standalone `vitnas.nn.vit.ViT` an export holds (`vitnas.latency.build_model`:
random weights, which do not change speed). Rounds interleave the rows, one timed call of
each per round, so drift in the machine's speed hits every row alike; each figure is the
median over rounds. Speedup is images/s against the unreduced row at the same batch; the
issue's targets: speedup at batch 64 >= 0.9x the MACs ratio, and >= 1.0x at batch 1.
DynamicViT's row includes its learned predictor's MACs (random weights: which tokens it keeps
does not change the speed). The papers' figures are printed underneath for comparison (other
hardware, batch sizes and training).

STViT (``stvit``; ``stvit_r`` also recovers the 196 image tokens at the end) runs at the
same keep rates, where k = ceil(0.7 n) semantic tokens replace the n tokens (196 -> 138 ->
97 -> 68, no extra token). One more row is the paper's setting: 16 semantic tokens (keep
0.08 of 196, pooled 4 x 4) from block 4 on and no further reduction (``--semantic-tokens``;
0 leaves the row out).

    python benchmarks/reducers.py --threads 1 --batches 1,64 --repeats 3 --warmup 1   # CPU, a few minutes
    python benchmarks/reducers.py --device cuda                                       # GPU, bf16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor, nn

import vitnas
from vitnas.latency.measure import build_model
from vitnas.nn.reducers.tome import merged_count
from vitnas.space.spec import REDUCERS

DEIT_S = dict(depth=12, embed_dim=384, num_heads=6, mlp_ratio=4.0, patch_size=16)
UNREDUCED = "unreduced"
# What the papers report for DeiT-S / ViT-S at keep 0.7 (their hardware, batch and training; see BENCHMARKS.md)
PAPERS = (
    ("EViT keep 0.7", "3.0 G MACs, about +50% images/s (DeiT-S, 4.6 G unreduced)"),
    ("DynamicViT keep 0.7", "2.9 G MACs, +40% images/s (DeiT-S)"),
    ("ToMe ViT-S r=13", "about 1.6x images/s (953 -> 1564 img/s, V100, off-the-shelf timm)"),
    ("Evo-ViT DeiT-S", "+60% images/s (batch 256)"),
    ("STViT DeiT-S 16 tokens", "> 2x images/s at about 60% fewer FLOPs, same accuracy (abstract; no DeiT code public)"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,64", help="comma-separated batch sizes (default: 1,64)")
    parser.add_argument("--repeats", type=int, default=20, help="interleaved timed rounds per batch (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default: 3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"],
                        help="default: bf16 on a GPU, fp32 on the CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--keep-rate", type=float, default=0.7, help="keep rate at blocks 4, 7 and 10 (default: 0.7)")
    parser.add_argument("--semantic-tokens", type=int, default=16,
                        help="STViT's paper row: this many semantic tokens from block 4 on (default: 16; 0: no row)")
    args = parser.parse_args()
    batches = [int(text) for text in args.batches.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")

    space = reducer_space()
    rows = {UNREDUCED: (space, space.arch(**DEIT_S))}
    rows.update({name: (space, space.arch(**DEIT_S, keep_rate=args.keep_rate, reducer=name)) for name in REDUCERS})
    if args.semantic_tokens:
        rows[f"stvit {args.semantic_tokens}"] = semantic_row(args.semantic_tokens)
    models = {name: build_model(where, arch, device, dtype) for name, (where, arch) in rows.items()}
    macs = {name: vitnas.count_macs(where, arch) for name, (where, arch) in rows.items()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {name} {dtype}, {torch.get_num_threads()} threads, DeiT-S shape, keep "
          f"{args.keep_rate:g} at blocks 4/7/10, {args.repeats} interleaved rounds after {args.warmup}, median")
    for reducer, (where, arch) in rows.items():
        print(f"  {reducer:<10} tokens {token_path(where, arch)}")
    speeds = {batch: time_interleaved(models, batch, device, args.warmup, args.repeats) for batch in batches}
    print_table(macs, speeds, batches)
    print("\npapers (their GPUs, batch sizes and training):")
    for title, figure in PAPERS:
        print(f"  {title:<22} {figure}")


def reducer_space() -> vitnas.SearchSpace:
    """The ``deit`` space with the reducer a choice of every implemented reducer."""
    data = dict(vitnas.load_space("deit").to_dict())
    stage = dict(data["stages"][0])
    stage["token_reduction"] = dict(stage["token_reduction"], reducer=list(REDUCERS))
    data["stages"] = [stage]
    return vitnas.load_space(data)


def semantic_row(count: int) -> tuple[vitnas.SearchSpace, vitnas.Arch]:
    """STViT's paper setting on the DeiT-S shape: `count` semantic tokens at block 4, none pooled further.

    The keep rate is the smallest whose ``ceil(keep_rate * 196)`` is `count`; the space offers it
    at block 4 (only ``stvit``: ToMe's floor of 0.5 would forbid it in `reducer_space`).
    """
    patches = (224 // DEIT_S["patch_size"]) ** 2
    rate = (count - 1) / patches + 0.5 / patches  # between (count - 1) / n and count / n: ceil gives count
    data = dict(vitnas.load_space("deit").to_dict())
    stage = dict(data["stages"][0])
    stage["token_reduction"] = dict(stage["token_reduction"], reducer="stvit", keep_rates=[round(rate, 6), 1.0])
    data["stages"] = [stage]
    space = vitnas.load_space(data)
    keep_rate = [1.0] * DEIT_S["depth"]
    keep_rate[3] = round(rate, 6)
    arch = space.arch(**DEIT_S, keep_rate=[keep_rate])
    assert vitnas.block_shapes(space, arch)[3].tokens_after == 1 + count
    return space, arch


def token_path(space: vitnas.SearchSpace, arch: vitnas.Arch) -> str:
    """Sequence lengths through the blocks where they change, e.g. 197 -> 140 -> 100 -> 72 (and ToMe's r)."""
    shapes = vitnas.block_shapes(space, arch)
    counts = [shapes[0].tokens] + [s.tokens_after for s in shapes if s.tokens_after != s.tokens]
    text = " -> ".join(map(str, counts))
    if arch.stages[0].reducer == "tome":
        merged = [merged_count(s.tokens - 1, s.keep_rate) for s in shapes if s.reducer]
        text += f"  (r = {', '.join(map(str, merged))})"
    return text


def time_interleaved(models: dict[str, nn.Module], batch: int, device: torch.device, warmup: int,
                     repeats: int) -> dict[str, float]:
    """Median images/s of each model; every round times one call of each, in turn."""
    dtype = next(iter(models.values())).cls_token.dtype
    images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    timings: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for round_index in range(warmup + repeats):
            for name, model in models.items():
                seconds = _timed(model, images, device)
                if round_index >= warmup:
                    timings[name].append(seconds)
    return {name: batch / statistics.median(values) for name, values in timings.items()}


def _timed(model: nn.Module, images: Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    model(images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def print_table(macs: dict[str, int], speeds: dict[int, dict[str, float]], batches: list[int]) -> None:
    """One row per model: MACs, MACs ratio, then images/s and speedup at each batch, and the issue's targets."""
    header = f"\n{'reducer':<10} {'MACs':>8} {'MACs ratio':>10}"
    for batch in batches:
        header += f" {f'img/s b{batch}':>11} {f'speedup b{batch}':>11}"
    print(header + f" {'speedup/MACs ratio':>19}")
    last = batches[-1]
    for name, count in macs.items():
        ratio = macs[UNREDUCED] / count
        row = f"{name:<10} {count / 1e9:>7.2f}G {ratio:>9.2f}x"
        for batch in batches:
            speed = speeds[batch][name]
            row += f" {speed:>11.1f} {speed / speeds[batch][UNREDUCED]:>10.2f}x"
        efficiency = speeds[last][name] / speeds[last][UNREDUCED] / ratio
        print(row + f" {efficiency:>18.2f}x")
    reduced = [name for name in macs if name != UNREDUCED]
    met = [name for name in reduced
           if speeds[last][name] / speeds[last][UNREDUCED] >= 0.9 * macs[UNREDUCED] / macs[name]]
    print(f"\ntarget speedup at batch {last} >= 0.9x MACs ratio: met by {', '.join(met) or 'none'} of "
          f"{', '.join(reduced)}")
    if 1 in speeds:
        slower = [name for name in reduced if speeds[1][name] < speeds[1][UNREDUCED]]
        print(f"target not slower than unreduced at batch 1: {'missed by ' + ', '.join(slower) if slower else 'met'}")


if __name__ == "__main__":
    main()

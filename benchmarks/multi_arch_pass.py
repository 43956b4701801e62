"""Times training K sub-networks per step: separately, by one sliced pass, by one masked pass.

Issue 3 asks for both ways of running several architectures in one forward-backward
pass (slicing each sub-batch's weights, or ViT-ResNAS's full-width channel masks) and
for the faster one as the default. One run times, side by side on the same batch and
the same K archs:

    (a) K separate sliced training steps, one forward and one backward per sub-batch;
    (b) the sliced multi pass: the K sliced forwards, losses summed, one backward;
    (c) the masked multi pass: one `vitnas.supernet.masked.masked_forward`, one backward;
    (d) the largest arch alone on the whole batch (the full-width reference).

The K archs are random but share the token shape of the space's largest arch (its
img_size, patch size and no token reduction), so (c) runs as one masked pass and (d)
is the full-width cost of that very token shape. Each "step" is zero_grad + forward +
backward (no optimizer step: it costs the same in every variant). Variants are timed
round-robin, so load from other processes spreads over all of them; the median is
printed.

    python benchmarks/multi_arch_pass.py --space tiny32 --batch 64 --subnets 4
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import vitnas
from vitnas.supernet.masked import masked_forward, token_shape_groups

VARIANTS = {
    "a": "(a) K separate sliced steps",
    "b": "(b) sliced multi pass",
    "c": "(c) masked multi pass",
    "d": "(d) largest arch, whole batch",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="tiny32", help="shipped space name or YAML path")
    parser.add_argument("--batch", type=int, default=64, help="images per step, split into K sub-batches")
    parser.add_argument("--subnets", type=int, default=4, help="K, sub-networks per step")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 runs under autocast")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's); 1 avoids barrier stalls on a busy machine")
    args = parser.parse_args(argv)
    if not 1 <= args.subnets <= args.batch:
        parser.error(f"--subnets must be between 1 and --batch ({args.batch}), got {args.subnets}")
    return args


def shared_shape_archs(space: vitnas.SearchSpace, count: int, rng: np.random.Generator) -> list[vitnas.Arch]:
    """`count` random archs that run in one masked pass with the largest arch's token shape."""
    anchor = space.largest()
    archs: list[vitnas.Arch] = []
    for _ in range(100_000):
        candidate = space.sample(rng)
        if len(token_shape_groups([anchor, *archs, candidate])) == 1:
            archs.append(candidate)
            if len(archs) == count:
                return archs
    raise SystemExit(f"found only {len(archs)} of {count} archs sharing the largest arch's token shape "
                     "in 100000 draws")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({_threads()})"
    return f"cpu ({_threads()})"


def _threads() -> str:
    count = torch.get_num_threads()
    return f"{count} torch thread{'s' if count != 1 else ''}"


def make_steps(supernet: vitnas.SuperViT, archs, x: torch.Tensor, y: torch.Tensor, sizes: list[int],
               autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, Callable[[], None]]:
    """One closure per variant; every loss is a sum over images / batch, so all give the same gradients."""
    batch = x.shape[0]
    parts = list(zip(x.split(sizes), y.split(sizes), archs))
    largest = supernet.space.largest()

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, reduction="sum") / batch

    def separate() -> None:
        for images, labels, arch in parts:
            with autocast():
                step_loss = loss(supernet(images, arch), labels)
            step_loss.backward()

    def sliced() -> None:
        with autocast():
            total = sum(loss(supernet(images, arch), labels) for images, labels, arch in parts)
        total.backward()

    def masked() -> None:
        with autocast():
            total = loss(masked_forward(supernet, x, archs, sizes), y)
        total.backward()

    def whole() -> None:
        with autocast():
            total = loss(supernet(x, largest), y)
        total.backward()

    return {"a": separate, "b": sliced, "c": masked, "d": whole}


def time_steps(supernet: vitnas.SuperViT, steps: dict[str, Callable[[], None]], repeats: int,
               device: torch.device) -> dict[str, float]:
    """Median seconds per step of each variant, timed round-robin after one warm-up each."""
    def run(step: Callable[[], None]) -> float:
        supernet.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for step in steps.values():
        run(step)
    times: dict[str, list[float]] = {key: [] for key in steps}
    for _ in range(repeats):
        for key, step in steps.items():
            times[key].append(run(step))
    return {key: statistics.median(values) for key, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    space = vitnas.load_space(args.space)
    torch.manual_seed(args.seed)
    supernet = vitnas.SuperViT(space, drop_path_rate=0.1).to(device).train()
    archs = shared_shape_archs(space, args.subnets, np.random.default_rng(args.seed))
    sizes = [args.batch // args.subnets + (i < args.batch % args.subnets) for i in range(args.subnets)]
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, space.in_chans, space.img_size, space.img_size, generator=generator).to(device)
    y = torch.randint(space.num_classes, (args.batch,), generator=generator).to(device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=dtype, enabled=args.dtype == "bf16")

    medians = time_steps(supernet, make_steps(supernet, archs, x, y, sizes, autocast), args.repeats, device)
    print(f"space {space.name}, batch {args.batch} in {args.subnets} sub-batches {sizes}, {args.dtype}, "
          f"torch {torch.__version__}, device {device_name(device)}, median of {args.repeats} steps")
    for index, arch in enumerate(archs):
        print(f"  arch {index}: {arch}  ({vitnas.count_macs(space, arch) / 1e6:.1f} M MACs)")
    print(f"  largest: {space.largest()}  ({vitnas.count_macs(space, space.largest()) / 1e6:.1f} M MACs)")
    print(f"{'variant':34s} {'ms/step':>9s} {'images/s':>9s} {'time/(a)':>9s}")
    for key, label in VARIANTS.items():
        seconds = medians[key]
        print(f"{label:34s} {seconds * 1e3:9.1f} {args.batch / seconds:9.1f} {seconds / medians['a']:9.2f}")
    faster = "sliced (b)" if medians["b"] <= medians["c"] else "masked (c)"
    print(f"(b)/(a) = {medians['b'] / medians['a']:.2f}, (c)/(a) = {medians['c'] / medians['a']:.2f}, "
          f"(c)/(b) = {medians['c'] / medians['b']:.2f}: the faster multi pass here is {faster}")


if __name__ == "__main__":
    main()

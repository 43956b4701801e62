"""Supernet training throughput per sampler, side by side in one run, plus the slicing overhead vs timm.

Every row times the trainer's own optimizer step (`vitnas.train.step.train_step`) on one
synthetic batch: `single`, `sandwich`, `multi` with sliced weights and `multi` with
channel masks, all with in-place distillation as the recipe would run them. The last
rows train one timm-expressible arch through the supernet and timm's own
`VisionTransformer` of the same shape, the overhead of weight slicing.

    python benchmarks/train_throughput.py --space tiny32 --batch 64 --steps 10
    python benchmarks/train_throughput.py --space deit --batch 128 --device cuda --dtype bf16   # GPU, DeiT-S scale
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

import vitnas
from vitnas.train.step import train_step
from vitnas.train.supernet import build_supernet_context
from vitnas.train.recipe import SamplerConfig, load_recipe
from vitnas.train.samplers import Pass, Piece, build_sampler, step_rng

SAMPLERS = {
    "single": SamplerConfig(name="single"),
    "sandwich": SamplerConfig(name="sandwich", num_random=2),
    "multi (sliced)": SamplerConfig(name="multi", subnets=4, variant="sliced"),
    "multi (masked)": SamplerConfig(name="multi", subnets=4, variant="masked"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="tiny32")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (after 2 warm-up steps)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    space = vitnas.load_space(args.space)
    recipe = load_recipe({
        "space": args.space, "batch_size": args.batch, "precision": args.dtype, "drop_path": 0.0,
        "data": {"name": "synthetic", "synthetic_size": args.batch, "num_classes": space.num_classes},
    })
    context = build_supernet_context(recipe)
    context.model.to(args.device)
    context.device = torch.device(args.device)
    images = torch.randn(args.batch, space.in_chans, space.img_size, space.img_size, device=args.device)
    labels = torch.randint(space.num_classes, (args.batch,), device=args.device)
    print(f"{args.space}, batch {args.batch}, {args.device}, {args.dtype}, torch {torch.__version__}")
    print(f"{'sampler':<16}{'ms/step':>10}{'images/s':>11}{'subnets/s':>11}{'vs single':>11}")
    base = None
    for name, config in SAMPLERS.items():
        sampler = build_sampler(space, config, distill=True)
        plans = [sampler.plan(step_rng(0, step), args.batch) for step in range(args.steps + 2)]
        seconds = _time(lambda plan: train_step(context, images, labels, plan), plans, args.device)
        subnets = statistics.mean(sum(p.role != "teacher" for s in plan for p in s.pieces) for plan in plans)
        base = base or seconds
        print(f"{name:<16}{seconds * 1e3:>10.1f}{args.batch / seconds:>11.0f}{subnets / seconds:>11.1f}"
              f"{seconds / base:>10.2f}x")
    _compare_with_timm(space, context, images, labels, args)


def _compare_with_timm(space, context, images, labels, args) -> None:
    arch = _timm_expressible_arch(space)
    if arch is None:
        print("no timm-expressible arch in this space: slicing overhead not measured")
        return
    sampler_plan = [[Pass((Piece(arch, 0, args.batch, "supervised"),))]]
    supernet_seconds = _time(lambda plan: train_step(context, images, labels, plan), sampler_plan * (args.steps + 2),
                             args.device)
    kwargs, state = vitnas.timm_state_dict(vitnas.extract(context.model, arch))
    timm_model = VisionTransformer(**kwargs).to(args.device).train()
    optimizer = torch.optim.AdamW(timm_model.parameters(), lr=1e-4)
    dtype = torch.bfloat16 if args.dtype == "bf16" else None

    def timm_step(_):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(torch.device(args.device).type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(timm_model(images).float(), labels)
        loss.backward()
        optimizer.step()

    timm_seconds = _time(timm_step, [None] * (args.steps + 2), args.device)
    print(f"\narch {arch}")
    print(f"supernet (sliced) {args.batch / supernet_seconds:>9.0f} images/s")
    print(f"timm ViT          {args.batch / timm_seconds:>9.0f} images/s")
    print(f"supernet / timm   {timm_seconds / supernet_seconds:>9.2f}x images/s")


def _timm_expressible_arch(space):
    """DeiT-S in `deit`; otherwise the widest single-stage arch whose heads fill its embed dim."""
    if space.name == "deit":
        return space.arch(depth=12, embed_dim=384, num_heads=6, mlp_ratio=4.0, patch_size=16)
    if len(space.stages) != 1:
        return None
    stage = space.stages[0]
    for dim in sorted(stage.embed_dims, reverse=True):
        for heads in sorted(set(stage.num_heads[0]), reverse=True):
            if heads * stage.head_width(dim, heads) == dim and all(heads in c for c in stage.num_heads):
                return space.arch(embed_dim=dim, num_heads=heads, mlp_ratio=max(stage.mlp_ratios[0]))
    return None


def _time(step, inputs, device: str) -> float:
    """Median seconds of `step` over inputs[2:], after two warm-up calls."""
    durations = []
    for index, item in enumerate(inputs):
        _synchronize(device)
        started = time.perf_counter()
        step(item)
        _synchronize(device)
        if index >= 2:
            durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()

"""Search evaluation throughput: the in-process backend against 1, 2, ... Ray workers, in one run.

Issue 8 asks how evaluating candidates scales: evaluations per second with the local
backend and with Ray workers side by side, as ratios (parallel efficiency = rate with W
workers / (W x rate with one)), and on a GPU how many candidates an hour one GPU scores at
DeiT-S scale on 10,000 fitness images. Every backend scores the same candidates (the
largest, the smallest and random archs, optionally capped in MACs) on the same images
after a warm-up; start-up (Ray, actors building their evaluators) is reported apart.

    python benchmarks/search_scaling.py --space tiny32 --data digits --candidates 60 --workers 1,2 --threads 1
    python benchmarks/search_scaling.py --space deit --data synthetic --images 10000 --device cuda \\
        --max-gflops 4.6 --candidates 40 --workers 1,2,4 --gpus-per-worker 0.25   # GPU; Ray rows need ray there
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import vitnas
from vitnas.data import DataConfig
from vitnas.errors import VitnasError
from vitnas.search.backend import Backend, LocalBackend
from vitnas.search.fitness import FitnessEvaluator, FitnessSettings
from vitnas.search.ray_backend import RayBackend, require_ray


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)  # a benchmark's own choice; library code never sets it
    torch.manual_seed(0)
    if args.checkpoint:
        supernet, space = vitnas.load_supernet(args.checkpoint)
    else:
        space = vitnas.load_space(args.space)
        supernet = vitnas.SuperViT(space).eval()
    archs = _candidates(space, args.candidates, args.max_gflops)
    settings = _settings(args, space)
    device = settings.resolved_device()
    print(f"space {space.name}, {len(archs)} candidates (mean {np.mean([vitnas.count_macs(space, a) for a in archs]) / 1e9:.3f} "
          f"G MACs), {settings.data.name} {settings.split}, device {device}, torch threads {args.threads}")
    rows = []
    started = time.perf_counter()
    local = LocalBackend(FitnessEvaluator(supernet, settings))
    print(f"images per candidate: {local.evaluator.num_images}")
    rows.append(("local", 1, time.perf_counter() - started, _rate(local, archs)))
    for workers in args.workers:
        try:
            require_ray()
        except VitnasError as error:
            print(f"ray rows skipped: {error}")
            break
        started = time.perf_counter()
        with RayBackend.from_supernet(supernet, settings, workers=workers, gpus_per_worker=args.gpus_per_worker,
                                      cpus_per_worker=args.cpus_per_worker) as backend:
            rows.append(("ray", workers, time.perf_counter() - started, _rate(backend, archs)))
    _print(rows)


def _candidates(space: vitnas.SearchSpace, count: int, max_gflops: float | None) -> list[vitnas.Arch]:
    rng = np.random.default_rng(0)
    found = dict.fromkeys([space.largest(), space.smallest()])
    for _ in range(100 * count):
        if len(found) >= count:
            break
        found.setdefault(space.sample(rng))
    archs = list(found)
    if max_gflops is not None:
        archs = [a for a in archs if vitnas.count_macs(space, a) <= max_gflops * 1e9]
    return archs


def _settings(args: argparse.Namespace, space: vitnas.SearchSpace) -> FitnessSettings:
    if args.data == "synthetic":
        data = DataConfig(name="synthetic", synthetic_size=args.images, num_classes=space.num_classes)
        return FitnessSettings(data=data, split="val", batch_size=args.batch_size, device=args.device)
    return FitnessSettings(data=DataConfig(name=args.data, holdout=True), split="minival",
                           batch_size=args.batch_size, device=args.device, max_images=args.images)


def _rate(backend: Backend, archs: list[vitnas.Arch]) -> float:
    """Candidates per second over `archs`, after one warm-up candidate per worker."""
    for _ in backend.evaluate(archs[: backend.workers]):
        pass
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    done = sum(1 for _ in backend.evaluate(archs))
    return done / (time.perf_counter() - started)


def _print(rows: list[tuple[str, int, float, float]]) -> None:
    local_rate = rows[0][3]
    one_ray = next((rate for name, workers, _, rate in rows if name == "ray" and workers == 1), None)
    print(f"{'backend':<8} {'workers':>7} {'start s':>8} {'evals/s':>8} {'per hour':>9} {'x local':>8} {'efficiency':>10}")
    for name, workers, startup, rate in rows:
        efficiency = "-" if one_ray is None or name != "ray" else f"{rate / (workers * one_ray):.2f}"
        print(f"{name:<8} {workers:>7} {startup:>8.1f} {rate:>8.2f} {rate * 3600:>9.0f} {rate / local_rate:>8.2f} "
              f"{efficiency:>10}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="tiny32")
    parser.add_argument("--checkpoint", default=None, help="a trained supernet (default: random weights of --space)")
    parser.add_argument("--data", default="digits", help="digits (minival) or synthetic (--images random images)")
    parser.add_argument("--images", type=int, default=None, help="fitness images (synthetic: how many to make)")
    parser.add_argument("--candidates", type=int, default=60)
    parser.add_argument("--max-gflops", type=float, default=None, help="keep candidates at most this many G MACs")
    parser.add_argument("--workers", type=lambda text: [int(w) for w in text.split(",") if w], default=[1, 2])
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the local backend")
    args = parser.parse_args()
    if args.data == "synthetic" and args.images is None:
        args.images = 10_000
    return args


if __name__ == "__main__":
    main()

"""Why `vitnas run` trains small models on one torch thread: time per epoch, alone and beside a busy process.

Trains the default recipe's supernet for a few epochs with 1 and with 2 torch threads,
each on a quiet machine and again while a second process keeps one core busy, and prints
seconds per epoch and the slow-down the busy process causes. Each configuration runs in
its own subprocess, so thread pools do not carry over.

    python benchmarks/threads_under_load.py --epochs 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
import time

TRAIN = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
import vitnas
started = time.perf_counter()
vitnas.train_supernet("tiny32_digits", sys.argv[2], overrides=[f"epochs={sys.argv[3]}", "eval_every=1000"])
print(time.perf_counter() - started)
"""


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _train_seconds(threads: int, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run([sys.executable, "-c", TRAIN, str(threads), f"{out}/run", str(epochs)],
                                capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    rows = {}
    for threads in (1, 2):
        quiet = _train_seconds(threads, args.epochs)
        competitor = multiprocessing.Process(target=_spin, args=(3600.0,), daemon=True)
        competitor.start()
        try:
            busy = _train_seconds(threads, args.epochs)
        finally:
            competitor.terminate()
        rows[threads] = (quiet / args.epochs, busy / args.epochs)
    print(f"tiny32_digits supernet, {args.epochs} epochs per configuration, {multiprocessing.cpu_count()} cores")
    print(f"{'torch threads':<14} {'quiet s/epoch':>14} {'busy s/epoch':>13} {'busy/quiet':>11}")
    for threads, (quiet, busy) in rows.items():
        print(f"{threads:<14} {quiet:>14.2f} {busy:>13.2f} {busy / quiet:>11.2f}")
    print(f"beside a busy process, 2 threads take {rows[2][1] / rows[1][1]:.2f}x as long as 1 thread")


if __name__ == "__main__":
    main()

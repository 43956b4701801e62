"""`vitnas run`: the whole path on the built-in digits data.

So far the path is: train the supernet of a recipe (resuming the run if `out` already
holds one), then for its largest, smallest and a few random sub-networks report
validation top-1, parameters and MACs, extract each as a standalone ViT and check that
it reproduces the supernet's accuracy and logits. Search and export join here as they land.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vitnas.checkpoint import load_supernet
from vitnas.cost import count_flops, count_params
from vitnas.data import load_digits
from vitnas.errors import ExportError
from vitnas.evaluate import evaluate
from vitnas.export.extract import extract
from vitnas.train import train

__all__ = ["run"]

LOGIT_TOLERANCE = 1e-5  # extraction copies the very weights the supernet slices: only float reassociation differs


def run(
    recipe: str = "tiny32_digits",
    out: str | Path = "runs/tiny32_digits",
    overrides: Sequence[str] = (),
    seed: int = 0,
    num_random: int = 3,
) -> str:
    """Trains (or resumes) a supernet on digits and returns a printable report of its sub-networks."""
    out = Path(out)
    train(recipe, out, resume=(out / "latest").exists(), overrides=overrides)
    supernet, space = load_supernet(out)
    rng = np.random.default_rng(seed)
    archs = [("largest", space.largest()), ("smallest", space.smallest())]
    archs += [(f"random {i}", space.sample(rng)) for i in range(num_random)]
    images, _ = load_digits("val", space.img_size, space.in_chans)
    lines = [space.summary(), "", f"supernet: {out}", "",
             f"{'arch':<10} {'top-1':>6} {'params':>9} {'MACs':>9} {'|extract - supernet|':>21}"]
    for label, arch in archs:
        model = extract(supernet, arch)
        with torch.no_grad():
            difference = (model(images) - supernet(images, arch)).abs().max().item()
        if not difference <= LOGIT_TOLERANCE:  # also catches NaN
            raise ExportError(f"{label}: the extracted model's logits differ from the supernet's by {difference:.2e} "
                              f"(tolerance {LOGIT_TOLERANCE:g}): {arch.to_json()}")
        accuracy = evaluate(supernet, arch, data="digits")
        if evaluate(model, data="digits") != accuracy:
            raise ExportError(f"{label}: the extracted model's accuracy differs from the supernet's: {arch.to_json()}")
        lines.append(
            f"{label:<10} {accuracy:>6.1%} {count_params(space, arch) / 1e6:>8.3f}M "
            f"{count_flops(space, arch) / 1e6:>8.2f}M {difference:>21.2e}   {arch}"
        )
    lines.append(f"\ntop-1 on the {len(images)} digits validation images; extracted models score the same")
    return "\n".join(lines)

"""`vitnas run`: the whole path on the built-in digits data.

So far the path is: load the space, build its supernet, run its largest, smallest and
a few random sub-networks on the digits validation images, extract each as a
standalone ViT and check that it reproduces the supernet's logits. Training, search
and export join here as they land.
"""

from __future__ import annotations

import numpy as np
import torch

from vitnas.cost import count_flops, count_params
from vitnas.data import load_digits
from vitnas.export import extract
from vitnas.space import load_space
from vitnas.supernet import SuperViT

__all__ = ["run"]


def run(space: str = "tiny32", seed: int = 0, num_random: int = 3) -> str:
    """Runs the pipeline and returns a printable report.

    Raises:
        SpaceError: the space cannot be loaded.
    """
    search_space = load_space(space)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    supernet = SuperViT(search_space).eval()
    images, _ = load_digits("val", search_space.img_size, search_space.in_chans)
    archs = [("largest", search_space.largest()), ("smallest", search_space.smallest())]
    archs += [(f"random {i}", search_space.sample(rng)) for i in range(num_random)]
    lines = [search_space.summary(), "", f"{'arch':<10} {'params':>9} {'MACs':>9} {'|extract - supernet|':>21}"]
    with torch.no_grad():
        for label, arch in archs:
            difference = (extract(supernet, arch)(images) - supernet(images, arch)).abs().max().item()
            lines.append(
                f"{label:<10} {count_params(search_space, arch) / 1e6:>8.3f}M "
                f"{count_flops(search_space, arch) / 1e6:>8.2f}M {difference:>21.2e}   {arch}"
            )
    lines.append(f"\nchecked on {len(images)} digits validation images")
    return "\n".join(lines)

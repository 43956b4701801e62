"""Shared fixtures: shipped spaces, a test-only resize-mode space, seeded supernets."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import vitnas

# Three stages, SuperViT-style resized input with one position table per grid, and odd
# grids (5 -> 3 -> 2, 7 -> 4 -> 2) entering the spatial reductions.
RESIZE3 = {
    "name": "resize3",
    "img_size": 32,
    "in_chans": 3,
    "num_classes": 7,
    "patch": {"mode": "resize", "sizes": [4], "img_sizes": [20, 28, 32]},
    "stages": [
        {"depth": [1, 2], "embed_dim": [16, 24], "num_heads": [2, 4], "mlp_ratio": [2.0, 3.0]},
        {"depth": [1, 2], "embed_dim": [24, 32], "num_heads": [[2], [2, 4]], "mlp_ratio": [1.5, 2.0], "head_dim": 12},
        {
            "depth": [2, 3],
            "embed_dim": [32, 48],
            "num_heads": [2, 4],
            "mlp_ratio": [2.0, 4.0],
            "token_reduction": {"blocks": [0, 2], "keep_rates": [0.5, 0.75, 1.0]},
        },
    ],
}

SPACE_NAMES = ["tiny32", "deit", "resnas", "resize3"]


def space_dict(**changes) -> dict:
    """A deep copy of RESIZE3 with top-level keys replaced."""
    data = copy.deepcopy(RESIZE3)
    data.update(changes)
    return data


@pytest.fixture(scope="session")
def spaces() -> dict[str, vitnas.SearchSpace]:
    loaded = {name: vitnas.load_space(name) for name in SPACE_NAMES if name != "resize3"}
    loaded["resize3"] = vitnas.load_space(RESIZE3)
    return loaded


@pytest.fixture(scope="session")
def supernets(spaces) -> dict[str, vitnas.SuperViT]:
    """One eval-mode supernet per space, built once (deit and resnas take a second or two)."""
    torch.manual_seed(0)
    return {name: vitnas.SuperViT(space).eval() for name, space in spaces.items()}


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module (use: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).

    Tiny graphs are dominated by op latency, so one thread runs them faster and cannot
    stall at a thread barrier when other processes share the cores; timings stay steady;
    and sums are computed in the order single-threaded Ray actors compute them.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ddp_ranks(tmp_path_factory) -> Path:
    """One two-rank gloo spawn for the session: a supernet in ``supernet/``, a standalone model in ``standalone/``.

    tests/test_train.py and tests/test_finetune.py check one half each (see tests/ddp_env.py).
    """
    from ddp_env import spawn_ddp_ranks

    out = tmp_path_factory.mktemp("ddp")
    spawn_ddp_ranks(out)
    return out


# One fresh interpreter for the import checks of three files, step after step (sys.modules only grows, so a
# module a step must not load is caught there or at a later step): loading a plain export folder, then an
# elastic bundle (tests/test_export.py, tests/test_export_elastic.py: neither imports the supernet, the
# search space, nni or the export writer), then every public name of vitnas (tests/test_supernet.py: ray stays out).
IMPORT_PROBE = """
import json, sys
import torch, vitnas

NOT_FOR_LOADING = ("vitnas.supernet.supernet", "vitnas.space.space", "nni", "vitnas.export.writer")
plain, bundle = sys.argv[1:3]
steps = {}
vitnas.load(plain)(torch.zeros(1, 3, 32, 32))
steps["load"] = [m for m in NOT_FOR_LOADING if m in sys.modules]
model = vitnas.load(bundle)
for point in model.points:
    model.use(point)(torch.zeros(1, 3, 32, 32))
vitnas.load(bundle, point=model.points[-1])(torch.zeros(1, 3, 32, 32))
steps["load_bundle"] = [m for m in NOT_FOR_LOADING if m in sys.modules]
[getattr(vitnas, name) for name in vitnas.__all__]
steps["all_names"] = [m for m in ("ray",) if m in sys.modules]
print(json.dumps(steps))
"""


@pytest.fixture(scope="session")
def import_probe(tmp_path_factory, spaces, supernets) -> dict[str, list[str]]:
    """What each step of IMPORT_PROBE found loaded that it must not load (every list empty when all is well).

    The folders are a tiny32 export with token reduction and a two-point tiny32 bundle of the seeded supernet.
    """
    import json
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("import_probe")
    space = spaces["tiny32"]
    plain = root / "plain"
    vitnas.export_model(supernets["tiny32"], space.arch(embed_dim=64, num_heads=4, depth=3, keep_rate=0.5), plain,
                        latency_batches=())
    records = [{"name": name, "arch": space.arch(**kwargs).to_dict()} for name, kwargs in (
        ("big", dict(embed_dim=64, depth=4, patch_size=4, keep_rate=0.5)),
        ("small", dict(embed_dim=32, depth=2, num_heads=[[4, 2]], patch_size=8)))]
    (root / "best.json").write_text(json.dumps(records))
    [bundle] = vitnas.export_model(supernets["tiny32"], root / "best.json", root / "bundle", formats=["elastic"],
                                   latency_batches=())
    result = subprocess.run([sys.executable, "-c", IMPORT_PROBE, str(plain), str(bundle)], capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """A tiny ImageFolder for tiny32 (10 classes): 3 training and 1 validation 32x32 RGB noise image per class.

    Its training split goes through timm's random training transform, unlike digits and synthetic data.
    """
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    pixels = np.random.default_rng(7)
    for split, count in (("train", 3), ("val", 1)):
        for label in range(10):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(count):
                Image.fromarray(pixels.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)

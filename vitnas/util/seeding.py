"""Every random number generator a training run draws from: seeded from the run's seed, saved, restored.

A run draws from more generators than its own code names:

- torch's global generator (CPU and every CUDA device): initial weights, drop-path, and
  the torchvision parts of timm's training transform (flip, colour jitter);
- numpy's global generator: timm's Mixup and CutMix;
- Python's `random`: timm's `RandomResizedCropAndInterpolation` and auto-augment, which
  run in the training process when the loader has no workers;
- the training loader's own `torch.Generator`: each epoch it draws the base seed from
  which PyTorch seeds every loader worker's `random`, torch and numpy (``base_seed + worker_id``).

`seed_run` seeds them all, so the same seed gives the same weights on every data source,
with or without workers; `rng_state` and `restore_rng_state` carry them through a
checkpoint, so a resumed run draws what the uninterrupted one would have drawn.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

__all__ = ["loader_generator", "restore_rng_state", "rng_state", "seed_run"]

log = logging.getLogger(__name__)


def seed_run(seed: int) -> None:
    """Seeds torch's global generators (CPU and CUDA), numpy's and Python's `random` with `seed`."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # every CUDA device's generator too


def loader_generator(seed: int) -> torch.Generator:
    """The training loader's generator: its per-epoch draws seed the loader's workers."""
    return torch.Generator().manual_seed(seed)


def rng_state(loader: torch.Generator) -> dict[str, Any]:
    """Every generator's state, as tensors and plain data (`torch.load(weights_only=True)` reads it back)."""
    version, internal, gauss_next = random.getstate()
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_rng": _numpy_state(),
        "python_rng": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                       "gauss_next": gauss_next},
        "loader_rng": loader.get_state(),
    }


def restore_rng_state(state: dict[str, Any], loader: torch.Generator) -> None:
    """Puts back what `rng_state` saved.

    A checkpoint written before Python's `random` and the loader's generator were saved
    still loads: those two keep their freshly seeded state, and a note says that random
    augmentation after this resume will not repeat the uninterrupted run's.
    """
    torch.set_rng_state(state["torch_rng"].cpu())
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    _set_numpy_state(state["numpy_rng"])
    missing = [name for name in ("python_rng", "loader_rng") if name not in state]
    if "python_rng" in state:
        saved = state["python_rng"]
        random.setstate((saved["version"], tuple(saved["internal"].tolist()), saved["gauss_next"]))
    if "loader_rng" in state:
        loader.set_state(state["loader_rng"].cpu())
    if missing:
        log.warning("this checkpoint predates saving %s: they restart from the run's seed, so random augmentation "
                    "after this resume differs from an uninterrupted run's", " and ".join(missing))


def _numpy_state() -> dict[str, Any]:
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
            "has_gauss": has_gauss, "gauss": gauss}


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["position"], state["has_gauss"], state["gauss"]))

"""An export folder's accuracy: the `vitnas eval` verb on a folder, and the `vitnas run` check of each export."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from vitnas.data import DataConfig
from vitnas.evaluate import evaluate_topk
from vitnas.export.load import load, point_of
from vitnas.export.schema import read_config

__all__ = ["evaluate_folder"]


def evaluate_folder(
    folder: str | Path,
    data: str | Path | DataConfig = "digits",
    split: str = "val",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    ks: Sequence[int] = (1, 5),
    point: str | None = None,
) -> dict[str, Any]:
    """`evaluate_topk` of an export folder's model (`vitnas.load`), at the input size its config.json records.

    An elastic bundle is scored at `point` (default: its first), which the result names
    as ``point``: a bundle's points share a folder, so the folder alone does not say.
    """
    spec = read_config(Path(folder)).get("input", {})
    model = load(folder, device=device, point=point)
    result = evaluate_topk(model, None, data, split, batch_size, device, ks=ks,
                           img_size=spec.get("image_size"), in_chans=spec.get("in_chans"))
    chosen = point_of(model, point)
    return result if chosen is None else {"point": chosen, **result}

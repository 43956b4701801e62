"""`vitnas.load(DIR)`: an export folder back as a plain `vitnas.nn.vit.ViT`.

An elastic bundle (``vitnas export --format elastic``) loads as the `ElasticViT` that
switches between its operating points, or with ``point=NAME`` as that point's plain
`ViT` (see `vitnas.export.elastic`).

Loading needs torch, safetensors and the standalone model module only: nothing here
imports the supernet, the search space or nni, so a deployment installs vitnas and
loads a folder without the search machinery. The weights' SHA-256 recorded in
``config.json`` is checked before the bytes are parsed, so a truncated download or a
flipped bit is a clear error, never a model that silently computes something else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vitnas.errors import ExportError
from vitnas.export.schema import CONFIG_FILE, ELASTIC, read_config, weights_entry
from vitnas.export.weights import check_state, read_weights
from vitnas.nn.vit import ViT, ViTConfig
from vitnas.util.device import resolve_device

if TYPE_CHECKING:
    from vitnas.export.elastic import ElasticViT

__all__ = ["load", "point_of", "read_weights"]


def load(folder: str | Path, device: str | torch.device = "cpu", point: str | None = None) -> ViT | ElasticViT:
    """The model of an export folder, in eval mode, with the exported weights.

    Args:
        folder: a folder written by `vitnas.export_model` (holding ``config.json`` and ``model.safetensors``).
        device: where to put the model.
        point: for an elastic bundle, the operating point (its budget's name) to load as a
            plain `ViT`; without it a bundle loads as an `ElasticViT` holding every point.

    Raises:
        ExportError: one line for each kind of bad folder: missing folder or config.json,
            config.json not JSON or with a missing, unknown or ill-typed field, a format
            version newer than this vitnas, weights truncated or modified (size or
            SHA-256 differ from config.json's), tensors missing, extra or of the
            wrong shape for the config, a `point` that the bundle lacks, or a `point`
            for a plain folder; a `device` that is not cpu / cuda[:N] or that this machine lacks.
    """
    device = resolve_device(device, ExportError)  # before any reading: a GPU this machine lacks is one line
    folder = Path(folder)
    config = read_config(folder)
    path = folder / CONFIG_FILE
    if config.get("kind") == ELASTIC:
        from vitnas.export.elastic import load_bundle  # here: a plain folder needs none of the bundle code

        return load_bundle(folder, config, device, point)
    if point is not None:
        raise ExportError(f"{folder}: holds one model, not an elastic bundle: drop point={point!r}")
    model_config = ViTConfig.from_dict(config["model"], where=f"{path}: model")
    state = read_weights(folder, config, path)
    with torch.device("meta"):
        model = ViT(model_config)  # no memory or init work: the weights are assigned below
    check_state(state, model, folder / weights_entry(config, path)[0])
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()


def point_of(model: ViT | ElasticViT, point: str | None) -> str | None:
    """The operating point a model from `load(..., point=point)` runs: `point` if given, an `ElasticViT`'s active
    (its first) one, None for a plain folder's model. Tools print it: a bundle's points share one folder."""
    if point is not None:
        return point
    from vitnas.export.elastic import ElasticViT

    return model.point if isinstance(model, ElasticViT) else None

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
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from torch import Tensor

from vitnas.errors import ExportError
from vitnas.export.schema import CONFIG_FILE, ELASTIC, read_config, sha256_hex, weights_entry
from vitnas.util.device import resolve_device
from vitnas.nn.vit import ViT, ViTConfig

if TYPE_CHECKING:
    from vitnas.export.elastic import ElasticViT

__all__ = ["load", "point_of", "read_weights"]


def load(folder: str | Path, device: str | torch.device = "cpu", point: str | None = None) -> ViT | ElasticViT:
    """The model of an export folder, in eval mode, with the exported weights.

    Args:
        folder: a folder written by `vitnas.export` (holding ``config.json`` and ``model.safetensors``).
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
        from vitnas.export.elastic import load_bundle  # here, not above: the bundle module builds on this one

        return load_bundle(folder, config, device, point)
    if point is not None:
        raise ExportError(f"{folder}: holds one model, not an elastic bundle: drop point={point!r}")
    model_config = ViTConfig.from_dict(config["model"], where=f"{path}: model")
    state = read_weights(folder, config, path)
    with torch.device("meta"):
        model = ViT(model_config)  # no memory or init work: the weights are assigned below
    _check_state(state, model, folder / weights_entry(config, path)[0])
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()


def point_of(model: ViT | ElasticViT, point: str | None) -> str | None:
    """The operating point a model from `load(..., point=point)` runs: `point` if given, an `ElasticViT`'s active
    (its first) one, None for a plain folder's model. Tools print it: a bundle's points share one folder."""
    if point is not None:
        return point
    from vitnas.export.elastic import ElasticViT

    return model.point if isinstance(model, ElasticViT) else None


def read_weights(folder: Path, config: dict, config_path: Path) -> dict[str, Tensor]:
    """The weight tensors, after checking the file's size and SHA-256 against config.json."""
    name, size, digest = weights_entry(config, config_path)
    path = folder / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ExportError(f"{path}: missing (config.json names it as the weights)") from None
    except OSError as error:
        raise ExportError(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(data) != size:
        raise ExportError(f"{path}: {len(data)} bytes, config.json records {size}: the file is truncated or modified")
    if sha256_hex(data) != digest:
        raise ExportError(f"{path}: SHA-256 differs from the one config.json records: the file was modified")
    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise ExportError(f"{path}: not a readable safetensors file ({_first_line(error)})") from None


def _check_state(state: dict[str, Tensor], model: ViT, path: Path) -> None:
    """Names and shapes of the stored tensors against the model config.json describes."""
    expected = model.state_dict()
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    if missing:
        raise ExportError(f"{path}: missing tensor {missing[0]!r} that config.json's model needs")
    if unexpected:
        raise ExportError(f"{path}: holds tensor {unexpected[0]!r} that config.json's model does not have")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise ExportError(f"{path}: tensor {name!r} has shape {list(state[name].shape)}, config.json's model "
                              f"needs {list(tensor.shape)}")
        if not state[name].is_floating_point():
            raise ExportError(f"{path}: tensor {name!r} is {state[name].dtype}, expected floating point")


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__

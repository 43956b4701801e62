"""An export folder's weight file, read and checked against config.json before a tensor is used."""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from torch import Tensor

from vitnas.errors import ExportError
from vitnas.export.schema import sha256_hex, weights_entry
from vitnas.nn.vit import ViT

__all__ = ["check_state", "read_weights"]


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


def check_state(state: dict[str, Tensor], model: ViT, path: Path) -> None:
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

"""Supernet checkpoints: written atomically, loaded without unpickling arbitrary objects.

A run directory holds versioned checkpoint folders and a one-line ``latest`` file::

    RUN/latest                  -> "ckpt-000030"
    RUN/ckpt-000030/model.safetensors   supernet weights
                    ema.safetensors     EMA weights (if EMA is on)
                    space.yaml          the search space, so the checkpoint stands alone (supernets)
                    model.json          standalone runs instead: the `vitnas.nn.vit.ViTConfig` trained
                    recipe.yaml         the resolved recipe
                    state.pt            optimizer / scheduler / scaler / RNG state (tensors and plain data only)
                    meta.json           epoch, step, last metrics; written last

A folder is written under a temporary name and renamed when complete, then ``latest``
is replaced with `os.replace`: a kill at any moment leaves the previous good
checkpoint in place. Older folders beyond `keep` are removed afterwards.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vitnas.errors import CheckpointError, VitnasError
from vitnas.space.space import SearchSpace, load_space
from vitnas.train.recipe import Recipe, load_recipe
from vitnas.util.atomic import reporting_disk_full, write_text_atomically
from vitnas.util.yamlfile import read_yaml

__all__ = ["CheckpointError", "MODEL_FILE", "finished_epochs", "holds_checkpoint", "latest_checkpoint",
           "load_checkpoint", "load_supernet", "save_checkpoint"]


MODEL_FILE = "model.json"  # standalone runs: the trained model's ViTConfig, in place of space.yaml


def save_checkpoint(
    run_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    space: SearchSpace | None,
    recipe: Recipe,
    state: dict[str, Any],
    meta: dict[str, Any],
    ema_state: dict[str, torch.Tensor] | None = None,
    keep: int = 2,
    model_config: dict[str, Any] | None = None,
) -> Path:
    """Writes checkpoint `step` into `run_dir` atomically and points ``latest`` at it.

    A supernet checkpoint names its `space`; a standalone model's names its
    `model_config` (``ViTConfig.to_dict()``) instead, so a resume can check it trains the same network.
    """
    name = f"ckpt-{step:07d}"
    final = run_dir / name
    with reporting_disk_full(f"checkpoint {final} (earlier checkpoints are kept)", CheckpointError):
        run_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=run_dir))
        try:
            _write_parts(staging, model_state, space, recipe, state, meta, ema_state, model_config)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # a half-written folder only takes the space a retry needs
            raise
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    write_text_atomically(run_dir / "latest", name + "\n", CheckpointError)
    _prune(run_dir, keep)
    return final


def _write_parts(staging: Path, model_state: dict[str, torch.Tensor], space: SearchSpace | None, recipe: Recipe,
                 state: dict[str, Any], meta: dict[str, Any], ema_state: dict[str, torch.Tensor] | None,
                 model_config: dict[str, Any] | None) -> None:
    """Writes every file of a checkpoint into `staging`, meta.json last."""
    save_file({k: v.detach().contiguous().cpu() for k, v in model_state.items()}, str(staging / "model.safetensors"))
    if ema_state is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema_state.items()}, str(staging / "ema.safetensors"))
    if space is not None:
        (staging / "space.yaml").write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
    if model_config is not None:
        (staging / MODEL_FILE).write_text(json.dumps(model_config, indent=1))
    (staging / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    buffer = io.BytesIO()  # torch.save straight to a full disk fails with a RuntimeError that never says so
    torch.save(state, buffer)
    (staging / "state.pt").write_bytes(buffer.getbuffer())
    (staging / "meta.json").write_text(json.dumps(meta, indent=1))


def holds_checkpoint(path: Path) -> bool:
    """Whether `path` is what `latest_checkpoint` reads: a run directory with a ``latest`` file, or a checkpoint folder.

    A cheap look (nothing is loaded), for deciding what a path is before reading it.
    """
    path = Path(path)
    return (path / "latest").is_file() or (path / "meta.json").is_file()


def latest_checkpoint(path: Path) -> Path:
    """The checkpoint folder `path` names: a run directory (via ``latest``) or a checkpoint folder itself."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return path
    pointer = path / "latest"
    if not pointer.is_file():
        if not path.exists():
            raise CheckpointError(f"{path}: no such directory")
        raise CheckpointError(f"{path}: no checkpoint here (neither a 'latest' file nor meta.json)")
    folder = path / pointer.read_text().strip()
    if not (folder / "meta.json").is_file():
        raise CheckpointError(f"{folder}: checkpoint named by {pointer} is incomplete or missing")
    return folder


def finished_epochs(path: Path) -> int:
    """How many epochs the checkpoint `path` names (a run directory or a checkpoint folder) has finished.

    ``meta.json``'s ``epoch`` counts finished epochs (a checkpoint is written after each
    one), so it is also the index of the epoch a resume trains next; a run is complete
    when it equals its recipe's ``epochs``.

    Raises:
        CheckpointError: no readable checkpoint, or a ``meta.json`` without a count of epochs.
    """
    folder = latest_checkpoint(path)
    try:
        epochs = json.loads((folder / "meta.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{folder}/meta.json: no count of finished epochs ({type(error).__name__}: "
                              f"{_first_line(error)})") from None
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise CheckpointError(f"{folder}/meta.json: epoch must be a count of finished epochs, got {epochs!r}")
    return epochs


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads every part of a checkpoint; a damaged file is a one-line CheckpointError.

    ``space`` is None for a standalone run, whose ``model_config`` (a dict) is None for a supernet.
    """
    folder = latest_checkpoint(path)
    try:
        standalone = (folder / MODEL_FILE).is_file()
        space = None if standalone else _read_part(folder / "space.yaml", load_space)
        model_config = json.loads((folder / MODEL_FILE).read_text()) if standalone else None
        recipe = _read_part(folder / "recipe.yaml", load_recipe)
        meta = json.loads((folder / "meta.json").read_text())
        model = _load_tensors(folder / "model.safetensors", map_location)
        ema = _load_tensors(folder / "ema.safetensors", map_location) if (folder / "ema.safetensors").exists() else None
        state = torch.load(folder / "state.pt", map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as error:
        raise CheckpointError(f"{folder}: cannot be read ({type(error).__name__}: {_first_line(error)})") from None
    return {"folder": folder, "space": space, "recipe": recipe, "meta": meta, "model": model, "ema": ema,
            "state": state, "model_config": model_config}


def load_supernet(path: str | Path, use_ema: bool = False, map_location: str = "cpu"):
    """The trained supernet of a run (or checkpoint) directory, in eval mode, and its space.

    Returns:
        (supernet, space).
    """
    from vitnas.supernet.supernet import SuperViT

    loaded = load_checkpoint(Path(path), map_location)
    if loaded["space"] is None:
        raise CheckpointError(f"{loaded['folder']}: holds a standalone model ({MODEL_FILE}), not a supernet")
    recipe = loaded["recipe"]
    supernet = SuperViT(loaded["space"], drop_path_rate=recipe.drop_path)
    weights = loaded["ema"] if use_ema and loaded["ema"] is not None else loaded["model"]
    try:
        supernet.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{loaded['folder']}: weights do not fit the space ({_first_line(error)})") from None
    return supernet.eval(), loaded["space"]


def _read_part(path: Path, build: Callable[[Any], Any]) -> Any:
    """A YAML file of a checkpoint (space, recipe) built by `build`; a malformed one is one line naming the file."""
    try:
        return build(read_yaml(path, CheckpointError))
    except CheckpointError:
        raise
    except VitnasError as error:  # load_space / load_recipe name the source "<dict>": name the file instead
        raise CheckpointError(f"{path}: {str(error).removeprefix('<dict>: ')}") from None


def _load_tensors(path: Path, map_location) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(map_location))
    except SafetensorError as error:
        raise ValueError(f"{path.name}: {error}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _prune(run_dir: Path, keep: int) -> None:
    folders = sorted(p for p in run_dir.glob("ckpt-*") if p.is_dir())
    for stale in folders[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    for leftover in run_dir.glob(".ckpt-*"):  # staging folders of a killed save
        shutil.rmtree(leftover, ignore_errors=True)

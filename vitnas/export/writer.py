"""`vitnas export`: chosen sub-networks written as standalone, checked, self-describing folders.

An export folder holds ``config.json`` (format version, arch, model config, inputs,
classes, the search's evidence, costs, latency, and every file's SHA-256 with its
check), ``model.safetensors`` (what `vitnas.load` reads), a model card ``README.md``,
and the forms asked for: ``model.ts``, ``model.onnx``, ``timm_model.safetensors``.

Every form, the safetensors file included, is read back and run against the
extracted PyTorch model on seeded inputs before anything is published; a difference
above the tolerance fails the export with the number. The folder is built beside its
target and renamed into place (`vitnas.util.atomic.staged_folder`), so a failed or killed export
leaves nothing at ``out`` and an existing folder is replaced only when asked. With
``all_budgets`` the unit is ``out`` itself: one sub-folder per budget of a best.json,
published together. The ``elastic`` format writes one bundle of every budget instead
(`vitnas.export.elastic`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from vitnas.data import DataConfig, parse_data
from vitnas.errors import ExportError
from vitnas.export.bundle import bundle_targets, check_bundle_request, write_bundle
from vitnas.export.card import model_card
from vitnas.export.extract import extract
from vitnas.export.forms import check_inputs, max_difference, require_onnx_exporter, write_onnx, write_torchscript
from vitnas.export.load import load
from vitnas.export.metadata import class_names, input_spec
from vitnas.export.schema import (CONFIG_FILE, ELASTIC, FORMAT, FORMAT_VERSION, FORMATS, MODEL_FORMATS,
                                  WEIGHTS_FILE, file_entry, write_json)
from vitnas.export.targets import Target, folder_names, read_targets
from vitnas.space.arch import Arch
from vitnas.space.cost import count_macs
from vitnas.util.atomic import check_target, staged_folder
from vitnas.util.fields import require_int, require_number
from vitnas.export.timing import LATENCY_REPEATS, LATENCY_WARMUP, measure_latency  # noqa: F401 (read from here too)
from vitnas.export.timm_form import write_timm
from vitnas.nn.vit import ViT
from vitnas.space.space import SearchSpace
from vitnas.supernet.supernet import SuperViT

__all__ = ["FORMATS", "TOLERANCE", "check_settings", "export_model", "write_model_folder"]

logger = logging.getLogger(__name__)

TOLERANCE = 1e-4  # largest absolute logit difference a form may show against PyTorch


@dataclass(frozen=True)
class _Job:
    """What every folder of one export shares."""

    supernet: SuperViT
    space: SearchSpace
    data: DataConfig | None  # the training data, for normalisation and class names
    source: dict[str, Any]  # provenance for config.json: space, checkpoint, EMA, data
    formats: tuple[str, ...]
    latency_batches: tuple[int, ...]
    device: str
    tolerance: float


def export_model(
    checkpoint: str | Path | SuperViT,
    arch: str | Path | Arch,
    out: str | Path,
    *,
    formats: Sequence[str] = ("safetensors",),
    budget: str | None = None,
    all_budgets: bool = False,
    overwrite: bool = False,
    use_ema: bool = False,
    data: str | DataConfig | None = None,
    latency_batches: Sequence[int] = (1, 64),
    device: str | None = None,
    tolerance: float = TOLERANCE,
) -> list[Path]:
    """Writes sub-networks of a supernet as export folders (see the module docstring for the contents).

    Args:
        checkpoint: a supernet run or checkpoint folder (`vitnas train --out`), or a
            `SuperViT` in memory (then `data` names its data, if known).
        arch: an arch JSON file, a search's ``best.json``, ``largest`` / ``smallest``, or an `Arch`.
        out: the folder to write; with `all_budgets`, the folder that holds one
            sub-folder per budget, named after it (``latency_ms<=4`` -> ``latency_ms_le_4``).
        formats: any of ``safetensors`` (always written), ``timm``, ``torchscript``, ``onnx``;
            or ``elastic``: one folder holding every budget of a best.json as operating points
            of one weight envelope (alone: the other forms hold one model each).
        budget: from a best.json, export the choice of this budget (default: the first).
        all_budgets: from a best.json, export every budget's choice.
        overwrite: replace an existing `out` (atomically); otherwise it is refused.
        use_ema: export the checkpoint's EMA weights.
        data: the data the supernet learned from (default: the checkpoint's recipe's).
        latency_batches: batch sizes to time at export (empty: do not time).
        device: where to time (default: cuda in bf16 when present, else cpu in fp32).
        tolerance: largest absolute difference a form may show against PyTorch.

    Returns:
        The export folders written, in budget order (``elastic``: the one bundle folder).

    Raises:
        ExportError: an unknown format, an existing `out`, a form that timm cannot express
            or that fails its check, or a budget not in the file. `ArchError` and
            `CheckpointError` for a bad arch file or checkpoint. All are one line.
    """
    formats = _check_formats(formats)
    _check_settings(latency_batches, tolerance)
    if ELASTIC in formats:
        check_bundle_request(formats, budget)
    out = Path(out)
    check_target(out, overwrite, ExportError)  # before loading anything
    supernet, space, data, source = _open(checkpoint, use_ema, data)
    if ELASTIC in formats:
        return [write_bundle(supernet, bundle_targets(arch, space), out, overwrite=overwrite, data=data,
                             source=source, latency_batches=latency_batches, device=_latency_device(device),
                             tolerance=tolerance)]
    targets = read_targets(arch, space, budget, all_budgets)
    job = _Job(supernet, space, data, source, formats, tuple(latency_batches), _latency_device(device), tolerance)
    names = folder_names(targets) if all_budgets else [None]
    with staged_folder(out, overwrite, ExportError) as staging:
        for name, target in zip(names, targets):
            folder = staging if name is None else staging / name
            folder.mkdir(exist_ok=True)
            _write_folder(job, target, folder)
    return [out if name is None else out / name for name in names]


def check_settings(formats: Sequence[str], latency_batches: Sequence[int], tolerance: float) -> tuple[str, ...]:
    """Checks the settings of one model's folder before any slow work; returns the forms besides safetensors.

    Raises:
        ExportError: an unknown format (or ``elastic``, which bundles several sub-networks), a
            batch size that is not a positive integer, or a bad tolerance.
    """
    _check_settings(latency_batches, tolerance)
    forms = _check_formats(formats)
    if ELASTIC in forms:
        raise ExportError(f"format {ELASTIC!r}: bundles several sub-networks of a supernet; one model is written as "
                          f"{', '.join(MODEL_FORMATS[:-1])} or {MODEL_FORMATS[-1]}")
    return forms


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = [formats]
    for name in formats:
        if name not in FORMATS:
            raise ExportError(f"format {name!r}: expected one of {', '.join(FORMATS)}")
    if "onnx" in formats:
        require_onnx_exporter()
    return tuple(name for name in FORMATS if name in formats and name != "safetensors")


def _check_settings(latency_batches: Sequence[int], tolerance: float) -> None:
    """Settings that would only fail after the slow part, checked first."""
    for batch in latency_batches:
        require_int("latency batch", batch, ExportError)
    require_number("tolerance", tolerance, ExportError, at_least=0)


def _open(checkpoint: str | Path | SuperViT, use_ema: bool,
          data: str | DataConfig | None) -> tuple[SuperViT, SearchSpace, DataConfig | None, dict[str, Any]]:
    """The supernet, its space, its training data and provenance, from a checkpoint path or an object."""
    if isinstance(checkpoint, SuperViT):
        config = parse_data(data) if data is not None else None
        source = {"space": checkpoint.space.name, "checkpoint": None, "ema": False}
        return checkpoint.eval(), checkpoint.space, config, {**source, "data": config.name if config else None}
    from vitnas.train.checkpoint import latest_checkpoint, load_supernet
    from vitnas.train.rundir import stored_recipe

    folder = latest_checkpoint(Path(checkpoint))
    if use_ema and not (folder / "ema.safetensors").is_file():
        raise ExportError(f"{folder}: has no EMA weights (it was trained without ema_decay); export without --ema")
    supernet, space = load_supernet(folder, use_ema=use_ema)
    config = parse_data(data) if data is not None else \
        stored_recipe(folder).data
    source = {"space": space.name, "checkpoint": str(folder), "ema": use_ema, "data": config.name}
    return supernet, space, config, source


def _latency_device(device: str | None) -> str:
    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _write_folder(job: _Job, target: Target, folder: Path) -> None:
    """One export folder of a chosen sub-network: extracted from the supernet, then written as any model is."""
    model = extract(job.supernet, target.arch).to(device="cpu", dtype=torch.float32).eval()
    write_model_folder(
        model, folder, arch=target.arch, name=target.name, data=job.data, source=job.source,
        input=input_spec(job.data, job.space.img_size, job.space.in_chans),
        macs=count_macs(job.space, target.arch, model.config.num_classes),
        extra={"search": target.record} if target.record is not None else None,
        formats=job.formats, latency_batches=job.latency_batches, device=job.device, tolerance=job.tolerance,
    )
    logger.info("exported %s%s", target.arch, f" ({target.name})" if target.name else "")


def write_model_folder(
    model: ViT,
    folder: Path,
    *,
    arch: Arch | None,
    input: dict[str, Any],
    data: DataConfig | None,
    source: dict[str, Any],
    macs: int,
    name: str | None = None,
    extra: dict[str, Any] | None = None,
    formats: Sequence[str] = (),
    latency_batches: Sequence[int] = (),
    device: str | None = None,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Writes a standalone model into an existing, empty folder: weights, checked forms, latency, config.json, card.

    `export_model` writes each chosen sub-network with it, and `vitnas.finetune_model` its fine-tuned
    model, so every export folder has one layout and one set of checks. Callers publish
    the folder atomically (`vitnas.util.atomic.staged_folder`): a failed check leaves nothing.

    Args:
        model: the model, in fp32 on the CPU, in eval mode.
        folder: where to write (the caller's staging folder).
        arch: the sub-network it is, if it is one (config.json's ``arch``).
        input: how inputs must be prepared (`vitnas.export.metadata.input_spec`).
        data: the data it learned from, for class names (None: unknown).
        source: provenance for config.json (space, checkpoint, EMA, data).
        macs: multiply-accumulates per image (`vitnas.space.cost.count_macs`).
        name: the budget it was chosen for, if any.
        extra: more config.json entries (a search's ``search`` record, a fine-tune's ``finetune``).
        formats: forms besides safetensors: ``timm``, ``torchscript``, ``onnx``.
        latency_batches: batch sizes to time on `device` (empty: do not time).
        device: where to time (default: cuda in bf16 when present, else cpu in fp32).
        tolerance: largest absolute difference a form may show against `model`.

    Returns:
        The config.json written.

    Raises:
        ExportError: a form differs from `model` by more than `tolerance`, or cannot be written.
    """
    forms = check_settings(formats, latency_batches, tolerance)
    config = _config(model, arch, name, input, data, source, macs, extra)
    inputs = check_inputs(config["input"]["image_size"], config["input"]["in_chans"])
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(folder / WEIGHTS_FILE),
              metadata={"format": "pt"})
    config["weights"] = file_entry(folder / WEIGHTS_FILE)
    write_json(folder / CONFIG_FILE, config)  # vitnas.load reads it just below
    check = {"runtime": f"torch {torch.__version__} (vitnas.load)", "batches": [x.shape[0] for x in inputs],
             "max_abs_diff": max_difference(load(folder), model, inputs)}
    config["formats"] = {"safetensors": {**config["weights"], "check": check}}
    _enforce("safetensors", config["formats"]["safetensors"], tolerance)
    for form in forms:  # each checked as soon as written: a failure stops before the slower ones
        config["formats"][form] = _write_form(form, model, folder, inputs, config["input"])
        _enforce(form, config["formats"][form], tolerance)
    config["latency"] = measure_latency(model, tuple(latency_batches), _latency_device(device),
                                         config["input"]["image_size"])
    write_json(folder / CONFIG_FILE, config)
    (folder / "README.md").write_text(model_card(config, tolerance), encoding="utf-8")
    return config


def _config(model: ViT, arch: Arch | None, name: str | None, input: dict[str, Any], data: DataConfig | None,
            source: dict[str, Any], macs: int, extra: dict[str, Any] | None) -> dict[str, Any]:
    """config.json before the files: what the model is, what it takes, where it came from, what it costs."""
    from vitnas import __version__

    num_classes = model.config.num_classes
    config: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "created_by": f"vitnas {__version__}",
        "torch_version": torch.__version__, "name": name, "arch": arch.to_dict() if arch is not None else None,
        "model": model.config.to_dict(), "input": dict(input), "num_classes": num_classes,
    }
    names = class_names(data, num_classes)
    if names is not None:
        config["class_names"] = names
    config["source"] = source
    config.update(extra or {})
    config["params"] = sum(p.numel() for p in model.parameters())
    config["macs"] = macs
    return config


def _write_form(name: str, model: nn.Module, folder: Path, inputs: list[Tensor],
                spec: dict[str, Any]) -> dict[str, Any]:
    if name == "timm":
        return write_timm(model, folder, inputs, spec)
    if name == "torchscript":
        return write_torchscript(model, folder, inputs)
    return write_onnx(model, folder, inputs)


def _enforce(name: str, entry: dict[str, Any], tolerance: float) -> None:
    difference = entry["check"].get("max_abs_diff")
    if difference is not None and not difference <= tolerance:  # NaN fails too
        raise ExportError(f"{name}: {entry['file']} differs from the PyTorch model by {difference:.3g} "
                          f"(tolerance {tolerance:g}); nothing was written")


def __getattr__(name: str) -> Any:  # the verb's old name (export), for one release
    from vitnas._moved import moved_attribute

    return moved_attribute(__name__, name)

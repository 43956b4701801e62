"""`vitnas finetune DIR --out OUT`: retrain or fine-tune an exported model, and export the result.

NAS papers retrain the chosen network on its own (ViT-ResNAS retrains 300 epochs):
the supernet's shared weights are a starting point, not the end. `finetune_model` trains the
model of export folder DIR with `vitnas.train.standalone.train_standalone` (the supernet's
loop: recipe, AMP, EMA, DDP under ``torchrun``, checkpoints and exact resume), and
writes the result as an export folder ``OUT/export`` whose ``config.json`` records
where it came from, how it was trained and its final validation top-1.

Defaults come from DIR's provenance: the recipe is the one its supernet was trained
with (``config.json`` ``source.checkpoint``/recipe.yaml), so the data is the same too.
An explicit recipe is checked against DIR's training data (``source.data``) unless
`data` names the data. A new data set with another class count takes a new head
(`num_classes`: the rest of the weights stay, the head starts at the seeded
initialisation); without it, a class count that differs from the head is refused.

The run directory::

    OUT/finetune.json    what is fine-tuned, how (source folder, teacher, from scratch, classes)
    OUT/ckpt-*/, latest  checkpoints (`vitnas.train.checkpoint`, with model.json)
    OUT/metrics.jsonl    loss, learning rate, images/s, val_top1
    OUT/export/          the result: an export folder of the final weights (EMA weights if the recipe keeps an EMA)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from timm.layers import trunc_normal_
from torch import nn

from vitnas.data import DataConfig, parse_data
from vitnas.errors import ExportError
from vitnas.export.extract import extract
from vitnas.export.load import load
from vitnas.export.metadata import input_spec
from vitnas.export.schema import CONFIG_FILE, read_config
from vitnas.export.writer import TOLERANCE, check_settings, write_model_folder
from vitnas.nn.vit import ViT, ViTConfig
from vitnas.space.arch import Arch
from vitnas.train.checkpoint import MODEL_FILE, CheckpointError, latest_checkpoint, load_checkpoint, load_supernet
from vitnas.train.recipe import Recipe, RecipeError, load_recipe
from vitnas.train.rundir import TRAINING_FILES, check_same, continues, read_settings, start_over, stored_recipe
from vitnas.train.standalone import train_standalone
from vitnas.util.atomic import prepare_directory, staged_folder, write_text_atomically
from vitnas.util.fields import require_int

__all__ = ["EXPORT_FOLDER", "RECORD_FILE", "finetune_model"]

log = logging.getLogger(__name__)

EXPORT_FOLDER = "export"  # OUT/export: the fine-tuned model's export folder
RECORD_FILE = "finetune.json"  # OUT/finetune.json: what the run fine-tunes, read again on resume
FINETUNE_FILES = (*TRAINING_FILES, RECORD_FILE, EXPORT_FOLDER)  # what --fresh deletes
SPLIT = "val"  # the split the final top-1 is measured on (never trained on)


@dataclasses.dataclass(frozen=True)
class _Record:
    """What a fine-tuning run trains, fixed at its start and read back on resume."""

    source: str  # the export folder fine-tuned
    teacher: str | None  # supernet checkpoint folder whose largest sub-network teaches; None: labels
    from_scratch: bool  # weights re-initialised before training
    num_classes: int  # head size trained (differs from the source's with a new head)


def finetune_model(
    folder: str | Path,
    out: str | Path,
    *,
    data: str | Path | DataConfig | None = None,
    recipe: str | Path | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    resume: bool | None = None,
    fresh: bool = False,
    teacher: str | Path | None = None,
    from_scratch: bool = False,
    num_classes: int | None = None,
    formats: Sequence[str] = ("safetensors",),
    latency_batches: Sequence[int] = (1, 64),
    device: str | None = None,
) -> dict[str, Any]:
    """Trains the model of export folder `folder` standalone and writes the result to ``out/export``.

    Args:
        folder: an export folder (`vitnas export --out`).
        out: run directory (see the module docstring).
        data: training data ("digits", "cifar10:/path", an ImageFolder root, or a DataConfig);
            default: the recipe's.
        recipe: recipe file, shipped name or dict; default: the recipe of the supernet `folder`
            was exported from. Its ``space`` and ``sampler`` do not apply (one network trains).
        overrides: ``key=value`` recipe overrides, e.g. ``epochs=5 optimizer.lr=1e-4``.
        resume: None (default): continue the run in `out` if it holds one, else start
            (`vitnas.train.rundir`: every setting, the recipe with `data` and `overrides`
            included, must be the one it began with; `overrides` apply to the stored recipe,
            e.g. ``epochs=`` extends it). True (the old ``--resume``): `out` must hold a run,
            which continues with its stored recipe (`recipe` and `data` are not read) and only
            the settings named here are checked. False: `out` must not hold a run. A
            finished run only has its export written again.
        fresh: delete the run's files in `out` (once every setting has been checked) and start over.
        teacher: a supernet run or checkpoint: distil from its largest sub-network's soft labels.
        from_scratch: re-initialise the weights first (stand-alone retraining of the arch).
        num_classes: train a new head of this many classes (for data with other classes).
        formats: export forms besides safetensors: ``timm``, ``torchscript``, ``onnx``.
        latency_batches: batch sizes timed at export (empty: not timed).
        device: where to time the export (default: cuda when present, else cpu).

    Returns:
        The final metrics (``epoch``, ``step``, ``val_top1``) and ``export``, the export folder.

    Raises:
        ExportError: `folder` is missing or not a readable export folder (`vitnas.load`'s errors).
        RecipeError: `out` holds a run of other settings (any run, with ``resume=False``; none,
            with ``resume=True``), no recipe can be found, a malformed recipe or override,
            data with another class count than the head.
        CheckpointError: a bad teacher, or a damaged run in `out`.
        DataError: the data cannot be found or read. All are one line.
    """
    folder, out = Path(folder), Path(out)
    check_settings(formats, latency_batches, TOLERANCE)
    source = _Source.read(folder)
    _check_classes(num_classes)
    given = _Record(str(folder.resolve()), _teacher_folder(teacher), from_scratch,
                    num_classes or source.model.config.num_classes)
    continuing = not fresh and continues(out, ("latest", EXPORT_FOLDER), resume, RecipeError, "a fine-tuning run")
    record, config = given, None
    if continuing:
        record = _stored_record(out, given, _named_settings(teacher, from_scratch, num_classes) if resume else None)
        if not resume:  # the old --resume continued with the stored recipe, unchecked
            check_same(_recipe(source, recipe, data, overrides).to_dict(), stored_recipe(out, overrides).to_dict(),
                       out, RecipeError)
    else:
        config = _recipe(source, recipe, data, overrides)
        if fresh:  # only now: a bad setting must not cost the run it would replace (every rank: none sees it after)
            start_over(out, FINETUNE_FILES)
        if _rank() == 0:
            prepare_directory(out, "--out", CheckpointError)
            write_text_atomically(out / RECORD_FILE, json.dumps(dataclasses.asdict(record), indent=1) + "\n",
                                  CheckpointError)
    start = dataclasses.replace(source.model.config, num_classes=record.num_classes) if config is None else \
        _starting_model(source.model, record, config.seed)  # a continued run's weights come from its checkpoint
    metrics = train_standalone(start, config, out, resume=continuing,
                               overrides=overrides if continuing else (),  # a new run's config holds them
                               teacher=_teacher_model(record.teacher), image_size=source.image_size)
    if _rank() == 0:
        _write_export(out, source, record, formats, latency_batches, device)
    return {**metrics, "export": str(out / EXPORT_FOLDER)}


@dataclasses.dataclass(frozen=True)
class _Source:
    """The export folder fine-tuned: its model and what its config.json says, checked before any training."""

    folder: Path
    model: ViT
    config: dict[str, Any]
    arch: Arch | None
    image_size: int  # side of the images it takes (its data's; a resized-input model resizes inside)
    in_chans: int
    macs: int

    @classmethod
    def read(cls, folder: Path) -> _Source:
        model = load(folder)  # every way a folder can be bad is one ExportError line
        config = read_config(folder)
        spec, macs = config.get("input") or {}, config.get("macs")
        require_int(f"{folder / CONFIG_FILE}: macs", macs, ExportError, low=0, what="an integer")
        arch = Arch.from_dict(config["arch"]) if config.get("arch") else None
        return cls(folder, model, config, arch, spec.get("image_size", model.config.img_size),
                   spec.get("in_chans", model.config.in_chans), macs)


def _rank() -> int:
    """This process's rank under ``torchrun`` (0 alone): only rank 0 writes the record and the export."""
    return int(os.environ.get("RANK", "0"))


def _check_classes(num_classes: int | None) -> None:
    require_int("num_classes", num_classes, RecipeError, optional=True, what="a positive integer")


def _named_settings(teacher: str | Path | None, from_scratch: bool, num_classes: int | None) -> set[str]:
    """The record fields a call names (the old ``--resume`` checked only these): unnamed ones are the run's."""
    named = {"source"}
    named |= {"teacher"} if teacher is not None else set()
    named |= {"from_scratch"} if from_scratch else set()
    return named | ({"num_classes"} if num_classes is not None else set())


def _stored_record(out: Path, given: _Record, named: set[str] | None) -> _Record:
    """The record of the run in `out`; the settings of this call (only those `named`, if given) must agree with it."""
    latest_checkpoint(out)  # no run: one CheckpointError line
    path = out / RECORD_FILE
    try:
        record = _Record(**read_settings(path, CheckpointError, "a fine-tuning run"))
    except TypeError as error:
        raise CheckpointError(f"{path}: cannot be read ({error}); is {out} a fine-tuning run?") from None
    mine, theirs = dataclasses.asdict(given), dataclasses.asdict(record)
    if named is not None:
        mine = {key: value for key, value in mine.items() if key in named}
    check_same(mine, {key: theirs[key] for key in mine}, out, RecipeError)
    return record


def _recipe(source: _Source, recipe: str | Path | Mapping[str, Any] | None, data: str | Path | DataConfig | None,
            overrides: Sequence[str]) -> Recipe:
    """The recipe of a new run: `recipe`, else the source supernet's; `data` replaces its data."""
    provenance = source.config.get("source") or {}
    if recipe is None:  # the supernet's own recipe: its data is the model's training data
        checkpoint = provenance.get("checkpoint")
        try:
            config = stored_recipe(Path(checkpoint), overrides) if checkpoint else None
        except CheckpointError:
            config = None
        if config is None:
            raise RecipeError(f"{source.folder}: no recipe to reuse (config.json source.checkpoint {checkpoint!r} "
                              "holds no recipe.yaml); pass --recipe")
    else:
        config = load_recipe(recipe, overrides)
    if data is not None:
        return dataclasses.replace(config, data=parse_data(str(data) if isinstance(data, Path) else data))
    trained_on = provenance.get("data")
    if recipe is not None and trained_on and config.data.name != trained_on:  # another recipe's data by mistake?
        raise RecipeError(f"data: the recipe trains on {config.data.name} but {source.folder} was trained on "
                          f"{trained_on}; pass --data to choose")
    return config


def _starting_model(model: ViT, record: _Record, seed: int) -> ViT | ViTConfig:
    """The exported model, with a new seeded head if the class count changes; a config alone from scratch."""
    config = dataclasses.replace(model.config, num_classes=record.num_classes)
    if record.from_scratch:
        return config  # train_standalone initialises it, seeded by the recipe
    if record.num_classes == model.config.num_classes:
        return model
    log.info("new head: %d classes (the exported model has %d)", record.num_classes, model.config.num_classes)
    fresh = ViT(config)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    fresh.load_state_dict(state, strict=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunc_normal_(fresh.head.weight, std=0.02)  # as the supernet initialises its head
    nn.init.zeros_(fresh.head.bias)
    return fresh


def _teacher_folder(teacher: str | Path | None) -> str | None:
    """The checkpoint folder a teacher path names (a run's latest), checked to exist."""
    return str(latest_checkpoint(Path(teacher)).resolve()) if teacher is not None else None


def _teacher_model(teacher: str | None) -> ViT | None:
    """The largest sub-network of the teacher supernet, extracted: plain ViT, same outputs, no slicing per step."""
    if teacher is None:
        return None
    supernet, space = load_supernet(teacher)
    return extract(supernet, space.largest()).eval()


def _write_export(out: Path, source: _Source, record: _Record, formats: Sequence[str],
                  latency_batches: Sequence[int], device: str | None) -> Path:
    """OUT/export from the run's last checkpoint (its EMA weights if it keeps them), replaced atomically."""
    loaded = load_checkpoint(out)
    model = ViT(ViTConfig.from_dict(loaded["model_config"], where=f"{loaded['folder']}/{MODEL_FILE}"))
    model.load_state_dict(loaded["ema"] if loaded["ema"] is not None else loaded["model"], strict=True)
    recipe, meta = loaded["recipe"], loaded["meta"]
    extra = {"search": source.config["search"]} if "search" in source.config else {}
    extra["finetune"] = _provenance(out, loaded, record)
    head_change = model.config.stages[-1].embed_dim * (record.num_classes - source.model.config.num_classes)
    with staged_folder(out / EXPORT_FOLDER, True, ExportError) as staging:
        write_model_folder(
            model.eval(), staging, arch=source.arch, name=source.config.get("name"), data=recipe.data,
            input=input_spec(recipe.data, source.image_size, source.in_chans), source=source.config.get("source"),
            macs=source.macs + head_change, extra=extra, formats=formats, latency_batches=latency_batches,
            device=device,
        )
    log.info("fine-tuned %s for %d epochs: %s top-1 %.4f; export %s", record.source, meta["epoch"], SPLIT,
             meta["metrics"].get("val_top1", float("nan")), out / EXPORT_FOLDER)
    return out / EXPORT_FOLDER


def _provenance(out: Path, loaded: dict[str, Any], record: _Record) -> dict[str, Any]:
    """config.json's ``finetune``: where the weights came from, how they were trained, how well they score."""
    recipe, meta = loaded["recipe"], loaded["meta"]
    return {
        "from": record.source, "run": str(out.resolve()), "checkpoint": str(Path(loaded["folder"]).resolve()),
        "epochs": meta["epoch"], "steps": meta["step"], "data": recipe.data.name, "teacher": record.teacher,
        "from_scratch": record.from_scratch, "ema": loaded["ema"] is not None, "split": SPLIT,
        "val_top1": meta["metrics"].get("val_top1"), "recipe": recipe.to_dict(),
    }


def __getattr__(name: str) -> Any:  # the verb's old name (finetune), for one release
    from vitnas._moved import moved_attribute

    return moved_attribute(__name__, name)

"""Writing an elastic bundle: every budget of a search's best.json as operating points of one weight envelope.

The format is described in `vitnas.export.elastic`, which reads it; this module builds the
envelope (`vitnas.export.envelope`), writes it with config.json and a model card in one
staged folder, and reads every point back both ways (plain and switched) against its
extracted model before the folder is renamed into place.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from safetensors.torch import save as serialise
from safetensors.torch import save_file
from torch import Tensor

from vitnas.errors import ExportError
from vitnas.export.card import elastic_model_card
from vitnas.export.envelope import build_envelope
from vitnas.export.extract import extract
from vitnas.export.forms import check_inputs, max_difference
from vitnas.export.load import load
from vitnas.export.metadata import class_names, input_spec
from vitnas.export.schema import CONFIG_FILE, ELASTIC, FORMAT, FORMAT_VERSION, WEIGHTS_FILE, file_entry, write_json
from vitnas.export.targets import Target, read_targets
from vitnas.export.timing import measure_latency
from vitnas.nn.vit import ViT, ViTConfig
from vitnas.space.arch import Arch
from vitnas.util.atomic import staged_folder

if TYPE_CHECKING:
    from vitnas.data import DataConfig
    from vitnas.space.space import SearchSpace
    from vitnas.supernet.supernet import SuperViT

__all__ = ["bundle_targets", "check_bundle_request", "envelope_summary", "size_report", "write_bundle"]

logger = logging.getLogger(__name__)

_SERIALISED = {"format": "pt"}  # safetensors metadata, as plain exports write it


def check_bundle_request(formats: Sequence[str], budget: str | None) -> None:
    """Refuses, before any work, what an elastic export cannot do.

    Raises:
        ExportError: another form asked for with it (TorchScript, ONNX and timm forms
            hold one fixed model each), or a `budget` (a bundle holds every budget).
    """
    others = [name for name in formats if name not in ("safetensors", ELASTIC)]
    if others:
        raise ExportError(f"elastic: cannot be combined with {', '.join(others)}: those forms hold one fixed model "
                          "each; export a point on its own (--budget NAME) for them")
    if budget is not None:
        raise ExportError(f"elastic: a bundle holds every budget of best.json; drop --budget {budget}")


def bundle_targets(source: str | Path | Arch, space: SearchSpace) -> list[Target]:
    """Every budget's choice of a search's best.json: the points of a bundle.

    Raises:
        ExportError: `source` is one arch, a plain arch file, or a best.json with one
            budget or with a name used twice. `ArchError` for an arch outside `space`.
    """
    if isinstance(source, Arch):
        raise ExportError("elastic: one arch given; a bundle holds several: export from a search's best.json "
                          "with two or more budgets")
    try:
        targets = read_targets(source, space, all_budgets=True)
    except ExportError:  # read_targets takes several archs only from a best.json
        raise ExportError(f"elastic: {source}: expected a search's best.json (a bundle holds one point per "
                          "budget)") from None
    if len(targets) < 2:
        raise ExportError(f"elastic: {source} holds one budget; a bundle needs two or more (export it without "
                          "--format elastic)")
    names = [target.name for target in targets]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise ExportError(f"elastic: {source}: budget name {repeated!r} appears twice; points are named after budgets")
    return targets


def write_bundle(
    supernet: SuperViT,
    targets: Sequence[Target],
    out: str | Path,
    *,
    overwrite: bool = False,
    data: DataConfig | None = None,
    source: Mapping[str, Any] | None = None,
    latency_batches: Sequence[int] = (),
    device: str = "cpu",
    tolerance: float = 1e-4,
) -> Path:
    """Writes an elastic bundle of `targets` (see the module docstring for its contents) at `out`.

    Args:
        supernet: the supernet the points are slices of.
        targets: the points, each named (their budgets' names); see `bundle_targets`.
        out: the folder to write, built beside it and renamed into place.
        overwrite: replace an existing `out` (atomically); otherwise it is refused.
        data: the supernet's training data, for normalisation and class names.
        source: provenance for config.json (space, checkpoint, EMA, data).
        latency_batches: batch sizes to time each point at (empty: do not time).
        device: where to time.
        tolerance: largest absolute logit difference a loaded point may show against its extracted model.

    Returns:
        `out`.

    Raises:
        ExportError: fewer than two or unnamed points, an existing `out`, or a loaded
            point that differs from its extracted model by more than `tolerance`.
    """
    if len(targets) < 2 or any(not target.name for target in targets):
        raise ExportError("elastic: a bundle needs two or more named points (a search's best.json names them)")

    out = Path(out)
    models = {target.name: extract(supernet, target.arch).to(device="cpu", dtype=torch.float32).eval()
              for target in targets}
    states = {name: {key: value.contiguous() for key, value in model.state_dict().items()}
              for name, model in models.items()}
    envelope = build_envelope({name: (models[name].config, states[name]) for name in models})
    with staged_folder(out, overwrite, ExportError) as folder:
        save_file(envelope, str(folder / WEIGHTS_FILE), metadata=_SERIALISED)
        config = _bundle_config(supernet, targets, models, envelope, data, source)
        config["weights"] = file_entry(folder / WEIGHTS_FILE)
        write_json(folder / CONFIG_FILE, config)  # load reads it just below
        _check_points(folder, config, models, tolerance)
        for entry in config["points"]:
            entry["latency"] = measure_latency(models[entry["name"]], tuple(latency_batches), device,
                                               config["input"]["image_size"])
        config["size"] = size_report(config["weights"]["bytes"], states, envelope)
        write_json(folder / CONFIG_FILE, config)
        (folder / "README.md").write_text(elastic_model_card(config, tolerance), encoding="utf-8")
    logger.info("exported an elastic bundle of %d points to %s", len(targets), out)
    return out


def _bundle_config(supernet: SuperViT, targets: Sequence[Target], models: Mapping[str, ViT],
                   envelope: Mapping[str, Tensor], data: DataConfig | None,
                   source: Mapping[str, Any] | None) -> dict[str, Any]:
    """config.json before the checks: what the bundle holds, what it takes, where it came from."""
    from vitnas import __version__
    from vitnas.space.cost import count_macs  # imports the search space: writing needs it, loading must not

    space, num_classes = supernet.space, supernet.num_classes
    config: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": ELASTIC, "created_by": f"vitnas {__version__}",
        "torch_version": torch.__version__, "input": input_spec(data, space.img_size, space.in_chans),
        "num_classes": num_classes,
    }
    names = class_names(data, num_classes)
    if names is not None:
        config["class_names"] = names
    config["source"] = dict(source) if source is not None else {"space": space.name, "checkpoint": None,
                                                                  "ema": False, "data": data.name if data else None}
    config["envelope"] = {**envelope_summary({name: model.config for name, model in models.items()}),
                          "params": sum(tensor.numel() for tensor in envelope.values())}
    config["points"] = []
    for target in targets:
        model = models[target.name]
        entry = {"name": target.name, "arch": target.arch.to_dict(), "model": model.config.to_dict(),
                 "params": sum(p.numel() for p in model.parameters()),
                 "macs": count_macs(space, target.arch, num_classes)}
        if target.record is not None:
            entry["search"] = target.record
        config["points"].append(entry)
    return config


def envelope_summary(points: Mapping[str, ViTConfig]) -> dict[str, Any]:
    """The envelope's model config in words a reader can check: per stage its depth and widths, per block its widths."""
    configs = list(points.values())
    stages = []
    for index in range(max(len(config.stages) for config in configs)):
        present = [config.stages[index] for config in configs if index < len(config.stages)]
        depth = max(len(stage.blocks) for stage in present)
        blocks = []
        for number in range(depth):
            used = [stage.blocks[number] for stage in present if number < len(stage.blocks)]
            blocks.append({"attn_dim": max(b.num_heads * b.head_dim for b in used),
                           "mlp_hidden": max(b.mlp_hidden for b in used)})
        stages.append({"depth": depth, "embed_dim": max(stage.embed_dim for stage in present),
                       "grids": sorted({stage.grid for stage in present}), "blocks": blocks})
    return {"patch_sizes": sorted({config.patch_size for config in configs}),
            "img_sizes": sorted({config.img_size for config in configs}), "in_chans": configs[0].in_chans,
            "num_classes": configs[0].num_classes, "stages": stages}


def _check_points(folder: Path, config: dict[str, Any], models: Mapping[str, ViT], tolerance: float) -> None:
    """Each point read back both ways (plain and switched) against its extracted model; a miss fails the export."""
    inputs = check_inputs(config["input"]["image_size"], config["input"]["in_chans"])
    switchable = load(folder)
    for entry in config["points"]:
        name = entry["name"]
        differences = {"plain_max_abs_diff": max_difference(load(folder, point=name), models[name], inputs),
                       "switched_max_abs_diff": max_difference(switchable.use(name), models[name], inputs)}
        entry["check"] = {"runtime": f"torch {torch.__version__} (vitnas.load)",
                          "batches": [x.shape[0] for x in inputs], **differences}
        for how, difference in differences.items():
            if not difference <= tolerance:  # NaN fails too
                raise ExportError(f"elastic: point {name!r} loaded {how.split('_')[0]} differs from its extracted "
                                  f"model by {difference:.3g} (tolerance {tolerance:g}); nothing was written")


def size_report(bundle_bytes: int, states: Mapping[str, Mapping[str, Tensor]],
                envelope: Mapping[str, Tensor]) -> dict[str, Any]:
    """The bundle's weight file against the separate exports', each point's weights really serialised."""
    separate = {name: len(serialise(dict(state), metadata=_SERIALISED)) for name, state in states.items()}
    total = sum(separate.values())
    return {
        "bundle_bytes": bundle_bytes,
        "separate_bytes": separate,
        "separate_total_bytes": total,
        "bundle_fraction": bundle_bytes / total,
        "envelope_params": sum(tensor.numel() for tensor in envelope.values()),
        "separate_total_params": sum(t.numel() for state in states.values() for t in state.values()),
        "method": "separate_bytes: each point's state dict serialised with safetensors, as a plain export "
                  "writes its model.safetensors",
    }

"""The elastic bundle: one weight envelope, several named operating points, switchable at run time.

SuperViT's promise is one model that serves several costs as the hardware allows. A
search's ``best.json`` names one sub-network per budget, and because the supernet
slices its weights first-k (the first k blocks, channels and heads of every stored
tensor), every chosen sub-network is a slice of the smallest set of tensors that holds
them all: per tensor, the largest extent any point needs (the deepest point's blocks,
the widest point's embed dim, and per block the most heads and the widest MLP).
``vitnas export --format elastic`` writes that envelope once as ``model.safetensors``
and lists the operating points, named after their budgets, in ``config.json``.

What the envelope stores, by the plain model's (`vitnas.nn.vit.ViT`) tensor names:

- every tensor at its envelope shape; a point's tensor is its leading slice in every
  dimension, except the fused q/k/v projection, whose q, k and v row blocks are cut
  apart (``[:, :a, :d]`` of its (3, A, D) view), as `vitnas.nn.slicing.slice_qkv` cuts them;
- weights the supernet derives by resampling, as derived: the patch kernel once per
  patch size (``patch_embed.proj.weight@patch16``: FlexiViT spaces PI-resample one
  stored kernel) and each stage's position table once per token grid
  (``stages.0.pos_embed@grid14``: bicubic resampling, or one table per grid in resize
  spaces). Both resamplings act on each channel alone, so a narrower point's tensor
  is the leading slice of a wider one's. Storing them derived costs a kernel per patch
  size and a table per grid, and makes loading need no resampling code;
- zeros where no point reads (a corner one point needs on one axis and another point
  on the other).

The writer checks bit for bit that every point's slice of the envelope equals the
tensor `vitnas.extract` gives it, and runs each point loaded both ways against its
extracted model; ``vitnas.load`` checks that the points fit the envelope.

Loading: ``vitnas.load(DIR, point=NAME)`` copies one point's slices into a plain `ViT`
(the model a separate export of that budget gives). ``vitnas.load(DIR)`` returns an
`ElasticViT`: it holds the envelope once, and each point runs a plain `ViT` whose
parameters are views into it, built when the point first runs and kept, so a switch
is a dictionary lookup. One exception: a point's q, k and v rows are three strided
blocks of the envelope, one strided view only where the point uses the block's full
attention width; elsewhere that fused (3a, d) weight is gathered once into a tensor
of the point's own. So the memory beyond the envelope is the narrower points' q/k/v
projections (DeiT-Ti, -S and -B at patch 16: 6.7 M parameters beside an 86.6 M
envelope), and the running models are ordinary `ViT`s whatever their forward reads.

Forms: TorchScript, ONNX and timm forms each hold one fixed model, so ``--format
elastic`` refuses them in one line; export a point alone (``--budget NAME``) for those.

Size: config.json's ``size`` sets the bundle file against the separate exports'
weight files, each point's state dict serialised as a plain export writes it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from safetensors.torch import save as serialise
from safetensors.torch import save_file
from torch import Tensor, nn

from vitnas.space.arch import Arch
from vitnas.util.atomic import staged_folder
from vitnas.errors import ExportError
from vitnas.export.card import elastic_model_card
from vitnas.export.extract import extract
from vitnas.export.forms import check_inputs, max_difference
from vitnas.export.load import load, read_weights
from vitnas.export.metadata import class_names, input_spec
from vitnas.export.schema import CONFIG_FILE, ELASTIC, FORMAT, FORMAT_VERSION, WEIGHTS_FILE, file_entry, weights_entry
from vitnas.export.targets import Target, read_targets
from vitnas.nn.vit import ViT, ViTConfig

if TYPE_CHECKING:
    from vitnas.data import DataConfig
    from vitnas.space.space import SearchSpace
    from vitnas.supernet.supernet import SuperViT

__all__ = [
    "ElasticViT",
    "build_envelope",
    "bundle_targets",
    "check_bundle_request",
    "check_envelope",
    "envelope_key",
    "envelope_shapes",
    "load_bundle",
    "point_model",
    "write_bundle",
]

logger = logging.getLogger(__name__)

PATCH_KERNEL = "patch_embed.proj.weight"  # derived per patch size in FlexiViT spaces
_QKV = ("attn.qkv.weight", "attn.qkv.bias")  # fused [q; k; v] rows: sliced per block of rows
_SERIALISED = {"format": "pt"}  # safetensors metadata, as plain exports write it


# -- the envelope ----------------------------------------------------------------------------------


def envelope_key(name: str, config: ViTConfig) -> str:
    """The envelope tensor that point tensor `name` of a model with `config` is a slice of.

    Tensors derived by resampling are kept per shape that needs them: the patch kernel
    per patch size, a stage's position table per token grid. Every other tensor keeps its name.
    """
    if name == PATCH_KERNEL:
        return f"{name}@patch{config.patch_size}"
    if name.startswith("stages.") and name.endswith(".pos_embed"):
        stage = int(name.split(".")[1])
        return f"{name}@grid{config.stages[stage].grid}"
    return name


def point_shapes(config: ViTConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a point's tensors, read off a `ViT` built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = ViT(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def envelope_shapes(points: Mapping[str, ViTConfig]) -> dict[str, tuple[int, ...]]:
    """The smallest envelope holding every point: per envelope tensor, the largest extent of each dimension."""
    shapes: dict[str, tuple[int, ...]] = {}
    for config in points.values():
        for name, shape in point_shapes(config).items():
            key = envelope_key(name, config)
            shapes[key] = tuple(map(max, shapes.get(key, shape), shape))
    return shapes


def envelope_slice(stored: Tensor, name: str, shape: Sequence[int]) -> Tensor:
    """Point tensor `name` of `shape` as a view of its envelope tensor `stored`.

    The view is the leading slice in every dimension; for the fused q/k/v projection it
    is (3, a, ...), each of the q, k and v row blocks cut to its first a rows
    (`as_point_tensor` makes it (3a, ...)).
    """
    if name.endswith(_QKV):
        blocks = stored.view(3, stored.shape[0] // 3, *stored.shape[1:])
        return blocks[(slice(None), slice(0, shape[0] // 3), *(slice(0, n) for n in shape[1:]))]
    return stored[tuple(slice(0, n) for n in shape)]


def as_point_tensor(view: Tensor, name: str, shape: Sequence[int]) -> Tensor:
    """An `envelope_slice` in the point's own shape (gathering the q/k/v blocks where they are apart)."""
    return view.reshape(shape) if name.endswith(_QKV) else view


def _fits(stored: Sequence[int], name: str, shape: Sequence[int]) -> bool:
    if len(stored) != len(shape):
        return False
    if name.endswith(_QKV):
        if stored[0] % 3 or shape[0] % 3:
            return False
        stored, shape = (stored[0] // 3, *stored[1:]), (shape[0] // 3, *shape[1:])
    return all(need <= have for need, have in zip(shape, stored))


def check_envelope(shapes: Mapping[str, Sequence[int]], points: Mapping[str, ViTConfig], where: str) -> None:
    """Every point fits the envelope, and the envelope is exactly the smallest one holding them.

    Args:
        shapes: the envelope tensors' shapes, by name.
        points: each point's model config.
        where: how errors name the envelope (a file, or the object).

    Raises:
        ExportError: one line naming the point and tensor that does not fit, or an
            envelope tensor that no point uses or that is larger than the points need.
    """
    for point, config in points.items():
        for name, shape in point_shapes(config).items():
            key = envelope_key(name, config)
            if key not in shapes:
                raise ExportError(f"{where}: point {point!r} does not fit the envelope: it needs tensor {key!r}, "
                                  "which the envelope lacks")
            if not _fits(tuple(shapes[key]), name, shape):
                raise ExportError(f"{where}: point {point!r} does not fit the envelope: its {name} is "
                                  f"{list(shape)}, tensor {key!r} holds {list(shapes[key])}")
    needed = envelope_shapes(points)
    for key, shape in sorted(shapes.items()):
        if key not in needed:
            raise ExportError(f"{where}: holds tensor {key!r} that no point uses")
        if tuple(shape) != needed[key]:
            raise ExportError(f"{where}: tensor {key!r} has shape {list(shape)}; its points need {list(needed[key])} "
                              "(the smallest envelope holding them)")


def build_envelope(points: Mapping[str, tuple[ViTConfig, Mapping[str, Tensor]]]) -> dict[str, Tensor]:
    """The smallest set of tensors holding every point's weights as leading slices.

    Args:
        points: per point name, its model config and its weights (as `vitnas.extract` gives them).

    Raises:
        ExportError: a point's weight differs from the slice the other points share (the
            points do not come from one supernet's first-k slices).
    """
    configs = {name: config for name, (config, _) in points.items()}
    reference = next(iter(next(iter(points.values()))[1].values()))
    envelope = {key: torch.zeros(shape, dtype=reference.dtype, device=reference.device)
                for key, shape in envelope_shapes(configs).items()}
    for config, state in points.values():
        for name, tensor in state.items():
            view = envelope_slice(envelope[envelope_key(name, config)], name, tensor.shape)
            view.copy_(tensor.view(view.shape))
    for point, (config, state) in points.items():
        for name, tensor in state.items():
            stored = as_point_tensor(envelope_slice(envelope[envelope_key(name, config)], name, tensor.shape), name,
                                     tensor.shape)
            if not torch.equal(stored, tensor):
                difference = (stored.float() - tensor.float()).abs().max().item()
                raise ExportError(f"elastic: point {point!r}: {name} differs by {difference:.3g} from the slice the "
                                  "other points share; the points must be first-k slices of one supernet")
    return envelope


def point_model(envelope: Mapping[str, Tensor], config: ViTConfig) -> ViT:
    """One point as a plain `ViT` with its own contiguous copies: the model a separate export of it loads.

    The envelope must hold the point (see `check_envelope`); the model is in eval mode,
    on the envelope's device.
    """
    state = {}
    for name, shape in point_shapes(config).items():
        view = envelope_slice(envelope[envelope_key(name, config)], name, shape)
        state[name] = as_point_tensor(view, name, shape).clone(memory_format=torch.contiguous_format)
    with torch.device("meta"):
        model = ViT(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


# -- switching at run time -------------------------------------------------------------------------


def _view_model(envelope: Mapping[str, Tensor], config: ViTConfig) -> ViT:
    """One point as a `ViT` whose parameters are views of the envelope.

    The exception is a q/k/v projection narrower than the envelope's: its three row
    blocks are not one strided view, so `reshape` gathers them into a tensor of its own.
    """
    with torch.device("meta"):
        model = ViT(config)
    for name, meta in model.state_dict().items():
        shape = tuple(meta.shape)
        tensor = as_point_tensor(envelope_slice(envelope[envelope_key(name, config)], name, shape), name, shape)
        owner, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(owner), attribute, nn.Parameter(tensor, requires_grad=False))
    left = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if left:
        raise ExportError(f"elastic: {left[0]!r} of the point model is not a tensor the envelope holds")
    return model


class ElasticViT(nn.Module):
    """The operating points of an elastic bundle over one shared weight envelope.

    `forward` runs the active point; `use` switches to another without reloading or
    copying weights: each point runs a plain `ViT` whose parameters are views of the
    envelope (see the module docstring for the q/k/v exception), built when it first
    runs and kept. `plain` copies a point out as a standalone `ViT` of its own (for
    fine-tuning, TorchScript, ONNX).
    The envelope tensors are the module's parameters (``requires_grad=False``: this is
    an inference object); moving or casting the module moves them once and rebuilds the views.

    Usage::

        model = vitnas.load("bundle")           # the first point is active
        model.use("latency_ms<=4")(images)      # switch, then run
        model.points                            # ('latency_ms<=8', 'latency_ms<=4', ...)

    Args:
        envelope: the envelope tensors, by their names in the bundle file.
        points: each point's model config, by name; the first is active at the start.

    Raises:
        ExportError: no points, or a point that does not fit the envelope.
    """

    def __init__(self, envelope: Mapping[str, Tensor], points: Mapping[str, ViTConfig]) -> None:
        super().__init__()
        if not points:
            raise ExportError("ElasticViT: needs at least one operating point")
        check_envelope({key: tuple(tensor.shape) for key, tensor in envelope.items()}, points, "ElasticViT")
        self._names = {key: key.replace(".", "/") for key in envelope}  # ParameterDict keys may not hold dots
        self.envelope = nn.ParameterDict(
            {self._names[key]: nn.Parameter(tensor, requires_grad=False) for key, tensor in envelope.items()})
        self._configs = dict(points)
        self._point = next(iter(points))
        self._running: dict[str, ViT] = {}  # point -> its view model; not submodules, so .to() moves the
        # envelope once and the views are rebuilt on the moved tensors

    @property
    def points(self) -> tuple[str, ...]:
        """The operating points' names (their budgets' names in best.json), in bundle order."""
        return tuple(self._configs)

    @property
    def point(self) -> str:
        """The active operating point."""
        return self._point

    @property
    def config(self) -> ViTConfig:
        """The active point's model config (tools that read ``model.config.img_size`` see the running model)."""
        return self._configs[self._point]

    def point_config(self, name: str) -> ViTConfig:
        return self._configs[self._known(name)]

    def use(self, name: str) -> ElasticViT:
        """Makes `name` the active point and returns the module (so ``model.use(name)(x)`` reads naturally).

        Raises:
            ExportError: `name` is not a point of the bundle (the message lists them).
        """
        self._point = self._known(name)
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the active point for images (B, C, H, W)."""
        return self.running_model()(x)

    def running_model(self, name: str | None = None) -> ViT:
        """The `ViT` a point runs (default: the active one), its parameters views of the envelope.

        It shares the envelope's memory: edit it and every point sees the change. Use
        `plain` for a copy of one's own.
        """
        name = self._point if name is None else self._known(name)
        if name not in self._running:
            self._running[name] = _view_model(self.envelope_tensors(), self._configs[name]).train(self.training)
        return self._running[name]

    def plain(self, name: str | None = None) -> ViT:
        """A point (default: the active one) as a standalone `ViT` with copied weights, in eval mode."""
        name = self._point if name is None else self._known(name)
        return point_model(self.envelope_tensors(), self._configs[name])

    def envelope_tensors(self) -> dict[str, Tensor]:
        """The envelope tensors by their names in the bundle file (the module's own, not copies)."""
        return {key: self.envelope[attribute] for key, attribute in self._names.items()}

    def train(self, mode: bool = True) -> ElasticViT:
        super().train(mode)
        for model in self._running.values():
            model.train(mode)
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> ElasticViT:
        self._running.clear()  # views of the tensors being replaced; rebuilt on the new ones at next use
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return f"points={list(self.points)}, point={self.point!r}"

    def _known(self, name: str) -> str:
        if name not in self._configs:
            raise ExportError(f"no operating point {name!r}; the bundle holds {', '.join(map(repr, self.points))}")
        return name


# -- loading ---------------------------------------------------------------------------------------


def load_bundle(folder: Path, config: dict[str, Any], device: str | torch.device = "cpu",
                point: str | None = None) -> ViT | ElasticViT:
    """An elastic bundle's `ElasticViT`, or with `point` that point as a plain `ViT`; in eval mode on `device`.

    `vitnas.load` calls this for folders whose config.json has ``"kind": "elastic"``,
    after `vitnas.export.schema.read_config` checked it.

    Raises:
        ExportError: one line: a bad ``points`` list, an unknown `point` (naming the
            known ones), weights truncated or modified, or points that do not fit the envelope.
    """
    path = folder / CONFIG_FILE
    points = read_points(config, path)
    if point is not None and point not in points:
        raise ExportError(f"{folder}: no operating point {point!r}; the bundle holds {', '.join(map(repr, points))}")
    envelope = read_weights(folder, config, path)
    weights_path = folder / weights_entry(config, path)[0]
    for key, tensor in envelope.items():
        if not tensor.is_floating_point():
            raise ExportError(f"{weights_path}: tensor {key!r} is {tensor.dtype}, expected floating point")
    check_envelope({key: tuple(tensor.shape) for key, tensor in envelope.items()}, points, str(weights_path))
    if point is not None:
        return point_model(envelope, points[point]).to(device)
    return ElasticViT(envelope, points).to(device).eval()


def read_points(config: dict[str, Any], path: Path) -> dict[str, ViTConfig]:
    """The ``points`` of a bundle's config.json: name -> model config, each field checked.

    Raises:
        ExportError: not a non-empty list of objects with a distinct ``name`` and a valid
            ``model``, or points that disagree on input channels or classes (they share those tensors).
    """
    entries = config["points"]
    if not isinstance(entries, list) or not entries:
        raise ExportError(f"{path}: points: expected a non-empty list, got {entries!r:.60}")
    points: dict[str, ViTConfig] = {}
    for index, entry in enumerate(entries):
        where = f"{path}: points[{index}]"
        if not isinstance(entry, dict):
            raise ExportError(f"{where}: expected an object, got {type(entry).__name__}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ExportError(f"{where}.name: expected a non-empty string, got {name!r}")
        if name in points:
            raise ExportError(f"{where}.name: {name!r} names two points")
        if "model" not in entry:
            raise ExportError(f"{where}: missing field 'model'")
        points[name] = ViTConfig.from_dict(entry["model"], where=f"{where}.model")
    first = next(iter(points.values()))
    for name, model in points.items():
        if (model.in_chans, model.num_classes) != (first.in_chans, first.num_classes):
            raise ExportError(f"{path}: point {name!r} takes {model.in_chans} channels and has {model.num_classes} "
                              f"classes, the first point {first.in_chans} and {first.num_classes}; points share those")
    return points


# -- writing ---------------------------------------------------------------------------------------


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
    from vitnas.export.writer import measure_latency, write_json  # the writer imports this module

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
    from vitnas.space.cost import count_flops  # imports the search space: writing needs it, loading must not

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
                 "macs": count_flops(space, target.arch, num_classes)}
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

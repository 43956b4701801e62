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

Code: this module reads and runs a bundle (`load_bundle`, `ElasticViT`) and needs only
`vitnas.nn`; the envelope arithmetic is `vitnas.export.envelope`, writing a bundle
`vitnas.export.bundle`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from vitnas.errors import ExportError
from vitnas.export.envelope import as_point_tensor, check_envelope, envelope_key, envelope_slice, point_model
from vitnas.export.schema import CONFIG_FILE, weights_entry
from vitnas.export.weights import read_weights
from vitnas.nn.vit import ViT, ViTConfig

__all__ = ["ElasticViT", "load_bundle", "read_points"]


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


def __getattr__(name: str) -> Any:  # the envelope arithmetic and the bundle writer left this module (one release)
    from vitnas._moved import moved_attribute

    return moved_attribute(__name__, name)

"""The weight envelope of an elastic bundle: pure shape and slice arithmetic over plain-`ViT` tensor names.

Per tensor, the envelope holds the largest extent any operating point needs, and a
point's tensor is its leading slice in every dimension but the fused q/k/v rows (see
`vitnas.export.elastic` for the whole format). The bundle writer (`vitnas.export.bundle`)
builds an envelope with `build_envelope`; the loader (`vitnas.export.elastic`) checks one
with `check_envelope` and cuts points out of it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from vitnas.errors import ExportError
from vitnas.nn.vit import ViT, ViTConfig

__all__ = ["PATCH_KERNEL", "as_point_tensor", "build_envelope", "check_envelope", "envelope_key", "envelope_shapes",
           "envelope_slice", "point_model", "point_shapes"]

PATCH_KERNEL = "patch_embed.proj.weight"  # derived per patch size in FlexiViT spaces
_QKV = ("attn.qkv.weight", "attn.qkv.bias")  # fused [q; k; v] rows: sliced per block of rows


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

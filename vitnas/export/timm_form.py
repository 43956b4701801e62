"""The timm form: a weights file that ``timm.create_model(..., pretrained=True)`` loads strictly.

timm's pretrained loader reads a local file when the pretrained config names one
(``pretrained_cfg_overlay=dict(file=...)``) and loads it with ``strict=True`` as long
as the overlay's ``num_classes`` equals the model's. Our parameter names carry a stage
prefix (``stages.0.blocks.3...``) that timm's do not, so the timm form is a separate
``timm_model.safetensors`` holding the same tensors under timm's names;
``model.safetensors`` stays what `vitnas.load` reads.

The call is recorded in ``config.json`` and the model card. Where the arch has the
shape (patch, resolution, width, depth, heads) of one of timm's named ViTs
(``vit_small_patch16_224`` ...) the call uses that name and only the kwargs that
differ from it (``num_classes=10``); otherwise it names ``vit_base_patch16_224`` as the
builder and passes every shape as a kwarg (kwargs override the name's shape).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import save_file
from torch import Tensor

from vitnas.errors import ExportError
from vitnas.export.extract import timm_state_dict
from vitnas.export.forms import max_difference
from vitnas.export.schema import file_entry
from vitnas.nn.vit import ViT

__all__ = ["TIMM_FILE", "timm_call", "timm_call_text", "timm_overlay", "write_timm"]

TIMM_FILE = "timm_model.safetensors"
_GENERIC = "vit_base_patch16_224"  # builder for shapes no named model has; every shape then comes from kwargs
# Named timm ViTs: name -> the shape its own defaults give (the rest are VisionTransformer's defaults below).
_NAMED = {
    f"vit_{size}_patch{patch}_{img}": dict(img_size=img, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads)
    for size, dim, depth, heads in (("tiny", 192, 12, 3), ("small", 384, 12, 6), ("base", 768, 12, 12),
                                    ("large", 1024, 24, 16))
    for patch in (16, 32)
    for img in (224, 384)
}
_VIT_DEFAULTS = dict(in_chans=3, num_classes=1000, mlp_ratio=4.0, qkv_bias=True, class_token=True,
                     global_pool="token")


def timm_call(kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The model name and the kwargs to give ``timm.create_model`` for a ViT of `kwargs` (as `timm_state_dict` gives)."""
    import timm

    for name, shape in _NAMED.items():
        if all(kwargs[key] == value for key, value in shape.items()) and timm.is_model(name):
            named = {**_VIT_DEFAULTS, **shape}
            return name, {key: value for key, value in kwargs.items() if named.get(key) != value}
    return _GENERIC, dict(kwargs)


def timm_overlay(num_classes: int, input_spec: dict[str, Any]) -> dict[str, Any]:
    """``pretrained_cfg_overlay`` besides ``file``: the class count (strict loading needs it) and the preprocessing.

    With it, ``timm.data.resolve_data_config(model=model)`` yields the inputs the model was trained on.
    """
    overlay: dict[str, Any] = {"num_classes": num_classes,
                               "input_size": [input_spec["in_chans"], input_spec["image_size"],
                                              input_spec["image_size"]]}
    for key in ("mean", "std", "crop_pct", "interpolation"):
        if key in input_spec:
            overlay[key] = input_spec[key]
    return overlay


def timm_call_text(name: str, kwargs: dict[str, Any], overlay: dict[str, Any], folder: str = "DIR") -> str:
    """The Python call, as the model card shows it (`folder` stands for the export folder)."""
    overlay_args = ", ".join([f'file=f"{{{folder}}}/{TIMM_FILE}"'] + [f"{k}={_literal(v)}" for k, v in overlay.items()])
    extra = "".join(f", {key}={_literal(value)}" for key, value in kwargs.items())
    return f'timm.create_model("{name}", pretrained=True, pretrained_cfg_overlay=dict({overlay_args}){extra})'


def _literal(value: Any) -> str:
    return repr(tuple(value)) if isinstance(value, list) else repr(value)


def write_timm(model: ViT, folder: Path, inputs: Sequence[Tensor], input_spec: dict[str, Any]) -> dict[str, Any]:
    """Writes ``timm_model.safetensors``, loads it through the recorded call and checks it against `model`.

    Raises:
        ExportError: timm's ViT cannot express the model (one line naming why).
    """
    if model.config.img_size != input_spec["image_size"]:
        raise ExportError(f"timm form: the model resizes its {input_spec['image_size']} px inputs to "
                          f"{model.config.img_size} px first; timm's ViT takes its input size as is")
    kwargs, state = timm_state_dict(model)
    name, call_kwargs = timm_call(kwargs)
    overlay = timm_overlay(model.config.num_classes, input_spec)
    path = folder / TIMM_FILE
    save_file({key: tensor.detach().contiguous().cpu() for key, tensor in state.items()}, str(path),
              metadata={"format": "pt"})
    rebuilt = _create(name, call_kwargs, {**overlay, "file": str(path)})
    check = {"runtime": "timm " + _timm_version(), "batches": [x.shape[0] for x in inputs],
             "max_abs_diff": max_difference(rebuilt, model, inputs)}
    return {**file_entry(path), "model_name": name, "kwargs": call_kwargs, "pretrained_cfg_overlay": overlay,
            "call": timm_call_text(name, call_kwargs, overlay), "check": check}


def _create(name: str, kwargs: dict[str, Any], overlay: dict[str, Any]) -> torch.nn.Module:
    """Runs the recorded call, so what is checked is exactly what users will run."""
    import timm

    overlay = {key: tuple(value) if isinstance(value, list) else value for key, value in overlay.items()}
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs).eval()
    except (RuntimeError, TypeError, KeyError) as error:
        lines = str(error).strip().splitlines()
        raise ExportError(f"timm form: timm.create_model refused the weights ({lines[0][:200] if lines else error})") \
            from None


def _timm_version() -> str:
    import timm

    return timm.__version__

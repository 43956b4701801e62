"""Export: chosen sub-networks as standalone ViTs people can deploy.

`export` (the `vitnas export` verb) writes a folder per chosen sub-network:
``config.json``, ``model.safetensors``, a model card, and on request the timm,
TorchScript and ONNX forms, each checked against PyTorch at export. `load` reads a
folder back as a plain `vitnas.nn.vit.ViT` without importing the supernet. `extract` and
`timm_state_dict` are the in-memory steps underneath. An elastic bundle (``--format
elastic``) holds every budget of a search as operating points of one weight envelope;
`load` returns it as an `ElasticViT` that switches between them.

The package itself is light (``vitnas export --help`` imports no torch); each name
loads its module on first use, and the package is callable as its verb:
``vitnas.export(checkpoint, arch, out, ...)`` is ``vitnas.export.export(...)``.
"""

from vitnas._lazy import export_lazily

_LAZY = {
    "export": "vitnas.export.writer",
    "FORMATS": "vitnas.export.schema",
    "TOLERANCE": "vitnas.export.writer",
    "extract": "vitnas.export.extract",
    "timm_state_dict": "vitnas.export.extract",
    "load": "vitnas.export.load",
    "ElasticViT": "vitnas.export.elastic",
    "FORMAT": "vitnas.export.schema",
    "FORMAT_VERSION": "vitnas.export.schema",
}
export_lazily(__name__, _LAZY, call="export")  # vitnas.export(...) is vitnas.export.export(...)

__all__ = list(_LAZY)

"""Export: chosen sub-networks as standalone ViTs people can deploy.

`export_model` (the `vitnas export` verb) writes a folder per chosen sub-network:
``config.json``, ``model.safetensors``, a model card, and on request the timm,
TorchScript and ONNX forms, each checked against PyTorch at export. `load` reads a
folder back as a plain `vitnas.nn.vit.ViT` without importing the supernet. `extract` and
`timm_state_dict` are the in-memory steps underneath. An elastic bundle (``--format
elastic``) holds every budget of a search as operating points of one weight envelope;
`load` returns it as an `ElasticViT` that switches between them.

The package itself is light (``vitnas export --help`` imports no torch); each name
loads its module on first use. Calling the package, ``vitnas.export(...)``, as vitnas 0.1
did still works for one release, with a warning: the verb is ``vitnas.export_model(...)``.
"""

from vitnas._lazy import export_lazily

_LAZY = {
    "export_model": "vitnas.export.writer",
    "FORMATS": "vitnas.export.schema",
    "TOLERANCE": "vitnas.export.writer",
    "extract": "vitnas.export.extract",
    "timm_state_dict": "vitnas.export.extract",
    "load": "vitnas.export.load",
    "ElasticViT": "vitnas.export.elastic",
    "FORMAT": "vitnas.export.schema",
    "FORMAT_VERSION": "vitnas.export.schema",
}
export_lazily(__name__, _LAZY)

__all__ = list(_LAZY)

"""The model card (``README.md``) of an export folder, written from its ``config.json``.

The card is what a person opening the folder reads first: how to load the model, what
inputs it takes, the architecture in words, its costs, how accurate it is and on which
split, how fast it ran here, and which deployable forms were checked against PyTorch
and how closely they agreed. Everything in it comes from ``config.json``, so the two
cannot disagree.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["model_card"]

_LOADERS = {"safetensors": "`vitnas.load(DIR)`", "torchscript": '`torch.jit.load("model.ts")`',
            "onnx": "`onnxruntime.InferenceSession(\"model.onnx\")`", "timm": "`timm.create_model(...)` (below)"}


def model_card(config: dict[str, Any], tolerance: float) -> str:
    """The README.md text for a finished export's `config`."""
    sections = [_header(config), _inputs(config), _architecture(config), _accuracy(config), _latency(config),
                _formats(config, tolerance)]
    if "timm" in config["formats"]:
        sections.append(_timm(config["formats"]["timm"]))
    return "\n\n".join(sections) + "\n"


def _header(config: dict[str, Any]) -> str:
    source = config["source"]
    origin = f"the `{source['space']}` supernet"
    if source.get("checkpoint"):
        origin += f" at `{source['checkpoint']}`" + (" (EMA weights)" if source.get("ema") else "")
    title = f"{source['space']} sub-network" + (f" for budget `{config['name']}`" if config.get("name") else "")
    return (f"# {title}\n\nA standalone Vision Transformer exported by {config['created_by']} from {origin}. "
            "It is plain PyTorch: no supernet and no search code.\n\n"
            f"```python\nimport vitnas\n\nmodel = vitnas.load(\"path/to/this/folder\")  # vitnas.vit.ViT, eval mode\n```")


def _inputs(config: dict[str, Any]) -> str:
    spec, size = config["input"], config["input"]["image_size"]
    lines = [f"## Inputs\n\n{spec['in_chans']} x {size} x {size} images (batch first)."]
    if "mean" in spec:
        lines.append(f"Normalisation: mean {_numbers(spec['mean'])}, std {_numbers(spec['std'])}; {spec['note']}.")
    else:
        lines.append(f"Normalisation: {spec['note']}.")
    names = config.get("class_names")
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") if names else "not recorded"
    lines.append(f"Classes ({config['num_classes']}): {shown}.")
    return " ".join(lines[:1]) + "\n" + "\n".join(f"- {line}" for line in lines[1:])


def _architecture(config: dict[str, Any]) -> str:
    model = config["model"]
    grid = model["img_size"] // model["patch_size"]
    resize = "" if model["img_size"] == config["input"]["image_size"] else \
        f"; inputs are first resized to {model['img_size']} px (bilinear)"
    lines = [f"patch {model['patch_size']} on {model['img_size']} px: {grid} x {grid} patch tokens and a class "
             f"token{resize}"]
    for index, stage in enumerate(model["stages"]):
        lines.append(_stage(index, stage))
    lines.append(f"LayerNorm, then a linear classifier on the class token: {model['num_classes']} classes")
    macs = f"{config['macs'] / 1e9:.2f} G" if config["macs"] >= 1e9 else f"{config['macs'] / 1e6:.1f} M"
    lines.append(f"{config['params']:,} parameters ({config['params'] / 1e6:.2f} M), {macs} multiply-accumulates "
                 "per image")
    return "## Architecture\n\n" + "\n".join(f"- {line}" for line in lines)


def _stage(index: int, stage: dict[str, Any]) -> str:
    blocks = stage["blocks"]
    heads = sorted({(b["num_heads"], b["head_dim"]) for b in blocks})
    head_text = ", ".join(f"{n} x {d}" for n, d in heads)
    hidden = [b["mlp_hidden"] for b in blocks]
    hidden_text = str(hidden[0]) if len(set(hidden)) == 1 else ", ".join(map(str, hidden))
    text = (f"stage {index + 1}: " + ("" if index == 0 else f"spatial reduction to {stage['grid']} x {stage['grid']} "
            "tokens (strided 3x3 convolution plus a pooled, zero-padded skip), then ")
            + f"{len(blocks)} blocks of width {stage['embed_dim']}; heads {head_text} wide; MLP hidden {hidden_text}")
    sites = [f"block {number} keeps {block['keep_rate']:.0%}" for number, block in enumerate(blocks, start=1)
             if block["keep_rate"] < 1]
    if sites:
        text += (f"; token reduction after the attention ({', '.join(sites)} of the patch tokens by class "
                 "attention, the rest fused into one token)")
    return text


def _accuracy(config: dict[str, Any]) -> str:
    search = config.get("search")
    if not search or "val_accuracy" not in search:
        return ("## Accuracy\n\nNot recorded: the arch did not come from a search's best.json "
                "(export from best.json to carry the search's accuracies).")
    rows = [f"| {search.get('report_split', 'val')} | {search['val_accuracy']:.2%} | report split: images the "
            "search did not choose by |"]
    if "accuracy" in search:
        rows.append(f"| {search.get('search_split', 'minival')} | {search['accuracy']:.2%} | search split: "
                    "the search chose this arch by it |")
    budget = f"\n\nChosen under budget `{search['name']}`: {json.dumps(search.get('budget', {}))}." \
        if search.get("name") else ""
    data = config["source"].get("data") or "the training data"
    return (f"## Accuracy\n\nTop-1 on {data}, with the supernet's shared weights (before any fine-tuning):\n\n"
            "| split | top-1 | |\n|---|---|---|\n" + "\n".join(rows) + budget)


def _latency(config: dict[str, Any]) -> str:
    rows = config.get("latency") or []
    if not rows:
        return "## Latency\n\nNot measured at export."
    first = rows[0]
    table = ["| batch | dtype | device | median ms | p10 - p90 ms | images/s |", "|---|---|---|---|---|---|"]
    table += [f"| {m['batch']} | {m['dtype']} | {m['device']} | {m['median_ms']:.3f} | {m['p10_ms']:.3f} - "
              f"{m['p90_ms']:.3f} | {m['images_per_s']:,.1f} |" for m in rows]
    return (f"## Latency\n\nMeasured at export on this machine ({first['device_name']}), eager PyTorch, "
            f"{first['repeats']} timed runs after warm-up, inputs of {config['input']['image_size']} px:\n\n"
            + "\n".join(table))


def _formats(config: dict[str, Any], tolerance: float) -> str:
    rows = ["| file | load with | checked with | batches | max abs difference |", "|---|---|---|---|---|"]
    for name, entry in config["formats"].items():
        check = entry["check"]
        loader = _LOADERS.get(name, name)
        if name == "onnx":
            loader += f", opset {entry['opset']}, dynamic batch"
        if "skipped" in check:
            rows.append(f"| {entry['file']} | {loader} | not checked: {check['skipped']} | | |")
        else:
            batches = ", ".join(map(str, check["batches"]))
            rows.append(f"| {entry['file']} | {loader} | {check['runtime']} | {batches} | "
                        f"{check['max_abs_diff']:.2e} |")
    return ("## Files and checks\n\nEach form was run at export on the same seeded inputs as the PyTorch model; "
            f"an export fails when any difference exceeds {tolerance:g}. The TorchScript and ONNX forms take "
            f"exactly {config['input']['image_size']} px inputs.\n\n" + "\n".join(rows))


def _timm(entry: dict[str, Any]) -> str:
    return ("## timm\n\n`timm_model.safetensors` holds the same weights under timm's parameter names; timm loads "
            "it strictly with:\n\n```python\nimport timm\n\nDIR = \"path/to/this/folder\"\n"
            f"model = {entry['call']}\n```")


def _numbers(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"

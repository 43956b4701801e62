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

__all__ = ["elastic_model_card", "model_card"]

_LOADERS = {"safetensors": "`vitnas.load(DIR)`", "torchscript": '`torch.jit.load("model.ts")`',
            "onnx": "`onnxruntime.InferenceSession(\"model.onnx\")`", "timm": "`timm.create_model(...)` (below)"}


def model_card(config: dict[str, Any], tolerance: float) -> str:
    """The README.md text for a finished export's `config`."""
    sections = [_header(config), _inputs(config), _architecture(config), _accuracy(config), _latency(config),
                _formats(config, tolerance)]
    if "timm" in config["formats"]:
        sections.append(_timm(config["formats"]["timm"]))
    return "\n\n".join(sections) + "\n"


def elastic_model_card(config: dict[str, Any], tolerance: float) -> str:
    """The README.md text for a finished elastic bundle's `config` (see `vitnas.export.elastic`)."""
    sections = [_elastic_header(config), _inputs(config), _points(config), _envelope(config),
                _point_checks(config, tolerance)]
    return "\n\n".join(sections) + "\n"


def _header(config: dict[str, Any]) -> str:
    source = config["source"]
    origin = f"the `{source['space']}` supernet"
    if source.get("checkpoint"):
        origin += f" at `{source['checkpoint']}`" + (" (EMA weights)" if source.get("ema") else "")
    title = f"{source['space']} sub-network" + (f" for budget `{config['name']}`" if config.get("name") else "")
    return (f"# {title}\n\nA standalone Vision Transformer exported by {config['created_by']} from {origin}. "
            "It is plain PyTorch: no supernet and no search code.\n\n"
            f"```python\nimport vitnas\n\nmodel = vitnas.load(\"path/to/this/folder\")  # vitnas.nn.vit.ViT, eval mode\n```")


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
        reducer = next(block.get("reducer") or "evit" for block in blocks if block["keep_rate"] < 1)
        words = _REDUCER_WORDS.get(reducer)
        text += (f"; token reduction after the attention by `{reducer}` ({', '.join(sites)} of the patch tokens"
                 + (f" {words})" if words else ")"))
    return text


# What each token reducer does with the tokens a keep rate leaves out, as the card says it.
_REDUCER_WORDS = {
    "evit": "by class attention, the rest fused into one token",
    "evo_vit": "by class attention; the rest are set aside, updated from one summary token and returned to the "
               "grid at the end of the stage",
    "tome": "by merging the most similar tokens into size-weighted means",
    "stvit": "as semantic tokens: the grid max-pooled into that many windows, refined by attention over the image "
             "tokens",
    "stvit_r": "as semantic tokens: the grid max-pooled into that many windows, refined by attention over the image "
               "tokens; the image tokens are recovered from them by attention at the end of the stage",
    "dynamicvit": "by a learned predictor's keep scores, the rest dropped",
}


def _accuracy(config: dict[str, Any]) -> str:
    search = config.get("search")
    tuned = _finetuned(config.get("finetune"))
    if not search or "val_accuracy" not in search:
        return tuned or ("## Accuracy\n\nNot recorded: the arch did not come from a search's best.json "
                         "(export from best.json to carry the search's accuracies).")
    rows = [f"| {search.get('report_split', 'val')} | {search['val_accuracy']:.2%} | report split: images the "
            "search did not choose by |"]
    if "accuracy" in search:
        rows.append(f"| {search.get('search_split', 'minival')} | {search['accuracy']:.2%} | search split: "
                    "the search chose this arch by it |")
    budget = f"\n\nChosen under budget `{search['name']}`: {json.dumps(search.get('budget', {}))}." \
        if search.get("name") else ""
    data = config["source"].get("data") or "the training data"
    shared = (f"Top-1 on {data}, with the supernet's shared weights (before any fine-tuning):\n\n"
              "| split | top-1 | |\n|---|---|---|\n" + "\n".join(rows) + budget)
    return f"{tuned}\n\n{shared}" if tuned else f"## Accuracy\n\n{shared}"


def _finetuned(record: dict[str, Any] | None) -> str:
    """The accuracy of a fine-tuned model (`vitnas.finetune_model`), and how it was trained; empty if it was not."""
    if not record:
        return ""
    how = [f"{record['epochs']} epochs on {record['data']}"]
    if record.get("from_scratch"):
        how.append("from re-initialised weights")
    if record.get("teacher"):
        how.append(f"distilled from the largest sub-network of `{record['teacher']}`")
    if record.get("ema"):
        how.append("EMA weights")
    top1 = record.get("val_top1")
    score = f"**{top1:.2%}**" if isinstance(top1, (int, float)) else "not measured"
    return (f"## Accuracy\n\nTop-1 after fine-tuning: {score} on the `{record['split']}` split of {record['data']} "
            f"(never trained on). Fine-tuned from `{record['from']}`: {', '.join(how)}; run `{record['run']}`.")


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


def _elastic_header(config: dict[str, Any]) -> str:
    source, names = config["source"], [point["name"] for point in config["points"]]
    origin = f"the `{source['space']}` supernet" + (f" at `{source['checkpoint']}`" if source.get("checkpoint") else "")
    return (f"# {source['space']} elastic bundle: {len(names)} operating points\n\n"
            f"One weight envelope holding {len(names)} sub-networks of {origin}, exported by {config['created_by']}. "
            "Every operating point is a slice of the same weights, named after the search budget that chose it; "
            "switching points at run time copies no weights.\n\n"
            f"```python\nimport vitnas\n\nmodel = vitnas.load(\"path/to/this/folder\")  # ElasticViT, point "
            f"{names[0]!r} active\nlogits = model.use({names[-1]!r})(images)  # switch, then run\n"
            f"single = vitnas.load(\"path/to/this/folder\", point={names[-1]!r})  # one point as a plain "
            "vitnas.nn.vit.ViT\n```")


def _points(config: dict[str, Any]) -> str:
    rows = ["| point | patch / input px | depth per stage | embed dim per stage | params | MACs | top-1 (split) | "
            "latency |", "|---|---|---|---|---|---|---|---|"]
    for point in config["points"]:
        model, search = point["model"], point.get("search") or {}
        accuracy = f"{search['val_accuracy']:.2%} ({search.get('report_split', 'val')})" \
            if "val_accuracy" in search else "not recorded"
        latency = point.get("latency") or []
        timing = f"{latency[0]['median_ms']:.3f} ms at batch {latency[0]['batch']} {latency[0]['dtype']}" \
            if latency else "not measured"
        rows.append(f"| `{point['name']}` | {model['patch_size']} / {model['img_size']} | "
                    f"{', '.join(str(len(s['blocks'])) for s in model['stages'])} | "
                    f"{', '.join(str(s['embed_dim']) for s in model['stages'])} | {point['params']:,} | "
                    f"{_macs(point['macs'])} | {accuracy} | {timing} |")
    return ("## Operating points\n\nIn bundle order (the first is active after loading). Top-1 is the search's, "
            f"with the supernet's shared weights; {_timing_note(config)}.\n\n" + "\n".join(rows))


def _envelope(config: dict[str, Any]) -> str:
    envelope, size = config["envelope"], config["size"]
    stages = "; ".join(f"stage {i + 1}: {s['depth']} blocks, embed dim {s['embed_dim']}, grids "
                       f"{', '.join(map(str, s['grids']))}" for i, s in enumerate(envelope["stages"]))
    separate = ", ".join(f"`{name}` {_bytes(count)}" for name, count in size["separate_bytes"].items())
    return (f"## Envelope and size\n\nThe envelope holds {envelope['params']:,} parameters: patch sizes "
            f"{', '.join(map(str, envelope['patch_sizes']))} (one derived kernel each), {stages}.\n\n"
            f"- `model.safetensors`: {_bytes(size['bundle_bytes'])} for all {len(config['points'])} points\n"
            f"- separate exports: {_bytes(size['separate_total_bytes'])} together ({separate}), each point's "
            "weights serialised as a plain export writes them\n"
            f"- the bundle is {size['bundle_fraction']:.1%} of the separate exports' size")


def _point_checks(config: dict[str, Any], tolerance: float) -> str:
    rows = ["| point | loaded with | batches | max abs difference |", "|---|---|---|---|"]
    for point in config["points"]:
        check, batches = point["check"], ", ".join(map(str, point["check"]["batches"]))
        rows.append(f"| `{point['name']}` | `vitnas.load(DIR, point=...)` | {batches} | "
                    f"{check['plain_max_abs_diff']:.2e} |")
        rows.append(f"| `{point['name']}` | `vitnas.load(DIR).use(...)` | {batches} | "
                    f"{check['switched_max_abs_diff']:.2e} |")
    return ("## Checks\n\nEach point was loaded back both ways at export and run against the sub-network extracted "
            f"from the supernet on the same seeded inputs; an export fails when any difference exceeds "
            f"{tolerance:g}. TorchScript, ONNX and timm forms hold one fixed model each: export a point on its own "
            "(`vitnas export --budget NAME`) for those.\n\n" + "\n".join(rows))


def _macs(macs: int) -> str:
    return f"{macs / 1e9:.2f} G" if macs >= 1e9 else f"{macs / 1e6:.1f} M"


def _bytes(count: int) -> str:
    return f"{count / 2**20:.2f} MiB" if count >= 2**20 else f"{count / 2**10:.1f} KiB"


def _timing_note(config: dict[str, Any]) -> str:
    timed = [point["latency"][0] for point in config["points"] if point.get("latency")]
    if not timed:
        return "latency was not measured at export"
    return (f"latency is the median of {timed[0]['repeats']} eager PyTorch runs at export on this machine "
            f"({timed[0]['device_name']})")

"""Exported models vs timm: images/s of the DeiT-S shape, eager, TorchScript and ONNX Runtime, side by side.

Rows, at each batch size: timm's own ``vit_small_patch16_224``, the DeiT-S-shaped
sub-network exported from the ``deit`` space (`vitnas.extract`, as `vitnas export`
writes it), and the same shape with EViT token reduction at keep rate 0.7. All have
random weights (speed does not depend on them). Each model runs as PyTorch eager,
TorchScript (``torch.jit.trace``, as ``model.ts``) and ONNX Runtime (the export's own
``model.onnx`` writer, `vitnas.export.forms.write_onnx`, checked against PyTorch).
Rounds interleave the rows, one timed call of each per round, so drift in the
machine's speed hits every row alike; each row's figure is the median over rounds.
The ratio is against timm eager at the same batch (target: exported >= 0.98x).

    python benchmarks/export_speed.py --batches 1,8 --repeats 5                 # quick CPU check
    python benchmarks/export_speed.py --batches 1,64 --repeats 20 --threads 16  # the issue's CPU figures
    python benchmarks/export_speed.py --device cuda --dtype bf16                # GPU (ONNX Runtime rows need onnxruntime-gpu)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import timm
import torch
from torch import Tensor, nn

import vitnas
from vitnas.export.forms import check_inputs, write_onnx

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FORMS = ("eager", "torchscript", "onnxruntime")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,64", help="comma-separated batch sizes (default: 1,64)")
    parser.add_argument("--repeats", type=int, default=20, help="interleaved timed rounds per batch (default: 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each row first (default: 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--forms", default=",".join(FORMS), help=f"comma-separated subset of {','.join(FORMS)}")
    parser.add_argument("--keep-rate", type=float, default=0.7, help="keep rate of the token-reduced row")
    args = parser.parse_args()
    batches = [int(text) for text in args.batches.split(",")]
    forms = [name for name in args.forms.split(",") if name]
    for name in forms:
        if name not in FORMS:
            parser.error(f"--forms: {name!r} is not one of {', '.join(FORMS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]

    models = build_models(args.keep_rate)
    with tempfile.TemporaryDirectory() as scratch:
        runners = {}
        for model_name, model in models.items():
            for form in forms:
                runner = build_runner(model, form, device, dtype, args.threads, Path(scratch) / model_name)
                if runner is None:
                    print(f"skipped {model_name} {form}: ONNX Runtime has no provider for {device} {args.dtype}")
                else:
                    runners[(model_name, form)] = runner
        print(f"torch {torch.__version__}, timm {timm.__version__}, {device} {args.dtype}, "
              f"{torch.get_num_threads()} threads, {args.repeats} interleaved rounds, median")
        print(f"{'model':<28} {'form':<12} {'batch':>5} {'images/s':>10} {'vs timm eager':>14}")
        for batch in batches:
            speeds = time_interleaved(runners, batch, device, dtype, args.warmup, args.repeats)
            reference = speeds.get(("timm vit_small_patch16_224", "eager"))
            for (model_name, form), speed in speeds.items():
                ratio = f"{speed / reference:.3f}x" if reference else "-"
                print(f"{model_name:<28} {form:<12} {batch:>5} {speed:>10.1f} {ratio:>14}")


def build_models(keep_rate: float) -> dict[str, nn.Module]:
    """timm's ViT-S/16 and the exported DeiT-S shape without and with token reduction, random weights, fp32 CPU."""
    torch.manual_seed(0)
    space = vitnas.load_space("deit")
    supernet = vitnas.SuperViT(space).eval()
    deit_s = dict(depth=12, embed_dim=384, num_heads=6, mlp_ratio=4.0, patch_size=16)
    models = {
        "timm vit_small_patch16_224": timm.create_model("vit_small_patch16_224", pretrained=False).eval(),
        "exported DeiT-S": vitnas.extract(supernet, space.arch(**deit_s)).eval(),
        f"exported DeiT-S keep {keep_rate:g}": vitnas.extract(supernet, space.arch(**deit_s, keep_rate=keep_rate)).eval(),
    }
    del supernet
    return models


def build_runner(model: nn.Module, form: str, device: torch.device, dtype: torch.dtype, threads: int | None,
                 scratch: Path) -> Callable[[Tensor], object] | None:
    """A callable running one batch in `form`; None where ONNX Runtime cannot run on this device and dtype."""
    if form == "onnxruntime":
        return _onnxruntime_runner(model, device, dtype, threads, scratch)
    model = model.to(device=device, dtype=dtype)
    if form == "torchscript":
        example = torch.randn(2, 3, 224, 224, device=device, dtype=dtype)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            model = torch.jit.trace(model, example, check_trace=False)
    return model


def _onnxruntime_runner(model: nn.Module, device: torch.device, dtype: torch.dtype, threads: int | None,
                        scratch: Path) -> Callable[[Tensor], object] | None:
    import onnxruntime

    provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    if dtype != torch.float32 or provider not in onnxruntime.get_available_providers():
        return None
    scratch.mkdir(parents=True, exist_ok=True)
    cpu_model = model.to(device="cpu", dtype=torch.float32)
    entry = write_onnx(cpu_model, scratch, check_inputs(224, 3))  # the export's writer, checked against PyTorch
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(scratch / entry["file"]), options, providers=[provider])

    def run(images: Tensor) -> object:
        return session.run(None, {entry["input"]: images.cpu().numpy()})

    return run


def time_interleaved(runners: dict, batch: int, device: torch.device, dtype: torch.dtype, warmup: int,
                     repeats: int) -> dict[tuple[str, str], float]:
    """Median images/s of each runner; every round times one call of each, in turn."""
    images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    fp32_images = images.float().cpu()
    timings: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
    with torch.inference_mode():
        for round_index in range(warmup + repeats):
            for key, runner in runners.items():
                x = fp32_images if key[1] == "onnxruntime" else images
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                runner(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if round_index >= warmup:
                    timings[key].append(time.perf_counter() - start)
    return {key: batch / statistics.median(values) for key, values in timings.items()}


if __name__ == "__main__":
    main()

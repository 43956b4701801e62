"""The deployable forms of an exported model, each checked against PyTorch when written.

- TorchScript (``model.ts``): `torch.jit.trace` at the folder's input size. Tracing
  records the batch dimension symbolically and bakes everything else (token counts,
  the keep-rate top-k sizes, the input resize), so token-reduced and multi-stage
  models trace as they are. ``torch.jit.load("model.ts")`` runs it without vitnas.
- ONNX (``model.onnx``): torch's `torch.export`-based exporter (``dynamo=True``; it
  needs the onnxscript package) with a dynamic batch axis named ``batch``, input
  ``images``, output ``logits``. The legacy TorchScript-based exporter is not used: it
  cannot export the spatial reduction of multi-stage models and is deprecated.

Each form is run on the same seeded inputs (batch 1 and 5) as the PyTorch model; the
largest absolute difference goes into ``config.json`` and the model card, and the
writer fails the export when it exceeds the tolerance. ONNX is run with ONNX Runtime
when it is installed; otherwise the check is recorded as skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from vitnas.errors import ExportError
from vitnas.export.schema import file_entry
from vitnas.util.atomic import raise_if_disk_full

__all__ = ["CHECK_BATCHES", "check_inputs", "max_difference", "require_onnx_exporter", "write_onnx",
           "write_torchscript"]

CHECK_BATCHES = (1, 5)  # batch sizes each form is checked at: 1 catches specialisation to the trace's batch
_TRACE_BATCH = 2  # example batch for tracing / torch.export: not 1, which exporters may specialise to
TORCHSCRIPT_FILE = "model.ts"
ONNX_FILE = "model.onnx"
ONNX_INPUT, ONNX_OUTPUT = "images", "logits"


def check_inputs(image_size: int, in_chans: int, batches: Sequence[int] = CHECK_BATCHES) -> list[Tensor]:
    """Seeded standard-normal image batches at the folder's input size: every form sees the same ones."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, in_chans, image_size, image_size, generator=generator) for batch in batches]


@torch.no_grad()
def max_difference(run: Callable[[Tensor], Tensor], model: nn.Module, inputs: Sequence[Tensor]) -> float:
    """Largest absolute difference between `run` and `model` over `inputs` (NaN if either yields NaN)."""
    worst = 0.0
    for x in inputs:
        got = torch.as_tensor(run(x)).float()
        expected = model(x).float()
        if got.shape != expected.shape:
            raise ExportError(f"output shape {list(got.shape)} differs from PyTorch's {list(expected.shape)} "
                              f"at batch {x.shape[0]}")
        difference = (got - expected).abs().max().item()
        if difference != difference:  # NaN must not hide behind max()
            return float("nan")
        worst = max(worst, difference)
    return worst


def require_onnx_exporter() -> None:
    """Fails in one line, naming what to install, where torch's ONNX exporter cannot run.

    vitnas requires onnx and onnxscript, so only an install made without its
    requirements (``--no-deps``, a hand-made environment) gets here; asking before the
    slow work (training, the other forms) beats torch's error at the end.

    Raises:
        ExportError: onnx or onnxscript is not installed.
    """
    specs = {"onnx": importlib.util.find_spec("onnx"), "onnxscript": importlib.util.find_spec("onnxscript")}
    missing = [name for name, spec in specs.items() if spec is None]
    if missing:
        raise ExportError(f"onnx: torch's ONNX exporter needs the {' and '.join(missing)} package"
                          f"{'s' if len(missing) > 1 else ''} (pip install {' '.join(missing)}), "
                          f"or leave onnx out of the formats")


def write_torchscript(model: nn.Module, folder: Path, inputs: Sequence[Tensor]) -> dict[str, Any]:
    """Writes ``model.ts`` (traced), reloads it and checks it against `model` on `inputs`."""
    path = folder / TORCHSCRIPT_FILE
    example = _example(inputs)
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
            buffer = io.BytesIO()  # torch.jit.save straight to a full disk aborts the whole process
            torch.jit.save(traced, buffer)
            reloaded = torch.jit.load(io.BytesIO(buffer.getvalue()), map_location="cpu")
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ExportError(f"torchscript: tracing failed ({type(error).__name__}: {_first_line(error)})") from None
    path.write_bytes(buffer.getbuffer())  # a full disk here is an OSError, which the export reports as such
    check = {"runtime": f"torch {torch.__version__} (torch.jit.load)", "batches": [x.shape[0] for x in inputs],
             "max_abs_diff": max_difference(reloaded, model, inputs)}
    return {**file_entry(path), "load": 'torch.jit.load("model.ts")', "check": check}


def write_onnx(model: nn.Module, folder: Path, inputs: Sequence[Tensor]) -> dict[str, Any]:
    """Writes ``model.onnx`` with a dynamic batch axis and checks it with ONNX Runtime where installed."""
    path = folder / ONNX_FILE
    require_onnx_exporter()
    batch = torch.export.Dim("batch", min=1)
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(model, (_example(inputs),), dynamo=True, input_names=[ONNX_INPUT],
                                        output_names=[ONNX_OUTPUT], dynamic_shapes=({0: batch},), verbose=False)
        program.save(str(path))
        opset = int(program.model.opset_imports[""])
    except Exception as error:  # the exporter raises many types; all but a full disk mean the same to the user
        raise_if_disk_full(error, ONNX_FILE, ExportError)
        raise ExportError(f"onnx: export failed ({type(error).__name__}: {_first_line(error)})") from None
    entry = {**file_entry(path), "opset": opset, "input": ONNX_INPUT, "output": ONNX_OUTPUT,
             "dynamic_axes": {ONNX_INPUT: {"0": "batch"}, ONNX_OUTPUT: {"0": "batch"}}}
    return {**entry, "check": _onnx_check(path, model, inputs)}


def _onnx_check(path: Path, model: nn.Module, inputs: Sequence[Tensor]) -> dict[str, Any]:
    try:
        import onnxruntime
    except ImportError:
        return {"skipped": "onnxruntime is not installed (pip install onnxruntime to check the file)"}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()})[0])

    return {"runtime": f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)",
            "batches": [x.shape[0] for x in inputs], "max_abs_diff": max_difference(run, model, inputs)}


def _example(inputs: Sequence[Tensor]) -> Tensor:
    return torch.randn(_TRACE_BATCH, *inputs[0].shape[1:], generator=torch.Generator().manual_seed(1))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silences the tracer's notes on baked-in shapes and torch's deprecation notice for torch.jit.

    Baking shapes is intended here (only the batch varies), and the check that follows
    every form is what vouches for the result.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*(deprecated|will be removed).*")
        yield


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__

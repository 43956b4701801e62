"""Bad input and faults end in one line that names what to do, and lose nothing already written.

Each case asserts the message itself: an exit code or a line count alone would pass with
the wrong error. Full disks are simulated by monkeypatching a writer to fail as the real
one does (ENOSPC); Ctrl-C is a real SIGINT to a real `vitnas train`.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import SafetensorError

import vitnas
from vitnas.cli import main
from vitnas.errors import BackendError, ExportError, VitnasError
from vitnas.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vitnas.train.recipe import RecipeError, load_recipe

TINY = {"space": "tiny32", "data": {"name": "synthetic", "synthetic_size": 48}, "epochs": 1, "batch_size": 16,
        "optimizer": {"lr": 1e-3}, "schedule": {"warmup_epochs": 1}, "sampler": {"name": "sandwich", "num_random": 1}}
FIX = "free some space, or write to another disk"
# What safetensors raises when the disk fills (seen on a full tmpfs): ENOSPC in its own error type.
SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


# -- recipes: lr and lr_per_512 ---------------------------------------------------------------------

def test_lr_alone_sets_the_default_lr_per_512_aside():
    recipe = load_recipe({"optimizer": {"lr": 0.01}})
    assert recipe.optimizer.lr_per_512 is None and recipe.learning_rate() == 0.01


def test_an_lr_override_sets_the_file_s_lr_per_512_aside_and_back():
    recipe = load_recipe("deit_small_supervit", ["optimizer.lr=1e-3"])  # the file gives lr_per_512
    assert recipe.optimizer.lr_per_512 is None and recipe.learning_rate() == 1e-3
    recipe = load_recipe("tiny32_digits", ["optimizer.lr_per_512=1e-3"])  # the file gives lr
    assert recipe.optimizer.lr is None and recipe.learning_rate() == 1e-3 * recipe.batch_size / 512


@pytest.mark.parametrize("source, overrides", [
    ({"optimizer": {"lr": 0.01, "lr_per_512": 1e-3}}, []),
    ("tiny32_digits", ["optimizer.lr=1e-3", "optimizer.lr_per_512=1e-3"]),
    ("tiny32_digits", ["optimizer.lr=null"]),
])
def test_both_rates_or_neither_is_one_line(source, overrides):
    with pytest.raises(RecipeError, match=r": optimizer\.lr: give exactly one of lr and lr_per_512$"):
        load_recipe(source, overrides)


# -- a full disk ----------------------------------------------------------------------------------

def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _disk_full_for(monkeypatch, file_name: str) -> None:
    """Python's own writes of `file_name` (Path.write_bytes) meet a full disk; every other write succeeds."""
    write_bytes = Path.write_bytes

    def full_for(path, data):
        return _no_space() if path.name == file_name else write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", full_for)


def _safetensors_no_space(*args, **kwargs):
    raise SafetensorError(SAFETENSORS_FULL)


class _FullFile:
    """What `open` gives on a full disk: the file opens, its writes fail with ENOSPC."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def write(self, text) -> int:
        _no_space()


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    recipe, run = tmp_path / "recipe.yaml", tmp_path / "run"
    recipe.write_text(yaml.safe_dump(TINY))
    assert main(["train", str(recipe), "--out", str(run)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(importlib.import_module("vitnas.train.checkpoint"), "save_file", _safetensors_no_space)
    assert main(["train", str(recipe), "--out", str(run), "--resume", "epochs=2"]) == 2
    err = capsys.readouterr().err.split("\r")[-1]  # after the progress bar, which clears its line
    assert re.fullmatch(rf"vitnas: error: disk full while writing checkpoint {run}/ckpt-\d+ \(earlier checkpoints "
                        rf"are kept\): {FIX}\n", err), err
    monkeypatch.undo()
    assert load_checkpoint(run)["meta"]["epoch"] == 1 and not list(run.glob(".ckpt-*"))  # the half-written one is gone


def test_a_full_disk_while_writing_a_checkpoint_s_state_is_one_line(tmp_path, monkeypatch):
    """state.pt goes through Python's writes: torch.save straight to a full disk says only "unexpected pos"."""
    _disk_full_for(monkeypatch, "state.pt")
    space = vitnas.load_space("tiny32")
    with pytest.raises(CheckpointError, match=rf"^disk full while writing checkpoint {tmp_path}/ckpt-0000003 "
                                              rf"\(earlier checkpoints are kept\): {FIX}$"):
        save_checkpoint(tmp_path, 3, {"w": torch.zeros(2)}, space, load_recipe(TINY), {"step": 3}, {"epoch": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_logging_metrics_is_one_line(tmp_path, monkeypatch):
    train_module = importlib.import_module("vitnas.train.metrics_log")  # the module of the metrics log
    monkeypatch.setattr(train_module, "open", _FullFile, raising=False)  # the module's `open`, not the builtin
    with pytest.raises(VitnasError, match=rf"^disk full while writing {tmp_path}/metrics\.jsonl: {FIX}$"):
        train_module.MetricsLog(tmp_path).write({"epoch": 1, "step": 3, "loss": 2.0})


def test_a_full_disk_while_logging_a_search_result_is_one_line_and_keeps_the_others(tmp_path, monkeypatch):
    from vitnas.search.results_log import ResultsLog

    space = vitnas.load_space("tiny32")
    log = ResultsLog(tmp_path / "results.jsonl")
    log.append({"arch": space.smallest().to_dict(), "accuracy": 0.5})
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(VitnasError, match=rf"^disk full while writing {tmp_path}/results\.jsonl \(the results "
                                          rf"before it are kept\): {FIX}$"):
        log.append({"arch": space.largest().to_dict(), "accuracy": 0.75})
    assert space.smallest() in log.read()


@pytest.mark.parametrize("where", ["weights", "fsync"])
def test_a_full_disk_while_exporting_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, where):
    space = vitnas.load_space("tiny32")
    supernet = vitnas.SuperViT(space)
    if where == "weights":
        monkeypatch.setattr(importlib.import_module("vitnas.export.writer"), "save_file", _safetensors_no_space)
    else:
        monkeypatch.setattr(os, "fsync", _no_space)  # the staged folder is synced before it is renamed into place
    with pytest.raises(ExportError, match=rf"^disk full while writing {tmp_path}/out: {FIX}$"):
        vitnas.export_model(supernet, space.smallest(), tmp_path / "out", formats=["safetensors"], latency_batches=())
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_the_onnx_step_says_so_not_export_failed(tmp_path, monkeypatch):
    pytest.importorskip("onnxscript")
    from vitnas.export.forms import check_inputs, write_onnx

    monkeypatch.setattr(torch.onnx, "export", _no_space)
    with pytest.raises(ExportError, match=rf"^disk full while writing model\.onnx: {FIX}$"):
        write_onnx(torch.nn.Flatten(), tmp_path, check_inputs(8, 1))


def test_a_full_disk_while_writing_torchscript_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """model.ts goes through Python's writes: torch.jit.save straight to a full disk aborts the process."""
    _disk_full_for(monkeypatch, "model.ts")
    space = vitnas.load_space("tiny32")
    with pytest.raises(ExportError, match=rf"^disk full while writing {tmp_path}/out: {FIX}$"):
        vitnas.export_model(vitnas.SuperViT(space), space.smallest(), tmp_path / "out", formats=["torchscript"],
                            latency_batches=())
    assert list(tmp_path.iterdir()) == []


# -- devices ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def export_folder(tmp_path_factory) -> Path:
    space = vitnas.load_space("tiny32")
    folder = tmp_path_factory.mktemp("export") / "tiny"
    vitnas.export_model(vitnas.SuperViT(space), space.smallest(), folder, formats=["safetensors"], latency_batches=())
    return folder


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("device, message", [
    ("gpu", "device: 'gpu' is not a device: use cpu, cuda or cuda:N"),
    ("mps", "device: 'mps' is not supported: use cpu, cuda or cuda:N"),
    ("cuda", "device: 'cuda' asked for, but CUDA is not available on this machine: use cpu"),
])
def test_eval_on_a_device_this_machine_lacks_is_one_line(export_folder, no_cuda, capsys, device, message):
    assert main(["eval", str(export_folder), "--data", "synthetic", "--device", device]) == 2
    assert capsys.readouterr().err == f"vitnas: error: {message}\n"


def test_eval_of_a_supernet_run_checks_the_device_before_loading(tmp_path, no_cuda, capsys):
    assert main(["eval", str(tmp_path / "no-run"), "--device", "cuda:1"]) == 2
    assert capsys.readouterr().err == ("vitnas: error: device: 'cuda:1' asked for, but CUDA is not available on "
                                       "this machine: use cpu\n")


@pytest.mark.parametrize("device", ["gpu", "cuda"])
def test_load_onto_a_device_this_machine_lacks_is_one_line(export_folder, no_cuda, device):
    with pytest.raises(ExportError, match=rf"^device: '{device}' (is not a device|asked for, but CUDA is not "
                                          rf"available on this machine): use cpu"):
        vitnas.load(export_folder, device=device)


# -- Ctrl-C -----------------------------------------------------------------------------------------

@pytest.mark.slow  # a fresh interpreter training until its first checkpoint
def test_ctrl_c_during_training_names_the_last_checkpoint_and_says_to_run_it_again(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    recipe, run = tmp_path / "recipe.yaml", tmp_path / "run"
    recipe.write_text(yaml.safe_dump(dict(TINY, epochs=500, eval_every=100)))
    command = [sys.executable, "-m", "vitnas", "train", str(recipe), "--out", str(run)]
    # A shell that starts a job in the background (`cmd &` without job control) starts it with SIGINT
    # ignored, and a child inherits that: give the training the default disposition a terminal gives.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1"),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (run / "latest").is_file() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert (run / "latest").is_file(), "no checkpoint written in time"
        process.send_signal(signal.SIGINT)
        try:
            err = process.communicate(timeout=60)[1]
        except subprocess.TimeoutExpired:  # once seen in CI on a loaded machine: show where it stood
            process.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            pytest.fail(f"still running 60 s after SIGINT; its stacks:\n{process.communicate(timeout=30)[1][-6000:]}")
    finally:
        process.kill()
    last = load_checkpoint(run)  # the checkpoint still loads
    line = err.replace("\r", "\n").splitlines()[-1]
    assert process.returncode == 130, err[-2000:]
    assert line == (f"vitnas: interrupted: the last checkpoint is {last['folder']} (epoch {last['meta']['epoch']}): "
                    f"run the same command again to continue")
    assert "Traceback" not in err and 1 <= last["meta"]["epoch"] < 500


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_during_a_search_counts_the_kept_results_and_says_to_run_it_again(tmp_path, monkeypatch, capsys):
    def search_then_interrupt(checkpoint, out, **kwargs):
        (out / "search.json").write_text("{}")
        (out / "results.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a"')  # two results and one cut short
        raise KeyboardInterrupt

    out = tmp_path / "search"
    out.mkdir()
    monkeypatch.setattr(importlib.import_module("vitnas.search.driver"), "search_supernet",
                        lambda checkpoint, out, **kwargs: search_then_interrupt(checkpoint, Path(out)))
    assert main(["search", "--checkpoint", str(tmp_path), "--out", str(out), "--macs", "1"]) == 130
    assert capsys.readouterr().err == (f"vitnas: interrupted: 2 evaluations are kept in {out}/results.jsonl: "
                                       f"run the same command again to continue\n")


def test_ctrl_c_during_a_run_says_to_run_it_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(importlib.import_module("vitnas.pipeline.stages"), "run_pipeline", _interrupt)
    assert main(["run", "--out", str(tmp_path / "r")]) == 130
    assert capsys.readouterr().err == (f"vitnas: interrupted: finished stages, and the training or search under "
                                       f"way, are kept in {tmp_path / 'r'}: run the same command again to continue\n")


def test_ctrl_c_before_the_first_checkpoint_says_to_start_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(importlib.import_module("vitnas.train.supernet"), "train_supernet", _interrupt)
    assert main(["train", "tiny32_digits", "--out", str(tmp_path / "r")]) == 130
    assert capsys.readouterr().err == (f"vitnas: interrupted: no checkpoint in {tmp_path / 'r'} yet: run the same "
                                       f"command again to start over\n")


# -- vitnas run: a latency budget no sub-network meets ---------------------------------------------

@pytest.mark.slow  # profiles eight archs
def test_an_unreachable_latency_budget_fails_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    arguments = ["run", "--out", str(out), "--latency-ms", "0.00001", "--backend", "local", "--profile-samples", "8",
                 "--latency-batch", "1", "--no-progress"]
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"vitnas: error: budget latency_ms<=1e-05: no sub-network meets it; the smallest found is "
                        r"[0-9.e-]+ ms predicted \(space tiny32\) on this machine's cpu: raise --latency-ms "
                        r"\(nothing was trained\)\n", err), err
    assert (out / "profile.json").is_file() and not (out / "supernet").exists()  # profiled, not trained
    (out / "supernet").mkdir()  # as a finished stage would be: --fresh must not delete it for a budget that fails
    (out / "profile.json").write_text("{}")  # --fresh profiles again before it checks the budget
    assert main(arguments + ["--fresh"]) == 2
    assert "raise --latency-ms (nothing was trained)" in capsys.readouterr().err
    assert (out / "supernet").is_dir() and json.loads((out / "profile.json").read_text())["space"]


# -- damaged files a run left ------------------------------------------------------------------------

def _records(space, count: int) -> list[str]:
    import json

    rng = __import__("numpy").random.default_rng(0)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(4 * count)))[:count]
    return [json.dumps({"arch": arch.to_dict(), "accuracy": index / 10}) + "\n" for index, arch in enumerate(archs)]


def test_a_last_results_line_cut_short_is_dropped_with_a_warning(tmp_path, caplog):
    from vitnas.search.results_log import ResultsLog

    lines = _records(vitnas.load_space("tiny32"), 4)
    path = tmp_path / "results.jsonl"
    path.write_text("".join(lines[:3]) + lines[3][:25])  # a kill in the middle of the fourth line
    with caplog.at_level("WARNING", logger="vitnas.search.results_log"):
        replayed = ResultsLog(path).read()
    assert caplog.messages == [f"{path}: dropping a last line cut short (25 bytes)"]
    assert path.read_text() == "".join(lines[:3])  # cut back to whole lines: the next append stays valid JSONL
    assert [record["accuracy"] for record in replayed.values()] == [0.0, 0.1, 0.2]


def test_a_corrupt_complete_results_line_is_one_line_naming_it(tmp_path):
    from vitnas.search.results_log import ResultsLog

    lines = _records(vitnas.load_space("tiny32"), 3)
    path = tmp_path / "results.jsonl"
    path.write_text(lines[0] + '{"arch": {"depth": 3}, "accuracy": 0.5}\n' + lines[2])
    with pytest.raises(VitnasError, match=rf"^{path} line 2: not a search record \("):
        ResultsLog(path).read()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    space = vitnas.load_space("tiny32")
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    return save_checkpoint(run, 3, vitnas.SuperViT(space).state_dict(), space, load_recipe(TINY), {"step": 3},
                           {"epoch": 1, "step": 3})


@pytest.mark.parametrize("name, text, message", [
    ("meta.json", '{"epoch": 1,', r"ckpt-0000003: cannot be read \(JSONDecodeError: Expecting property name"),
    ("recipe.yaml", "epochs: [1\n", r"recipe\.yaml: not valid YAML"),
    ("recipe.yaml", "epoch: 3\n", r"recipe\.yaml: epoch: unknown key \(known: space, data, epochs,"),
    ("space.yaml", "name: [\n", r"space\.yaml: not valid YAML"),
    ("space.yaml", "name: tiny32\n", r"space\.yaml: img_size: missing required field$"),
])
def test_a_corrupt_checkpoint_file_is_one_line_naming_it(checkpoint, tmp_path, name, text, message):
    import shutil

    damaged = tmp_path / checkpoint.name
    shutil.copytree(checkpoint, damaged)
    (damaged / name).write_text(text)
    with pytest.raises(VitnasError, match=message) as raised:
        vitnas.load_supernet(damaged)
    assert "\n" not in str(raised.value) and str(damaged) in str(raised.value)


def test_checkpoint_weights_that_do_not_fit_its_space_are_one_line(checkpoint, tmp_path):
    import shutil

    damaged = tmp_path / checkpoint.name
    shutil.copytree(checkpoint, damaged)
    space = dict(vitnas.load_space("tiny32").to_dict(), num_classes=7)  # a head of another shape
    (damaged / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    with pytest.raises(CheckpointError, match=rf"^{damaged}: weights do not fit the space \(Error\(s\) in loading "
                                              rf"state_dict for SuperViT:"):
        vitnas.load_supernet(damaged)


def test_exporting_a_best_json_arch_outside_the_space_is_one_line(checkpoint, tmp_path, capsys):
    import json

    arch = vitnas.load_space("deit").largest().to_dict()  # well formed, but no tiny32 arch
    best = tmp_path / "best.json"
    best.write_text(json.dumps([{"name": "latency_ms<=2", "arch": arch, "accuracy": 0.5}]))
    assert main(["export", "--checkpoint", str(checkpoint), "--arch", str(best), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"vitnas: error: {best}: budget 'latency_ms<=2': img_size: 224 is not one of [32]\n"
    assert not (tmp_path / "out").exists()


def test_a_ray_that_cannot_start_is_one_line_naming_its_last_error(monkeypatch):
    """Ray's start-up errors carry a remote traceback: the backend reports only its last line."""
    from vitnas.search.ray_cluster import connect

    class CannotStart:
        @staticmethod
        def is_initialized() -> bool:
            return False

        @staticmethod
        def init(**options) -> None:
            raise RuntimeError("Traceback (most recent call last):\n  File \"gcs.py\", line 1\nFailed to start the GCS")

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a mode the user chose: nothing to set up before init
    with pytest.raises(BackendError, match=r"^backend ray: cannot start or reach a local Ray \(Failed to start the "
                                           r"GCS\)$"):
        connect(CannotStart, None, workers=2, gpus_per_worker=0.0, cpus_per_worker=1.0)

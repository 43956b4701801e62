"""`vitnas run`: every stage's artefact exists and loads, a second call resumes, a killed one ends as an
uninterrupted one, --fresh starts over."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
from killing import assert_bitwise_equal, kill_when, start_vitnas
from safetensors.torch import load_file

import vitnas
from vitnas.cli import main
from vitnas.errors import ExportError
from vitnas.pipeline.stages import STAGES, RunError, RunSettings, choose_budgets, format_run, run_pipeline
from vitnas.train.checkpoint import finished_epochs, latest_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

SMALL = dict(backend="local", generations=2, population=6, profile_samples=6, latency_batch=4,
             formats=("safetensors",), progress=False, overrides=("epochs=2", "sampler.name=single"))
SMALL_FLAGS = ["--backend", "local", "--generations", "2", "--population", "6", "--profile-samples", "6",
               "--latency-batch", "4", "--format", "safetensors", "--no-progress", "epochs=2", "sampler.name=single"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One `vitnas run` never interrupted: the reference of the resume tests."""
    out = tmp_path_factory.mktemp("run") / "run"
    return run_pipeline(RunSettings(out=str(out), **SMALL))


def test_run_writes_every_artefact_and_they_load(finished):
    out = finished.out
    supernet, space = vitnas.load_supernet(out / "supernet")
    profile = vitnas.latency.load_profile(out / "profile.json")
    assert profile.batch == 4 and profile.samples == 6
    best = json.loads((out / "search" / "best.json").read_text())
    assert [row.budget for row in finished.rows] == [record["name"] for record in best]
    assert len(best) == 3 and sum(record["name"].startswith("latency_ms") for record in best) == 2
    assert (out / "search" / "pareto.png").read_bytes().startswith(b"\x89PNG")
    for row, record in zip(finished.rows, best):
        model = vitnas.load(row.folder)
        assert row.val_top1 == pytest.approx(record["val_accuracy"])  # the export scores what the supernet did
        assert row.params == sum(p.numel() for p in model.parameters())
        assert row.measured_ms > 0 and row.predicted_ms == record["latency_ms"]
        space.validate(vitnas.Arch.from_dict(record["arch"]))
    bundle = vitnas.load(finished.elastic)
    assert sorted(bundle.points) == sorted(record["name"] for record in best)
    table = format_run(finished)
    assert all(str(row.folder) in table for row in finished.rows) and str(finished.pareto_plot) in table
    assert len([line for line in table.splitlines() if line.startswith(("latency_ms", "macs"))]) == 3


def test_second_call_resumes_every_stage_and_writes_nothing(finished, monkeypatch):
    import importlib

    def no_training(*args, **kwargs):
        raise AssertionError("a finished supernet was retrained")

    monkeypatch.setattr(importlib.import_module("vitnas.train.supernet"), "train_supernet", no_training)
    files = {path: path.stat().st_mtime_ns for path in finished.out.rglob("*")}
    again = run_pipeline(RunSettings(out=str(finished.out), **SMALL))
    assert again.resumed == STAGES and again.rows == finished.rows
    assert {path: path.stat().st_mtime_ns for path in finished.out.rglob("*")} == files


def _chosen(out: Path) -> list[dict]:
    """best.json without what was timed on this machine (each run times its winners again)."""
    timed = ("measured_latency_ms", "meets_measured")
    records = json.loads((out / "search" / "best.json").read_text())
    return [{key: value for key, value in record.items() if key not in timed} for record in records]


def _assert_same_outcome(resumed, reference) -> None:
    """The same best.json (archs, scores, predicted costs), and bit-identical weights in every export."""
    assert _chosen(resumed.out) == _chosen(reference.out)
    assert [row.budget for row in resumed.rows] == [row.budget for row in reference.rows]
    pairs = [*((row.folder, expected.folder) for row, expected in zip(resumed.rows, reference.rows)),
             (resumed.elastic, reference.elastic)]
    for folder, expected in pairs:
        assert_bitwise_equal(*(load_file(str(path / "model.safetensors")) for path in (folder, expected)))


def _supernet_weights(run_dir: Path) -> dict:
    return load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))


def test_run_killed_while_training_resumes_to_the_uninterrupted_result(finished, tmp_path):
    out, log = tmp_path / "run", tmp_path / "run.log"
    out.mkdir()
    shutil.copy(finished.out / "profile.json", out / "profile.json")  # timings vary; the budgets come from it
    process = start_vitnas(["run", "--out", str(out), *SMALL_FLAGS], log)
    kill_when(process, lambda: (out / "supernet" / "latest").is_file(), "first checkpoint", log)
    assert finished_epochs(out / "supernet") == 1  # of 2: the stage is not finished
    shutil.copy(finished.out / "profile.json", out / "profile.json")  # timings vary; the budgets come from it
    resumed = run_pipeline(RunSettings(out=str(out), **SMALL))
    assert resumed.resumed == ("profile",) and finished_epochs(out / "supernet") == 2  # the last epoch was trained
    assert_bitwise_equal(_supernet_weights(out / "supernet"), _supernet_weights(finished.out / "supernet"))
    _assert_same_outcome(resumed, finished)


def test_run_killed_while_searching_resumes_to_the_uninterrupted_result(finished, tmp_path):
    out, log = tmp_path / "run", tmp_path / "run.log"
    out.mkdir()
    shutil.copytree(finished.out / "supernet", out / "supernet")  # the search starts in `out`: its paths are here
    shutil.copy(finished.out / "profile.json", out / "profile.json")
    results = out / "search" / "results.jsonl"
    process = start_vitnas(["run", "--out", str(out), *SMALL_FLAGS], log)
    kill_when(process, lambda: results.is_file() and results.read_text().count("\n") >= 1, "search result", log)
    assert not (out / "search" / "best.json").exists()  # killed mid-search
    resumed = run_pipeline(RunSettings(out=str(out), **SMALL))
    assert resumed.resumed == ("profile", "supernet")
    _assert_same_outcome(resumed, finished)


def test_fresh_starts_over(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished.out, out)
    (out / "notes.txt").write_text("mine")
    before = (out / "supernet" / "latest").stat().st_mtime_ns
    # Quicker settings than the finished run's (one epoch, one generation, two budgets): --fresh starts
    # over, so they are not refused as they would be without it.
    quicker = {**SMALL, "overrides": ("epochs=1", "sampler.name=single"), "generations": 1, "population": 4}
    again = run_pipeline(RunSettings(out=str(out), fresh=True, latency_ms=(1000.0,), **quicker))
    assert again.resumed == () and set(again.seconds) == set(STAGES)
    assert (out / "supernet" / "latest").stat().st_mtime_ns != before
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own artefacts are deleted


def test_other_recipe_or_budgets_on_a_finished_run_are_refused(finished, capsys):
    with pytest.raises(RunError, match=r"supernet: was started with epochs 2, not 3; give the same settings to "
                                       r"continue it, --fresh to start over, or another --out$"):
        run_pipeline(RunSettings(out=str(finished.out), **{**SMALL, "overrides": ("epochs=3", "sampler.name=single")}))
    with pytest.raises(RunError, match=r"search: was started with latency_ms \[.*\], not \[123\.0\]; .* --fresh"):
        run_pipeline(RunSettings(out=str(finished.out), latency_ms=(123.0,), **SMALL))


def test_an_export_that_scores_differently_from_the_supernet_fails_the_run(finished, tmp_path, monkeypatch):
    import torch

    import importlib

    writer = importlib.import_module("vitnas.export.writer")
    out = tmp_path / "run"
    shutil.copytree(finished.out, out)
    # Only the first budget's export is written again, biased; the eval stage checks it first and stops there.
    shutil.rmtree(out / "export" / finished.rows[0].folder.name)
    (out / "eval.json").unlink()
    real_extract = writer.extract

    def biased(supernet, arch):
        model = real_extract(supernet, arch)
        with torch.no_grad():
            model.head.bias[0] += 100.0  # every image becomes class 0
        return model

    monkeypatch.setattr(writer, "extract", biased)
    with pytest.raises(ExportError, match=r"scores .* on val, but its arch scored .* inside the supernet"):
        run_pipeline(RunSettings(out=str(out), **SMALL))


def test_budgets_chosen_from_the_profile_bind_and_are_feasible(finished):
    space = vitnas.load_space("tiny32")
    profile = vitnas.latency.load_profile(finished.out / "profile.json")
    latency, macs_budgets, reasons = choose_budgets(profile, space)
    low, high = profile.predict(space.smallest()), profile.predict(space.largest())
    assert len(latency) == 2 and low <= latency[0] < latency[1] < high
    target = low + 0.25 * (high - low)
    assert 0 <= latency[0] - target < 10 ** (math.floor(math.log10(target)) - 1)  # rounded up to two digits
    macs = [vitnas.count_macs(space, arch) / 1e9 for arch in (space.smallest(), space.largest())]
    assert macs[0] <= macs_budgets[0] < macs[1]
    assert len(reasons) == 3 and "of the way from the smallest" in reasons[0]
    assert choose_budgets(profile, space, (2.5,), (0.01,))[:2] == ((2.5,), (0.01,))


def test_bad_flags_are_one_line(capsys, tmp_path):
    assert main(["run", "--out", str(tmp_path / "r"), "--recipe", "tiny32_digit"]) == 2
    assert "did you mean tiny32_digits or tiny32_reducers_digits?" in capsys.readouterr().err  # nearest first
    assert main(["run", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err
    assert main(["run", "--out", str(tmp_path / "r"), "--macs", "0.0001"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no sub-network of tiny32 meets it (the smallest has 0.000386 G MACs)" in err
    kept = tmp_path / "kept"
    (kept / "supernet").mkdir(parents=True)
    assert main(["run", "--out", str(kept), "--fresh", "--macs", "0.0001"]) == 2
    assert (kept / "supernet").is_dir()  # --fresh deletes nothing when a flag is wrong
    capsys.readouterr()
    with pytest.raises(RunError, match=r"--ray-address: needs --backend ray"):
        RunSettings(backend="local", ray_address="auto")
    with pytest.raises(RunError, match=r"--latency-ms: expected positive numbers"):
        RunSettings(latency_ms=(-1.0,))
    import torch

    if not torch.cuda.is_available():
        assert main(["run", "--out", str(tmp_path / "r"), "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "CUDA is not available" in err and "leave --device out" in err
    assert not (tmp_path / "r").exists()  # nothing written before the flags were checked


@pytest.mark.parametrize("absent, flags, message", [
    ("onnxscript", (), "onnx: torch's ONNX exporter needs the onnxscript package (pip install onnxscript), "
                       "or leave onnx out of the formats"),
    ("ray", ("--format", "safetensors"), 'backend ray: Ray is not installed (pip install "ray[tune]"), '
                                         "or pass --backend local"),
])
def test_a_package_the_run_needs_is_asked_for_before_training(absent, flags, message, monkeypatch, capsys, tmp_path):
    import importlib

    def no_training(*args, **kwargs):
        raise AssertionError(f"training started before {absent} was asked for")

    monkeypatch.setattr(importlib.import_module("vitnas.train.supernet"), "train_supernet", no_training)
    monkeypatch.setitem(sys.modules, absent, None)  # as if not installed: find_spec and import both fail
    assert main(["run", "--out", str(tmp_path / "r"), *flags]) == 2
    assert capsys.readouterr().err == f"vitnas: error: {message}\n"
    assert not (tmp_path / "r").exists()

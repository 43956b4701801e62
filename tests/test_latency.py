"""Latency: measurement ranks archs, profiles fit and round-trip, devices and files are checked, budgets hold.

Timings are never asserted as absolute numbers: only that a clearly larger arch is
slower than a clearly smaller one, and that prediction is fast, both with wide margins.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

import vitnas
from vitnas.errors import ArchError, BudgetError, LatencyError, ProfileError
from vitnas.latency import (
    LatencyPredictor,
    build_model,
    build_profile,
    format_verification,
    load_profile,
    measure,
    measure_arch,
    measure_archs,
    prediction_error,
    sample_archs,
    throughput_arch,
    verify,
)
from vitnas.search.budget import Budget
from vitnas.cli import main
from vitnas.latency.cli import read_archs
from vitnas.latency.features import FEATURES, feature_row
from vitnas.util.device import cpu_name

BATCH = 8  # the module profile's batch


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny32() -> vitnas.SearchSpace:
    return vitnas.load_space("tiny32")


@pytest.fixture(scope="module")
def profile(tiny32):
    return build_profile(tiny32, device="cpu", batch=BATCH, samples=12, seed=0, warmup=1, repeats=5)


# -- measurement ---------------------------------------------------------------------------------
def test_measurement_ranks_smallest_below_largest(tiny32):
    small, large = tiny32.smallest(), tiny32.largest()
    assert vitnas.count_macs(tiny32, large) > 20 * vitnas.count_macs(tiny32, small)  # a gap no noise closes
    fast = measure_arch(tiny32, small, "cpu", batch=32, warmup=2, repeats=9)
    slow = measure_arch(tiny32, large, "cpu", batch=32, warmup=2, repeats=9)
    assert fast.median_ms < slow.median_ms
    for m in (fast, slow):
        assert m.p10_ms <= m.median_ms <= m.p90_ms and m.std_ms >= 0 and m.repeats == 9
        assert (m.batch, m.dtype, m.device, m.device_name) == (32, "fp32", "cpu", cpu_name())
        assert m.images_per_s == pytest.approx(32 * 1000 / m.median_ms)
    interleaved = measure_archs(tiny32, [small, large], "cpu", batch=32, rounds=2, warmup=1, repeats=7)
    assert [m.repeats for m in interleaved] == [8, 8] and interleaved[0].median_ms < interleaved[1].median_ms
    assert throughput_arch(tiny32, small, batch=32, rounds=3, calls_per_round=2) > throughput_arch(
        tiny32, large, batch=32, rounds=3, calls_per_round=2
    )


def test_measure_leaves_the_model_and_global_rng_alone(tiny32):
    model = vitnas.ViT(vitnas.vit_config(tiny32, tiny32.largest())).train()
    rng_state = torch.get_rng_state()
    result = measure(model, batch=2, dtype="bf16", warmup=1, repeats=3, channels_last=True)
    built = build_model(tiny32, tiny32.smallest())
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert result.dtype == "bf16" and result.repeats == 3
    assert model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert not built.training and sum(p.numel() for p in built.parameters()) == vitnas.count_params(
        tiny32, tiny32.smallest()
    )
    again = build_model(tiny32, tiny32.smallest())
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), again.state_dict().values()))


def test_measure_rejects_bad_settings_by_name(tiny32):
    model = build_model(tiny32, tiny32.smallest())
    cases = [
        (dict(dtype="fp8"), "dtype: 'fp8'"),
        (dict(batch=0), "batch: expected a positive integer, got 0"),
        (dict(repeats=0), "repeats: expected a positive integer, got 0"),
        (dict(trim=0.5), "trim: expected a number in [0, 0.5), got 0.5"),
        (dict(device="tpu"), "device: 'tpu'"),
    ]
    if not torch.cuda.is_available():
        cases.append((dict(device="cuda"), "device: 'cuda' asked for, but CUDA is not available"))
    for kwargs, message in cases:
        with pytest.raises(LatencyError, match="^" + re.escape(message)):
            measure(model, **kwargs)
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(LatencyError, match="^img_size:"):
        measure(conv)
    assert measure(conv, img_size=16, warmup=0, repeats=2).repeats == 2


# -- prediction ----------------------------------------------------------------------------------
def test_fast_prediction_equals_the_feature_reference(spaces, rng):
    for name, space in spaces.items():
        archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(40)]
        scale = np.max([feature_row(space, arch) for arch in archs[:2]], axis=0)
        coefficients = rng.random(len(FEATURES)) / np.where(scale > 0, scale, 1.0)
        predictor = LatencyPredictor(space, coefficients)
        reference = np.array([feature_row(space, arch) @ coefficients for arch in archs])
        np.testing.assert_allclose(predictor.predict_many(archs), reference, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(predictor.predict_many(archs), reference, rtol=1e-12, err_msg=name)  # cached


def test_fit_recovers_latencies_that_follow_the_terms(spaces, rng):
    space = spaces["deit"]
    archs = sample_archs(space, 120, rng)
    truth = np.zeros(len(FEATURES))
    for feature, ms in {"constant": 0.3, "blocks": 0.05, "qkv_proj_macs": 2e-9, "attention_macs": 3e-9,
                        "mlp_macs": 1.5e-9, "reducing_blocks": 0.02}.items():
        truth[FEATURES.index(feature)] = ms
    latencies = [feature_row(space, arch) @ truth for arch in archs]
    predictor = LatencyPredictor.fit(space, archs[:90], latencies[:90])
    error = prediction_error(predictor.predict_many(archs[90:]), latencies[90:])
    assert error.mape < 1e-3 and error.max_error < 1e-2 and error.kendall_tau > 0.99
    assert np.all(predictor.coefficients >= 0)
    with pytest.raises(LatencyError, match="positive"):
        LatencyPredictor.fit(space, archs[:3], [1.0, 0.0, 2.0])


def test_prediction_builds_no_model_and_computes_each_block_shape_once(spaces, rng, monkeypatch):
    """What keeps prediction fast (timed in benchmarks/latency_predictor.py): no torch module per arch, and
    each distinct block shape's term computed once and reused."""
    space = spaces["deit"]
    archs = [space.sample(rng) for _ in range(300)]
    coefficients = np.linspace(1e-9, 1e-8, len(FEATURES))
    predictor = LatencyPredictor(space, coefficients)
    computed = []
    original_block = LatencyPredictor._block
    monkeypatch.setattr(LatencyPredictor, "_block",
                        lambda self, key, *block: computed.append(key) or original_block(self, key, *block))

    def refuse(*args, **kwargs):
        raise AssertionError("a torch module was built to predict a latency")

    monkeypatch.setattr(nn.Module, "__init__", refuse)
    first = predictor.predict_many(archs)
    assert len(computed) == len(set(computed)) < sum(a.depth for a in archs)  # shared shapes are not recomputed
    count = len(computed)
    again = predictor.predict_many(archs)
    assert len(computed) == count and np.array_equal(first, again)
    monkeypatch.undo()
    np.testing.assert_allclose(first, [feature_row(space, arch) @ coefficients for arch in archs], rtol=1e-9)


def test_prediction_error_metrics():
    error = prediction_error([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert error.mape == pytest.approx(0.25 / 3) and error.max_error == pytest.approx(0.25)
    assert error.kendall_tau == pytest.approx(1.0) and error.count == 3
    assert prediction_error([2.0], [1.0]).kendall_tau is None


def test_sample_archs_is_seeded_distinct_and_bounded(tiny32):
    first = sample_archs(tiny32, 10, np.random.default_rng(5))
    assert first == sample_archs(tiny32, 10, np.random.default_rng(5))
    assert first[:2] == [tiny32.largest(), tiny32.smallest()] and len(set(first)) == 10
    with pytest.raises(LatencyError, match="^samples: only .* in 3 draws"):
        sample_archs(tiny32, 10, np.random.default_rng(5), max_draws=3)


# -- profiles ------------------------------------------------------------------------------------
def test_profile_builds_on_tiny32(profile, tiny32):
    assert (profile.samples, profile.holdout) == (12, 2)
    assert (profile.device, profile.device_type, profile.cuda) == (cpu_name(), "cpu", None)
    assert (profile.dtype, profile.batch, profile.torch) == ("fp32", BATCH, torch.__version__)
    extremes = profile.measurements[:2]
    assert [m.arch for m in extremes] == [tiny32.largest(), tiny32.smallest()] and not any(m.holdout for m in extremes)
    assert 0 <= profile.mape <= profile.max_error and np.all(profile.predictor.coefficients >= 0)
    held = [m for m in profile.measurements if m.holdout]
    expected = prediction_error(profile.predict_many(m.arch for m in held), [m.median_ms for m in held])
    assert (profile.mape, profile.max_error) == (expected.mape, expected.max_error)
    assert profile.predict(tiny32.largest()) > profile.predict(tiny32.smallest()) > 0
    assert profile.predict_throughput(tiny32.smallest()) == pytest.approx(
        BATCH * 1000 / profile.predict(tiny32.smallest())
    )


def test_profile_round_trips_through_its_file(profile, tiny32, tmp_path, rng):
    path = profile.save(tmp_path)
    assert path.name == profile.default_filename() and path.name.endswith("_tiny32_fp32_b8.json")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the temporary file was renamed, none is left
    data = json.loads(path.read_text())
    assert {"device", "torch", "cuda", "dtype", "batch", "space", "space_config", "mape", "max_error",
            "kendall_tau", "samples", "predictor"} <= data.keys()
    loaded = load_profile(path)
    archs = [tiny32.sample(rng) for _ in range(50)]
    assert np.array_equal(loaded.predict_many(archs), profile.predict_many(archs))
    assert loaded.to_dict() == profile.to_dict()


def test_profile_of_another_device_is_refused(profile, tmp_path):
    path = profile.save(tmp_path / "p.json")
    data = json.loads(path.read_text())
    data["device"] = "Imaginary Accelerator 9000"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="measured on cpu 'Imaginary Accelerator 9000'") as caught:
        load_profile(path)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(str(path))
    assert load_profile(path, check_device=False).device == "Imaginary Accelerator 9000"
    if not torch.cuda.is_available():
        data.update(device="NVIDIA H100 80GB HBM3", device_type="cuda", cuda="12.4")
        path.write_text(json.dumps(data))
        with pytest.raises(ProfileError, match="this machine has no cuda device"):
            load_profile(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("mape"), "missing field 'mape'"),
        (lambda d: d.update(batch="8"), "field 'batch': expected int, got str"),
        (lambda d: d.update(batch=0), "batch: expected a positive integer, got 0"),
        (lambda d: d.update(dtype="fp64"), "dtype: 'fp64' is not one of"),
        (lambda d: d.update(samples=99), "samples/holdout say 99/"),
        (lambda d: d["predictor"].update(features=["constant"]), "predictor.features: made with other terms"),
        (lambda d: d["measurements"][0].pop("median_ms"), r"measurements\[0\]: missing field 'median_ms'"),
        (
            lambda d: d["measurements"][0]["arch"].update(patch_size=5),
            r"measurements\[0\].arch: patch_size: 5 is not one of",
        ),
        (lambda d: d.update(format="something else"), "not a device profile"),
    ],
)
def test_malformed_profile_is_one_line_error(profile, tmp_path, edit, message):
    data = profile.to_dict()
    data = json.loads(json.dumps(data))
    edit(data)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=message) as caught:
        load_profile(path)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"{path}: ")


def test_unreadable_profile_files(profile, tmp_path):
    path = profile.save(tmp_path / "p.json")
    path.write_text(path.read_text()[:200])  # truncated
    with pytest.raises(ProfileError, match=r"p.json: not a device profile: invalid JSON \("):
        load_profile(path)
    with pytest.raises(ProfileError, match="missing.json: cannot be read"):
        load_profile(tmp_path / "missing.json")


# -- budgets -------------------------------------------------------------------------------------
def test_budget_checks_every_limit(profile, tiny32):
    small, large = tiny32.smallest(), tiny32.largest()
    flops, params = vitnas.count_macs(tiny32, small), vitnas.count_params(tiny32, small)
    assert Budget().satisfied(tiny32, large)
    by_cost = Budget(max_macs=flops, max_params=float(params))
    assert by_cost.check(tiny32, small) == [] and by_cost.max_params == params
    assert [v.split()[0] for v in by_cost.check(tiny32, large)] == ["MACs", "params"]
    fast, slow = profile.predict(small), profile.predict(large)
    by_speed = Budget(latency_ms=(fast + slow) / 2, min_throughput=BATCH * 1000 / ((fast + slow) / 2))
    assert by_speed.satisfied(tiny32, small, profile)
    violations = by_speed.check(tiny32, large, profile)
    assert len(violations) == 2 and "latency_ms" in violations[0] and "min_throughput" in violations[1]
    with pytest.raises(BudgetError, match="^Budget.latency_ms: a latency or throughput budget needs a device profile"):
        by_speed.check(tiny32, small)
    with pytest.raises(BudgetError, match="made for space 'tiny32'"):
        by_speed.check(vitnas.load_space("deit"), vitnas.load_space("deit").smallest(), profile)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(latency_ms=-1.0), "latency_ms"),
        (dict(latency_ms=math.inf), "latency_ms"),
        (dict(min_throughput="fast"), "min_throughput"),
        (dict(max_macs=1.5e6 + 0.5), "max_macs"),
        (dict(max_params=True), "max_params"),
        (dict(max_params=0), "max_params"),
    ],
)
def test_budget_fields_are_validated_by_name(kwargs, field):
    with pytest.raises(BudgetError, match=f"^Budget.{field}: expected a positive"):
        Budget(**kwargs)


# -- verification and CLI ------------------------------------------------------------------------
def test_verify_pairs_predictions_with_measurements(profile, tiny32):
    archs = [tiny32.smallest(), tiny32.largest()]
    results = verify(profile, tiny32, archs, warmup=1, repeats=3)
    assert [r.arch for r in results] == archs
    for result in results:
        assert result.predicted_ms == profile.predict(result.arch)
        assert (result.measured.batch, result.measured.repeats) == (BATCH, 3)
        measured = result.measured.median_ms
        assert result.error == pytest.approx((result.predicted_ms - measured) / measured)
    table = format_verification(results).splitlines()
    assert len(table) == 4 and table[-1].startswith("MAPE") and table[1].split()[0] == "0"
    with pytest.raises(ProfileError, match="made for space 'tiny32'"):
        verify(profile, vitnas.load_space("deit"), [])


def test_cli_measure_profile_verify(tiny32, tmp_path, capsys):
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(tiny32.smallest().to_json())
    assert main(["latency", "measure", "--space", "tiny32", "--arch", str(arch_file), "largest",
                 "--batch", "2", "--warmup", "1", "--repeats", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(" ms median " in line and "at batch 2 fp32 on cpu" in line for line in lines)

    assert main(["latency", "measure", "--space", "tiny32", "--arch", str(tmp_path / "none.json")]) == 2
    missing = tmp_path / "none.json"
    assert capsys.readouterr().err == f"vitnas: error: {missing}: cannot be read (No such file or directory)\n"

    out = tmp_path / "profile.json"
    assert main(["latency", "profile", "--space", "tiny32", "--batch", "2", "--samples", "4", "--warmup", "0",
                 "--repeats", "2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"saved to {out}"
    assert load_profile(out).samples == 4

    assert main(["latency", "verify", "--profile", str(out), "--arch", str(arch_file), "--repeats", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("MAPE")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["latency", "verify", "--profile", str(bad), "--arch", "largest"]) == 2
    assert capsys.readouterr().err.startswith(f"vitnas: error: {bad}: not a device profile: invalid JSON")


def test_arch_files_hold_one_arch_a_list_or_json_lines(tiny32, tmp_path):
    small, large = tiny32.smallest(), tiny32.largest()
    (tmp_path / "one.json").write_text(large.to_json())
    (tmp_path / "list.json").write_text(json.dumps([small.to_dict(), large.to_dict()]))
    (tmp_path / "lines.jsonl").write_text(f"{small.to_json()}\n\n{large.to_json()}\n")
    sources = [str(tmp_path / name) for name in ("one.json", "list.json", "lines.jsonl")] + ["smallest"]
    assert read_archs(sources, tiny32) == [large, small, large, small, large, small]
    (tmp_path / "bad.jsonl").write_text(f"{small.to_json()}\n{{oops\n")
    with pytest.raises(ArchError, match=r"bad.jsonl line 2: not valid JSON"):
        read_archs([str(tmp_path / "bad.jsonl")], tiny32)
    with pytest.raises(ArchError, match=r"one.json: not in space deit: img_size: 32 is not one of"):
        read_archs([str(tmp_path / "one.json")], vitnas.load_space("deit"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_measurement_and_profile(tiny32, tmp_path):
    small = measure_arch(tiny32, tiny32.smallest(), "cuda", batch=64, dtype="bf16", warmup=5, repeats=20)
    large = measure_arch(tiny32, tiny32.largest(), "cuda", batch=64, dtype="bf16", warmup=5, repeats=20)
    assert small.device.startswith("cuda:") and small.device_name == torch.cuda.get_device_name()
    assert small.median_ms < large.median_ms
    built = build_profile(tiny32, device="cuda", batch=64, dtype="bf16", samples=12, warmup=3, repeats=10)
    assert (built.device_type, built.cuda) == ("cuda", torch.version.cuda)
    loaded = load_profile(built.save(tmp_path))
    assert loaded.predict(tiny32.largest()) == built.predict(tiny32.largest())

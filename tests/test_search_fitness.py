"""Fitness: the evaluator scores exactly what `vitnas.evaluate` scores, loading its data and weights once."""

from __future__ import annotations

import importlib.util
import pickle
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import vitnas
from vitnas.data import DataConfig
from vitnas.errors import ArchError
from vitnas.evaluate import evaluate
from vitnas.search import fitness
from vitnas.search.fitness import FitnessError, FitnessEvaluator, FitnessSettings
from vitnas.space.arch import Arch
from vitnas.space.space import load_space
from vitnas.supernet.supernet import SuperViT
from vitnas.train.supernet import train_supernet

# One torch thread, as this module ran before tests/test_search.py stopped leaking its own setting
# (tiny graphs run faster on one; restored after the module).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIGITS = DataConfig(name="digits", holdout=True)


@pytest.fixture(scope="module")
def supernet() -> SuperViT:
    torch.manual_seed(0)
    return SuperViT(load_space("tiny32")).eval()


@pytest.fixture(scope="module")
def archs(supernet) -> list[Arch]:
    """Different sub-networks on the cheap 8x8 patch grid (4x4 patches cost 4x the tokens; one test runs them)."""
    space, rng = supernet.space, np.random.default_rng(0)
    return [space.smallest(), *(replace(space.sample(rng), patch_size=8) for _ in range(2))]


def test_scores_equal_vitnas_evaluate_and_the_data_is_built_once(supernet, archs, monkeypatch):
    calls = []
    original = fitness.build_dataset
    monkeypatch.setattr(fitness, "build_dataset", lambda *a, **k: calls.append(a) or original(*a, **k))
    evaluator = FitnessEvaluator(supernet, FitnessSettings(DIGITS, batch_size=64, device="cpu"))
    scores = [evaluator(arch) for arch in archs]
    assert len(calls) == 1 and evaluator.num_images == 144  # digits minival: a fixed 10% of 1,438 train images
    expected = [evaluate(supernet, arch, data=DIGITS, split="minival", batch_size=64) for arch in archs]
    assert scores == expected and all(0.0 <= s <= 1.0 for s in scores)
    assert len(set(scores)) > 1  # random weights, but the archs still differ: this compares real numbers
    val = FitnessEvaluator(supernet, FitnessSettings(DIGITS, split="val", device="cpu"))
    assert val.num_images == 359 and val(archs[0]) == evaluate(supernet, archs[0], data=DIGITS, split="val")
    assert len(calls) == 2  # one more evaluator, one more build; evaluate's own builds go through vitnas.data


def test_from_state_gives_identical_numbers_and_settings_pickle(supernet, archs):
    settings = FitnessSettings(DIGITS, max_images=48, device="cpu")
    state = {name: tensor.clone() for name, tensor in supernet.state_dict().items()}
    rebuilt = FitnessEvaluator.from_state(supernet.space.to_dict(), state, pickle.loads(pickle.dumps(settings)))
    direct = FitnessEvaluator(supernet, settings)
    assert [rebuilt(arch) for arch in archs] == [direct(arch) for arch in archs]
    broken = dict(state, **{"head.weight": state["head.weight"][:, :8]})
    with pytest.raises(FitnessError, match=r"^state_dict: weights do not fit space 'tiny32' \(") as caught:
        FitnessEvaluator.from_state(supernet.space.to_dict(), broken, settings)
    assert "\n" not in str(caught.value)


def test_max_images_scores_the_first_images_of_the_split(supernet, archs):
    evaluator = FitnessEvaluator(supernet, FitnessSettings(DIGITS, max_images=50, batch_size=16, device="cpu"))
    assert evaluator.num_images == 50
    images, labels = fitness.build_dataset(DIGITS, "minival", 32, 3).tensors
    with torch.no_grad():  # the first 50 minival images, in the evaluator's batches of 16
        correct = sum((supernet(chunk, archs[2]).argmax(-1) == truth).sum().item()
                      for chunk, truth in zip(images[:50].split(16), labels[:50].split(16)))
    assert evaluator(archs[2]) == correct / 50
    everything = FitnessEvaluator(supernet, FitnessSettings(DIGITS, max_images=10_000, device="cpu"))
    assert everything.num_images == 144


def test_an_arch_outside_the_space_is_a_one_line_arch_error(supernet, archs):
    evaluator = FitnessEvaluator(supernet, FitnessSettings(DIGITS, max_images=8, device="cpu"))
    stage = replace(archs[0].stages[0], embed_dim=40)
    with pytest.raises(ArchError, match=r"stages\[0\]\.embed_dim") as caught:
        evaluator(replace(archs[0], stages=(stage,)))
    assert evaluator(archs[0]) >= 0.0  # the evaluator is still usable
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("changes, message", [
    ({"split": "test"}, r"fitness\.split: expected one of train, val, minival, got 'test'"),
    ({"batch_size": 0}, r"fitness\.batch_size: expected a positive integer, got 0"),
    ({"max_images": -1}, r"fitness\.max_images: expected a positive integer or None, got -1"),
    ({"device": "nowhere"}, r"fitness\.device: 'nowhere' is not a device"),
])
def test_bad_settings_are_one_line_errors(changes, message):
    with pytest.raises(FitnessError, match=message) as caught:
        FitnessSettings(DIGITS, **changes)
    assert "\n" not in str(caught.value)
    assert FitnessSettings("digits").data == DataConfig()  # the parse_data strings work too


def test_from_checkpoint_uses_the_recipe_data_and_its_weights(tmp_path):
    recipe = {
        "space": "tiny32",
        "data": {"name": "synthetic", "synthetic_size": 24, "holdout": True, "search_images": 8},
        "epochs": 1,
        "batch_size": 8,
        "optimizer": {"lr": 1e-3, "lr_per_512": None},
        "schedule": {"warmup_epochs": 1},
        "sampler": {"name": "single"},
        "log_every": 1,
    }
    train_supernet(recipe, tmp_path / "run")
    trained, space = vitnas.load_supernet(tmp_path / "run")
    data = DataConfig(name="synthetic", synthetic_size=24, holdout=True, search_images=8)
    search = FitnessEvaluator.from_checkpoint(tmp_path / "run", device="cpu")
    assert search.settings.data == data and search.settings.split == "minival" and search.num_images == 8
    report = FitnessEvaluator.from_checkpoint(tmp_path / "run", search.settings, split="val", batch_size=7)
    assert report.num_images == 24 and report.settings.batch_size == 7
    for arch in (space.largest(), space.smallest()):
        assert search(arch) == evaluate(trained, arch, data=data, split="minival")
        assert report(arch) == evaluate(trained, arch, data=data, split="val", batch_size=7)
    with pytest.raises(FitnessError, match=r"^from_checkpoint: batch is not a fitness setting"):
        FitnessEvaluator.from_checkpoint(tmp_path / "run", batch=3)


def test_fitness_imports_without_ray(monkeypatch):
    """Run the module's code afresh with `import ray` made to fail (cheaper than a new interpreter)."""
    monkeypatch.setitem(sys.modules, "ray", None)
    spec = importlib.util.spec_from_file_location("_fitness_without_ray", fitness.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    assert module.FitnessEvaluator.__name__ == "FitnessEvaluator"

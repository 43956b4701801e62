"""Training: one optimizer step per plan, exact resume, atomic and safe checkpoints, recipes, DDP."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from ddp_env import SUPERNET_RECIPE
from killing import assert_bitwise_equal, finish, kill_when, start_vitnas
import torch
from safetensors.torch import load_file

import vitnas
from vitnas.cli import main
from vitnas.data import DataConfig
from vitnas.train.checkpoint import CheckpointError, finished_epochs, load_checkpoint
from vitnas.train.supernet import train_supernet
from vitnas.train.recipe import RecipeError, load_recipe

# One torch thread, as this module ran before tests/test_search.py stopped leaking its own setting
# (tiny graphs run faster on one; restored after the module).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {
    "space": "tiny32",
    "data": {"name": "synthetic", "synthetic_size": 48},
    "epochs": 2,
    "batch_size": 16,
    "optimizer": {"lr": 1e-3, "lr_per_512": None},
    "schedule": {"warmup_epochs": 1},
    "sampler": {"name": "sandwich", "num_random": 1},
    "drop_path": 0.1,
    "log_every": 1,
}


def weights(run: Path) -> dict[str, torch.Tensor]:
    folder = run / (run / "latest").read_text().strip()
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("sampler", ["single", "sandwich", "multi", "supervit"])
def test_each_step_takes_exactly_one_optimizer_step(tmp_path, monkeypatch, sampler):
    steps = []
    original = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: steps.append(1) or original(self, *a, **k))
    recipe = dict(TINY, epochs=1, sampler={"name": sampler})
    train_supernet(recipe, tmp_path / "run")
    assert len(steps) == 48 // 16
    assert load_checkpoint(tmp_path / "run")["meta"]["step"] == 3


def on_images(root: Path, num_workers: int = 0) -> dict:
    """TINY on the ImageFolder at `root`: timm's random training transform, in `num_workers` loader workers."""
    return dict(TINY, data={"name": "imagefolder", "root": str(root)}, batch_size=10, num_workers=num_workers)


@pytest.mark.parametrize("data", ["synthetic", "images", "images in 2 workers"])
def test_kill_and_resume_ends_with_the_same_weights(tmp_path, data, image_folder):
    """Resumed in the process that trained on: only what the checkpoint restores can make the runs agree.

    On images, the transform draws from Python's `random` (no workers) or from workers
    seeded by the loader's generator, so both must be restored along with torch's and numpy's.
    """
    recipe = {"synthetic": TINY, "images": on_images(image_folder),
              "images in 2 workers": on_images(image_folder, num_workers=2)}[data]
    train_supernet(recipe, tmp_path / "straight")
    resumed_run = tmp_path / "resumed"
    train_supernet(recipe, resumed_run)
    # What a kill during epoch 2 leaves behind: the epoch-1 checkpoint is the latest one.
    first = sorted(p.name for p in resumed_run.glob("ckpt-*"))[0]
    (resumed_run / "latest").write_text(first + "\n")
    for later in resumed_run.glob("ckpt-*"):
        if later.name != first:
            shutil.rmtree(later)
    train_supernet(recipe, resumed_run, resume=True)
    assert_bitwise_equal(weights(tmp_path / "resumed"), weights(tmp_path / "straight"))


def test_a_checkpoint_without_python_or_loader_rng_still_resumes_with_a_note(tmp_path, caplog):
    train_supernet(TINY, tmp_path / "run")
    state_file = tmp_path / "run" / (tmp_path / "run" / "latest").read_text().strip() / "state.pt"
    state = torch.load(state_file, weights_only=True)
    torch.save({k: v for k, v in state.items() if k not in ("python_rng", "loader_rng")}, state_file)
    with caplog.at_level("WARNING", logger="vitnas.util.seeding"):
        assert train_supernet(TINY, tmp_path / "run", resume=True, overrides=["epochs=3"])["epoch"] == 3
    assert ("this checkpoint predates saving python_rng and loader_rng: they restart from the run's seed, so random "
            "augmentation after this resume differs from an uninterrupted run's") in caplog.text


def test_metrics_log_and_checkpoint_layout(tmp_path):
    train_supernet(dict(TINY, epochs=1), tmp_path / "run")
    run = tmp_path / "run"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert any('"val_top1_largest"' in line for line in lines) and any('"images_per_s"' in line for line in lines)
    folder = run / (run / "latest").read_text().strip()
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "space.yaml", "recipe.yaml", "state.pt",
                                                  "meta.json"}
    supernet, space = vitnas.load_supernet(run)
    assert space.name == "tiny32" and not supernet.training
    final = json.loads([line for line in lines if '"val_top1_smallest"' in line][-1])
    data = DataConfig(name="synthetic", synthetic_size=TINY["data"]["synthetic_size"])
    logged = pytest.approx(vitnas.evaluate(supernet, space.smallest(), data=data), abs=5e-7)  # logged to 6 places
    assert final["val_top1_smallest"] == logged


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    train_supernet(dict(TINY, epochs=1), run)
    folder = run / (run / "latest").read_text().strip()
    model = folder / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors|cannot be read"):
        vitnas.load_supernet(run)
    (folder / "meta.json").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete or missing"):
        vitnas.load_supernet(run)
    with pytest.raises(CheckpointError, match=r"no such directory"):
        vitnas.load_supernet(tmp_path / "nowhere")


@pytest.mark.parametrize("meta, message", [
    ('{"epoch": 3, "step": 9}', None),
    ('{"epoch": 3, "st', r"ckpt-0000009/meta\.json: no count of finished epochs \(JSONDecodeError: "),
    ('{"step": 9}', r"ckpt-0000009/meta\.json: no count of finished epochs \(KeyError: 'epoch'\)"),
    ('{"epoch": -1}', r"ckpt-0000009/meta\.json: epoch must be a count of finished epochs, got -1"),
])
def test_finished_epochs_reads_the_count_meta_json_keeps(tmp_path, meta, message):
    (tmp_path / "ckpt-0000009").mkdir()
    (tmp_path / "ckpt-0000009" / "meta.json").write_text(meta)
    (tmp_path / "latest").write_text("ckpt-0000009\n")
    if message is None:
        assert finished_epochs(tmp_path) == 3  # epochs done, not the index of the last one
    else:
        with pytest.raises(CheckpointError, match=message):
            finished_epochs(tmp_path)


def test_state_file_with_code_is_refused(tmp_path):
    run = tmp_path / "run"
    train_supernet(dict(TINY, epochs=1), run)
    folder = run / (run / "latest").read_text().strip()
    torch.save({"evil": os.system}, folder / "state.pt")  # a pickle that would import a function
    with pytest.raises(CheckpointError, match=r"state\.pt|cannot be read"):
        load_checkpoint(run)


def test_exponent_overrides_read_as_numbers():
    recipe = load_recipe(TINY, overrides=["optimizer.weight_decay=1e-4", "label_smoothing=5e-2"])
    assert recipe.optimizer.weight_decay == 1e-4 and recipe.label_smoothing == 0.05
    with pytest.raises(RecipeError, match=r"optimizer\.weight_decay: expected float, got 'nan'"):
        load_recipe(TINY, overrides=["optimizer.weight_decay=nan"])


def test_a_train_split_smaller_than_one_batch_is_one_line(tmp_path):
    with pytest.raises(RecipeError, match=r"^batch_size: synthetic's train split holds 8 images, not one full "
                                          r"batch of 32; lower batch_size or add images$"):
        train_supernet(dict(TINY, batch_size=32, data={"name": "synthetic", "synthetic_size": 8}), tmp_path / "run")


def test_recipe_errors_name_the_field(tmp_path):
    with pytest.raises(RecipeError, match=r"<dict>: sampler\.name: expected one of single, sandwich"):
        load_recipe(dict(TINY, sampler={"name": "zigzag"}))
    with pytest.raises(RecipeError, match=r"<dict>: optimizer\.lrr: unknown key"):
        load_recipe(dict(TINY, optimizer={"lrr": 1.0}))
    with pytest.raises(RecipeError, match=r"epochs: expected int, got 'many'"):
        load_recipe(TINY, overrides=["epochs=many"])
    with pytest.raises(RecipeError, match=r"override 'epochs': expected key=value"):
        load_recipe(TINY, overrides=["epochs"])
    for override, message in (
        ("epochs=0", r"epochs: expected a positive integer, got 0$"),
        ("log_every=0", r"log_every: expected a positive integer, got 0$"),
        ("sampler.num_random=-1", r"sampler\.num_random: expected a non-negative integer, got -1$"),
        ("label_smoothing=1", r"label_smoothing: expected a number in \[0, 1\), got 1\.0$"),
        ("ema_decay=1.5", r"ema_decay: expected a number in \(0, 1\), or null, got 1\.5$"),
    ):
        with pytest.raises(RecipeError, match=message):
            load_recipe(TINY, overrides=[override])
    with pytest.raises(RecipeError, match=r"no such file, and not a shipped recipe"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(RecipeError, match=r"^tiny32_digit: .*did you mean tiny32_digits or tiny32_reducers_digits\?"):
        load_recipe("tiny32_digit")
    with pytest.raises(vitnas.VitnasError, match=r"cifar10: .* not found"):
        train_supernet(dict(TINY, data={"name": "cifar10", "root": str(tmp_path)}), tmp_path / "run")
    if not torch.cuda.is_available():
        with pytest.raises(RecipeError, match=r"precision: fp16 training needs a GPU"):
            train_supernet(dict(TINY, precision="fp16"), tmp_path / "run")
    with pytest.raises(RecipeError, match=r"data: synthetic has 3 classes but space tiny32 has 10"):
        train_supernet(dict(TINY, data={"name": "synthetic", "num_classes": 3}), tmp_path / "run")


@pytest.mark.parametrize("argv, message", [
    (["data.rooot=/x"], r"data\.rooot: unknown key \(known: name, root, "),
    (["data.synthetic_size=abc"], r"data\.synthetic_size: expected int, got 'abc'"),
    (["data.root=5"], r"data\.root: expected str or null, got 5"),
    (["data.synthetic_size=0", "data.name=synthetic"], r"data\.synthetic_size: expected a positive integer, got 0"),
    (["epochs=null"], r"epochs: expected int, got None"),
    (["sampler.name=multi", "sampler.variant=masked", "space=SPACE"],
     r"sampler\.variant: masked: stages\[0\] of space resize3 has no head_dim, so its heads are \[4, 6, 8, 12\]"),
])
def test_bad_recipe_input_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, argv, message):
    from tests.conftest import RESIZE3

    import yaml

    space_file = tmp_path / "resize3.yaml"
    space_file.write_text(yaml.safe_dump(RESIZE3))
    monkeypatch.setattr(sys.modules["vitnas.train.supernet"], "SuperViT", lambda *a, **k: pytest.fail("a supernet was built"))
    argv = [item.replace("SPACE", str(space_file)) for item in argv]
    assert main(["train", "tiny32_digits", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


def test_out_that_is_a_file_fails_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.modules["vitnas.train.supernet"], "build_supernet_context", lambda *args: pytest.fail("training started"))
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    assert main(["train", "tiny32_digits", "--out", str(taken)]) == 2
    assert capsys.readouterr().err == f"vitnas: error: --out {taken}: exists and is not a directory\n"
    assert main(["train", "tiny32_digits", "--out", str(taken / "run")]) == 2
    assert f"--out {taken / 'run'}: cannot be created" in capsys.readouterr().err


def test_duplicate_keys_in_a_recipe_file_are_refused(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("space: tiny32\nepochs: 3\nbatch_size: 8\nepochs: 30\n")
    with pytest.raises(RecipeError, match=r"recipe\.yaml: not valid YAML \(duplicate key 'epochs' at line 4\)$"):
        load_recipe(path)


def test_the_same_call_continues_another_recipe_is_refused_and_fresh_starts_over(tmp_path):
    """The run-directory convention (`vitnas.train.rundir`): a run is never overwritten by accident."""
    run, one_epoch = tmp_path / "run", dict(TINY, epochs=1)
    train_supernet(one_epoch, run)
    finished = load_checkpoint(run)["folder"]
    assert train_supernet(one_epoch, run)["epoch"] == 1 and load_checkpoint(run)["folder"] == finished  # nothing trains again
    other = dict(one_epoch, optimizer={"lr": 2e-3, "lr_per_512": None})
    with pytest.raises(RecipeError, match=rf"^{run}: was started with optimizer\.lr 0\.001, not 0\.002; give the "
                                          r"same settings to continue it, --fresh to start over, or another --out$"):
        train_supernet(other, run)
    with pytest.raises(RecipeError, match=r"already holds a run: leave resume unset to continue it"):
        train_supernet(one_epoch, run, resume=False)  # what the default was before
    assert train_supernet(one_epoch, run, overrides=["epochs=2"])["epoch"] == 2  # overrides apply to the stored recipe
    (run / "notes.txt").write_text("mine")
    (run / "tensorboard").mkdir(exist_ok=True)
    (run / "tensorboard" / "events.old").write_text("the first run's curves")
    assert train_supernet(other, run, fresh=True)["epoch"] == 1  # starts over with the other recipe
    assert not (run / "tensorboard" / "events.old").exists()  # its TensorBoard curves went with the log
    assert finished_epochs(run) == 1 and load_checkpoint(run)["recipe"].optimizer.lr == 2e-3
    assert (run / "notes.txt").read_text() == "mine"  # --fresh deletes the run's own files only
    assert '"epoch": 2' not in (run / "metrics.jsonl").read_text()  # the extended run's log went with it
    with pytest.raises(RecipeError, match=rf"^--resume: nothing to resume in {tmp_path / 'none'} \(no latest\)"):
        train_supernet(one_epoch, tmp_path / "none", resume=True)


@pytest.mark.parametrize("name", ["tiny32_digits", "tiny32_reducers_digits", "fmnist28_fmnist", "deit_small_supervit",
                                  "resnas_tiny"])
def test_shipped_recipes_validate_and_take_steps(tmp_path, name):
    """Each shipped recipe loads and trains two steps on tiny synthetic data (no checkpoint: deit's is 2 GB)."""
    from vitnas.train.loop import train_epoch
    from vitnas.train.supernet import build_supernet_context

    classes = vitnas.load_space(load_recipe(name).space).num_classes
    overrides = ["batch_size=2", "num_workers=0", f"data={{name: synthetic, synthetic_size: 4, num_classes: {classes}}}"]
    recipe = load_recipe(name, overrides)
    context = build_supernet_context(recipe)
    before = {k: v.clone() for k, v in context.model.state_dict().items()}
    assert train_epoch(context, 0, 0, tmp_path) == 2
    assert any(not torch.equal(before[k], v) for k, v in context.model.state_dict().items())


@pytest.mark.slow
def test_ddp_replicas_stay_identical(ddp_ranks):
    assert SUPERNET_RECIPE == dict(TINY, sampler={"name": "multi", "subnets": 3}, batch_size=12)
    out = ddp_ranks / "supernet"  # the session's one spawn trained it (tests/ddp_env.py)
    first = torch.load(out / "rank0.pt", weights_only=True)
    second = torch.load(out / "rank1.pt", weights_only=True)
    initial = vitnas.SuperViT(vitnas.load_space("tiny32"), drop_path_rate=0.1)
    changed = [k for k in first if not torch.equal(first[k], initial.state_dict()[k])]
    assert changed, "training changed nothing"
    assert all(torch.equal(first[k], second[k]) for k in first)
    # Validation is sharded over the ranks and summed: both report the single-process accuracy.
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    initial.load_state_dict(first)
    data = DataConfig(name="synthetic", synthetic_size=TINY["data"]["synthetic_size"])
    expected = vitnas.evaluate(initial.eval(), initial.space.largest(), data=data)
    assert reports[0] == reports[1] and reports[0]["val_top1_largest"] == pytest.approx(expected)


def test_ema_weights_are_saved_and_loadable(tmp_path, monkeypatch):
    """The saved EMA is the exponential average of the weights after each step, from the initial ones."""
    from timm.utils import ModelEmaV3

    decay, seen = 0.9, []
    original = ModelEmaV3.update
    monkeypatch.setattr(ModelEmaV3, "update", lambda self, model, step=None: seen.append(
        {k: v.detach().clone() for k, v in model.named_parameters()}) or original(self, model, step=step))
    train_supernet(dict(TINY, epochs=1, ema_decay=decay), tmp_path / "run")
    raw, _ = vitnas.load_supernet(tmp_path / "run")
    ema, _ = vitnas.load_supernet(tmp_path / "run", use_ema=True)
    torch.manual_seed(TINY.get("seed", 0))
    expected = dict(vitnas.SuperViT(vitnas.load_space("tiny32"), drop_path_rate=0.1).named_parameters())
    assert len(seen) == 3
    for weights_after_step in seen:
        expected = {k: decay * v + (1 - decay) * weights_after_step[k] for k, v in expected.items()}
    raw_weights, ema_weights = dict(raw.named_parameters()), dict(ema.named_parameters())
    assert all(torch.equal(raw_weights[k], v) for k, v in seen[-1].items())  # raw = the last step's weights
    for name, value in ema_weights.items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sampler, precision", [("sandwich", "bf16"), ("multi", "bf16"), ("sandwich", "fp16")])
def test_cuda_amp_training_runs_and_checkpoints(tmp_path, sampler, precision):
    metrics = train_supernet(dict(TINY, sampler={"name": sampler}, precision=precision), tmp_path / "run")
    supernet, space = vitnas.load_supernet(tmp_path / "run", map_location="cuda")
    assert next(supernet.parameters()).is_cuda
    data = DataConfig(name="synthetic", synthetic_size=TINY["data"]["synthetic_size"])
    fp32 = vitnas.evaluate(supernet, space.largest(), data=data)  # reduced-precision validation may flip an image
    assert metrics["step"] == 6 and abs(metrics["val_top1_largest"] - fp32) <= 2 / TINY["data"]["synthetic_size"]


@pytest.mark.slow
def test_sigkill_on_augmented_images_then_resume_equals_an_uninterrupted_run(tmp_path, image_folder):
    """A real `vitnas train` subprocess, SIGKILLed once its first checkpoint exists, resumed with ``--resume``."""
    command = ["train", "tiny32_digits", "epochs=4", "batch_size=10", "sampler.name=single", "eval_every=100",
               "data.name=imagefolder", f"data.root={image_folder}", "data.holdout=false"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = start_vitnas([*command, "--out", str(straight)], tmp_path / "straight.log")  # the two run side by side
    victim = start_vitnas([*command, "--out", str(killed)], tmp_path / "killed.log")
    kill_when(victim, lambda: (killed / "latest").is_file(), "first checkpoint", tmp_path / "killed.log")
    assert 1 <= finished_epochs(killed) < 4  # killed mid-run, its last good checkpoint in place
    finish(reference, tmp_path / "straight.log")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses: the same sums in the same order
    try:
        assert main(["train", "tiny32_digits", "--out", str(killed), "--resume"]) == 0  # to the recipe's 4 epochs
    finally:
        torch.set_num_threads(threads)
    assert finished_epochs(killed) == finished_epochs(straight) == 4 and not list(killed.glob(".ckpt-*"))
    assert_bitwise_equal(weights(killed), weights(straight))


def test_fp16_loss_scaling_step_order_on_cpu():
    """Loss scaling (scale each pass, unscale once, clip, scaler step) leaves the update of an unscaled step.

    Run in fp32 with CPU's GradScaler at a power-of-two scale, scaling is exact, so the
    weights after one step equal those of the same step without a scaler. Clipping the
    still-scaled gradients (no `unscale_` before clipping) would shrink the SGD update 1024-fold.
    """
    from vitnas.train.step import train_step
    from vitnas.train.supernet import build_supernet_context
    from vitnas.train.samplers import Pass, Piece

    recipe = load_recipe(dict(TINY, optimizer={"name": "sgd", "lr": 0.1, "lr_per_512": None, "grad_clip": 0.5},
                              schedule={"warmup_epochs": 0}))
    images, labels = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 10
    after = []
    for scaler in (torch.amp.GradScaler("cpu", init_scale=1024.0), None):
        context = build_supernet_context(recipe)
        context.scaler = scaler
        space = context.model.space
        plan = [Pass((Piece(space.largest(), 0, 8, "supervised", teacher=True),)),
                Pass((Piece(space.smallest(), 0, 8, "distilled"),))]
        before = {k: v.clone() for k, v in context.model.state_dict().items()}
        norm = []
        original_clip = torch.nn.utils.clip_grad_norm_
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, c: norm.append(original_clip(p, c)) or norm[-1])
            loss = train_step(context, images, labels, plan)
        assert torch.isfinite(loss) and norm[0] > recipe.optimizer.grad_clip  # the clip really acts
        after.append({k: v.clone() for k, v in context.model.state_dict().items()})
        if scaler is not None:
            assert scaler.get_scale() == 1024.0  # no overflow: scale kept, step taken
    updates = [{k: state[k] - before[k] for k in before} for state in after]
    assert max(update.abs().max().item() for update in updates[1].values()) > 1e-3  # a real step was taken
    for key in before:
        torch.testing.assert_close(updates[0][key], updates[1][key], rtol=1e-4, atol=1e-7, msg=key)

"""Fine-tuning an export folder, and standalone training: learning, exact resume, distillation, re-init, CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from ddp_env import STANDALONE_OVERRIDES
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import vitnas
from vitnas.cli import main
from vitnas.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vitnas.train.recipe import RecipeError, load_recipe
from vitnas.train.standalone import StandaloneTrainee, init_weights, train_standalone

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUIET = dict(latency_batches=())  # timing is covered once, by the CLI test
SYNTHETIC = ["data={name: synthetic, synthetic_size: 48}", "batch_size=16", "epochs=2", "log_every=1"]
FROZEN = ["optimizer.lr=0", "optimizer.weight_decay=0", "schedule.warmup_epochs=0", "schedule.min_lr=0"]  # lr 0


@pytest.fixture(scope="module")
def source(tmp_path_factory, spaces, supernets) -> Path:
    """tiny32's smallest sub-network, exported from a checkpoint of the seeded supernet with the digits recipe."""
    root = tmp_path_factory.mktemp("source")
    save_checkpoint(root / "run", 1, supernets["tiny32"].state_dict(), spaces["tiny32"], load_recipe("tiny32_digits"),
                    {}, {"epoch": 1, "step": 1})
    [folder] = vitnas.export_model(root / "run", "smallest", root / "export", **QUIET)
    return folder


@pytest.fixture(scope="module")
def teacher_run(source) -> Path:
    """The supernet checkpoint `source` came from: its largest sub-network teaches."""
    return source.parent / "run"


def state(folder_or_run: Path) -> dict[str, torch.Tensor]:
    """Weights of an export folder, or of a run's latest checkpoint."""
    if (folder_or_run / "config.json").is_file():
        return vitnas.load(folder_or_run).state_dict()
    return load_checkpoint(folder_or_run)["model"]


def config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def test_finetune_learns_and_exports_exactly_the_trained_weights(source, tmp_path):
    before = vitnas.evaluate(vitnas.load(source), data="digits")
    out = tmp_path / "ft"
    metrics = vitnas.finetune_model(source, out, overrides=["epochs=2", "schedule.warmup_epochs=0"], **QUIET)
    assert metrics["epoch"] == 2 and metrics["export"] == str(out / "export")
    assert metrics["val_top1"] > before + 0.05, (before, metrics)  # digits, with the recipe of the source supernet
    trained, exported, original = state(out), vitnas.load(out / "export"), state(source)
    assert all(torch.equal(trained[k], v) for k, v in exported.state_dict().items())  # the export is the run's end
    assert all(not torch.equal(original[k], trained[k]) for k in original)  # every tensor learned
    assert vitnas.evaluate(exported, data="digits") == metrics["val_top1"]  # the recorded top-1 is the export's
    config, first = config_of(out / "export"), config_of(source)
    record = config["finetune"]
    assert record["from"] == str(source.resolve()) and record["epochs"] == 2 and record["split"] == "val"
    assert record["val_top1"] == metrics["val_top1"] and record["recipe"]["optimizer"]["lr"] == 0.003
    assert config["arch"] == first["arch"] and config["macs"] == first["macs"] and config["params"] == first["params"]
    assert f"{metrics['val_top1']:.2%}" in (out / "export" / "README.md").read_text()
    checkpoint = out / (out / "latest").read_text().strip()
    assert (checkpoint / "model.json").is_file() and not (checkpoint / "space.yaml").exists()
    assert '"val_top1"' in (out / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match=r"holds a standalone model \(model\.json\), not a supernet"):
        vitnas.load_supernet(out)


def test_stopping_after_epoch_one_and_resuming_gives_identical_weights(source, tmp_path):
    settings = [*SYNTHETIC, "ema_decay=0.9", "mixup=0.5"]  # EMA and Mixup's numpy RNG must resume exactly too
    vitnas.finetune_model(source, tmp_path / "straight", overrides=settings, **QUIET)
    run = tmp_path / "resumed"
    vitnas.finetune_model(source, run, overrides=settings, **QUIET)
    # What a kill during epoch 2 leaves behind: the epoch-1 checkpoint is the latest one, no export yet.
    first = sorted(p.name for p in run.glob("ckpt-*"))[0]
    (run / "latest").write_text(first + "\n")
    shutil.rmtree(run / sorted(p.name for p in run.glob("ckpt-*"))[-1])
    shutil.rmtree(run / "export")
    assert load_checkpoint(run)["meta"]["epoch"] == 1
    vitnas.finetune_model(source, run, overrides=settings, **QUIET)  # the same call again continues the run
    for part in ("model", "ema"):
        straight, resumed = load_checkpoint(tmp_path / "straight")[part], load_checkpoint(run)[part]
        assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    weights = [(folder / "export" / "model.safetensors").read_bytes() for folder in (tmp_path / "straight", run)]
    assert weights[0] == weights[1]  # the exports hold the same (EMA) weights, byte for byte
    assert config_of(run / "export")["finetune"]["ema"] is True


def test_distillation_loss_is_the_kl_divergence_to_the_teacher(source, teacher_run):
    """One step's loss is KL(teacher || student), and differs from the label loss: the teacher is really used."""
    from vitnas.train.context import build_context
    from vitnas.train.step import train_step

    supernet, space = vitnas.load_supernet(teacher_run)
    teacher = vitnas.extract(supernet, space.largest()).eval()
    student = vitnas.load(source).train()
    recipe = load_recipe("tiny32_digits", [*SYNTHETIC, "schedule.warmup_epochs=0"])
    context = build_context(recipe, StandaloneTrainee(student, teacher), 0, 1, torch.device("cpu"))
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8) % 10
    with torch.no_grad():
        logits = student(images)
        distilled = F.kl_div(logits.log_softmax(-1), teacher(images).softmax(-1), reduction="batchmean")
        supervised = F.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)
    plan = context.trainee.plan(np.random.default_rng(0), 8)
    loss = train_step(context, images, labels, plan)
    torch.testing.assert_close(loss, distilled, rtol=1e-5, atol=1e-6)
    assert abs(loss.item() - supervised.item()) > 0.1


def test_finetune_with_a_teacher_trains_differently_and_records_it(source, teacher_run, tmp_path):
    overrides = [*SYNTHETIC, "epochs=1"]
    vitnas.finetune_model(source, tmp_path / "labels", overrides=overrides, **QUIET)
    vitnas.finetune_model(source, tmp_path / "taught", overrides=overrides, teacher=teacher_run, **QUIET)
    labels, taught = state(tmp_path / "labels"), state(tmp_path / "taught")
    assert any(not torch.equal(labels[k], taught[k]) for k in labels)
    record = config_of(tmp_path / "taught" / "export")["finetune"]
    assert record["teacher"] == str((teacher_run / "ckpt-0000001").resolve())
    assert "distilled from the largest sub-network" in (tmp_path / "taught" / "export" / "README.md").read_text()


def test_from_scratch_reinitialises_every_random_tensor(source, tmp_path):
    out = tmp_path / "scratch"
    vitnas.finetune_model(source, out, from_scratch=True, overrides=[*SYNTHETIC, "epochs=1", *FROZEN], **QUIET)
    trained, original = state(out), state(source)
    torch.manual_seed(0)  # the recipe's seed
    expected = init_weights(vitnas.ViT(vitnas.load(source).config)).state_dict()
    assert all(torch.equal(expected[k], trained[k]) for k in expected)  # lr 0: the weights are the initial ones
    random = [k for k, v in original.items() if v.numel() > 1 and v.std() > 0]
    assert random and all(not torch.equal(original[k], trained[k]) for k in random)
    assert config_of(out / "export")["finetune"]["from_scratch"] is True


def test_new_head_for_data_with_other_classes(source, tmp_path):
    out = tmp_path / "three"
    overrides = ["data={name: synthetic, synthetic_size: 48, num_classes: 3}", "batch_size=16", "epochs=1", *FROZEN]
    vitnas.finetune_model(source, out, num_classes=3, overrides=overrides, **QUIET)
    trained, original = state(out / "export"), state(source)
    assert trained["head.weight"].shape[0] == 3
    assert all(torch.equal(original[k], trained[k]) for k in original if not k.startswith("head."))
    config, first = config_of(out / "export"), config_of(source)
    last_dim = first["model"]["stages"][-1]["embed_dim"]
    assert config["num_classes"] == 3 and config["macs"] == first["macs"] - 7 * last_dim
    assert config["params"] == sum(v.numel() for v in trained.values())


def test_cli_finetunes_continues_refuses_other_settings_and_starts_over(source, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["finetune", str(source), "--out", str(out), "epochs=1", "data={name: synthetic, synthetic_size: 32}"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["epoch"] == 1 and result["export"] == str(out / "export")
    assert [m["batch"] for m in config_of(out / "export")["latency"]] == [1, 64]  # timed at export by default
    finished = load_checkpoint(out)["folder"]
    for again in (argv, [*argv, "--resume"]):  # finished: the export is written again, nothing trains
        assert main(again) == 0 and load_checkpoint(out)["folder"] == finished
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["val_top1"] == result["val_top1"]
    assert main([*argv, "--from-scratch"]) == 2
    assert capsys.readouterr().err.endswith(f"{out}: was started with from_scratch False, not True; give the same "
                                            "settings to continue it, --fresh to start over, or another --out\n")
    assert main([*argv, "--data", "digits"]) == 2  # the recipe is checked too (overrides apply to the stored one)
    assert "was started with data.name 'synthetic', not 'digits'" in capsys.readouterr().err
    assert main([*argv, "--from-scratch", "--fresh", "--latency-batch"]) == 0
    assert json.loads((out / "finetune.json").read_text())["from_scratch"] is True


@pytest.fixture(scope="module")
def recipeless(tmp_path_factory, supernets, spaces) -> Path:
    """An export of an in-memory supernet: it names no checkpoint, so no recipe to reuse."""
    folder = tmp_path_factory.mktemp("recipeless") / "model"
    vitnas.export_model(supernets["tiny32"], spaces["tiny32"].smallest(), folder, data="digits", **QUIET)
    return folder


@pytest.mark.parametrize("argv, message", [
    (["NOWHERE", "--out", "OUT"], r"NOWHERE: no such export folder"),
    (["BROKEN", "--out", "OUT"], r"BROKEN/config\.json: not valid JSON"),
    (["SOURCE", "--out", "OUT", "data={name: synthetic, num_classes: 3}"],
     r"data: synthetic has 3 classes but the model's head has 10 \(fine-tune with a new head: --num-classes N"),
    (["SOURCE", "--out", "OUT", "--data", "NOWHERE"], r"imagefolder: NOWHERE/train not found"),
    (["SOURCE", "--out", "OUT", "--teacher", "NOWHERE"], r"NOWHERE: no such directory"),
    (["SOURCE", "--out", "OUT", "--teacher", "TEACHER", "distill=false"], r"distill: false, but a teacher was given"),
    (["SOURCE", "--out", "OUT", "--resume"], r"--resume: nothing to resume in OUT \(no latest or export\)"),
    (["SOURCE", "--out", "OUT", "--num-classes", "0"], r"num_classes: expected a positive integer, got 0"),
    (["SOURCE", "--out", "OUT", "--recipe", "RECIPE"], r"data: the recipe trains on synthetic but .* was trained on "
                                                       r"digits; pass --data"),
    (["RECIPELESS", "--out", "OUT"], r"no recipe to reuse .*; pass --recipe"),
    (["SOURCE", "--out", "FILE"], r"--out FILE: exists and is not a directory"),
])
def test_bad_input_is_one_line(source, teacher_run, recipeless, tmp_path, capsys, argv, message):
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    (broken / "config.json").write_text("{")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data: {name: synthetic, synthetic_size: 16}\nepochs: 1\n")
    (tmp_path / "file").write_text("not a folder")
    names = {"NOWHERE": tmp_path / "nowhere", "BROKEN": broken, "SOURCE": source, "OUT": tmp_path / "out",
             "TEACHER": teacher_run, "RECIPE": recipe, "RECIPELESS": recipeless, "FILE": tmp_path / "file"}
    assert main(["finetune", *[str(names.get(item, item)) for item in argv]]) == 2
    err = capsys.readouterr().err
    for name, path in names.items():
        message = message.replace(name, re.escape(str(path)))
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "out" / "latest").exists()  # nothing trained


def test_export_settings_are_checked_before_training(source, tmp_path):
    with pytest.raises(vitnas.ExportError, match=r"format 'elastic': bundles several sub-networks"):
        vitnas.finetune_model(source, tmp_path / "out", formats=["elastic"])
    with pytest.raises(vitnas.ExportError, match=r"latency batch: expected a positive integer, got 0"):
        vitnas.finetune_model(source, tmp_path / "out", latency_batches=[0])
    assert not (tmp_path / "out").exists()


def test_train_standalone_trains_a_config_and_resumes_only_the_same_model(tmp_path, spaces):
    space = spaces["tiny32"]
    config = vitnas.vit_config(space, space.smallest())
    recipe = load_recipe("tiny32_digits", [*SYNTHETIC, "epochs=1"])
    metrics = train_standalone(config, recipe, tmp_path / "run")
    assert set(metrics) == {"epoch", "step", "val_top1"} and metrics["step"] == 3
    assert vitnas.train_standalone is train_standalone
    assert train_standalone(config, None, tmp_path / "run", resume=True) == metrics  # finished: nothing to do
    other = vitnas.vit_config(space, space.largest())
    with pytest.raises(CheckpointError, match=r"holds another model, not this run's model \(model\.json differs\)"):
        train_standalone(other, None, tmp_path / "run", resume=True)
    assert train_standalone(config, recipe, tmp_path / "run") == metrics  # the same call continues: nothing to do
    with pytest.raises(RecipeError, match=r"was started with epochs 1, not 2; give the same settings"):
        train_standalone(config, load_recipe("tiny32_digits", SYNTHETIC), tmp_path / "run")
    with pytest.raises(RecipeError, match=r"already holds a run: leave resume unset to continue it"):
        train_standalone(config, recipe, tmp_path / "run", resume=False)


@pytest.mark.slow
def test_ddp_replicas_of_a_standalone_model_stay_identical(ddp_ranks):
    expected = load_recipe("tiny32_digits", [*SYNTHETIC, "epochs=1", "batch_size=12"])
    assert load_recipe("tiny32_digits", STANDALONE_OVERRIDES) == expected
    out = ddp_ranks / "standalone"  # the session's one spawn trained it (tests/ddp_env.py)
    first, second = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(first[k], second[k]) for k in first)
    saved = load_file(str(out / "run" / (out / "run" / "latest").read_text().strip() / "model.safetensors"))
    assert all(torch.equal(first[k], saved[k]) for k in first)
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0] == reports[1] and reports[0]["step"] == 48 // 12


def test_standalone_training_applies_the_recipes_drop_path(spaces, tmp_path, monkeypatch):
    import importlib

    block = importlib.import_module("vitnas.nn.block")
    drawn, real_drop_path = [], block.drop_path

    def recording(x, rate, training):
        drawn.append((rate, training))
        return real_drop_path(x, rate, training)

    monkeypatch.setattr(block, "drop_path", recording)
    config = vitnas.vit_config(spaces["tiny32"], spaces["tiny32"].largest())
    train_standalone(config, load_recipe("tiny32_digits", [*SYNTHETIC, "epochs=1", "drop_path=0.3"]), tmp_path / "r")
    assert max(rate for rate, training in drawn if training) == pytest.approx(0.3)  # the deepest block's
    assert any(not training for rate, training in drawn)  # validation ran too, where it is the identity
    with pytest.raises(RecipeError, match=r"drop_path: expected a number in \[0, 1\), got"):
        load_recipe("tiny32_digits", ["drop_path=1.0"])

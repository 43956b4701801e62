"""Export folders: what goes in, what comes back out, and every way a folder can be refused."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import vitnas
from vitnas.cli import main
from vitnas.export.schema import sha256_hex
from vitnas.export.targets import Target, folder_names
from vitnas.export.timm_form import timm_call
from vitnas.train.checkpoint import save_checkpoint
from vitnas.train.recipe import load_recipe

HAS_ONNX = all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnxscript"))
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
QUIET = dict(latency_batches=())  # timing is covered once, by the CLI test


def images(space: vitnas.SearchSpace, batch: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, space.in_chans, space.img_size, space.img_size, generator=generator)


def siblings(path: Path) -> list[str]:
    """Everything beside `path` whose name starts with it (staging leftovers would)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.lstrip(".").startswith(path.name))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, spaces, supernets) -> Path:
    """A tiny32 checkpoint of the seeded (untrained) supernet, with the default digits recipe."""
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run, 1, supernets["tiny32"].state_dict(), spaces["tiny32"], load_recipe("tiny32_digits"), {},
                    {"epoch": 1, "step": 1})
    return run


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory, spaces, supernets) -> Path:
    """One exported tiny32 folder with token reduction, to damage in copies."""
    out = tmp_path_factory.mktemp("plain") / "model"
    arch = spaces["tiny32"].arch(embed_dim=64, num_heads=4, depth=3, keep_rate=0.5)
    vitnas.export_model(supernets["tiny32"], arch, out, data="digits", **QUIET)
    return out


# Archs covering token reduction, patch sizes, several stages and the resize patch mode.
ROUND_TRIP = {
    "tiny32": dict(embed_dim=48, depth=4, patch_size=4, keep_rate=0.5),
    "deit": dict(depth=10, embed_dim=192, num_heads=3, mlp_ratio=3.0, patch_size=32, keep_rate=0.7),
    "resnas": dict(depth=3, embed_dim=[160, 320, 640], num_heads=[3, 6, 6], patch_size=16, keep_rate=0.5),
    "resize3": dict(img_size=20, keep_rate=0.5),
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_export_then_load_gives_the_same_outputs(tmp_path, spaces, supernets, name):
    space, supernet = spaces[name], supernets[name]
    arch = space.arch(**ROUND_TRIP[name])
    [folder] = vitnas.export_model(supernet, arch, tmp_path / name, **QUIET)
    assert folder == tmp_path / name and sorted(p.name for p in folder.iterdir()) == \
        ["README.md", "config.json", "model.safetensors"]
    loaded = vitnas.load(folder)
    assert isinstance(loaded, vitnas.ViT) and not loaded.training
    x = images(space, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), vitnas.extract(supernet, arch)(x), rtol=0, atol=0)
        torch.testing.assert_close(loaded(x), supernet(x, arch), rtol=0, atol=1e-5)
    config = json.loads((folder / "config.json").read_text())
    assert vitnas.Arch.from_dict(config["arch"]) == arch
    assert config["params"] == vitnas.count_params(space, arch) == sum(p.numel() for p in loaded.parameters())
    assert config["macs"] == vitnas.count_macs(space, arch)
    assert config["formats"]["safetensors"]["check"]["max_abs_diff"] == 0.0
    assert config["input"] == {"image_size": space.img_size, "in_chans": 3, "note": config["input"]["note"]}
    assert "class_names" not in config  # an in-memory supernet without data: unknown


# A token-reduced tiny32 arch, and a three-stage resize-mode arch reducing tokens in its last stage.
FORMS = [("tiny32", dict(embed_dim=64, num_heads=4, keep_rate=0.5)), ("resize3", dict(img_size=20, keep_rate=0.5))]


@pytest.mark.parametrize("name, arch_kwargs", FORMS, ids=[name for name, _ in FORMS])
def test_torchscript_round_trip_at_batch_1_and_5(tmp_path, spaces, supernets, name, arch_kwargs):
    space = spaces[name]
    [folder] = vitnas.export_model(supernets[name], space.arch(**arch_kwargs), tmp_path / "m", formats=["torchscript"],
                                   **QUIET)
    entry = json.loads((folder / "config.json").read_text())["formats"]["torchscript"]
    assert entry["check"]["batches"] == [1, 5] and entry["check"]["max_abs_diff"] <= 1e-4
    assert entry["sha256"] == sha256_hex((folder / "model.ts").read_bytes())
    scripted, model = torch.jit.load(str(folder / "model.ts")), vitnas.load(folder)
    for batch in (1, 5):
        x = images(space, batch, seed=batch)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=1e-4)


@pytest.mark.slow  # torch's ONNX exporter takes ~5-10 s even for a tiny model
@pytest.mark.skipif(not HAS_ONNX, reason="needs onnxruntime and onnxscript")
@pytest.mark.parametrize("name, arch_kwargs", FORMS, ids=[name for name, _ in FORMS])
def test_onnx_round_trip_at_batch_1_and_5(tmp_path, spaces, supernets, name, arch_kwargs):
    import onnx
    import onnxruntime

    space = spaces[name]
    reducers = {shape.reducer for shape in vitnas.block_shapes(space, space.arch(**arch_kwargs))}
    assert "evit" in reducers  # this is evit's ONNX round trip (tests/test_reducers.py checks the other reducers)
    [folder] = vitnas.export_model(supernets[name], space.arch(**arch_kwargs), tmp_path / "m", formats=["onnx"],
                                   **QUIET)
    entry = json.loads((folder / "config.json").read_text())["formats"]["onnx"]
    assert entry["opset"] == {o.domain: o.version for o in onnx.load(str(folder / "model.onnx")).opset_import}[""]
    assert entry["check"]["batches"] == [1, 5] and entry["check"]["max_abs_diff"] <= 1e-4
    session, model = onnxruntime.InferenceSession(str(folder / "model.onnx")), vitnas.load(folder)
    assert session.get_inputs()[0].shape[0] == "batch"
    for batch in (1, 5):
        x = images(space, batch, seed=batch)
        with torch.no_grad():
            got = torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])
            torch.testing.assert_close(got, model(x), rtol=0, atol=1e-4)
    assert "| model.onnx |" in (folder / "README.md").read_text()


def test_timm_form_loads_with_the_recorded_call(tmp_path, spaces, supernets):
    import timm

    space = spaces["tiny32"]
    arch = space.arch(depth=3, embed_dim=64, num_heads=4, mlp_ratio=3.0, patch_size=8)
    [folder] = vitnas.export_model(supernets["tiny32"], arch, tmp_path / "m", formats=["timm"], data="digits", **QUIET)
    entry = json.loads((folder / "config.json").read_text())["formats"]["timm"]
    assert entry["check"]["max_abs_diff"] <= 1e-4 and entry["file"] == "timm_model.safetensors"
    model = eval(entry["call"], {"timm": timm, "DIR": str(folder)})  # the call exactly as recorded
    assert f"model = {entry['call']}" in (folder / "README.md").read_text()
    x = images(space, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), vitnas.load(folder)(x), rtol=0, atol=1e-5)
    assert timm.data.resolve_data_config(model=model)["mean"] == (0.5, 0.5, 0.5)  # preprocessing travels along


def test_timm_call_uses_a_named_model_where_the_shape_is_one():
    deit_small = dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=384, depth=12,
                      num_heads=6, mlp_ratio=4.0, qkv_bias=True, class_token=True, global_pool="token")
    assert timm_call(deit_small) == ("vit_small_patch16_224", {})
    assert timm_call({**deit_small, "num_classes": 10}) == ("vit_small_patch16_224", {"num_classes": 10})
    name, kwargs = timm_call({**deit_small, "embed_dim": 320, "num_heads": 5})
    assert name == "vit_base_patch16_224" and kwargs["embed_dim"] == 320 and kwargs["depth"] == 12


@pytest.mark.parametrize("name, arch_kwargs, message", [
    ("tiny32", dict(embed_dim=64, num_heads=4, keep_rate=0.5), r"^timm form: the model drops tokens"),
    ("resize3", dict(img_size=20), r"^timm form: the model resizes its 32 px inputs to 20 px"),
    ("resize3", dict(), r"^timm form: the model has 3 stages"),
])
def test_arch_timm_cannot_express_is_refused_and_nothing_is_left(tmp_path, spaces, supernets, name, arch_kwargs,
                                                                 message):
    out = tmp_path / "m"
    with pytest.raises(vitnas.ExportError, match=message) as error:
        vitnas.export_model(supernets[name], spaces[name].arch(**arch_kwargs), out, formats=["timm"], **QUIET)
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def _edit_config(folder: Path, change) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def _flip(folder: Path, offset: int) -> None:
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    data[offset + 1] ^= 0xFF
    path.write_bytes(bytes(data))


def _rewrite_weights(folder: Path, edit) -> None:
    """Changes model.safetensors and records its new size and hash, as a careless tool would."""
    path = folder / "model.safetensors"
    edit(path)
    _edit_config(folder, lambda c: c["weights"].update(bytes=path.stat().st_size,
                                                       sha256=sha256_hex(path.read_bytes())))


def _drop_tensor(path: Path) -> None:
    state = load_file(str(path))
    del state["norm.bias"]
    save_file(state, str(path))


def _add_tensor(path: Path) -> None:
    state = load_file(str(path))
    state["head.scale"] = torch.ones(1)
    save_file(state, str(path))


def _integer_tensor(path: Path) -> None:
    state = load_file(str(path))
    state["norm.bias"] = state["norm.bias"].to(torch.int32)
    save_file(state, str(path))


def _corrupt_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[10:14] = b"\xff\xfe\xfd\xfc"
    path.write_bytes(bytes(data))


DAMAGE = {
    "missing folder": (lambda f: shutil.rmtree(f), r"no such export folder"),
    "missing config": (lambda f: (f / "config.json").unlink(), r"no config\.json \(not a vitnas export folder\)"),
    "config not json": (lambda f: (f / "config.json").write_text("{'format': 1"), r"config\.json: not valid JSON"),
    "missing field": (lambda f: _edit_config(f, lambda c: c.pop("model")), r"config\.json: missing field 'model'"),
    "wrong type": (lambda f: _edit_config(f, lambda c: c["model"]["stages"][0].update(embed_dim="64")),
                   r"config\.json: model\.stages\[0\]\.embed_dim: expected a positive integer, got '64'"),
    "unknown field": (lambda f: _edit_config(f, lambda c: c["model"]["stages"][0]["blocks"][1].update(dropout=0.1)),
                      r"model\.stages\[0\]\.blocks\[1\]: unknown field 'dropout'"),
    "bad keep rate": (lambda f: _edit_config(f, lambda c: c["model"]["stages"][0]["blocks"][1].update(keep_rate=2)),
                      r"blocks\[1\]\.keep_rate: expected a number in \(0, 1\], got 2"),
    "future version": (lambda f: _edit_config(f, lambda c: c.update(format_version=2)),
                       r"format version 2 is newer than this vitnas reads \(1\); upgrade vitnas"),
    "not an export": (lambda f: _edit_config(f, lambda c: c.update(format="timm")),
                      r"format is 'timm', not 'vitnas\.export'"),
    "weights outside": (lambda f: _edit_config(f, lambda c: c["weights"].update(file="../model.safetensors")),
                        r"weights\.file: expected a file name inside the folder"),
    "wrong shape": (lambda f: _edit_config(f, lambda c: c["model"].update(num_classes=7)),
                    r"tensor 'head\.weight' has shape \[10, 64\], config\.json's model needs \[7, 64\]"),
    "missing tensor": (lambda f: _rewrite_weights(f, _drop_tensor), r"missing tensor 'norm\.bias'"),
    "extra tensor": (lambda f: _rewrite_weights(f, _add_tensor),
                     r"model\.safetensors: holds tensor 'head\.scale' that config\.json's model does not have$"),
    "integer tensor": (lambda f: _rewrite_weights(f, _integer_tensor),
                       r"model\.safetensors: tensor 'norm\.bias' is torch\.int32, expected floating point$"),
    "weights deleted": (lambda f: (f / "model.safetensors").unlink(),
                        r"model\.safetensors: missing \(config\.json names it as the weights\)$"),
    "truncated": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:-100]),
                  r"model\.safetensors: \d+ bytes, config\.json records \d+: the file is truncated or modified"),
    "header bytes flipped": (lambda f: _flip(f, 20), r"model\.safetensors: SHA-256 differs"),
    "data bytes flipped": (lambda f: _flip(f, (f / "model.safetensors").stat().st_size - 50),
                           r"model\.safetensors: SHA-256 differs"),
    "tampered with its hash": (lambda f: _rewrite_weights(f, _corrupt_header),
                               r"model\.safetensors: not a readable safetensors file"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_bad_folder_is_refused_in_one_line(tmp_path, plain_folder, case):
    damage, message = DAMAGE[case]
    folder = tmp_path / "copy"
    shutil.copytree(plain_folder, folder)
    vitnas.load(folder)  # the copy itself is fine
    damage(folder)
    with pytest.raises(vitnas.ExportError, match=message) as error:
        vitnas.load(folder)
    assert "\n" not in str(error.value)


@pytest.mark.slow  # a fresh interpreter importing torch and timm, shared with two other files
def test_load_imports_neither_the_supernet_nor_the_search_space(import_probe):
    """Loading a plain folder and running it (conftest's IMPORT_PROBE, first step) loads none of these."""
    assert import_probe["load"] == []


def _best_json(path: Path, space: vitnas.SearchSpace) -> tuple[list[dict], Path]:
    records = [
        {"name": "latency_ms<=4", "budget": {"latency_ms": 4.0}, "arch": space.arch(embed_dim=64).to_dict(),
         "accuracy": 0.9, "val_accuracy": 0.875, "macs": 1, "params": 1, "search_split": "minival",
         "report_split": "val"},
        {"name": "macs<=0.001G,params<=0.1M", "budget": {"max_macs": 1e6}, "accuracy": 0.5, "val_accuracy": 0.25,
         "arch": space.arch(embed_dim=32, depth=2, keep_rate=0.5).to_dict(), "macs": 1, "params": 1},
    ]
    path.write_text(json.dumps(records))
    return records, path


def test_cli_all_budgets_writes_one_checked_folder_each(tmp_path, tiny_run, spaces, capsys):
    records, best = _best_json(tmp_path / "best.json", spaces["tiny32"])
    out = tmp_path / "exports"
    assert main(["export", "--checkpoint", str(tiny_run), "--arch", str(best), "--out", str(out), "--all",
                 "--format", "torchscript"]) == 0
    folders = [out / "latency_ms_le_4", out / "macs_le_0.001G__params_le_0.1M"]
    assert capsys.readouterr().out.split() == [str(f) for f in folders]
    assert sorted(p.name for p in out.iterdir()) == sorted(f.name for f in folders)
    for folder, record in zip(folders, records):
        config = json.loads((folder / "config.json").read_text())
        assert config["name"] == record["name"] and config["arch"] == record["arch"]
        assert config["search"]["val_accuracy"] == record["val_accuracy"]
        assert config["class_names"] == [str(d) for d in range(10)] and config["input"]["mean"] == [0.5] * 3
        assert config["source"]["checkpoint"].endswith("ckpt-0000001") and config["source"]["data"] == "digits"
        assert [(m["batch"], m["dtype"], m["device"]) for m in config["latency"]] == [(1, "fp32", "cpu"),
                                                                                   (64, "fp32", "cpu")]
        card = (folder / "README.md").read_text()
        assert f"| val | {record['val_accuracy']:.2%} |" in card and "| 64 | fp32 | cpu |" in card
        assert "| model.ts |" in card
        x = images(spaces["tiny32"], 2)
        with torch.no_grad():
            torch.testing.assert_close(vitnas.load(folder)(x), torch.jit.load(str(folder / "model.ts"))(x))
    assert main(["export", "--checkpoint", str(tiny_run), "--arch", str(best), "--out", str(out), "--all"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"vitnas: error: {out}: already exists; export to a new folder, or replace it with --overwrite "
        "(overwrite=True in Python)"]


def test_budget_picks_one_record_and_a_missing_one_is_named(tmp_path, tiny_run, spaces, capsys):
    records, best = _best_json(tmp_path / "best.json", spaces["tiny32"])
    [folder] = vitnas.export_model(tiny_run, best, tmp_path / "second", budget=records[1]["name"], **QUIET)
    assert json.loads((folder / "config.json").read_text())["arch"] == records[1]["arch"]
    [folder] = vitnas.export_model(tiny_run, best, tmp_path / "first", **QUIET)
    assert json.loads((folder / "config.json").read_text())["name"] == records[0]["name"]
    argv = ["export", "--checkpoint", str(tiny_run), "--arch", str(best), "--out", str(tmp_path / "x")]
    assert main([*argv, "--budget", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vitnas: error: {best}: no budget named 'nope' (it holds 'latency_ms<=4', "
                   "'macs<=0.001G,params<=0.1M')"]
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(spaces["tiny32"].smallest().to_json())
    assert main(["export", "--checkpoint", str(tiny_run), "--arch", str(arch_file), "--out", str(tmp_path / "y"),
                 "--all"]) == 2
    assert "--budget and --all need a search's best.json" in capsys.readouterr().err
    assert main([*argv, "--ema"]) == 2
    assert "has no EMA weights (it was trained without ema_decay)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_existing_folder_is_refused_and_replaced_only_when_asked(tmp_path, spaces, supernets, monkeypatch, exchange):
    import vitnas.util.atomic as staging

    if not exchange:  # the path taken where the system cannot swap two folders atomically
        monkeypatch.setattr(staging, "_exchange", lambda first, second: False)
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    arch = spaces["tiny32"].smallest()
    with pytest.raises(vitnas.ExportError, match="already exists"):
        vitnas.export_model(supernets["tiny32"], arch, out, **QUIET)
    assert (out / "keep.txt").read_text() == "mine"
    vitnas.export_model(supernets["tiny32"], arch, out, overwrite=True, **QUIET)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert siblings(out) == ["m"]  # no staging or set-aside folder left behind


KILLED_EXPORT = """
import sys, time
import torch, vitnas, vitnas.util.atomic

def stall(folder, umask):  # in place of the final fsync: the folder is written, not yet put in place
    print("staged", flush=True)
    time.sleep(600)

vitnas.util.atomic._sync_tree = stall
torch.manual_seed(0)
space = vitnas.load_space("tiny32")
vitnas.export_model(vitnas.SuperViT(space).eval(), space.smallest(), sys.argv[1], latency_batches=())
"""


def test_a_killed_exports_staging_folder_goes_with_the_next_export_there_and_a_live_ones_stays(tmp_path, spaces,
                                                                                                supernets, caplog):
    import vitnas.util.atomic as atomic

    out = tmp_path / "m"
    process = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "staged", "the export did not get to its staging folder"
    finally:
        process.kill()
        process.wait()
    (killed,) = siblings(out)
    assert killed.startswith(f".m.{process.pid}-") and killed.endswith(".staging") and not out.exists()
    assert (tmp_path / killed / "model.safetensors").is_file()  # what a kill leaves: a full folder, never published
    live = Path(tempfile.mkdtemp(prefix=atomic._leftover_prefix(out), suffix=".staging", dir=tmp_path))  # this process's
    caplog.set_level("INFO", logger="vitnas.util.atomic")
    vitnas.export_model(supernets["tiny32"], spaces["tiny32"].smallest(), out, **QUIET)
    assert siblings(out) == sorted(["m", live.name])  # the killed export's folder is gone, the live one kept
    assert f"removed 1 folder a killed export left beside {out}" in caplog.text


def test_a_failed_check_fails_the_export_with_the_number_and_keeps_the_old_folder(tmp_path, spaces, supernets,
                                                                                  monkeypatch):
    import vitnas.export.writer as writer

    real = writer.write_torchscript

    def off_by_a_little(model, folder, inputs):
        entry = real(model, folder, inputs)
        entry["check"]["max_abs_diff"] = 3e-3
        return entry

    monkeypatch.setattr(writer, "write_torchscript", off_by_a_little)
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(vitnas.ExportError, match=r"^torchscript: model\.ts differs from the PyTorch model by "
                                                 r"0\.003 \(tolerance 0\.0001\); nothing was written$"):
        vitnas.export_model(supernets["tiny32"], spaces["tiny32"].smallest(), out, formats=["torchscript"],
                            overwrite=True, **QUIET)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and siblings(out) == ["m"]


def test_vit_config_from_dict_names_the_bad_field(spaces):
    good = vitnas.vit_config(spaces["resize3"], spaces["resize3"].largest()).to_dict()
    assert vitnas.ViTConfig.from_dict(json.loads(json.dumps(good))) == vitnas.ViTConfig.from_dict(good)
    cases = [
        (lambda d: d.pop("patch_size"), r"^ViTConfig: missing field 'patch_size'$"),
        (lambda d: d.update(depth=3), r"^ViTConfig: unknown field 'depth'"),
        (lambda d: d.update(img_size=32.0), r"^ViTConfig\.img_size: expected a positive integer, got 32\.0$"),
        (lambda d: d["stages"][1].update(grid=5), r"^ViTConfig\.stages\[1\]\.grid: expected 4 .*got 5$"),
        (lambda d: d["stages"][0]["blocks"][0].update(keep_rate=0.5),
         r"^ViTConfig\.stages\[0\]: only the last stage may drop tokens"),
        (lambda d: d.update(stages=[]), r"^ViTConfig\.stages: expected a non-empty list, got \[\]$"),
    ]
    for change, message in cases:
        data = json.loads(json.dumps(good))
        change(data)
        with pytest.raises(vitnas.ExportError, match=message):
            vitnas.ViTConfig.from_dict(data)


def test_budget_folder_names_are_safe_and_distinct(spaces):
    arch = spaces["tiny32"].smallest()
    names = ["latency_ms<=4", "macs<=1.3G,params<=10M", "../etc", "latency_ms<=4", None]
    assert folder_names([Target(arch, name) for name in names]) == [
        "latency_ms_le_4", "macs_le_1.3G__params_le_10M", "etc", "latency_ms_le_4-2", "arch-4"]


def test_one_format_list_feeds_every_verb():
    """export, finetune and run offer the forms of one list: a new form shows up in all three CLIs."""
    from vitnas.export import schema, writer
    from vitnas.pipeline.stages import RunSettings

    assert vitnas.export.FORMATS is schema.FORMATS is writer.FORMATS
    assert schema.MODEL_FORMATS == tuple(name for name in schema.FORMATS if name != "elastic")
    choices = {verb: _format_choices(verb) for verb in ("export", "finetune")}
    assert choices == {"export": schema.FORMATS, "finetune": schema.MODEL_FORMATS}
    assert set(RunSettings().formats) <= set(schema.MODEL_FORMATS)


def _format_choices(verb: str) -> tuple[str, ...]:
    """The ``--format`` choices `verb`'s own cli.py registers."""
    import argparse
    import importlib

    subparsers = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(f"vitnas.{verb}.cli").register(subparsers)
    return tuple(next(a for a in subparsers.choices[verb]._actions if a.dest == "formats").choices)


def test_export_verb_and_package_load_no_heavy_library():
    code = ("import sys\nimport vitnas, vitnas.export\nfrom vitnas.cli import main\n"
            "for argv in (['export', '--help'], ['export', '--format', 'pdf']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print([m for m in ('torch', 'timm', 'nni', 'sklearn') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"

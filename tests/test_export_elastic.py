"""Elastic bundles: one weight envelope, several operating points, each equal to its own export."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import vitnas
from vitnas.cli import main
from vitnas.export.elastic import ElasticViT
from vitnas.export.envelope import build_envelope
from vitnas.export.schema import sha256_hex
from vitnas.train.checkpoint import save_checkpoint
from vitnas.train.recipe import load_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = dict(latency_batches=())  # timing is covered once, by the CLI test

# Points per space: different depths, widths, per-block heads and MLP widths, patch sizes (tiny32: 4 is the
# 8x8 kernel PI-resampled, and its 8x8 grid resamples the position table), input sizes (resize3: one position
# table per grid, three stages) and keep rates.
POINTS = {
    "tiny32": {
        "latency_ms<=8": dict(embed_dim=64, depth=4, patch_size=4, keep_rate=0.5),
        "latency_ms<=2": dict(embed_dim=48, depth=3, num_heads=2, mlp_ratio=3.0, patch_size=8),
        "macs<=3M": dict(embed_dim=32, depth=2, num_heads=[[4, 2]], mlp_ratio=[[2.0, 4.0]], patch_size=4,
                          keep_rate=0.75),
    },
    "resize3": {
        "big": dict(img_size=32, keep_rate=0.5),
        "medium": dict(img_size=28, depth=[1, 2, 2], embed_dim=[24, 32, 32], keep_rate=0.75),
        "small": dict(img_size=20, depth=[1, 1, 2], embed_dim=[16, 24, 32], num_heads=2, mlp_ratio=[2.0, 1.5, 2.0]),
    },
}


def images(space: vitnas.SearchSpace, batch: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, space.in_chans, space.img_size, space.img_size, generator=generator)


def write_best_json(path: Path, space: vitnas.SearchSpace, points: dict[str, dict]) -> Path:
    """A search's best.json: one record per budget, with the evidence the export keeps."""
    records = [{"name": name, "budget": {"index": index}, "arch": space.arch(**kwargs).to_dict(),
                "accuracy": 0.5 + index / 10, "val_accuracy": 0.4 + index / 10, "search_split": "minival",
                "report_split": "val", "macs": 1, "params": 1} for index, (name, kwargs) in enumerate(points.items())]
    path.write_text(json.dumps(records))
    return path


def read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


@pytest.fixture(scope="module")
def elastic_supernets(spaces) -> dict[str, vitnas.SuperViT]:
    """Seeded, untrained supernets of the two small spaces (the session's deit supernet is not needed)."""
    torch.manual_seed(1)
    return {name: vitnas.SuperViT(spaces[name]).eval() for name in POINTS}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, spaces, elastic_supernets) -> dict[str, Path]:
    """One bundle per space, written from a best.json through `vitnas.export_model(..., formats=["elastic"])`."""
    root = tmp_path_factory.mktemp("bundles")
    written = {}
    for name, points in POINTS.items():
        best = write_best_json(root / f"{name}-best.json", spaces[name], points)
        [written[name]] = vitnas.export_model(elastic_supernets[name], best, root / name, formats=["elastic"], **QUIET)
    return written


@pytest.mark.parametrize("name", list(POINTS))
def test_every_point_equals_its_extracted_model_both_ways(bundles, spaces, elastic_supernets, name):
    space, supernet, folder = spaces[name], elastic_supernets[name], bundles[name]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    switchable = vitnas.load(folder)
    assert isinstance(switchable, ElasticViT) and not switchable.training
    assert switchable.points == tuple(POINTS[name]) and switchable.point == next(iter(POINTS[name]))
    config = read_config(folder)
    assert config["kind"] == "elastic" and [p["name"] for p in config["points"]] == list(POINTS[name])
    x = images(space, 3)
    for entry, (point, kwargs) in zip(config["points"], POINTS[name].items()):
        arch = space.arch(**kwargs)
        extracted = vitnas.extract(supernet, arch)
        plain = vitnas.load(folder, point=point)
        assert type(plain) is vitnas.ViT and plain.config == extracted.config and not plain.training
        with torch.no_grad():
            expected = extracted(x)
            torch.testing.assert_close(plain(x), expected, rtol=0, atol=0)
            torch.testing.assert_close(switchable.use(point)(x), expected, rtol=0, atol=0)
            torch.testing.assert_close(expected, supernet(x, arch), rtol=0, atol=1e-6)
        assert switchable.point == point and switchable.config == extracted.config
        assert vitnas.Arch.from_dict(entry["arch"]) == arch
        assert entry["params"] == vitnas.count_params(space, arch) and entry["macs"] == vitnas.count_macs(space, arch)
        assert entry["search"]["name"] == point
        assert entry["check"]["plain_max_abs_diff"] == entry["check"]["switched_max_abs_diff"] == 0.0


def test_a_point_loads_as_its_separate_export_and_the_size_report_counts_those_files(tmp_path, bundles, spaces,
                                                                                     elastic_supernets):
    space, folder = spaces["tiny32"], bundles["tiny32"]
    best = write_best_json(tmp_path / "best.json", space, POINTS["tiny32"])
    size = read_config(folder)["size"]
    x = images(space, 2, seed=3)
    for index, point in enumerate(POINTS["tiny32"]):
        [separate] = vitnas.export_model(elastic_supernets["tiny32"], best, tmp_path / f"p{index}", budget=point,
                                         **QUIET)
        ours, theirs = vitnas.load(folder, point=point), vitnas.load(separate)
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        assert all(torch.equal(ours.state_dict()[k], theirs.state_dict()[k]) for k in theirs.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
        assert size["separate_bytes"][point] == (separate / "model.safetensors").stat().st_size
    assert size["bundle_bytes"] == (folder / "model.safetensors").stat().st_size
    assert size["separate_total_bytes"] == sum(size["separate_bytes"].values())
    assert size["bundle_bytes"] < size["separate_total_bytes"]
    assert size["bundle_fraction"] == size["bundle_bytes"] / size["separate_total_bytes"]
    card = (folder / "README.md").read_text()
    assert all(f"| `{point}` |" in card for point in POINTS["tiny32"])
    assert f"the bundle is {size['bundle_fraction']:.1%} of the separate exports' size" in card


def test_the_envelope_is_the_largest_point_plus_only_what_another_patch_size_derives(tmp_path, spaces,
                                                                                     elastic_supernets):
    space = spaces["tiny32"]
    big = dict(embed_dim=64, depth=4, num_heads=4, mlp_ratio=4.0, patch_size=4)
    inside = dict(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, patch_size=4, keep_rate=0.5)
    other_patch = dict(embed_dim=48, depth=3, num_heads=2, mlp_ratio=2.0, patch_size=8)
    best = write_best_json(tmp_path / "best.json", space, {"big": big, "inside": inside})
    [folder] = vitnas.export_model(elastic_supernets["tiny32"], best, tmp_path / "nested", formats=["elastic"], **QUIET)
    config = read_config(folder)
    big_params = vitnas.count_params(space, space.arch(**big))
    assert config["envelope"]["params"] == config["size"]["envelope_params"] == big_params  # nothing added
    assert 0 < config["size"]["bundle_bytes"] - big_params * 4 < 8192  # the weights plus a header
    assert config["envelope"]["stages"][0]["depth"] == 4 and config["envelope"]["patch_sizes"] == [4]

    best = write_best_json(tmp_path / "best2.json", space, {"big": big, "other patch": other_patch})
    [folder] = vitnas.export_model(elastic_supernets["tiny32"], best, tmp_path / "two-patches", formats=["elastic"],
                                   **QUIET)
    grid = space.img_size // 8
    derived = 48 * 3 * 8 * 8 + (1 + grid * grid) * 48  # its own 8x8 kernel and 4x4-grid position table
    assert read_config(folder)["envelope"]["params"] == big_params + derived
    assert read_config(folder)["envelope"]["patch_sizes"] == [4, 8]


def test_switching_points_runs_views_of_the_envelope_and_gathers_only_narrower_qkv(bundles, spaces):
    model = vitnas.load(bundles["tiny32"])
    envelope = {tensor.untyped_storage().data_ptr() for tensor in model.envelope_tensors().values()}
    assert {p.untyped_storage().data_ptr() for p in model.parameters()} == envelope
    envelope_shapes = {key: tensor.shape for key, tensor in model.envelope_tensors().items()}
    running, gathered = {}, {}
    for point in model.points:
        running[point] = model.use(point).running_model()
        assert type(running[point]) is vitnas.ViT
        params = running[point].named_parameters()
        assert sum(p.numel() for p in running[point].parameters()) == read_point(bundles["tiny32"], point)["params"]
        copied = {name: p for name, p in params if p.untyped_storage().data_ptr() not in envelope}
        narrower = {f"stages.0.blocks.{i}.attn.qkv.{part}"
                    for i, block in enumerate(running[point].config.stages[0].blocks)
                    for part in ("weight", "bias")
                    if 3 * block.num_heads * block.head_dim < envelope_shapes[f"stages.0.blocks.{i}.attn.qkv.bias"][0]}
        assert set(copied) == narrower, f"{point}: only q/k/v narrower than the envelope's may be gathered"
        gathered[point] = sum(p.numel() for p in copied.values())
    assert all(model.use(point).running_model() is running[point] for point in model.points)  # kept: no rebuild
    assert gathered["latency_ms<=8"] == 0  # the widest point runs on views alone
    assert gathered["macs<=3M"] == 3 * 32 * (32 + 1)  # block 1: 2 of 4 stored heads (block 0 has all 4: a view)

    x = images(spaces["tiny32"], 2, seed=5)
    with torch.no_grad():
        first = model.use("latency_ms<=2")(x)
        model.use("macs<=3M")(x)
        torch.testing.assert_close(model.use("latency_ms<=2")(x), first, rtol=0, atol=0)
        double = model.to(torch.float64)  # moves the envelope once and rebuilds the views on it
        moved = {t.untyped_storage().data_ptr() for t in double.envelope_tensors().values()}
        assert all(p.dtype == torch.float64 for p in double.running_model().parameters())
        assert double.running_model().head.weight.untyped_storage().data_ptr() in moved
        torch.testing.assert_close(double(x.double()), first.double(), rtol=0, atol=1e-5)
    assert model.plain("macs<=3M").state_dict()["head.weight"].untyped_storage().data_ptr() not in moved


def read_point(folder: Path, name: str) -> dict:
    return next(p for p in read_config(folder)["points"] if p["name"] == name)


def test_points_from_different_supernets_do_not_make_an_envelope(spaces, elastic_supernets):
    space = spaces["tiny32"]
    torch.manual_seed(7)
    other = vitnas.SuperViT(space).eval()
    first = vitnas.extract(elastic_supernets["tiny32"], space.arch(embed_dim=64))
    second = vitnas.extract(other, space.arch(embed_dim=32, depth=2))
    with pytest.raises(vitnas.ExportError, match=r"^elastic: point '[ab]': .* differs by .* from the slice the other "
                                                 r"points share; the points must be first-k slices of one supernet$"):
        build_envelope({"a": (first.config, first.state_dict()), "b": (second.config, second.state_dict())})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, elastic_supernets, spaces) -> Path:
    """A tiny32 checkpoint of the seeded supernet, with the default digits recipe."""
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run, 1, elastic_supernets["tiny32"].state_dict(), spaces["tiny32"], load_recipe("tiny32_digits"),
                    {}, {"epoch": 1, "step": 1})
    return run


def test_cli_writes_a_bundle_from_a_checkpoint_and_best_json(tmp_path, tiny_run, spaces, capsys):
    best = write_best_json(tmp_path / "best.json", spaces["tiny32"], POINTS["tiny32"])
    out = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(tiny_run), "--arch", str(best), "--out", str(out),
                 "--format", "elastic", "--latency-batch", "1"]) == 0
    assert capsys.readouterr().out.split() == [str(out)]
    config = read_config(out)
    assert config["source"]["data"] == "digits" and config["class_names"] == [str(d) for d in range(10)]
    assert config["weights"]["sha256"] == sha256_hex((out / "model.safetensors").read_bytes())
    for point in config["points"]:
        assert [(m["batch"], m["dtype"], m["device"]) for m in point["latency"]] == [(1, "fp32", "cpu")]
        assert point["search"]["val_accuracy"] is not None
    card = (out / "README.md").read_text()
    assert "| `latency_ms<=8` | 4 / 32 | 4 | 64 |" in card and "ms at batch 1 fp32" in card
    assert main(["export", "--checkpoint", str(tiny_run), "--arch", str(best), "--out", str(out),
                 "--format", "elastic"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_bad_requests_are_refused_in_one_line_before_anything_is_written(tmp_path, spaces, elastic_supernets):
    space, supernet = spaces["tiny32"], elastic_supernets["tiny32"]
    best = write_best_json(tmp_path / "best.json", space, POINTS["tiny32"])
    one = write_best_json(tmp_path / "one.json", space, {"only": {}})
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(space.smallest().to_json())
    out = tmp_path / "out"
    cases = [
        (dict(arch=space.smallest()), r"^elastic: one arch given; a bundle holds several"),
        (dict(arch=arch_file), r"^elastic: .*arch\.json: expected a search's best\.json"),
        (dict(arch="largest"), r"^elastic: largest: expected a search's best\.json"),
        (dict(arch=one), r"^elastic: .*one\.json holds one budget; a bundle needs two or more"),
        (dict(arch=best, formats=["elastic", "torchscript"]),
         r"^elastic: cannot be combined with torchscript: those forms hold one fixed model each"),
        (dict(arch=best, budget="macs<=3M"), r"^elastic: a bundle holds every budget of best\.json; drop --budget"),
    ]
    for kwargs, message in cases:
        kwargs = {"formats": ["elastic"], **kwargs}
        with pytest.raises(vitnas.ExportError, match=message) as error:
            vitnas.export_model(supernet, kwargs.pop("arch"), out, **kwargs, **QUIET)
        assert "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.json", "best.json", "one.json"]


def test_a_failed_check_fails_the_export_and_leaves_nothing(tmp_path, spaces, elastic_supernets, monkeypatch):
    import vitnas.export.bundle as elastic

    monkeypatch.setattr(elastic, "max_difference", lambda run, model, inputs: 0.5)
    best = write_best_json(tmp_path / "best.json", spaces["tiny32"], POINTS["tiny32"])
    message = (r"^elastic: point 'latency_ms<=8' loaded plain differs from its extracted model by 0\.5 "
               r"\(tolerance 0\.0001\); nothing was written$")
    with pytest.raises(vitnas.ExportError, match=message):
        vitnas.export_model(elastic_supernets["tiny32"], best, tmp_path / "out", formats=["elastic"], **QUIET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json"]


def test_a_full_disk_fails_the_export_in_one_line_and_leaves_nothing(tmp_path, spaces, elastic_supernets,
                                                                     monkeypatch):
    import vitnas.export.bundle as elastic
    from safetensors import SafetensorError

    def no_space(*args, **kwargs):  # what safetensors raises when the disk fills
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(elastic, "save_file", no_space)
    best = write_best_json(tmp_path / "best.json", spaces["tiny32"], POINTS["tiny32"])
    message = rf"^disk full while writing {tmp_path}/out: free some space, or write to another disk$"
    with pytest.raises(vitnas.ExportError, match=message):
        vitnas.export_model(elastic_supernets["tiny32"], best, tmp_path / "out", formats=["elastic"], **QUIET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json"]


def test_unknown_points_are_named_with_the_known_ones(bundles, tmp_path, spaces, elastic_supernets):
    known = "'latency_ms<=8', 'latency_ms<=2', 'macs<=3M'"
    with pytest.raises(vitnas.ExportError, match=rf"^{bundles['tiny32']}: no operating point 'fast'; the bundle "
                                                 rf"holds {known}$"):
        vitnas.load(bundles["tiny32"], point="fast")
    with pytest.raises(vitnas.ExportError, match=rf"^no operating point 'fast'; the bundle holds {known}$"):
        vitnas.load(bundles["tiny32"]).use("fast")
    [plain] = vitnas.export_model(elastic_supernets["tiny32"], spaces["tiny32"].smallest(), tmp_path / "plain", **QUIET)
    with pytest.raises(vitnas.ExportError, match=r"holds one model, not an elastic bundle: drop point='fast'$"):
        vitnas.load(plain, point="fast")


def _edit_config(folder: Path, change) -> None:
    config = read_config(folder)
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def _widen_a_block(config: dict) -> None:
    config["points"][1]["model"]["stages"][0]["blocks"][0]["mlp_hidden"] = 4096


def _flip(folder: Path, offset: int) -> None:
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:-64]),
                  r"model\.safetensors: \d+ bytes, config\.json records \d+: the file is truncated or modified$"),
    "data bytes flipped": (lambda f: _flip(f, (f / "model.safetensors").stat().st_size - 50),
                           r"model\.safetensors: SHA-256 differs from the one config\.json records"),
    "point wider than the envelope": (
        lambda f: _edit_config(f, _widen_a_block),
        r"model\.safetensors: point 'latency_ms<=2' does not fit the envelope: its "
        r"stages\.0\.blocks\.0\.mlp\.fc1\.weight is \[4096, 48\], tensor 'stages\.0\.blocks\.0\.mlp\.fc1\.weight' "
        r"holds \[256, 64\]$"),
    "point removed": (lambda f: _edit_config(f, lambda c: c["points"].pop(0)),
                      r"model\.safetensors: tensor 'cls_token' has shape \[1, 1, 64\]; its points need \[1, 1, 48\] "
                      r"\(the smallest envelope holding them\)$"),
    "patch size without its kernel": (
        lambda f: _edit_config(f, lambda c: c["points"][2]["model"].update(patch_size=2)
                               or c["points"][2]["model"]["stages"][0].update(grid=16)),
        r"point 'macs<=3M' does not fit the envelope: it needs tensor 'patch_embed\.proj\.weight@patch2', which "
        r"the envelope lacks$"),
    "two points of one name": (lambda f: _edit_config(f, lambda c: c["points"][1].update(name="macs<=3M")),
                               r"points\[2\]\.name: 'macs<=3M' names two points$"),
    "no points": (lambda f: _edit_config(f, lambda c: c.update(points=[])),
                  r"config\.json: points: expected a non-empty list, got \[\]$"),
    "unknown kind": (lambda f: _edit_config(f, lambda c: c.update(kind="sparse")),
                     r"config\.json: kind: expected one of plain, elastic, got 'sparse'$"),
    "bad point model": (lambda f: _edit_config(f, lambda c: c["points"][0]["model"].update(img_size=-1)),
                        r"config\.json: points\[0\]\.model\.img_size: expected a positive integer, got -1$"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_bundle_is_refused_in_one_line(tmp_path, bundles, case):
    damage, message = DAMAGE[case]
    folder = tmp_path / "copy"
    shutil.copytree(bundles["tiny32"], folder)
    vitnas.load(folder)  # the copy itself is fine
    damage(folder)
    for point in (None, "macs<=3M"):
        with pytest.raises(vitnas.ExportError, match=message) as error:
            vitnas.load(folder, point=point)
        assert "\n" not in str(error.value)


@pytest.mark.slow  # a fresh interpreter importing torch and timm, shared with two other files
def test_loading_a_bundle_imports_neither_the_supernet_nor_the_search_space(import_probe):
    """Loading a bundle and running each point, and one point as a plain model (conftest's IMPORT_PROBE)."""
    assert import_probe["load_bundle"] == []


def test_envelope_shapes_take_the_largest_extent_of_each_dimension(bundles, spaces):
    from safetensors.torch import load_file

    stored = load_file(str(bundles["resize3"] / "model.safetensors"))
    configs = [vitnas.vit_config(spaces["resize3"], spaces["resize3"].arch(**kwargs))
               for kwargs in POINTS["resize3"].values()]
    widest = max(c.stages[2].embed_dim for c in configs)
    depth = max(len(c.stages[1].blocks) for c in configs)
    assert stored["norm.weight"].shape == (widest,)
    assert f"stages.1.blocks.{depth - 1}.attn.qkv.weight" in stored and f"stages.1.blocks.{depth}.norm1.weight" \
        not in stored
    grids = sorted({c.stages[0].grid for c in configs})
    assert sorted(int(k.split("@grid")[1]) for k in stored if k.startswith("stages.0.pos_embed@")) == grids
    attn = max(c.stages[1].blocks[0].num_heads * c.stages[1].blocks[0].head_dim for c in configs)
    assert stored["stages.1.blocks.0.attn.qkv.weight"].shape == (3 * attn, max(c.stages[1].embed_dim for c in configs))
    assert math.prod(stored["stages.2.reduction.conv.weight"].shape) == widest * max(
        c.stages[1].embed_dim for c in configs) * 9


def test_eval_and_latency_measure_run_the_point_named_and_say_which(bundles, monkeypatch, capsys):
    import importlib

    loading = importlib.import_module("vitnas.export.load")  # vitnas.export.load is also the function's name
    bundle, names = bundles["tiny32"], list(POINTS["tiny32"])
    configs = {name: vitnas.load(bundle).point_config(name) for name in names}
    real_load, loaded = loading.load, []
    monkeypatch.setattr(loading, "load", lambda *args, **kwargs: loaded.append(real_load(*args, **kwargs)) or loaded[-1])
    assert main(["eval", str(bundle), "--data", "synthetic", "--point", names[1]]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["point"] == names[1] and loaded[-1].config == configs[names[1]]
    assert result["top1"] == vitnas.evaluate(real_load(bundle, point=names[1]), data="synthetic")
    assert main(["eval", str(bundle), "--data", "synthetic"]) == 0
    assert json.loads(capsys.readouterr().out)["point"] == names[0]  # the default, named rather than silent
    timing = ["--warmup", "1", "--repeats", "3"]
    assert main(["latency", "measure", "--model", str(bundle), "--point", names[2], *timing]) == 0
    assert loaded[-1].config == configs[names[2]]
    assert capsys.readouterr().out.rstrip().endswith(f"{bundle} point {names[2]}")
    known = ", ".join(map(repr, names))
    for argv in (["eval", str(bundle), "--point", "nope"],
                 ["latency", "measure", "--model", str(bundle), "--point", "nope", *timing]):
        assert main(argv) == 2
        assert capsys.readouterr().err == f"vitnas: error: {bundle}: no operating point 'nope'; the bundle holds {known}\n"
    assert main(["latency", "measure", "--space", "tiny32", "--arch", "largest", "--point", names[0], *timing]) == 2
    assert capsys.readouterr().err == ("vitnas: error: latency measure: --point names an elastic bundle's operating "
                                       "point; it goes with --model\n")

"""Search spaces: loading, the named errors for bad files, sampling and canonical archs."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import yaml

import vitnas
from conftest import RESIZE3, space_dict


def test_shipped_spaces_load(spaces):
    assert set(vitnas.shipped_spaces()) >= {"tiny32", "deit", "resnas"}
    assert spaces["tiny32"].num_classes == 10 and spaces["deit"].num_classes == 1000
    assert len(spaces["resnas"].stages) == 3


def test_deit_space_holds_the_deit_shapes(spaces):
    space = spaces["deit"]
    for dim, heads in ((192, 3), (384, 6), (768, 12)):
        arch = space.arch(depth=12, embed_dim=dim, num_heads=heads, mlp_ratio=4.0, patch_size=16)
        assert arch.stages[0].num_heads == (heads,) * 12 and arch.stages[0].keep_rate == (1.0,) * 12
        assert vitnas.vit_config(space, arch).stages[0].blocks[0].head_dim * heads == dim
    assert {14, 16, 32} <= set(space.spec.patch.sizes)
    assert space.stages[0].token_reduction.blocks == (3, 6, 9)


def test_arch_builder_defaults_to_largest(spaces):
    space = spaces["resnas"]
    assert space.arch() == space.largest()
    arch = space.arch(depth=(5, 6, 5), embed_dim=(176, 352, 704), num_heads=(4, 8, 12), patch_size=16)
    assert [s.depth for s in arch.stages] == [5, 6, 5]
    assert arch.stages[1].num_heads == (8,) * 6 and arch.stages[2].mlp_ratio == (3.0,) * 5
    assert arch.stages[2].keep_rate == (1.0,) * 5


def test_arch_builder_names_a_bad_value(spaces):
    with pytest.raises(vitnas.ArchError, match=r"stages\[0\]\.embed_dim: 385 is not one of"):
        spaces["deit"].arch(embed_dim=385)
    with pytest.raises(vitnas.ArchError, match=r"depth: expected one value or 3"):
        spaces["resnas"].arch(depth=(3, 4))


def test_samples_lie_in_space_and_repeat_with_seed(spaces):
    for space in spaces.values():
        first = [space.sample(np.random.default_rng(7)) for _ in range(20)]
        again = [space.sample(np.random.default_rng(7)) for _ in range(20)]
        assert first == again
        for arch in first:
            space.validate(arch)
        space.validate(space.largest())
        space.validate(space.smallest())


def test_largest_costs_most_and_smallest_least(spaces, rng):
    for space in spaces.values():
        top, bottom = vitnas.count_macs(space, space.largest()), vitnas.count_macs(space, space.smallest())
        for _ in range(50):
            assert bottom <= vitnas.count_macs(space, space.sample(rng)) <= top


def test_inactive_choices_are_canonical(spaces):
    space = spaces["tiny32"]
    sample = dict(space.mutables.default())
    sample["stage0.depth"] = 2
    other = dict(sample)
    other["stage0.block3.num_heads"] = 4 if sample["stage0.block3.num_heads"] == 2 else 2
    other["stage0.block2.keep_rate"] = 0.5 if sample["stage0.block2.keep_rate"] != 0.5 else 1.0
    assert space.arch_from_sample(sample) == space.arch_from_sample(other)
    assert hash(space.arch_from_sample(sample)) == hash(space.arch_from_sample(other))


def test_size_counts_distinct_archs():
    tiny = {
        "img_size": 8, "num_classes": 2, "patch": {"mode": "flexi", "sizes": [2, 4]},
        "stages": [{"depth": [1, 2], "embed_dim": [4, 8], "num_heads": [1, 2], "mlp_ratio": [1.0, 2.0],
                    "token_reduction": {"blocks": [1], "keep_rates": [0.5, 1.0]}}],
    }
    space = vitnas.load_space(tiny)
    distinct = {space.arch_from_sample(sample) for sample in space.mutables.grid()}
    assert space.size() == len(distinct) == 2 * 2 * (4 + 4 * 4 * 2)


def test_mutate_and_crossover_stay_in_space(spaces, rng):
    for space in spaces.values():
        a, b = space.sample(rng), space.sample(rng)
        assert space.mutate(a, 0.0, rng) == a
        assert space.mutate(a, 1.0, np.random.default_rng(1)) == space.mutate(a, 1.0, np.random.default_rng(1))
        for _ in range(10):
            space.validate(space.mutate(a, 0.3, rng))
            child = space.crossover(a, b, rng)
            space.validate(child)
        assert space.crossover(a, a, rng) == a


def test_validate_names_the_field(spaces):
    space = spaces["deit"]
    good = space.arch(depth=12, embed_dim=384, num_heads=6, mlp_ratio=4.0, patch_size=16).to_dict()
    cases = [
        (("patch_size",), 15, r"^patch_size: 15 is not one of \[14, 16, 32\]$"),
        (("img_size",), 256, r"^img_size: 256"),
        (("stages", 0, "embed_dim"), 100, r"^stages\[0\]\.embed_dim: 100"),
        (("stages", 0, "num_heads", 5), 9, r"^stages\[0\]\.num_heads\[5\]: 9 is not one of"),
        (("stages", 0, "mlp_ratio", 0), 2.0, r"^stages\[0\]\.mlp_ratio\[0\]: 2\.0"),
        (("stages", 0, "keep_rate", 3), 0.6, r"^stages\[0\]\.keep_rate\[3\]: 0\.6 is not one of"),
        (("stages", 0, "keep_rate", 4), 0.5, r"^stages\[0\]\.keep_rate\[4\]: block 4 drops no tokens"),
    ]
    for path, value, message in cases:
        data = copy.deepcopy(good)
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(vitnas.ArchError, match=message):
            space.validate(vitnas.Arch.from_dict(data))
    too_deep = copy.deepcopy(good)
    for key in ("num_heads", "mlp_ratio", "keep_rate"):
        too_deep["stages"][0][key] = too_deep["stages"][0][key] * 2
    with pytest.raises(vitnas.ArchError, match=r"^stages\[0\]\.depth: 24 is not one of"):
        space.validate(vitnas.Arch.from_dict(too_deep))
    with pytest.raises(vitnas.ArchError, match=r"^stages: the space has 3 stages, the arch 1$"):
        spaces["resnas"].validate(space.largest())


def test_supernet_refuses_arch_outside_space(spaces, supernets):
    import torch

    with pytest.raises(vitnas.ArchError, match=r"^img_size: 224 is not one of \[32\]$"):
        supernets["tiny32"](torch.zeros(1, 3, 32, 32), spaces["deit"].smallest())


def _stage(**changes):
    stage = copy.deepcopy(RESIZE3["stages"][0])
    stage.update(changes)
    return stage


BAD_SPACES = [
    (space_dict(img_size=-3), r"img_size: expected a positive integer, got -3"),
    (space_dict(colour="red"), r"top level: unknown key 'colour'"),
    (space_dict(patch={"mode": "flexi", "sizes": [5]}), r"patch\.sizes: patch size 5 does not tile the 32x32 image"),
    (space_dict(patch={"mode": "warp", "sizes": [4]}), r"patch\.mode: expected one of flexi, resize, got 'warp'"),
    (space_dict(patch={"mode": "resize", "sizes": [4, 8]}), r"patch\.sizes: resize mode shares one kernel"),
    (space_dict(patch={"mode": "flexi", "sizes": [4], "kernal_size": 4}), r"patch: unknown key 'kernal_size'"),
    (space_dict(stages=[_stage(num_heads=[3])]), r"stages\[0\]\.num_heads: 3 heads do not divide embed_dim 16"),
    (space_dict(stages=[_stage(dpeth=[2])]), r"stages\[0\]: unknown key 'dpeth'"),
    (space_dict(stages=[_stage(depth=[0, 2])]), r"stages\[0\]\.depth: expected positive integers, got 0"),
    (space_dict(stages=[_stage(depth=[2, 2])]), r"stages\[0\]\.depth: repeated choice"),
    (space_dict(stages=[_stage(embed_dim="wide")]), r"stages\[0\]\.embed_dim: expected positive integers"),
    (space_dict(stages=[_stage(num_heads=[[2], [2], [4]])]), r"stages\[0\]\.num_heads: gives 3 per-block"),
    (space_dict(stages=[_stage(token_reduction={"blocks": [0], "keep_rates": [1.5, 1.0]})]),
     r"stages\[0\]\.token_reduction\.keep_rates: keep rate 1\.5 is outside \(0, 1\]"),
    (space_dict(stages=[_stage(token_reduction={"blocks": [0], "keep_rates": [0.0, 1.0]})]),
     r"keep_rates: keep rate 0\.0 is outside \(0, 1\]"),
    (space_dict(stages=[_stage(token_reduction={"blocks": [5], "keep_rates": [0.5]})]),
     r"stages\[0\]\.token_reduction\.blocks: block 5 is not a block index in \[0, 2\)"),
    (space_dict(stages=[_stage(token_reduction={"blocks": [0], "keep_rates": [0.5], "reducer": "magic"})]),
     r"token_reduction\.reducer: expected one of evit"),
    (space_dict(stages=[_stage(token_reduction={"blocks": [0], "keep_rates": [0.5]}), _stage()]),
     r"stages\[0\]\.token_reduction: only the last stage may drop tokens"),
    (space_dict(stages=[]), r"stages: expected a list of 1 to 4 stages"),
    (space_dict(stages=[_stage()] * 5), r"stages: expected a list of 1 to 4 stages"),
    (space_dict(patch={"mode": "flexi", "sizes": [4], "img_sizes": [8]}, stages=[_stage()] * 3),
     r"patch\.sizes: patch 4 on 8px gives a 2x2 grid, too small for 2 spatial reductions"),
    ({k: v for k, v in RESIZE3.items() if k != "num_classes"}, r"num_classes: missing required field"),
    # A misspelt required key is named as unknown, not reported as the missing key it should have been.
    (space_dict(stages=[{("embed_dims" if k == "embed_dim" else k): v for k, v in _stage().items()}]),
     r"stages\[0\]: unknown key 'embed_dims' \(did you mean 'embed_dim'\?"),
]


@pytest.mark.parametrize("data, message", BAD_SPACES, ids=[m[:40] for _, m in BAD_SPACES])
def test_bad_space_file_names_file_field_and_reason(tmp_path, data, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(vitnas.SpaceError) as error:
        vitnas.load_space(str(path))
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert re.search(message, text), text


def test_unreadable_or_missing_space_files(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages: [\n  - depth: [1\n")
    with pytest.raises(vitnas.SpaceError, match=r"broken\.yaml: not valid YAML \(.*at line \d+\)"):
        vitnas.load_space(broken)
    with pytest.raises(vitnas.SpaceError, match=r"no such file, and not a shipped space \(shipped: deit"):
        vitnas.load_space(tmp_path / "missing.yaml")
    shipped = "deit, fmnist28, resnas, tiny32, tiny32_reducers"
    with pytest.raises(vitnas.SpaceError, match=rf"^tiny23: .*\(did you mean tiny32\? shipped: {shipped}\)$"):
        vitnas.load_space("tiny23")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(vitnas.SpaceError, match=r"list\.yaml: top level: expected a mapping"):
        vitnas.load_space(listed)


def test_duplicate_keys_in_a_space_file_are_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump(RESIZE3, sort_keys=False).replace("num_classes: 7\n", "num_classes: 7\nnum_classes: 9\n"))
    with pytest.raises(vitnas.SpaceError) as error:
        vitnas.load_space(path)
    assert str(error.value) == f"{path}: not valid YAML (duplicate key 'num_classes' at line 5)"


def test_keep_rate_given_per_stage_or_per_block(spaces):
    space = spaces["resize3"]
    per_stage = space.arch(depth=(2, 2, 3), keep_rate=(1.0, 1.0, 0.5))
    assert per_stage.stages[2].keep_rate == (0.5, 1.0, 0.5)  # blocks 0 and 2 reduce tokens
    per_block = space.arch(depth=(2, 2, 3), keep_rate=((1.0, 1.0), (1.0, 1.0), (0.75, 1.0, 0.5)))
    assert per_block.stages[2].keep_rate == (0.75, 1.0, 0.5)
    with pytest.raises(vitnas.ArchError, match=r"stages\[2\]\.keep_rate\[1\]: block 1 drops no tokens"):
        space.arch(depth=(2, 2, 3), keep_rate=((1.0, 1.0), (1.0, 1.0), (0.5, 0.5, 0.5)))

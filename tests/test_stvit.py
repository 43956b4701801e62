"""STViT semantic tokens (`stvit`) and STViT-R (`stvit_r`): pooling, multi-stage use, masked passes, costs, search.

What every reducer must do (counts, extraction, TorchScript, ONNX, bf16) is in test_reducers.py, which
covers both names through its COUNTS table.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import vitnas
from vitnas.latency.features import FEATURES, feature_row
from vitnas.latency.predictor import LatencyPredictor
from vitnas.nn.reducers import get_reducer
from vitnas.nn.reducers.stvit import pool_tokens, pooling_windows
from vitnas.space.cost import stage_finish_macs
from vitnas.supernet.masked import masked_forward
from vitnas.train.checkpoint import load_checkpoint

from test_reducer_choice import check_extraction_and_costs, choice_space
from test_reducers import tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_pooling_gives_any_count_and_is_adaptive_max_pooling_on_squares():
    for count in (16, 20, 196):
        for pooled in range(1, count + 1):
            windows = pooling_windows(count, pooled)
            assert len(windows) == pooled and all(windows), (count, pooled)
            assert set().union(*map(set, windows)) == set(range(count)), (count, pooled)  # every token is pooled
    x = torch.randn(2, 14 * 14, 8)
    grid = x.transpose(1, 2).reshape(2, 8, 14, 14)
    for side in (2, 4, 7):  # 16 of DeiT-S's 196 tokens: STViT's adaptive max pooling to 4 x 4
        expected = F.adaptive_max_pool2d(grid, side).flatten(2).transpose(1, 2)
        assert torch.equal(pool_tokens(x, side * side), expected)


def test_deit_s_token_counts_and_costs_come_from_the_reducer():
    stvit = get_reducer("stvit")
    counts = [197]
    for _ in range(3):  # keep 0.7 at three blocks, as at DeiT-S's blocks 4, 7 and 10
        counts.append(stvit.tokens_after(counts[-1], 0.7))
    assert counts == [197, 1 + 138, 1 + 97, 1 + 68]  # 196 -> ceil(0.7 * 196) semantic tokens, then pooled further
    # refinement: q of 138 centres, k/v of 196 tokens, both products, projection
    assert stvit.extra_macs(197, 0.7, 384, 6, 64) == 2 * 138 * 384**2 + 2 * 196 * 384**2 + 2 * 138 * 196 * 384
    recovery = get_reducer("stvit_r").finish_macs(197, 1 + 68, 384, 6, 64)
    assert recovery == 2 * 196 * 384**2 + 2 * 68 * 384**2 + 2 * 196 * 68 * 384 and stvit.finish_macs(197, 69, 384, 6,
                                                                                                      64) == 0


def test_stvit_r_before_a_spatial_reduction_extracts_exactly_and_gives_the_grid_back():
    space = tiny_space("stvit_r", stages=2, reduce_in=(0, 1))  # resnas-style: two stages, a spatial reduction
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).eval()
    archs = [space.arch(patch_size=4, depth=3, keep_rate=0.5),
             space.arch(patch_size=4, depth=[3, 2], num_heads=[[2, 1, 2], [1, 2]], keep_rate=[[0.75, 1.0, 0.5],
                                                                                             [0.5, 1.0]]),
             space.arch(patch_size=8, depth=3, keep_rate=[0.5, 1.0]), space.smallest()]
    for arch in archs:
        check_extraction_and_costs(supernet, arch)
    with torch.no_grad():
        tokens = vitnas.extract(supernet, archs[0]).forward_features(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 1 + 4 * 4, 24)  # stage 1's whole grid, recovered
    assert vitnas.count_macs(space, archs[0]) < vitnas.count_macs(space, space.arch(patch_size=4, depth=3))


def test_stvit_before_a_spatial_reduction_is_refused_in_one_line():
    with pytest.raises(vitnas.SpaceError, match=r"^<dict>: stages\[0\]\.token_reduction: only the last stage may drop "
                                                r"tokens with reducer stvit: the spatial reduction after it needs the "
                                                r"full grid; reducers that keep the grid may: evo_vit, stvit_r$"):
        tiny_space("stvit", stages=2, reduce_in=(0,))
    space = tiny_space("stvit_r", stages=2, reduce_in=(0, 1))
    data = vitnas.vit_config(space, space.arch(patch_size=4, depth=3, keep_rate=0.5)).to_dict()
    for block in (0, 2):
        data["stages"][0]["blocks"][block]["reducer"] = "stvit"
    with pytest.raises(vitnas.ExportError, match=r"^ViTConfig\.stages\[0\]: only the last stage may drop tokens "
                                                 r"\(keep_rate < 1\) with reducer stvit$"):
        vitnas.ViTConfig.from_dict(data)


@pytest.mark.parametrize("reducer, reduce_in", [("stvit", (1,)), ("stvit_r", (0, 1))])
def test_masked_pass_equals_the_sliced_pass(reducer, reduce_in):
    space = tiny_space(reducer, stages=2, reduce_in=reduce_in)
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).eval()
    archs = [space.arch(patch_size=4, depth=3, embed_dim=24, keep_rate=0.5),  # one pass with the next
             space.arch(patch_size=4, depth=[3, 2], embed_dim=16, num_heads=1, keep_rate=0.5)]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        masked = masked_forward(supernet, x, archs, [2, 2])
        sliced = supernet.forward_multi(x, archs, [2, 2])
    torch.testing.assert_close(masked, sliced, rtol=0, atol=1e-5)


def test_latency_terms_count_the_recovery(rng):
    data = choice_space(stages=2, reducer=["evit", "stvit", "stvit_r"])
    data["stages"][0]["token_reduction"]["reducer"] = "stvit_r"  # recovers the grid before the spatial reduction
    space = vitnas.load_space(data)
    archs = [space.sample(rng) for _ in range(40)]
    coefficients = rng.random(len(FEATURES)) * 1e-9
    for arch in archs:
        shapes = vitnas.block_shapes(space, arch)
        attention = sum(2 * s.tokens**2 * s.attn_dim + s.reducer_macs for s in shapes) + stage_finish_macs(shapes)
        assert feature_row(space, arch)[FEATURES.index("attention_macs")] == attention
    np.testing.assert_allclose(LatencyPredictor(space, coefficients).predict_many(archs),
                               [feature_row(space, arch) @ coefficients for arch in archs], rtol=1e-12)
    arch = space.arch(patch_size=4, depth=3, keep_rate=[0.5, 1.0])
    assert stage_finish_macs(vitnas.block_shapes(space, arch)) > 0
    assert sum(stage_finish_macs(vitnas.block_shapes(space, a)) > 0 for a in archs) > 5


def test_a_space_choosing_stvit_samples_trains_two_steps_and_extracts(tmp_path, rng):
    data = choice_space(stages=2, reducer=["evit", "stvit", "stvit_r"], num_classes=10)
    data["stages"][0]["token_reduction"]["reducer"] = ["evo_vit", "stvit_r"]  # before a spatial reduction
    space = vitnas.load_space(data)
    drawn = {(arch.stages[0].reducer, arch.stages[1].reducer) for arch in (space.sample(rng) for _ in range(200))}
    assert {first for first, _ in drawn} >= {"stvit_r"} and {last for _, last in drawn} >= {"stvit", "stvit_r"}
    path = tmp_path / "choice.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = {"space": str(path), "data": {"name": "synthetic", "synthetic_size": 32}, "epochs": 1,
              "batch_size": 16, "optimizer": {"lr": 1e-3, "lr_per_512": None}, "schedule": {"warmup_epochs": 1},
              "sampler": {"name": "multi", "subnets": 4, "variant": "masked", "shared_token_shape": False},
              "log_every": 1}
    vitnas.train_supernet(recipe, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run")["meta"]["step"] == 2
    supernet, space = vitnas.load_supernet(tmp_path / "run")
    # no parameters of their own: no block holds reducer weights, and the costs count none
    assert [key for key in supernet.state_dict() if ".reducers." in key] == []
    assert get_reducer("stvit").extra_params(24) == get_reducer("stvit_r").extra_params(24) == 0
    for reducers in (["stvit_r", "stvit"], ["evo_vit", "stvit_r"]):
        check_extraction_and_costs(supernet, space.arch(patch_size=4, depth=3, keep_rate=0.5, reducer=reducers))

"""Token reducers behind one interface: counts, extraction, export forms and costs of each."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import vitnas
from vitnas.nn import network
from vitnas.nn.block import attention_bias
from vitnas.nn.reducers import Tokens, get_reducer, reducer_names
from vitnas.nn.vit import BlockConfig
from vitnas.space.spec import REDUCERS
from vitnas.supernet.masked import masked_forward

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HAS_ONNX = all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnxscript"))


def tiny_space(reducer: str, stages: int = 1, keep_rates: tuple[float, ...] = (0.5, 0.75, 1.0),
               reduce_in: tuple[int, ...] | None = None) -> vitnas.SearchSpace:
    """A tiny space whose stages in `reduce_in` (default: the last) reduce at blocks 0 and 2 with `reducer`."""
    reduce_in = (stages - 1,) if reduce_in is None else reduce_in
    stage_list = []
    for index in range(stages):
        stage = {"depth": [2, 3], "embed_dim": [16, 24], "num_heads": [1, 2], "head_dim": 8, "mlp_ratio": [2.0]}
        if index in reduce_in:
            stage["token_reduction"] = {"reducer": reducer, "blocks": [0, 2], "keep_rates": list(keep_rates)}
        stage_list.append(stage)
    return vitnas.load_space({"name": f"{reducer}{stages}", "img_size": 32, "num_classes": 5,
                              "patch": {"mode": "flexi", "sizes": [4, 8]}, "stages": stage_list})


def check_extraction_and_costs(space: vitnas.SearchSpace, archs: list[vitnas.Arch]) -> None:
    """Extraction equals the supernet; params and MACs equal the model's and flop_counter's."""
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).eval()
    x = torch.randn(3, 3, space.img_size, space.img_size)
    for arch in archs:
        model = vitnas.extract(supernet, arch)
        with torch.no_grad():
            expected, got = supernet(x, arch), model(x)
            with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
                model(x)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5, msg=lambda m: f"{arch.to_json()}: {m}")
        assert sum(p.numel() for p in model.parameters()) == vitnas.count_params(space, arch), arch.to_json()
        assert counter.get_total_flops() == 2 * x.shape[0] * vitnas.count_macs(space, arch), arch.to_json()


def test_every_named_reducer_is_implemented_under_its_name():
    assert set(reducer_names()) == set(REDUCERS)
    for name in REDUCERS:
        assert get_reducer(name).name == name and get_reducer(name).info == REDUCERS[name]
    with pytest.raises(vitnas.ArchError, match="'magic' is not one of evit"):
        get_reducer("magic")


def test_block_config_names_its_reducer_and_old_configs_load(spaces):
    assert BlockConfig(2, 8, 16, 0.5).reducer == "evit"  # written before the field: EViT
    assert BlockConfig(2, 8, 16, 1.0, "evit").reducer is None  # a block that keeps every token has none
    with pytest.raises(vitnas.ExportError, match=r"^BlockConfig\.reducer: 'magic' is not one of evit"):
        BlockConfig(2, 8, 16, 0.5, "magic")
    space = spaces["tiny32"]
    config = vitnas.vit_config(space, space.arch(keep_rate=0.5))
    assert [b.reducer for b in config.stages[0].blocks] == [None, "evit", "evit", None]
    data = json.loads(json.dumps(config.to_dict()))
    assert vitnas.ViTConfig.from_dict(data) == config
    for block in data["stages"][0]["blocks"]:
        del block["reducer"]  # a config.json from before reducers were named
    assert vitnas.ViTConfig.from_dict(data) == config
    data["stages"][0]["blocks"][1]["reducer"] = "magic"
    with pytest.raises(vitnas.ExportError, match=r"^ViTConfig\.stages\[0\]\.blocks\[1\]\.reducer: expected null or"):
        vitnas.ViTConfig.from_dict(data)


def test_costs_take_counts_and_macs_from_the_reducer(spaces):
    space = spaces["deit"]
    arch = space.arch(depth=12, embed_dim=384, num_heads=6, mlp_ratio=4.0, patch_size=16, keep_rate=0.7)
    shapes = vitnas.block_shapes(space, arch)
    evit = get_reducer("evit")
    for shape in shapes:
        if shape.keep_rate < 1:
            assert shape.reducer == "evit"
            assert shape.tokens_after == evit.tokens_after(shape.tokens, shape.keep_rate)
            assert shape.reducer_macs == shape.tokens * shape.attn_dim  # q_cls @ K^T
        else:
            assert shape.reducer is None and shape.reducer_macs == 0 and shape.tokens_after == shape.tokens


# reducer -> token counts after each block of `counted_arch` (patch 4: 64 patch tokens; keep 0.5 at blocks 0 and 2)
COUNTS = {
    "evit": [1 + 32 + 1, 34, 1 + 17 + 1],  # kept tokens plus one fused token
    "evo_vit": [1 + 32 + 1, 34, 1 + 17 + 1],  # slow tokens plus one summary; the grid returns at the stage end
    "tome": [1 + 32, 33, 1 + 16],  # 32 and 16 tokens merged away, no extra token
    "stvit": [1 + 32, 33, 1 + 16],  # 32 semantic tokens pooled from the grid, then 16 pooled from them
    "stvit_r": [1 + 32, 33, 1 + 16],  # the same; the grid is recovered at the stage end
    "dynamicvit": [1 + 32, 33, 1 + 16],  # the predictor's top k gathered, the rest dropped
}


def counted_arch(space: vitnas.SearchSpace) -> vitnas.Arch:
    return space.arch(patch_size=4, depth=3, keep_rate=0.5)


@pytest.mark.parametrize("reducer", list(COUNTS))
def test_reducer_keeps_the_requested_count(reducer, monkeypatch):
    space = tiny_space(reducer)
    arch = counted_arch(space)
    assert [s.tokens_after for s in vitnas.block_shapes(space, arch)] == COUNTS[reducer]
    lengths = []
    real = network.block_forward

    def recording(*args, **kwargs):
        tokens = real(*args, **kwargs)
        lengths.append(tokens.x.shape[1])
        return tokens

    monkeypatch.setattr(network, "block_forward", recording)
    supernet = vitnas.SuperViT(space).eval()
    model = vitnas.extract(supernet, arch)
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
        supernet(torch.randn(2, 3, 32, 32), arch)
    assert lengths == COUNTS[reducer] * 2


@pytest.mark.parametrize("reducer", list(COUNTS))
def test_extraction_equals_supernet_and_costs_are_exact(reducer):
    space = tiny_space(reducer)
    archs = [space.largest(), space.smallest(), counted_arch(space),
             space.arch(patch_size=8, depth=3, keep_rate=[[0.75, 1.0, 0.5]])]
    check_extraction_and_costs(space, archs)


@pytest.mark.parametrize("reducer", list(COUNTS))
def test_torchscript_round_trip(reducer, tmp_path):
    space = tiny_space(reducer)
    model = vitnas.extract(vitnas.SuperViT(space).eval(), counted_arch(space))
    x = torch.randn(2, 3, 32, 32)
    traced = torch.jit.trace(model, x, check_trace=False)
    torch.jit.save(traced, str(tmp_path / "model.ts"))
    reloaded = torch.jit.load(str(tmp_path / "model.ts"))
    other = torch.randn(2, 3, 32, 32)  # a batch the trace never saw: nothing data-dependent was baked in
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(reloaded(other), model(other), rtol=0, atol=1e-5)


def test_evo_vit_restores_the_grid_at_the_end_of_each_stage(monkeypatch):
    space = tiny_space("evo_vit", stages=2, reduce_in=(0, 1))
    arch = space.arch(patch_size=4, depth=3, keep_rate=0.5)
    model = vitnas.extract(vitnas.SuperViT(space).eval(), arch)
    with torch.no_grad():
        tokens = model.forward_features(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 1 + 4 * 4, 24)  # stage 1's whole grid
    assert vitnas.count_macs(space, arch) < vitnas.count_macs(space, space.arch(patch_size=4, depth=3))


def test_evo_vit_in_a_multi_stage_space_extracts_exactly():
    space = tiny_space("evo_vit", stages=2, reduce_in=(0, 1))
    archs = [space.largest(), space.smallest(), space.arch(patch_size=4, depth=3, keep_rate=0.5),
             space.arch(patch_size=4, depth=[3, 2], keep_rate=[[0.75, 1.0, 0.5], [0.5, 1.0]]),
             space.arch(patch_size=8, depth=3, keep_rate=[0.5, 1.0])]
    check_extraction_and_costs(space, archs)


def test_only_grid_preserving_reducers_reduce_before_a_spatial_reduction():
    with pytest.raises(vitnas.SpaceError, match=r"stages\[0\]\.token_reduction: only the last stage may drop tokens "
                                                r"with reducer evit: .*reducers that keep the grid may: "
                                                r"evo_vit, stvit_r$"):
        tiny_space("evit", stages=2, reduce_in=(0,))
    space = tiny_space("evo_vit", stages=2, reduce_in=(0, 1))
    data = vitnas.vit_config(space, space.arch(patch_size=4, depth=3, keep_rate=0.5)).to_dict()
    assert vitnas.ViTConfig.from_dict(data).stages[0].blocks[0].reducer == "evo_vit"
    data["stages"][0]["blocks"][0]["reducer"] = "evit"
    with pytest.raises(vitnas.ExportError, match=r"^ViTConfig\.stages\[0\]: blocks use reducers evit, evo_vit; "):
        vitnas.ViTConfig.from_dict(data)
    data["stages"][0]["blocks"][2]["reducer"] = "evit"
    with pytest.raises(vitnas.ExportError, match=r"^ViTConfig\.stages\[0\]: only the last stage may drop tokens"):
        vitnas.ViTConfig.from_dict(data)


def test_masked_pass_runs_evo_vit_stages_exactly():
    space = tiny_space("evo_vit", stages=2, reduce_in=(0, 1))
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).eval()
    archs = [space.arch(patch_size=4, depth=3, embed_dim=24, keep_rate=0.5),
             space.arch(patch_size=4, depth=3, embed_dim=16, num_heads=1, keep_rate=0.5)]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        masked = masked_forward(supernet, x, archs, [2, 2])
        sliced = supernet.forward_multi(x, archs, [2, 2])
    torch.testing.assert_close(masked, sliced, rtol=0, atol=1e-5)


def test_tome_merges_as_size_weighted_means_and_keeps_the_class_token():
    tome = get_reducer("tome")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1 + 20, 8, generator=generator)
    keys = torch.randn(3, 2, 1 + 20, 4, generator=generator)  # (B, H, N, hd)
    once = tome.reduce(Tokens(x), tome.score(keys, keys, None, None), 0.75)
    assert once.x.shape == (3, 1 + 15, 8) and torch.equal(once.x[:, 0], x[:, 0])
    torch.testing.assert_close(once.sizes.sum(dim=1), torch.full((3, 1), 21.0))  # every patch is somewhere
    torch.testing.assert_close((once.x * once.sizes).sum(dim=1), x.sum(dim=1))  # mass is conserved
    twice = tome.reduce(once, torch.randn(3, 16, 4, generator=generator), 0.5)
    assert twice.x.shape == (3, 1 + 8, 8)
    torch.testing.assert_close((twice.x * twice.sizes).sum(dim=1), x.sum(dim=1))
    bias = attention_bias(twice)
    assert bias.shape == (3, 1, 1, 9) and torch.equal(bias, twice.sizes.log().transpose(1, 2).unsqueeze(1))


def test_tome_keeps_at_least_half_in_a_space_file():
    with pytest.raises(vitnas.SpaceError, match=r"token_reduction\.keep_rates: reducer tome keeps at least 0\.5 of "
                                                r"the tokens, got keep rate 0\.25$"):
        tiny_space("tome", keep_rates=(0.25, 1.0))


@pytest.mark.parametrize("reducer", ["evit", "tome"])
def test_masked_pass_equals_sliced_for_last_stage_reducers(reducer):
    space = tiny_space(reducer, stages=2)
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).eval()
    archs = [space.arch(patch_size=4, depth=3, embed_dim=24, keep_rate=0.5),
             space.arch(patch_size=4, depth=[2, 3], embed_dim=16, num_heads=1, keep_rate=0.5)]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        masked = masked_forward(supernet, x, archs, [2, 2])
        sliced = supernet.forward_multi(x, archs, [2, 2])
    torch.testing.assert_close(masked, sliced, rtol=0, atol=1e-5)


# One ONNX export per reducer but two: stvit_r runs all stvit's ops, and evit's round trip is
# tests/test_export.py's ONNX test (tiny32 and resize3 reduce with evit; it asserts so). Measured: an export of
# a two-stage model holding two reducers costs as much as two exports, so pairing them saved nothing.
ONNX_REDUCERS = [name for name in COUNTS if name not in ("stvit", "evit")]


@pytest.mark.skipif(not HAS_ONNX, reason="needs onnxruntime and onnxscript")
@pytest.mark.parametrize("reducer", ONNX_REDUCERS)
def test_onnx_runtime_round_trip(reducer, tmp_path):
    import onnxruntime

    space = tiny_space(reducer)
    model = vitnas.extract(vitnas.SuperViT(space).eval(), counted_arch(space))
    x = torch.randn(2, 3, 32, 32)
    torch.onnx.export(model, (x,), str(tmp_path / "model.onnx"), dynamo=True, input_names=["images"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        images = torch.randn(batch, 3, 32, 32)
        (got,) = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(got), model(images), rtol=0, atol=1e-4)


@pytest.mark.parametrize("reducer", list(COUNTS))
def test_bf16_autocast_trains_through_every_reducer_as_fp32_does(reducer):
    torch.manual_seed(0)
    space = tiny_space(reducer, stages=2, reduce_in=(0, 1) if reducer == "evo_vit" else (1,))
    supernet = vitnas.SuperViT(space, drop_path_rate=0.1).train()
    arch = space.arch(patch_size=4, depth=3, keep_rate=0.5)
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(1)  # the same drop-path (and DynamicViT Gumbel) draws in both passes
    reference = supernet(x, arch)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = supernet(x, arch)
    assert logits.dtype == torch.bfloat16
    # bf16's 8-bit mantissa, as in test_masked; other drop-path draws alone move the logits by 7% or more
    torch.testing.assert_close(logits.float(), reference, rtol=0, atol=0.05 * reference.abs().max().item())
    logits.float().logsumexp(-1).mean().backward()
    grads = [p.grad for p in supernet.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

"""Invariants of extraction and of the closed-form costs, over many random archs of every space."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import vitnas
from vitnas.nn.vit import ViT
from vitnas.space.blocks import arch_layout

# How many random archs per space (on top of largest and smallest): tiny spaces get many.
SAMPLES = {"tiny32": 40, "resize3": 40, "deit": 4, "resnas": 4}
BATCH = {"tiny32": 3, "resize3": 3, "deit": 2, "resnas": 2}


def archs_of(space: vitnas.SearchSpace, count: int, seed: int) -> list[vitnas.Arch]:
    rng = np.random.default_rng(seed)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(count)]


def with_reduction_and_every_patch(space: vitnas.SearchSpace, archs: list[vitnas.Arch]) -> list[vitnas.Arch]:
    """Makes sure the sample covers token reduction and every patch size / resolution."""
    seen_reduction = any(r < 1 for a in archs for s in a.stages for r in s.keep_rate)
    seen_patches = {(a.img_size, a.patch_size) for a in archs}
    patch = space.spec.patch
    needed = [(r, p) for r in patch.img_sizes for p in patch.sizes if (r, p) not in seen_patches]
    extra = [space.arch(img_size=r, patch_size=p, keep_rate=min(_rates(space))) for r, p in needed]
    if not seen_reduction:
        extra.append(space.arch(keep_rate=min(_rates(space))))
    return archs + extra


def _rates(space: vitnas.SearchSpace) -> tuple[float, ...]:
    reduction = space.stages[-1].token_reduction
    return reduction.keep_rates if reduction else (1.0,)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_extracted_model_reproduces_supernet_and_costs(name, spaces, supernets):
    space, supernet = spaces[name], supernets[name]
    archs = with_reduction_and_every_patch(space, archs_of(space, SAMPLES[name], seed=len(name)))
    assert any(r < 1 for a in archs for s in a.stages for r in s.keep_rate)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH[name], space.in_chans, space.img_size, space.img_size, generator=generator)
    for arch in archs:
        model = vitnas.extract(supernet, arch)
        with torch.no_grad():
            expected = supernet(x, arch)
            got = model(x)
            # The math backend decomposes attention into the matmuls every torch version counts
            # (some count CPU's fused attention kernel as 0 FLOPs).
            with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
                model(x)
        assert got.shape == (x.shape[0], space.num_classes)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5, msg=lambda m: f"{arch.to_json()}: {m}")
        assert sum(p.numel() for p in model.parameters()) == vitnas.count_params(space, arch), arch.to_json()
        assert counter.get_total_flops() == 2 * x.shape[0] * vitnas.count_macs(space, arch), arch.to_json()


def test_deit_small_costs_match_published_numbers(spaces):
    space = spaces["deit"]
    arch = space.arch(depth=12, embed_dim=384, num_heads=6, mlp_ratio=4.0, patch_size=16)
    assert vitnas.count_params(space, arch) == 22_050_664  # timm's vit_small_patch16_224
    assert vitnas.count_macs(space, arch) / 1e9 == pytest.approx(4.6, abs=0.01)
    pruned = space.arch(depth=12, embed_dim=384, num_heads=6, mlp_ratio=4.0, patch_size=16, keep_rate=0.7)
    tokens = [shape.tokens_after for shape in vitnas.block_shapes(space, pruned)]
    assert tokens[3] == 140 and tokens[6] == 100 and tokens[9] == 72  # EViT's 197 -> 140 -> 100 -> 72
    assert vitnas.count_macs(space, pruned) / 1e9 == pytest.approx(3.0, abs=0.05)  # SuperViT's table: 3.01 G


def test_extracted_weights_are_contiguous_copies(spaces, supernets, rng):
    space, supernet = spaces["tiny32"], supernets["tiny32"]
    arch = space.sample(rng)
    model = vitnas.extract(supernet, arch)
    assert all(p.is_contiguous() for p in model.parameters())
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())


def test_extracted_model_holds_no_supernet_code(spaces, supernets):
    model = vitnas.extract(supernets["resnas"], spaces["resnas"].largest())
    assert isinstance(model, ViT)
    for module in model.modules():
        assert not type(module).__module__.startswith("vitnas.supernet"), type(module)
    assert not any("Super" in type(m).__name__ for m in model.modules())


@pytest.mark.parametrize("name", ["tiny32", "resize3"])
def test_extracted_model_exports_as_a_static_graph(spaces, supernets, name):
    space = spaces[name]
    arch = space.arch(keep_rate=0.5, img_size=min(space.spec.patch.img_sizes))
    model = vitnas.extract(supernets[name], arch)
    x = torch.randn(2, 3, space.img_size, space.img_size)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), rtol=0, atol=1e-5)


def test_config_round_trips_and_rebuilds_same_model(spaces, supernets, rng):
    space, supernet = spaces["resize3"], supernets["resize3"]
    arch = space.sample(rng)
    model = vitnas.extract(supernet, arch)
    rebuilt = ViT(vitnas.ViTConfig.from_dict(model.config.to_dict())).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_standalone_drop_path_trains_as_the_supernet_and_is_the_identity_in_eval(spaces):
    space, arch = spaces["tiny32"], spaces["tiny32"].largest()  # every block, so the supernet's rates are its own
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space, drop_path_rate=0.3)
    model = vitnas.extract(supernet.eval(), arch)
    assert {block.drop_path_rate for stage in model.plan.stages for block in stage.blocks} == {0.0}  # exports: none
    dropping = ViT(model.config, drop_path_rate=0.3)
    dropping.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(dropping.eval()(x), model.eval()(x))  # eval: no draws, the export's exact function
        supernet.train(), dropping.train()
        torch.manual_seed(1)
        expected = supernet(x, arch)
        torch.manual_seed(1)
        torch.testing.assert_close(dropping(x), expected)  # the same rates and per-sample draws
        assert not torch.equal(dropping(x), dropping(x))
    assert [b.drop_path_rate for s in dropping.plan.stages for b in s.blocks] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"drop_path_rate: expected a number in \[0, 1\), got 1.0"):
        ViT(model.config, drop_path_rate=1.0)


# Two stages, a reducer chosen in each: grid-preserving ones before the spatial reduction, any in the last.
_REDUCING = {
    "name": "reducing", "img_size": 16, "in_chans": 3, "num_classes": 5, "patch": {"mode": "flexi", "sizes": [2, 4]},
    "stages": [
        {"depth": [2], "embed_dim": [16], "num_heads": [2], "mlp_ratio": [2.0],
         "token_reduction": {"reducer": ["stvit_r", "evo_vit"], "blocks": [0, 1], "keep_rates": [0.5, 1.0]}},
        {"depth": [2, 3], "embed_dim": [24], "num_heads": [2], "mlp_ratio": [2.0], "head_dim": 8,
         "token_reduction": {"reducer": ["tome", "stvit", "dynamicvit", "evit"], "blocks": [0, 2],
                             "keep_rates": [0.5, 0.75, 1.0]}},
    ],
}


def test_the_layout_counts_the_tokens_the_standalone_model_leaves(rng):
    """`vitnas.space.blocks.arch_layout` is what costs, configs and plans read: its token counts are the model's."""
    space = vitnas.load_space(_REDUCING)
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(10)]:
        layout = arch_layout(space.spec, arch)
        model = ViT(vitnas.vit_config(space, arch)).eval()
        with torch.no_grad():
            features = model.forward_features(torch.randn(1, 3, 16, 16))
        assert features.shape[1] == layout.tokens_out, arch.to_json()
        assert vitnas.block_shapes(space, arch) == list(layout.blocks)

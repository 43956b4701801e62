"""SuperViT behaviour beyond extraction: precision, gradients, devices, options."""

from __future__ import annotations


import pytest
import torch

import vitnas
from vitnas.nn.vit import network_plan
from vitnas.supernet.masked import masked_forward

# One torch thread, as this module ran before tests/test_search.py stopped leaking its own setting
# (tiny graphs run faster on one; restored after the module).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_bf16_autocast_forward_and_backward_on_cpu_agree_with_fp32(spaces, rng):
    space = spaces["resize3"]
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).train()  # no drop path: both passes compute the same function
    x = torch.randn(4, 3, 32, 32)
    for _ in range(5):
        arch = space.sample(rng)
        reference = supernet(x, arch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = supernet(x, arch)
        assert logits.dtype == torch.bfloat16
        # bf16's 8-bit mantissa: mostly under 2% of the largest logit, up to 5.4% where a token choice flips on a
        # near tie in the three reducing stages; another arch of the space differs by 60% or more
        torch.testing.assert_close(logits.float(), reference, rtol=0, atol=0.1 * reference.abs().max().item())
        logits.float().logsumexp(-1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in supernet.parameters() if p.grad is not None)


def test_gradients_reach_exactly_the_active_slices(spaces):
    space = spaces["tiny32"]
    supernet = vitnas.SuperViT(space)
    arch = space.arch(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2.0, patch_size=4)
    supernet(torch.randn(2, 3, 32, 32), arch).sum().backward()
    fc1 = supernet.stages[0].blocks[0].fc1.weight.grad
    assert fc1[:64, :32].abs().sum() > 0 and fc1[64:].abs().sum() == 0 and fc1[:, 32:].abs().sum() == 0
    qkv = supernet.stages[0].blocks[0].qkv.weight.grad.view(3, 64, 64)  # 4 heads x 16 max, 64 max dim
    assert qkv[:, :32, :32].abs().sum() > 0 and qkv[:, 32:].abs().sum() == 0
    assert supernet.stages[0].blocks[2].fc1.weight.grad is None  # beyond depth: untouched
    assert supernet.patch_embed.weight.grad[:32].abs().sum() > 0  # reached through the PI-resampling


def test_the_supernet_plans_each_arch_as_its_standalone_config_does(spaces, supernets, rng):
    """Both come from the one arch-to-blocks layout (`vitnas.space.blocks`), reducer choices included; each
    stage's stored widths, which the masked pass runs at, are its explicit max_* attributes."""
    choice = vitnas.load_space("tiny32_reducers")
    cases = [(spaces[name], supernets[name]) for name in ("tiny32", "resnas", "resize3")]
    for space, supernet in cases + [(choice, vitnas.SuperViT(choice).eval())]:
        for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(8)]:
            assert supernet.plan(arch) == network_plan(vitnas.vit_config(space, arch)), arch.to_json()
        for stage in supernet.stages:
            block = stage.blocks[0]
            stored = (block.norm1.weight.shape[0], block.qkv.weight.shape[0] // 3, block.fc1.weight.shape[0])
            assert (stage.max_dim, stage.max_attn_dim, stage.max_hidden) == stored


def test_drop_path_only_in_training(spaces):
    space = spaces["tiny32"]
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space, drop_path_rate=0.5)
    x = torch.randn(4, 3, 32, 32)
    arch = space.largest()
    supernet.eval()
    with torch.no_grad():
        assert torch.equal(supernet(x, arch), supernet(x, arch))
        supernet.train()
        assert not torch.equal(supernet(x, arch), supernet(x, arch))


def test_num_classes_override(spaces):
    supernet = vitnas.SuperViT(spaces["tiny32"], num_classes=3).eval()
    arch = spaces["tiny32"].smallest()
    assert supernet(torch.randn(2, 3, 32, 32), arch).shape == (2, 3)
    model = vitnas.extract(supernet, arch)
    assert model.head.out_features == 3
    assert sum(p.numel() for p in model.parameters()) == vitnas.count_params(spaces["tiny32"], arch, num_classes=3)


def test_resize_space_resizes_inputs_of_other_sizes(spaces, supernets):
    space, supernet = spaces["resize3"], supernets["resize3"]
    arch = space.arch(img_size=20)
    model = vitnas.extract(supernet, arch)
    x = torch.randn(2, 3, 32, 32)
    small = torch.nn.functional.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(small), rtol=0, atol=0)
        torch.testing.assert_close(supernet(x, arch), supernet(small, arch), rtol=0, atol=0)


def test_import_does_not_pull_in_ray(import_probe):
    """Every public name of vitnas resolves in a fresh interpreter, and none imports ray (conftest's IMPORT_PROBE)."""
    assert import_probe["all_names"] == [], "ray imported"


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("name", ["deit", "resnas", "resize3"])
def test_cuda_supernet_matches_extract_in_fp32_and_bf16(spaces, name, rng):
    space = spaces[name]
    supernet = vitnas.SuperViT(space).cuda().eval()
    x = torch.randn(8, 3, space.img_size, space.img_size, device="cuda")
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(4)]:
        model = vitnas.extract(supernet, arch)
        with torch.no_grad():
            torch.testing.assert_close(model(x), supernet(x, arch), rtol=1e-4, atol=1e-4)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                expected, got = supernet(x, arch), model(x)
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), expected.float(), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("masked", [False, True])
def test_forward_multi_equals_separate_sub_networks(spaces, supernets, masked):
    space, supernet = spaces["tiny32"], supernets["tiny32"]
    archs = [  # differing width, depth, heads and MLP; one token shape, as a masked pass shares
        space.arch(patch_size=4, keep_rate=0.5),
        space.arch(patch_size=4, keep_rate=0.5, depth=2, embed_dim=32, num_heads=2, mlp_ratio=2.0),
        space.arch(patch_size=4, keep_rate=0.5, depth=3, embed_dim=48, num_heads=[[4, 2, 4]]),
    ]
    x = torch.randn(7, 3, 32, 32)
    with torch.no_grad():
        together = (masked_forward(supernet, x, archs, [2, 3, 2]) if masked
                    else supernet.forward_multi(x, archs, [2, 3, 2]))
        apart = torch.cat([supernet(chunk, a) for chunk, a in zip(x.split([2, 3, 2]), archs)])
    torch.testing.assert_close(together, apart, rtol=0, atol=1e-5)
    with pytest.raises(vitnas.ArchError, match="do not split 7 rows"):
        supernet.forward_multi(x, archs, [2, 2, 2])

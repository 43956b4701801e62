"""The channel-mask multi-architecture pass equals the sliced sub-networks it stands for."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import vitnas
from conftest import RESIZE3
from vitnas.supernet.masked import masked_forward, token_shape_groups

# Three flexi stages with a head width per stage; stage 0 may be wider than stage 1 (the
# reduction's skip is cropped), grids 7 -> 4 -> 2 (patch 4) and 4 -> 2 -> 1 (patch 7).
THREE_STAGE = {
    "name": "masked3",
    "img_size": 28,
    "num_classes": 5,
    "patch": {"mode": "flexi", "sizes": [4, 7]},
    "stages": [
        {"depth": [1, 2], "embed_dim": [16, 40], "num_heads": [1, 2], "head_dim": 8, "mlp_ratio": [1.0, 2.0]},
        {"depth": [1, 2, 3], "embed_dim": [24, 32], "num_heads": [2, 3], "head_dim": 12, "mlp_ratio": [1.5, 2.0]},
        {
            "depth": [2, 3],
            "embed_dim": [32, 48],
            "num_heads": [2, 4],
            "head_dim": 8,
            "mlp_ratio": [2.0, 3.0],
            "token_reduction": {"blocks": [0, 2], "keep_rates": [0.5, 1.0]},
        },
    ],
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nets() -> dict[str, vitnas.SuperViT]:
    torch.manual_seed(0)
    spaces = {"tiny32": vitnas.load_space("tiny32"), "masked3": vitnas.load_space(THREE_STAGE),
              "resize3": vitnas.load_space(RESIZE3)}
    return {name: vitnas.SuperViT(space).eval() for name, space in spaces.items()}


def shared_shape_archs(space: vitnas.SearchSpace, rng: np.random.Generator, count: int) -> list[vitnas.Arch]:
    """Random archs that fit one masked pass (rejection sampling, bounded)."""
    archs = [space.sample(rng)]
    for _ in range(10_000):
        candidate = space.sample(rng)
        if len(token_shape_groups([*archs, candidate])) == 1:
            archs.append(candidate)
            if len(archs) == count:
                return archs
    raise AssertionError(f"no {count} archs sharing a token shape in 10000 draws")


def sliced_logits(supernet: vitnas.SuperViT, x: torch.Tensor, archs, sizes) -> torch.Tensor:
    return torch.cat([supernet(part, arch) for part, arch in zip(x.split(sizes), archs)])


def gradients(supernet: vitnas.SuperViT) -> dict[str, torch.Tensor]:
    """Every parameter's gradient, zeros where none reached it."""
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in supernet.named_parameters()}


def assert_same_gradients(supernet: vitnas.SuperViT, x: torch.Tensor, archs, sizes) -> None:
    """One backward of the masked pass == the sum of the sliced sub-networks' backwards."""
    weights = torch.randn(x.shape[0], supernet.num_classes, generator=torch.Generator().manual_seed(1))
    supernet.zero_grad(set_to_none=True)
    (masked_forward(supernet, x, archs, sizes) * weights).sum().backward()
    masked = gradients(supernet)
    supernet.zero_grad(set_to_none=True)
    for part, arch, w in zip(x.split(sizes), archs, weights.split(sizes)):
        (supernet(part, arch) * w).sum().backward()
    sliced = gradients(supernet)
    supernet.zero_grad(set_to_none=True)
    for name, expected in sliced.items():
        scale = expected.norm().item()
        if scale == 0:
            assert masked[name].abs().max() == 0, f"{name}: gradient where the sliced pass has none"
        else:
            assert (masked[name] - expected).norm().item() <= 1e-5 * scale, name


@pytest.mark.parametrize("name", ["tiny32", "masked3"])
def test_one_pass_logits_equal_each_sliced_sub_network(nets, name):
    supernet = nets[name]
    rng = np.random.default_rng(0)
    for _ in range(3):
        archs = shared_shape_archs(supernet.space, rng, 4)
        sizes = [2, 1, 3, 2]
        x = torch.randn(8, 3, 28 if name == "masked3" else 32, 28 if name == "masked3" else 32)
        with torch.no_grad():
            torch.testing.assert_close(masked_forward(supernet, x, archs, sizes),
                                       sliced_logits(supernet, x, archs, sizes), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny32", "masked3"])
def test_one_backward_equals_the_sum_of_sliced_backwards(nets, name):
    supernet = nets[name]
    archs = shared_shape_archs(supernet.space, np.random.default_rng(1), 3)
    side = 28 if name == "masked3" else 32
    assert_same_gradients(supernet, torch.randn(5, 3, side, side), archs, [2, 2, 1])


def test_widths_heads_and_depths_differ_within_one_pass(nets):
    supernet = nets["tiny32"]
    space = supernet.space
    archs = [
        space.arch(depth=4, embed_dim=64, num_heads=4, mlp_ratio=4.0, patch_size=4, keep_rate=0.5),
        space.arch(depth=2, embed_dim=32, num_heads=[[2, 4]], mlp_ratio=[[2.0, 3.0]], patch_size=4,
                   keep_rate=[[1.0, 0.5]]),
        space.arch(depth=3, embed_dim=48, num_heads=2, mlp_ratio=3.0, patch_size=4, keep_rate=0.5),
    ]
    assert token_shape_groups(archs) == [[0, 1, 2]]
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(masked_forward(supernet, x, archs, [2, 2, 2]),
                                   sliced_logits(supernet, x, archs, [2, 2, 2]), rtol=0, atol=1e-5)
    assert_same_gradients(supernet, x, archs, [2, 2, 2])


def test_a_reduction_beyond_a_shorter_archs_depth_leaves_it_exact(nets):
    """Depth 2 shares a pass with a depth-4 arch that reduces at block 2; depth 3 keeping block 2's tokens cannot."""
    supernet = nets["tiny32"]
    space = supernet.space
    deep = space.arch(depth=4, embed_dim=48, patch_size=4, keep_rate=[[1.0, 0.5, 0.75, 1.0]])
    middle = space.arch(depth=3, embed_dim=64, patch_size=4, keep_rate=[[1.0, 0.5, 1.0]])
    short = space.arch(depth=2, embed_dim=32, num_heads=2, patch_size=4, keep_rate=[[1.0, 0.5]])
    archs = [short, deep, middle]
    assert token_shape_groups(archs) == [[0, 1], [2]]
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(masked_forward(supernet, x, archs, [2, 3, 1]),
                                   sliced_logits(supernet, x, archs, [2, 3, 1]), rtol=0, atol=1e-5)
    assert_same_gradients(supernet, x, archs, [2, 3, 1])


def test_groups_split_by_image_patch_and_keep_rate():
    space = vitnas.load_space("tiny32")
    fine = space.arch(patch_size=4, depth=3, keep_rate=0.5)
    coarse = space.arch(patch_size=8, depth=3, keep_rate=0.5)
    other_rate = space.arch(patch_size=4, depth=3, keep_rate=0.75)
    no_reduction = space.arch(patch_size=4, depth=2, keep_rate=1.0)  # its block 1 keeps every token
    assert token_shape_groups([fine, coarse, other_rate, no_reduction, fine]) == [[0, 4], [1], [2], [3]]
    resize = vitnas.load_space(RESIZE3)
    assert token_shape_groups([resize.arch(img_size=20), resize.arch(img_size=28), resize.arch(img_size=20)]) == [
        [0, 2], [1]]


@pytest.mark.parametrize("name", ["tiny32", "masked3"])
def test_any_archs_run_grouped_and_come_back_in_batch_order(nets, name):
    supernet = nets[name]
    rng = np.random.default_rng(2)
    archs = [supernet.space.sample(rng) for _ in range(5)]
    sizes = [1, 2, 1, 3, 1]
    side = 28 if name == "masked3" else 32
    x = torch.randn(8, 3, side, side)
    with torch.no_grad():
        torch.testing.assert_close(masked_forward(supernet, x, archs, sizes),
                                   sliced_logits(supernet, x, archs, sizes), rtol=0, atol=1e-5)


def test_resnas_three_stages_in_one_pass(supernets):
    supernet = supernets["resnas"]  # the session's seeded one (building a resnas supernet takes seconds)
    space = supernet.space
    archs = [
        space.arch(patch_size=16, depth=[3, 4, 4], embed_dim=[160, 384, 704], num_heads=[3, 8, 6],
                   mlp_ratio=[1.5, 2.0, 3.0], keep_rate=[1.0, 1.0, 0.5]),
        space.arch(patch_size=16, depth=[5, 3, 3], embed_dim=[256, 320, 1024], num_heads=[6, 6, 12],
                   mlp_ratio=[3.0, 1.5, 1.5], keep_rate=[1.0, 1.0, 0.5]),
    ]
    assert token_shape_groups(archs) == [[0, 1]]
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(masked_forward(supernet, x, archs, [1, 1]),
                                   sliced_logits(supernet, x, archs, [1, 1]), rtol=0, atol=1e-5)


def test_stage_without_head_dim_runs_when_head_widths_agree(nets):
    supernet = nets["resize3"]
    space = supernet.space
    # stages 0 and 2 have no head_dim: same embed_dim and heads there, everything else differs
    archs = [
        space.arch(img_size=28, depth=[2, 1, 3], embed_dim=[16, 24, 48], num_heads=[2, 2, 4],
                   mlp_ratio=[2.0, 1.5, 4.0], keep_rate=[1.0, 1.0, [0.5, 1.0, 0.75]]),
        space.arch(img_size=28, depth=[1, 2, 2], embed_dim=[16, 32, 48], num_heads=[2, [2, 4], 4],
                   mlp_ratio=[3.0, 2.0, 2.0], keep_rate=[1.0, 1.0, [0.5, 1.0]]),
    ]
    assert token_shape_groups(archs) == [[0, 1]]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(masked_forward(supernet, x, archs, [3, 1]),
                                   sliced_logits(supernet, x, archs, [3, 1]), rtol=0, atol=1e-5)
    assert_same_gradients(supernet, x, archs, [3, 1])


def test_differing_head_widths_without_head_dim_name_the_sliced_pass(nets):
    supernet = nets["resize3"]
    space = supernet.space
    archs = [space.arch(img_size=28, embed_dim=[16, 24, 48], num_heads=[2, 2, 4]),
             space.arch(img_size=28, embed_dim=[24, 24, 48], num_heads=[2, 2, 4])]  # 8- vs 12-wide heads
    with pytest.raises(vitnas.ArchError, match=r"stages\[0\]\.num_heads\[0\].*sliced multi pass"):
        masked_forward(supernet, torch.randn(2, 3, 32, 32), archs, [1, 1])


def test_bad_calls_raise_one_line_errors(nets):
    supernet = nets["tiny32"]
    arch = supernet.space.smallest()
    x = torch.randn(3, 3, 32, 32)
    with pytest.raises(vitnas.VitnasError, match="one size per arch"):
        masked_forward(supernet, x, [arch, arch], [3])
    with pytest.raises(vitnas.VitnasError, match="sum to 2, the batch has 3"):
        masked_forward(supernet, x, [arch, arch], [1, 1])
    with pytest.raises(vitnas.VitnasError, match=r"sizes\[1\] is 0"):
        masked_forward(supernet, x, [arch, arch], [3, 0])
    outside = vitnas.load_space("resnas").smallest()
    with pytest.raises(vitnas.ArchError, match=r"archs\[1\]: img_size"):
        masked_forward(supernet, x, [arch, outside], [2, 1])


def test_training_drop_path_draws_per_sample_as_the_sliced_blocks():
    """One arch, same seed: the masked pass draws the same per-sample drop-path masks in the same order."""
    torch.manual_seed(0)
    space = vitnas.load_space("tiny32")
    supernet = vitnas.SuperViT(space, drop_path_rate=0.5).train()
    arch = space.arch(depth=3, embed_dim=48, patch_size=8, keep_rate=0.75)
    x = torch.randn(6, 3, 32, 32)
    torch.manual_seed(7)
    masked = masked_forward(supernet, x, [arch], [6])
    torch.manual_seed(7)
    sliced = supernet(x, arch)
    torch.testing.assert_close(masked, sliced, rtol=0, atol=1e-5)
    assert not torch.allclose(masked, masked_forward(supernet, x, [arch], [6]))  # it does drop


def test_bf16_autocast_on_cpu(nets):
    supernet = nets["tiny32"]
    space = supernet.space
    archs = [space.arch(depth=4, embed_dim=64, patch_size=8), space.arch(depth=2, embed_dim=32, patch_size=8)]
    x = torch.randn(4, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        masked = masked_forward(supernet, x, archs, [2, 2])
        sliced = sliced_logits(supernet, x, archs, [2, 2])
    assert masked.dtype == sliced.dtype == torch.bfloat16
    torch.testing.assert_close(masked.float(), sliced.float(), rtol=0, atol=0.05 * sliced.float().abs().max().item())
    masked.float().logsumexp(-1).sum().backward()
    grads = [p.grad for p in supernet.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    supernet.zero_grad(set_to_none=True)

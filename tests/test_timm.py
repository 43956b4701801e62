"""The timm form: archs timm's VisionTransformer can express load strictly and match."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

import vitnas

# One torch thread, as this module ran before tests/test_search.py stopped leaking its own setting
# (tiny graphs run faster on one; restored after the module).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_deit_small_loads_into_timm_strictly_and_matches(spaces, supernets):
    space = spaces["deit"]
    arch = space.arch(depth=12, embed_dim=384, num_heads=6, mlp_ratio=4.0, patch_size=16)
    kwargs, state = vitnas.timm_state_dict(vitnas.extract(supernets["deit"], arch))
    reference = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=1000).eval()
    reference.load_state_dict(state, strict=True)
    rebuilt = VisionTransformer(**kwargs).eval()
    rebuilt.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = supernets["deit"](x, arch)
        torch.testing.assert_close(reference(x), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(rebuilt(x), expected, rtol=0, atol=1e-5)


def test_other_patch_size_loads_into_timm(spaces, supernets):
    space = spaces["tiny32"]
    arch = space.arch(depth=3, embed_dim=64, num_heads=4, mlp_ratio=3.0, patch_size=8)
    kwargs, state = vitnas.timm_state_dict(vitnas.extract(supernets["tiny32"], arch))
    assert kwargs["patch_size"] == 8 and kwargs["mlp_ratio"] == 3.0
    model = VisionTransformer(**kwargs).eval()
    model.load_state_dict(state, strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), supernets["tiny32"](x, arch), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "space_name, arch_kwargs, message",
    [
        ("resnas", {}, r"the model has 3 stages"),
        ("tiny32", {"embed_dim": 64, "num_heads": 4, "keep_rate": 0.5}, r"the model drops tokens"),
        ("tiny32", {"embed_dim": 64, "num_heads": [[4, 2, 4, 4]]}, r"blocks differ in heads or MLP width"),
        ("tiny32", {"embed_dim": 48, "num_heads": 2}, r"2 heads x 16 = 32 differs from embed_dim 48"),
    ],
)
def test_arch_timm_cannot_express_is_refused(spaces, supernets, space_name, arch_kwargs, message):
    arch = spaces[space_name].arch(**arch_kwargs)
    with pytest.raises(vitnas.ExportError, match=message):
        vitnas.timm_state_dict(vitnas.extract(supernets[space_name], arch))

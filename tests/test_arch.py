"""Arch: a frozen, hashable value that round-trips through JSON exactly."""

from __future__ import annotations

import dataclasses

import pytest

import vitnas


def test_json_round_trip_is_exact(spaces, rng):
    for space in spaces.values():
        for _ in range(50):
            arch = space.sample(rng)
            text = arch.to_json()
            again = vitnas.Arch.from_json(text)
            assert again == arch and hash(again) == hash(arch) and again.to_json() == text


def test_arch_is_frozen_and_normalises_numbers():
    stage = vitnas.StageArch(embed_dim=64, num_heads=[2, 4], mlp_ratio=[4, 2.5], keep_rate=[1, 0.5])
    assert stage.mlp_ratio == (4.0, 2.5) and isinstance(stage.mlp_ratio[0], float) and stage.depth == 2
    arch = vitnas.Arch(img_size=32, patch_size=4, stages=[stage])
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.img_size = 64
    assert {arch: 1}[vitnas.Arch.from_json(arch.to_json())] == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", r"^arch: not valid JSON"),
        ("[1, 2]", r"^arch: expected a JSON object, got list"),
        ('{"img_size": 32, "stages": []}', r"^arch: missing field 'patch_size'"),
        ('{"img_size": 32, "patch_size": 4, "stages": [], "colour": 1}', r"^arch: unknown field 'colour'"),
        ('{"img_size": "big", "patch_size": 4, "stages": [{"embed_dim": 8, "num_heads": [1], '
         '"mlp_ratio": [1], "keep_rate": [1]}]}', r"^img_size: expected an integer, got 'big'"),
        ('{"img_size": 32, "patch_size": 4, "stages": [{"embed_dim": 8, "num_heads": [1, 2], '
         '"mlp_ratio": [1], "keep_rate": [1]}]}', r"^arch\.stages\[0\]: num_heads, mlp_ratio and keep_rate need one"),
        ('{"img_size": 32, "patch_size": 4, "stages": [{"embed_dim": 8, "num_heads": 2, '
         '"mlp_ratio": [1], "keep_rate": [1]}]}', r"^arch\.stages\[0\]\.num_heads: expected a list"),
    ],
)
def test_malformed_json_names_the_problem(text, message):
    with pytest.raises(vitnas.ArchError, match=message):
        vitnas.Arch.from_json(text)

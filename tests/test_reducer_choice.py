"""The token reducer as a searched gene: archs, genetics, costs, latency terms, masked passes, training, export."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import vitnas
from vitnas.export.card import _stage
from vitnas.latency.features import FEATURES, REDUCER_FEATURES, feature_row
from vitnas.latency.predictor import LatencyPredictor
from vitnas.nn.reducers import get_reducer
from vitnas.space.spec import REDUCERS
from vitnas.supernet.masked import masked_forward, token_shape_groups
from vitnas.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHOICE = ["evit", "evo_vit", "tome"]


def choice_space(stages: int = 1, keep_rates: tuple[float, ...] = (0.5, 0.75, 1.0), reducer=CHOICE,
                 num_classes: int = 5) -> dict:
    """A tiny space; its last stage reduces at blocks 0 and 2 with `reducer`, earlier stages with evo_vit."""
    stage_list = []
    for index in range(stages):
        names = reducer if index == stages - 1 else "evo_vit"
        stage_list.append({"depth": [2, 3], "embed_dim": [16, 24], "num_heads": [1, 2], "head_dim": 8,
                           "mlp_ratio": [2.0],
                           "token_reduction": {"reducer": names, "blocks": [0, 2], "keep_rates": list(keep_rates)}})
    return {"name": f"choice{stages}", "img_size": 32, "num_classes": num_classes,
            "patch": {"mode": "flexi", "sizes": [4, 8]}, "stages": stage_list}


@pytest.fixture(scope="module")
def space() -> vitnas.SearchSpace:
    return vitnas.load_space(choice_space())


def with_reducer(space: vitnas.SearchSpace, name, **fields) -> vitnas.Arch:
    """An arch of `space` reducing at keep 0.5 with reducer `name` (one name, or one per stage)."""
    fields = {"patch_size": 4, "depth": 3, "keep_rate": 0.5, **fields}
    return space.arch(reducer=name, **fields)


def check_extraction_and_costs(supernet: vitnas.SuperViT, arch: vitnas.Arch) -> None:
    """Extraction equals the supernet (max diff <= 1e-5); params and MACs equal the model's and flop_counter's."""
    space = supernet.space
    x = torch.randn(3, 3, space.img_size, space.img_size, generator=torch.Generator().manual_seed(1))
    model = vitnas.extract(supernet, arch)
    with torch.no_grad():
        expected, got = supernet(x, arch), model(x)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5, msg=lambda m: f"{arch.to_json()}: {m}")
    assert sum(p.numel() for p in model.parameters()) == vitnas.count_params(space, arch), arch.to_json()
    assert counter.get_total_flops() == 2 * x.shape[0] * vitnas.count_macs(space, arch), arch.to_json()


# -- the space and the arch -----------------------------------------------------------------------

def test_sampling_draws_every_reducer_and_records_one_only_where_tokens_drop(space, rng):
    archs = [space.sample(rng) for _ in range(200)]
    assert {arch.stages[0].reducer for arch in archs} == {*CHOICE, None}
    for arch in archs:
        space.validate(arch)
        assert (arch.stages[0].reducer is None) == (min(arch.stages[0].keep_rate) == 1.0), arch.to_json()
    assert space.stages[0].reducer_choices == tuple(CHOICE)
    assert "token reduction (choice of evit, evo_vit, tome)" in space.summary()


def test_size_counts_a_reducer_only_where_tokens_drop(rng):
    data = choice_space(keep_rates=(0.5, 1.0))
    data["patch"]["sizes"] = [8]
    data["stages"][0].update(embed_dim=[16], num_heads=[2])
    small = vitnas.load_space(data)
    seen = {small.sample(rng) for _ in range(3000)}
    # depth 2: block 0 keeps all (1) or drops with 3 reducers (3) -> 4; depth 3: 1 + 3 * 3 -> 10
    assert len(seen) == small.size() == 14


def test_arch_json_round_trips_and_older_json_loads(space, spaces):
    arch = with_reducer(space, "tome")
    assert json.loads(arch.to_json())["stages"][0]["reducer"] == "tome"
    assert vitnas.Arch.from_json(arch.to_json()) == arch
    assert arch != with_reducer(space, "evit")
    tiny = spaces["tiny32"]
    old = tiny.arch(keep_rate=0.5)
    assert "reducer" not in old.to_json()  # a space with one reducer records none: its JSON is as before
    assert vitnas.Arch.from_json(old.to_json()) == old
    assert vitnas.vit_config(tiny, old).stages[0].blocks[1].reducer == "evit"
    data = arch.to_dict()
    del data["stages"][0]["reducer"]  # written without the field, in a space that now has a choice
    with pytest.raises(vitnas.ArchError, match=r"^stages\[0\]\.reducer: the stage drops tokens and the space makes "
                                               r"its reducer a choice of \['evit', 'evo_vit', 'tome'\]; name one$"):
        space.validate(vitnas.Arch.from_dict(data))
    data["stages"][0]["reducer"] = 3
    with pytest.raises(vitnas.ArchError, match=r"^arch\.stages\[0\]: reducer: expected a reducer name or null"):
        vitnas.Arch.from_dict(data)


@pytest.mark.parametrize("reducer, keep_rate, message", [
    ("magic", 0.5, r"stages\[0\]\.reducer: 'magic' is not one of \['evit', 'evo_vit', 'tome'\]$"),
    ("tome", 1.0, r"stages\[0\]\.reducer: the stage keeps every token \(keep rates all 1\.0\), so it runs no reducer"),
])
def test_validate_names_the_reducer_field(space, reducer, keep_rate, message):
    stage = vitnas.StageArch(24, (2, 2, 2), (2.0, 2.0, 2.0), (keep_rate, 1.0, keep_rate), reducer)
    with pytest.raises(vitnas.ArchError, match="^" + message):
        space.validate(vitnas.Arch(32, 4, (stage,)))
    with pytest.raises(vitnas.ArchError, match=r"^stages\[0\]\.reducer: 'magic' is not one of"):
        space.arch(keep_rate=0.5, reducer="magic")


def test_a_space_with_one_reducer_takes_no_reducer_field(spaces):
    tiny = spaces["tiny32"]
    assert tiny.arch(keep_rate=0.5, reducer="evit") == tiny.arch(keep_rate=0.5)  # naming the only one is a no-op
    stage = tiny.arch(keep_rate=0.5).stages[0]
    bad = vitnas.Arch(32, 4, (vitnas.StageArch(stage.embed_dim, stage.num_heads, stage.mlp_ratio, stage.keep_rate,
                                               "evit"),))
    with pytest.raises(vitnas.ArchError, match=r"^stages\[0\]\.reducer: 'evit' given, but the space offers no "
                                               r"reducer choice in this stage \(its one reducer is evit\)"):
        tiny.validate(bad)


def test_mutation_and_crossover_change_the_reducer(space):
    rng = np.random.default_rng(7)
    parent = with_reducer(space, "evit")
    mutants = [space.mutate(parent, 0.3, rng) for _ in range(100)]
    assert {m.stages[0].reducer for m in mutants if min(m.stages[0].keep_rate) < 1} == set(CHOICE)
    other = with_reducer(space, "tome")
    children = {space.crossover(parent, other, rng).stages[0].reducer for _ in range(40)}
    assert children == {"evit", "tome"}


def test_largest_and_smallest_rank_reducers_by_macs(space):
    assert space.largest().stages[0].reducer is None  # keeps every token
    smallest = space.smallest()
    costs = {name: vitnas.count_macs(space, replace(smallest, stages=(replace(smallest.stages[0], reducer=name),)))
             for name in CHOICE}
    assert smallest.stages[0].reducer == min(costs, key=costs.get)
    always = vitnas.load_space(choice_space(keep_rates=(0.5, 0.75)))  # every arch drops tokens
    largest = always.largest()
    costs = {name: vitnas.count_macs(always, replace(largest, stages=(replace(largest.stages[0], reducer=name),)))
             for name in CHOICE}
    assert largest.stages[0].reducer == max(costs, key=costs.get) and len(set(costs.values())) > 1


def test_a_choice_before_the_last_stage_must_keep_the_grid():
    data = choice_space(stages=2)
    data["stages"][0]["token_reduction"]["reducer"] = ["evo_vit", "tome"]
    with pytest.raises(vitnas.SpaceError, match=r"stages\[0\]\.token_reduction: only the last stage may drop tokens "
                                                r"with reducer tome"):
        vitnas.load_space(data)
    with pytest.raises(vitnas.SpaceError, match=r"token_reduction\.keep_rates: reducer tome keeps at least 0\.5"):
        vitnas.load_space(choice_space(keep_rates=(0.25, 1.0)))
    with pytest.raises(vitnas.SpaceError, match=r"token_reduction\.reducer: repeated choice"):
        vitnas.load_space(choice_space(reducer=["evit", "evit"]))


# -- costs, extraction, export, latency -----------------------------------------------------------

@pytest.mark.parametrize("reducer", CHOICE)
def test_each_reducer_extracts_exactly_with_exact_costs(space, reducer):
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).eval()
    for arch in (with_reducer(space, reducer), with_reducer(space, reducer, patch_size=8, keep_rate=[[0.75, 1, 0.5]])):
        check_extraction_and_costs(supernet, arch)
        config = vitnas.vit_config(space, arch)
        assert [b.reducer for b in config.stages[0].blocks] == [reducer, None, reducer]
        assert vitnas.ViTConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_each_reducer_extracts_exactly_after_an_evo_vit_stage():
    space = vitnas.load_space(choice_space(stages=2))
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).eval()
    for reducer in CHOICE:
        arch = with_reducer(space, [None, reducer])  # stage 0 has one reducer (evo_vit); stage 1 chooses
        assert arch.stages[0].reducer is None and arch.stages[1].reducer == reducer
        check_extraction_and_costs(supernet, arch)
        with torch.no_grad():
            tokens = vitnas.extract(supernet, arch).forward_features(torch.zeros(1, 3, 32, 32)).shape[1]
        last = vitnas.block_shapes(space, arch)[-1].tokens_after
        assert tokens == (1 + 4 * 4 if reducer == "evo_vit" else last) and last < 1 + 4 * 4, reducer
    with pytest.raises(vitnas.ArchError, match=r"^stages\[0\]\.reducer: 'tome' is not one of \['evo_vit'\]$"):
        with_reducer(space, "tome")  # one name is every stage's


def test_costs_and_latency_terms_follow_the_chosen_reducer(space, rng):
    shapes = {name: vitnas.block_shapes(space, with_reducer(space, name)) for name in CHOICE}
    for name, blocks in shapes.items():
        assert [s.reducer for s in blocks] == [name, None, name]
        assert [s.tokens_after for s in blocks] == [get_reducer(name).tokens_after(s.tokens, s.keep_rate)
                                                    if s.reducer else s.tokens for s in blocks]
        row = feature_row(space, with_reducer(space, name))
        assert row[FEATURES.index(f"reducer_{name}")] == 2  # two reducing blocks
        assert sum(row[FEATURES.index(term)] for term in REDUCER_FEATURES) == 2
    assert {f"reducer_{name}" for name in REDUCERS} == set(REDUCER_FEATURES)
    archs = [space.sample(rng) for _ in range(60)]
    coefficients = rng.random(len(FEATURES)) / np.maximum(np.max([feature_row(space, a) for a in archs], axis=0), 1)
    predictor = LatencyPredictor(space, coefficients)
    reference = [feature_row(space, arch) @ coefficients for arch in archs]
    np.testing.assert_allclose(predictor.predict_many(archs), reference, rtol=1e-12)
    times = {name: predictor.predict(with_reducer(space, name)) for name in CHOICE}
    assert len(set(times.values())) == len(CHOICE)


def test_a_profile_saved_before_reducer_terms_predicts_as_it_did(space, rng):
    archs = [space.sample(rng) for _ in range(20)]
    coefficients = rng.random(len(FEATURES)) * 1e-6
    saved = LatencyPredictor(space, coefficients).to_dict()
    keep = [i for i, name in enumerate(FEATURES) if name not in REDUCER_FEATURES]
    saved.update(features=[FEATURES[i] for i in keep], coefficients=[float(coefficients[i]) for i in keep])
    loaded = LatencyPredictor.from_dict(space, saved)
    without = coefficients.copy()
    without[[FEATURES.index(term) for term in REDUCER_FEATURES]] = 0
    np.testing.assert_allclose(loaded.predict_many(archs), [feature_row(space, a) @ without for a in archs],
                               rtol=1e-12)
    saved["features"] = saved["features"][::-1]
    with pytest.raises(vitnas.LatencyError, match="predictor.features: made with other terms"):
        LatencyPredictor.from_dict(space, saved)


def test_export_writes_the_chosen_reducer_into_config_and_card(space, tmp_path):
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).eval()
    arch = with_reducer(space, "tome")
    (folder,) = vitnas.export_model(supernet, arch, tmp_path / "out", latency_batches=())
    config = json.loads((folder / "config.json").read_text())
    assert config["arch"]["stages"][0]["reducer"] == "tome"
    assert [b["reducer"] for b in config["model"]["stages"][0]["blocks"]] == ["tome", None, "tome"]
    assert "token reduction after the attention by `tome`" in (folder / "README.md").read_text()
    loaded = vitnas.load(folder)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), supernet(x, arch), rtol=0, atol=1e-5)
    evo = _stage(0, vitnas.vit_config(space, with_reducer(space, "evo_vit")).to_dict()["stages"][0])
    assert "by `evo_vit`" in evo and "returned to the grid" in evo


# -- masked passes, samplers, training ------------------------------------------------------------

def test_masked_pass_groups_by_reducer_and_equals_the_sliced_pass(space):
    archs = [with_reducer(space, "evit"), with_reducer(space, "tome", embed_dim=16, num_heads=1),
             with_reducer(space, "evit", depth=2, embed_dim=16),
             with_reducer(space, "evo_vit", keep_rate=[[1, 1, 0.5]]),
             space.arch(patch_size=4, depth=2)]  # keeps every token: runs in any group its rates fit
    assert token_shape_groups(archs) == [[0, 2], [1], [3, 4]]
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).eval()
    x = torch.randn(10, 3, 32, 32)
    with torch.no_grad():
        masked = masked_forward(supernet, x, archs, [2] * 5)
        sliced = supernet.forward_multi(x, archs, [2] * 5)
    torch.testing.assert_close(masked, sliced, rtol=0, atol=1e-5)


def test_shared_token_shape_shares_the_reducer(space):
    from vitnas.train.recipe import SamplerConfig
    from vitnas.train.samplers import build_sampler, step_rng

    sampler = build_sampler(space, SamplerConfig(name="multi", subnets=4, include_largest=False), distill=False)
    drawn = set()
    for step in range(30):
        (plan,) = sampler.plan(step_rng(0, step), 16)
        archs = [piece.arch for piece in plan.pieces]
        assert len({a.stages[0].keep_rate[0] for a in archs}) == 1
        reducers = {a.stages[0].reducer for a in archs} - {None}  # a shallow arch may keep every token
        assert len(reducers) <= 1
        drawn |= reducers
    assert drawn == set(CHOICE)


def test_training_with_a_reducer_choice_then_every_reducer_extracts_exactly(tmp_path):
    path = tmp_path / "choice.yaml"
    path.write_text(yaml.safe_dump(choice_space(num_classes=10)))
    recipe = {"space": str(path), "data": {"name": "synthetic", "synthetic_size": 32}, "epochs": 1,
              "batch_size": 16, "optimizer": {"lr": 1e-3, "lr_per_512": None}, "schedule": {"warmup_epochs": 1},
              "sampler": {"name": "multi", "subnets": 4, "variant": "masked", "shared_token_shape": False},
              "log_every": 1}
    vitnas.train_supernet(recipe, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run")["meta"]["step"] == 2
    supernet, space = vitnas.load_supernet(tmp_path / "run")
    assert supernet.space.stages[0].reducer_choices == tuple(CHOICE)
    # the reducers chosen among have no parameters: a reducer choice adds no weights to train
    assert [key for key in supernet.state_dict() if ".reducers." in key] == []
    assert all(get_reducer(name).extra_params(24) == 0 for name in CHOICE)
    for name in CHOICE:
        check_extraction_and_costs(supernet, with_reducer(space, name))

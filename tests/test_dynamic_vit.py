"""DynamicViT: its predictor's weights, training by masks, the keep-ratio loss, and training with it as a choice.

Counts, extraction, costs, TorchScript, ONNX Runtime and bf16 training are the shared
reducer tests of tests/test_reducers.py, which run it with the other reducers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

import vitnas
from vitnas.export.elastic import ElasticViT
from vitnas.export.envelope import build_envelope
from vitnas.nn import network
from vitnas.nn.block import BlockPlan, block_forward
from vitnas.nn.reducers import KeptFraction, Tokens, get_reducer, keep_ratio_loss
from vitnas.supernet.masked import masked_forward
from vitnas.train.recipe import RecipeError, load_recipe

from test_reducers import counted_arch, tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def space() -> vitnas.SearchSpace:
    return tiny_space("dynamicvit")


def predictor_grads(supernet: vitnas.SuperViT) -> dict[str, torch.Tensor]:
    return {name: p.grad for name, p in supernet.named_parameters() if ".reducers.dynamicvit." in name}


def test_predictor_weights_are_sliced_and_counted_like_every_other_weight(space):
    supernet = vitnas.SuperViT(space)
    owners = {name.split(".reducers.")[0] for name, _ in supernet.named_parameters() if ".reducers." in name}
    assert owners == {"stages.0.blocks.0", "stages.0.blocks.2"}  # the blocks that may reduce
    narrow = space.arch(patch_size=4, depth=3, embed_dim=16, keep_rate=[[0.5, 1.0, 1.0]])
    state = supernet.sliced_state_dict(narrow)
    predictor = {name: t for name, t in state.items() if ".reducer." in name}
    assert {name.split(".reducer.")[0] for name in predictor} == {"stages.0.blocks.0"}  # only where it reduces
    assert state["stages.0.blocks.0.reducer.fc1.weight"].shape == (8, 16)
    torch.testing.assert_close(state["stages.0.blocks.0.reducer.fc1.weight"],
                               supernet.stages[0].blocks[0].reducers["dynamicvit"].fc1.weight[:8, :16])
    assert sum(t.numel() for t in predictor.values()) == get_reducer("dynamicvit").extra_params(16)
    for dim in (16, 24, 30, 384):
        module = get_reducer("dynamicvit").build_parameters(dim)
        assert sum(p.numel() for p in module.parameters()) == get_reducer("dynamicvit").extra_params(dim)


def test_the_predictor_travels_through_the_export_folder_and_the_elastic_envelope(space, tmp_path):
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).eval()
    arch = counted_arch(space)
    x = torch.randn(2, 3, 32, 32)
    (folder,) = vitnas.export_model(supernet, arch, tmp_path / "out", latency_batches=())
    assert "by `dynamicvit`" in (folder / "README.md").read_text()
    with torch.no_grad():
        torch.testing.assert_close(vitnas.load(folder)(x), supernet(x, arch), rtol=0, atol=1e-5)
    wide, narrow = (vitnas.extract(supernet, arch),
                    vitnas.extract(supernet, space.arch(patch_size=4, depth=3, embed_dim=16, keep_rate=0.5)))
    envelope = build_envelope({"a": (wide.config, wide.state_dict()), "b": (narrow.config, narrow.state_dict())})
    bundle = ElasticViT(envelope, {"a": wide.config, "b": narrow.config}).eval()
    with torch.no_grad():
        torch.testing.assert_close(bundle.use("b")(x), narrow(x), rtol=0, atol=1e-5)


def test_training_keeps_the_shape_and_records_what_each_image_kept(space, monkeypatch):
    lengths = []
    real = network.block_forward

    def recording(*args, **kwargs):
        tokens = real(*args, **kwargs)
        lengths.append(tokens.x.shape[1])
        return tokens

    monkeypatch.setattr(network, "block_forward", recording)
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).train()
    logits, kept = supernet.forward_kept(torch.randn(4, 3, 32, 32), counted_arch(space))
    assert lengths == [65, 65, 65] and logits.shape == (4, 5)  # nothing removed
    assert [(record.kept, record.total) for record in kept] == [(32, 64), (16, 64)]  # the inference counts
    for record in kept:
        assert record.fraction.shape == (4,) and ((record.fraction >= 0) & (record.fraction <= 1)).all()
        assert torch.equal(record.fraction * 64, (record.fraction * 64).round())  # hard decisions
    assert (kept[1].fraction <= kept[0].fraction).all()  # a token dropped earlier stays dropped
    supernet.eval()
    assert supernet.forward_kept(torch.randn(2, 3, 32, 32), counted_arch(space))[1] == ()
    model = vitnas.extract(supernet, counted_arch(space)).train()  # fine-tuning an export learns the same way
    assert [(r.kept, r.total) for r in model.forward_kept(torch.randn(2, 3, 32, 32))[1]] == [(32, 64), (16, 64)]


def test_a_dropped_token_does_not_influence_the_kept_ones():
    torch.manual_seed(0)
    dim, tokens = 16, 1 + 8
    shapes = {"norm1.weight": (dim,), "norm1.bias": (dim,), "norm2.weight": (dim,), "norm2.bias": (dim,),
              "attn.qkv.weight": (3 * dim, dim), "attn.qkv.bias": (3 * dim,), "attn.proj.weight": (dim, dim),
              "attn.proj.bias": (dim,), "mlp.fc1.weight": (2 * dim, dim), "mlp.fc1.bias": (2 * dim,),
              "mlp.fc2.weight": (dim, 2 * dim), "mlp.fc2.bias": (dim,)}
    w = {name: torch.randn(shape) for name, shape in shapes.items()}
    policy = torch.tensor([1, 1, 0, 1, 0, 0, 1, 1, 1], dtype=torch.float32).view(1, tokens, 1).repeat(2, 1, 1)
    x = torch.randn(2, tokens, dim)
    other = x.clone()
    other[:, 2] += 5 * torch.randn(2, dim)  # change two dropped tokens
    other[:, 5] -= 3
    plan = BlockPlan(head_width=8)
    out = block_forward(Tokens(x, policy=policy), w, plan, training=True).x
    changed = block_forward(Tokens(other, policy=policy), w, plan, training=True).x
    kept = policy[0, :, 0].bool()
    torch.testing.assert_close(changed[:, kept], out[:, kept], rtol=0, atol=1e-5)
    assert not torch.allclose(changed[:, 2], out[:, 2])  # the dropped token itself still sees itself
    # and with every token kept, the same block is the unmasked one
    full = block_forward(Tokens(x, policy=torch.ones(2, tokens, 1)), w, plan, training=True).x
    torch.testing.assert_close(full, block_forward(Tokens(x), w, plan, training=True).x, rtol=0, atol=1e-5)


def test_keep_ratio_loss_on_a_known_case_and_its_gradients_reach_the_predictor(space):
    records = [KeptFraction(torch.tensor([0.5, 0.25]), 16, 64), KeptFraction(torch.tensor([0.125, 0.0]), 8, 64)]
    # targets 0.25 and 0.125: ((0.25^2 + 0) / 2 + (0 + 0.125^2) / 2) / 2
    torch.testing.assert_close(keep_ratio_loss(records), torch.tensor((0.0625 / 2 + 0.015625 / 2) / 2))
    assert keep_ratio_loss(()) is None
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).train()
    x = torch.randn(4, 3, 32, 32)
    logits, kept = supernet.forward_kept(x, counted_arch(space))
    keep_ratio_loss(kept).backward()
    grads = predictor_grads(supernet)
    assert all(grads[f"stages.0.blocks.{b}.reducers.dynamicvit.fc3.weight"].abs().sum() > 0 for b in (0, 2))
    supernet.zero_grad()
    logits, _ = supernet.forward_kept(x, counted_arch(space))
    logits.logsumexp(-1).sum().backward()  # the task loss reaches block 0's predictor through the attention masks
    assert predictor_grads(supernet)["stages.0.blocks.0.reducers.dynamicvit.fc3.weight"].abs().sum() > 0


def test_masked_passes_refuse_dynamicvit_in_one_line(space, tmp_path):
    data = {"name": "choice", "img_size": 32, "num_classes": 10, "patch": {"mode": "flexi", "sizes": [4, 8]},
            "stages": [{"depth": [2, 3], "embed_dim": [16, 24], "num_heads": [1, 2], "head_dim": 8,
                        "mlp_ratio": [2.0], "token_reduction": {"reducer": ["evit", "dynamicvit"], "blocks": [0, 2],
                                                                "keep_rates": [0.5, 0.75]}}]}
    path = tmp_path / "choice.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = {"space": str(path), "data": {"name": "synthetic", "synthetic_size": 32}, "epochs": 1,
              "batch_size": 16, "sampler": {"name": "multi", "variant": "masked"}}
    with pytest.raises(RecipeError, match=r"^sampler\.variant: masked: stages\[0\] of space choice may reduce tokens "
                                          r"with dynamicvit, which the masked pass cannot run .*use sampler\.variant: "
                                          r"sliced$"):
        vitnas.train_supernet(recipe, tmp_path / "run")
    supernet = vitnas.SuperViT(space)
    with pytest.raises(vitnas.ArchError, match=r"^archs\[1\]: reducer dynamicvit cannot run in a masked pass"):
        masked_forward(supernet, torch.randn(4, 3, 32, 32), [space.largest(), counted_arch(space)], [2, 2])


def test_a_reducer_choice_with_dynamicvit_trains_its_predictor_with_the_ratio_loss_and_extracts(tmp_path):
    data = {"name": "choice", "img_size": 32, "num_classes": 10, "patch": {"mode": "flexi", "sizes": [4, 8]},
            "stages": [{"depth": [2, 3], "embed_dim": [16, 24], "num_heads": [1, 2], "head_dim": 8,
                        "mlp_ratio": [2.0], "token_reduction": {"reducer": ["evit", "dynamicvit"], "blocks": [0, 2],
                                                                "keep_rates": [0.5, 0.75]}}]}
    path = tmp_path / "choice.yaml"
    path.write_text(yaml.safe_dump(data))
    space = vitnas.load_space(str(path))
    rng = np.random.default_rng(0)
    assert {space.sample(rng).stages[0].reducer for _ in range(40)} == {"evit", "dynamicvit"}
    # every arch drops tokens, so sandwich's largest (the most MACs) reduces with dynamicvit, its smallest with evit
    assert space.largest().stages[0].reducer == "dynamicvit" and space.smallest().stages[0].reducer == "evit"
    recipe = {"space": str(path), "data": {"name": "synthetic", "synthetic_size": 32}, "epochs": 1,
              "batch_size": 16, "optimizer": {"lr": 1e-3, "lr_per_512": None}, "schedule": {"warmup_epochs": 0},
              "sampler": {"name": "sandwich", "num_random": 1}, "log_every": 1}
    assert load_recipe(recipe).keep_ratio_weight == 2.0
    losses = {}
    for weight in (0.0, 2.0):
        run = tmp_path / f"run{weight:g}"
        vitnas.train_supernet({**recipe, "keep_ratio_weight": weight}, run)
        losses[weight] = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
                          if "loss" in json.loads(line)]
    assert len(losses[2.0]) == 2 and losses[2.0][0] > losses[0.0][0]  # same draws, plus 2x the ratio loss
    supernet, space = vitnas.load_supernet(tmp_path / "run2")
    torch.manual_seed(0)
    untrained = vitnas.SuperViT(space)
    trained = dict(supernet.named_parameters())
    for name, initial in untrained.named_parameters():
        if ".reducers.dynamicvit." in name and name.endswith("fc3.weight"):
            assert not torch.equal(trained[name], initial), f"{name} did not train"
    supernet.eval()
    x = torch.randn(3, 3, 32, 32)
    for name in ("evit", "dynamicvit"):
        arch = space.arch(patch_size=4, depth=3, keep_rate=0.5, reducer=name)
        model = vitnas.extract(supernet, arch)
        with torch.no_grad():
            torch.testing.assert_close(model(x), supernet(x, arch), rtol=0, atol=1e-5)
        assert sum(p.numel() for p in model.parameters()) == vitnas.count_params(space, arch)

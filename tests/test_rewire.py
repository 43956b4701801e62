"""Rewiring keeps the full network's function, sorts units by importance, and carries optimizer state along."""

from __future__ import annotations

import torch

import vitnas
from vitnas.supernet.rewire import head_importance, mlp_importance, rewire
from vitnas.train.recipe import SamplerConfig
from vitnas.train.samplers import build_sampler, step_rng


def _scrambled_supernet(space):
    torch.manual_seed(0)
    supernet = vitnas.SuperViT(space).eval()
    with torch.no_grad():
        for parameter in supernet.parameters():
            parameter.mul_(torch.rand_like(parameter) * 4)  # uneven importances
    return supernet


def test_rewire_preserves_the_largest_and_sorts_importance(spaces):
    space = spaces["tiny32"]
    supernet = _scrambled_supernet(space)
    x = torch.randn(4, 3, 32, 32)
    small = space.arch(depth=4, embed_dim=64, num_heads=2, mlp_ratio=2.0)
    with torch.no_grad():
        before_large, before_small = supernet(x, space.largest()), supernet(x, small)
        rewire(supernet)
        after_large, after_small = supernet(x, space.largest()), supernet(x, small)
    torch.testing.assert_close(after_large, before_large, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(after_small, before_small, atol=1e-3)
    for block in supernet.stages[0].blocks:
        mlp = mlp_importance(block)
        heads = head_importance(block, 16)
        assert torch.all(mlp[:-1] >= mlp[1:]) and torch.all(heads[:-1] >= heads[1:])


def test_rewire_permutes_optimizer_state_with_the_weights(spaces):
    space = spaces["tiny32"]
    supernet = _scrambled_supernet(space).train()
    optimizer = torch.optim.AdamW(supernet.parameters(), lr=1e-3)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(10, (8,))
    torch.nn.functional.cross_entropy(supernet(x, space.largest()), y).backward()
    optimizer.step()
    block = supernet.stages[0].blocks[0]
    weight, moment = block.fc1.weight.detach().clone(), optimizer.state[block.fc1.weight]["exp_avg"].clone()
    order = mlp_importance(block).argsort(descending=True)
    rewire(supernet, optimizer)
    assert torch.equal(block.fc1.weight, weight[order])
    assert torch.equal(optimizer.state[block.fc1.weight]["exp_avg"], moment[order])
    assert not torch.equal(order, torch.arange(order.numel()))


def test_width_warmup_opens_choices_from_the_widest(spaces):
    space = spaces["tiny32"]
    sampler = build_sampler(space, SamplerConfig(name="single", width_warmup_epochs=4), distill=False)
    sampler.set_epoch(0)
    archs = [sampler.plan(step_rng(0, step), 8)[0].pieces[0].arch for step in range(30)]
    assert all(a.stages[0].embed_dim == 64 and a.stages[0].depth == 4 for a in archs)
    assert all(set(a.stages[0].num_heads) == {4} and set(a.stages[0].mlp_ratio) == {4.0} for a in archs)
    assert len({(a.patch_size, a.stages[0].keep_rate) for a in archs}) > 1  # token genes are not width genes
    sampler.set_epoch(2)
    dims = {sampler.plan(step_rng(0, step), 8)[0].pieces[0].arch.stages[0].embed_dim for step in range(60)}
    assert dims == {48, 64}
    sampler.set_epoch(4)
    dims = {sampler.plan(step_rng(0, step), 8)[0].pieces[0].arch.stages[0].embed_dim for step in range(60)}
    assert dims == {32, 48, 64}

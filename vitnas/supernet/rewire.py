"""Importance re-sorting of heads and MLP units (ViT-ResNAS's "rewiring", written anew).

Width slicing keeps the first k heads and hidden units, so they had better be the most
useful ones. During width warm-up, `rewire` permutes every block's MLP hidden units
and attention heads into descending L1 importance. A permutation of hidden units or
heads is an exact symmetry of the full-width block, so the largest sub-network computes
the same function afterwards; narrower ones now keep the most important units. The
optimizer's per-parameter state (Adam moments) is permuted alongside, so training
continues as if the units had always been in that order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vitnas.supernet.supernet import SuperBlock, SuperViT

__all__ = ["rewire", "mlp_importance", "head_importance"]


@torch.no_grad()
def rewire(supernet: SuperViT, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Sorts the MLP units and heads of every block by importance, in place.

    Heads are sorted only in stages with a fixed ``head_dim`` (elsewhere a head's channels
    depend on the sub-network's width, so heads have no fixed identity).
    """
    for stage in supernet.stages:
        for block in stage.blocks:
            _permute_mlp(block, mlp_importance(block).argsort(descending=True), optimizer)
            if stage.spec.head_dim is not None:
                order = head_importance(block, stage.spec.head_dim).argsort(descending=True)
                _permute_heads(block, order, stage.spec.head_dim, optimizer)


def mlp_importance(block: SuperBlock) -> Tensor:
    """L1 importance of each hidden unit: its fc1 row and bias plus its fc2 column."""
    return block.fc1.weight.abs().sum(1) + block.fc1.bias.abs() + block.fc2.weight.abs().sum(0)


def head_importance(block: SuperBlock, head_dim: int) -> Tensor:
    """L1 importance of each head: its q, k, v rows and biases plus its proj columns."""
    heads = block.proj.weight.shape[1] // head_dim
    qkv = block.qkv.weight.abs().sum(1) + block.qkv.bias.abs()  # (3 * A,)
    per_head = qkv.view(3, heads, head_dim).sum(dim=(0, 2))
    return per_head + block.proj.weight.abs().sum(0).view(heads, head_dim).sum(1)


def _permute_mlp(block: SuperBlock, order: Tensor, optimizer: torch.optim.Optimizer | None) -> None:
    _reorder(block.fc1.weight, lambda t: t[order], optimizer)
    _reorder(block.fc1.bias, lambda t: t[order], optimizer)
    _reorder(block.fc2.weight, lambda t: t[:, order], optimizer)


def _permute_heads(block: SuperBlock, order: Tensor, head_dim: int, optimizer: torch.optim.Optimizer | None) -> None:
    heads = order.numel()
    channels = (order[:, None] * head_dim + torch.arange(head_dim, device=order.device)).reshape(-1)  # (A,)
    rows = torch.cat([channels + part * heads * head_dim for part in range(3)])  # q, k and v blocks
    _reorder(block.qkv.weight, lambda t: t[rows], optimizer)
    _reorder(block.qkv.bias, lambda t: t[rows], optimizer)
    _reorder(block.proj.weight, lambda t: t[:, channels], optimizer)


def _reorder(parameter: Tensor, permute, optimizer: torch.optim.Optimizer | None) -> None:
    parameter.copy_(permute(parameter))
    if optimizer is None:
        return
    for value in optimizer.state.get(parameter, {}).values():
        if isinstance(value, Tensor) and value.shape == parameter.shape:
            value.copy_(permute(value))

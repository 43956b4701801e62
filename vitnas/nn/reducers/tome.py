"""ToMe: merge the most similar tokens instead of dropping any (bipartite soft matching).

Training-free and parameter-free. At a reduction block the non-class tokens split
alternately into sets A and B; each A token finds its most similar B token (cosine
similarity of the keys, averaged over heads), and the r best-matched A tokens merge
into their partners as size-weighted means. Tokens then carry their size (how many
patches they stand for), and every later attention adds log(size) to the logits
(proportional attention, `vitnas.nn.block.attention_bias`), so a merged token
weighs as the tokens it holds. The class token never merges.

The merge is written with gather and ``scatter_add`` (a sum, then one division by the
summed sizes) rather than ``scatter_reduce(mean)``, which torch's ONNX exporter cannot
export; ``scatter_add`` is ONNX's ScatterElements with reduction "add" (opset 16).
r is fixed by the sequence length and the keep rate, so the whole batch keeps one shape.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vitnas.nn.reducers.base import TokenReducer, Tokens
from vitnas.space.reducer_rules import merged_count  # the count is the space's arithmetic; exported here too

__all__ = ["ToMe", "merged_count"]


class ToMe(TokenReducer):
    """Bipartite soft matching of the keys; r = n - ceil(keep_rate * n) tokens merge per reduction block."""

    name = "tome"

    def score(self, q: Tensor, k: Tensor, head_mask: Tensor | None, bias: Tensor | None) -> Tensor:
        """The keys averaged over (active) heads: (B, N, hd), the matching metric."""
        if head_mask is None:
            return k.mean(dim=1)
        weights = head_mask.to(k.dtype)  # (B, H, 1, 1)
        return (k * weights).sum(dim=1) / weights.sum(dim=1)

    def reduce(self, tokens: Tokens, scores: Tensor, keep_rate: float) -> Tokens:
        x = tokens.x  # (B, 1 + n, D)
        r = merged_count(x.shape[1] - 1, keep_rate)
        if r == 0:
            return tokens
        sizes = tokens.sizes if tokens.sizes is not None else torch.ones_like(x[..., :1])  # (B, 1 + n, 1)
        unmerged, source, target = _match(scores[:, 1:], r)  # (B, na - r), (B, r), (B, r)
        weighted, patch_sizes = x[:, 1:] * sizes[:, 1:], sizes[:, 1:]  # (B, n, D), (B, n, 1)
        set_a, set_b = weighted[:, ::2], weighted[:, 1::2]
        sizes_a, sizes_b = patch_sizes[:, ::2], patch_sizes[:, 1::2]
        merged_b = set_b.scatter_add(1, _expand(target, x.shape[-1]), _take(set_a, source))  # (B, nb, D)
        merged_sizes = sizes_b.scatter_add(1, target.unsqueeze(-1), _take(sizes_a, source))  # (B, nb, 1)
        kept = torch.cat([_take(set_a, unmerged), merged_b], dim=1)  # (B, n - r, D)
        kept_sizes = torch.cat([_take(sizes_a, unmerged), merged_sizes], dim=1)  # (B, n - r, 1)
        x = torch.cat([x[:, :1], kept / kept_sizes.to(kept.dtype)], dim=1)
        return Tokens(x, sizes=torch.cat([sizes[:, :1], kept_sizes], dim=1))


def _match(metric: Tensor, r: int) -> tuple[Tensor, Tensor, Tensor]:
    """Indices of the unmerged A tokens, the r merging A tokens and the B token each merges into.

    Args:
        metric: (B, n, hd) keys of the non-class tokens.
    """
    metric = metric / metric.norm(dim=-1, keepdim=True)
    similarity = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)  # (B, na, nb) cosine similarities
    best, partner = similarity.max(dim=-1)  # (B, na)
    order = best.argsort(dim=-1, descending=True)  # (B, na): best-matched A tokens first
    source = order[:, :r]  # (B, r)
    return order[:, r:], source, partner.gather(1, source)


def _take(x: Tensor, index: Tensor) -> Tensor:
    """x[b, index[b, i]]: (B, i, C)."""
    return x.gather(1, _expand(index, x.shape[-1]))


def _expand(index: Tensor, width: int) -> Tensor:
    return index.unsqueeze(-1).expand(-1, -1, width)

"""STViT semantic tokens: a few pooled, attention-refined cluster centres stand in for the image tokens.

At a stage's first reducing block, between its attention and its MLP, the n image
tokens (the token grid) become k = ``kept_token_count(n, keep_rate)`` semantic tokens:

1. **Initial cluster centres by pooling.** The grid is cut into k windows and each is
   max-pooled, as STViT pools each window with ``F.adaptive_max_pool2d``. The windows
   are adaptive pooling's (start ``floor(i n / k)``, end ``ceil((i + 1) n / k)``), laid
   out so that *any* k comes out exactly: r bands of rows (r about sqrt(k)), band j cut
   into c_j column windows, the c_j summing to k. Where k is a square s² this is
   ``adaptive_max_pool2d(grid, s)`` itself (16 of DeiT-S's 14 x 14 tokens: 4 x 4 windows).
   The windows are a constant gather (``index_select``) and one ``amax``: exportable to
   TorchScript and ONNX, the same for every image, and free in MACs as pooling is.
2. **Refined by attention.** The centres (queries) attend once over the image tokens
   (keys and values), added residually: one step of soft clustering.

The class token stays in front, untouched. The following blocks of the stage compute on
1 + k tokens only. A later reducing block of the same stage pools the semantic tokens
further, to ``kept_token_count(k, keep_rate)``, and refines them over the semantic
tokens it had (a square count is pooled as a grid, as the semantic tokens of a square k
lie in raster order; any other count in 1-D windows along the sequence).

``stvit`` ends the stage with the semantic tokens, so it may reduce in the last stage
only. ``stvit_r`` (STViT-R) sets the image tokens aside at its first reduction and at
the stage end **recovers** them by cross-attention: queries the image tokens as they
were set aside, keys and values the semantic tokens, added residually. The grid
survives, so a spatial reduction may follow: it may reduce in any stage.

**Whose weights attend.** Refinement and recovery run the weights of the block that
made the semantic tokens (its norm1, q/k/v and output projection, its heads; in a masked
pass its masks: `vitnas.nn.block.attention_of`). STViT's own semantic-token and
recovery blocks are ordinary transformer blocks whose attention takes other queries, so
reusing a block's attention is what the paper does; it adds no parameters, so every
sub-network of a supernet shares them, a reducer choice adds nothing to train, and an
export holds exactly the blocks' weights. Both attentions cost MACs (`extra_macs`,
`finish_macs`); the pooling does not.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache
from typing import Mapping

import torch
from torch import Tensor

from vitnas.nn.reducers.base import BlockAttention, TokenReducer, Tokens, kept_token_count

__all__ = ["STViT", "STViTRecovery", "pooling_windows", "pool_tokens"]


class STViT(TokenReducer):
    """Semantic tokens replace the image tokens for the rest of the stage (last stage only)."""

    name = "stvit"

    def score(self, q: Tensor, k: Tensor, head_mask: Tensor | None, bias: Tensor | None) -> Tensor:
        """Nothing to rank: the centres come from pooling. The keys are handed on unused, at no cost."""
        return k

    def reduce(self, tokens: Tokens, scores: Tensor, keep_rate: float) -> Tokens:
        """The initial centres: (B, 1 + k, D), the class token and the pooled tokens, not yet refined."""
        x = tokens.x
        kept = kept_token_count(x.shape[1] - 1, keep_rate)
        if kept >= x.shape[1] - 1:
            return tokens
        return tokens.with_x(torch.cat([x[:, :1], pool_tokens(x[:, 1:], kept)], dim=1))

    def reduce_in_block(self, tokens: Tokens, scores: Tensor | None, keep_rate: float, weights: Mapping[str, Tensor],
                        attention: BlockAttention, training: bool) -> Tokens:
        """The centres refined by the block's attention over the tokens they were pooled from."""
        pooled = self.reduce(tokens, scores, keep_rate)
        if pooled is tokens:
            return tokens
        centres, image = pooled.x[:, 1:], tokens.x[:, 1:]  # (B, k, D), (B, m, D)
        refined = torch.cat([pooled.x[:, :1], centres + attention(centres, image)], dim=1)  # (B, 1 + k, D)
        return self._record(pooled.with_x(refined), image, attention)

    def _record(self, tokens: Tokens, image: Tensor, attention: BlockAttention) -> Tokens:
        """What the stage end needs; STViT without recovery needs nothing."""
        return tokens


class STViTRecovery(STViT):
    """STViT-R: semantic tokens as in `STViT`, and the image tokens recovered from them at the stage end."""

    name = "stvit_r"

    def finish_stage(self, tokens: Tokens) -> Tokens:
        """(B, 1 + n, D): the class token, then each set-aside image token plus its attention over the semantic ones."""
        if tokens.aside is None or tokens.recovery is None:
            return tokens
        image = tokens.aside + tokens.recovery(tokens.aside, tokens.x[:, 1:])  # (B, n, D)
        return Tokens(torch.cat([tokens.x[:, :1], image], dim=1))

    def _record(self, tokens: Tokens, image: Tensor, attention: BlockAttention) -> Tokens:
        """The first reduction of the stage sets the image tokens aside with the attention that will recover them."""
        if tokens.aside is not None:  # a later reduction: the grid was set aside already
            return tokens
        return replace(tokens, aside=image, recovery=attention)


@lru_cache(maxsize=256)
def pooling_windows(count: int, pooled: int) -> tuple[tuple[int, ...], ...]:
    """The `pooled` windows (token positions) that pool `count` tokens, each window non-empty.

    A square `count` is a side x side grid cut into r bands of rows, band j into c_j
    column windows (adaptive pooling's bounds along each axis, sum of c_j = `pooled`);
    any other count is cut along the sequence with the same bounds.
    """
    side = math.isqrt(count)
    if side * side != count:
        return tuple(tuple(range(start, end)) for start, end in _bounds(count, pooled))
    bands = min(side, max(round(math.sqrt(pooled)), math.ceil(pooled / side)))  # every band fits its columns
    windows = []
    for band, (top, bottom) in enumerate(_bounds(side, bands)):
        columns = (band + 1) * pooled // bands - band * pooled // bands
        for left, right in _bounds(side, columns):
            windows.append(tuple(row * side + col for row in range(top, bottom) for col in range(left, right)))
    return tuple(windows)


def _bounds(length: int, parts: int) -> list[tuple[int, int]]:
    """Adaptive pooling's windows of `length` positions into `parts`: [floor(i L / p), ceil((i + 1) L / p))."""
    return [(i * length // parts, -(-(i + 1) * length // parts)) for i in range(parts)]


@lru_cache(maxsize=256)
def _window_index(count: int, pooled: int) -> tuple[int, ...]:
    """`pooling_windows` flattened, each padded to the widest with its own first position (max ignores repeats)."""
    windows = pooling_windows(count, pooled)
    width = max(len(window) for window in windows)
    return tuple(position for window in windows for position in window + (window[0],) * (width - len(window)))


def pool_tokens(x: Tensor, pooled: int) -> Tensor:
    """Max-pools (B, m, D) tokens into (B, pooled, D) over `pooling_windows`; a constant gather and one amax."""
    flat = _window_index(int(x.shape[1]), pooled)  # int: a tracer's sizes are tensors, no cache key
    # built on the host and copied without a stream sync; a trace or an export records it as a constant
    index = torch.tensor(flat, dtype=torch.long).to(x.device, non_blocking=True)
    gathered = x.index_select(1, index)  # (B, pooled * width, D)
    return gathered.view(x.shape[0], pooled, len(flat) // pooled, x.shape[2]).amax(dim=2)  # (B, pooled, D)

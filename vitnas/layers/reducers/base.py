"""The token-reducer interface every reducer implements, and the token stream it acts on.

A reducer sits between a block's attention and its MLP. It answers five questions:
how to **score** tokens (from the attention's q and k, so the main attention keeps the
fused `scaled_dot_product_attention` kernel and only a cheap extra product is paid),
how many to **keep** for full computation, **what becomes of the rest** (`reduce`),
the **token count after** it and its **extra parameters and MACs**. The last two are
pure functions of integers, so the cost model and the latency predictor ask the
reducer instead of repeating its rule. Two optional hooks serve reducers that compute
with the block's own attention weights (STViT): `reduce_in_block`, which blocks call and
which hands the reducer the block's attention, and `finish_macs`, the cost of what
`finish_stage` computes.

Real speed needs one token count for every image of a (sub-)batch at a given layer,
cut out with gather: masks save nothing. So every reducer keeps a count that depends
only on the sequence length and the keep rate, never on the image.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Callable, ClassVar

from torch import Tensor

from vitnas.space_spec import REDUCERS, ReducerInfo

__all__ = ["Tokens", "TokenReducer", "BlockAttention", "kept_token_count"]

# A block's own attention weights run as cross-attention: (queries (B, M, D), context (B, N, D)) -> (B, M, D),
# the residual branch (pre-norm, projected, masked as the block's attention is); `vitnas.layers.block.attention_of`.
BlockAttention = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Tokens:
    """The token sequence a network passes from block to block, with what reducers carry along.

    Blocks without a reducer only ever replace `x`; the other fields belong to the
    reducers that set them and ride along unchanged until a reducer or the stage end
    (`TokenReducer.finish_stage`) consumes them.
    """

    x: Tensor  # (B, N, D), class token first
    sizes: Tensor | None = None  # (B, N, 1) patches each token stands for, once a merging reducer (ToMe) ran
    # Set by a grid-preserving reducer (Evo-ViT, STViT-R) from its first reduction to the end of the stage:
    aside: Tensor | None = None  # (B, n, D) the stage's n grid tokens as they were set aside
    kept_index: Tensor | None = None  # (B, k) grid position of each of x[:, 1 : 1 + k], the tokens still computed
    summary_start: Tensor | None = None  # (B, 1, D) the summary token x[:, -1:] when it was formed
    recovery: BlockAttention | None = None  # STViT-R: the attention that gives `aside` back at the stage end

    def with_x(self, x: Tensor) -> Tokens:
        return replace(self, x=x)


def kept_token_count(num_patch_tokens: int, keep_rate: float) -> int:
    """Tokens kept for full computation: ``ceil(keep_rate * n)``, at least 1.

    The tiny epsilon keeps float noise (0.7 * 100 = 70.00000000000001) from adding a token.
    """
    return max(1, math.ceil(keep_rate * num_patch_tokens - 1e-9))


class TokenReducer(ABC):
    """One way of reducing tokens at a block; stateless, so one instance serves every block and model.

    Subclasses set `name` (a key of `vitnas.space_spec.REDUCERS`) and implement the
    abstract methods. Sequence lengths count the class token; `n` in the docstrings is
    the number of other tokens.
    """

    name: ClassVar[str]

    @property
    def info(self) -> ReducerInfo:
        """The facts a space file is checked by (grid preservation, smallest keep rate)."""
        return REDUCERS[self.name]

    @abstractmethod
    def tokens_after(self, tokens: int, keep_rate: float) -> int:
        """Sequence length after the reduction of a sequence of `tokens` (class token included)."""

    @abstractmethod
    def extra_macs(self, tokens: int, keep_rate: float, embed_dim: int, num_heads: int, head_dim: int) -> int:
        """Multiply-accumulates per image the reducer adds to a block that `tokens` enter (scoring, matching)."""

    def extra_params(self, embed_dim: int) -> int:
        """Parameters the reducer adds to its block; the shipped reducers add none."""
        return 0

    @abstractmethod
    def score(self, q: Tensor, k: Tensor, head_mask: Tensor | None, bias: Tensor | None) -> Tensor:
        """What `reduce` ranks or matches tokens by, from the block's attention inputs.

        Args:
            q, k: (B, H, N, hd), token 0 being the class token.
            head_mask: (B, H, 1, 1) bool of each sample's active heads in a masked
                multi-arch pass, None elsewhere (all heads count).
            bias: the additive attention bias the block used, broadcastable to
                (B, H, N, N), or None.
        """

    @abstractmethod
    def reduce(self, tokens: Tokens, scores: Tensor, keep_rate: float) -> Tokens:
        """The tokens after the reduction; ``tokens.x`` has length `tokens_after` of its length."""

    def finish_stage(self, tokens: Tokens) -> Tokens:
        """Called at the end of every stage in which this reducer ran; the default changes nothing."""
        return tokens

    def reduce_in_block(self, tokens: Tokens, scores: Tensor, keep_rate: float, attention: BlockAttention) -> Tokens:
        """What a block calls: `reduce`, for a reducer that may also run the block's own attention weights.

        `attention` is the block's attention as cross-attention (`BlockAttention`). The
        default ignores it; STViT refines its pooled semantic tokens with it and keeps
        it in `Tokens.recovery` to recover the image tokens at the stage end.
        """
        return self.reduce(tokens, scores, keep_rate)

    def finish_macs(self, grid_tokens: int, tokens: int, embed_dim: int, num_heads: int, head_dim: int) -> int:
        """MACs per image of `finish_stage` in a stage entered by `grid_tokens` and left (before it) by `tokens`.

        `num_heads` and `head_dim` are those of the stage's first block that reduced (whose
        attention STViT-R recovers with); the default, a stage end that computes nothing, is 0.
        """
        return 0

"""The token-reducer interface every reducer implements, and the token stream it acts on.

A reducer sits between a block's attention and its MLP. It answers five questions:
how to **score** tokens (from the attention's q and k, so the main attention keeps the
fused `scaled_dot_product_attention` kernel and only a cheap extra product is paid),
how many to **keep** for full computation, **what becomes of the rest** (`reduce`),
the **token count after** it and its **extra parameters and MACs**. The last two are
pure functions of integers that the search space needs without torch, so they live
with the space's rules for the reducer (`vitnas.space.reducer_rules`, read through
`TokenReducer.info`) and this interface answers them from there. Optional hooks serve
reducers that need more than the tokens: `reduce_in_block`, which blocks call, hands
over the block's weights (DynamicViT's predictor), its attention as cross-attention
(STViT) and the mode; `build_parameters` / `parameter_slices` give a reducer weights of
its own; `finish_macs` is the cost of what `finish_stage` computes.

Real speed needs one token count for every image of a (sub-)batch at a given layer,
cut out with gather: masks save nothing. So every reducer keeps a count that depends
only on the sequence length and the keep rate, never on the image.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable, ClassVar, Mapping

import torch
from torch import Tensor, nn

from vitnas.space.reducer_rules import REDUCERS, ReducerInfo, kept_token_count

__all__ = ["Tokens", "TokenReducer", "BlockAttention", "KeptFraction", "kept_token_count"]

# A block's own attention weights run as cross-attention: (queries (B, M, D), context (B, N, D)) -> (B, M, D),
# the residual branch (pre-norm, projected, masked as the block's attention is); `vitnas.nn.block.attention_of`.
BlockAttention = Callable[[Tensor, Tensor], Tensor]

@dataclass(frozen=True)
class KeptFraction:
    """What a reducer that masks in training (DynamicViT) kept at one reduction block, for its keep-ratio loss."""

    fraction: Tensor  # (B,) fraction of the stage's patch tokens each image still keeps; differentiable
    kept: int  # patch tokens the same block keeps at inference (the arch's count)
    total: int  # the stage's patch tokens

    @property
    def target(self) -> float:
        """The fraction the arch keeps at inference: what training pulls `fraction` towards."""
        return self.kept / self.total


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
    # Set in training by a reducer that masks tokens instead of removing them (DynamicViT):
    policy: Tensor | None = None  # (B, N, 1) 1.0 where a token is kept, 0.0 where dropped; attention masks the latter
    kept: tuple[KeptFraction, ...] = ()  # one record per such reduction so far, in order

    def with_x(self, x: Tensor) -> Tokens:
        return replace(self, x=x)


class TokenReducer(ABC):
    """One way of reducing tokens at a block; stateless, so one instance serves every block and model.

    Subclasses set `name` (a key of `vitnas.space.reducer_rules.REDUCERS`, which holds the
    reducer's shape arithmetic) and implement the abstract methods. Sequence lengths count
    the class token; `n` in the docstrings is the number of other tokens.
    """

    name: ClassVar[str]
    # Whether the masked multi-arch pass (`vitnas.supernet.masked`) can run it: it runs the stored weights at full
    # width with per-sample channel masks, which a reducer with parameters or with training masks of its own
    # would need to honour too.
    masked_pass: ClassVar[bool] = True

    @property
    def info(self) -> ReducerInfo:
        """The facts a space file is checked by (grid preservation, smallest keep rate) and the shape arithmetic."""
        return REDUCERS[self.name]

    def tokens_after(self, tokens: int, keep_rate: float) -> int:
        """Sequence length after the reduction of a sequence of `tokens` (class token included)."""
        return self.info.tokens_after(tokens, keep_rate)

    def extra_macs(self, tokens: int, keep_rate: float, embed_dim: int, num_heads: int, head_dim: int) -> int:
        """Multiply-accumulates per image the reducer adds to a block that `tokens` enter (scoring, matching)."""
        return self.info.extra_macs(tokens, keep_rate, embed_dim, num_heads, head_dim)

    def extra_params(self, embed_dim: int) -> int:
        """Parameters the reducer adds to its block (those of `build_parameters`)."""
        return self.info.extra_params(embed_dim)

    def build_parameters(self, embed_dim: int) -> nn.Module | None:
        """A fresh module of the reducer's parameters for a block `embed_dim` wide; None: it has none.

        A block holds it as ``reducer``, so its tensors are named ``reducer.<name>`` in the
        block's weights mapping and state dict. The module at a narrower width must have
        every tensor as a leading slice of the wider one (`parameter_slices`).
        """
        return None

    def parameter_slices(self, module: nn.Module, embed_dim: int) -> dict[str, Tensor]:
        """The tensors of `module` (built wider) cut to a block `embed_dim` wide: the first k of every dimension.

        Names are the module's own (without ``reducer.``); slices are contiguous copies, as
        `vitnas.nn.slicing` makes them.
        """
        shapes = _parameter_shapes(self, embed_dim)
        return {name: tensor[tuple(slice(0, n) for n in shapes[name])].contiguous()
                for name, tensor in module.named_parameters()}

    def score(self, q: Tensor, k: Tensor, head_mask: Tensor | None, bias: Tensor | None) -> Tensor | None:
        """What `reduce` ranks or matches tokens by, from the block's attention inputs.

        The default is None, for a reducer that scores tokens itself (`reduce_in_block`).

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

    def reduce_in_block(self, tokens: Tokens, scores: Tensor | None, keep_rate: float, weights: Mapping[str, Tensor],
                        attention: BlockAttention, training: bool) -> Tokens:
        """The reduction as a block runs it, with what the block can hand over; the default is `reduce`.

        Args:
            weights: the block's weights (a reducer's own under ``reducer.``: DynamicViT's predictor).
            attention: the block's attention as cross-attention (`BlockAttention`); STViT
                refines its pooled semantic tokens with it and keeps it in `Tokens.recovery`
                to recover the image tokens at the stage end.
            training: the module is in training mode (DynamicViT masks instead of gathering).
        """
        return self.reduce(tokens, scores, keep_rate)

    def finish_macs(self, grid_tokens: int, tokens: int, embed_dim: int, num_heads: int, head_dim: int) -> int:
        """MACs per image of `finish_stage` in a stage entered by `grid_tokens` and left (before it) by `tokens`.

        `num_heads` and `head_dim` are those of the stage's first block that reduced (whose
        attention STViT-R recovers with).
        """
        return self.info.finish_macs(grid_tokens, tokens, embed_dim, num_heads, head_dim)


@lru_cache(maxsize=None)
def _parameter_shapes(reducer: TokenReducer, embed_dim: int) -> dict[str, tuple[int, ...]]:
    """Shapes of `reducer`'s parameters at `embed_dim`, read off a module built on the meta device."""
    with torch.device("meta"):
        module = reducer.build_parameters(embed_dim)
    return {name: tuple(tensor.shape) for name, tensor in module.named_parameters()}

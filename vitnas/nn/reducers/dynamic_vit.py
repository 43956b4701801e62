"""DynamicViT: a light learned predictor scores the tokens; training masks, inference gathers the top k.

At a reduction block a predictor of its own (DynamicViT's ``PredictorLG``: LayerNorm ->
Linear -> GELU, then each token's own features beside the image's mean features, then a
small MLP to two logits, keep and drop) scores the patch tokens. It runs between the
block's attention and its MLP, where every vitnas reducer runs; DynamicViT prunes before
a block's attention instead, so here the MLP of the reducing block already saves what
DynamicViT saves from the next block on.

- **Inference** keeps the k = ``ceil(keep_rate * n)`` tokens of highest keep margin
  (keep logit minus drop logit) and cuts them out with gather (no fused token): one k for
  the whole batch, so the saving is real and the model exports to TorchScript and ONNX.
- **Training** removes nothing, so a batch keeps its shape. Each token gets a hard
  Gumbel-softmax decision (straight-through, so gradients reach the predictor), times
  its decision at the stage's earlier reductions. The decisions ride along as
  ``Tokens.policy`` and every later attention masks the keys of dropped tokens, each
  token still seeing itself (`policy_bias`, DynamicViT's ``softmax_with_policy`` as an
  additive bias, so attention stays on `scaled_dot_product_attention`). A kept token's
  output then does not depend on the dropped ones, as at inference. Each reduction
  records what each image kept (`KeptFraction`) for the keep-ratio loss
  (`keep_ratio_loss`), whose target is what the arch keeps at inference. The Gumbel
  noise comes from torch's generator, as drop path's does (a checkpoint keeps its state).

The predictor's hidden channels alternate between a token's own features (even
channels) and the image's policy-weighted mean (odd channels). DynamicViT splits them
into a local and a global half instead; alternating is the same function up to a
permutation of those channels, and it gives each channel one role at every width, so a
narrower predictor is a leading slice of the wider one, as every other supernet weight.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitnas.nn.reducers.base import BlockAttention, KeptFraction, TokenReducer, Tokens, kept_token_count

__all__ = ["DynamicViT", "Predictor", "keep_logits", "policy_bias", "keep_ratio_loss"]

PREDICTOR_NORM_EPS = 1e-5  # nn.LayerNorm's default, as DynamicViT's PredictorLG has it
# The logit offset of a dropped key. Finite, so bf16 and fp16 hold it and no softmax row is all -inf;
# large enough that exp() of it is exactly 0 in every dtype.
DROPPED_KEY_BIAS = -1e4


class Predictor(nn.Module):
    """The parameters of one block's predictor for tokens `embed_dim` wide (``reducer.*`` of the block)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim, eps=PREDICTOR_NORM_EPS)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.fc1 = nn.Linear(embed_dim, embed_dim // 2)
        self.fc2 = nn.Linear(embed_dim // 2, embed_dim // 4)
        self.fc3 = nn.Linear(embed_dim // 4, 2)


class DynamicViT(TokenReducer):
    """Learned keep scores; top-k gather at inference, Gumbel masks in training."""

    name = "dynamicvit"
    masked_pass = False  # its predictor's width and its training policy are per sub-network: use the sliced pass

    def build_parameters(self, embed_dim: int) -> nn.Module:
        return Predictor(embed_dim)

    def reduce(self, tokens: Tokens, scores: Tensor, keep_rate: float) -> Tokens:
        """Keeps the k tokens of highest score (B, n), in score order, and drops the rest."""
        x = tokens.x  # (B, 1 + n, D)
        kept = kept_token_count(x.shape[1] - 1, keep_rate)
        if kept >= x.shape[1] - 1:
            return tokens
        index = scores.topk(kept, dim=1).indices  # (B, k)
        patches = x[:, 1:].gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, k, D)
        return tokens.with_x(torch.cat([x[:, :1], patches], dim=1))

    def reduce_in_block(self, tokens: Tokens, scores: Tensor | None, keep_rate: float, weights: Mapping[str, Tensor],
                        attention: BlockAttention, training: bool) -> Tokens:
        x = tokens.x
        # in training nothing was removed: count from what the arch keeps at inference up to here
        before = tokens.kept[-1].kept if tokens.kept else x.shape[1] - 1
        kept = kept_token_count(before, keep_rate)
        if kept >= before:
            return tokens
        policy = tokens.policy[:, 1:] if tokens.policy is not None else None  # (B, n, 1)
        logits = keep_logits(x[:, 1:], weights, policy)  # (B, n, 2) fp32
        if not training:  # rank by the keep margin: log p(keep) grows with it, and it keeps its precision near 0.5
            return self.reduce(tokens, logits[..., 0] - logits[..., 1], keep_rate)
        keep = F.gumbel_softmax(logits, hard=True)[..., :1]  # (B, n, 1): 0 or 1, straight-through gradients
        if policy is not None:
            keep = keep * policy  # a token dropped earlier stays dropped
        record = KeptFraction(keep.mean(dim=(1, 2)), kept, x.shape[1] - 1)
        policy = torch.cat([keep.new_ones(keep.shape[0], 1, 1), keep], dim=1)  # the class token is always kept
        return replace(tokens, policy=policy, kept=tokens.kept + (record,))


def keep_logits(x: Tensor, w: Mapping[str, Tensor], policy: Tensor | None = None) -> Tensor:
    """The predictor's logits (keep, drop) of each patch token.

    DynamicViT's predictor ends in a log-softmax; its decisions (Gumbel-softmax, top-k)
    do not change when a row's logits shift together, so the logits serve as they are.

    Args:
        x: (B, n, C) patch tokens (the class token excluded).
        w: the block's weights; the predictor's are ``reducer.norm.weight``, ``reducer.proj.weight``, ...
        policy: (B, n, 1) the tokens still kept in training, None where all are (inference
            has removed the others): the image's mean features average over kept tokens only.

    Returns:
        (B, n, 2) in fp32.
    """
    dim = x.shape[-1]
    normed = F.layer_norm(x, (dim,), w["reducer.norm.weight"], w["reducer.norm.bias"], PREDICTOR_NORM_EPS)
    hidden = F.gelu(F.linear(normed, w["reducer.proj.weight"], w["reducer.proj.bias"]))  # (B, n, C)
    if policy is None:
        image = hidden.mean(dim=1, keepdim=True)  # (B, 1, C)
    else:
        image = (hidden * policy).sum(dim=1, keepdim=True) / policy.sum(dim=1, keepdim=True).clamp(min=1.0)
    own = torch.arange(dim, device=x.device) % 2 == 0  # even channels: the token's own; odd: the image's
    hidden = torch.where(own, hidden, image.to(hidden.dtype))  # (B, n, C)
    hidden = F.gelu(F.linear(hidden, w["reducer.fc1.weight"], w["reducer.fc1.bias"]))  # (B, n, C/2)
    hidden = F.gelu(F.linear(hidden, w["reducer.fc2.weight"], w["reducer.fc2.bias"]))  # (B, n, C/4)
    return F.linear(hidden, w["reducer.fc3.weight"], w["reducer.fc3.bias"]).float()


def policy_bias(policy: Tensor) -> Tensor:
    """The additive attention bias that masks the keys of dropped tokens, each token still seeing itself.

    Kept keys get 0 and dropped keys `DROPPED_KEY_BIAS`, and the bias moves one for one
    with the (straight-through) decision, so the gradient a kept key's decision receives
    is exactly what DynamicViT's multiplicative ``softmax_with_policy`` gives it. (A
    dropped key's decision gets none here: its probability is exactly 0; it learns when
    a later draw keeps it, and from the keep-ratio loss.) The diagonal is 0 and carries
    no gradient, as in ``softmax_with_policy``.

    Args:
        policy: (B, N, 1) decisions, 1.0 kept and 0.0 dropped, class token first.

    Returns:
        (B, 1, N, N) fp32.
    """
    keys = policy.float().transpose(1, 2).unsqueeze(1)  # (B, 1, 1, N)
    bias = (keys - 1.0) + (keys.detach() - 1.0) * (-DROPPED_KEY_BIAS - 1.0)  # 0 kept, DROPPED_KEY_BIAS dropped
    tokens = policy.shape[1]
    diagonal = torch.eye(tokens, dtype=torch.bool, device=policy.device)
    return bias.expand(-1, -1, tokens, -1).masked_fill(diagonal, 0.0)


def keep_ratio_loss(records: Sequence[KeptFraction]) -> Tensor | None:
    """DynamicViT's keep-ratio loss: the mean over reductions of the mean over images of (kept - target)^2.

    The target is what the arch keeps at inference (`KeptFraction.target`), so training
    learns the decisions inference will make. None where nothing was recorded (eval mode,
    or no DynamicViT reduction in the arch). The training loop weighs it by the recipe's
    ``keep_ratio_weight`` (DynamicViT's ratio weight, 2.0).
    """
    if not records:
        return None
    losses = [(record.fraction.float() - record.target).square().mean() for record in records]
    return torch.stack(losses).mean()

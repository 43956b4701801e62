"""Evo-ViT slow-fast token evolution: the informative tokens take the full block, the rest ride along cheaply.

At a reduction block the tokens the class token attends to most stay in the sequence
("slow": full attention and MLP); the rest ("fast") are set aside and replaced by one
summary token, their class-attention-weighted mean. The summary goes through the
following blocks with the slow tokens, and whatever it gains there (its residual
updates) is added to every token set aside: the fast update. At the end of the stage
every token returns to its grid position, so the grid survives and a spatial
reduction can follow: this reducer may work in any stage of a multi-stage space.

Tokens per layer are fixed for the whole batch (the top k by one rule, cut with
gather), and the class-attention row comes from ``q_cls · Kᵀ``, so the main attention
stays on the fused kernel. A second reduction in the same stage re-selects among the
slow tokens; the old summary joins the new one, weighted by its own class attention.
The sequence lengths are EViT's (class, k kept, one summary), so one cost rule serves both.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vitnas.nn.reducers.base import Tokens, kept_token_count
from vitnas.nn.reducers.evit import EViT

__all__ = ["EvoViT"]


class EvoViT(EViT):
    """Class-attention top-k stay; the rest are set aside, summarised, updated from the summary, restored.

    It scores and counts tokens as EViT does (class, k kept, one summary token); what differs
    is what becomes of the rest, and that they come back at the end of the stage.
    """

    name = "evo_vit"

    def reduce(self, tokens: Tokens, scores: Tensor, keep_rate: float) -> Tokens:
        x = tokens.x  # (B, 1 + m, D)
        kept = kept_token_count(x.shape[1] - 1, keep_rate)
        if kept >= x.shape[1] - 1:
            return tokens
        if tokens.kept_index is None:  # first reduction of the stage: every non-class token is a grid token
            aside, candidates, candidate_scores = x[:, 1:], x[:, 1:], scores
            index = torch.arange(x.shape[1] - 1, device=x.device).expand(x.shape[0], -1)  # (B, n)
            summary, summary_score = None, None
        else:  # the last token is the summary; candidates are the slow tokens before it
            aside, candidates, candidate_scores = _restored_grid(tokens), x[:, 1:-1], scores[:, :-1]
            index, summary, summary_score = tokens.kept_index, x[:, -1:], scores[:, -1:]
        order = candidate_scores.argsort(dim=1, descending=True)  # (B, c)
        slow = _gather_tokens(candidates, order[:, :kept])  # (B, k, D)
        fast = _gather_tokens(candidates, order[:, kept:])  # (B, c - k, D)
        weights = candidate_scores.gather(1, order[:, kept:])  # (B, c - k)
        if summary is not None:
            fast, weights = torch.cat([fast, summary], dim=1), torch.cat([weights, summary_score], dim=1)
        weights = (weights / weights.sum(dim=1, keepdim=True)).unsqueeze(-1).to(x.dtype)  # (B, f, 1)
        new_summary = (fast * weights).sum(dim=1, keepdim=True)  # (B, 1, D)
        x = torch.cat([x[:, :1], slow, new_summary], dim=1)  # (B, 1 + k + 1, D)
        return Tokens(x, aside=aside, kept_index=index.gather(1, order[:, :kept]), summary_start=new_summary)

    def finish_stage(self, tokens: Tokens) -> Tokens:
        """Every token back at its grid position: (B, 1 + n, D)."""
        if tokens.kept_index is None:
            return tokens
        return Tokens(torch.cat([tokens.x[:, :1], _restored_grid(tokens)], dim=1))


def _restored_grid(tokens: Tokens) -> Tensor:
    """(B, n, D): the set-aside tokens plus the summary's update since it was formed, the slow tokens in place."""
    x = tokens.x
    aside = tokens.aside + (x[:, -1:] - tokens.summary_start)  # the fast update
    index = tokens.kept_index.unsqueeze(-1).expand(-1, -1, x.shape[-1])  # (B, k, D)
    return aside.scatter(1, index, x[:, 1:-1])


def _gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x[b, index[b, i]] for every b, i: (B, i, D)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

"""SuperViT: one set of shared weights that runs any sub-network of a search space.

`model(x, arch)` runs the sub-network `arch`. There is no per-module "active config":
the arch is an argument, and every super-module turns it into weight slices through
one `weights(...)` method. `forward` hands those slices to
`vitnas.nn.network_forward`, the code the standalone model and the masked pass
run too, and `sliced_state_dict` copies them out for `vitnas.extract`, so a
sub-network and its standalone export cannot drift apart. Slices keep the first k
channels, heads or blocks of each stored tensor.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from timm.layers import resample_patch_embed, trunc_normal_

try:  # timm >= 1.0.16 caches the pseudo-inverse per target size
    from timm.layers.patch_embed import PatchEmbedResamplerFixedOrigSize
except ImportError:  # older timm: recompute it on every call (same numbers, slower)
    PatchEmbedResamplerFixedOrigSize = None
from torch import Tensor, nn

from vitnas.errors import ArchError
from vitnas.nn.block import NORM_EPS, BlockPlan, drop_path_rates
from vitnas.space.arch import Arch
from vitnas.nn.network import (
    NetworkPlan, NetworkWeights, StagePlan, StageWeights, network_forward, network_tokens, state_dict_of,
)
from vitnas.nn.patch_embed import resample_pos_embed
from vitnas.nn.reducers import KeptFraction, get_reducer
from vitnas.nn.slicing import slice_qkv, slice_rows_cols, slice_vector
from vitnas.space.blocks import StageLayout, arch_layout
from vitnas.space.space import SearchSpace
from vitnas.space.spec import StageSpec, stage_grid

__all__ = ["SuperViT"]

Weights = dict[str, Tensor]


class SuperPatchEmbed(nn.Module):
    """One stored kernel; flexi spaces PI-resample it to each patch size (FlexiViT)."""

    def __init__(self, in_chans: int, max_dim: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(max_dim, in_chans, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(max_dim))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default
        cached = PatchEmbedResamplerFixedOrigSize is not None
        self.resampler = PatchEmbedResamplerFixedOrigSize((kernel_size, kernel_size)) if cached else resample_patch_embed

    def weights(self, embed_dim: int, patch_size: int) -> Weights:
        weight = slice_rows_cols(self.weight, embed_dim, self.weight.shape[1])
        if patch_size != self.kernel_size:
            weight = self.resampler(weight, [patch_size, patch_size])  # bicubic, antialiased PI-resize
        return {"proj.weight": weight, "proj.bias": slice_vector(self.bias, embed_dim)}


class SuperPosEmbed(nn.Module):
    """Position embeddings of one stage for every grid it can have.

    Flexi spaces store one table at the largest grid and resample it; resize spaces
    store one table per grid (SuperViT), so no grid's embedding is a compromise.
    """

    def __init__(self, grids: list[int], max_dim: int, per_grid: bool) -> None:
        super().__init__()
        self.per_grid = per_grid
        self.base_grid = max(grids)
        stored = grids if per_grid else [self.base_grid]
        self.tables = nn.ParameterDict(
            {str(g): nn.Parameter(trunc_normal_(torch.zeros(1, 1 + g * g, max_dim), std=0.02)) for g in stored}
        )

    def weights(self, embed_dim: int, grid: int) -> Tensor:
        table = self.tables[str(grid if self.per_grid else self.base_grid)]
        return resample_pos_embed(table[..., :embed_dim], grid).contiguous()


class SuperBlock(nn.Module):
    """A transformer block at maximal width; any narrower block is a slice of it (`weights`).

    It holds parameters only: the computation is `vitnas.nn.block_forward` on the slices.
    A block that may reduce with a reducer that has parameters (DynamicViT's predictor)
    holds them at maximal width too, one set per such reducer (``reducers.<name>.*``).
    """

    def __init__(
        self, max_dim: int, max_attn_dim: int, max_hidden: int, drop_path_rate: float, reducers: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.drop_path_rate = drop_path_rate
        self.norm1 = nn.LayerNorm(max_dim, eps=NORM_EPS)
        self.qkv = nn.Linear(max_dim, 3 * max_attn_dim)
        self.proj = nn.Linear(max_attn_dim, max_dim)
        self.norm2 = nn.LayerNorm(max_dim, eps=NORM_EPS)
        self.fc1 = nn.Linear(max_dim, max_hidden)
        self.fc2 = nn.Linear(max_hidden, max_dim)
        built = {name: get_reducer(name).build_parameters(max_dim) for name in reducers}
        self.reducers = nn.ModuleDict({name: module for name, module in built.items() if module is not None})

    def weights(self, embed_dim: int, attn_dim: int, hidden: int, reducer: str | None = None) -> Weights:
        """Slices for one block; `reducer` (the one it runs, if any) adds that reducer's own as ``reducer.*``."""
        qkv_weight, qkv_bias = slice_qkv(self.qkv.weight, self.qkv.bias, attn_dim, embed_dim)
        own = {}
        if reducer is not None and reducer in self.reducers:
            slices = get_reducer(reducer).parameter_slices(self.reducers[reducer], embed_dim)
            own = {f"reducer.{name}": tensor for name, tensor in slices.items()}
        return {
            "norm1.weight": slice_vector(self.norm1.weight, embed_dim),
            "norm1.bias": slice_vector(self.norm1.bias, embed_dim),
            "attn.qkv.weight": qkv_weight,
            "attn.qkv.bias": qkv_bias,
            "attn.proj.weight": slice_rows_cols(self.proj.weight, embed_dim, attn_dim),
            "attn.proj.bias": slice_vector(self.proj.bias, embed_dim),
            "norm2.weight": slice_vector(self.norm2.weight, embed_dim),
            "norm2.bias": slice_vector(self.norm2.bias, embed_dim),
            "mlp.fc1.weight": slice_rows_cols(self.fc1.weight, hidden, embed_dim),
            "mlp.fc1.bias": slice_vector(self.fc1.bias, hidden),
            "mlp.fc2.weight": slice_rows_cols(self.fc2.weight, embed_dim, hidden),
            "mlp.fc2.bias": slice_vector(self.fc2.bias, embed_dim),
            **own,
        }


class SuperSpatialReduction(nn.Module):
    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(max_in, eps=NORM_EPS)
        self.conv = nn.Conv2d(max_in, max_out, kernel_size=3, stride=2, padding=1)
        self.cls_proj = nn.Linear(max_in, max_out)

    def weights(self, in_dim: int, out_dim: int) -> Weights:
        return {
            "norm.weight": slice_vector(self.norm.weight, in_dim),
            "norm.bias": slice_vector(self.norm.bias, in_dim),
            "conv.weight": slice_rows_cols(self.conv.weight, out_dim, in_dim),
            "conv.bias": slice_vector(self.conv.bias, out_dim),
            "cls_proj.weight": slice_rows_cols(self.cls_proj.weight, out_dim, in_dim),
            "cls_proj.bias": slice_vector(self.cls_proj.bias, out_dim),
        }


class SuperStage(nn.Module):
    """One stage at maximal width: its spatial reduction in, its position embeddings, its blocks.

    Its stored widths are explicit attributes, read off the space's stage spec: `max_dim`
    (tokens), `max_attn_dim` (q/k/v) and `max_hidden` (MLP). Every block stores these
    widths, so a sub-network's slice is what `vitnas.space.blocks` lays out for its arch,
    and the masked multi-arch pass, which runs at the stored widths, asks for them here
    rather than reading parameter shapes.
    """

    def __init__(
        self, spec: StageSpec, prev: StageSpec | None, grids: list[int], per_grid_pos: bool, block_rates: list[float]
    ) -> None:
        super().__init__()
        self.spec = spec
        self.max_dim = max(spec.embed_dims)
        self.max_attn_dim = spec.max_attn_dim()
        self.max_hidden = spec.max_mlp_hidden()
        self.reduction = SuperSpatialReduction(max(prev.embed_dims), self.max_dim) if prev is not None else None
        self.pos_embed = SuperPosEmbed(grids, self.max_dim, per_grid_pos)
        reduction = spec.token_reduction
        self.blocks = nn.ModuleList(
            SuperBlock(self.max_dim, self.max_attn_dim, self.max_hidden, rate,
                       reduction.reducers if reduction is not None and index in reduction.blocks else ())
            for index, rate in enumerate(block_rates)  # drop-path rate of each block
        )

    def weights(
        self, embed_dim: int, grid: int, in_dim: int | None, block_dims: Sequence[tuple[int, int]],
        reducers: Sequence[str | None] | None = None,
    ) -> StageWeights:
        """Slices of this stage: `embed_dim` wide, `in_dim` entering it, one (attn_dim, mlp_hidden) per block.

        `reducers` names the reducer each block runs (`BlockShape.reducer`), for the parameters of
        those that have any; None leaves them out.
        """
        reduction = self.reduction.weights(in_dim, embed_dim) if self.reduction is not None else None
        reducers = reducers if reducers is not None else [None] * len(block_dims)
        blocks = tuple(self.blocks[i].weights(embed_dim, attn, hidden, reducers[i])
                       for i, (attn, hidden) in enumerate(block_dims))
        return StageWeights(self.pos_embed.weights(embed_dim, grid), blocks, reduction)

    def plan(self, stage: StageLayout) -> StagePlan:
        """Head widths, keep rates and reducers of a stage's blocks as laid out, with this stage's drop-path rates."""
        blocks = tuple(
            BlockPlan(
                head_width=block.head_dim,
                keep_rate=block.keep_rate,
                reducer=get_reducer(block.reducer) if block.reducer is not None else None,
                drop_path_rate=self.blocks[i].drop_path_rate,
            )
            for i, block in enumerate(stage.blocks)
        )
        return StagePlan(stage.grid, blocks, stage.in_grid)


class SuperViT(nn.Module):
    """The weight-shared super-network of a search space.

    Args:
        space: the search space (its class count is the default head size).
        num_classes: override the space's class count.
        drop_path_rate: stochastic depth at the deepest block, increasing linearly with
            depth as in timm (0 disables it; it is inactive in eval mode anyway).
    """

    def __init__(self, space: SearchSpace, num_classes: int | None = None, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.space = space
        self.num_classes = num_classes if num_classes is not None else space.num_classes
        spec, patch = space.spec, space.spec.patch
        first, last = spec.stages[0], spec.stages[-1]
        self.patch_embed = SuperPatchEmbed(spec.in_chans, max(first.embed_dims), patch.kernel_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, max(first.embed_dims)))
        nn.init.normal_(self.cls_token, std=1e-6)
        base_grids = sorted({r // p for r in patch.img_sizes for p in patch.sizes})
        depths = [s.max_depth for s in spec.stages]
        rates = drop_path_rates(drop_path_rate, sum(depths))
        self.stages = nn.ModuleList()
        for index, stage in enumerate(spec.stages):
            grids = sorted({stage_grid(g, index) for g in base_grids})
            start = sum(depths[:index])
            prev = spec.stages[index - 1] if index else None
            self.stages.append(
                SuperStage(stage, prev, grids, patch.mode == "resize", rates[start : start + stage.max_depth])
            )
        self.norm = nn.LayerNorm(max(last.embed_dims), eps=NORM_EPS)
        self.head = nn.Linear(max(last.embed_dims), self.num_classes)
        self.apply(_init_linear)

    def forward(self, x: Tensor, arch: Arch) -> Tensor:
        """Logits of sub-network `arch` for images x of shape (B, C, H, W)."""
        self.space.validate(arch)
        return self.forward_head(self.forward_features(x, arch), arch)

    def forward_multi(self, x: Tensor, archs: Sequence[Arch], sizes: Sequence[int]) -> Tensor:
        """Logits of several sub-networks, each on its own consecutive sub-batch, in batch order.

        Sub-batch i (``sizes[i]`` rows) runs ``archs[i]``; one backward of a loss on the result
        trains them all. Each sub-batch runs on its own slices of the weights, so each costs what
        its sub-network costs. The other way, full-width passes with per-sample channel masks
        (ViT-ResNAS's), is `vitnas.supernet.masked.masked_forward(model, x, archs, sizes)`: it
        gives the same numbers, and builds on this module rather than the reverse.
        """
        if len(archs) != len(sizes) or sum(sizes) != x.shape[0]:
            raise ArchError(f"forward_multi: {len(archs)} archs and sizes {list(sizes)} do not split {x.shape[0]} rows")
        return torch.cat([self(chunk, arch) for chunk, arch in zip(x.split(list(sizes)), archs)])

    def forward_features(self, x: Tensor, arch: Arch) -> Tensor:
        """(B, C, H, W) images -> (B, N, D) final tokens of sub-network `arch`, normalised."""
        return network_forward(x, self.weights(arch), self.plan(arch), self.training)

    def forward_kept(self, x: Tensor, arch: Arch) -> tuple[Tensor, tuple[KeptFraction, ...]]:
        """Logits of sub-network `arch`, and what its reductions kept where they decide by masks in training.

        The second item has one `KeptFraction` per DynamicViT reduction in training mode (the
        keep-ratio loss reads them, `vitnas.nn.reducers.keep_ratio_loss`) and is empty
        otherwise. The logits are those of ``self(x, arch)``.
        """
        self.space.validate(arch)
        tokens = network_tokens(x, self.weights(arch), self.plan(arch), self.training)
        return self.forward_head(tokens.x, arch), tokens.kept

    def forward_head(self, x: Tensor, arch: Arch) -> Tensor:
        dim = arch.stages[-1].embed_dim
        return F.linear(x[:, 0], slice_rows_cols(self.head.weight, self.num_classes, dim), self.head.bias)

    def weights(self, arch: Arch) -> NetworkWeights:
        """The slices of sub-network `arch` (views where a slice is whole, else contiguous copies)."""
        stages = arch_layout(self.space.spec, arch).stages
        return self.network_weights(
            arch.patch_size,
            [stage.embed_dim for stage in stages],
            [stage.grid for stage in stages],
            [[(block.attn_dim, block.mlp_hidden) for block in stage.blocks] for stage in stages],
            [[block.reducer for block in stage.blocks] for stage in stages],
        )

    def network_weights(
        self,
        patch_size: int,
        dims: Sequence[int],
        grids: Sequence[int],
        block_dims: Sequence[Sequence[tuple[int, int]]],
        reducers: Sequence[Sequence[str | None]] | None = None,
    ) -> NetworkWeights:
        """Slices by width: stage widths and grids, per-block (attn_dim, mlp_hidden) and reducer.

        `weights` asks for one arch's widths; the masked pass asks for the stored (full) ones
        (without reducer parameters: it runs no reducer that has any).
        """
        patch = self.patch_embed.weights(dims[0], patch_size)
        stages = tuple(
            stage.weights(dims[i], grids[i], dims[i - 1] if i else None, block_dims[i],
                          reducers[i] if reducers is not None else None)
            for i, stage in enumerate(self.stages)
        )
        last = dims[-1]
        return NetworkWeights(
            patch["proj.weight"], patch["proj.bias"], self.cls_token[..., : dims[0]], stages,
            self.norm.weight[:last], self.norm.bias[:last],
            slice_rows_cols(self.head.weight, self.num_classes, last), self.head.bias,
        )

    def plan(self, arch: Arch) -> NetworkPlan:
        """Head widths, keep rates, reducers and grids of sub-network `arch` (its layout, `vitnas.space.blocks`)."""
        layout = arch_layout(self.space.spec, arch)
        return NetworkPlan(arch.img_size, tuple(stage.plan(shape) for stage, shape in zip(self.stages, layout.stages)))

    @torch.no_grad()
    def sliced_state_dict(self, arch: Arch) -> dict[str, Tensor]:
        """The weights of sub-network `arch`, named as in `vitnas.nn.vit.ViT`, as fresh contiguous copies."""
        self.space.validate(arch)
        state = state_dict_of(self.weights(arch))
        return {name: tensor.detach().clone().contiguous() for name, tensor in state.items()}


def _init_linear(module: nn.Module) -> None:
    """timm's ViT initialisation: truncated normal (std 0.02) weights, zero biases."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

"""The standalone Vision Transformer that `vitnas.extract` produces.

Plain PyTorch: every layer has exactly the shape its sub-network uses, weights are
ordinary parameters, and nothing here knows about supernets or search spaces.
Parameter names follow timm's `VisionTransformer` inside each stage
(``blocks.i.attn.qkv.weight``, ``blocks.i.mlp.fc1.weight``, ...), so a single-stage
model maps onto timm by renaming the stage prefix (see `vitnas.timm_state_dict`).

`ViTConfig.from_dict` checks what it reads (an export folder's ``config.json`` is user
input), so a hand-edited or damaged config fails in one line naming the field instead
of as a shape error deep inside torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from timm.layers import Mlp
from torch import Tensor, nn

from vitnas.errors import ExportError
from vitnas.layers import fuse_inattentive_tokens, multi_head_attention, patchify, resize_input, spatial_reduction

__all__ = ["ViT", "ViTConfig", "StageConfig", "BlockConfig", "NORM_EPS"]

NORM_EPS = 1e-6  # LayerNorm epsilon, as in timm's ViTs


@dataclass(frozen=True)
class BlockConfig:
    num_heads: int
    head_dim: int  # width of one head; the attention is num_heads * head_dim wide
    mlp_hidden: int  # MLP hidden width
    keep_rate: float  # fraction of patch tokens kept after the attention (1.0: none dropped)


@dataclass(frozen=True)
class StageConfig:
    embed_dim: int
    grid: int  # token-grid side in this stage
    blocks: tuple[BlockConfig, ...]


@dataclass(frozen=True)
class ViTConfig:
    """Everything needed to rebuild a standalone ViT; JSON-serialisable via `to_dict`."""

    img_size: int  # resolution the model patchifies (other input sizes are resized to it)
    patch_size: int
    in_chans: int
    num_classes: int
    stages: tuple[StageConfig, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "ViTConfig") -> ViTConfig:
        """Rebuilds a config from `to_dict` output (or its JSON), checking every field.

        Args:
            data: the mapping to read.
            where: how errors name `data`, e.g. ``"DIR/config.json: model"``.

        Raises:
            ExportError: one line naming the missing, unknown or ill-typed field, or a
                token grid that does not follow from the image and patch sizes.
        """
        top = _fields(data, where, _CONFIG_FIELDS)
        stages = []
        for i, stage in enumerate(top["stages"]):
            stage_where = f"{where}.stages[{i}]"
            fields = _fields(stage, stage_where, _STAGE_FIELDS)
            blocks = tuple(
                BlockConfig(**_fields(block, f"{stage_where}.blocks[{j}]", _BLOCK_FIELDS))
                for j, block in enumerate(fields["blocks"])
            )
            stages.append(StageConfig(fields["embed_dim"], fields["grid"], blocks))
        config = cls(top["img_size"], top["patch_size"], top["in_chans"], top["num_classes"], tuple(stages))
        _check_grids(config, where)
        return config


# What `ViTConfig.from_dict` reads: field -> kind ("int": positive integer, "rate": number in (0, 1],
# "list": non-empty list).
_CONFIG_FIELDS = {"img_size": "int", "patch_size": "int", "in_chans": "int", "num_classes": "int", "stages": "list"}
_STAGE_FIELDS = {"embed_dim": "int", "grid": "int", "blocks": "list"}
_BLOCK_FIELDS = {"num_heads": "int", "head_dim": "int", "mlp_hidden": "int", "keep_rate": "rate"}


def _fields(data: Any, where: str, kinds: dict[str, str]) -> dict[str, Any]:
    """`data` as a dict holding exactly the fields of `kinds`, each of its kind; else one ExportError line."""
    if not isinstance(data, dict):
        raise ExportError(f"{where}: expected an object, got {type(data).__name__}")
    missing = [name for name in kinds if name not in data]
    unknown = [name for name in data if name not in kinds]
    if missing:
        raise ExportError(f"{where}: missing field {missing[0]!r}")
    if unknown:
        raise ExportError(f"{where}: unknown field {unknown[0]!r} (expected {', '.join(kinds)})")
    for name, kind in kinds.items():
        value = data[name]
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ExportError(f"{where}.{name}: expected a positive integer, got {value!r}")
        if kind == "rate" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1):
            raise ExportError(f"{where}.{name}: expected a number in (0, 1], got {value!r}")
        if kind == "list" and (not isinstance(value, (list, tuple)) or not value):
            raise ExportError(f"{where}.{name}: expected a non-empty list, got {value!r}")
    return {name: float(data[name]) if kind == "rate" else data[name] for name, kind in kinds.items()}


def _check_grids(config: ViTConfig, where: str) -> None:
    """Grids must be what patchifying and the spatial reductions produce, or the position tables cannot fit."""
    if config.img_size % config.patch_size:
        raise ExportError(f"{where}.patch_size: {config.patch_size} does not tile img_size {config.img_size}")
    grid = config.img_size // config.patch_size
    for i, stage in enumerate(config.stages):
        if stage.grid != grid:
            raise ExportError(f"{where}.stages[{i}].grid: expected {grid} (from img_size, patch_size and the "
                              f"reductions before it), got {stage.grid}")
        if i < len(config.stages) - 1 and any(block.keep_rate < 1 for block in stage.blocks):
            raise ExportError(f"{where}.stages[{i}]: only the last stage may drop tokens (keep_rate < 1)")
        grid = math.ceil(grid / 2)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return patchify(x, self.proj.weight, self.proj.bias)  # (B, N, D)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim)
        self.proj = nn.Linear(num_heads * head_dim, dim)

    def forward(self, x: Tensor, need_class_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        return multi_head_attention(
            x, self.qkv.weight, self.qkv.bias, self.proj.weight, self.proj.bias, self.num_heads, need_class_attention
        )


class Block(nn.Module):
    """Pre-norm transformer block; tokens may be reduced between attention and MLP."""

    def __init__(self, dim: int, config: BlockConfig) -> None:
        super().__init__()
        self.keep_rate = config.keep_rate
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = Attention(dim, config.num_heads, config.head_dim)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, hidden_features=config.mlp_hidden)

    def forward(self, x: Tensor) -> Tensor:
        reduces = self.keep_rate < 1.0
        attended, class_attention = self.attn(self.norm1(x), need_class_attention=reduces)
        x = x + attended
        if reduces:
            x = fuse_inattentive_tokens(x, class_attention, self.keep_rate)
        return x + self.mlp(self.norm2(x))


class SpatialReduction(nn.Module):
    """Residual spatial reduction into a stage (see `vitnas.layers.spatial_reduction`)."""

    def __init__(self, in_dim: int, out_dim: int, grid: int) -> None:
        super().__init__()
        self.grid = grid  # grid side of the incoming tokens
        self.norm = nn.LayerNorm(in_dim, eps=NORM_EPS)
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=3, stride=2, padding=1)
        self.cls_proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return spatial_reduction(
            x, self.grid, self.norm.weight, self.norm.bias, self.conv.weight, self.conv.bias,
            self.cls_proj.weight, self.cls_proj.bias, NORM_EPS,
        )


class Stage(nn.Module):
    def __init__(self, config: StageConfig, in_dim: int | None, in_grid: int | None) -> None:
        super().__init__()
        self.reduction = SpatialReduction(in_dim, config.embed_dim, in_grid) if in_dim is not None else None
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.grid**2, config.embed_dim))
        self.blocks = nn.Sequential(*(Block(config.embed_dim, b) for b in config.blocks))

    def forward(self, x: Tensor) -> Tensor:
        if self.reduction is not None:
            x = self.reduction(x)
        return self.blocks(x + self.pos_embed)


class ViT(nn.Module):
    """A Vision Transformer of one or more stages, with optional token reduction."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        first, last = config.stages[0], config.stages[-1]
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, first.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, first.embed_dim))
        self.stages = nn.ModuleList(
            Stage(stage, prev.embed_dim if prev else None, prev.grid if prev else None)
            for prev, stage in zip((None,) + config.stages[:-1], config.stages)
        )
        self.norm = nn.LayerNorm(last.embed_dim, eps=NORM_EPS)
        self.head = nn.Linear(last.embed_dim, config.num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images -> (B, N, D) final tokens, normalised."""
        x = self.patch_embed(resize_input(x, self.config.img_size))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x[:, 0])

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

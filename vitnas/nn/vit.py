"""The standalone Vision Transformer that `vitnas.extract` produces.

Plain PyTorch: every layer has exactly the shape its sub-network uses, weights are
ordinary parameters, and nothing here knows about supernets or search spaces. The
modules hold the parameters; the forward is `vitnas.nn.network_forward`, the same
code the supernet and the masked multi-arch pass run on their slices.
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
from torch import Tensor, nn

from vitnas.errors import ExportError
from vitnas.nn.block import NORM_EPS, BlockPlan, drop_path_rates
from vitnas.nn.network import NetworkPlan, NetworkWeights, StagePlan, StageWeights, network_forward, network_tokens
from vitnas.nn.reducers import KeptFraction, get_reducer
from vitnas.space.reducer_rules import REDUCERS
from vitnas.util.fields import require_int, require_number

__all__ = ["ViT", "ViTConfig", "StageConfig", "BlockConfig", "NORM_EPS", "network_plan"]


@dataclass(frozen=True)
class BlockConfig:
    num_heads: int
    head_dim: int  # width of one head; the attention is num_heads * head_dim wide
    mlp_hidden: int  # MLP hidden width
    keep_rate: float  # fraction of patch tokens kept after the attention (1.0: none dropped)
    reducer: str | None = None  # token reducer (a name of vitnas.space.spec.REDUCERS); None where keep_rate is 1.0

    def __post_init__(self) -> None:
        """A reducing block without a reducer is EViT (configs written before the field); others have none."""
        if self.reducer is not None and self.reducer not in REDUCERS:
            raise ExportError(f"BlockConfig.reducer: {self.reducer!r} is not one of {', '.join(REDUCERS)}")
        if self.keep_rate >= 1.0:
            object.__setattr__(self, "reducer", None)
        elif self.reducer is None:
            object.__setattr__(self, "reducer", "evit")


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
                BlockConfig(**_fields(block, f"{stage_where}.blocks[{j}]", _BLOCK_FIELDS, _BLOCK_OPTIONAL))
                for j, block in enumerate(fields["blocks"])
            )
            stages.append(StageConfig(fields["embed_dim"], fields["grid"], blocks))
        config = cls(top["img_size"], top["patch_size"], top["in_chans"], top["num_classes"], tuple(stages))
        _check_grids(config, where)
        return config


# What `ViTConfig.from_dict` reads: field -> kind ("int": positive integer, "rate": number in (0, 1],
# "list": non-empty list, "reducer": null or a name of REDUCERS).
_CONFIG_FIELDS = {"img_size": "int", "patch_size": "int", "in_chans": "int", "num_classes": "int", "stages": "list"}
_STAGE_FIELDS = {"embed_dim": "int", "grid": "int", "blocks": "list"}
_BLOCK_FIELDS = {"num_heads": "int", "head_dim": "int", "mlp_hidden": "int", "keep_rate": "rate"}
_BLOCK_OPTIONAL = {"reducer": "reducer"}  # absent in configs written before reducers were named: EViT


def _fields(data: Any, where: str, kinds: dict[str, str], optional: dict[str, str] | None = None) -> dict[str, Any]:
    """`data` as a dict of the fields of `kinds` (and those of `optional` it has), each of its kind.

    Raises:
        ExportError: one line naming a missing, unknown or ill-typed field.
    """
    if not isinstance(data, dict):
        raise ExportError(f"{where}: expected an object, got {type(data).__name__}")
    optional = optional or {}
    missing = [name for name in kinds if name not in data]
    unknown = [name for name in data if name not in kinds and name not in optional]
    if missing:
        raise ExportError(f"{where}: missing field {missing[0]!r}")
    if unknown:
        raise ExportError(f"{where}: unknown field {unknown[0]!r} (expected {', '.join([*kinds, *optional])})")
    kinds = {**kinds, **{name: kind for name, kind in optional.items() if name in data}}
    for name, kind in kinds.items():
        value = data[name]
        if kind == "reducer" and value is not None and value not in REDUCERS:
            raise ExportError(f"{where}.{name}: expected null or one of {', '.join(REDUCERS)}, got {value!r}")
        if kind == "int":
            require_int(f"{where}.{name}", value, ExportError)
        if kind == "rate":
            require_number(f"{where}.{name}", value, ExportError, above=0, at_most=1)
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
        reducers = sorted({b.reducer for b in stage.blocks if b.reducer is not None})
        if len(reducers) > 1:
            raise ExportError(f"{where}.stages[{i}]: blocks use reducers {', '.join(reducers)}; a stage uses one")
        dropping = [name for name in reducers if not REDUCERS[name].preserves_grid]
        if i < len(config.stages) - 1 and dropping:
            raise ExportError(f"{where}.stages[{i}]: only the last stage may drop tokens (keep_rate < 1) with "
                              f"reducer {dropping[0]}")
        grid = math.ceil(grid / 2)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim)
        self.proj = nn.Linear(num_heads * head_dim, dim)


class Mlp(nn.Module):
    """timm's `Mlp` parameters (``fc1``, ``fc2``); the GELU between them is in `block_forward`."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class Block(nn.Module):
    """The parameters of one pre-norm block; `vitnas.nn.block_forward` computes with them.

    A block whose reducer has parameters (DynamicViT's predictor) holds them as ``reducer``.
    """

    def __init__(self, dim: int, config: BlockConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = Attention(dim, config.num_heads, config.head_dim)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, config.mlp_hidden)
        reducer = get_reducer(config.reducer).build_parameters(dim) if config.reducer is not None else None
        if reducer is not None:
            self.reducer = reducer

    def weights(self) -> dict[str, Tensor]:
        return dict(self.named_parameters())


class SpatialReduction(nn.Module):
    """Residual spatial reduction into a stage (see `vitnas.nn.spatial_reduction`)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim, eps=NORM_EPS)
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=3, stride=2, padding=1)
        self.cls_proj = nn.Linear(in_dim, out_dim)


class Stage(nn.Module):
    def __init__(self, config: StageConfig, in_dim: int | None) -> None:
        super().__init__()
        self.reduction = SpatialReduction(in_dim, config.embed_dim) if in_dim is not None else None
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.grid**2, config.embed_dim))
        self.blocks = nn.ModuleList(Block(config.embed_dim, b) for b in config.blocks)

    def weights(self) -> StageWeights:
        reduction = dict(self.reduction.named_parameters()) if self.reduction is not None else None
        return StageWeights(self.pos_embed, tuple(block.weights() for block in self.blocks), reduction)


class ViT(nn.Module):
    """A Vision Transformer of one or more stages, with optional token reduction.

    The modules only hold parameters (named as in timm); the computation is
    `vitnas.nn.network_forward`, the same code the supernet runs.

    Args:
        config: the architecture.
        drop_path_rate: stochastic depth at the deepest block for training, rising
            linearly from 0 as in the supernet; identity in eval mode, so it changes
            neither an export nor anything `config` records.
    """

    def __init__(self, config: ViTConfig, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self.set_drop_path_rate(drop_path_rate)
        first, last = config.stages[0], config.stages[-1]
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, first.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, first.embed_dim))
        self.stages = nn.ModuleList(
            Stage(stage, prev.embed_dim if prev else None)
            for prev, stage in zip((None,) + config.stages[:-1], config.stages)
        )
        self.norm = nn.LayerNorm(last.embed_dim, eps=NORM_EPS)
        self.head = nn.Linear(last.embed_dim, config.num_classes)

    def set_drop_path_rate(self, rate: float) -> ViT:
        """Sets the training stochastic depth at the deepest block (see the class docstring); returns the model.

        For a model built elsewhere (an export being fine-tuned): the rate is a training
        setting, not part of the weights or the config.
        """
        self.drop_path_rate = rate
        self.plan = network_plan(self.config, rate)
        return self

    def weights(self) -> NetworkWeights:
        """The model's own parameters in the form `network_forward` takes."""
        return NetworkWeights(
            self.patch_embed.proj.weight, self.patch_embed.proj.bias, self.cls_token,
            tuple(stage.weights() for stage in self.stages),
            self.norm.weight, self.norm.bias, self.head.weight, self.head.bias,
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images -> (B, N, D) final tokens, normalised."""
        return network_forward(x, self.weights(), self.plan, self.training)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x[:, 0])

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_kept(self, x: Tensor) -> tuple[Tensor, tuple[KeptFraction, ...]]:
        """Logits, and one `KeptFraction` per DynamicViT reduction in training mode (for its keep-ratio loss)."""
        tokens = network_tokens(x, self.weights(), self.plan, self.training)
        return self.forward_head(tokens.x), tokens.kept


def network_plan(config: ViTConfig, drop_path_rate: float = 0.0) -> NetworkPlan:
    """What `network_forward` needs of a config besides the weights (and a training drop-path rate)."""
    rates = iter(drop_path_rates(drop_path_rate, sum(len(stage.blocks) for stage in config.stages)))
    stages = []
    for index, stage in enumerate(config.stages):
        blocks = tuple(
            BlockPlan(block.head_dim, block.keep_rate, get_reducer(block.reducer) if block.reducer else None,
                      next(rates))
            for block in stage.blocks
        )
        stages.append(StagePlan(stage.grid, blocks, config.stages[index - 1].grid if index else None))
    return NetworkPlan(config.img_size, tuple(stages))

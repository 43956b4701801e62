"""Parsing and checking search-space files.

A space file (YAML) is turned into frozen spec dataclasses here; `vitnas.space.space`
builds the searchable object on top. Every check that can fail names the file, the
field and the reason in one line, so a typo never surfaces later as a shape error
deep inside torch.

File format (see `search_spaces/*.yaml` for complete, commented examples)::

    name: tiny32
    img_size: 32              # side of the (square) input images
    in_chans: 3
    num_classes: 10
    patch:
      mode: flexi             # flexi: true patch sizes, one kernel PI-resampled (FlexiViT)
                              # resize: input resized, one kernel, a position embedding per grid (SuperViT)
      sizes: [4, 8]           # patch-size choices (resize mode: exactly one)
      img_sizes: [32]         # resolutions the input is resized to (default: [img_size])
      kernel_size: 8          # stored kernel side (flexi default: the largest patch size)
    stages:
      - depth: [2, 3, 4]
        embed_dim: [32, 64]
        num_heads: [2, 4]     # the same choices for every block, or one list per block
        mlp_ratio: [2.0, 4.0] # likewise
        head_dim: 16          # optional; without it a head is embed_dim / num_heads wide
        token_reduction:      # see `TokenReductionSpec`
          reducer: evit       # or a list of names: the reducer is then a searched gene of the stage
          blocks: [1, 2]      # 0-based block indices within the stage
          keep_rates: [0.5, 1.0]
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from vitnas.errors import ArchError, SpaceError
from vitnas.space.reducer_rules import REDUCERS, ReducerInfo  # re-exported: defined here before their arithmetic

__all__ = ["PatchSpec", "TokenReductionSpec", "StageSpec", "SpaceSpec", "ReducerInfo", "REDUCERS", "parse_space"]

PATCH_MODES = ("flexi", "resize")


# The keys each mapping of a space file may hold.
_TOP_KEYS = ("name", "img_size", "in_chans", "num_classes", "patch", "stages")
_PATCH_KEYS = ("mode", "sizes", "img_sizes", "kernel_size")
_STAGE_KEYS = ("depth", "embed_dim", "num_heads", "mlp_ratio", "head_dim", "token_reduction")
_REDUCTION_KEYS = ("reducer", "blocks", "keep_rates")


@dataclass(frozen=True)
class PatchSpec:
    """How the image becomes tokens, and which patch sizes / resolutions are searched."""

    mode: str  # "flexi" (true patch sizes, resampled kernel) or "resize" (resized input, one kernel)
    sizes: tuple[int, ...]  # patch-size choices, in pixels of the (possibly resized) input
    img_sizes: tuple[int, ...]  # resolution choices the input is resized to before patchifying
    kernel_size: int  # side of the stored patch-embedding kernel


@dataclass(frozen=True)
class TokenReductionSpec:
    """Where patch tokens are reduced, by which reducer, and how many keep full computation.

    At each listed block, between its attention and its MLP, the reducer keeps about
    ``ceil(keep_rate * n)`` of the n non-class tokens for full computation and decides
    what becomes of the rest (`vitnas.nn.reducers`). A reducer that drops or merges
    tokens works in the last stage only: a spatial reduction after it would need the
    full token grid. One that preserves the grid (`ReducerInfo.preserves_grid`) may
    reduce in any stage.

    Several reducers make the reducer a searched gene, **one per stage** (all the
    stage's reduction blocks use the arch's choice, `StageArch.reducer`), not one per
    block: reducers carry state along the stage in `vitnas.nn.reducers.Tokens`
    (ToMe's token sizes, which every later attention reads; Evo-ViT's set-aside grid,
    restored at the stage end) that no other reducer honours, so two reducers in one
    stage have no defined meaning. One reducer per stage is also how each paper runs.
    """

    reducers: tuple[str, ...]  # names of `REDUCERS`, in file order; more than one: a searched choice
    blocks: tuple[int, ...]  # 0-based block indices within the stage
    keep_rates: tuple[float, ...]  # keep-rate choices at each of those blocks, each in (0, 1]

    @property
    def searchable(self) -> bool:
        """Whether each arch chooses its reducer here (the space file lists several)."""
        return len(self.reducers) > 1


@dataclass(frozen=True)
class StageSpec:
    """The choices of one stage; per-block tuples have one entry per block of the deepest choice."""

    depths: tuple[int, ...]  # depth choices
    embed_dims: tuple[int, ...]  # embed-dim choices
    num_heads: tuple[tuple[int, ...], ...]  # head-count choices of each block
    mlp_ratios: tuple[tuple[float, ...], ...]  # MLP-ratio choices of each block
    head_dim: int | None  # fixed width of one head, or None for embed_dim / num_heads
    token_reduction: TokenReductionSpec | None  # None: no tokens are dropped in this stage

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def keep_rates_at(self, block: int) -> tuple[float, ...]:
        """Keep-rate choices of a block: (1.0,) where the block reduces no tokens."""
        reduction = self.token_reduction
        if reduction is not None and block in reduction.blocks:
            return reduction.keep_rates
        return (1.0,)

    @property
    def reducer_choices(self) -> tuple[str, ...]:
        """The reducers an arch chooses among in this stage; empty where there is no choice to make."""
        reduction = self.token_reduction
        return reduction.reducers if reduction is not None and reduction.searchable else ()

    def reducer_at(self, block: int, chosen: str | None = None) -> str | None:
        """Name of the token reducer at a block, None where the block reduces no tokens.

        Args:
            block: 0-based block index within the stage.
            chosen: the arch's choice for this stage (`StageArch.reducer`); None takes the
                space's only reducer, which is all a stage without a choice has.

        Raises:
            ArchError: the stage offers a choice and `chosen` names none of it (an arch
                that `SearchSpace.validate` rejects).
        """
        reduction = self.token_reduction
        if reduction is None or block not in reduction.blocks:
            return None
        if chosen is None and not reduction.searchable:
            return reduction.reducers[0]
        if chosen not in reduction.reducers:
            raise ArchError(f"reducer: {chosen!r} is not one of this stage's reducers {list(reduction.reducers)}")
        return chosen

    def output_tokens(self, tokens: int, grid: int, chosen: str | None = None) -> int:
        """Sequence length leaving the stage whose last block leaves `tokens`.

        A grid-preserving reducer (`ReducerInfo.preserves_grid`) gives every token back to
        its grid position at the stage end; any other leaves `tokens`.
        """
        reduction = self.token_reduction
        if reduction is None:
            return tokens
        name = chosen if chosen is not None else (None if reduction.searchable else reduction.reducers[0])
        return 1 + grid * grid if name is not None and REDUCERS[name].preserves_grid else tokens

    def head_width(self, embed_dim: int, num_heads: int) -> int:
        return self.head_dim if self.head_dim is not None else embed_dim // num_heads

    def max_attn_dim(self) -> int:
        """Widest q/k/v projection any choice of this stage needs."""
        return max(
            heads * self.head_width(dim, heads)
            for dim in self.embed_dims
            for choices in self.num_heads
            for heads in choices
        )

    def max_mlp_hidden(self) -> int:
        return max(mlp_hidden(dim, r) for dim in self.embed_dims for choices in self.mlp_ratios for r in choices)


@dataclass(frozen=True)
class SpaceSpec:
    """A whole search space, as written in its file."""

    name: str
    img_size: int  # side of the input images the supernet is fed
    in_chans: int
    num_classes: int
    patch: PatchSpec
    stages: tuple[StageSpec, ...]


def mlp_hidden(embed_dim: int, mlp_ratio: float) -> int:
    """MLP hidden width, rounded down as timm's `Block` does."""
    return int(embed_dim * mlp_ratio)


def stage_grid(grid: int, stage: int) -> int:
    """Token-grid side at `stage` (each spatial reduction halves it, rounding up)."""
    for _ in range(stage):
        grid = math.ceil(grid / 2)
    return grid


class _Fields:
    """Reads one mapping of a space file, naming file and field in every error.

    The mapping's keys are checked against `known` first, so a misspelt key
    (``embed_dims``) is reported as unknown rather than as a missing ``embed_dim``.
    """

    def __init__(self, data: Any, where: str, source: str, known: tuple[str, ...]) -> None:
        self.source = source
        self.where = where
        if not isinstance(data, dict):
            self.fail(f"expected a mapping, got {_describe(data)}")
        self.data = data
        unknown = [key for key in data if key not in known]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.fail(f"unknown key {unknown[0]!r} ({hint}known keys: {', '.join(known)})")

    def fail(self, reason: str, field: str | None = None) -> None:
        path = f"{self.where}.{field}" if self.where and field else (field or self.where or "top level")
        raise SpaceError(f"{self.source}: {path}: {reason}")

    def get(self, key: str, default: Any = ...) -> Any:
        """The value of `key`; without a default, a missing key is an error."""
        if key in self.data:
            return self.data[key]
        if default is ...:
            self.fail("missing required field", key)
        return default

    def positive_int(self, key: str, default: Any = ...) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(f"expected a positive integer, got {_describe(value)}", key)
        return value

    def choices(self, key: str, kind: type, default: Any = ...) -> tuple:
        """A non-empty list of distinct positive numbers (a bare number is a single choice)."""
        value = self.get(key, default)
        return _choices(value, kind, lambda reason: self.fail(reason, key))

    def per_block_choices(self, key: str, kind: type, depth: int) -> tuple[tuple, ...]:
        """Either one choice list for every block, or a list of `depth` choice lists."""
        value = self.get(key)
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            if len(value) != depth:
                self.fail(f"gives {len(value)} per-block choice lists, but the deepest choice has {depth} blocks", key)
            return tuple(
                _choices(v, kind, lambda reason, i=i: self.fail(reason, f"{key}[{i}]")) for i, v in enumerate(value)
            )
        shared = _choices(value, kind, lambda reason: self.fail(reason, key))
        return (shared,) * depth


def _choices(value: Any, kind: type, fail) -> tuple:
    values = value if isinstance(value, list) else [value]
    if not values:
        fail("expected at least one choice")
    for v in values:
        ok_type = isinstance(v, (int, float)) if kind is float else isinstance(v, int)
        if isinstance(v, bool) or not ok_type or v <= 0:
            noun = "positive numbers" if kind is float else "positive integers"
            fail(f"expected {noun}, got {_describe(v)}")
    if len(set(values)) != len(values):
        fail(f"repeated choice in {values}")
    return tuple(sorted(kind(v) for v in values))


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_space(data: Any, source: str) -> SpaceSpec:
    """Checks a loaded space file and returns its spec.

    Args:
        data: the parsed YAML (or an equivalent dict).
        source: where it came from, named in every error (a path or "<dict>").

    Raises:
        SpaceError: one line naming `source`, the field and the reason.
    """
    top = _Fields(data, "", source, _TOP_KEYS)
    name = top.get("name", "unnamed")
    if not isinstance(name, str) or not name:
        top.fail("expected a non-empty string", "name")
    img_size = top.positive_int("img_size")
    in_chans = top.positive_int("in_chans", 3)
    num_classes = top.positive_int("num_classes")
    patch = _parse_patch(top.get("patch"), img_size, source)
    stage_list = top.get("stages")
    if not isinstance(stage_list, list) or not 1 <= len(stage_list) <= 4:
        top.fail(f"expected a list of 1 to 4 stages, got {_describe(stage_list)}", "stages")
    stages = tuple(
        _parse_stage(s, i, i == len(stage_list) - 1, source) for i, s in enumerate(stage_list)
    )
    _check_grids(patch, len(stages), source)
    return SpaceSpec(name, img_size, in_chans, num_classes, patch, stages)


def _parse_patch(data: Any, img_size: int, source: str) -> PatchSpec:
    fields = _Fields(data, "patch", source, _PATCH_KEYS)
    mode = fields.get("mode")
    if mode not in PATCH_MODES:
        fields.fail(f"expected one of {', '.join(PATCH_MODES)}, got {_describe(mode)}", "mode")
    sizes = fields.choices("sizes", int)
    img_sizes = fields.choices("img_sizes", int, [img_size])
    if mode == "resize" and len(sizes) != 1:
        fields.fail("resize mode shares one kernel: give exactly one patch size (or use mode: flexi)", "sizes")
    kernel_size = fields.positive_int("kernel_size", max(sizes))
    if mode == "resize" and kernel_size != sizes[0]:
        fields.fail(f"resize mode uses the kernel as is: kernel_size must equal the patch size {sizes[0]}",
                    "kernel_size")
    for resolution in img_sizes:
        for size in sizes:
            if resolution % size:
                fields.fail(f"patch size {size} does not tile the {resolution}x{resolution} image", "sizes")
    return PatchSpec(mode, sizes, img_sizes, kernel_size)


def _parse_stage(data: Any, index: int, is_last: bool, source: str) -> StageSpec:
    where = f"stages[{index}]"
    fields = _Fields(data, where, source, _STAGE_KEYS)
    depths = fields.choices("depth", int)
    embed_dims = fields.choices("embed_dim", int)
    max_depth = max(depths)
    num_heads = fields.per_block_choices("num_heads", int, max_depth)
    mlp_ratios = fields.per_block_choices("mlp_ratio", float, max_depth)
    head_dim = fields.get("head_dim", None)
    if head_dim is not None and (isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim <= 0):
        fields.fail(f"expected a positive integer or null, got {_describe(head_dim)}", "head_dim")
    reduction_data = fields.get("token_reduction", None)
    if head_dim is None:
        for block_choices in num_heads:
            for heads in block_choices:
                for dim in embed_dims:
                    if dim % heads:
                        fields.fail(f"{heads} heads do not divide embed_dim {dim} (set head_dim to decouple them)",
                                    "num_heads")
    for block_choices in mlp_ratios:
        for ratio in block_choices:
            if mlp_hidden(min(embed_dims), ratio) < 1:
                fields.fail(f"ratio {ratio} gives an empty MLP at embed_dim {min(embed_dims)}", "mlp_ratio")
    reduction = None
    if reduction_data is not None:
        reduction = _parse_reduction(reduction_data, f"{where}.token_reduction", max_depth, source)
        dropping = [name for name in reduction.reducers if not REDUCERS[name].preserves_grid]
        if not is_last and dropping:
            keepers = [name for name, info in REDUCERS.items() if info.preserves_grid]
            hint = f"; reducers that keep the grid may: {', '.join(keepers)}" if keepers else ""
            fields.fail(f"only the last stage may drop tokens with reducer {dropping[0]}: the spatial reduction "
                        f"after it needs the full grid{hint}", "token_reduction")
    return StageSpec(depths, embed_dims, num_heads, mlp_ratios, head_dim, reduction)


def _parse_reduction(data: Any, where: str, max_depth: int, source: str) -> TokenReductionSpec:
    fields = _Fields(data, where, source, _REDUCTION_KEYS)
    reducers = _reducer_names(fields)
    blocks_value = fields.get("blocks")
    blocks = blocks_value if isinstance(blocks_value, list) else [blocks_value]
    for block in blocks:
        if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block < max_depth:
            fields.fail(f"block {_describe(block)} is not a block index in [0, {max_depth})", "blocks")
    if not blocks or len(set(blocks)) != len(blocks):
        fields.fail(f"expected distinct block indices, got {_describe(blocks_value)}", "blocks")
    rates = fields.get("keep_rates")
    rate_list = rates if isinstance(rates, list) else [rates]
    for rate in rate_list:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < rate <= 1.0:
            fields.fail(f"keep rate {_describe(rate)} is outside (0, 1]", "keep_rates")
    keep_rates = fields.choices("keep_rates", float)
    for reducer in reducers:  # every reducer must honour every keep rate: the genes are drawn independently
        floor = REDUCERS[reducer].min_keep_rate
        if keep_rates[0] < floor:
            fields.fail(f"reducer {reducer} keeps at least {floor} of the tokens, got keep rate {keep_rates[0]}",
                        "keep_rates")
    return TokenReductionSpec(reducers, tuple(sorted(blocks)), keep_rates)


def _reducer_names(fields: _Fields) -> tuple[str, ...]:
    """The ``reducer`` key: one name, or a list of distinct names (a choice); file order is kept."""
    value = fields.get("reducer", "evit")
    names = value if isinstance(value, list) else [value]
    if not names:
        fields.fail("expected a reducer name or a non-empty list of them", "reducer")
    for name in names:
        if not isinstance(name, str) or name not in REDUCERS:
            fields.fail(f"expected one of {', '.join(REDUCERS)}, got {_describe(name)}", "reducer")
    if len(set(names)) != len(names):
        fields.fail(f"repeated choice in {names}", "reducer")
    return tuple(names)


def _check_grids(patch: PatchSpec, num_stages: int, source: str) -> None:
    """Every stage must still have a token grid after its spatial reductions."""
    for resolution in patch.img_sizes:
        for size in patch.sizes:
            grid = resolution // size
            if num_stages > 1 and grid < 2 ** (num_stages - 1):
                raise SpaceError(
                    f"{source}: patch.sizes: patch {size} on {resolution}px gives a {grid}x{grid} grid, too small "
                    f"for {num_stages - 1} spatial reductions"
                )

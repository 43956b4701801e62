"""`Arch`: one sub-network of a search space, as a frozen value.

An `Arch` is the currency between training, latency, search and export. It is
hashable (so it can key caches and de-duplicate search candidates) and round-trips
exactly through JSON.

It holds only what is *active*: a stage of depth 3 stores exactly three head counts,
MLP ratios and keep rates. Choices of blocks beyond the chosen depth cannot be
represented, so two archs that run the same network are always equal (NNI's
AutoFormer export, by contrast, returns "distinct" models differing only in the head
count of a removed block).

The token reducer of a stage is recorded only where the space makes it a choice and
the stage reduces tokens (`StageArch.reducer`); elsewhere it is None and the space's
one reducer applies. So archs written before reducers were searchable load unchanged,
and an arch that keeps every token does not differ by a reducer it never runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vitnas._moved import moved_attribute
from vitnas.errors import ArchError

__all__ = ["Arch", "StageArch"]


@dataclass(frozen=True)
class StageArch:
    """The choices of one stage; one entry per active block in each tuple."""

    embed_dim: int  # width of the token embeddings in this stage
    num_heads: tuple[int, ...]  # attention heads of each block
    mlp_ratio: tuple[float, ...]  # MLP hidden width / embed_dim of each block
    keep_rate: tuple[float, ...]  # fraction of patch tokens kept after each block's attention (1.0: none dropped)
    reducer: str | None = None  # the stage's token reducer where the space offers a choice and a keep rate is < 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "embed_dim", _as_int(self.embed_dim, "embed_dim"))
        object.__setattr__(self, "num_heads", tuple(_as_int(h, "num_heads") for h in self.num_heads))
        object.__setattr__(self, "mlp_ratio", tuple(_as_float(r, "mlp_ratio") for r in self.mlp_ratio))
        object.__setattr__(self, "keep_rate", tuple(_as_float(r, "keep_rate") for r in self.keep_rate))
        lengths = {len(self.num_heads), len(self.mlp_ratio), len(self.keep_rate)}
        if len(lengths) != 1:
            raise ArchError(
                "stage: num_heads, mlp_ratio and keep_rate need one entry per block, got lengths "
                f"{len(self.num_heads)}, {len(self.mlp_ratio)}, {len(self.keep_rate)}"
            )
        if not self.num_heads:
            raise ArchError("stage: a stage needs at least one block")
        if self.reducer is not None and (not isinstance(self.reducer, str) or not self.reducer):
            raise ArchError(f"reducer: expected a reducer name or null, got {self.reducer!r}")

    @property
    def depth(self) -> int:
        """Number of blocks in this stage."""
        return len(self.num_heads)

    def to_dict(self) -> dict[str, Any]:
        """The stage as JSON-ready data; ``reducer`` only where one was chosen, so older readers still load it."""
        data: dict[str, Any] = {
            "embed_dim": self.embed_dim,
            "num_heads": list(self.num_heads),
            "mlp_ratio": list(self.mlp_ratio),
            "keep_rate": list(self.keep_rate),
        }
        if self.reducer is not None:
            data["reducer"] = self.reducer
        return data


@dataclass(frozen=True)
class Arch:
    """One sub-network: input resolution, patch size and the choices of every stage."""

    img_size: int  # side of the square image the sub-network patchifies (inputs are resized to it if needed)
    patch_size: int  # side of one patch, in pixels of that image
    stages: tuple[StageArch, ...]  # one entry per stage of the space

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", _as_int(self.img_size, "img_size"))
        object.__setattr__(self, "patch_size", _as_int(self.patch_size, "patch_size"))
        object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages or not all(isinstance(s, StageArch) for s in self.stages):
            raise ArchError("stages: expected a non-empty sequence of StageArch")

    @property
    def depth(self) -> int:
        """Total number of transformer blocks."""
        return sum(stage.depth for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "img_size": self.img_size,
            "patch_size": self.patch_size,
            "stages": [stage.to_dict() for stage in self.stages],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Arch:
        """Builds an Arch from `to_dict` output; raises ArchError naming the bad field."""
        if not isinstance(data, dict):
            raise ArchError(f"arch: expected a JSON object, got {type(data).__name__}")
        _check_keys(data, {"img_size", "patch_size", "stages"}, "arch")
        stages = data["stages"]
        if not isinstance(stages, list):
            raise ArchError("arch.stages: expected a list")
        parsed = []
        for index, stage in enumerate(stages):
            where = f"arch.stages[{index}]"
            if not isinstance(stage, dict):
                raise ArchError(f"{where}: expected an object")
            _check_keys(stage, {"embed_dim", "num_heads", "mlp_ratio", "keep_rate"}, where, optional={"reducer"})
            for key in ("num_heads", "mlp_ratio", "keep_rate"):
                if not isinstance(stage[key], list):
                    raise ArchError(f"{where}.{key}: expected a list with one entry per block")
            try:
                parsed.append(StageArch(**stage))
            except ArchError as error:
                raise ArchError(f"{where}: {str(error).removeprefix('stage: ')}") from None
        return cls(img_size=data["img_size"], patch_size=data["patch_size"], stages=tuple(parsed))

    def to_json(self) -> str:
        """Compact, key-ordered JSON; `Arch.from_json(a.to_json()) == a` always."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Arch:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ArchError(f"arch: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
        return cls.from_dict(data)

    def __str__(self) -> str:
        parts = [f"img {self.img_size} patch {self.patch_size}"]
        for index, stage in enumerate(self.stages):
            rates = sorted({r for r in stage.keep_rate if r < 1.0})
            keep = f" keep {rates}" if rates else ""
            keep += f" {stage.reducer}" if stage.reducer else ""
            parts.append(f"stage{index}: dim {stage.embed_dim} depth {stage.depth}{keep}")
        return " | ".join(parts)


def _check_keys(data: dict, expected: set[str], where: str, optional: set[str] = frozenset()) -> None:
    missing = sorted(expected - data.keys())
    unknown = sorted(data.keys() - expected - optional)
    if missing:
        raise ArchError(f"{where}: missing field {missing[0]!r}")
    if unknown:
        raise ArchError(f"{where}: unknown field {unknown[0]!r}")


def _as_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ArchError(f"{field}: expected an integer, got {value!r}")
    return int(value)


def _as_float(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArchError(f"{field}: expected a number, got {value!r}")
    return float(value)


def __getattr__(name: str) -> Any:  # read_arch, read_archs: in vitnas.space.arch_files now (one release)
    return moved_attribute(__name__, name)

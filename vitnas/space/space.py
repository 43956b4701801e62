"""Search spaces: load a space file, sample, bound, check and build archs.

The choices live in `nni.mutable` objects (one labelled `Categorical` per gene), so
the space speaks NNI's language (`freeze`, `random`, `grid`, `simplify`) while
`Arch` stays the frozen value the rest of vitnas passes around. A gene of a block
beyond the chosen depth exists in the mutable space but not in the `Arch`: it is
dropped when a sample becomes an arch, which is what canonicalises inactive choices.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from nni.mutable import Categorical, MutableDict

from vitnas.errors import ArchError, SpaceError
from vitnas.space.arch import Arch, StageArch
from vitnas.space.cost import count_macs
from vitnas.space.spec import SpaceSpec, StageSpec, parse_space
from vitnas.util.shipped import shipped_files, unknown_name
from vitnas.util.yamlfile import read_yaml

__all__ = ["SearchSpace", "load_space", "shipped_spaces"]

def shipped_spaces() -> dict[str, Path]:
    """Names and paths of the space files shipped with vitnas."""
    return shipped_files("vitnas.search_spaces", "search_spaces")


def load_space(name_or_path: str | Path | Mapping[str, Any]) -> SearchSpace:
    """Loads a search space.

    Args:
        name_or_path: a shipped space name (``"tiny32"``, ``"deit"``, ``"resnas"``), a path
            to a YAML file, or an already-parsed dict.

    Raises:
        SpaceError: the file is missing, not YAML, or describes an impossible space.
    """
    if isinstance(name_or_path, Mapping):
        return SearchSpace(parse_space(dict(name_or_path), "<dict>"), dict(name_or_path))
    path = Path(name_or_path)
    if not path.is_file():
        shipped = shipped_spaces()
        if str(name_or_path) not in shipped:
            raise SpaceError(unknown_name(str(name_or_path), "space", shipped))
        path = shipped[str(name_or_path)]
    data = read_yaml(path, SpaceError)
    return SearchSpace(parse_space(data, str(path)), data)


class SearchSpace:
    """All sub-networks one supernet can run.

    Attributes:
        spec: the checked contents of the space file.
        mutables: the same choices as an `nni.mutable.MutableDict` of labelled categoricals.
    """

    def __init__(self, spec: SpaceSpec, source: Mapping[str, Any] | None = None) -> None:
        self.spec = spec
        self._source = dict(source) if source is not None else None
        self.mutables = MutableDict({c.label: c for c in self._categoricals()})
        self._extremes: dict[bool, Arch] = {}  # largest / smallest, costed once (reducer choices rank by MACs)

    # -- plain facts ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def img_size(self) -> int:
        return self.spec.img_size

    @property
    def in_chans(self) -> int:
        return self.spec.in_chans

    @property
    def stages(self) -> tuple[StageSpec, ...]:
        return self.spec.stages

    def to_dict(self) -> dict[str, Any]:
        """The space file's contents, to store beside a checkpoint and reload with `load_space`."""
        if self._source is None:
            raise SpaceError(f"{self.name}: this space was built without its source dict")
        return dict(self._source)

    # -- building archs ------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random arch (each gene uniform over its choices)."""
        return self.arch_from_sample(self.mutables.random(random_state=rng))

    def largest(self) -> Arch:
        """The most expensive arch: finest patches, largest input, every other choice at its maximum."""
        return self._extreme(largest=True)

    def smallest(self) -> Arch:
        """The cheapest arch: coarsest patches, smallest input, every other choice at its minimum."""
        return self._extreme(largest=False)

    def arch(
        self,
        *,
        img_size: int | None = None,
        patch_size: int | None = None,
        depth: int | Sequence[int] | None = None,
        embed_dim: int | Sequence[int] | None = None,
        num_heads: Any = None,
        mlp_ratio: Any = None,
        keep_rate: Any = None,
        reducer: str | Sequence[str | None] | None = None,
    ) -> Arch:
        """Builds a named point of the space, e.g. DeiT-S in ``deit``::

            space.arch(depth=12, embed_dim=384, num_heads=6, mlp_ratio=4.0, patch_size=16)

        Any field not given takes its value in `largest()` (so an omitted patch size is the
        finest one); keep rates default to 1.0, no reduction. Per-stage fields take a
        single value for every stage or one per stage; ``num_heads``, ``mlp_ratio`` and
        ``keep_rate`` may also be one sequence per stage with one entry per block. A keep
        rate given as a single value applies to the blocks that reduce tokens only.
        ``reducer`` (one name, or one per stage) counts only in stages that drop tokens; a
        stage that offers a choice and is given none takes the first reducer its file lists.

        Raises:
            ArchError: a value is not a choice of the space (naming the field).
        """
        top = self.largest()
        num_stages = len(self.stages)
        depths = _per_stage(depth, num_stages, "depth", [s.depth for s in top.stages])
        dims = _per_stage(embed_dim, num_stages, "embed_dim", [s.embed_dim for s in top.stages])
        stages = []
        for index, (stage_spec, stage_top) in enumerate(zip(self.stages, top.stages)):
            d = int(depths[index])
            heads = _per_block(num_heads, index, num_stages, d, "num_heads", stage_top.num_heads)
            ratios = _per_block(mlp_ratio, index, num_stages, d, "mlp_ratio", stage_top.mlp_ratio)
            stage_rate = 1.0 if keep_rate is None else _per_stage(keep_rate, num_stages, "keep_rate", [])[index]
            if np.isscalar(stage_rate):  # one rate: for the blocks that reduce tokens
                sites = stage_spec.token_reduction.blocks if stage_spec.token_reduction else ()
                rates = tuple(float(stage_rate) if i in sites else 1.0 for i in range(d))
            else:
                rates = _per_block([stage_rate] * num_stages, index, num_stages, d, "keep_rate", ())
            chosen = _per_stage(reducer, num_stages, "reducer", [None] * num_stages)[index]
            named = _named_reducer(stage_spec, rates, chosen, index)
            stages.append(StageArch(dims[index], heads, ratios, rates, named))
        arch = Arch(
            img_size=top.img_size if img_size is None else img_size,
            patch_size=top.patch_size if patch_size is None else patch_size,
            stages=tuple(stages),
        )
        self.validate(arch)
        return arch

    def arch_from_sample(self, sample: Mapping[str, Any]) -> Arch:
        """Turns a frozen `mutables` sample into an Arch, dropping genes of inactive blocks."""
        stages = []
        for s, stage in enumerate(self.stages):
            depth = sample[f"stage{s}.depth"]
            rates = tuple(sample.get(f"stage{s}.block{i}.keep_rate", 1.0) for i in range(depth))
            stages.append(
                StageArch(
                    embed_dim=sample[f"stage{s}.embed_dim"],
                    num_heads=tuple(sample[f"stage{s}.block{i}.num_heads"] for i in range(depth)),
                    mlp_ratio=tuple(sample[f"stage{s}.block{i}.mlp_ratio"] for i in range(depth)),
                    keep_rate=rates,
                    # the reducer gene is inactive (dropped) while the stage keeps every token
                    reducer=sample.get(f"stage{s}.reducer") if min(rates) < 1.0 else None,
                )
            )
        return Arch(img_size=sample["img_size"], patch_size=sample["patch_size"], stages=tuple(stages))

    def to_sample(self, arch: Arch, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """The genes of an arch; genes of blocks beyond its depth are drawn from `rng` (or the first choice)."""
        self.validate(arch)
        fill = self.mutables.random(random_state=rng) if rng is not None else self.mutables.default()
        sample = dict(fill)
        sample["img_size"], sample["patch_size"] = arch.img_size, arch.patch_size
        for s, stage in enumerate(arch.stages):
            sample[f"stage{s}.depth"] = stage.depth
            sample[f"stage{s}.embed_dim"] = stage.embed_dim
            for i in range(stage.depth):
                sample[f"stage{s}.block{i}.num_heads"] = stage.num_heads[i]
                sample[f"stage{s}.block{i}.mlp_ratio"] = stage.mlp_ratio[i]
                if f"stage{s}.block{i}.keep_rate" in sample:
                    sample[f"stage{s}.block{i}.keep_rate"] = stage.keep_rate[i]
            if stage.reducer is not None:
                sample[f"stage{s}.reducer"] = stage.reducer
        return sample

    def mutate(self, arch: Arch, prob: float, rng: np.random.Generator) -> Arch:
        """Redraws each gene with probability `prob` (genes of removed blocks are random, so depth can grow)."""
        sample = self.to_sample(arch, rng)
        for label, categorical in self.mutables.items():
            if rng.random() < prob:
                sample[label] = categorical.random(random_state=rng)
        return self.arch_from_sample(sample)

    def crossover(self, first: Arch, second: Arch, rng: np.random.Generator) -> Arch:
        """Takes each gene from either parent with equal probability."""
        a, b = self.to_sample(first, rng), self.to_sample(second, rng)
        return self.arch_from_sample({label: a[label] if rng.random() < 0.5 else b[label] for label in a})

    # -- checking ------------------------------------------------------------------------------
    def validate(self, arch: Arch) -> None:
        """Raises ArchError naming the first field of `arch` that lies outside this space."""
        if not isinstance(arch, Arch):
            raise ArchError(f"expected an Arch, got {type(arch).__name__}")
        patch = self.spec.patch
        _check_choice(arch.img_size, patch.img_sizes, "img_size")
        _check_choice(arch.patch_size, patch.sizes, "patch_size")
        if len(arch.stages) != len(self.stages):
            raise ArchError(f"stages: the space has {len(self.stages)} stages, the arch {len(arch.stages)}")
        for s, (stage, spec) in enumerate(zip(arch.stages, self.stages)):
            where = f"stages[{s}]"
            _check_choice(stage.depth, spec.depths, f"{where}.depth")
            _check_choice(stage.embed_dim, spec.embed_dims, f"{where}.embed_dim")
            for i in range(stage.depth):
                _check_choice(stage.num_heads[i], spec.num_heads[i], f"{where}.num_heads[{i}]")
                _check_choice(stage.mlp_ratio[i], spec.mlp_ratios[i], f"{where}.mlp_ratio[{i}]")
                allowed = spec.keep_rates_at(i)
                if len(allowed) == 1 and allowed[0] == 1.0 and stage.keep_rate[i] != 1.0:
                    raise ArchError(f"{where}.keep_rate[{i}]: block {i} drops no tokens in this space, must be 1.0")
                _check_choice(stage.keep_rate[i], allowed, f"{where}.keep_rate[{i}]")
            _check_reducer(stage, spec, where)

    def contains(self, arch: Arch) -> bool:
        try:
            self.validate(arch)
        except ArchError:
            return False
        return True

    # -- summary -------------------------------------------------------------------------------
    def size(self) -> int:
        """Number of distinct archs in the space (inactive choices do not count)."""
        total = len(self.spec.patch.img_sizes) * len(self.spec.patch.sizes)
        for stage in self.stages:
            per_depth = 0
            reducers = max(1, len(stage.reducer_choices))
            for depth in stage.depths:
                shapes = [len(stage.num_heads[i]) * len(stage.mlp_ratios[i]) for i in range(depth)]
                blocks = math.prod(n * len(stage.keep_rates_at(i)) for i, n in enumerate(shapes))
                keeping = math.prod(n * (1.0 in stage.keep_rates_at(i)) for i, n in enumerate(shapes))
                per_depth += keeping + (blocks - keeping) * reducers  # a reducer is chosen where tokens drop
            total *= per_depth * len(stage.embed_dims)
        return total

    def summary(self) -> str:
        """A human-readable table of the choices."""
        patch = self.spec.patch
        lines = [
            f"space {self.name}: {self.img_size}px x{self.in_chans} inputs, {self.num_classes} classes, "
            f"{self.size():.3g} archs",
            f"  patch ({patch.mode}): sizes {list(patch.sizes)} at resolutions {list(patch.img_sizes)}, "
            f"kernel {patch.kernel_size}",
        ]
        for s, stage in enumerate(self.stages):
            heads = sorted({h for c in stage.num_heads for h in c})
            ratios = sorted({r for c in stage.mlp_ratios for r in c})
            head_dim = f", head_dim {stage.head_dim}" if stage.head_dim else ""
            lines.append(
                f"  stage {s}: depth {list(stage.depths)}, embed_dim {list(stage.embed_dims)}, "
                f"heads {heads}{head_dim}, mlp_ratio {ratios}"
            )
            if stage.token_reduction is not None:
                red = stage.token_reduction
                names = red.reducers[0] if not red.searchable else "choice of " + ", ".join(red.reducers)
                lines.append(f"    token reduction ({names}) at blocks {list(red.blocks)}: "
                             f"keep rates {list(red.keep_rates)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.stages)} stage(s), {self.size():.3g} archs)"

    # -- internals -----------------------------------------------------------------------------
    def _categoricals(self) -> list[Categorical]:
        patch = self.spec.patch
        genes = [
            Categorical(list(patch.img_sizes), label="img_size"),
            Categorical(list(patch.sizes), label="patch_size"),
        ]
        for s, stage in enumerate(self.stages):
            genes.append(Categorical(list(stage.depths), label=f"stage{s}.depth"))
            genes.append(Categorical(list(stage.embed_dims), label=f"stage{s}.embed_dim"))
            for i in range(stage.max_depth):
                genes.append(Categorical(list(stage.num_heads[i]), label=f"stage{s}.block{i}.num_heads"))
                genes.append(Categorical(list(stage.mlp_ratios[i]), label=f"stage{s}.block{i}.mlp_ratio"))
                rates = stage.keep_rates_at(i)
                if len(rates) > 1 or rates[0] != 1.0:
                    genes.append(Categorical(list(rates), label=f"stage{s}.block{i}.keep_rate"))
            if stage.reducer_choices:  # after the stage's other genes, so spaces without a choice draw as before
                genes.append(Categorical(list(stage.reducer_choices), label=f"stage{s}.reducer"))
        return genes

    def _extreme(self, largest: bool) -> Arch:
        if largest not in self._extremes:
            self._extremes[largest] = self._build_extreme(largest)
        return self._extremes[largest]

    def _build_extreme(self, largest: bool) -> Arch:
        pick = max if largest else min
        stages = []
        for index, stage in enumerate(self.stages):
            depth = pick(stage.depths)
            rates = tuple(pick(stage.keep_rates_at(i)) for i in range(depth))
            stages.append(
                StageArch(
                    embed_dim=pick(stage.embed_dims),
                    num_heads=tuple(pick(stage.num_heads[i]) for i in range(depth)),
                    mlp_ratio=tuple(pick(stage.mlp_ratios[i]) for i in range(depth)),
                    keep_rate=rates,
                    reducer=_named_reducer(stage, rates, None, index),
                )
            )
        patch = self.spec.patch
        coarse = min if largest else max
        arch = Arch(img_size=pick(patch.img_sizes), patch_size=coarse(patch.sizes), stages=tuple(stages))
        return self._extreme_reducers(arch, pick)

    def _extreme_reducers(self, arch: Arch, pick: Any) -> Arch:
        """`arch` with, in each stage that chooses its reducer, the one giving the most (`max`) or fewest MACs.

        Reducers differ in what they do with the tokens they leave out, not in a size, so
        "largest" and "smallest" rank them by cost; ties go to the reducer listed first.
        """
        for index, stage in enumerate(arch.stages):
            if stage.reducer is None:
                continue
            choices = [_with_stage(arch, index, replace(stage, reducer=name))
                       for name in self.stages[index].reducer_choices]
            arch = pick(choices, key=lambda candidate: count_macs(self, candidate))
        return arch


def _named_reducer(spec: StageSpec, rates: Sequence[float], chosen: str | None, stage: int) -> str | None:
    """What `StageArch.reducer` records for a stage with these keep rates given `chosen` (see `vitnas.space.arch`).

    Raises:
        ArchError: `chosen` is not a reducer of the stage.
    """
    if min(rates) >= 1.0:
        return None
    reduction = spec.token_reduction
    if chosen is not None:
        _check_choice(chosen, reduction.reducers if reduction is not None else (), f"stages[{stage}].reducer")
    if not spec.reducer_choices:
        return None  # the space's one reducer: not recorded
    return chosen if chosen is not None else spec.reducer_choices[0]


def _check_reducer(stage: StageArch, spec: StageSpec, where: str) -> None:
    """A reducer is named exactly where the space offers a choice and the stage drops tokens."""
    choices, reduces = spec.reducer_choices, min(stage.keep_rate) < 1.0
    if stage.reducer is None:
        if choices and reduces:
            raise ArchError(f"{where}.reducer: the stage drops tokens and the space makes its reducer a choice of "
                            f"{list(choices)}; name one")
        return
    if not choices:
        only = spec.token_reduction.reducers[0] if spec.token_reduction is not None else None
        what = f"its one reducer is {only}" if only else "it reduces no tokens"
        raise ArchError(f"{where}.reducer: {stage.reducer!r} given, but the space offers no reducer choice in this "
                        f"stage ({what}); leave it null")
    _check_choice(stage.reducer, choices, f"{where}.reducer")
    if not reduces:
        raise ArchError(f"{where}.reducer: the stage keeps every token (keep rates all 1.0), so it runs no reducer; "
                        "leave it null")


def _with_stage(arch: Arch, index: int, stage: StageArch) -> Arch:
    return replace(arch, stages=arch.stages[:index] + (stage,) + arch.stages[index + 1 :])


def _check_choice(value: Any, choices: Sequence[Any], field: str) -> None:
    if value not in choices:
        raise ArchError(f"{field}: {value!r} is not one of {list(choices)}")


def _per_stage(value: Any, num_stages: int, field: str, default: list[Any]) -> list[Any]:
    if value is None:
        return default
    if np.isscalar(value):
        return [value] * num_stages
    values = list(value)
    if len(values) != num_stages:
        raise ArchError(f"{field}: expected one value or {num_stages} (one per stage), got {len(values)}")
    return values


def _per_block(value: Any, stage: int, num_stages: int, depth: int, field: str, default: tuple) -> tuple:
    if value is None:
        return tuple(default[:depth])
    stage_value = _per_stage(value, num_stages, field, [])[stage]
    if np.isscalar(stage_value):
        return (stage_value,) * depth
    values = tuple(stage_value)
    if len(values) != depth:
        raise ArchError(f"stages[{stage}].{field}: expected one value or {depth} (one per block), got {len(values)}")
    return values

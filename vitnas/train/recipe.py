"""Supernet training recipes: YAML files under `supernets/`, checked into frozen dataclasses.

A recipe names the space, the data, the schedule, the sampler (which sub-networks
train each step), distillation and precision. Every field has a default and a comment;
an unknown key or a wrong type fails at load with one line naming the file and field.
Command-line overrides use dotted keys: ``epochs=5 optimizer.weight_decay=1e-4 sampler.name=single``.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from vitnas.data import DataConfig
from vitnas.errors import RecipeError, VitnasError
from vitnas.util.fields import require_int, require_number
from vitnas.util.shipped import shipped_files, unknown_name
from vitnas.util.yamlfile import parse_yaml, read_yaml

__all__ = ["Recipe", "RecipeError", "load_recipe", "SamplerConfig", "OptimizerConfig", "ScheduleConfig"]

SAMPLERS = ("single", "sandwich", "multi", "supervit")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "adamw"  # any timm optimizer name (timm.optim.create_optimizer_v2)
    lr: float | None = None  # absolute learning rate; giving it sets lr_per_512 aside
    lr_per_512: float | None = 5e-4  # learning rate per 512 images of global batch (DeiT / SuperViT scaling)
    weight_decay: float = 0.05
    momentum: float = 0.9  # for SGD-style optimizers
    grad_clip: float | None = 5.0  # max global gradient norm; None: no clipping


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "cosine"  # any timm scheduler name (timm.scheduler.create_scheduler_v2)
    warmup_epochs: int = 5
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "sandwich"  # single | sandwich | multi | supervit
    num_random: int = 2  # sandwich: random sub-networks per step besides largest and smallest
    subnets: int = 4  # multi: sub-batches (sub-networks) per pass
    variant: str = "sliced"  # multi: sliced weights per sub-batch, or masked full-width channels
    include_largest: bool = True  # multi: sub-batch 0 trains the largest sub-network (the teacher)
    shared_token_shape: bool = True  # multi: all random sub-batches of a step share patch size, keep rates and reducers
    rank_specific: bool = False  # DDP: each rank draws its own sub-networks (gradients are averaged either way)
    width_warmup_epochs: int = 0  # ViT-ResNAS: width choices open up from the widest over this many epochs
    rewire: bool = False  # during width warm-up, re-sort heads and MLP units by importance each epoch
    complexity_window: float | None = None  # ElasticViT: random sub-networks from a sliding log-MACs window of
    #                                         this fraction of the range (single, sandwich); None: the whole space
    complexity_period: int = 200  # steps of one sweep of the window up the MACs range and back


@dataclass(frozen=True)
class Recipe:
    """Everything one supernet training run needs."""

    space: str = "tiny32"  # shipped space name or YAML path
    data: DataConfig = field(default_factory=DataConfig)  # which data set and its augmentation
    epochs: int = 100
    batch_size: int = 128  # global batch: split over ranks under torchrun
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    distill: bool = True  # smaller sub-networks learn from the largest one's detached soft labels
    distill_warmup_epochs: int = 0  # students learn from labels until the teacher is worth copying
    gradient_projection: bool = False  # NASViT: sub-network gradients that conflict with the largest's are projected
    keep_ratio_weight: float = 2.0  # DynamicViT's ratio loss: weight of each image's kept fraction's squared error
    label_smoothing: float = 0.1
    mixup: float = 0.0  # Mixup alpha (0: off)
    cutmix: float = 0.0  # CutMix alpha (0: off)
    drop_path: float = 0.1  # stochastic depth at the deepest block
    ema_decay: float | None = None  # weight EMA (e.g. 0.9998); None: off
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16 (GPU only, with loss scaling)
    seed: int = 0
    eval_every: int = 1  # epochs between validations of the largest and smallest sub-networks
    log_every: int = 20  # steps between metric lines
    num_workers: int = 0  # data-loader workers

    def __post_init__(self) -> None:
        self._check_counts()
        require_number("drop_path", self.drop_path, RecipeError, at_least=0, below=1)
        _require(self.sampler.name in SAMPLERS, "sampler.name", f"expected one of {', '.join(SAMPLERS)}")
        _require(self.sampler.variant in ("sliced", "masked"), "sampler.variant", "expected sliced or masked")
        window = self.sampler.complexity_window
        require_number("sampler.complexity_window", window, RecipeError, above=0, at_most=1, optional=True,
                       what="a number in (0, 1], or null")
        _require(window is None or self.sampler.name in ("single", "sandwich"), "sampler.complexity_window",
                 "applies to the single and sandwich samplers (multi and supervit fix the token shape per step)")
        _require(not self.gradient_projection or self.sampler.name in ("sandwich", "supervit"), "gradient_projection",
                 "needs the largest sub-network in a pass of its own first: sampler sandwich or supervit")
        require_number("keep_ratio_weight", self.keep_ratio_weight, RecipeError, at_least=0)
        _require(self.precision in PRECISIONS, "precision", f"expected one of {', '.join(PRECISIONS)}")
        _require((self.optimizer.lr is None) != (self.optimizer.lr_per_512 is None), "optimizer.lr",
                 "give exactly one of lr and lr_per_512")
        require_number("label_smoothing", self.label_smoothing, RecipeError, at_least=0, below=1)
        require_number("ema_decay", self.ema_decay, RecipeError, above=0, below=1, optional=True,
                       what="a number in (0, 1), or null")

    def _check_counts(self) -> None:
        """The integer fields: epochs, sizes, steps; each a whole number in its range."""
        for name, value in (("epochs", self.epochs), ("batch_size", self.batch_size),
                            ("sampler.subnets", self.sampler.subnets), ("eval_every", self.eval_every),
                            ("log_every", self.log_every)):
            require_int(name, value, RecipeError)
        for name, value in (("sampler.num_random", self.sampler.num_random),
                            ("sampler.width_warmup_epochs", self.sampler.width_warmup_epochs),
                            ("distill_warmup_epochs", self.distill_warmup_epochs)):
            require_int(name, value, RecipeError, low=0)
        require_int("sampler.complexity_period", self.sampler.complexity_period, RecipeError, low=2,
                    what="an integer >= 2 (steps)")

    def learning_rate(self) -> float:
        if self.optimizer.lr is not None:
            return self.optimizer.lr
        return self.optimizer.lr_per_512 * self.batch_size / 512

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _require(condition: bool, field_name: str, reason: str) -> None:
    if not condition:
        raise RecipeError(f"{field_name}: {reason}")


def shipped_recipes() -> dict[str, Path]:
    """Names and paths of the training recipes shipped with vitnas."""
    return shipped_files("vitnas.recipes", "supernets")


def load_recipe(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> Recipe:
    """Loads a recipe file (or shipped name, or dict) and applies ``key=value`` overrides.

    Raises:
        RecipeError: one line naming the file, the field and the problem.
    """
    if isinstance(source, Mapping):
        data, where = copy.deepcopy(dict(source)), "<dict>"  # overrides must not reach into the caller's dicts
    else:
        path = Path(source)
        if not path.is_file():
            shipped = shipped_recipes()
            if str(source) not in shipped:
                raise RecipeError(unknown_name(str(source), "recipe", shipped))
            path = shipped[str(source)]
        where = str(path)
        data = read_yaml(path, RecipeError) or {}
    for override in overrides:
        _apply_override(data, override)
    _one_learning_rate(data, {override.partition("=")[0] for override in overrides})
    try:
        return _build(Recipe, data, "")
    except VitnasError as error:  # a DataConfig check raises DataError, already naming data.<field>
        raise RecipeError(f"{where}: {error}") from None


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise RecipeError(f"override {override!r}: expected key=value")
    *parents, leaf = key.split(".")
    target = data
    for parent in parents:
        target = target.setdefault(parent, {})
        if not isinstance(target, dict):
            raise RecipeError(f"override {override!r}: {parent} is not a section")
    target[leaf] = parse_yaml(text, f"override {override!r}", RecipeError)


def _one_learning_rate(data: dict[str, Any], overridden: set[str]) -> None:
    """Lets the learning rate the user sets replace the other form, which a default or the file gave.

    ``optimizer.lr`` and ``optimizer.lr_per_512`` are alternatives, and the default sets
    ``lr_per_512``: giving ``lr`` alone means "this rate", not a clash. Likewise an
    override of one replaces the file's other. Both set in the same place (the file, or
    the overrides) stay the error `Recipe` reports.
    """
    optimizer = data.get("optimizer")
    if not isinstance(optimizer, dict):
        return
    for chosen, other in (("lr", "lr_per_512"), ("lr_per_512", "lr")):
        chosen_here = f"optimizer.{chosen}" in overridden and optimizer.get(chosen) is not None
        if chosen_here and f"optimizer.{other}" not in overridden:
            optimizer[other] = None
    if optimizer.get("lr") is not None and "lr_per_512" not in optimizer:
        optimizer["lr_per_512"] = None


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Builds dataclass `cls` from a dict, checking keys and value types against its annotations."""
    if not isinstance(data, dict):
        raise RecipeError(f"{prefix.rstrip('.') or 'top level'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecipeError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], value, f"{prefix}{name}.")
        else:
            values[name] = _check_type(value, hints[name], f"{prefix}{name}")
    try:
        return cls(**values)
    except RecipeError as error:
        raise RecipeError(f"{prefix}{error}") from None


def _check_type(value: Any, hint: Any, name: str) -> Any:
    """`value` as the annotated type (an int where a float is due becomes a float); one line if it is not one."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
    for option in options:
        kind = typing.get_origin(option) or option
        if kind is Any:
            return value
        if kind is bool and isinstance(value, bool):
            return value
        if isinstance(value, bool) or kind is bool:
            continue
        if kind is float and isinstance(value, (int, float)):
            return float(value)
        if kind is float and isinstance(value, str) and _is_float_text(value):
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string; people write learning rates so
        if kind is int and (isinstance(value, int) or isinstance(value, float) and value.is_integer()):
            return int(value)
        if kind in (str, dict, list, tuple) and isinstance(value, kind):
            return value
    expected = " or ".join("null" if o is type(None) else getattr(typing.get_origin(o) or o, "__name__", str(o))
                           for o in options)
    raise RecipeError(f"{name}: expected {expected}, got {value!r}")


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")

"""Fitness of a candidate: top-1 of a sub-network with the supernet's inherited weights.

A search scores thousands of candidates on the same images with the same weights, so
an evaluator pays for the data and the supernet once: it builds its split when it is
made, keeps small splits as ready-collated batches on the device, and then each
candidate costs only its forward passes. It is what a local search calls in-process and
what each Ray actor holds (built once with `FitnessEvaluator.from_state` from weights
fetched from the object store); this module itself never imports ray.

Candidates are scored on ``minival`` (carved from the train split, see
`vitnas.data.minival_indices`) and the final choices on ``val``, so the search does not
report accuracy on the images it chose by.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from vitnas.data import SPLITS, DataConfig, build_dataset, parse_data
from vitnas.errors import FitnessError, VitnasError
from vitnas.util.fields import require_int

if TYPE_CHECKING:
    from vitnas.space.arch import Arch
    from vitnas.supernet.supernet import SuperViT

__all__ = ["CACHE_MAX_BYTES", "FitnessError", "FitnessEvaluator", "FitnessSettings"]

log = logging.getLogger(__name__)

CACHE_MAX_BYTES = 8 * 2**30  # splits whose images take at most this much are kept on the device as batches
_MAX_LOADER_WORKERS = 4  # decoding processes for image-file splits (read once if cached, per candidate if not)


@dataclass(frozen=True)
class FitnessSettings:
    """What an evaluator needs besides the weights; small and picklable, so it travels to Ray actors.

    ``data`` also accepts the `vitnas.data.parse_data` strings ("digits", "cifar10:/path", ...).
    """

    data: DataConfig  # the supernet recipe's data config (minival is carved from its train split)
    split: str = "minival"  # "minival" for search fitness, "val" to report final choices
    batch_size: int = 256  # images per forward pass
    device: str | None = None  # None: "cuda" when available, else "cpu"
    max_images: int | None = None  # score on the first N images of the split (None: all)

    def __post_init__(self) -> None:
        if isinstance(self.data, (str, Path)):
            object.__setattr__(self, "data", parse_data(str(self.data)))
        if not isinstance(self.data, DataConfig):
            raise FitnessError(f"fitness.data: expected a DataConfig, got {type(self.data).__name__}")
        if self.split not in SPLITS:
            raise FitnessError(f"fitness.split: expected one of {', '.join(SPLITS)}, got {self.split!r}")
        require_int("fitness.batch_size", self.batch_size, FitnessError)
        require_int("fitness.max_images", self.max_images, FitnessError, optional=True)
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as error:
                raise FitnessError(f"fitness.device: {self.device!r} is not a device ({error})") from None

    def resolved_device(self) -> torch.device:
        """The device to run on: the one named, else CUDA when present, else the CPU."""
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise FitnessError(f"fitness.device: {self.device!r} asked for, but torch sees no CUDA device")
        return device


class FitnessEvaluator:
    """Scores archs of one supernet on one split; the data and weights are loaded once, here.

    Args:
        supernet: the trained supernet. It is moved to the settings' device and put in
            eval mode in place (the evaluator owns it from now on).
        settings: data, split, batch size, device and image limit.

    On CUDA the forward passes run under bf16 autocast and cached images are stored in
    bf16 (the precision autocast hands the first layer anyway, at half the memory); on
    the CPU everything is fp32, so a score equals `vitnas.evaluate`'s to the last bit
    at the same batch size.
    """

    def __init__(self, supernet: SuperViT, settings: FitnessSettings) -> None:
        self.settings = settings
        self.device = settings.resolved_device()
        self.supernet = supernet.to(self.device).eval()
        self.space = supernet.space
        self._autocast_dtype = torch.bfloat16 if self.device.type == "cuda" else None
        dataset = build_dataset(settings.data, settings.split, self.space.img_size, self.space.in_chans)
        if settings.max_images is not None and settings.max_images < len(dataset):
            dataset = _first(dataset, settings.max_images)
        self._num_images = len(dataset)
        self._batches: list[tuple[Tensor, Tensor]] | None = None
        self._loader: DataLoader | None = None
        if self._fits_in_memory(dataset):
            self._batches = self._collate_once(dataset)
        else:
            workers = _loader_workers()  # persistent: a candidate must not pay for starting decoder processes
            self._loader = DataLoader(dataset, batch_size=settings.batch_size, num_workers=workers,
                                      persistent_workers=workers > 0, pin_memory=self.device.type == "cuda")
            log.info("fitness: %d %s images exceed the %d GiB cache; streaming them per candidate",
                     self._num_images, settings.split, CACHE_MAX_BYTES // 2**30)

    @classmethod
    def from_state(
        cls, space_source: dict[str, Any], state_dict: Mapping[str, Tensor], settings: FitnessSettings
    ) -> FitnessEvaluator:
        """An evaluator over a supernet rebuilt from its space and weights.

        What a Ray actor calls with the weights it fetched once from the object store: no
        checkpoint files need to be reachable from the worker. The head size is read
        from the weights, so a supernet built with a ``num_classes`` override round-trips.

        Args:
            space_source: the space as a dict (`SearchSpace.to_dict()`), or anything `load_space` takes.
            state_dict: the supernet's `state_dict()`; loaded strictly.

        Raises:
            FitnessError: the weights do not fit the space.
        """
        from vitnas.space.space import load_space

        return cls(_supernet_from_weights(load_space(space_source), state_dict, FitnessError, "state_dict"), settings)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        settings: FitnessSettings | None = None,
        *,
        split: str | None = None,
        use_ema: bool = False,
        **overrides: Any,
    ) -> FitnessEvaluator:
        """An evaluator over a trained run (or checkpoint folder), on the data it was trained with.

        The checkpoint is read once: its space, its weights and its recipe's data config,
        so minival is carved from exactly the train split the supernet saw (or held out).

        Args:
            checkpoint: a run directory (its ``latest`` checkpoint) or one checkpoint folder.
            settings: a starting point; None: ``FitnessSettings(data=<the recipe's data>)``.
            split: replaces the settings' split ("minival" for search, "val" for reporting);
                None keeps it.
            use_ema: score the EMA weights where the run kept them.
            **overrides: other `FitnessSettings` fields to replace (``batch_size``,
                ``device``, ``max_images``, ``data``).

        Raises:
            CheckpointError: the checkpoint is missing, damaged or does not fit its space.
            FitnessError: an override names no settings field.
        """
        from vitnas.train.checkpoint import CheckpointError, load_checkpoint

        loaded = load_checkpoint(Path(checkpoint))
        base = settings if settings is not None else FitnessSettings(data=loaded["recipe"].data)
        known = {f.name for f in dataclasses.fields(FitnessSettings)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise FitnessError(f"from_checkpoint: {unknown[0]} is not a fitness setting (known: {', '.join(known)})")
        if split is not None:
            overrides["split"] = split
        resolved = dataclasses.replace(base, **overrides)
        weights = loaded["ema"] if use_ema and loaded["ema"] is not None else loaded["model"]
        supernet = _supernet_from_weights(loaded["space"], weights, CheckpointError, str(loaded["folder"]))
        return cls(supernet, resolved)

    @property
    def num_images(self) -> int:
        """Images each candidate is scored on (the split, cut to ``max_images``)."""
        return self._num_images

    def __call__(self, arch: Arch) -> float:
        """Top-1 accuracy in [0, 1] of sub-network `arch` on the evaluator's images.

        Raises:
            ArchError: `arch` lies outside the supernet's space (one line naming the field).
        """
        self.space.validate(arch)
        total = 0
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self._autocast_dtype,
                                                    enabled=self._autocast_dtype is not None):
            correct = torch.zeros((), dtype=torch.long, device=self.device)  # summed on the device: no sync per batch
            for images, labels in self._iterate():
                logits = self.supernet(images, arch)
                correct += (logits.argmax(-1) == labels).sum()
                total += labels.numel()
        return correct.item() / max(total, 1)

    def __repr__(self) -> str:
        where = "cached" if self._batches is not None else "streamed"
        return (f"FitnessEvaluator(space={self.space.name!r}, data={self.settings.data.name!r}, "
                f"split={self.settings.split!r}, images={self._num_images} {where}, device={str(self.device)!r})")

    def _iterate(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self._batches is not None:
            yield from self._batches
            return
        for images, labels in self._loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def _fits_in_memory(self, dataset: Dataset) -> bool:
        if self._num_images == 0:
            return True
        image = dataset[0][0]
        bytes_per_value = 2 if self._autocast_dtype is not None else 4
        return self._num_images * image.numel() * bytes_per_value <= CACHE_MAX_BYTES

    def _collate_once(self, dataset: Dataset) -> list[tuple[Tensor, Tensor]]:
        """The split as device-resident batches, cut at the same boundaries a DataLoader would cut."""
        if isinstance(dataset, TensorDataset):
            images, labels = dataset.tensors[0], dataset.tensors[1]
            pairs = zip(images.split(self.settings.batch_size), labels.split(self.settings.batch_size))
        else:
            pairs = DataLoader(dataset, batch_size=self.settings.batch_size, num_workers=_loader_workers())
        dtype = self._autocast_dtype or torch.float32
        return [(images.to(self.device, dtype=dtype).contiguous(), torch.as_tensor(labels).to(self.device))
                for images, labels in pairs]


def _supernet_from_weights(space, weights: Mapping[str, Tensor], error: type[VitnasError], where: str) -> SuperViT:
    """A SuperViT of `space` holding `weights` (loaded strictly); the head size comes from the weights."""
    from vitnas.supernet.supernet import SuperViT

    head = weights.get("head.weight")
    supernet = SuperViT(space, num_classes=head.shape[0] if head is not None else None)
    try:
        supernet.load_state_dict(dict(weights), strict=True)
    except RuntimeError as failure:
        lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
        detail = (lines[1] if len(lines) > 1 else lines[0] if lines else type(failure).__name__)[:200]  # [0] is a header
        raise error(f"{where}: weights do not fit space {space.name!r} ({detail})") from None
    return supernet.eval()


def _first(dataset: Dataset, count: int) -> Dataset:
    """The first `count` items; tensors stay tensors (slicing is free and keeps the fast path)."""
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(tensor[:count] for tensor in dataset.tensors))
    return Subset(dataset, range(count))


def _loader_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(_MAX_LOADER_WORKERS, max(cores - 1, 0))

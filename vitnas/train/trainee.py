"""What the training loop trains: the `Trainee` interface.

The loop (`vitnas.train.loop.fit`) knows nothing of supernets: it asks a trainee which
networks run on which rows of each step, how to run them and what to validate. A supernet
(`vitnas.train.supernet.SupernetTrainee`) and one fixed ViT
(`vitnas.train.standalone.StandaloneTrainee`) both implement it, so they share one loop,
one checkpoint format and one exact resume.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vitnas.data import DataConfig
from vitnas.nn.reducers import KeptFraction
from vitnas.space.arch import Arch
from vitnas.space.space import SearchSpace
from vitnas.train.samplers import Pass, Piece

__all__ = ["Trainee"]


class Trainee(ABC):
    """What the loop trains: a model, and which of its networks run on which rows of each step.

    The loop (`fit`) owns everything else: data, optimizer, schedule, precision, EMA,
    DDP, checkpoints and metrics. A supernet plans several sub-networks per step
    (`SupernetTrainee`); a standalone model plans its one network
    (`vitnas.train.standalone.StandaloneTrainee`), so both share one loop and one resume.
    """

    model: nn.Module  # the module whose parameters train
    num_classes: int  # head size: the data must have as many classes
    img_size: int  # side of the images the data pipeline produces
    in_chans: int
    space: SearchSpace | None = None  # saved with each checkpoint (supernets)

    def begin_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        """Called before each epoch's first step (samplers open up, rewiring)."""

    @abstractmethod
    def plan(self, rng: np.random.Generator, batch: int, step: int = 0) -> list[Pass]:
        """The passes of training step `step` over a batch of `batch` rows."""

    @abstractmethod
    def forward(self, images: Tensor, pieces: list[Piece], masked: bool) -> list[Tensor]:
        """Logits of each learning piece of one pass, with gradients."""

    def forward_kept(
        self, images: Tensor, pieces: list[Piece], masked: bool
    ) -> tuple[list[Tensor], list[tuple[KeptFraction, ...]]]:
        """`forward`, and per piece what its DynamicViT reductions kept (the keep-ratio loss's input).

        The default records nothing: a trainee whose model has no such reducer need not override it.
        """
        return self.forward(images, pieces, masked), [() for _ in pieces]

    @abstractmethod
    def teach(self, images: Tensor, arch: Arch | None) -> Tensor:
        """Logits whose softmax the distilled pieces learn from (called without gradients)."""

    @abstractmethod
    def validation(self) -> list[tuple[str, Arch | None]]:
        """(metric name, arch) of each network scored on the validation split."""

    @abstractmethod
    def class_error(self, data: DataConfig, classes: int) -> str:
        """The one-line message for data of `classes` classes that does not fit the head."""

    def model_config(self) -> dict[str, Any] | None:
        """What a checkpoint records of a standalone model (None: a supernet, recorded by its space)."""
        return None

    def check_checkpoint(self, loaded: dict[str, Any]) -> None:
        """Refuses a checkpoint of another model before its weights are loaded."""

"""Backends evaluate candidates' search fitness; the search loop only asks and records.

A backend takes a batch of archs and yields one `Evaluation` per arch as each finishes,
in whatever order they finish. Results are keyed by arch, and the algorithm's `tell` is
independent of order, so every backend gives the in-process backend's search for a
fixed seed. `LocalBackend` evaluates in this process; `vitnas.search.ray_backend`
spreads the same work over Ray actors (and is the only module that imports ray).
"""

from __future__ import annotations

import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

from vitnas.space.arch import Arch

if TYPE_CHECKING:
    from vitnas.search.fitness import FitnessEvaluator

__all__ = ["Backend", "Evaluation", "LocalBackend"]


@dataclass(frozen=True)
class Evaluation:
    """One candidate's search fitness, with where and how long it was computed."""

    arch: Arch
    accuracy: float  # top-1 on the search split, in [0, 1]
    worker: str  # which evaluator computed it: "local@HOST", or "ray-I@HOST:PID" (actor I, the process that ran it)
    seconds: float  # wall time of this evaluation on its worker


class Backend(ABC):
    """Evaluates archs; a context manager that releases its workers on exit."""

    name: str = ""

    @abstractmethod
    def evaluate(self, archs: Sequence[Arch]) -> Iterator[Evaluation]:
        """Yields one `Evaluation` per distinct arch of `archs`, each as soon as it is done, in any order."""

    @property
    @abstractmethod
    def workers(self) -> int:
        """How many candidates are evaluated at once."""

    def close(self) -> None:
        """Releases workers; evaluating afterwards is an error. Closing twice is harmless."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LocalBackend(Backend):
    """Evaluates one candidate after another in this process, with one `FitnessEvaluator`."""

    name = "local"

    def __init__(self, evaluator: FitnessEvaluator) -> None:
        self.evaluator = evaluator
        self._worker = f"local@{socket.gethostname()}"

    @property
    def workers(self) -> int:
        return 1

    def evaluate(self, archs: Sequence[Arch]) -> Iterator[Evaluation]:
        for arch in dict.fromkeys(archs):
            started = time.perf_counter()
            accuracy = self.evaluator(arch)
            yield Evaluation(arch, accuracy, self._worker, time.perf_counter() - started)

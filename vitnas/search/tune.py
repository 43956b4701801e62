"""Ray Tune adapter: vitnas's evolution (or random search) as a `ray.tune.search.Searcher`.

For users who run everything through Tune: each trial scores one candidate, and the
searcher is the same pure algorithm the in-process and Ray-actor searches drive. Tune
asks for configs one trial at a time while the algorithm proposes a whole generation
at once, so the searcher hands out the current generation's archs one by one, answers
None (Tune asks again later) while that generation's results are outstanding, and
`Searcher.FINISHED` once the algorithm is done. A trial that errors does not lose its
arch: the arch goes back in the queue and is suggested to a later trial.

The searcher's state (the algorithm's JSON state and the trial-to-arch map) is saved as
JSON, never pickle, and written atomically, so Tune's own experiment checkpoints (and
`Tuner.restore`) resume the search exactly.

Example (``supernet`` is a trained `SuperViT`, e.g. from ``vitnas.load_supernet``; set
``num_samples`` to the run's evaluations, or -1 to stop when the searcher says FINISHED)::

    from ray import tune

    from vitnas.search import CostModel, EvolutionConfig, make_algorithm, named_budget
    from vitnas.search.fitness import FitnessSettings
    from vitnas.search.tune import VitnasSearcher, fitness_trainable

    space = supernet.space
    config = EvolutionConfig(population=6, parents=3, mutations=2, crossovers=2, generations=2)
    algorithm = make_algorithm("evolution", space, [named_budget(macs=0.003)], CostModel(space), config)
    trainable = fitness_trainable(supernet, FitnessSettings(data="digits", max_images=64, device="cpu"))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=VitnasSearcher(algorithm), num_samples=-1, max_concurrent_trials=2, reuse_actors=True
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    results = tuner.fit()
    print(algorithm.best_per_budget())

Tune starts one process per concurrent trial; ``reuse_actors=True`` keeps them, so each
builds its evaluator once. For thousands of cheap candidates `RayBackend` (long-lived
actors, no per-trial bookkeeping) is the faster way; Tune suits coarse-grained jobs.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from vitnas.errors import BackendError
from vitnas.search.ray_cluster import RAY_MISSING
from vitnas.space.arch import Arch
from vitnas.util.atomic import write_text_atomically
from vitnas.util.fields import require_int

try:
    from ray import tune
    from ray.tune.search import Searcher
except ImportError:
    raise BackendError(RAY_MISSING) from None

if TYPE_CHECKING:
    from vitnas.search.algorithm import SearchAlgorithm
    from vitnas.search.fitness import FitnessEvaluator, FitnessSettings
    from vitnas.supernet.supernet import SuperViT

__all__ = ["SEARCHER_FORMAT", "VitnasSearcher", "fitness_trainable"]

log = logging.getLogger(__name__)

SEARCHER_FORMAT = "vitnas-tune-searcher"
_SEARCHER_VERSION = 1


class VitnasSearcher(Searcher):
    """A Tune `Searcher` over a vitnas `SearchAlgorithm`; each suggestion is ``{"arch": Arch.to_dict()}``.

    Args:
        algorithm: the algorithm to drive (made with `make_algorithm`); it is told every
            result, so after the run it holds the history, the best per budget and the front.
        metric: the result key holding the accuracy the trainable reports.
        mode: "max"; the algorithm maximises accuracy.
        max_failures: errored trials one arch may have before it is scored 0.0, so that
            its generation can close instead of waiting forever.

    Raises:
        BackendError: a mode other than "max", or a bad ``max_failures``.
    """

    def __init__(
        self, algorithm: SearchAlgorithm, metric: str = "accuracy", mode: str = "max", max_failures: int = 3
    ) -> None:
        _check_mode(mode)
        require_int("VitnasSearcher.max_failures", max_failures, BackendError)
        super().__init__(metric=metric, mode=mode)
        self.algorithm = algorithm
        self.max_failures = max_failures
        self._queue: list[Arch] = []  # asked of the algorithm, not yet handed to a trial (errored ones again)
        self._trials: dict[str, Arch] = {}  # running trials and the arch each scores
        self._failures: dict[Arch, int] = {}  # errored trials per arch

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Takes the metric named in `tune.TuneConfig`; a mode there must be "max"."""
        if mode is not None:
            _check_mode(mode)
        if metric is not None:
            self._metric = metric
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The next arch of the current generation, None while it awaits results, FINISHED when done."""
        if not self._queue:
            self._queue = list(self.algorithm.ask())
        if not self._queue:
            return Searcher.FINISHED if self.algorithm.done else None
        arch = self._queue.pop(0)
        self._trials[trial_id] = arch
        return {"arch": arch.to_dict()}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """Tells the algorithm the trial's accuracy; an errored trial's arch is suggested again later."""
        arch = self._trials.pop(trial_id, None)
        if arch is None:
            log.debug("tune searcher: trial %s is not one of ours", trial_id)
            return
        accuracy = None if error or not result else result.get(self.metric)
        if accuracy is None:
            failures = self._failures[arch] = self._failures.get(arch, 0) + 1
            if failures < self.max_failures:
                log.warning("tune searcher: trial %s failed (%d of %d); its arch will be retried",
                            trial_id, failures, self.max_failures)
                self._queue.append(arch)
                return
            log.warning("tune searcher: arch failed %d trials; scoring it 0.0: %s", failures, arch.to_json())
            accuracy = 0.0
        self.algorithm.tell({arch: float(accuracy)})

    @property
    def trials(self) -> dict[str, Arch]:
        """Running trials and the arch each is scoring."""
        return dict(self._trials)

    def get_state(self) -> dict[str, Any]:
        """The searcher's whole state as JSON-ready data (the algorithm's state included)."""
        return {
            "format": SEARCHER_FORMAT,
            "version": _SEARCHER_VERSION,
            "metric": self.metric,
            "mode": self.mode,
            "max_failures": self.max_failures,
            "algorithm": self.algorithm.state_dict(),
            "trials": {trial_id: arch.to_dict() for trial_id, arch in self._trials.items()},
            "queue": [arch.to_dict() for arch in self._queue],
            "failures": [[arch.to_dict(), count] for arch, count in self._failures.items()],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues from `get_state` output; the algorithm must be of the same kind, space and costs.

        Raises:
            BackendError: not a searcher state.
            VitnasError: the algorithm's state does not fit this algorithm (see `load_state_dict`).
        """
        if not isinstance(state, dict) or state.get("format") != SEARCHER_FORMAT:
            raise BackendError(f"tune searcher state: not a {SEARCHER_FORMAT} state")
        try:
            trials = {str(trial_id): Arch.from_dict(arch) for trial_id, arch in state["trials"].items()}
            queue = [Arch.from_dict(arch) for arch in state["queue"]]
            failures = {Arch.from_dict(arch): int(count) for arch, count in state["failures"]}
            metric, mode, max_failures = state["metric"], state["mode"], int(state["max_failures"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise BackendError(f"tune searcher state: malformed ({type(error).__name__}: {error})") from None
        _check_mode(mode)
        self.algorithm.load_state_dict(state["algorithm"])
        self._trials, self._queue, self._failures = trials, queue, failures
        self._metric, self._mode, self.max_failures = metric, mode, max_failures

    def save(self, checkpoint_path: str) -> None:
        """Writes the state as JSON, atomically (Tune calls this for its experiment checkpoints)."""
        write_text_atomically(checkpoint_path, json.dumps(self.get_state()), BackendError)

    def restore(self, checkpoint_path: str) -> None:
        """Continues from a file `save` wrote.

        Raises:
            BackendError: the file is unreadable or not a searcher state (one line naming it).
        """
        path = Path(checkpoint_path)
        try:
            state = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BackendError(f"{path}: not a readable tune searcher state ({error})") from None
        self.set_state(state)


def fitness_trainable(
    supernet: SuperViT, settings: FitnessSettings, metric: str = "accuracy"
) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable that reports the search fitness of ``config["arch"]``.

    The supernet's weights are put in the object store once (`tune.with_parameters`);
    each trial process builds its `FitnessEvaluator` on its first trial and keeps it for
    the next ones (with ``reuse_actors=True``).

    Args:
        supernet: the trained supernet; its space and weights are what trials score with.
        settings: data, split and image limit of the fitness.
        metric: the key the accuracy is reported under (the searcher's metric).
    """
    weights = {key: value.detach().to("cpu").contiguous() for key, value in supernet.state_dict().items()}
    return tune.with_parameters(
        _score_arch,
        space_source=supernet.space.to_dict(),
        state_dict=weights,
        settings=settings,
        metric=metric,
        key=uuid.uuid4().hex,  # names this supernet in each process's evaluator cache
    )


_EVALUATORS: dict[str, FitnessEvaluator] = {}  # this process's evaluator, by `fitness_trainable` key


def _score_arch(
    config: dict[str, Any],
    space_source: dict[str, Any],
    state_dict: dict[str, Any],
    settings: FitnessSettings,
    metric: str,
    key: str,
) -> None:
    """Scores one arch in a Tune trial, building the evaluator only on this process's first trial."""
    evaluator = _EVALUATORS.get(key)
    if evaluator is None:
        import torch

        from vitnas.search.fitness import FitnessEvaluator

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS") or 1)))  # Ray sets it to the trial's CPUs
        _EVALUATORS.clear()  # one supernet per process at a time
        evaluator = _EVALUATORS[key] = FitnessEvaluator.from_state(space_source, state_dict, settings)
    tune.report({metric: evaluator(Arch.from_dict(config["arch"]))})


def _check_mode(mode: Any) -> None:
    if mode != "max":
        raise BackendError(f"VitnasSearcher: mode must be 'max' (the search maximises accuracy), got {mode!r}")

"""`vitnas.search_supernet`: search a trained supernet under budgets, resumably, and report the evidence.

The loop is small: the algorithm asks for a generation, a backend evaluates it (in this
process or on Ray actors), each result is appended to ``results.jsonl`` as it arrives
and told to the algorithm. Everything before the first evaluation is checked first (the
checkpoint, the profile, the budgets, the backend), so bad input leaves nothing behind
that the next call in the same directory would trip on.

Resuming replays the algorithm from its seed: every arch it asks for that the log
already holds is told from the log, the rest are evaluated. The algorithm is
deterministic given its results, so a resumed search ends with the uninterrupted
one's choices. Calling the same search again resumes it (`vitnas.train.rundir`); its
settings are stored in ``search.json``, and a call with other settings is refused,
naming the first that differs. The checkpoint and profile paths there are relative to
the run directory, so a run moved or copied together with them resumes. While a Ray
search runs on a local Ray it started, ``ray_processes.json`` names that Ray's
processes: should the search be killed, the next search in the directory stops what is
left of them first.

Fitness is top-1 on the recipe's ``minival`` split (held out of supernet training when
the recipe says ``data.holdout: true``); the final choices are scored on ``val``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from vitnas.errors import SearchError, VitnasError
from vitnas.search.budgets import CostModel, NamedBudget, budgets_from_limits
from vitnas.search.config import EvolutionConfig
from vitnas.search.evolution import ALGORITHMS, make_algorithm
from vitnas.search.report import REPORT_SPLIT, Choice, SearchResult, write_report
from vitnas.search.results_log import ResultsLog
from vitnas.space.arch import Arch
from vitnas.train.rundir import check_same, continues, read_settings, start_over
from vitnas.util.atomic import prepare_directory, write_text_atomically
from vitnas.util.fields import is_number, require_positive_numbers
from vitnas.util.renamed import renamed_value, upgraded

if TYPE_CHECKING:
    from vitnas.latency.profile import DeviceProfile
    from vitnas.search.algorithm import SearchAlgorithm
    from vitnas.search.backend import Backend, Evaluation
    from vitnas.space.space import SearchSpace
    from vitnas.supernet.supernet import SuperViT

__all__ = ["SearchError", "SearchSettings", "search_supernet", "BACKENDS"]

logger = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
SETTINGS_FILE = "search.json"
RESULTS_FILE = "results.jsonl"
STATE_FILE = "state.json"
RAY_PROCESSES_FILE = "ray_processes.json"  # the local Ray's processes while a Ray search runs
# What a search writes in its run directory: --fresh deletes these (ray_processes.json is handled before).
SEARCH_FILES = (SETTINGS_FILE, RESULTS_FILE, STATE_FILE, "best.json", "pareto.json", "pareto.png")
_PATH_SETTINGS = ("checkpoint", "profile")  # stored relative to the run directory


@dataclass(frozen=True)
class SearchSettings:
    """What defines a search run; stored in ``search.json`` and compared when the run continues."""

    checkpoint: str  # supernet run or checkpoint directory
    latency_ms: tuple[float, ...] = ()  # one budget per value: milliseconds per pass at the profile's batch and dtype
    macs: tuple[float, ...] = ()  # one budget per value: G multiply-accumulates per image
    params: tuple[float, ...] = ()  # one budget per value: millions of parameters
    profile: str | None = None  # device profile JSON predicting latency; needed by latency budgets
    algorithm: str = "evolution"  # evolution | random
    config: EvolutionConfig = field(default_factory=EvolutionConfig)  # population, operators, generations, seed
    use_ema: bool = False  # search the checkpoint's EMA weights
    batch_size: int = 256  # images per fitness forward pass
    max_images: int | None = None  # score fitness on the first N search images only
    search_images: int | None = None  # minival size for ImageFolder / CIFAR (default: the recipe's data.search_images)

    def __post_init__(self) -> None:
        for name in ("latency_ms", "macs", "params"):
            object.__setattr__(self, name, _as_floats(getattr(self, name), name))
        if self.algorithm not in ALGORITHMS:
            raise SearchError(f"algorithm: unknown {self.algorithm!r} (known: {', '.join(ALGORITHMS)})")
        if not (self.latency_ms or self.macs or self.params):
            raise SearchError("budgets: give at least one of --latency-ms, --macs, --params")
        if self.latency_ms and self.profile is None:
            raise SearchError("--latency-ms needs --profile (build one with vitnas latency profile)")

    def budgets(self) -> list[NamedBudget]:
        return budgets_from_limits(latency_ms=self.latency_ms, macs=self.macs, params=self.params)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update({name: list(getattr(self, name)) for name in ("latency_ms", "macs", "params")})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSettings:
        """Settings from `to_dict` output; a search.json written before the rename says ``flops`` for ``macs``."""
        values = upgraded(data)
        values["config"] = EvolutionConfig.from_dict(values["config"])
        return cls(**values)


@dataclass(frozen=True)
class RunContext:
    """What the loop works with, built once before anything is written."""

    settings: SearchSettings
    space: SearchSpace
    supernet: SuperViT
    data: Any  # the recipe's DataConfig: minival is carved from its train split
    profile: DeviceProfile | None
    algorithm: SearchAlgorithm
    first: list[Arch]  # generation 0, asked before anything is written (an infeasible budget fails here)


def search_supernet(
    checkpoint: str | Path,
    out: str | Path,
    *,
    latency_ms: float | Sequence[float] | None = None,
    profile: str | Path | None = None,
    macs: float | Sequence[float] | None = None,
    params: float | Sequence[float] | None = None,
    algorithm: str = "evolution",
    backend: str = "local",
    workers: int = 2,
    gpus_per_worker: float = 0.0,
    ray_address: str | None = None,
    generations: int | None = None,
    population: int | None = None,
    seed: int = 0,
    resume: bool | None = None,
    fresh: bool = False,
    device: str | None = None,
    profile_other_device: bool = False,
    verify: bool = True,
    progress: bool = True,
    **options: Any,
) -> SearchResult:
    """Searches the supernet in `checkpoint` under one budget per limit given; writes and returns the evidence.

    Args:
        checkpoint: a `vitnas train` run (or one checkpoint folder of it).
        out: the search run directory (``results.jsonl``, ``best.json``, ``pareto.json``, ``pareto.png``).
        latency_ms, macs, params: limits, one budget each (several values: several budgets);
            macs in G multiply-accumulates per image, params in millions. ``flops=``, the old
            name of ``macs=``, is taken for one release.
        profile: device profile for latency budgets and the latency axis of the Pareto front.
        algorithm: "evolution" or "random".
        backend: "local" (in this process) or "ray" (``workers`` actors, ``gpus_per_worker``
            of a GPU each, on the cluster at ``ray_address`` or a local Ray).
        generations, population, seed: the `EvolutionConfig` fields most often changed;
            ``options`` may set any other (``parents``, ``mutation_prob``, ``mutations``,
            ``crossovers``, ``max_tries``) and ``use_ema``, ``batch_size``, ``max_images``,
            ``search_images`` (the size of an ImageFolder / CIFAR minival).
        resume: None (default): continue the search in `out` from its ``results.jsonl`` if it
            holds one, else start (`vitnas.train.rundir`: the settings must be the ones it
            began with). True: `out` must hold a search; False: it must not.
        fresh: delete the search's files in `out` (once every setting has been checked) and start over.
        device: where the local evaluator runs (default: CUDA when present).
        profile_other_device: search with a profile of a device this machine lacks
            (latency predicted for that device, not verified); refused otherwise.
        verify: measure the chosen archs' latency when the profile's device is here.
        progress: show a progress bar.

    Returns:
        A `vitnas.search.report.SearchResult`: the choice per budget, the Pareto front, paths.

    Raises:
        SearchError, BudgetError, CheckpointError, ProfileError: one line naming the problem,
            before anything is written.
    """
    macs = renamed_value(macs, options.pop("flops", None), "flops", "macs", "search", SearchError)
    settings = _settings(checkpoint, latency_ms, profile, macs, params, algorithm, generations, population, seed,
                         options)
    out = Path(out)
    _stop_leftover_ray(out)
    continuing = not fresh and _check_run_directory(out, settings, resume)
    _check_backend(backend)
    context = _prepare(settings, profile_other_device)
    with _make_backend(backend, context, workers, gpus_per_worker, ray_address, device, out) as evaluator:
        if fresh:  # only now: a bad flag must not cost the search it would replace
            start_over(out, SEARCH_FILES)
        prepare_directory(out, "--out", SearchError)  # only now: every check that can fail has passed
        if not continuing:
            stored = _relative_to_run(settings.to_dict(), out)
            write_text_atomically(out / SETTINGS_FILE, json.dumps(stored, indent=1) + "\n", SearchError)
        log = ResultsLog(out / RESULTS_FILE)
        known = log.read() if continuing else {}
        started = time.perf_counter()
        evaluated = _run(context, evaluator, log, known, out, progress)
        references = _evaluate_references(context, evaluator, log, known)
    logger.info("search: %d evaluations in %.1f s", evaluated, time.perf_counter() - started)
    return _finish(out, context, references, device=device, verify=verify, resumed=len(known))


def _settings(checkpoint, latency_ms, profile, macs, params, algorithm, generations, population, seed,
              options: dict[str, Any]) -> SearchSettings:
    run_options = {key: options.pop(key) for key in ("use_ema", "batch_size", "max_images", "search_images")
                   if key in options}
    config_fields = {f.name for f in fields(EvolutionConfig)}
    unknown = sorted(set(options) - config_fields)
    if unknown:
        raise SearchError(f"search: unknown option {unknown[0]!r}")
    chosen = {"generations": generations, "population": population, "seed": seed, **options}
    config = EvolutionConfig(**{key: value for key, value in chosen.items() if value is not None})
    return SearchSettings(checkpoint=str(Path(checkpoint).resolve()), latency_ms=latency_ms or (),
                          macs=macs or (), params=params or (),
                          profile=None if profile is None else str(Path(profile).resolve()),
                          algorithm=algorithm, config=config, **run_options)


def _check_run_directory(out: Path, settings: SearchSettings, resume: bool | None) -> bool:
    """Whether this search continues the one in `out` (`vitnas.train.rundir`); refuses one of other settings."""
    if not continues(out, (SETTINGS_FILE, RESULTS_FILE), resume, SearchError, "a search"):
        return False
    stored_path = out / SETTINGS_FILE
    if not stored_path.is_file():
        raise SearchError(f"{out}: holds {RESULTS_FILE} but no {SETTINGS_FILE}, so it cannot continue; "
                          "--fresh starts over")
    try:
        stored = SearchSettings.from_dict(_resolved_from_run(read_settings(stored_path, SearchError, "a search"), out))
    except (KeyError, TypeError, ValueError) as error:
        raise SearchError(f"{stored_path}: not a search's settings ({error})") from None
    check_same(settings.to_dict(), stored.to_dict(), out, SearchError)
    return True


def _relative_to_run(settings: dict[str, Any], out: Path) -> dict[str, Any]:
    """`settings` as ``search.json`` stores them: the checkpoint and profile relative to the run directory.

    A run moved or copied together with its supernet and profile (a `vitnas run` folder,
    say) then resumes where it is. A path that has no relative form (another drive) stays absolute.
    """
    stored = dict(settings)
    for name in _PATH_SETTINGS:
        if stored[name] is not None:
            with contextlib.suppress(ValueError):
                stored[name] = os.path.relpath(stored[name], out.resolve())
    return stored


def _resolved_from_run(stored: dict[str, Any], out: Path) -> dict[str, Any]:
    """``search.json``'s settings with absolute paths again; absolute ones (as written before) are kept."""
    settings = dict(stored)
    for name in _PATH_SETTINGS:
        if isinstance(settings.get(name), str):
            settings[name] = str((out.resolve() / settings[name]).resolve())
    return settings


def _stop_leftover_ray(out: Path) -> None:
    """Stops the local Ray of a search killed in `out` (named in its process record) before anything else runs."""
    if (out / RAY_PROCESSES_FILE).is_file():
        from vitnas.search.ray_backend import stop_leftover_ray

        stop_leftover_ray(out / RAY_PROCESSES_FILE)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise SearchError(f"backend: unknown {backend!r} (known: {', '.join(BACKENDS)})")
    if backend == "ray":  # the Ray backend checks workers and GPU fractions itself
        from vitnas.search.ray_backend import require_ray

        require_ray()


def _prepare(settings: SearchSettings, other_device: bool) -> RunContext:
    """Loads the supernet and profile and asks for generation 0: every check that can fail, nothing written."""
    from vitnas.data import trains_on_search_images
    from vitnas.train.checkpoint import load_checkpoint, load_supernet

    supernet, space = load_supernet(settings.checkpoint, use_ema=settings.use_ema)
    data = load_checkpoint(Path(settings.checkpoint))["recipe"].data
    if settings.search_images is not None and settings.search_images != data.search_images:
        data = _with_search_images(data, settings.search_images)
    profile = _load_profile(settings.profile, space, other_device) if settings.profile else None
    algorithm = make_algorithm(settings.algorithm, space, settings.budgets(), CostModel(space, profile),
                               settings.config)
    first = algorithm.ask()
    if trains_on_search_images(data):
        logger.warning("search: the supernet trained on its search images (recipe data.holdout is off); "
                       "search accuracies are optimistic, the val column is the fair one")
    return RunContext(settings, space, supernet, data, profile, algorithm, first)


def _with_search_images(data: Any, count: int) -> Any:
    """The recipe's data with another minival size; the supernet then may have trained on some of it."""
    from dataclasses import replace

    from vitnas.data import DataError

    try:
        changed = replace(data, search_images=count)
    except DataError as error:
        raise SearchError(f"--search-images: {str(error).removeprefix('data.search_images: ')}") from None
    if data.holdout and (data.search_images is None or count > data.search_images):  # a prefix stays held out
        logger.warning("search: --search-images %d differs from the %s images held out of supernet training; "
                       "part of the search split may have been trained on", count, data.search_images or "default")
    return changed


def _load_profile(path: str, space: SearchSpace, other_device: bool) -> DeviceProfile:
    """The profile of the supernet's space, refused on a machine without its device unless `other_device`.

    A latency budget is about the profile's device. Searching elsewhere for that device
    (say, on a CPU box for a GPU target) is allowed when asked for; the choices' latency
    is then predicted only, not verified.
    """
    from vitnas.latency.profile import load_profile

    profile = load_profile(path, check_device=False)
    if not other_device:
        profile.check_device(path, remedy="build a profile on this machine, or pass --profile-other-device to "
                                          "search for that device's latency anyway (predicted, not verified)")
    if profile.space.spec != space.spec:
        raise SearchError(f"{path}: a profile of space {profile.space.name!r} as it was then, not of the "
                          f"supernet's space {space.name!r}; build one with vitnas latency profile")
    return profile


def _make_backend(name: str, context: RunContext, workers: int, gpus_per_worker: float, address: str | None,
                  device: str | None, out: Path) -> Backend:
    from vitnas.search.fitness import FitnessEvaluator, FitnessSettings

    fitness = FitnessSettings(data=context.data, split="minival", batch_size=context.settings.batch_size,
                              device=device, max_images=context.settings.max_images)
    if name == "ray":
        from vitnas.search.ray_backend import RayBackend

        return RayBackend(context.space.to_dict(), context.supernet.state_dict(), fitness, workers=workers,
                          gpus_per_worker=gpus_per_worker, address=address, process_record=out / RAY_PROCESSES_FILE)
    from vitnas.search.backend import LocalBackend

    return LocalBackend(FitnessEvaluator(context.supernet, fitness))


def _run(context: RunContext, backend: Backend, log: ResultsLog, known: dict[Arch, dict[str, Any]], out: Path,
         progress: bool) -> int:
    """The ask / evaluate / tell loop; returns how many candidates were evaluated (not replayed)."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    algorithm, config = context.algorithm, context.settings.config
    expected = config.population if context.settings.algorithm == "random" else config.mutations + config.crossovers
    total = config.population + (config.generations - 1) * expected
    bar = tqdm(total=total, desc="search", unit="arch", disable=not progress, dynamic_ncols=True)
    evaluated, started, archs, best = 0, time.perf_counter(), context.first, "-"
    with bar, logging_redirect_tqdm():
        while archs:
            replayed = {arch: float(known[arch]["accuracy"]) for arch in archs if arch in known}
            algorithm.tell(replayed)
            bar.update(len(replayed))
            for evaluation in backend.evaluate([arch for arch in archs if arch not in known]):
                log.append(_record(algorithm, evaluation))
                algorithm.tell({evaluation.arch: evaluation.accuracy})
                evaluated += 1
                bar.update(1)
                rate = evaluated / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix_str(f"gen {algorithm.generation}, {rate:.1f} evals/s, best {best}", refresh=False)
            write_text_atomically(out / STATE_FILE, json.dumps(algorithm.state_dict()) + "\n", SearchError)
            best = _best_summary(algorithm)  # once per generation: ranking the history per result would be quadratic
            archs = algorithm.ask()
    return evaluated


def _record(algorithm: SearchAlgorithm, evaluation: Evaluation, role: str = "candidate") -> dict[str, Any]:
    """One ``results.jsonl`` line: the arch, its search-split accuracy, costs and where it was evaluated."""
    record = algorithm.proposal(evaluation.arch) if role == "candidate" else None
    return {
        "arch": evaluation.arch.to_dict(),
        "accuracy": evaluation.accuracy,
        **algorithm.costs(evaluation.arch),
        "generation": record.generation if record else None,
        "budget": record.budget if record else None,
        "role": role,
        "worker": evaluation.worker,
        "seconds": round(evaluation.seconds, 4),
        "time": round(time.time(), 3),
    }


def _best_summary(algorithm: SearchAlgorithm) -> str:
    """The best search accuracy so far per budget, for the progress bar."""
    return ", ".join(f"{name} {accuracy:.3f}" for name, (_, accuracy) in algorithm.best_per_budget().items())


def _evaluate_references(context: RunContext, backend: Backend, log: ResultsLog,
                         known: dict[Arch, dict[str, Any]]) -> dict[str, tuple[Arch, float]]:
    """The largest and smallest sub-networks' search accuracy: the plot's reference points."""
    space, algorithm = context.space, context.algorithm
    wanted = {"largest": space.largest(), "smallest": space.smallest()}
    scores = {record.arch: float(record.accuracy) for record in algorithm.history}
    scores.update({arch: float(record["accuracy"]) for arch, record in known.items()})
    missing = [arch for arch in dict.fromkeys(wanted.values()) if arch not in scores]
    for evaluation in backend.evaluate(missing):
        log.append(_record(algorithm, evaluation, role="reference"))
        scores[evaluation.arch] = evaluation.accuracy
    return {label: (arch, scores[arch]) for label, arch in wanted.items()}


def _as_floats(value: float | Iterable[float] | None, name: str) -> tuple[float, ...]:
    if value is None:
        return ()
    return require_positive_numbers(name, (value,) if is_number(value) else value, SearchError)


# -- finishing: each budget's choice scored on val and timed, then written by the report --------------


def _finish(out: Path, context: RunContext, references: dict[str, tuple[Arch, float]], device: str | None,
            verify: bool, resumed: int) -> SearchResult:
    """Scores the choices on ``val``, verifies their latency, and has the report write best.json, pareto.json/png."""
    from vitnas.data import trains_on_search_images

    algorithm = context.algorithm
    best = algorithm.best_per_budget()
    val = _val_accuracies(context, [arch for arch, _ in best.values()], device)
    measured = _measured_latencies(context, [arch for arch, _ in best.values()]) if verify else {}
    choices = tuple(_choice(context, name, arch, accuracy, val[arch], measured.get(arch))
                    for name, (arch, accuracy) in best.items())
    profile = context.profile
    label = None if profile is None else f"{profile.device}, batch {profile.batch}, {profile.dtype}"
    return write_report(out, choices, algorithm, references, device_label=label,
                        algorithm_name=context.settings.algorithm, space_name=context.space.name,
                        trained_on_search_images=trains_on_search_images(context.data), resumed=resumed)


def _choice(context: RunContext, name: str, arch: Arch, accuracy: float, val_accuracy: float,
            measured_ms: float | None) -> Choice:
    named = context.algorithm.budget(name)
    costs = context.algorithm.costs(arch)
    limit = named.budget.latency_ms
    meets = None if measured_ms is None or limit is None else measured_ms <= limit
    return Choice(name, named.budget.to_dict(), arch, accuracy, val_accuracy, int(costs["macs"]),
                  int(costs["params"]), costs.get("latency_ms"), measured_ms, meets)


def _val_accuracies(context: RunContext, archs: Sequence[Arch], device: str | None) -> dict[Arch, float]:
    """Top-1 on the report split, with one evaluator built once for all choices."""
    from vitnas.search.fitness import FitnessEvaluator, FitnessSettings

    settings = FitnessSettings(data=context.data, split=REPORT_SPLIT, batch_size=context.settings.batch_size,
                               device=device)
    evaluator = FitnessEvaluator(context.supernet, settings)
    return {arch: evaluator(arch) for arch in dict.fromkeys(archs)}


def _measured_latencies(context: RunContext, archs: Sequence[Arch]) -> dict[Arch, float]:
    """Median measured latency of each arch, where the profile's device is this machine's (else none)."""
    from vitnas.latency.verify import verify
    from vitnas.util.device import device_name, resolve_device

    profile = context.profile
    if profile is None:
        return {}
    try:
        here = device_name(resolve_device(profile.device_type))
    except VitnasError:
        here = None
    if here != profile.device:
        logger.warning("search: latency not verified: the profile was measured on %r, this machine has %r",
                       profile.device, here)
        return {}
    results = verify(profile, context.space, list(dict.fromkeys(archs)))
    return {result.arch: result.measured.median_ms for result in results}


def __getattr__(name: str) -> Any:  # the verb's old name (search), for one release
    from vitnas._moved import moved_attribute

    return moved_attribute(__name__, name)

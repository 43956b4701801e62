"""Evaluating candidates on Ray actors (with `tune` and `ray_cluster`, all of vitnas that imports ray).

Scoring a candidate takes milliseconds to seconds, while building an evaluator (torch,
the data split, the supernet's weights) takes seconds, so each worker is a long-lived
actor that builds one `FitnessEvaluator` once and then scores archs sent to it as plain
dicts. The weights go into the object store once (`ray.put`); every actor,
and every restart of an actor, reads them from that one reference, which the driver
keeps alive for the backend's lifetime. The reference travels with each call, not with
the constructor: Ray cannot promise that an object-store argument of a restartable
actor's constructor outlives it (ray-project/ray#53727, logged as an error per search),
while a call's arguments are kept for as long as the call may be retried.

Fault tolerance is Ray's own: actors are created with ``max_restarts`` and
``max_task_retries``, so a worker process that dies (SIGKILL, OOM, a lost node) is
restarted, rebuilds its evaluator from the same reference, and re-runs the candidates it
held. Each candidate is one `ObjectRef`, which resolves exactly once however often its
task ran, and the driver yields one `Evaluation` per ref: nothing is lost and nothing is
counted twice. Should a worker die for good (restarts used up), its candidates go to the
surviving workers, a bounded number of times, before the backend gives up with one line.

A local Ray the backend starts is shut down by `close`. Should the driver be killed
first, part of that Ray outlives it; given a ``process_record`` file, the backend names
its Ray's processes there, and `stop_leftover_ray` stops them on the next start.

Typical use::

    with RayBackend.from_supernet(supernet, FitnessSettings(data="digits"), workers=2) as backend:
        for evaluation in backend.evaluate(algorithm.ask()):
            algorithm.tell({evaluation.arch: evaluation.accuracy})
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from vitnas.errors import BackendError, VitnasError
from vitnas.search.backend import Backend, Evaluation
from vitnas.space.arch import Arch
from vitnas.util.atomic import running_process, write_text_atomically
from vitnas.util.fields import require_int, require_number
from vitnas.search.ray_cluster import (RAY_MISSING, check_cluster, connect, describe_resources,  # noqa: F401 (RAY_MISSING)
                                       last_line, require_ray)

if TYPE_CHECKING:
    from torch import Tensor

    from vitnas.search.fitness import FitnessSettings
    from vitnas.supernet.supernet import SuperViT

__all__ = ["BackendError", "RayBackend", "require_ray", "stop_leftover_ray"]

log = logging.getLogger(__name__)

_MAX_RESUBMITS = 3  # times one candidate is moved to another worker after its worker died for good


class FitnessWorker:
    """The actor body: one `FitnessEvaluator`, built on first use, that scores archs sent as dicts.

    The constructor takes only small values held inline; the weights come as
    ``[reference]`` (a list, so that Ray hands over the reference, not the tensors) with
    every call, and are fetched once per process. A restarted actor thus rebuilds its
    evaluator from the call Ray retries on it.

    Args:
        space_source: the space as a dict (`SearchSpace.to_dict()`).
        settings: data, split, batch size, device and image limit.
        threads: torch intra-op threads; one per reserved CPU, because several actors
            share a machine and oversubscribed threads make every one of them slower.
    """

    def __init__(self, space_source: dict[str, Any], settings: FitnessSettings, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self._space_source, self._settings = space_source, settings
        self._evaluator: Any = None
        self._host = socket.gethostname()

    def where(self) -> tuple[str, int]:
        """This worker's host and process id (which process to watch, or to kill in a test)."""
        return self._host, os.getpid()

    def load(self, weights: list[Any]) -> tuple[str, int]:
        """Builds the evaluator from ``[reference]`` to the weights (once); returns `where`."""
        if self._evaluator is None:
            import ray

            from vitnas.search.fitness import FitnessEvaluator

            self._evaluator = FitnessEvaluator.from_state(self._space_source, ray.get(weights[0]), self._settings)
        return self.where()

    def evaluate(self, weights: list[Any], arch: dict[str, Any]) -> tuple[float, float, int]:
        """The accuracy of `arch` (an `Arch.to_dict()`), the seconds it took and this process's id."""
        self.load(weights)
        started = time.perf_counter()
        accuracy = self._evaluator(Arch.from_dict(arch))
        return accuracy, time.perf_counter() - started, os.getpid()


class RayBackend(Backend):
    """Evaluates candidates on Ray actors, each holding a supernet built once from the object store.

    Args:
        space_source: the supernet's space as a dict (`SearchSpace.to_dict()`).
        state_dict: the supernet's weights; copied to CPU and put in the object store once.
        settings: what each actor's `FitnessEvaluator` scores on.
        workers: actors to start; each evaluates one candidate at a time.
        gpus_per_worker: GPUs reserved per actor; a fraction (0.25) packs several
            evaluators on one GPU. 0 runs on CPUs only.
        cpus_per_worker: CPUs reserved per actor (and its torch threads, at least 1).
        address: a running cluster to attach to (``host:port``, ``auto``, ``ray://...``);
            None reads ``RAY_ADDRESS``, and without either a local Ray is started, sized to
            the workers, and shut down again by `close`. A Ray the caller already
            initialised is used as it is and left running.
        max_restarts: times Ray restarts a dead actor (rebuilding its evaluator); -1: no limit.
        tasks_per_worker: candidates queued on each actor at once; 2 lets an actor start
            its next candidate without waiting for the driver's round trip.
        startup_timeout_s: how long the actors get to build their evaluators.
        process_record: a file in which to name the processes of the local Ray this
            backend starts (removed again by `close`), so that `stop_leftover_ray` can
            stop them should this process be killed before it could.

    Raises:
        BackendError: Ray missing, the address unreachable, the cluster too small for the
            workers, or an actor that cannot build its evaluator (each one line).
    """

    name = "ray"

    def __init__(
        self,
        space_source: dict[str, Any],
        state_dict: Mapping[str, Tensor],
        settings: FitnessSettings,
        workers: int = 2,
        gpus_per_worker: float = 0.0,
        cpus_per_worker: float = 1.0,
        address: str | None = None,
        *,
        max_restarts: int = 3,
        tasks_per_worker: int = 2,
        startup_timeout_s: float = 600.0,
        process_record: str | Path | None = None,
    ) -> None:
        _check_arguments(workers, gpus_per_worker, cpus_per_worker, max_restarts, tasks_per_worker)
        self._ray = require_ray()
        self._closed = True  # until the actors exist: `close` then has nothing to release but Ray itself
        self._actors: list[Any] = []
        self._alive: list[bool] = []
        self._labels: list[str] = []
        self._tasks_per_worker = tasks_per_worker
        self._process_record: Path | None = None
        address = address or os.environ.get("RAY_ADDRESS") or None
        starting = time.time()
        self._owns_ray = connect(self._ray, address, workers, gpus_per_worker, cpus_per_worker)
        try:
            check_cluster(self._ray, workers, gpus_per_worker, cpus_per_worker)
            self._weights = self._ray.put(_cpu_weights(state_dict))  # once; every actor and every restart reads it
            actor_class = self._ray.remote(FitnessWorker).options(
                num_cpus=cpus_per_worker,
                num_gpus=gpus_per_worker,
                max_restarts=max_restarts,
                max_task_retries=-1,  # a task whose actor died is re-run on the restarted actor
            )
            threads = max(1, int(cpus_per_worker))
            self._actors = [actor_class.remote(space_source, settings, threads) for _ in range(workers)]
            self._alive = [True] * workers
            self._closed = False
            hosts = [host for host, _ in self._wait_ready(startup_timeout_s)]
            self._labels = [f"ray-{index}@{host}" for index, host in enumerate(hosts)]
            if process_record is not None and self._owns_ray and address in (None, "local"):
                self._process_record = _record_processes(Path(process_record), starting)
        except BaseException:
            self.close()
            raise
        log.info("ray backend: %d workers ready (%s CPU, %s GPU each)", workers, cpus_per_worker, gpus_per_worker)

    @classmethod
    def from_supernet(cls, supernet: SuperViT, settings: FitnessSettings, **options: Any) -> RayBackend:
        """A backend over a supernet in this process (its space and weights); `options` as for the constructor."""
        return cls(supernet.space.to_dict(), supernet.state_dict(), settings, **options)

    @property
    def workers(self) -> int:
        """Live actors (fewer than asked for only after some died for good)."""
        return sum(self._alive)

    def worker_processes(self) -> list[tuple[str, int]]:
        """Host and process id of every live actor, in worker order (changes when Ray restarts one)."""
        self._check_open()
        live = [actor for actor, alive in zip(self._actors, self._alive) if alive]
        return [tuple(found) for found in self._ray.get([actor.where.remote() for actor in live])]

    def evaluate(self, archs: Sequence[Arch]) -> Iterator[Evaluation]:
        """Yields one `Evaluation` per distinct arch of `archs`, as each finishes, in any order.

        At most ``tasks_per_worker`` candidates wait on each actor; a freed slot goes to
        the least busy live actor. A candidate whose actor died for good is sent to
        another one, at most a few times.

        Raises:
            BackendError: the backend is closed, every worker died, or one candidate kept
                losing its worker.
            VitnasError: what the evaluator raised for a candidate (e.g. an arch outside the space).
        """
        self._check_open()
        ray = self._ray
        todo = deque(dict.fromkeys(archs))
        in_flight: dict[Any, tuple[Arch, int]] = {}
        load = [0] * len(self._actors)
        resubmits: dict[Arch, int] = {}
        while todo or in_flight:
            self._submit(todo, in_flight, load)
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            arch, index = in_flight.pop(ready[0])
            load[index] -= 1
            try:
                accuracy, seconds, pid = ray.get(ready[0])
            except ray.exceptions.RayTaskError as failure:
                raise _task_error(failure, self._labels[index]) from None
            except ray.exceptions.RayActorError as failure:
                self._lost(index, arch, failure, resubmits)
                todo.appendleft(arch)
                continue
            yield Evaluation(arch, float(accuracy), f"{self._labels[index]}:{pid}", float(seconds))

    def close(self) -> None:
        """Kills the actors and, when this backend started Ray (or connected to a cluster), shuts it down."""
        if getattr(self, "_ray", None) is None:
            return
        for actor in self._actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception as failure:  # an actor that is gone already: nothing to release
                log.debug("ray backend: killing an actor failed (%s)", failure)
        self._actors, self._alive, self._closed = [], [], True
        self._weights = None
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        if self._process_record is not None:
            self._process_record.unlink(missing_ok=True)  # nothing of that Ray is left to stop
        self._ray = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.workers} workers"
        return f"RayBackend({state})"

    # -- internals ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("backend ray: evaluate after close(); make a new backend")

    def _submit(self, todo: deque[Arch], in_flight: dict[Any, tuple[Arch, int]], load: list[int]) -> None:
        """Hands waiting archs to the least busy live actors, up to ``tasks_per_worker`` each."""
        live = [index for index, alive in enumerate(self._alive) if alive]
        if not live:
            raise BackendError(f"backend ray: all {len(self._actors)} workers died; nothing left to evaluate on")
        while todo:
            index = min(live, key=lambda i: (load[i], i))
            if load[index] >= self._tasks_per_worker:
                return
            arch = todo.popleft()
            in_flight[self._actors[index].evaluate.remote([self._weights], arch.to_dict())] = (arch, index)
            load[index] += 1

    def _lost(self, index: int, arch: Arch, failure: Exception, resubmits: dict[Arch, int]) -> None:
        """Books a candidate whose actor failed beyond Ray's retries: the actor is retired, the arch re-queued."""
        ray = self._ray
        if isinstance(failure, ray.exceptions.ActorDiedError) and self._alive[index]:
            self._alive[index] = False
            log.warning("ray backend: worker %s died for good (%s); %d left", self._labels[index],
                        type(failure).__name__, self.workers)
        resubmits[arch] = resubmits.get(arch, 0) + 1
        if resubmits[arch] > _MAX_RESUBMITS:
            raise BackendError(
                f"backend ray: a candidate lost its worker {resubmits[arch]} times (last on {self._labels[index]}: "
                f"{type(failure).__name__}); giving up on {arch.to_json()}"
            )

    def _wait_ready(self, timeout_s: float) -> list[tuple[str, int]]:
        """Every actor's (host, pid) once it has built its evaluator; a failed build is one BackendError line."""
        ray = self._ray
        try:
            loaded = [actor.load.remote([self._weights]) for actor in self._actors]
            return [tuple(found) for found in ray.get(loaded, timeout=timeout_s)]
        except ray.exceptions.GetTimeoutError:
            raise BackendError(
                f"backend ray: workers not ready after {timeout_s:g} s (cluster resources: "
                f"{describe_resources(ray.available_resources())} available)"
            ) from None
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as failure:
            raise BackendError(f"backend ray: a worker could not start: {last_line(failure)}") from None


def stop_leftover_ray(record: str | Path) -> int:
    """Stops what a killed driver left of the local Ray it named in `record`; returns how many processes.

    A driver killed with SIGKILL takes Ray's GCS and raylet with it (Ray ties them to
    their parent) but not the raylet's children: the dashboard and runtime-env agents then
    spend a minute or more failing to report to the dead GCS, ignoring SIGTERM, while a
    resumed search starts a second Ray beside them. The record names every process by pid
    and start time, so a pid the system has given to another process since is never
    touched, and nothing is done while the recording driver still runs (its Ray is then
    in use, not left over). They get SIGKILL: with their driver gone they have nothing
    left to finish. The record is removed once they are gone.
    """
    import psutil

    record = Path(record)
    try:
        content = json.loads(record.read_text())
        driver, processes = content["driver"], content["processes"]
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError) as problem:
        log.warning("ray backend: ignoring %s, not a record of Ray's processes (%s)", record, problem)
        record.unlink(missing_ok=True)
        return 0
    if running_process(*driver[:2]) is not None:
        return 0
    leftovers = [process for pid, started, *_ in processes if (process := running_process(pid, started)) is not None]
    leftovers = list({process.pid: process for process in leftovers + _descendants(leftovers)}.values())
    for process in leftovers:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.Error:  # gone meanwhile, as it should be
            continue
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    if alive:
        raise BackendError(f"backend ray: processes {sorted(p.pid for p in alive)} of the Ray a killed search left "
                           f"running survive SIGKILL; stop them, then delete {record}")
    record.unlink(missing_ok=True)
    if leftovers:
        log.warning("ray backend: stopped %d process%s of the local Ray a killed search left running (pids %s)",
                    len(leftovers), "es" * (len(leftovers) > 1), ", ".join(str(p.pid) for p in leftovers))
    return len(leftovers)


def _record_processes(record: Path, since: float) -> Path:
    """Names in `record` this process and the processes of the local Ray it started at time `since`.

    Those are its descendants born since then (the GCS, the raylet, Ray's agents and
    helpers, the actors); a second's slack covers the clock's granularity.
    """
    import psutil

    me = psutil.Process()
    entries = []
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # gone meanwhile: nothing to stop later
            if (started := child.create_time()) >= since - 1.0:
                entries.append([child.pid, started, child.name()])
    text = json.dumps({"driver": [me.pid, me.create_time()], "processes": entries}, indent=1) + "\n"
    return write_text_atomically(record, text, BackendError)


def _descendants(processes: list[Any]) -> list[Any]:
    """The live children of `processes`, and theirs: what a recorded process started after the record was written."""
    import psutil

    found = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            found += process.children(recursive=True)
    return found


def _check_arguments(workers: int, gpus_per_worker: float, cpus_per_worker: float, restarts: int, tasks: int) -> None:
    """One BackendError line for a malformed constructor argument, before anything starts."""
    for name, value, low in (("workers", workers, 1), ("max_restarts", restarts, -1), ("tasks_per_worker", tasks, 1)):
        require_int(f"backend ray: {name}", value, BackendError, low=low)
    for name, value in (("gpus_per_worker", gpus_per_worker), ("cpus_per_worker", cpus_per_worker)):
        require_number(f"backend ray: {name}", value, BackendError, at_least=0)
    if gpus_per_worker > 1 and gpus_per_worker != int(gpus_per_worker):
        raise BackendError(f"backend ray: gpus_per_worker above 1 must be whole, got {gpus_per_worker!r}")


def _cpu_weights(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The weights as contiguous CPU tensors: what the object store holds, whatever device they were on."""
    import torch

    if not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise BackendError("backend ray: state_dict must map parameter names to tensors")
    return {key: value.detach().to("cpu").contiguous() for key, value in state_dict.items()}


def _task_error(failure: Exception, worker: str) -> Exception:
    """The worker's own error for a failed candidate: a VitnasError stays one line of its own class."""
    cause = getattr(failure, "cause", None)
    if isinstance(cause, VitnasError):
        return type(cause)(str(cause))
    return BackendError(f"backend ray: evaluation failed on {worker}: {last_line(failure)}")



"""Ray backend and Tune searcher: same answers as the local backend, faults survived, nothing left running.

Ray start-ups and worker processes (each imports torch, timm and the supernet) dominate
this file's time, so one backend, which starts its own local Ray, serves the backend
tests, and the last of them closes it and checks that nothing of that Ray is left; Tune
then runs on a second local Ray.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import textwrap
import time
from collections import Counter
from dataclasses import replace

import numpy as np
import psutil
import pytest
import torch

ray = pytest.importorskip("ray")

from vitnas.data import DataConfig  # noqa: E402
from vitnas.errors import ArchError  # noqa: E402
from vitnas.search import CostModel, EvolutionConfig, make_algorithm, named_budget  # noqa: E402
from vitnas.search.backend import LocalBackend  # noqa: E402
from vitnas.search.fitness import FitnessEvaluator, FitnessSettings  # noqa: E402
from vitnas.search.ray_backend import RAY_MISSING, BackendError, RayBackend, require_ray  # noqa: E402
from vitnas.space.arch import Arch  # noqa: E402
from vitnas.space.space import load_space  # noqa: E402
from vitnas.supernet.supernet import SuperViT  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("one_torch_thread")]  # as each actor: one thread

SETTINGS = FitnessSettings(DataConfig(name="digits"), split="minival", max_images=64, device="cpu")
BUDGET = named_budget(macs=0.003)  # about half of tiny32's uniform draws meet it
SMALL = EvolutionConfig(population=6, parents=3, mutations=3, crossovers=3, generations=2, seed=3)


@pytest.fixture(scope="module")
def supernet() -> SuperViT:
    torch.manual_seed(0)
    return SuperViT(load_space("tiny32")).eval()


@pytest.fixture(scope="module")
def local(supernet) -> FitnessEvaluator:
    return FitnessEvaluator(supernet, SETTINGS)


@pytest.fixture(scope="module")
def archs(supernet) -> list[Arch]:
    """Distinct archs; the 4-pixel patches (64 tokens) make each evaluation long enough to be caught mid-way."""
    rng = np.random.default_rng(7)
    found: dict[Arch, None] = {}
    while len(found) < 12:
        found[replace(supernet.space.sample(rng), patch_size=4 if len(found) % 2 else 8)] = None
    return list(found)


class _Opened:
    """The module's one backend, made when a test first needs it (and again after a test closed it)."""

    backend: RayBackend | None = None


@pytest.fixture(scope="module")
def opened():
    yield _Opened
    if _Opened.backend is not None:
        _Opened.backend.close()
        _Opened.backend = None


@pytest.fixture
def backend(opened, supernet) -> RayBackend:
    """Two CPU workers on a local Ray that the backend starts itself; each may be restarted once."""
    return _backend(opened, supernet, workers=2)


@pytest.fixture
def any_backend(opened, supernet) -> RayBackend:
    """The module's backend as the tests before left it (a worker fewer, after the fault test)."""
    return _backend(opened, supernet, workers=1)


def _backend(opened: type[_Opened], supernet: SuperViT, workers: int) -> RayBackend:
    if opened.backend is not None and opened.backend.workers < workers:  # closed, or lost a worker for good
        opened.backend.close()
        opened.backend = None
    if opened.backend is None:
        if ray.is_initialized():  # a test before this module left its Ray running: that is the bug to see
            pytest.fail("an earlier test left Ray initialised in this process; the backend tests need to start "
                        "their own (find the test that does not shut its Ray down)")
        opened.backend = RayBackend.from_supernet(supernet, SETTINGS, workers=2, max_restarts=1)
    return opened.backend


@pytest.fixture(scope="module")
def tune_ray(opened):
    """A local Ray for Tune, two CPUs (one per concurrent trial), started here and stopped after the module."""
    if opened.backend is not None:
        opened.backend.close()  # and its Ray with it
        opened.backend = None
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


def test_unreachable_address_is_one_line_quickly(supernet, monkeypatch):
    was_initialized = ray.is_initialized()
    for address, env in (("127.0.0.1:1", None), (None, "127.0.0.1:1"), ("ray://127.0.0.1:1", None)):
        if env is not None:
            monkeypatch.setenv("RAY_ADDRESS", env)
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            RayBackend.from_supernet(supernet, SETTINGS, address=address)
        assert time.monotonic() - started < 10
        message = str(info.value)
        assert "\n" not in message and "127.0.0.1:1" in message and message.startswith("backend ray: cannot reach")
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(BackendError, match="expected host:port"):
        RayBackend.from_supernet(supernet, SETTINGS, address="no-port-here")
    assert ray.is_initialized() == was_initialized  # nothing started, nothing shut down


def test_ray_missing_is_one_line(supernet, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(BackendError) as info:
        require_ray()
    assert str(info.value) == RAY_MISSING == 'backend ray: Ray is not installed (pip install "ray[tune]")'
    with pytest.raises(BackendError, match="Ray is not installed"):
        RayBackend.from_supernet(supernet, SETTINGS)


def test_two_workers_give_the_local_accuracies(backend, archs, local):
    evaluations = list(backend.evaluate(archs + archs[:3]))  # repeats are evaluated (and yielded) once
    assert Counter(e.arch for e in evaluations) == Counter(archs)
    assert {e.arch: e.accuracy for e in evaluations} == {arch: local(arch) for arch in archs}
    assert {e.worker.split("@")[0] for e in evaluations} == {"ray-0", "ray-1"}
    assert {e.worker.rsplit(":", 1)[1] for e in evaluations} == {str(pid) for _, pid in backend.worker_processes()}
    assert all(e.seconds > 0 for e in evaluations)
    assert len({accuracy for accuracy in (e.accuracy for e in evaluations)}) > 1  # real, differing numbers
    outside = replace(archs[0], img_size=30)  # a well-formed arch the tiny32 space does not hold
    with pytest.raises(ArchError) as info:
        list(backend.evaluate([outside]))
    assert type(info.value) is ArchError and "\n" not in str(info.value)  # the worker's own one-line error


def test_evolution_on_ray_ends_where_the_local_run_ends(backend, supernet, local):
    def run(evaluating):
        algorithm = make_algorithm("evolution", supernet.space, [BUDGET], CostModel(supernet.space), SMALL)
        while not algorithm.done:
            for evaluation in evaluating.evaluate(algorithm.ask()):
                algorithm.tell({evaluation.arch: evaluation.accuracy})
        return algorithm

    on_ray, in_process = run(backend), run(LocalBackend(local))
    assert on_ray.evaluations == in_process.evaluations == 12
    assert on_ray.best_per_budget() == in_process.best_per_budget()
    assert on_ray.state_dict() == in_process.state_dict()


def test_a_worker_killed_mid_run_loses_nothing_and_counts_nothing_twice(backend, archs, local, caplog):
    expected = {arch: local(arch) for arch in archs}
    before = backend.worker_processes()
    # Two workers, two slow candidates queued on each: all four are handed out before the first result,
    # so the killed worker still holds one or two, and whatever its restart returns was re-run.
    slow = [arch for arch in archs if arch.patch_size == 4][:4]
    evaluations = backend.evaluate(slow)
    first = next(evaluations)
    os.kill(before[0][1], signal.SIGKILL)
    rest = list(evaluations)
    assert Counter(e.arch for e in [first, *rest]) == Counter(slow)  # each arch exactly once
    assert {e.arch: e.accuracy for e in [first, *rest]} == {arch: expected[arch] for arch in slow}
    after = backend.worker_processes()
    assert backend.workers == 2 and after[0][1] != before[0][1] and after[1] == before[1]  # restarted in place
    assert any(e.worker.endswith(f":{after[0][1]}") for e in rest)  # a lost candidate, re-run on the new process
    assert {e.worker.rsplit(":", 1)[1] for e in [first, *rest]} <= {str(before[0][1]), str(after[0][1]),
                                                                    str(before[1][1])}

    # Its one restart used, the same worker killed again dies for good: the survivor takes over its candidates.
    caplog.set_level(logging.WARNING, logger="vitnas.search.ray_backend")
    evaluations = backend.evaluate(archs)
    first = next(evaluations)
    os.kill(after[0][1], signal.SIGKILL)
    rest = list(evaluations)
    assert Counter(e.arch for e in [first, *rest]) == Counter(archs)
    assert {e.arch: e.accuracy for e in [first, *rest]} == expected
    assert backend.workers == 1 and backend.worker_processes() == [after[1]]
    assert "worker ray-0@" in caplog.text and "died for good" in caplog.text


def test_close_stops_the_ray_the_backend_started_and_leaves_no_process(any_backend, archs):
    backend = any_backend
    assert ray.is_initialized()
    session = ray._private.worker._global_node.get_session_dir_path()
    # Ray's processes only: a child older than Ray's own (such as the resource tracker a
    # torch.multiprocessing test leaves behind) is not this backend's to stop
    children = psutil.Process().children(recursive=True)
    born = min((p.create_time() for p in children if p.name() in ("raylet", "gcs_server")), default=0.0)
    started = [p for p in children if p.create_time() >= born - 1.0]
    assert {"raylet", "gcs_server"} <= {process.name() for process in started}
    assert len(_processes_of(session)) >= 3  # gcs_server, raylet, an actor: the check below can see them
    backend.close()
    backend.close()  # idempotent
    assert not ray.is_initialized()
    _, alive = psutil.wait_procs(started, timeout=20)
    assert not alive, f"left running: {[process.name() for process in alive]}"
    assert not _processes_of(session)
    with pytest.raises(BackendError, match="after close"):
        next(backend.evaluate(archs[:1]))


def test_searcher_state_round_trips_and_an_errored_arch_is_suggested_again(supernet, tmp_path):
    from ray.tune.search import Searcher

    from vitnas.search.tune import VitnasSearcher

    def searcher() -> VitnasSearcher:
        return VitnasSearcher(make_algorithm("evolution", supernet.space, [BUDGET], CostModel(supernet.space), SMALL))

    def score(config: dict) -> float:  # a made-up accuracy that still differs per arch
        return (len(json.dumps(config["arch"])) % 97) / 97

    original = searcher()
    configs = {f"t{i}": original.suggest(f"t{i}") for i in range(6)}
    assert all(isinstance(config, dict) for config in configs.values())
    assert original.suggest("t6") is None  # generation 0 is out; its results are awaited
    for trial_id in ("t0", "t1", "t2", "t3"):
        original.on_trial_complete(trial_id, {"accuracy": score(configs[trial_id])})
    original.on_trial_complete("t5", error=True)  # its arch goes back in the queue
    path = tmp_path / "searcher.json"
    original.save(str(path))
    assert json.loads(path.read_text())["trials"] == {"t4": configs["t4"]["arch"]}  # JSON, not pickle
    restored = searcher()
    restored.restore(str(path))
    assert restored.get_state() == original.get_state()
    for copy in (original, restored):
        assert copy.suggest("t7") == configs["t5"]  # the errored arch, again
        copy.on_trial_complete("t4", {"accuracy": score(configs["t4"])})
        copy.on_trial_complete("t7", {"accuracy": score(configs["t5"])})
    suggestions = [[copy.suggest(f"n{i}") for i in range(7)] for copy in (original, restored)]
    assert suggestions[0] == suggestions[1]
    assert all(isinstance(config, dict) for config in suggestions[0][:6]) and suggestions[0][6] is None
    assert Arch.from_dict(suggestions[0][0]["arch"]) not in {Arch.from_dict(c["arch"]) for c in configs.values()}
    for i in range(6):
        original.on_trial_complete(f"n{i}", {"accuracy": 0.5})
    assert original.suggest("last") == Searcher.FINISHED and original.algorithm.evaluations == 12
    path.write_text("not json")
    with pytest.raises(BackendError, match="searcher.json"):
        restored.restore(str(path))


def test_a_ray_the_caller_initialised_is_used_as_is_and_not_owned(tune_ray, monkeypatch):
    from vitnas.search import ray_cluster

    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: pytest.fail("initialised Ray again"))
    assert ray_cluster.connect(ray, None, workers=1, gpus_per_worker=0.0, cpus_per_worker=1.0) is False
    assert ray_cluster.connect(ray, "auto", workers=1, gpus_per_worker=0.0, cpus_per_worker=1.0) is False


def test_the_module_docstring_tuner_example_runs_the_search_to_the_end(tune_ray, supernet, local, tmp_path):
    from vitnas.search import tune as tune_module  # `import vitnas.search.tune` meets the lazy `vitnas.search` function

    namespace = {"supernet": supernet, "storage": str(tmp_path)}
    exec(compile(_example(tune_module.__doc__), "vitnas.search.tune example", "exec"), namespace)
    algorithm, results = namespace["algorithm"], namespace["results"]
    assert algorithm.done and not results.errors
    trials = {Arch.from_dict(result.config["arch"]): result.metrics["accuracy"] for result in results}
    assert len(trials) == len(results) == algorithm.evaluations == 6 + 2 + 2  # one trial per arch, each told
    assert {record.arch: record.accuracy for record in algorithm.history} == trials
    assert all(accuracy == local(arch) for arch, accuracy in trials.items())


def _example(docstring: str) -> str:
    """The indented code block after the docstring's ``::``."""
    block = re.search(r"::\n\n((?:    .*\n|\n)+)", docstring)
    assert block, "the module docstring lost its example"
    return textwrap.dedent(block.group(1))


def _processes_of(session: str) -> list[str]:
    """Processes whose command line names this Ray session's folder (ours only, not other users' Rays)."""
    found = []
    for process in psutil.process_iter(["cmdline", "name"]):
        try:
            if any(session in part for part in process.info["cmdline"] or ()):
                found.append(process.info["name"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found

"""Many stand-alone runs of drawn sub-networks: resumable, one after another or as Ray tasks, and reusable.

The rank check (`vitnas.rank.check`) trains each of its archs from scratch, and the
search-vs-random comparison (``benchmarks/search_vs_random_standalone.py``) trains a
searched arch and random ones the same way. Both describe each run as a `StandaloneJob`
(plain data, so a Ray task can receive it) and hand the jobs to `run_jobs`.

A stand-alone run depends on the arch, the recipe fields that shape its weights and its
seed, never on the supernet it was drawn from. So a finished run can stand in for any
later one with the same `standalone_key`: a rank check of a second supernet of the same
space and recipe (another sampler, another distillation warm-up) reuses the first
check's runs (`finished_runs`) and trains nothing again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from vitnas.errors import BackendError, VitnasError
from vitnas.nn.vit import ViTConfig
from vitnas.nn.vit_config import vit_config
from vitnas.space.arch import Arch
from vitnas.space.space import SearchSpace
from vitnas.train.checkpoint import holds_checkpoint, load_checkpoint
from vitnas.train.recipe import Recipe, load_recipe
from vitnas.train.rundir import finished_epochs, stored_recipe
from vitnas.train.standalone import train_standalone
from vitnas.util.atomic import write_text_atomically

__all__ = ["BACKENDS", "RUNS_FILE", "StandaloneJob", "finished_runs", "record_archs", "run_folder", "run_jobs",
           "standalone_job", "standalone_key", "standalone_recipe", "standalone_top1"]

BACKENDS = ("local", "ray")
# Recipe fields that change how a supernet trains but not a stand-alone run's weights: a
# stand-alone run has one network per step and no distillation (see `vitnas.train.standalone`).
_SUPERNET_ONLY = ("space", "sampler", "distill", "distill_warmup_epochs", "gradient_projection", "eval_every",
                  "log_every", "num_workers")
RUNS_FILE = "runs.json"  # OUT/runs.json: the archs of OUT/runs/<i>, outside a rank check (`record_archs`)
_RUN_NAME = re.compile(r"^(\d+)(?:-seed(\d+))?$")


@dataclass(frozen=True)
class StandaloneJob:
    """One stand-alone run, in plain data: what a Ray task receives."""

    index: int  # the arch's position in its draw
    seed: int  # 0 for the recipe's own seed, k for the k-th extra one (recipe seed + k)
    arch: Arch
    model: dict[str, Any]  # ViTConfig.to_dict()
    recipe: dict[str, Any]  # Recipe.to_dict()
    run: str  # the run directory
    image_size: int  # the data's image side (the space's; a resized-input model resizes inside)
    reused: bool = False  # a finished run of an earlier check: nothing to train


def standalone_recipe(base: Recipe, epochs: int, overrides: Sequence[str] = (), seed: int = 0) -> Recipe:
    """A stand-alone run's recipe: `base` with `overrides`, `epochs`, no distillation, its seed moved on by `seed`."""
    recipe = load_recipe(base.to_dict(), [*overrides, f"epochs={epochs}", "distill=false"])
    return load_recipe(recipe.to_dict(), [f"seed={recipe.seed + seed}"]) if seed else recipe


def standalone_key(recipe: Recipe) -> str:
    """What a stand-alone run's weights depend on besides the arch: the recipe without its supernet-only fields."""
    fields = {key: value for key, value in recipe.to_dict().items() if key not in _SUPERNET_ONLY}
    return json.dumps(fields, sort_keys=True, default=str)


def run_folder(out: Path, index: int, seed: int) -> Path:
    """``OUT/<index>`` for the recipe's seed, ``OUT/<index>-seed<k>`` for the k-th extra seed."""
    return out / (str(index) if seed == 0 else f"{index}-seed{seed}")


def standalone_job(runs: Path, index: int, seed: int, arch: Arch, space: SearchSpace, recipe: Recipe,
                   reuse: dict[tuple[Arch, str], Path] | None = None) -> StandaloneJob:
    """The job of arch `index` at extra seed `seed`: a finished run from `reuse` if one matches, else a new one."""
    found = (reuse or {}).get((arch, standalone_key(recipe)))
    run = found if found is not None else run_folder(runs, index, seed)
    return StandaloneJob(index, seed, arch, vit_config(space, arch).to_dict(), recipe.to_dict(), str(run),
                         space.img_size, reused=found is not None)


def finished_runs(folders: Sequence[Path]) -> dict[tuple[Arch, str], Path]:
    """Every finished stand-alone run under the given run folders, by (arch, `standalone_key`).

    A run counts when its latest checkpoint reached the epochs of its recipe; its arch is
    read from the ``archs`` list of the ``rank_check.json`` (or ``runs.json``) beside the folder.

    Raises:
        VitnasError: a folder that is not a directory, or whose arch list cannot be read.
    """
    found: dict[tuple[Arch, str], Path] = {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise VitnasError(f"reuse: {folder} is not a directory of stand-alone runs")
        archs = _drawn_archs(folder.parent)
        for run in sorted(folder.iterdir()):
            match = _RUN_NAME.match(run.name)
            if match is None or int(match.group(1)) >= len(archs):
                continue
            recipe = _finished_recipe(run)
            if recipe is not None:
                found.setdefault((archs[int(match.group(1))], standalone_key(recipe)), run)
    return found


def _drawn_archs(directory: Path) -> list[Arch]:
    for name in ("rank_check.json", RUNS_FILE):
        path = directory / name
        if path.is_file():
            try:
                return [Arch.from_dict(arch) for arch in json.loads(path.read_text())["archs"]]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise VitnasError(f"reuse: {path}: no list of archs ({error})") from None
    raise VitnasError(f"reuse: {directory} holds neither rank_check.json nor runs.json naming its runs' archs")


def _finished_recipe(run: Path) -> Recipe | None:
    """The recipe of a run whose latest checkpoint finished it; None for a partial or unreadable run."""
    try:
        recipe, epochs = stored_recipe(run), finished_epochs(run)
    except (VitnasError, OSError, ValueError):
        return None
    return recipe if epochs == recipe.epochs else None


def record_archs(out: Path, archs: Sequence[Arch]) -> None:
    """Writes OUT/runs.json, the archs of OUT/runs/<i>, so that later checks can reuse the runs (`finished_runs`).

    Raises:
        VitnasError: OUT/runs.json names other archs (the folder belongs to another comparison).
    """
    path = Path(out) / RUNS_FILE
    stored = {"archs": [arch.to_dict() for arch in archs]}
    if path.is_file() and json.loads(path.read_text()) != stored:
        raise VitnasError(f"{path} names other archs: use another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(stored, indent=1) + "\n", VitnasError)


def standalone_top1(archs: Sequence[Arch], space: SearchSpace, recipes: Sequence[Recipe], out: Path,
                    reuse: Sequence[Path] = (), backend: str = "local", workers: int = 2,
                    cpus: float = 1.0) -> tuple[list[list[float]], float]:
    """Each arch trained stand-alone once per recipe (one per seed) in OUT/runs, resuming or reusing finished runs.

    Records the archs first (`record_archs`), so an interrupted comparison continues where it
    stopped. Returns each arch's val top-1 per recipe, in order, and the seconds spent training.
    """
    record_archs(out, archs)
    found = finished_runs([Path(folder) / "runs" for folder in reuse])
    jobs = [standalone_job(Path(out) / "runs", index, seed, arch, space, recipe, found)
            for index, arch in enumerate(archs) for seed, recipe in enumerate(recipes)]
    top1 = [[0.0] * len(recipes) for _ in archs]
    trained = 0.0
    for job, seconds, _ in run_jobs(jobs, backend=backend, workers=workers, cpus=cpus):
        trained += seconds
        top1[job.index][job.seed] = load_checkpoint(Path(job.run))["meta"]["metrics"]["val_top1"]
    return top1, trained


def train_job(job: StandaloneJob, threads: int | None = None) -> tuple[float, str]:
    """Trains one arch stand-alone, resuming its run where one was checkpointed; (seconds, host).

    The resume decision is taken here, not by the caller, so a Ray task re-run after its
    worker died continues from the last epoch the dead one saved.
    """
    if job.reused:
        return 0.0, socket.gethostname()
    if threads is not None:
        torch.set_num_threads(threads)  # a Ray worker process of its own: one thread per reserved CPU
    started, run = time.perf_counter(), Path(job.run)
    resume = holds_checkpoint(run)
    if not resume and run.exists():
        shutil.rmtree(run)  # killed before its first checkpoint: its partial metrics log would mislead
    config = ViTConfig.from_dict(job.model)
    train_standalone(config, None if resume else job.recipe, run, resume=resume, image_size=job.image_size)
    return time.perf_counter() - started, socket.gethostname()


def run_jobs(jobs: Sequence[StandaloneJob], backend: str = "local", workers: int = 2, gpus: float = 0.0,
             cpus: float = 1.0, address: str | None = None) -> Iterator[tuple[StandaloneJob, float, str]]:
    """Trains the jobs; yields (job, seconds, "local@host" / "ray@host" / "reused") as each finishes.

    ``local`` runs them one after another in this process; ``ray`` as Ray tasks, at most
    `workers` at once, of `cpus` CPUs and `gpus` GPUs each. Reused jobs are yielded first, untrained.
    """
    for job in jobs:
        if job.reused:
            yield job, 0.0, "reused"
    todo = [job for job in jobs if not job.reused]
    if backend == "local":
        for job in todo:
            seconds, host = train_job(job)
            yield job, seconds, f"local@{host}"
    else:
        yield from _ray_runs(todo, workers, gpus, cpus, address)


def _ray_runs(jobs: Sequence[StandaloneJob], workers: int, gpus: float, cpus: float,
              address: str | None) -> Iterator[tuple[StandaloneJob, float, str]]:
    """The jobs as Ray tasks, at most `workers` at once; yields each as it finishes.

    A task whose worker process dies is retried by Ray (and resumes its checkpoint); an
    error a task raises is re-raised here, a `VitnasError` as its own one-line class.
    """
    if not jobs:
        return
    from vitnas.search.ray_cluster import check_cluster, connect, require_ray

    ray = require_ray()
    owns = connect(ray, address or os.environ.get("RAY_ADDRESS") or None, workers, gpus, cpus)
    try:
        check_cluster(ray, workers, gpus, cpus)
        task = ray.remote(train_job).options(num_cpus=cpus, num_gpus=gpus, max_retries=3)
        todo, running = deque(jobs), {}
        while todo or running:
            while todo and len(running) < workers:
                job = todo.popleft()
                running[task.remote(job, max(1, int(cpus)))] = job
            ready, _ = ray.wait(list(running), num_returns=1)
            job = running.pop(ready[0])
            try:
                seconds, host = ray.get(ready[0])
            except ray.exceptions.RayError as failure:
                cause = getattr(failure, "cause", None)
                if isinstance(cause, VitnasError):
                    raise type(cause)(str(cause)) from None
                lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
                raise BackendError(f"the stand-alone run of arch {job.index} failed on Ray: "
                                   f"{(lines[-1] if lines else type(failure).__name__)[:300]}") from None
            yield job, seconds, f"ray@{host}"
    finally:
        if owns and ray.is_initialized():
            ray.shutdown()

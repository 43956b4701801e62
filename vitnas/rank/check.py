"""`vitnas rank-check`: does the supernet rank its sub-networks as stand-alone training would?

Weight-sharing NAS is only as good as the ranking its shared weights give: published
evaluations found it barely better than random on some spaces. This measures it for
the user's own supernet and data. N sub-networks are drawn spread over the space's
MACs range (stratified: equal-width bins of log-MACs, the smallest and the largest arch
always among them), each is trained stand-alone from scratch with the supernet's own
recipe (same epochs, data and augmentation; no distillation, since no teacher exists
for a network trained alone) through `vitnas.train.standalone.train_standalone`, and each is
scored twice on the same held-out split: with the weights it inherits from the
supernet, and with its own stand-alone weights. The statistics (`rank_statistics`)
compare the two rankings.

Stand-alone training is itself noisy: with ``seeds`` > 1 each arch is trained that many
times (the recipe's seed, then seed + 1, ...), the mean is the ground truth, and the
Kendall tau between seeds says how far the ground truth agrees with itself: a supernet
cannot be expected to rank better than that. On a small data set where every arch lands
within a few images of the others, that ceiling, not the supernet, may be what limits tau.

Stand-alone runs do not depend on the supernet, so ``reuse`` takes the finished runs of
earlier checks (same space, recipe, epochs and seed) instead of training them again:
checking a second supernet, trained with another sampler say, costs only its evaluation.

The run directory::

    OUT/rank_check.json   the settings and the drawn archs (read back on resume)
    OUT/archs.jsonl       one record per finished arch (rewritten atomically as each finishes)
    OUT/summary.json      the statistics, written when every arch is done
    OUT/scatter.png       inherited vs stand-alone top-1, coloured by MACs
    OUT/runs/<i>/         the stand-alone run of arch i (checkpoints, metrics.jsonl)
    OUT/runs/<i>-seed<k>/ its run at the k-th extra seed (``seeds`` > 1)

The same call again continues the check (`vitnas.train.rundir`: settings other than
those it began with are refused); it trains no finished arch again, and a half-trained
run continues from its latest checkpoint. With ``backend="ray"`` the stand-alone runs
are Ray tasks, a few at a time; a task Ray retries after a worker died resumes its run's
checkpoint. Ray is imported only on that path, and the run folders must be on a file
system every worker sees (any single machine).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from vitnas.data import SPLITS, build_dataset
from vitnas.errors import RankCheckError
from vitnas.evaluate import count_topk
from vitnas.nn.vit import ViT, ViTConfig
from vitnas.rank.draw import bin_of, macs_bins, stratified_archs
from vitnas.rank.runs import BACKENDS, StandaloneJob, finished_runs, run_jobs, standalone_job, standalone_recipe
from vitnas.rank.stats import RankStatistics, rank_statistics
from vitnas.space.arch import Arch
from vitnas.space.cost import count_macs, count_params
from vitnas.space.space import SearchSpace
from vitnas.train.checkpoint import MODEL_FILE, load_checkpoint, load_supernet
from vitnas.train.recipe import Recipe
from vitnas.train.rundir import check_same, continues, read_settings, start_over
from vitnas.util.atomic import prepare_directory, write_bytes_atomically, write_text_atomically
from vitnas.util.fields import is_int, require_int, require_number

__all__ = ["ArchRecord", "RankCheckError", "RankCheckResult", "RankCheckSettings", "RankStatistics",
           "format_rank_check", "macs_bins", "rank_check", "rank_statistics", "stratified_archs"]

log = logging.getLogger(__name__)

SETTINGS_FILE, ARCHS_FILE, SUMMARY_FILE, PLOT_FILE, RUNS_FOLDER = ARTEFACTS = (
    "rank_check.json", "archs.jsonl", "summary.json", "scatter.png", "runs")  # --fresh deletes these
MIN_ARCHS = 4  # fewer points give a Kendall tau that means nothing
_FIXED_KEYS = ("data", "distill", "epochs")  # recipe keys the check itself sets; overrides may not ...
# ... except a fixed draw of the training images: the runs still score on the supernet's own val / minival
_FREE_KEYS = ("data.train_images",)


@dataclass(frozen=True)
class RankCheckSettings:
    """What defines a rank check; stored in ``rank_check.json`` and compared when the check continues."""

    checkpoint: str  # the supernet run or checkpoint folder (resolved)
    archs: int  # sub-networks drawn and trained
    bins: int  # equal-width bins of log-MACs the draw is stratified over
    epochs: int  # stand-alone epochs per arch
    seed: int  # seeds the draw (training is seeded by the recipe's own seed)
    split: str  # held-out split both accuracies are measured on
    overrides: tuple[str, ...]  # extra recipe overrides of the stand-alone runs
    use_ema: bool  # score EMA weights (the supernet's and each run's) where kept
    max_draws: int  # bound on the draws that fill the bins
    seeds: int = 1  # stand-alone runs per arch (recipe seed, seed + 1, ...); their mean is the ground truth
    supernet_step: int | None = None  # the supernet checkpoint's training step: inherited scores are of its weights

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "overrides": list(self.overrides)}


@dataclass(frozen=True)
class ArchRecord:
    """One finished arch: a line of ``archs.jsonl``."""

    index: int  # position in the draw (its run is OUT/runs/<index>)
    arch: Arch
    macs: int  # multiply-accumulates per image
    params: int
    bin: int  # the MACs bin it was drawn for
    inherited_top1: float  # with the supernet's weights, on the split
    standalone_top1: float  # after its own training, on the split (the mean over its seeds)
    wall_s: float  # training (the part run by the call that finished it) and both evaluations
    worker: str  # where it trained: "local@host", "ray@host" or "reused" (an earlier check's run)
    standalone_seeds: tuple[float, ...] = ()  # top-1 of each seed's run, in seed order

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {**data, "arch": self.arch.to_dict(), "standalone_seeds": list(self.standalone_seeds)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchRecord:
        seeds = tuple(data.get("standalone_seeds") or (data["standalone_top1"],))  # records before seeds: one
        return cls(**{**data, "arch": Arch.from_dict(data["arch"]), "standalone_seeds": seeds})


@dataclass(frozen=True)
class RankCheckResult:
    """A finished rank check: every record, the statistics, and where the files are."""

    out: Path
    settings: RankCheckSettings
    space: str  # the space's name
    records: tuple[ArchRecord, ...]  # in draw order
    statistics: RankStatistics
    wall_s: float  # sum of the records' wall times
    resumed: int  # records read back from archs.jsonl rather than computed by this call


def rank_check(
    checkpoint: str | Path,
    out: str | Path,
    *,
    archs: int = 20,
    epochs: int | None = None,
    seed: int = 0,
    bins: int | None = None,
    split: str = "val",
    overrides: Sequence[str] = (),
    use_ema: bool = False,
    max_draws: int | None = None,
    seeds: int = 1,
    reuse: Sequence[str | Path] = (),
    backend: str = "local",
    workers: int = 2,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    ray_address: str | None = None,
    resume: bool | None = None,
    fresh: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> RankCheckResult:
    """Trains `archs` sub-networks stand-alone and measures how truly the supernet ranks them.

    Args:
        checkpoint: a `vitnas train` run (or one checkpoint folder of it).
        out: the run directory (see the module docstring).
        archs: sub-networks to draw and train; at least 4.
        epochs: stand-alone epochs each (default: the supernet recipe's, the same budget).
        seed: seeds the draw of the archs.
        bins: equal-width log-MACs bins to stratify over (default: `archs`, one arch per bin);
            each bin gets ``archs // bins`` archs, a few of them one more.
        split: held-out split of the recipe's data both accuracies are measured on: ``val``
            or ``minival`` (held out of training only with ``data.holdout: true``).
        overrides: ``key=value`` overrides of the stand-alone runs' recipe (``data``,
            ``distill`` and ``epochs`` are the check's own and refused).
        use_ema: score EMA weights, the supernet's and each run's, where the recipe keeps them.
        max_draws: bound on the draws that fill the bins (default: 200 per arch).
        seeds: stand-alone runs per arch (the recipe's seed, then seed + 1, ...); the ground
            truth is their mean, and `RankStatistics.seed_tau` how well they agree.
        reuse: earlier rank-check directories whose finished stand-alone runs of the same
            arch, recipe, epochs and seed are taken instead of training them again.
        backend: ``local`` (one run after another, in this process) or ``ray`` (`workers`
            runs at once as Ray tasks of `cpus_per_worker` CPUs and `gpus_per_worker` GPUs,
            on the cluster at `ray_address` or ``RAY_ADDRESS``, else a local Ray).
        resume: None (default): continue the check in `out` if it holds one (finished archs
            are read back, half-trained runs continue from their checkpoints), else start
            (`vitnas.train.rundir`: the settings must be the ones it began with). True: `out`
            must hold a check; False: it must not.
        fresh: delete the check's files in `out` (once every setting has been checked) and start over.
        device: where accuracies are measured (default: CUDA when present, else the CPU).
        progress: show a progress bar.

    Returns:
        A `RankCheckResult`; `format_rank_check` prints it.

    Raises:
        RankCheckError: bad settings, `out` holding another run, a bin that cannot be filled.
        CheckpointError: the checkpoint is missing, damaged or not a supernet.
        RecipeError: a malformed override. All are one line, raised before anything is written.
    """
    out = Path(out)
    _check_execution(backend, workers, gpus_per_worker, cpus_per_worker, device)
    settings, supernet, space, recipes = _prepare(checkpoint, archs, epochs, seed, bins, split, overrides, use_ema,
                                                  max_draws, seeds)
    reusable = finished_runs([Path(folder) / RUNS_FOLDER for folder in reuse])
    drawn = None if fresh else _check_run_directory(out, settings, resume)
    continuing = drawn is not None
    drawn = drawn if continuing else stratified_archs(space, archs, settings.bins, np.random.default_rng(seed),
                                                      settings.max_draws)
    if fresh:  # only now: a bad setting must not cost the check it would replace
        start_over(out, ARTEFACTS)
    prepare_directory(out, "--out", RankCheckError)  # only now: every check that can fail has passed
    if not continuing:
        stored = {"settings": settings.to_dict(), "bins": macs_bins(space, settings.bins).tolist(),
                  "archs": [arch.to_dict() for arch in drawn]}
        write_text_atomically(out / SETTINGS_FILE, json.dumps(stored, indent=1) + "\n", RankCheckError)
    records = _read_records(out / ARCHS_FILE) if continuing else {}
    resumed = len(records)
    scorer = _Scorer(supernet, space, recipes[0], split, device)
    jobs = [standalone_job(out / RUNS_FOLDER, index, k, arch, space, recipe, reusable)
            for index, arch in enumerate(drawn) if index not in records for k, recipe in enumerate(recipes)]
    finished: dict[int, list[tuple[StandaloneJob, float, str]]] = {}
    with tqdm(total=len(drawn), initial=resumed, desc="rank-check", unit="arch", disable=not progress,
              dynamic_ncols=True) as bar:
        for job, seconds, worker in run_jobs(jobs, backend, workers, gpus_per_worker, cpus_per_worker, ray_address):
            finished.setdefault(job.index, []).append((job, seconds, worker))
            if len(finished[job.index]) == len(recipes):  # every seed of the arch is done
                records[job.index] = _record(finished.pop(job.index), settings, space, scorer)
                _write_records(out / ARCHS_FILE, records)
                bar.update()
    return _finish(out, settings, space, drawn, records, resumed)


# -- preparing --------------------------------------------------------------------------------------

def _check_execution(backend: str, workers: int, gpus: float, cpus: float, device: str | None) -> None:
    """One line for a bad backend, worker count or share; Ray's presence is checked when it is asked for."""
    if backend not in BACKENDS:
        raise RankCheckError(f"backend: unknown {backend!r} (known: {', '.join(BACKENDS)})")
    require_int("workers", workers, RankCheckError)
    require_number("gpus_per_worker", gpus, RankCheckError, at_least=0)
    require_number("cpus_per_worker", cpus, RankCheckError, above=0)
    if backend == "ray":
        from vitnas.search.ray_cluster import require_ray

        require_ray()
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            raise RankCheckError(f"device: {device!r} is not a device (cpu, cuda, cuda:N)") from None


def _prepare(checkpoint: str | Path, archs: int, epochs: int | None, seed: int, bins: int | None, split: str,
             overrides: Sequence[str], use_ema: bool, max_draws: int | None,
             seeds: int) -> tuple[RankCheckSettings, Any, SearchSpace, list[Recipe]]:
    """Checks every setting and loads the supernet; returns the settings and each seed's stand-alone recipe."""
    require_int("archs", archs, RankCheckError, low=MIN_ARCHS,
                what=f"an integer >= {MIN_ARCHS} (a ranking of fewer sub-networks means nothing)")
    require_int("seeds", seeds, RankCheckError)
    for name, value in (("epochs", epochs), ("bins", bins), ("max_draws", max_draws)):
        require_int(name, value, RankCheckError, optional=True)
    if not is_int(seed):
        raise RankCheckError(f"seed: expected an integer, got {seed!r}")
    if split not in SPLITS or split == "train":
        raise RankCheckError(f"split: expected val or minival (held out of training), got {split!r}")
    bins = archs if bins is None else bins
    if bins > archs:
        raise RankCheckError(f"bins: {bins} bins need at least as many archs, got archs={archs}")
    overrides = tuple(overrides)
    for override in overrides:
        name = override.partition("=")[0].strip()
        key = name.split(".")[0]
        if key in _FIXED_KEYS and name not in _FREE_KEYS:
            raise RankCheckError(f"overrides: {override!r}: the check sets {key} itself (same data, the epochs= "
                                 "argument, no distillation; data.train_images may be set)")
    supernet, space = load_supernet(checkpoint, use_ema=use_ema)
    loaded = load_checkpoint(Path(checkpoint))
    base = loaded["recipe"]
    epochs = base.epochs if epochs is None else epochs
    recipes = [standalone_recipe(base, epochs, overrides, k) for k in range(seeds)]
    if split == "minival" and not base.data.holdout:
        log.warning("rank-check: data.holdout is off, so both the supernet and the stand-alone runs trained on "
                    "the minival images; val is the fair split")
    settings = RankCheckSettings(str(Path(checkpoint).resolve()), archs, bins, epochs, seed, split, overrides,
                                 use_ema, 200 * archs if max_draws is None else max_draws, seeds,
                                 int(loaded["meta"]["step"]))
    return settings, supernet, space, recipes


def _check_run_directory(out: Path, settings: RankCheckSettings, resume: bool | None) -> list[Arch] | None:
    """The stored draw of the check in `out` when it continues (None: a new check); refuses other settings."""
    if not continues(out, (SETTINGS_FILE, ARCHS_FILE, RUNS_FOLDER), resume, RankCheckError, "a rank check"):
        return None
    path = out / SETTINGS_FILE
    if not path.is_file():
        raise RankCheckError(f"{out}: holds a rank check's runs but no {SETTINGS_FILE}, so it cannot continue; "
                             "--fresh starts over")
    stored = read_settings(path, RankCheckError, "a rank check")
    try:
        theirs, drawn = stored["settings"], [Arch.from_dict(arch) for arch in stored["archs"]]
    except (KeyError, TypeError, ValueError) as error:
        raise RankCheckError(f"{path}: not a rank check's settings ({error})") from None
    # A supernet that trained on since the check began would mix two sets of inherited scores: refused.
    # Files from before these fields: one seed each, and the step unknown (taken as unchanged).
    check_same(settings.to_dict(), {"seeds": 1, "supernet_step": settings.supernet_step, **theirs}, out,
               RankCheckError)
    return drawn


# -- scoring and reporting --------------------------------------------------------------------------

class _Scorer:
    """Top-1 of inherited and stand-alone weights on one split: the same images, code and precision for both."""

    def __init__(self, supernet: Any, space: SearchSpace, recipe: Recipe, split: str, device: str | None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.supernet = supernet.to(self.device).eval()
        dataset = build_dataset(recipe.data, split, space.img_size, space.in_chans)
        self.loader = DataLoader(dataset, batch_size=256)

    def top1(self, model: torch.nn.Module, arch: Arch | None) -> float:
        correct, total, _ = count_topk(model, self.loader, arch, self.device, ks=(1,), timed=False)
        return correct[1] / max(total, 1)

    def standalone(self, run: Path, use_ema: bool) -> float:
        """Top-1 of a finished run's last checkpoint (its EMA weights with `use_ema`, where kept)."""
        loaded = load_checkpoint(run)
        model = ViT(ViTConfig.from_dict(loaded["model_config"], where=f"{loaded['folder']}/{MODEL_FILE}"))
        model.load_state_dict(loaded["ema"] if use_ema and loaded["ema"] is not None else loaded["model"])
        return self.top1(model.to(self.device), None)


def _record(runs: list[tuple[StandaloneJob, float, str]], settings: RankCheckSettings, space: SearchSpace,
            scorer: _Scorer) -> ArchRecord:
    """The record of one arch from its finished runs, one per seed."""
    started = time.perf_counter()
    runs = sorted(runs, key=lambda run: run[0].seed)
    job = runs[0][0]
    inherited = scorer.top1(scorer.supernet, job.arch)
    seeds = tuple(scorer.standalone(Path(run.run), settings.use_ema) for run, _, _ in runs)
    macs = count_macs(space, job.arch)
    workers = sorted({worker for _, _, worker in runs})
    record = ArchRecord(job.index, job.arch, macs, count_params(space, job.arch),
                        bin_of(macs_bins(space, settings.bins), macs), inherited, float(np.mean(seeds)),
                        sum(seconds for _, seconds, _ in runs) + time.perf_counter() - started, ",".join(workers),
                        seeds)
    log.info("arch %d (%.2f M MACs): inherited %.2f%%, stand-alone %.2f%% on %s (%.0f s)", job.index, macs / 1e6,
             100 * inherited, 100 * record.standalone_top1, settings.split, record.wall_s)
    return record


def _read_records(path: Path) -> dict[int, ArchRecord]:
    if not path.is_file():
        return {}
    try:
        records = [ArchRecord.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    except (ValueError, KeyError, TypeError) as error:
        raise RankCheckError(f"{path}: not a rank check's records ({error})") from None
    return {record.index: record for record in records}


def _write_records(path: Path, records: dict[int, ArchRecord]) -> None:
    text = "".join(json.dumps(records[index].to_dict()) + "\n" for index in sorted(records))
    write_text_atomically(path, text, RankCheckError)


def _finish(out: Path, settings: RankCheckSettings, space: SearchSpace, drawn: Sequence[Arch],
            records: dict[int, ArchRecord], resumed: int) -> RankCheckResult:
    """The statistics over every record, written as summary.json and scatter.png."""
    ordered = tuple(records[index] for index in range(len(drawn)))
    edges = macs_bins(space, settings.bins)
    seeds = [[r.standalone_seeds[k] for r in ordered] for k in range(settings.seeds)]
    statistics = rank_statistics([r.inherited_top1 for r in ordered], [r.standalone_top1 for r in ordered],
                                 [r.macs for r in ordered], budgets=edges[1:], seeds=seeds)
    result = RankCheckResult(out, settings, space.name, ordered, statistics, sum(r.wall_s for r in ordered), resumed)
    summary = {"space": space.name, "settings": settings.to_dict(), "archs": len(ordered),
               **statistics.to_dict(), "inherited_best": _best(ordered, "inherited_top1"),
               "standalone_best": _best(ordered, "standalone_top1"), "wall_s": result.wall_s,
               "bins": edges.tolist()}
    write_text_atomically(out / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n", RankCheckError)
    write_bytes_atomically(out / PLOT_FILE, _plot(result), RankCheckError)
    log.info("rank-check: Kendall tau %.3f, Spearman rho %.3f over %d archs", statistics.kendall_tau,
             statistics.spearman_rho, len(ordered))
    return result


def _best(records: Sequence[ArchRecord], key: str) -> int:
    """Index of the best record by `key` (ties: fewer MACs, then earlier)."""
    return min(records, key=lambda r: (-getattr(r, key), r.macs, r.index)).index


def _plot(result: RankCheckResult) -> bytes:
    """scatter.png: inherited vs stand-alone top-1 of every arch, coloured by MACs, numbered by draw."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.colors import LogNorm

    records, stats = result.records, result.statistics
    x, y = [100 * r.inherited_top1 for r in records], [100 * r.standalone_top1 for r in records]
    figure, axes = plt.subplots(figsize=(6.5, 5), dpi=120)
    points = axes.scatter(x, y, c=[r.macs / 1e6 for r in records], cmap="viridis", norm=LogNorm(), s=36,
                          edgecolors="black", linewidths=0.4)  # log colours: the draw is spread in log-MACs
    for record, px, py in zip(records, x, y):
        axes.annotate(str(record.index), (px, py), textcoords="offset points", xytext=(4, 3), fontsize=7)
    figure.colorbar(points, ax=axes, label="MACs per image (M)")
    axes.set_xlabel(f"inherited (supernet) top-1 on {result.settings.split} (%)")
    axes.set_ylabel(f"stand-alone top-1 on {result.settings.split} (%), {result.settings.epochs} epochs")
    axes.set_title(f"{result.space}: Kendall τ {stats.kendall_tau:.2f}, Spearman ρ {stats.spearman_rho:.2f}, "
                   f"top-{stats.top_k} overlap {stats.top_k_overlap}/{stats.top_k}", fontsize=10)
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _band_line(stats: RankStatistics) -> str:
    """Kendall tau within each MACs band (and the seeds' own there): where the ranking holds, where it does not."""
    taus = ", ".join(f"{tau:.3f}" for tau in stats.band_tau)
    seeds = f" (between stand-alone seeds: {', '.join(f'{tau:.3f}' for tau in stats.band_seed_tau)})" \
        if stats.band_seed_tau else ""
    return f"Kendall tau within each third of the archs by MACs, cheapest first: {taus}{seeds}"


def format_rank_check(result: RankCheckResult) -> str:
    """The printable summary: one line per arch (by MACs), then the statistics and the files."""
    stats, settings = result.statistics, result.settings
    lines = [f"rank check of {settings.checkpoint}: {len(result.records)} sub-networks of {result.space}, "
             f"{settings.epochs} stand-alone epochs each" + (f", mean of {settings.seeds} seeds" if settings.seeds > 1
                                                               else "") + f", top-1 on {settings.split}",
             f"{'#':>3} {'MACs':>9} {'params':>9} {'inherited':>10} {'stand-alone':>12} {'wall':>7}  arch"]
    for r in sorted(result.records, key=lambda r: (r.macs, r.index)):
        per_seed = f" ({' '.join(f'{a:.2%}' for a in r.standalone_seeds)})" if len(r.standalone_seeds) > 1 else ""
        lines.append(f"{r.index:>3} {r.macs / 1e6:>8.2f}M {r.params / 1e6:>8.3f}M {r.inherited_top1:>10.2%} "
                     f"{r.standalone_top1:>12.2%} {r.wall_s:>6.0f}s  {r.arch}{per_seed}")
    pick, best = _best(result.records, "inherited_top1"), _best(result.records, "standalone_top1")
    lines += [f"Kendall tau {stats.kendall_tau:.3f}, Spearman rho {stats.spearman_rho:.3f}, "
              f"top-{stats.top_k} overlap {stats.top_k_overlap}/{stats.top_k}",
              *([f"Kendall tau between stand-alone seeds {stats.seed_tau:.3f}: the ceiling of the supernet's tau on "
                 "this ground truth"] if settings.seeds > 1 else []),
              *([_band_line(stats)] if stats.band_tau else []),
              f"regret of picking by the supernet: {100 * stats.regret:.2f} points mean, {100 * stats.regret_max:.2f} "
              f"max over {len(stats.budgets)} MACs budgets (stand-alone top-1 of the best arch within each budget "
              "minus that of the supernet's pick)",
              f"supernet's best: #{pick} ({result.records[pick].standalone_top1:.2%} stand-alone); true best: #{best} "
              f"({result.records[best].standalone_top1:.2%})",
              f"wall time {result.wall_s:.0f} s (training and evaluation"
              + (f"; {result.resumed} archs read back on resume)" if result.resumed else ")"),
              f"files: {result.out / SUMMARY_FILE}, {result.out / ARCHS_FILE}, {result.out / PLOT_FILE}"]
    return "\n".join(lines)

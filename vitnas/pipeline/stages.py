"""`vitnas run`: the whole path in one call, resumable stage by stage.

The stages, each writing under one output directory::

    OUT/profile.json       1. a latency profile of this machine's device (it needs no trained weights,
                              so a latency budget the device cannot meet fails before any training)
    OUT/supernet/          2. train the supernet (the recipe's ``data.holdout`` keeps the search split unseen)
    OUT/search/            3. evolution under two latency budgets and one MACs budget, chosen from the profile
    OUT/export/<budget>/   4. the best sub-network per budget as an export folder,
    OUT/export/elastic/       and all of them as one elastic bundle
                           5. each export scored on ``val`` and timed as the profile was

A stage whose artefact is complete is skipped on the next call, so a killed run resumes
where it stopped (a half-trained supernet or a half-finished search resumes inside the
stage); ``fresh=True`` deletes these artefacts and starts over. What the run did is
returned as a `RunResult`, which `format_run` prints as one table.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from vitnas.errors import RunError
from vitnas.export.schema import MODEL_FORMATS
from vitnas.util.fields import require_int, require_positive_numbers
from vitnas.util.renamed import take_renamed, upgraded

if TYPE_CHECKING:
    from vitnas.latency.profile import DeviceProfile
    from vitnas.space.space import SearchSpace

__all__ = ["RunError", "RunSettings", "RunResult", "ExportRow", "run_pipeline", "format_run"]

logger = logging.getLogger(__name__)

STAGES = ("profile", "supernet", "search", "export", "eval")
SMALL_MODEL_MACS = 50e6  # below this many MACs per image a second torch thread waits more than it works
LATENCY_FRACTIONS = (0.25, 0.5)  # latency budgets: this far from the smallest arch's latency to the largest's
MACS_FRACTION = 0.2  # the MACs budget: this far from the smallest arch's MACs to the largest's
# The forms of each export folder unless asked otherwise: every one-model form but timm's (vitnas.load and
# deployment need no timm copy of the weights).
DEFAULT_FORMATS = tuple(name for name in MODEL_FORMATS if name != "timm")


@dataclass(frozen=True)
class RunSettings:
    """What one `vitnas run` does; every field has a default that suits the built-in digits data on a CPU."""

    recipe: str = "tiny32_digits"  # training recipe: shipped name or YAML path
    out: str = "vitnas-run"  # output directory of every stage
    overrides: tuple[str, ...] = ()  # recipe key=value overrides, e.g. epochs=5
    space: str | None = None  # search space replacing the recipe's
    data: str | None = None  # digits, cifar10:/path, cifar100:/path or an ImageFolder root, replacing the recipe's
    device: str | None = None  # cpu or cuda[:N] for every stage (default: cuda when present)
    latency_ms: tuple[float, ...] = ()  # latency budgets (default: chosen from the profile)
    macs: tuple[float, ...] = ()  # MACs budgets in G per image (default: chosen from the space)
    backend: str = "ray"  # search backend: ray or local
    ray_address: str | None = None  # an existing Ray cluster; default: a local Ray
    workers: int = 2  # Ray actors evaluating candidates
    generations: int = 10  # evolution generations
    population: int = 30  # archs in the first generation
    profile_samples: int = 40  # archs measured for the latency profile
    latency_batch: int = 32  # images per timed forward pass (profile, budgets, verification)
    formats: tuple[str, ...] = DEFAULT_FORMATS  # forms of each export folder
    threads: int | None = None  # torch CPU threads; None: one for small models, torch's default otherwise
    fresh: bool = False  # delete this run's artefacts and start over
    progress: bool = True  # progress bars

    def __post_init__(self) -> None:
        if self.backend not in ("ray", "local"):
            raise RunError(f"--backend: expected ray or local, got {self.backend!r}")
        if self.ray_address is not None and self.backend != "ray":
            raise RunError("--ray-address: needs --backend ray")
        for name in ("workers", "generations", "population", "profile_samples", "latency_batch"):
            require_int(name, getattr(self, name), RunError)
        require_int("--threads", self.threads, RunError, optional=True, what="a positive integer")
        for name in ("latency_ms", "macs"):
            require_positive_numbers(f"--{name.replace('_', '-')}", getattr(self, name), RunError)


@dataclass(frozen=True)
class ExportRow:
    """One budget's chosen sub-network, as exported and checked."""

    budget: str  # the budget's name, e.g. "latency_ms<=1.2"
    arch: str  # the arch in words
    search_top1: float  # top-1 on the search split (minival), what the search chose by
    val_top1: float  # top-1 of the exported folder on val
    predicted_ms: float | None  # the profile's prediction
    measured_ms: float  # the exported model timed as the profile was
    params: int
    macs: int
    folder: Path


@dataclass(frozen=True)
class RunResult:
    """What a run produced, and what it found already done."""

    out: Path
    rows: tuple[ExportRow, ...]
    budgets_reason: tuple[str, ...]  # why these budgets, one line each
    latency_setting: str  # "cpu fp32, batch 64": how latencies were predicted and measured
    pareto_plot: Path
    elastic: Path
    resumed: tuple[str, ...]  # stages found finished and skipped
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage run now


@dataclass(frozen=True)
class _Paths:
    out: Path

    @property
    def supernet(self) -> Path:
        return self.out / "supernet"

    @property
    def profile(self) -> Path:
        return self.out / "profile.json"

    @property
    def search(self) -> Path:
        return self.out / "search"

    @property
    def export(self) -> Path:
        return self.out / "export"

    @property
    def evaluation(self) -> Path:
        return self.out / "eval.json"

    def all(self) -> list[Path]:
        return [self.profile, self.supernet, self.search, self.export, self.evaluation]


def run_pipeline(settings: RunSettings | None = None, **options: Any) -> RunResult:
    """Runs (or resumes) profile → train → search → export → evaluate; see the module docstring.

    Args:
        settings: a `RunSettings`; or give its fields as keyword arguments (``flops=``, the old
            name of ``macs=``, is taken for one release).

    Raises:
        RunError, and each stage's one-line errors (RecipeError, DataError, BudgetError, ExportError, ...).
    """
    take_renamed(options, "flops", "macs", "run", RunError)
    settings = settings or RunSettings(**options)
    paths = _Paths(Path(settings.out))
    recipe = _recipe(settings)
    device = _device(settings.device)
    space = _space_of(recipe)
    _check_data(recipe, space)
    _check_macs_budgets(space, settings.macs)
    _check_formats_and_backend(settings)
    threads = _choose_threads(settings, space, device)
    clock, resumed = {}, []
    with _torch_threads(threads):
        # --fresh deletes only once every flag has passed, the latency budgets included (they need the
        # profile): a typo or an unreachable budget must not cost the finished stages.
        if settings.fresh:
            _start_over([paths.profile])
        profile = _stage("profile", 1, clock, resumed, lambda: _profile_stage(settings, space, device, paths))
        if settings.latency_ms:
            _check_latency_budgets(settings, space, profile)
        if settings.fresh:
            _start_over(paths.all()[1:], paths.out)
        _stage("supernet", 2, clock, resumed, lambda: _train_stage(recipe, device, paths))
        latency_ms, macs, reasons = choose_budgets(profile, space, settings.latency_ms, settings.macs)
        for line in reasons:
            logger.info("  budget %s", line)
        _stage("search", 3, clock, resumed, lambda: _search_stage(settings, latency_ms, macs, device, paths))
        folders = _stage("export", 4, clock, resumed, lambda: _export_stage(settings, paths))
        rows = _stage("eval", 5, clock, resumed, lambda: _eval_stage(folders, profile, device, recipe, paths))
    return RunResult(paths.out, tuple(rows), tuple(reasons), f"{profile.device_type} {profile.dtype}, batch "
                     f"{profile.batch}", paths.search / "pareto.png", paths.export / "elastic",
                     tuple(resumed), clock)


def choose_budgets(profile: DeviceProfile, space: SearchSpace, latency_ms: Sequence[float] = (),
                   macs: Sequence[float] = ()) -> tuple[tuple[float, ...], tuple[float, ...], list[str]]:
    """The run's latency and MACs budgets, and why each (one line per budget).

    Budgets not given are placed between the space's cheapest and dearest sub-networks,
    so that every one binds (the largest arch does not meet it) and is feasible (the
    smallest does): latency at `LATENCY_FRACTIONS` of the way on the profile's
    predictions, MACs at `MACS_FRACTION` of the way. Each is rounded up to two
    significant digits, which keeps it on the feasible side and readable.
    """
    from vitnas.space.cost import count_macs

    reasons = []
    if latency_ms:
        reasons += [f"latency_ms<={value:g}: given" for value in latency_ms]
    else:
        low, high = profile.predict(space.smallest()), profile.predict(space.largest())
        latency_ms = _distinct_round_ups([low + f * (high - low) for f in LATENCY_FRACTIONS])
        reasons += [f"latency_ms<={value:g}: {f:.0%} of the way from the smallest sub-network's predicted "
                    f"{low:.3g} ms to the largest's {high:.3g} ms ({profile.device_type} {profile.dtype}, batch "
                    f"{profile.batch})" for f, value in zip(LATENCY_FRACTIONS, latency_ms)]
    if macs:
        reasons += [f"macs<={value:g}G: given" for value in macs]
    else:
        low, high = count_macs(space, space.smallest()) / 1e9, count_macs(space, space.largest()) / 1e9
        macs = _distinct_round_ups([low + MACS_FRACTION * (high - low)])
        reasons.append(f"macs<={macs[0]:g}G: {MACS_FRACTION:.0%} of the way from the smallest sub-network's "
                       f"{low * 1e3:.3g}M MACs to the largest's {high * 1e3:.3g}M")
    return tuple(latency_ms), tuple(macs), reasons


def format_run(result: RunResult) -> str:
    """The run's summary: budgets and why, one row per export, and where everything is."""
    lines = ["budgets:"] + [f"  {line}" for line in result.budgets_reason]
    header = (f"{'budget':<22} {'search':>7} {'val':>7} {'pred ms':>8} {'meas ms':>8} {'params':>8} {'MACs':>8}"
              f"  arch")
    lines += ["", header]
    for row in result.rows:
        predicted = "-" if row.predicted_ms is None else f"{row.predicted_ms:.3f}"
        lines.append(f"{row.budget:<22} {row.search_top1:>7.1%} {row.val_top1:>7.1%} {predicted:>8} "
                     f"{row.measured_ms:>8.3f} {row.params / 1e6:>7.3f}M {row.macs / 1e6:>7.2f}M  {row.arch}")
    lines.append(f"\nsearch top-1 on minival (held out of training), val top-1 of the exported folders; "
                 f"latency: {result.latency_setting}")
    if result.resumed:
        lines.append(f"resumed: {', '.join(result.resumed)} found finished in {result.out} (--fresh starts over)")
    lines.append(f"Pareto front: {result.pareto_plot}")
    lines += [f"export: {row.folder}" for row in result.rows]
    lines.append(f"elastic bundle: {result.elastic}")
    return "\n".join(lines)


def _stage(name: str, number: int, clock: dict[str, float], resumed: list[str], work) -> Any:
    """Runs one stage, logging its start, and records its wall time or that it was found finished."""
    logger.info("[%d/%d] %s", number, len(STAGES), name)
    started = time.perf_counter()
    value, skipped = work()
    if skipped:
        resumed.append(name)
    else:
        clock[name] = time.perf_counter() - started
        logger.info("[%d/%d] %s: done in %.1f s", number, len(STAGES), name, clock[name])
    return value


def _recipe(settings: RunSettings):
    """The recipe the run trains with: the named one, with --space, --data and the overrides applied."""
    from vitnas.data import parse_data
    from vitnas.train.recipe import load_recipe

    overrides = list(settings.overrides)
    if settings.space is not None:
        overrides.append(f"space={settings.space}")
    recipe = load_recipe(settings.recipe, overrides)
    if settings.data is None:
        return recipe
    chosen = parse_data(settings.data)
    data = {**recipe.data.__dict__, "name": chosen.name, "root": chosen.root, "holdout": True,
            "search_images": None}
    return load_recipe({**recipe.to_dict(), "data": data})


def _device(device: str | None) -> str:
    import torch

    from vitnas.errors import LatencyError
    from vitnas.util.device import resolve_device

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return str(resolve_device(device))
    except LatencyError as error:
        raise RunError(f"--device {device}: {str(error).split(': ', 1)[-1]}; leave --device out to use "
                       f"what this machine has") from None


def _start_over(artefacts: Sequence[Path], out: Path | None = None) -> None:
    """Deletes these artefacts of earlier calls (only those, never other files under ``out``); `out`: say so."""
    from vitnas.train.rundir import start_over

    for path in artefacts:
        start_over(path.parent, [path.name])
    if out is not None:
        logger.info("--fresh: starting over in %s", out)


def _space_of(recipe) -> SearchSpace:
    from vitnas.space.space import load_space

    return load_space(recipe.space)


def _check_data(recipe, space: SearchSpace) -> None:
    """Opens the data's val split now, so that a wrong path fails before anything is written."""
    from vitnas.data import build_dataset

    build_dataset(recipe.data, "val", space.img_size, space.in_chans)


def _check_macs_budgets(space: SearchSpace, macs: Sequence[float]) -> None:
    """A MACs budget below the space's cheapest sub-network fails now, not after training."""
    from vitnas.space.cost import count_macs

    cheapest = count_macs(space, space.smallest()) / 1e9
    for value in macs:
        if value < cheapest:
            raise RunError(f"--macs {value:g}: no sub-network of {space.name} meets it (the smallest has "
                           f"{cheapest:.3g} G MACs); raise the budget")


def _check_latency_budgets(settings: RunSettings, space: SearchSpace, profile: DeviceProfile) -> None:
    """Asks the search's first generation now, as the search stage will: it needs the profile, not the weights.

    The search draws its first generation inside each budget and fails when no arch
    meets one; asking the same algorithm here makes a given ``--latency-ms`` that this
    device cannot reach fail before training instead of after it.
    """
    from vitnas.errors import BudgetError
    from vitnas.search.budgets import CostModel, budgets_from_limits
    from vitnas.search.config import EvolutionConfig
    from vitnas.search.evolution import make_algorithm

    latency_ms, macs, _ = choose_budgets(profile, space, settings.latency_ms, settings.macs)
    config = EvolutionConfig(generations=settings.generations, population=settings.population)
    budgets = budgets_from_limits(latency_ms=latency_ms, macs=macs)
    try:
        make_algorithm("evolution", space, budgets, CostModel(space, profile), config).ask()
    except BudgetError as error:
        raise RunError(f"{error} on this machine's {profile.device_type}: raise --latency-ms "
                       f"(nothing was trained)") from None


def _check_formats_and_backend(settings: RunSettings) -> None:
    """The export forms and the Ray backend, with the packages they need, checked now rather than after training."""
    import importlib.util

    from vitnas.errors import BackendError
    from vitnas.export.writer import TOLERANCE, check_settings
    from vitnas.search.ray_cluster import RAY_MISSING

    check_settings(settings.formats, (settings.latency_batch,), TOLERANCE)
    if settings.backend == "ray" and importlib.util.find_spec("ray") is None:
        raise BackendError(f"{RAY_MISSING}, or pass --backend local")


def _choose_threads(settings: RunSettings, space: SearchSpace, device: str) -> int | None:
    """Torch CPU threads for the run: one for small models on CPU, else torch's choice.

    A model of a few million MACs splits its matrix products into pieces too small to
    pay for the threads' barriers; with a second busy process on the machine each
    barrier waits for a descheduled thread, and two threads run many times slower than
    one (measured in BENCHMARKS.md). One thread is never much slower for such models.
    """
    from vitnas.space.cost import count_macs

    if settings.threads is not None:
        return settings.threads
    if device.startswith("cuda") or count_macs(space, space.largest()) >= SMALL_MODEL_MACS:
        return None
    return 1


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Sets torch's intra-op threads for a block (None: leaves them) and restores them after."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
        logger.info("torch threads: %d", threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_stage(recipe, device: str, paths: _Paths) -> tuple[None, bool]:
    """Trains the supernet, or continues it (`vitnas.train.rundir`: the recipe must be the run's)."""
    from vitnas.train.checkpoint import holds_checkpoint
    from vitnas.train.rundir import check_same, finished_epochs, stored_recipe
    from vitnas.train.supernet import train_supernet

    if holds_checkpoint(paths.supernet):
        check_same(recipe.to_dict(), stored_recipe(paths.supernet).to_dict(), paths.supernet, RunError)
        if finished_epochs(paths.supernet) >= recipe.epochs:
            logger.info("  finished supernet found in %s", paths.supernet)
            return None, True
    train_supernet(recipe.to_dict(), paths.supernet, device=device)
    return None, False


def _profile_stage(settings: RunSettings, space: SearchSpace, device: str,
                   paths: _Paths) -> tuple[DeviceProfile, bool]:
    from vitnas.latency.profile import build_profile, load_profile

    if paths.profile.is_file():
        profile = load_profile(paths.profile)
        if profile.space.to_dict() != space.to_dict() or profile.batch != settings.latency_batch:
            raise RunError(f"{paths.profile}: profiles another space or batch size than this run's; "
                           f"pass --fresh to start over")
        logger.info("  %s", profile)
        return profile, True
    dtype = "bf16" if device.startswith("cuda") else "fp32"
    profile = build_profile(space, device, batch=settings.latency_batch, dtype=dtype,
                            samples=settings.profile_samples, warmup=5, repeats=15, rounds=3,
                            progress=settings.progress)
    profile.save(paths.profile)
    logger.info("  %s", profile)
    return profile, False


def _search_stage(settings: RunSettings, latency_ms: tuple[float, ...], macs: tuple[float, ...], device: str,
                  paths: _Paths) -> tuple[None, bool]:
    from vitnas.search.driver import search_supernet

    if (paths.search / "best.json").is_file():
        _check_search_settings(paths, latency_ms, macs)
        logger.info("  finished search found in %s", paths.search)
        return None, True
    workers = settings.workers if settings.backend == "ray" else 1
    gpus = 1.0 / workers if device.startswith("cuda") and settings.backend == "ray" else 0.0
    search_supernet(paths.supernet, paths.search, latency_ms=latency_ms, profile=paths.profile, macs=macs,
                    backend=settings.backend, workers=workers, gpus_per_worker=gpus,
                    ray_address=settings.ray_address, generations=settings.generations,
                    population=settings.population, device=device, progress=settings.progress)
    return None, False


def _check_search_settings(paths: _Paths, latency_ms: tuple[float, ...], macs: tuple[float, ...]) -> None:
    """A finished search is taken only if it searched under this run's budgets."""
    from vitnas.search.driver import SETTINGS_FILE
    from vitnas.train.rundir import check_same, read_settings

    stored = upgraded(read_settings(paths.search / SETTINGS_FILE, RunError, "a search"))  # "flops" before the rename
    check_same({"latency_ms": list(latency_ms), "macs": list(macs)},
               {"latency_ms": list(stored.get("latency_ms", ())), "macs": list(stored.get("macs", ()))},
               paths.search, RunError)


def _export_stage(settings: RunSettings, paths: _Paths) -> tuple[list[tuple[dict[str, Any], Path]], bool]:
    """One export folder per budget of best.json, then the elastic bundle of all of them."""
    from vitnas.export.targets import folder_names
    from vitnas.export.writer import export_model

    best = paths.search / "best.json"
    records = [upgraded(record) for record in json.loads(best.read_text())]  # "flops" before the rename
    names = folder_names([_Named(record["name"]) for record in records])
    folders = [(record, paths.export / name) for record, name in zip(records, names)]
    done = all((folder / "config.json").is_file() for _, folder in folders)
    done = done and (paths.export / "elastic" / "config.json").is_file()
    paths.export.mkdir(parents=True, exist_ok=True)
    for record, folder in folders:
        if not (folder / "config.json").is_file():
            export_model(paths.supernet, best, folder, formats=settings.formats, budget=record["name"])
    if not (paths.export / "elastic" / "config.json").is_file():
        export_model(paths.supernet, best, paths.export / "elastic", formats=("elastic",))
    return folders, done


@dataclass(frozen=True)
class _Named:
    """What `folder_names` reads of a target: its name."""

    name: str


def _eval_stage(folders: list[tuple[dict[str, Any], Path]], profile: DeviceProfile, device: str, recipe,
                paths: _Paths) -> tuple[list[ExportRow], bool]:
    """Scores each export folder on val and times it as the profile timed its archs."""
    from vitnas.export.evaluate import evaluate_folder
    from vitnas.space.arch import Arch
    from vitnas.util.atomic import write_text_atomically

    if paths.evaluation.is_file():
        stored = json.loads(paths.evaluation.read_text())
        if [row["folder"] for row in stored] == [str(folder) for _, folder in folders]:
            return [ExportRow(**{**row, "folder": Path(row["folder"])}) for row in stored], True
    rows = []
    for record, folder in folders:
        scores = evaluate_folder(folder, recipe.data, split="val", device=device)
        _check_same_accuracy(record, scores, folder, device)
        rows.append(ExportRow(
            budget=record["name"], arch=str(Arch.from_dict(record["arch"])), search_top1=record["accuracy"],
            val_top1=scores["top1"], predicted_ms=record.get("latency_ms"),
            measured_ms=_measured_ms(folder, profile, device), params=record["params"], macs=record["macs"],
            folder=folder))
    text = json.dumps([{**row.__dict__, "folder": str(row.folder)} for row in rows], indent=1) + "\n"
    write_text_atomically(paths.evaluation, text, RunError)
    return rows, False


def _check_same_accuracy(record: dict[str, Any], scores: dict[str, Any], folder: Path, device: str) -> None:
    """The export must score what the search scored its arch at inside the supernet: the same weights.

    On CPU in fp32 the two forward passes agree to ~1e-6, so not one image may change
    class; on a GPU, bf16 kernels of different shapes may flip a borderline image or two.
    """
    from vitnas.errors import ExportError

    allowed = 0 if device == "cpu" else 2
    changed = abs(round((scores["top1"] - record["val_accuracy"]) * scores["images"]))
    if changed > allowed:
        raise ExportError(f"{folder}: scores {scores['top1']:.2%} on val, but its arch scored "
                          f"{record['val_accuracy']:.2%} inside the supernet ({changed} images differ)")


def _measured_ms(folder: Path, profile: DeviceProfile, device: str) -> float:
    from vitnas.export.load import load
    from vitnas.latency.measure import measure

    settings = profile.settings
    model = load(folder)
    return measure(model, device, profile.batch, profile.dtype, warmup=int(settings.get("warmup", 5)),
                   repeats=int(settings.get("repeats", 15))).median_ms


def _distinct_round_ups(values: Sequence[float]) -> list[float]:
    """Each value rounded up to two significant digits, or three where two would merge neighbours."""
    for digits in (2, 3, 4, 6):
        rounded = [_round_up(value, digits) for value in values]
        if len(set(rounded)) == len(rounded):
            return rounded
    return list(values)


def _round_up(value: float, digits: int) -> float:
    scale = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return float(f"{math.ceil(round(value / scale, 9)) * scale:.{digits + 2}g}")


def __getattr__(name: str) -> Any:  # the verb's old name (run), for one release
    from vitnas._moved import moved_attribute

    return moved_attribute(__name__, name)

"""Run directories: the one rule every verb follows to start, continue or restart the run in ``--out``.

**The same command continues.** A verb that writes a run directory (`vitnas train`,
`finetune`, `search`, `rank-check`, `run`) continues the run already in ``--out`` when
it is called again: a killed training, search or check picks up where it stopped, and a
finished one does no work again. This is what a restarted job needs (``torchrun``
restarting its workers, a requeued cluster job, a Ray task retried): the same command,
run again, must not fail on its own output. The settings a run began with are stored in
it; a call with other settings is refused in one line naming the first field that
differs, because continuing a run with settings it did not start with would mix two
experiments in one folder. A training's ``key=value`` overrides are the exception by
design: they apply to the stored recipe as to the given one (``epochs=N`` extends a
run). ``--fresh`` deletes the verb's own files in ``--out`` and starts over, once every
other setting has been checked. ``--resume``, which every verb but ``run`` once needed,
is still accepted and insists there is a run to continue; for ``train`` and
``finetune`` it also keeps its old meaning of continuing with the stored recipe
whatever recipe the command names.

In Python the same rule is ``resume=None`` (the default): continue a run if ``out``
holds one, else start. ``resume=True`` requires a run; ``resume=False`` refuses one (as
the functions did by default before).

What the files of a supernet or standalone run mean (``latest``, ``meta.json``'s
epoch) stays with `vitnas.train.checkpoint`; this module reads them through it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from vitnas.errors import CheckpointError, RecipeError, VitnasError
from vitnas.train.checkpoint import finished_epochs, latest_checkpoint
from vitnas.train.recipe import Recipe, load_recipe

__all__ = ["TRAINING_FILES", "check_same", "continues", "finished_epochs", "first_difference", "read_settings",
           "run_recipe", "start_over", "stored_recipe"]

# What a training run (supernet or standalone) writes in its run directory: --fresh deletes these.
TRAINING_FILES = ("latest", "ckpt-*", ".ckpt-*", "metrics.jsonl", "tensorboard")  # the old curves go too

_REMEDY = "give the same settings to continue it, --fresh to start over, or another --out"


def continues(out: Path, markers: Sequence[str], resume: bool | None, error: type[VitnasError], what: str) -> bool:
    """Whether this call continues the run in `out`, by the convention above; refuses what it cannot do.

    Args:
        out: the run directory (``--out``).
        markers: files whose presence in `out` means it holds a run of this verb.
        resume: None: continue a run if there is one; True: there must be one; False: there must not.
        error: the verb's error class.
        what: the run in words, e.g. "a search".

    Raises:
        error: `out` is a file, or holds a run when `resume` is False, or none when it is True.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise error(f"--out {out}: exists and is not a directory")
    present = any((out / marker).exists() for marker in markers)
    if resume is False and present:
        raise error(f"{out} already holds {what}: leave resume unset to continue it, pass fresh=True to start "
                    "over, or choose another out")
    if resume is True and not present:
        raise error(f"--resume: nothing to resume in {out} (no {' or '.join(markers)}): leave --resume out to "
                    "start the run")
    return present


def start_over(out: Path, files: Sequence[str]) -> list[Path]:
    """Deletes the verb's own `files` (names or glob patterns) in `out`, nothing else; returns what went.

    Only the named files go, so a ``--out`` that also holds the user's own files (or
    another verb's run) keeps them. Under ``torchrun`` every rank may delete at once: a
    file another rank removed first is no error.
    """
    out = Path(out)
    removed = sorted({path for pattern in files for path in out.glob(pattern)}) if out.is_dir() else []
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed


def read_settings(path: Path, error: type[VitnasError], what: str) -> dict[str, Any]:
    """The settings a run stored at its start (a JSON object); an unreadable file is one `error` line."""
    try:
        stored = json.loads(Path(path).read_text())
    except (OSError, ValueError) as problem:
        raise error(f"{path}: not {what}'s settings ({type(problem).__name__}: {problem})") from None
    if not isinstance(stored, dict):
        raise error(f"{path}: not {what}'s settings (a JSON object expected)")
    return stored


def first_difference(given: Mapping[str, Any], stored: Mapping[str, Any], prefix: str = "") -> str | None:
    """The dotted name of the first field (in `given`'s order) whose value differs, or None.

    Nested mappings are walked, so a recipe that differs in its learning rate names
    ``optimizer.lr``, not the whole ``optimizer`` section.
    """
    for key in [*given, *(key for key in stored if key not in given)]:
        mine, theirs = given.get(key), stored.get(key)
        if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
            inner = first_difference(mine, theirs, f"{prefix}{key}.")
            if inner is not None:
                return inner
        elif mine != theirs:
            return f"{prefix}{key}"
    return None


def check_same(given: Mapping[str, Any], stored: Mapping[str, Any], out: Path, error: type[VitnasError]) -> None:
    """Refuses to continue the run in `out` with settings other than those it began with, naming the field.

    Raises:
        error: one line: the first differing field, its value here and the run's.
    """
    field = first_difference(given, stored)
    if field is not None:
        mine, theirs = _lookup(given, field), _lookup(stored, field)
        raise error(f"{out}: was started with {field} {theirs!r}, not {mine!r}; {_REMEDY}")


def _lookup(settings: Mapping[str, Any], dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def stored_recipe(run: Path, overrides: Sequence[str] = ()) -> Recipe:
    """The recipe a training run (or one checkpoint folder) stored, with `overrides` applied.

    Raises:
        CheckpointError: no checkpoint, or no ``recipe.yaml`` in it.
        RecipeError: a malformed ``recipe.yaml`` or override, in one line naming the file.
    """
    path = latest_checkpoint(Path(run)) / "recipe.yaml"
    if not path.is_file():  # load_recipe would take a missing file for a shipped recipe's name
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    return load_recipe(path, overrides)  # its errors name the file


def run_recipe(recipe: str | Path | Mapping[str, Any] | Recipe | None, out: Path, resume: bool | None,
               overrides: Sequence[str]) -> tuple[Recipe, bool]:
    """The recipe a training run in `out` trains with, and whether it continues a run, by the convention above.

    A new run takes `recipe` with `overrides`. A run that continues takes the recipe it
    stored, with `overrides` applied on top (``epochs=N`` extends it); the `recipe` given
    must be the one the run began with, the overrides applied to both. It is not checked
    when None, nor with ``resume=True``: the old ``--resume`` continued with the stored
    recipe whatever recipe the command named, and scripts written for it still do.

    Raises:
        RecipeError: a run in `out` when `resume` is False, none when it is True, another
            recipe than the run's, or a malformed recipe or override.
    """
    if not continues(out, ("latest",), resume, RecipeError, "a run"):
        if recipe is None:
            raise RecipeError(f"{out}: holds no run to continue, and no recipe was given to start one")
        return _load(recipe, overrides), False
    stored = stored_recipe(out, overrides)
    if recipe is not None and resume is not True:
        check_same(_load(recipe, overrides).to_dict(), stored.to_dict(), out, RecipeError)
    return stored, True


def _load(recipe: str | Path | Mapping[str, Any] | Recipe, overrides: Sequence[str]) -> Recipe:
    return load_recipe(recipe.to_dict() if isinstance(recipe, Recipe) else recipe, overrides)

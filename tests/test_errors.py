"""Bad input and faults end in one line that names what to do, and lose nothing already written.

Each case asserts the message itself: an exit code or a line count alone would pass with
the wrong error. Full disks are simulated (a monkeypatched writer, or /dev/full, which
fails every write with ENOSPC); Ctrl-C is a real SIGINT to a real `vitnas train`.
"""

from __future__ import annotations

import pytest

from vitnas.recipe import RecipeError, load_recipe


# -- recipes: lr and lr_per_512 ---------------------------------------------------------------------

def test_lr_alone_sets_the_default_lr_per_512_aside():
    recipe = load_recipe({"optimizer": {"lr": 0.01}})
    assert recipe.optimizer.lr_per_512 is None and recipe.learning_rate() == 0.01


def test_an_lr_override_sets_the_file_s_lr_per_512_aside_and_back():
    recipe = load_recipe("deit_small_supervit", ["optimizer.lr=1e-3"])  # the file gives lr_per_512
    assert recipe.optimizer.lr_per_512 is None and recipe.learning_rate() == 1e-3
    recipe = load_recipe("tiny32_digits", ["optimizer.lr_per_512=1e-3"])  # the file gives lr
    assert recipe.optimizer.lr is None and recipe.learning_rate() == 1e-3 * recipe.batch_size / 512


@pytest.mark.parametrize("source, overrides", [
    ({"optimizer": {"lr": 0.01, "lr_per_512": 1e-3}}, []),
    ("tiny32_digits", ["optimizer.lr=1e-3", "optimizer.lr_per_512=1e-3"]),
    ("tiny32_digits", ["optimizer.lr=null"]),
])
def test_both_rates_or_neither_is_one_line(source, overrides):
    with pytest.raises(RecipeError, match=r": optimizer\.lr: give exactly one of lr and lr_per_512$"):
        load_recipe(source, overrides)

"""MACs are called MACs: new files and flags say ``macs``, and what said ``flops`` before still works.

Files written before the rename (best.json, search.json, a search's state.json) load;
the old keyword arguments and command-line options still run, with a note to move on.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest

from vitnas.errors import BudgetError, SearchError
from vitnas.export.targets import read_targets
from vitnas.search import (CostModel, EvolutionConfig, NamedBudget, algorithm_from_state, budgets_from_limits,
                           make_algorithm, named_budget)
from vitnas.search.budget import Budget
from vitnas.space.space import load_space
from vitnas.util.renamed import RenamedFlag, renamed_value, take_renamed, upgraded

SMALL = EvolutionConfig(population=4, parents=2, mutations=2, crossovers=2, generations=2, max_tries=300, seed=0)


@pytest.fixture(scope="module")
def space():
    return load_space("tiny32")


def _old(data):
    """`data` as vitnas 0.1 wrote it: every ``macs`` key spelled ``flops``, nested objects and lists included."""
    if isinstance(data, dict):
        return {{"macs": "flops", "max_macs": "max_flops"}.get(k, k): _old(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_old(item) for item in data]
    return data


def test_upgraded_renames_old_keys_at_every_depth_and_keeps_a_new_one():
    old = {"name": "flops<=1G", "flops": 5, "budget": {"max_flops": 7, "max_params": None}, "arch": {"x": 1}}
    assert upgraded(old) == {"name": "flops<=1G", "macs": 5, "budget": {"max_macs": 7, "max_params": None},
                             "arch": {"x": 1}}
    assert upgraded({"flops": 1, "macs": 2}) == {"macs": 2}
    assert old["flops"] == 5  # a copy: the caller's data is left as read


def test_renamed_keywords_warn_and_refuse_both_names():
    with pytest.warns(DeprecationWarning, match=r"^f: flops= is now macs="):
        assert renamed_value(None, 3, "flops", "macs", "f", SearchError) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renamed_value(2, None, "flops", "macs", "f", SearchError) == 2
    with pytest.raises(SearchError, match=r"^f: flops= is the old name of macs=; give only macs=$"):
        renamed_value(2, 3, "flops", "macs", "f", SearchError)
    options = {"flops": (1.0,), "seed": 0}
    with pytest.warns(DeprecationWarning):
        take_renamed(options, "flops", "macs", "run", SearchError)
    assert options == {"macs": (1.0,), "seed": 0}


def test_budgets_say_macs_and_take_the_old_names_for_one_release(space):
    named = named_budget(macs=1.3, params=10)
    assert named.name == "macs<=1.3G,params<=10M" and named.budget.max_macs == 1_300_000_000
    assert named.to_dict()["budget"] == {"latency_ms": None, "min_throughput": None, "max_macs": 1_300_000_000,
                                         "max_params": 10_000_000}
    assert CostModel(space)(space.smallest()).keys() == {"macs", "params"}
    with pytest.warns(DeprecationWarning):
        assert Budget(max_flops=1.3e9) == named_budget(macs=1.3).budget
    with pytest.warns(DeprecationWarning):
        assert named.budget.max_flops == 1_300_000_000
    with pytest.warns(DeprecationWarning):
        assert named_budget(flops=1.3) == named_budget(macs=1.3)
    with pytest.warns(DeprecationWarning):
        assert budgets_from_limits(flops=[1.3, 2]) == budgets_from_limits(macs=[1.3, 2])
    with pytest.raises(BudgetError, match="give only max_macs"):
        Budget(max_macs=1, max_flops=1)


def test_a_search_state_written_before_the_rename_resumes(space):
    budgets = budgets_from_limits(macs=[0.006], params=[0.1])
    algorithm = make_algorithm("evolution", space, budgets, CostModel(space), SMALL)
    algorithm.tell({arch: 0.5 for arch in algorithm.ask()})
    state = json.loads(json.dumps(algorithm.state_dict()))
    old = {**state, "budgets": _old(state["budgets"])}
    assert old["budgets"][0]["budget"]["max_flops"] == 6_000_000
    restored = algorithm_from_state(old, space, CostModel(space))
    assert restored.state_dict() == state
    assert NamedBudget.from_dict(old["budgets"][0]) == budgets[0]


def test_a_search_json_written_before_the_rename_reads_as_the_same_settings(tmp_path):
    from vitnas.pipeline.stages import RunError, _check_search_settings, _Paths
    from vitnas.search.driver import SearchSettings

    settings = SearchSettings(checkpoint="/runs/supernet", latency_ms=(4.0,), macs=(0.003,), profile="/p.json")
    stored = _old(settings.to_dict())
    assert "flops" in stored and "macs" not in stored
    assert SearchSettings.from_dict(stored) == settings
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "search.json").write_text(json.dumps(stored))
    _check_search_settings(_Paths(tmp_path), (4.0,), (0.003,))  # `vitnas run` resumes an old run's search
    with pytest.raises(RunError, match=r"macs \[0\.003\]"):
        _check_search_settings(_Paths(tmp_path), (4.0,), (0.004,))


def test_a_best_json_written_before_the_rename_exports_its_evidence_as_macs(space, tmp_path):
    record = {"name": "flops<=0.001G", "budget": {"latency_ms": None, "min_throughput": None, "max_flops": 1000000,
                                                   "max_params": None},
              "arch": space.smallest().to_dict(), "accuracy": 0.5, "val_accuracy": 0.25, "flops": 386000,
              "params": 1, "search_split": "minival", "report_split": "val"}
    (tmp_path / "best.json").write_text(json.dumps([record]))
    [target] = read_targets(tmp_path / "best.json", space)
    assert target.name == "flops<=0.001G"  # a stored name stays: folders and points are named after it
    assert target.record["macs"] == 386000 and "flops" not in target.record
    assert target.record["budget"]["max_macs"] == 1000000


@pytest.mark.parametrize("module, verb", [("vitnas.search.cli", "search"), ("vitnas.pipeline.cli", "run")])
def test_the_old_flops_option_still_sets_the_macs_budgets_with_a_note(module, verb, capsys):
    import importlib

    subparsers = argparse.ArgumentParser(prog="vitnas").add_subparsers()
    importlib.import_module(module).register(subparsers)
    parser = subparsers.choices[verb]
    required = ["--checkpoint", "c", "--out", "o"] if verb == "search" else []
    assert parser.parse_args([*required, "--macs", "0.5"]).macs == (0.5,)
    assert parser.parse_args([*required, "--flops", "0.5,1"]).macs == (0.5, 1.0)
    assert "--flops is now --macs" in capsys.readouterr().err
    assert "--flops" not in parser.format_help() and "--macs" in parser.format_help()
    assert any(isinstance(action, RenamedFlag) for action in parser._actions)


def test_search_and_run_take_the_old_keyword_before_any_work(tmp_path):
    from vitnas.errors import VitnasError
    from vitnas.pipeline.stages import run_pipeline
    from vitnas.search.driver import search_supernet

    with pytest.warns(DeprecationWarning, match="search: flops= is now macs="), pytest.raises(VitnasError) as error:
        search_supernet(tmp_path / "no-supernet", tmp_path / "out", flops=0.003, progress=False)
    assert "no-supernet" in str(error.value)  # the settings were built: the missing checkpoint is what failed
    with pytest.raises(SearchError, match="give only macs="):
        search_supernet(tmp_path / "no-supernet", tmp_path / "out", macs=0.003, flops=0.003)
    with pytest.warns(DeprecationWarning, match="run: flops= is now macs="), pytest.raises(VitnasError):
        run_pipeline(recipe="no-such-recipe", out=str(tmp_path / "run"), flops=(0.003,))
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()

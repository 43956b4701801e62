"""`vitnas rank-check`: the statistics against scipy and hand counts, the stratified draw, artefacts, resume, errors."""

from __future__ import annotations

import importlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import vitnas
from vitnas.cli import main
from vitnas.space.cost import count_macs
from vitnas.train.checkpoint import CheckpointError, load_checkpoint
from vitnas.rank.check import (
    RankCheckError,
    format_rank_check,
    macs_bins,
    rank_check,
    rank_statistics,
    stratified_archs,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODULE = importlib.import_module("vitnas.rank.check")  # the module: ``vitnas.rank_check`` is the function
RUNS = importlib.import_module("vitnas.rank.runs")

SUPERNET = ["epochs=1", "batch_size=128", "schedule.warmup_epochs=0"]  # one quick epoch on digits (10 steps)
ARCHS, EPOCHS = 4, 2


@pytest.fixture(scope="module")
def supernet_run(tmp_path_factory) -> Path:
    """The tiny32 supernet trained one epoch on digits with the default recipe (batch 64)."""
    out = tmp_path_factory.mktemp("supernet") / "run"
    vitnas.train_supernet("tiny32_digits", out, overrides=SUPERNET)
    return out


@pytest.fixture(scope="module")
def checked(supernet_run, tmp_path_factory):
    """A finished rank check: 4 archs, 2 stand-alone epochs each (tests copy it before changing it)."""
    out = tmp_path_factory.mktemp("rank") / "check"
    return rank_check(supernet_run, out, archs=ARCHS, epochs=EPOCHS, progress=False)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def copy_of(result, tmp_path: Path) -> Path:
    return Path(shutil.copytree(result.out, tmp_path / "copy"))


# -- statistics ---------------------------------------------------------------------------------------

INHERITED = [0.50, 0.60, 0.60, 0.70, 0.80, 0.90]  # archs 1 and 2 tie
STANDALONE = [0.55, 0.65, 0.80, 0.75, 0.95, 0.90]
MACS = [1, 2, 3, 4, 5, 6]


def test_statistics_match_scipy_and_hand_counts_with_ties():
    result = rank_statistics(INHERITED, STANDALONE, MACS, budgets=[0.5, 1, 2, 3, 4, 6], k=3)
    # 15 pairs: 12 concordant, 2 discordant ((2,3), (4,5)), 1 tied in inherited only: tau-b = 10 / sqrt(15 * 14)
    assert result.kendall_tau == pytest.approx(10 / math.sqrt(210), abs=1e-12)
    assert result.kendall_tau == pytest.approx(stats.kendalltau(INHERITED, STANDALONE).statistic, abs=1e-12)
    hand_rho = np.corrcoef([1, 2.5, 2.5, 4, 5, 6], [1, 2, 4, 3, 6, 5])[0, 1]  # average ranks
    assert result.spearman_rho == pytest.approx(hand_rho, abs=1e-12)
    assert result.spearman_rho == pytest.approx(stats.spearmanr(INHERITED, STANDALONE).statistic, abs=1e-12)
    assert (result.top_k, result.top_k_overlap) == (3, 2)  # {3, 4, 5} by the supernet, {2, 4, 5} stand-alone
    # budgets 0.5 and 1 admit fewer than two archs (no choice); 2: pick 1, the best; 3: the tied picks 1 and 2
    # average 0.725 against 0.80; 4: pick 3 (0.75) against 2 (0.80); 6: pick 5 (0.90) against 4 (0.95)
    assert [row["max_macs"] for row in result.budgets] == [2, 3, 4, 6]
    assert [row["regret"] for row in result.budgets] == pytest.approx([0.0, 0.075, 0.05, 0.05])
    assert [row["supernet_pick"] for row in result.budgets] == [[1], [1, 2], [3], [5]]
    assert [row["best"] for row in result.budgets] == [1, 2, 2, 4]
    assert result.regret == pytest.approx(0.175 / 4) and result.regret_max == pytest.approx(0.075)
    assert rank_statistics(INHERITED, STANDALONE, MACS).regret == pytest.approx(0.05)  # default: one budget, all


def test_top_k_ties_go_to_fewer_macs_and_a_constant_ranking_is_nan():
    overlap = rank_statistics([0.9, 0.9, 0.9, 0.1], [0.1, 0.5, 0.9, 0.2], [3, 1, 2, 4], k=2)
    assert overlap.top_k_overlap == 2  # the supernet's top 2 are the cheaper of the tied: 1 and 2, as stand-alone
    flat = rank_statistics([0.5] * 4, [0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4])
    assert math.isnan(flat.kendall_tau) and math.isnan(flat.spearman_rho)
    assert flat.to_dict()["kendall_tau"] is None and flat.regret == pytest.approx(0.15)  # a random pick's mean
    with pytest.raises(RankCheckError, match="equal-length lists"):
        rank_statistics([0.1, 0.2], [0.1], [1, 2])


def test_taus_within_each_macs_band_follow_the_archs_sorted_by_macs():
    """Three bands of two archs each (cheapest first); the archs are given out of MACs order."""
    order = [5, 0, 3, 1, 4, 2]  # position i holds the arch of MACs rank order[i]
    inherited, standalone, macs = ([values[o] for o in order] for values in (INHERITED, STANDALONE, MACS))
    seeds = [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.2, 0.1, 0.3, 0.4, 0.6, 0.5]]  # by MACs rank: agree in band 2 only
    seeds = [[seed[o] for o in order] for seed in seeds]
    result = rank_statistics(inherited, standalone, macs, seeds=seeds)
    # by MACs: band 1 (0.50, 0.60) vs (0.55, 0.65); band 2 (0.60, 0.70) vs (0.80, 0.75); band 3 (0.80, 0.90) vs
    # (0.95, 0.90)
    assert result.band_tau == pytest.approx((1.0, -1.0, -1.0))
    assert result.band_seed_tau == pytest.approx((-1.0, 1.0, -1.0))
    assert result.kendall_tau == pytest.approx(rank_statistics(INHERITED, STANDALONE, MACS).kendall_tau)
    assert rank_statistics(INHERITED, STANDALONE, MACS).band_seed_tau == ()  # one seed: no ceiling per band
    assert rank_statistics(INHERITED[:5], STANDALONE[:5], MACS[:5]).band_tau == ()  # under two archs a band
    flat = rank_statistics([0.5] * 6, STANDALONE, MACS)
    assert flat.to_dict()["band_tau"] == [None, None, None]  # constant within each band: no tau, null in JSON


# -- the draw -----------------------------------------------------------------------------------------

def test_stratified_draw_spreads_over_the_whole_macs_range(spaces):
    space = spaces["tiny32"]
    edges = macs_bins(space, 10)
    archs = stratified_archs(space, 10, 10, np.random.default_rng(0))
    macs = [count_macs(space, arch) for arch in archs]
    assert len(set(archs)) == 10
    assert [int(np.searchsorted(edges, m, side="right") - 1) for m in macs[:-1]] == list(range(9))  # one per bin
    assert edges[9] <= macs[-1] <= edges[10]
    assert macs[0] == count_macs(space, space.smallest()) and macs[-1] == count_macs(space, space.largest())
    for seed in range(5):  # ten uniform draws leave bins empty: the far ends are rare
        rng = np.random.default_rng(seed)
        hit = {int(np.searchsorted(edges[1:-1], count_macs(space, space.sample(rng)), side="right"))
               for _ in range(10)}
        assert len(hit) < 10
    assert stratified_archs(space, 10, 10, np.random.default_rng(0)) == archs
    assert stratified_archs(space, 10, 10, np.random.default_rng(1)) != archs
    quarters = macs_bins(space, 4)
    bins = [int(np.searchsorted(quarters[1:-1], count_macs(space, a), side="right"))
            for a in stratified_archs(space, 12, 4, np.random.default_rng(0))]
    assert sorted(bins) == bins and [bins.count(b) for b in range(4)] == [3, 3, 3, 3]
    with pytest.raises(RankCheckError, match=r"^MACs bin \d+ \(.* M MACs\) holds 0 of its 1 archs after 5 draws"):
        stratified_archs(space, 20, 20, np.random.default_rng(0), max_draws=5)


# -- a real check ----------------------------------------------------------------------------------------

def test_every_artefact_is_written_and_agrees_with_scipy(checked, supernet_run, spaces):
    out, space = checked.out, spaces["tiny32"]
    records = lines(out / "archs.jsonl")
    assert [r["index"] for r in records] == [0, 1, 2, 3] and [r["bin"] for r in records] == [0, 1, 2, 3]
    assert records[0]["macs"] == count_macs(space, space.smallest())
    assert records[-1]["macs"] == count_macs(space, space.largest())
    supernet, _ = vitnas.load_supernet(supernet_run)
    data = load_checkpoint(supernet_run)["recipe"].data
    for record in records:
        arch = vitnas.Arch.from_dict(record["arch"])
        assert record["inherited_top1"] == vitnas.evaluate(supernet, arch, data=data, split="val")
        run = load_checkpoint(out / "runs" / str(record["index"]))
        assert run["recipe"].distill is False and run["recipe"].epochs == EPOCHS and run["recipe"].data == data
        assert run["meta"]["epoch"] == EPOCHS
        assert record["standalone_top1"] == run["meta"]["metrics"]["val_top1"]  # the loop's own validation
        assert run["model_config"] == json.loads(json.dumps(vitnas.vit_config(space, arch).to_dict()))
        assert record["wall_s"] > 0 and record["worker"].startswith("local@")
    inherited, standalone = [r["inherited_top1"] for r in records], [r["standalone_top1"] for r in records]
    summary = json.loads((out / "summary.json").read_text())
    tau, rho = stats.kendalltau(inherited, standalone).statistic, stats.spearmanr(inherited, standalone).statistic
    for key, expected in (("kendall_tau", tau), ("spearman_rho", rho)):
        assert summary[key] == (None if math.isnan(expected) else pytest.approx(expected, abs=1e-12))
    assert summary["top_k"] == 4  # k = min(5, archs); the overlap is 4 by construction here, tested above instead
    assert len(summary["budgets"]) == 3 and summary["regret"] == pytest.approx(checked.statistics.regret)
    assert (out / "scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "rank_check.json").read_text())["settings"]["epochs"] == EPOCHS
    text = format_rank_check(checked)
    assert "Kendall tau" in text and "regret" in text and text.count("img 32 patch") == 4


def test_resume_trains_nothing_finished_and_continues_a_half_trained_run(checked, supernet_run, tmp_path,
                                                                        monkeypatch):
    out = copy_of(checked, tmp_path)
    before = (out / "archs.jsonl").read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("a finished arch was trained again")

    monkeypatch.setattr(RUNS, "train_standalone", refuse)
    again = rank_check(supernet_run, out, archs=ARCHS, epochs=EPOCHS, resume=True, progress=False)
    assert again.resumed == ARCHS and again.statistics.to_dict() == checked.statistics.to_dict()
    assert (out / "archs.jsonl").read_text() == before
    # arch 1 half-trained: its run rolled back to epoch 1 and its record gone
    run = out / "runs" / "1"
    first, last = sorted(p.name for p in run.glob("ckpt-*"))
    shutil.rmtree(run / last)
    (run / "latest").write_text(first + "\n")
    kept = before.splitlines(keepends=True)
    (out / "archs.jsonl").write_text(kept[0] + kept[2] + kept[3])
    calls = []
    from vitnas.train.standalone import train_standalone

    def record(model, recipe, run_dir, **kwargs):
        calls.append((Path(run_dir), kwargs["resume"], recipe))
        return train_standalone(model, recipe, run_dir, **kwargs)

    monkeypatch.setattr(RUNS, "train_standalone", record)
    resumed = rank_check(supernet_run, out, archs=ARCHS, epochs=EPOCHS, progress=False)  # the same call again
    assert calls == [(run, True, None)]  # only arch 1, from its checkpoint, with its stored recipe
    finished, original = load_checkpoint(run), load_checkpoint(checked.out / "runs" / "1")
    assert finished["meta"]["epoch"] == EPOCHS  # the deleted last epoch was trained again ...
    assert all(torch.equal(finished["model"][k], v) for k, v in original["model"].items())  # ... exactly
    assert resumed.records[1].standalone_top1 == checked.records[1].standalone_top1
    with pytest.raises(RankCheckError, match=rf"^{out}: was started with archs 4, not 5; give the same settings to "
                                             r"continue it, --fresh to start over, or another --out$"):
        rank_check(supernet_run, out, archs=5, epochs=EPOCHS, progress=False)
    with pytest.raises(RankCheckError, match="already holds a rank check: leave resume unset to continue it"):
        rank_check(supernet_run, out, archs=ARCHS, epochs=EPOCHS, resume=False, progress=False)


def test_a_supernet_that_trained_on_since_the_check_began_is_refused(checked, supernet_run, tmp_path, monkeypatch):
    """Inherited scores of two checkpoints must not mix: the check records the supernet's step."""
    out = copy_of(checked, tmp_path)
    stored = json.loads((out / "rank_check.json").read_text())
    step = load_checkpoint(supernet_run)["meta"]["step"]
    assert stored["settings"]["supernet_step"] == step
    stored["settings"]["supernet_step"] = step - 1  # as if begun on the checkpoint before this one
    (out / "rank_check.json").write_text(json.dumps(stored))
    with pytest.raises(RankCheckError, match=rf"^{out}: was started with supernet_step {step - 1}, not {step}; "):
        rank_check(supernet_run, out, archs=ARCHS, epochs=EPOCHS, progress=False)
    del stored["settings"]["supernet_step"]  # a check written before the step was recorded continues
    (out / "rank_check.json").write_text(json.dumps(stored))
    monkeypatch.setattr(RUNS, "train_standalone", lambda *a, **k: pytest.fail("a finished arch was trained again"))
    assert rank_check(supernet_run, out, archs=ARCHS, epochs=EPOCHS, progress=False).resumed == ARCHS


def test_fresh_starts_the_check_over_once_every_setting_has_passed(checked, supernet_run, tmp_path):
    out = copy_of(checked, tmp_path)
    (out / "notes.txt").write_text("mine")
    before = (out / "rank_check.json").read_text()
    with pytest.raises(RankCheckError, match=r"bin"):  # the draw fails after the run directory was looked at
        rank_check(supernet_run, out, archs=ARCHS, epochs=EPOCHS, split="minival", max_draws=1, fresh=True,
                   progress=False)
    assert (out / "rank_check.json").read_text() == before and (out / "runs" / "1" / "latest").is_file()
    again = rank_check(supernet_run, out, archs=ARCHS, epochs=EPOCHS, split="minival", fresh=True,
                       reuse=[checked.out], progress=False)  # the same archs' runs are taken from `checked`
    assert again.resumed == 0 and json.loads((out / "rank_check.json").read_text())["settings"]["split"] == "minival"
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())  # the old runs went; none were needed
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_prints_the_summary(checked, supernet_run, tmp_path, capsys):
    out = copy_of(checked, tmp_path)
    argv = ["rank-check", "--checkpoint", str(supernet_run), "--out", str(out), "--archs", "4", "--epochs", "2"]
    assert main([*argv, "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"Kendall tau {checked.statistics.kendall_tau:.3f}" in printed and "4 archs read back on resume" in printed


@pytest.mark.parametrize("changes, error, message", [
    (dict(checkpoint="missing"), CheckpointError, r"missing: no such directory"),
    (dict(archs=3), RankCheckError, r"^archs: expected an integer >= 4 \(a ranking of fewer .*\), got 3$"),
    (dict(epochs=0), RankCheckError, r"^epochs: expected a positive integer or None, got 0$"),
    (dict(split="train"), RankCheckError, r"^split: expected val or minival"),
    (dict(backend="slurm"), RankCheckError, r"^backend: unknown 'slurm' \(known: local, ray\)$"),
    (dict(bins=5), RankCheckError, r"^bins: 5 bins need at least as many archs, got archs=4$"),
    (dict(overrides=["distill=true"]), RankCheckError, r"^overrides: 'distill=true': the check sets distill"),
    (dict(overrides=["data.root=/x"]), RankCheckError, r"^overrides: 'data.root=/x': the check sets data itself"),
    (dict(overrides=["optimizer.lr=oops"]), vitnas.VitnasError, r"optimizer.lr: expected"),
    (dict(workers=0), RankCheckError, r"^workers: expected a positive integer, got 0$"),
])
def test_bad_input_is_one_line_and_writes_nothing(supernet_run, tmp_path, changes, error, message):
    arguments = dict(checkpoint=str(supernet_run), archs=ARCHS, epochs=1, progress=False) | changes
    checkpoint = arguments.pop("checkpoint")
    with pytest.raises(error, match=message) as raised:
        rank_check(tmp_path / checkpoint if checkpoint == "missing" else checkpoint, tmp_path / "out", **arguments)
    assert "\n" not in str(raised.value) and not (tmp_path / "out").exists()


def test_stand_alone_runs_may_train_on_a_fixed_draw_of_the_images(supernet_run, tmp_path):
    """``data.train_images`` is the one data override: a cheaper ground truth, scored on the same val split."""
    result = rank_check(supernet_run, tmp_path / "check", archs=ARCHS, epochs=1, progress=False,
                        overrides=["data.train_images=256"])
    runs = sorted((tmp_path / "check" / "runs").iterdir())
    assert len(runs) == ARCHS and all(r.standalone_top1 > 0 for r in result.records)
    stored = load_checkpoint(runs[0])["recipe"]
    assert stored.data.train_images == 256 and stored.epochs == 1 and not stored.distill
    assert lines(runs[0] / "metrics.jsonl")[-1]["step"] == 256 // stored.batch_size  # one epoch of 256 images


def test_standalone_top1_trains_records_and_continues_the_runs_of_given_archs(supernet_run, tmp_path):
    """What the search-vs-random and Pareto-gap benchmarks share: given archs, trained once per recipe."""
    space = vitnas.load_space("tiny32")
    base = load_checkpoint(supernet_run)["recipe"]
    recipes = [RUNS.standalone_recipe(base, 1, ["data.train_images=64", "batch_size=32"], seed=k) for k in range(2)]
    archs = [space.smallest(), space.arch(embed_dim=32, depth=3)]
    top1, trained = RUNS.standalone_top1(archs, space, recipes, tmp_path / "cmp")
    assert len(top1) == 2 and all(len(seeds) == 2 and all(0 < t <= 1 for t in seeds) for seeds in top1) and trained > 0
    for index, seed in ((0, 0), (1, 1)):
        run = RUNS.run_folder(tmp_path / "cmp" / "runs", index, seed)
        assert load_checkpoint(run)["meta"]["metrics"]["val_top1"] == top1[index][seed]
    assert RUNS.finished_runs([tmp_path / "cmp" / "runs"])  # runs.json names the archs: reusable elsewhere
    assert RUNS.standalone_top1(archs, space, recipes, tmp_path / "cmp")[0] == top1  # continued: the same runs
    with pytest.raises(vitnas.VitnasError, match=r"runs\.json names other archs: use another --out$"):
        RUNS.record_archs(tmp_path / "cmp", archs[:1])


def test_cli_error_is_one_line_and_help_loads_no_torch(tmp_path, capsys):
    assert main(["rank-check", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"vitnas: error: {tmp_path / 'none'}: no such directory\n"
    probe = ("from vitnas.cli import main\ntry:\n    main(['rank-check', '--help'])\nexcept SystemExit:\n    pass\n"
             "import sys, vitnas\nprint('torch' in sys.modules, 'ray' in sys.modules, 'rank_check' in dir(vitnas))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "False False True", result.stderr[-2000:]
    assert vitnas.rank_check is MODULE.rank_check  # the lazy export is the function, not its module


@pytest.mark.ray
def test_ray_backend_trains_the_missing_archs(checked, supernet_run, tmp_path):
    pytest.importorskip("ray")
    out = copy_of(checked, tmp_path)
    kept = (out / "archs.jsonl").read_text().splitlines(keepends=True)
    (out / "archs.jsonl").write_text(kept[0] + kept[2] + kept[3])
    shutil.rmtree(out / "runs" / "1")  # not started yet: trained from scratch on the worker
    result = rank_check(supernet_run, out, archs=ARCHS, epochs=EPOCHS, resume=True, backend="ray", workers=1,
                        progress=False)
    assert [r.worker.split("@")[0] for r in result.records] == ["local", "ray", "local", "local"]
    assert [r.standalone_top1 for r in result.records] == [r.standalone_top1 for r in checked.records]
    assert [r.inherited_top1 for r in result.records] == [r.inherited_top1 for r in checked.records]
    assert torch.equal(load_checkpoint(out / "runs" / "1")["model"]["head.weight"],
                       load_checkpoint(checked.out / "runs" / "1")["model"]["head.weight"])


def test_a_second_seed_reuses_the_first_checks_runs_and_reports_the_seed_tau(checked, supernet_run, tmp_path,
                                                                               monkeypatch):
    trained = []
    from vitnas.train.standalone import train_standalone

    def record(model, recipe, run_dir, **kwargs):
        trained.append(Path(run_dir).name)
        return train_standalone(model, recipe, run_dir, **kwargs)

    monkeypatch.setattr(RUNS, "train_standalone", record)
    out = tmp_path / "two_seeds"
    result = rank_check(supernet_run, out, archs=ARCHS, epochs=EPOCHS, seeds=2, reuse=[checked.out], progress=False)
    assert sorted(trained) == [f"{i}-seed1" for i in range(ARCHS)]  # seed 0 of every arch came from `checked`
    assert not (out / "runs" / "0").exists()
    assert all(r.worker.startswith("local@") and r.worker.endswith(",reused") for r in result.records)
    first = [r.standalone_top1 for r in checked.records]
    second = [r.standalone_seeds[1] for r in result.records]
    assert [r.standalone_seeds[0] for r in result.records] == first
    assert [r.standalone_top1 for r in result.records] == pytest.approx([(a + b) / 2 for a, b in zip(first, second)])
    assert load_checkpoint(out / "runs" / "2-seed1")["recipe"].seed == load_checkpoint(supernet_run)["recipe"].seed + 1
    tau = stats.kendalltau(first, second).statistic
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed_tau"] == (None if math.isnan(tau) else pytest.approx(tau, abs=1e-12))
    assert "Kendall tau between stand-alone seeds" in format_rank_check(result)
    with pytest.raises(RankCheckError, match=r"was started with seeds 2, not 1; give the same settings"):
        rank_check(supernet_run, out, archs=ARCHS, epochs=EPOCHS, resume=True, progress=False)


def test_the_reuse_key_ignores_supernet_only_fields():
    from vitnas.rank.runs import standalone_key, standalone_recipe
    from vitnas.train.recipe import load_recipe

    base = load_recipe("tiny32_digits")
    key = standalone_key(standalone_recipe(base, 2))
    other_sampler = load_recipe("tiny32_digits", ["sampler.name=multi", "distill_warmup_epochs=0"])
    assert standalone_key(standalone_recipe(other_sampler, 2)) == key
    assert standalone_key(standalone_recipe(base, 3)) != key  # other epochs
    assert standalone_key(standalone_recipe(base, 2, seed=1)) != key  # another seed
    assert standalone_recipe(base, 2, ["seed=5"], seed=1).seed == 6  # the offset applies after the overrides

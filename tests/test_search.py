"""`vitnas search` end to end on a tiny trained supernet: outputs, budgets, resume, bad input."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import vitnas
from vitnas.cli import main
from vitnas.errors import VitnasError
from vitnas.search.driver import SearchError, search_supernet
from vitnas.search.fitness import FitnessEvaluator
from vitnas.space.arch import Arch

RECIPE = {
    "space": "tiny32",
    "data": {"name": "digits", "holdout": True},
    "epochs": 1,
    "batch_size": 64,
    "optimizer": {"lr": 1e-3, "lr_per_512": None},
    "schedule": {"warmup_epochs": 0},
    "sampler": {"name": "single"},
}
SMALL = dict(generations=3, population=8, mutations=4, crossovers=4, max_images=96)
MACS = (0.002, 0.006)  # G MACs: tiny32 spans 0.4 to 15 M


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # restored after the module


@pytest.fixture(scope="module")
def checkpoint(one_torch_thread, tmp_path_factory) -> Path:
    """The supernet, in ``supernet/`` of a folder whose ``search/`` holds the `finished` search."""
    out = tmp_path_factory.mktemp("searched") / "supernet"
    vitnas.train_supernet(RECIPE, out)
    return out


@pytest.fixture(scope="module")
def finished(checkpoint):
    return search_supernet(checkpoint, checkpoint.parent / "search", macs=MACS, params=0.06, progress=False, **SMALL)


def test_search_writes_its_evidence_and_every_choice_meets_its_budget(finished, checkpoint):
    out = finished.out
    assert {p.name for p in out.iterdir()} >= {"search.json", "results.jsonl", "state.json", "best.json",
                                               "pareto.json", "pareto.png"}
    best = json.loads((out / "best.json").read_text())
    assert [entry["name"] for entry in best] == ["macs<=0.002G", "macs<=0.006G", "params<=0.06M"]
    space = vitnas.load_space("tiny32")
    val = FitnessEvaluator.from_checkpoint(checkpoint, split="val")
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    candidates = {Arch.from_dict(line["arch"]): line for line in lines if line["role"] == "candidate"}
    for entry in best:
        arch = Arch.from_dict(entry["arch"])
        assert entry["macs"] == vitnas.count_macs(space, arch) and entry["params"] == vitnas.count_params(space, arch)
        limit = entry["budget"]["max_macs"] or float("inf"), entry["budget"]["max_params"] or float("inf")
        assert entry["macs"] <= limit[0] and entry["params"] <= limit[1]
        assert entry["val_accuracy"] == val(arch)  # scored on val, not on the search split
        within = [line for a, line in candidates.items()
                  if line["macs"] <= limit[0] and line["params"] <= limit[1]]
        assert entry["accuracy"] == max(line["accuracy"] for line in within)  # the best of its budget
    assert len(candidates) == finished.evaluations == 8 + 2 * 8
    assert all(line["worker"].startswith("local@") and line["seconds"] >= 0 for line in lines)
    front = json.loads((out / "pareto.json").read_text())
    assert front["cost_key"] == "macs" and front["front"]
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_choices_and_resume_of_a_finished_run_evaluates_nothing(finished, checkpoint, tmp_path):
    again = vitnas.search_supernet(checkpoint, tmp_path / "again", macs=MACS, params=0.06, progress=False, **SMALL)
    assert [c.to_dict() for c in again.choices] == [c.to_dict() for c in finished.choices]
    lines = (tmp_path / "again" / "results.jsonl").read_text()
    resumed = search_supernet(checkpoint, tmp_path / "again", macs=MACS, params=0.06, progress=False, **SMALL)  # again
    assert (tmp_path / "again" / "results.jsonl").read_text() == lines  # everything replayed from the log
    assert resumed.replayed == len(lines.splitlines()) and resumed.choices == again.choices


@pytest.mark.slow
def test_sigkilled_search_resumes_to_the_uninterrupted_choices(finished, checkpoint, tmp_path):
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "vitnas", "search", *_cli_arguments(checkpoint, out)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})  # as the uninterrupted run: one thread
    log = out / "results.jsonl"
    try:
        _wait_for_results(log, lines=11, timeout_s=120)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = len(log.read_text().splitlines())
    assert 11 <= done < 8 + 2 * 8 and not (out / "best.json").exists()  # killed mid-search
    assert main([*argv[3:], "--resume"]) == 0
    resumed = json.loads((out / "best.json").read_text())
    assert resumed == [choice.to_dict() for choice in finished.choices]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    archs = [line["arch"] for line in lines if line["role"] == "candidate"]
    assert len(archs) == 8 + 2 * 8 and len({json.dumps(a) for a in archs}) == len(archs)  # none twice


def test_a_half_finished_search_moved_with_its_supernet_resumes_where_it_is(finished, checkpoint, tmp_path):
    shutil.copytree(checkpoint.parent, tmp_path / "before")  # the supernet and, beside it, the finished search
    before = tmp_path / "before" / "search"
    stored = json.loads((before / "search.json").read_text())
    assert stored["checkpoint"] == str(Path("..") / "supernet") and stored["profile"] is None
    lines = (before / "results.jsonl").read_text().splitlines(keepends=True)
    (before / "results.jsonl").write_text("".join(lines[:10]))  # half-finished: generation 0 and two more
    for name in ("best.json", "pareto.json", "pareto.png", "state.json"):
        (before / name).unlink()
    (tmp_path / "before").rename(tmp_path / "after")  # the old place is gone: only relative paths can resume

    after = tmp_path / "after" / "search"
    resumed = search_supernet(tmp_path / "after" / "supernet", after, macs=MACS, params=0.06, progress=False,
                              resume=True, **SMALL)
    assert resumed.replayed == 10 and resumed.choices == finished.choices
    assert json.loads((after / "search.json").read_text()) == stored

    stored["checkpoint"] = str((tmp_path / "after" / "supernet").resolve())  # as search.json was written before
    (after / "search.json").write_text(json.dumps(stored))
    again = search_supernet(tmp_path / "after" / "supernet", after, macs=MACS, params=0.06, progress=False,
                            resume=True, **SMALL)
    assert again.replayed == 8 + 2 * 8 + 2 and again.choices == finished.choices  # candidates and the references
    with pytest.raises(SearchError, match=r"search: was started with checkpoint '.*/after/supernet', not "
                                          r"'.*/before/supernet'; give the same settings"):
        search_supernet(tmp_path / "before" / "supernet", after, macs=MACS, params=0.06, progress=False,
                        resume=True, **SMALL)


def test_infeasible_budget_is_one_line_and_writes_nothing(checkpoint, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["search", "--checkpoint", str(checkpoint), "--out", str(out), "--macs", "0.0001"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "budget macs<=0.0001G: no sub-network meets it; the smallest reachable is 0.000386 G MACs" in err
    assert not out.exists()


@pytest.mark.parametrize("change, message", [
    (dict(checkpoint="nowhere"), r"nowhere.*no such directory"),
    (dict(algorithm="annealing"), r"algorithm: unknown 'annealing' \(known: evolution, random\)"),
    (dict(macs=None), r"budgets: give at least one of --latency-ms, --macs, --params"),
    (dict(latency_ms=4.0), r"--latency-ms needs --profile"),
    (dict(backend="slurm"), r"backend: unknown 'slurm' \(known: local, ray\)"),
    (dict(macs=-1.0), r"macs: expected positive numbers, got -1.0"),
    (dict(resume=True), r"--resume: nothing to resume in .* \(no search\.json or results\.jsonl\)"),
    (dict(search_images=50), r"--search-images: digits' minival is a fixed 10% of its train split"),
])
def test_bad_search_input_is_one_line_and_writes_nothing(checkpoint, tmp_path, change, message):
    out = tmp_path / "run"
    arguments = dict(checkpoint=checkpoint, macs=0.004, progress=False, **SMALL) | change
    with pytest.raises(VitnasError, match=message) as error:
        search_supernet(arguments.pop("checkpoint"), out, **arguments)
    assert "\n" not in str(error.value) and not (out / "results.jsonl").exists() and not (out / "search.json").exists()


def test_a_finished_search_refuses_other_settings_and_fresh_starts_over(finished, checkpoint, tmp_path):
    """The run-directory convention: the same call continues (above), other settings are refused, --fresh restarts."""
    with pytest.raises(SearchError, match=rf"^{finished.out}: was started with macs \[0\.002, 0\.006\], not "
                                          r"\[0\.003\]; give the same settings to continue it, --fresh to start "
                                          r"over, or another --out$"):
        search_supernet(checkpoint, finished.out, macs=0.003, params=0.06, progress=False, **SMALL)
    with pytest.raises(SearchError, match=r"was started with config\.generations 3, not 4"):
        search_supernet(checkpoint, finished.out, macs=MACS, params=0.06, progress=False, **{**SMALL, "generations": 4})
    with pytest.raises(SearchError, match=r"already holds a search: leave resume unset to continue it"):
        search_supernet(checkpoint, finished.out, macs=MACS, params=0.06, progress=False, resume=False, **SMALL)
    out = tmp_path / "run"
    shutil.copytree(finished.out, out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(VitnasError, match=r"no sub-network meets it"):  # found late, it still costs nothing
        search_supernet(checkpoint, out, macs=0.0001, progress=False, fresh=True, **SMALL)
    assert (out / "best.json").read_text() == (finished.out / "best.json").read_text()
    again = search_supernet(checkpoint, out, macs=0.003, params=0.06, progress=False, fresh=True, **SMALL)
    assert again.replayed == 0 and json.loads((out / "search.json").read_text())["macs"] == [0.003]
    assert (out / "notes.txt").read_text() == "mine"  # --fresh deletes the search's own files only


def test_ray_backend_without_ray_is_one_line(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(VitnasError, match=r"^backend ray: Ray is not installed") as error:
        search_supernet(checkpoint, tmp_path / "run", macs=0.004, backend="ray", progress=False, **SMALL)
    assert "\n" not in str(error.value) and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def profile_file(one_torch_thread, tmp_path_factory) -> Path:
    """A real tiny32 profile, measured quickly on this CPU."""
    from vitnas.latency.profile import build_profile

    profile = build_profile(vitnas.load_space("tiny32"), device="cpu", batch=4, samples=5, seed=0, warmup=1, repeats=2)
    return profile.save(tmp_path_factory.mktemp("profile") / "tiny32.json")


def test_profile_of_another_space_is_refused(checkpoint, profile_file, tmp_path):
    data = json.loads(profile_file.read_text())
    data["space_config"]["stages"][0]["embed_dim"] = [32, 48, 64, 96]  # the same name, another space
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(SearchError, match=r"other\.json: a profile of space 'tiny32' as it was then") as error:
        search_supernet(checkpoint, tmp_path / "run", latency_ms=1.0, profile=other, progress=False, **SMALL)
    assert "\n" not in str(error.value) and not (tmp_path / "run").exists()


def test_latency_budget_predicts_and_verifies_on_this_device(checkpoint, profile_file, tmp_path):
    space = vitnas.load_space("tiny32")
    profile = vitnas.load_profile(profile_file)
    middle = round((profile.predict(space.smallest()) + profile.predict(space.largest())) / 2, 2)
    result = search_supernet(checkpoint, tmp_path / "run", latency_ms=middle, profile=profile_file, progress=False,
                             **SMALL)
    (choice,) = json.loads((tmp_path / "run" / "best.json").read_text())
    assert choice["name"] == f"latency_ms<={middle:g}" and choice["latency_ms"] <= middle
    assert choice["latency_ms"] == pytest.approx(profile.predict(Arch.from_dict(choice["arch"])))
    assert choice["measured_latency_ms"] > 0 and choice["meets_measured"] == (choice["measured_latency_ms"] <= middle)
    lines = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert all("latency_ms" in line for line in lines) and result.cost_key == "latency_ms"


RAY_ERROR_LINE = re.compile(r"^\[[\d\- :,]+ E \d+ \d+\]|Token authentication|Traceback", re.MULTILINE)


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_ray_search_leaves_no_ray_behind_and_resumes_quietly_to_the_local_choices(finished, checkpoint,
                                                                                           tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    argv = [sys.executable, "-m", "vitnas", "search", *_cli_arguments(checkpoint, out), "--backend", "ray",
            "--workers", "2"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop("RAY_AUTH_MODE", None)  # as a user who never chose: Ray would warn about its choice
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    try:
        _wait_for_results(out / "results.jsonl", lines=4)
        record = json.loads((out / "ray_processes.json").read_text())
        ray_processes = psutil.Process(process.pid).children(recursive=True)  # all of them Ray's: the driver's own
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert record["driver"][0] == process.pid
    assert {"gcs_server", "raylet"} <= {name for _, _, name in record["processes"]}
    assert {p.pid for p in ray_processes} <= {pid for pid, _, _ in record["processes"]}
    time.sleep(1)
    left = [p.pid for p in ray_processes if _alive(p)]  # Ray's agents outlive their driver by a minute or more
    assert not (out / "best.json").exists()

    resumed = subprocess.run([*argv, "--resume"], env=environment, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    if left:
        stopped = re.search(r"ray backend: stopped \d+ process(es)? of the local Ray a killed search left running "
                            r"\(pids ([\d, ]+)\)", resumed.stderr)
        assert stopped, resumed.stderr
        # only the killed search's Ray; a leftover not named here ended on its own before the resume looked
        assert {int(pid) for pid in stopped.group(2).split(", ")} <= {pid for pid, _, _ in record["processes"]}
    assert not [p.pid for p in ray_processes if _alive(p)]
    assert not RAY_ERROR_LINE.search(resumed.stderr), resumed.stderr  # nothing failed: no error-level line
    assert not (out / "ray_processes.json").exists()  # the resumed search's Ray is shut down as well
    assert json.loads((out / "best.json").read_text()) == [choice.to_dict() for choice in finished.choices]
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {line["worker"].split("@")[0] for line in lines} == {"ray-0", "ray-1"}
    assert all(re.fullmatch(r"ray-\d@.+:\d+", line["worker"]) for line in lines)  # each names its process


def test_leftover_ray_processes_are_stopped_only_once_their_driver_has_ended(tmp_path, caplog):
    from vitnas.search.ray_backend import stop_leftover_ray

    record = tmp_path / "ray_processes.json"
    leftover = psutil.Process(subprocess.Popen(["sleep", "600"]).pid)  # stands for an agent of a killed driver's Ray
    me = psutil.Process()
    try:
        entry = [leftover.pid, leftover.create_time(), leftover.name()]
        record.write_text(json.dumps({"driver": [me.pid, me.create_time()], "processes": [entry]}))
        assert stop_leftover_ray(record) == 0 and _alive(leftover) and record.exists()  # its driver runs: in use
        ended = [me.pid, me.create_time() - 100]  # this pid, another start: a driver that has ended
        record.write_text(json.dumps({"driver": ended, "processes": [entry, [me.pid, me.create_time() - 100, "x"]]}))
        assert stop_leftover_ray(record) == 1 and not _alive(leftover) and not record.exists()
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
    record.write_text("{half a record")
    assert stop_leftover_ray(record) == 0 and not record.exists()
    assert "ignoring" in caplog.text and "not a record of Ray's processes" in caplog.text


def _cli_arguments(checkpoint: Path, out: Path) -> list[str]:
    """`vitnas search` arguments for the `finished` search's settings."""
    return ["--checkpoint", str(checkpoint), "--out", str(out), "--macs", ",".join(map(str, MACS)),
            "--params", "0.06", "--generations", "3", "--population", "8", "--mutations", "4", "--crossovers", "4",
            "--max-images", "96"]


def _wait_for_results(log: Path, lines: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < lines):
        time.sleep(0.02)
    assert log.exists() and len(log.read_text().splitlines()) >= lines, "the search did not get going in time"


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_profile_of_a_device_this_machine_lacks_needs_asking_for(checkpoint, profile_file, tmp_path):
    data = json.loads(profile_file.read_text())
    data["device"] = "NVIDIA H100 80GB HBM3"
    data["device_type"] = "cuda"
    elsewhere = tmp_path / "h100.json"
    elsewhere.write_text(json.dumps(data))
    with pytest.raises(VitnasError, match=r"h100\.json: measured on cuda 'NVIDIA H100 80GB HBM3'.*"
                                          r"pass --profile-other-device") as error:
        search_supernet(checkpoint, tmp_path / "run", latency_ms=5.0, profile=elsewhere, progress=False, **SMALL)
    assert "\n" not in str(error.value) and not (tmp_path / "run").exists()
    search_supernet(checkpoint, tmp_path / "run", latency_ms=5.0, profile=elsewhere, profile_other_device=True,
                    progress=False, **SMALL)
    (choice,) = json.loads((tmp_path / "run" / "best.json").read_text())
    assert choice["latency_ms"] <= 5.0 and choice["measured_latency_ms"] is None  # predicted for the H100 only

"""Every command README.md shows is run here (or, for the install and test commands, by `.ci/run`).

The commands run as written, in README order, in a scratch directory, with only two kinds
of change, each listed in `FASTER` or `DATA`: settings that make them quick (fewer epochs,
archs, generations) and the paths of the data sets, which become tiny local copies. A
README command with no rule here fails the test, so the README cannot show a command that
nothing runs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vitnas.cli import main

REPOSITORY = Path(__file__).resolve().parent.parent
README = REPOSITORY / "README.md"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

# No onnx in `vitnas run`'s formats here: three ONNX exports took half a minute, and the run's default
# formats (onnx included, checked with ONNX Runtime) run in tests/test_packaging.py's plain-install
# `vitnas run`; the README's `vitnas export --format torchscript onnx` still writes the ONNX form that
# README's Python example loads.
QUICK_RUN = ("--backend local --generations 1 --population 4 --profile-samples 6 --latency-batch 4 "
             "--format safetensors,torchscript epochs=1")
# README command prefix -> what is appended or replaced to make it quick; every README command matches one
FASTER: dict[str, tuple[str, dict[str, str]]] = {
    "vitnas run": (QUICK_RUN, {}),
    "vitnas train tiny32_digits --out runs/digits": ("epochs=2", {}),
    "vitnas train tiny32_digits --out runs/mine": ("epochs=1", {}),
    "vitnas train tiny32_digits --out runs/cifar": ("epochs=1", {}),
    "vitnas latency profile": ("--warmup 1 --repeats 3 --rounds 1", {"--samples 40": "--samples 6"}),
    "vitnas search --checkpoint runs/digits --out runs/search ": ("--generations 1 --population 4",
                                                                  {"--latency-ms 8": "--latency-ms 1000"}),
    "vitnas export": ("--latency-batch 1", {}),
    "vitnas eval": ("", {}),
    "vitnas latency measure": ("--warmup 1 --repeats 3", {}),
    "vitnas finetune": ("--latency-batch 1", {"epochs=10": "epochs=1"}),
    "vitnas space": ("", {}),
    "vitnas rank-check": ("", {"--epochs 5": "--epochs 1"}),
    "torchrun --nproc_per_node 2 -m vitnas train": ("epochs=1", {}),
}
GPU_ONLY = ("vitnas run --recipe deit_small_supervit",)
RAY = ("ray start", "vitnas search --checkpoint runs/digits --out runs/search-ray", "ray stop")
CI = ('python3 -m pip install . && vitnas run',  # tests/test_packaging.py runs it on a plain install
      'python3 -m pip install -e ".[test]" && python3 -m pytest -q')


def readme_commands() -> list[str]:
    """The commands of README.md's ```bash blocks, comments stripped, continuation lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command:
                commands.append(command)
    return commands


def readme_output(first_line: str) -> list[str]:
    """The lines of the README's output block (a fence without a language) that begins with `first_line`."""
    blocks, current = [], None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if current is None:
                current = (line[3:].strip(), [])
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current[1].append(line)
    (lines,) = [lines for language, lines in blocks if not language and lines and lines[0].startswith(first_line)]
    return lines


def rule(command: str) -> tuple[str, dict[str, str]]:
    matches = [prefix for prefix in FASTER if command.startswith(prefix)]
    assert matches, f"README command with no test: {command}"
    return FASTER[max(matches, key=len)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch directory holding tiny stand-ins for the README's data sets."""
    folder = tmp_path_factory.mktemp("readme")
    _imagefolder(folder / "my_images")
    _cifar(folder / "cifar")
    return folder


def _data_paths(workdir: Path) -> dict[str, str]:
    return {"/data/my_images": str(workdir / "my_images"), "/data/cifar": str(workdir / "cifar")}


def _imagefolder(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 2)):
        for label in range(10):
            (root / split / str(label)).mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / str(label) / f"{index}.png")


def _cifar(root: Path) -> None:
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, count in [*((f"data_batch_{i}", 20) for i in range(1, 6)), ("test_batch", 20)]:
        batch = {b"data": rng.integers(0, 255, (count, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, count).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [str(i).encode() for i in range(10)]}))


def quick(command: str, workdir: Path) -> list[str]:
    extra, replacements = rule(command)
    for old, new in {**replacements, **_data_paths(workdir)}.items():
        command = command.replace(old, new)
    return shlex.split(command) + shlex.split(extra)


def test_every_readme_command_has_a_rule_and_the_ci_runs_the_test_command():
    commands = readme_commands()
    assert all(command in commands for command in CI)
    assert CI[1].split(" && ")[1] in (REPOSITORY / ".ci" / "run").read_text().splitlines()
    assert CI[1].split(" && ")[0] in (REPOSITORY / ".ci" / "run").read_text().splitlines()
    for command in commands:
        if command not in CI and not command.startswith(GPU_ONLY + RAY):
            rule(command)


def test_the_readme_path_runs_as_written(workdir, monkeypatch, capsys, caplog):
    """The `vitnas` commands in README order: run, train, profile, search, export, eval, finetune, data."""
    monkeypatch.chdir(workdir)
    commands = [c for c in readme_commands() if c not in CI and not c.startswith(GPU_ONLY + RAY)]
    commands = [CI[0].split(" && ")[1]] + commands  # the main job, as the first command runs it
    for command in commands:
        argv = quick(command, workdir)
        if argv[0] == "torchrun":
            _torchrun(argv, workdir)
            continue
        assert argv[0] == "vitnas", command
        caplog.clear()
        code = main(argv[1:])
        output = capsys.readouterr()
        assert code == 0, f"{command}: {output.err[-2000:]}"
        _assert_prints_what_the_readme_shows(command, output.out.splitlines(), caplog.messages)
    _python_block(workdir)


def _assert_prints_what_the_readme_shows(command: str, out: list[str], log: list[str]) -> None:
    """The lines the README shows a command printing that depend on neither timing nor training are printed.

    `quick`'s settings change the latency budgets and the numbers; table headers, file
    lists, the MACs budget and its export folder, the bundle and the space summary stay.
    The README shows standard output and the log (standard error) together.
    """
    printed = out + log
    if command == "vitnas run":
        shown = readme_output("budgets:")
        kept = [line for line in shown if line.startswith(("  macs<=", "budget ", "Pareto front:", "elastic bundle:"))]
        assert len(kept) == 4 and "export: vitnas-run/export/macs_le_0.0034G" in shown
        for line in [*kept, "export: vitnas-run/export/macs_le_0.0034G"]:
            assert line in printed, f"vitnas run no longer prints the README's line {line!r}"
        assert sum(line.startswith("export: ") for line in printed) == sum(l.startswith("export: ") for l in shown)
    elif command.startswith("vitnas search --checkpoint runs/digits --out runs/search "):
        shown = readme_output("generation ")
        kept = [line for line in shown if line.startswith(("budget ", "files: "))]
        assert len(kept) == 2 and all(line in printed for line in kept), (kept, printed)
    elif command.startswith("vitnas export") and "elastic" in command:
        shown = readme_output("exported img ")
        for line in ("exported an elastic bundle of 2 points to runs/bundle", "runs/bundle"):
            assert line in shown and line in printed, (line, printed)
    elif command.startswith("vitnas export"):
        shown = readme_output("exported img ")
        assert "runs/export/macs_le_0.0034G" in shown and "runs/export/macs_le_0.0034G" in printed, printed
    elif command == "vitnas space tiny32":
        assert out == readme_output("space tiny32:")


def _torchrun(argv: list[str], workdir: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", *argv[1:]]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPOSITORY)}
    result = subprocess.run(torchrun, cwd=workdir, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "runs" / "ddp" / "latest").is_file()


def _python_block(workdir: Path) -> None:
    """README's Python example, run as written against the folders the commands wrote."""
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 - our own README


def test_the_gpu_command_is_the_one_the_gpu_suite_runs():
    """The GPU path is too slow for a CPU; benchmarks/gpu_suite.sh runs the README's command as written."""
    (command,) = [c for c in readme_commands() if c.startswith(GPU_ONLY)]
    suite = (REPOSITORY / "benchmarks" / "gpu_suite.sh").read_text().replace("\\\n", " ")
    assert shlex.split(command)[1:] == _suite_run_arguments(suite)


def _suite_run_arguments(suite: str) -> list[str]:
    """The arguments of the suite's `python3 -m vitnas run` step, with its output folder as the README's."""
    (line,) = [line for line in suite.splitlines() if "-m vitnas run" in line]
    words = shlex.split(line[line.index("-m vitnas run"):].replace('"$scratch/deit"', "runs/deit"))
    return words[2:]


@pytest.mark.ray
def test_the_ray_cluster_commands_run_as_written(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ray")
    if shutil.which("ray") is None:
        pytest.skip("the ray command is not on PATH")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "tiny32_digits", "--out", "runs/digits", "epochs=1"]) == 0
    commands = [c for c in readme_commands() if c.startswith(RAY)]
    assert [c.split()[:2] for c in commands] == [["ray", "start"], ["vitnas", "search"], ["ray", "stop"]]
    environment = {**os.environ, "RAY_ADDRESS": ""}
    started = subprocess.run(shlex.split(commands[0]), capture_output=True, text=True, env=environment, timeout=300)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        argv = shlex.split(commands[1]) + ["--generations", "1", "--population", "4", "--workers", "1"]
        code = main(argv[1:])
        assert code == 0, capsys.readouterr().err[-2000:]
        assert (tmp_path / "runs" / "search-ray" / "best.json").is_file()
    finally:
        subprocess.run(shlex.split(commands[2]), capture_output=True, timeout=300)

"""The `vitnas` command: verbs print what they promise; bad input is one line, exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import vitnas
from vitnas.cli import main


def test_space_verb_prints_summary_and_samples(capsys):
    assert main(["space", "tiny32", "--sample", "2", "--seed", "3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("space tiny32:") and any(line.strip().startswith("largest:") for line in out)
    space = vitnas.load_space("tiny32")
    for line in out[-2:]:
        space.validate(vitnas.Arch.from_dict(json.loads(line)))


def test_bad_space_is_one_line_error(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("img_size: 32\nnum_classes: 10\npatch: {mode: flexi, sizes: [5]}\nstages: [{depth: 1}]\n")
    assert main(["space", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"vitnas: error: {path}: patch.sizes:")


def _train_argv(out: Path) -> list[str]:
    return ["train", "tiny32_digits", "--out", str(out), "epochs=1", "data={name: synthetic, synthetic_size: 32}"]


RUN_VERBS = ("train", "finetune", "search", "rank-check", "run")  # the verbs that write a run directory


@pytest.mark.parametrize("verb", RUN_VERBS)
def test_every_verb_with_a_run_directory_states_the_one_convention_and_takes_fresh(verb):
    from vitnas.cli import _parser
    from vitnas.train.cli import CONVENTION

    [verbs] = [action for action in _parser()._actions if isinstance(action, argparse._SubParsersAction)]
    parser = verbs.choices[verb]
    flags = {option for action in parser._actions for option in action.option_strings}
    assert CONVENTION in parser.description and "--fresh" in flags
    assert ("--resume" in flags) == (verb != "run")  # kept where it was; run never had it


def test_a_run_of_other_settings_is_refused_in_one_line_naming_the_field_before_any_work(tmp_path, capsys):
    """train and search: the stored settings are read and compared before any data or weights are touched."""
    from vitnas.train.recipe import load_recipe

    run, folder = tmp_path / "run", tmp_path / "run" / "ckpt-0000001"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text('{"epoch": 1, "step": 1}')
    (folder / "recipe.yaml").write_text(yaml.safe_dump(load_recipe("tiny32_digits", ["optimizer.lr=0.5"]).to_dict()))
    (run / "latest").write_text("ckpt-0000001\n")
    search = tmp_path / "search"
    search.mkdir()
    # written before MACs were called macs: the old key is read as macs
    (search / "search.json").write_text(json.dumps({"checkpoint": str(run), "flops": [2.0], "config": {}}))
    searching = ["search", "--checkpoint", str(run), "--out", str(search), "--macs", "1"]
    for argv, out, field in ((["train", "tiny32_digits", "--out", str(run)], run, "optimizer.lr 0.5, not 0.003"),
                             (searching, search, "macs [2.0], not [1.0]"),
                             ([*searching, "--resume"], search, "macs [2.0], not [1.0]")):
        assert main(argv) == 2
        assert capsys.readouterr().err == (f"vitnas: error: {out}: was started with {field}; give the same "
                                           "settings to continue it, --fresh to start over, or another --out\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, int, str]:
    """One `vitnas train` with overrides after the options: its run folder, exit code and standard output."""
    out = tmp_path_factory.mktemp("cli") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(_train_argv(out))
    return out, code, printed.getvalue()


def test_train_verb_takes_overrides_after_options(trained, capsys):
    out, code, printed = trained
    assert code == 0
    assert json.loads(printed.strip().splitlines()[-1])["epoch"] == 1
    argv = _train_argv(out)
    assert main(argv) == 0 and json.loads(capsys.readouterr().out)["epoch"] == 1  # again: continues, nothing to do
    assert main(argv[:-1]) == 2  # without the data override: another recipe than the run's
    assert capsys.readouterr().err.endswith(f"vitnas: error: {out}: was started with data.name 'synthetic', not "
                                            "'digits'; give the same settings to continue it, --fresh to start over, "
                                            "or another --out\n")


def test_eval_verb_scores_an_arch_of_a_trained_run(trained, tmp_path, capsys):
    out, code, _ = trained
    assert code == 0
    space = vitnas.load_space("tiny32")
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(space.arch(embed_dim=32, depth=2).to_json())
    supernet, _ = vitnas.load_supernet(out)
    for arch_text, arch in (("smallest", space.smallest()), (str(arch_file), space.arch(embed_dim=32, depth=2))):
        assert main(["eval", str(out), "--arch", arch_text, "--data", "synthetic"]) == 0
        assert json.loads(capsys.readouterr().out)["top1"] == vitnas.evaluate(supernet, arch, data="synthetic")
    assert main(["eval", str(out), "--arch", str(tmp_path / "none.json")]) == 2
    assert "none.json: no such arch file" in capsys.readouterr().err


HEAVY = ("torch", "timm", "nni", "sklearn", "ray")


def _modules_loaded_by(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_import_help_and_argument_errors_load_no_heavy_library():
    assert _modules_loaded_by("import vitnas, vitnas.latency") == []
    calls = [["--help"], ["--version"], ["train"], ["latency", "measure", "--help"], ["search", "--help"],
             ["latency", "measure", "--space", "tiny32", "--arch", "smallest", "--dtype", "fp8"]]
    code = "from vitnas.cli import main\n" + "".join(
        f"try:\n    main({argv!r})\nexcept SystemExit as stop:\n    assert stop.code in (0, 2)\n" for argv in calls)
    assert _modules_loaded_by(code) == []


def test_dtype_takes_torch_names_and_refuses_others_in_one_line(capsys):
    argv = ["latency", "measure", "--space", "tiny32", "--arch", "smallest", "--warmup", "0", "--repeats", "2"]
    assert main([*argv, "--dtype", "float32"]) == 0
    assert " fp32 on cpu" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--dtype", "fp8"])
    assert stop.value.code == 2
    assert "argument --dtype: 'fp8' is not one of fp32, bf16, fp16 (or torch's bfloat16, float16, float32)" in \
        capsys.readouterr().err

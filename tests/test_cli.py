"""The `vitnas` command: verbs print what they promise; bad input is one line, exit code 2."""

from __future__ import annotations

import json

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


def test_run_trains_then_checks_extraction_on_digits(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "epochs=1", "sampler.name=single"]) == 0
    report = capsys.readouterr().out
    assert "extracted models score the same" in report and (out / "latest").is_file()
    rows = [line.split() for line in report.splitlines() if line.startswith(("largest", "smallest"))]
    assert len(rows) == 2 and all(float(row[4]) <= 1e-5 for row in rows)
    assert main(["run", "--out", str(out)]) == 0  # a finished run is resumed, not retrained


def test_train_verb_takes_overrides_after_options(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "tiny32_digits", "--out", str(out), "epochs=1", "data={name: synthetic, synthetic_size: 32}"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epoch"] == 1
    assert main(argv) == 2 and "already holds a run" in capsys.readouterr().err


def test_eval_verb_scores_an_arch_of_a_trained_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "tiny32_digits", "--out", str(out), "epochs=1", "data={name: synthetic, synthetic_size: 32}"]) == 0
    capsys.readouterr()
    space = vitnas.load_space("tiny32")
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(space.arch(embed_dim=32, depth=2).to_json())
    for arch in ("smallest", str(arch_file)):
        assert main(["eval", str(out), "--arch", arch, "--data", "synthetic"]) == 0
        assert 0.0 <= json.loads(capsys.readouterr().out)["top1"] <= 1.0
    assert main(["eval", str(out), "--arch", str(tmp_path / "none.json")]) == 2
    assert "none.json: no such arch file" in capsys.readouterr().err

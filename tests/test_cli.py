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


def test_run_checks_extraction_on_digits(capsys):
    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "checked on 359 digits validation images" in out
    differences = [float(line.split()[3]) for line in out.splitlines() if line.startswith(("largest", "smallest"))]
    assert len(differences) == 2 and max(differences) <= 1e-5

"""Using an export folder: `vitnas eval DIR` and `vitnas latency measure --model DIR`."""

from __future__ import annotations

import json

import pytest
import torch

import vitnas
from vitnas.cli import main
from vitnas.data import build_dataset, parse_data


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny32 sub-network of a randomly initialised supernet, exported without timing."""
    torch.manual_seed(0)
    space = vitnas.load_space("tiny32")
    supernet = vitnas.SuperViT(space)
    folder = tmp_path_factory.mktemp("export") / "tiny"
    vitnas.export_model(supernet, space.smallest(), folder, latency_batches=())
    return folder


def test_eval_of_an_export_folder_reports_top1_top5_and_speed(exported, capsys):
    assert main(["eval", str(exported), "--data", "synthetic", "--batch-size", "100"]) == 0
    result = json.loads(capsys.readouterr().out)
    model = vitnas.load(exported)
    assert result["top1"] == vitnas.evaluate(model, data="synthetic", batch_size=100)
    assert result["top1"] <= result["top5"] <= 1.0
    assert result["images"] == len(build_dataset(parse_data("synthetic"), "val", 32, 3))
    assert result["images_per_s"] > 0


def test_evaluate_topk_counts_every_class_when_k_exceeds_them(exported):
    from vitnas.evaluate import evaluate_topk

    result = evaluate_topk(vitnas.load(exported), data="synthetic", ks=(1, 10, 50))
    assert result["top10"] == result["top50"] == 1.0  # 10 classes: the top 10 always holds the label


def test_eval_of_a_folder_that_is_neither_export_nor_run_is_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--data", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither an export folder" in err
    (tmp_path / "config.json").write_text('{"format": "something.else", "format_version": 1}')
    assert main(["eval", str(tmp_path), "--data", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not 'vitnas.export'" in err


def test_eval_of_an_export_folder_refuses_arch(exported, capsys):
    assert main(["eval", str(exported), "--arch", "largest"]) == 2
    assert capsys.readouterr().err == (f"vitnas: error: {exported}: is an export folder, which holds one model: "
                                       f"drop --arch / --ema\n")


def test_latency_measure_times_an_export_folder(exported, capsys):
    assert main(["latency", "measure", "--model", str(exported), "--repeats", "2", "--warmup", "0"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "ms median" in out and "images/s at batch 1 fp32 on cpu" in out
    assert out.endswith(str(exported))


def test_latency_measure_takes_model_or_space_not_both(exported, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["latency", "measure", "--model", str(exported), "--space", "tiny32", "--arch", "largest"])
    assert raised.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["latency", "measure", "--batch", "2"])
    assert "one of the arguments --space --model is required" in capsys.readouterr().err
    assert main(["latency", "measure", "--space", "tiny32"]) == 2
    assert capsys.readouterr().err == ("vitnas: error: latency measure: --space needs --arch (arch files, or "
                                       "largest / smallest)\n")
    assert main(["latency", "measure", "--model", str(exported), "--arch", "largest"]) == 2
    assert capsys.readouterr().err == ("vitnas: error: latency measure: --arch goes with --space; an export folder "
                                       "(--model) holds one model\n")


def test_latency_measure_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["latency", "measure", "--model", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such export folder" in err

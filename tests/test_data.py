"""Data sets: local CIFAR (without executing pickles), ImageFolder, digits; missing paths are clear errors."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from vitnas.data import DataConfig, DataError, build_dataset, load_digits, parse_data


def _write_cifar10(root, images_per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (images_per_batch, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, images_per_batch))}
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def test_local_cifar10_loads_with_the_right_shapes(tmp_path):
    _write_cifar10(tmp_path)
    train = build_dataset(DataConfig(name="cifar10", root=str(tmp_path)), "train", img_size=32)
    val = build_dataset(parse_data(f"cifar10:{tmp_path}"), "val", img_size=32)
    assert len(train) == 20 and len(val) == 4
    image, label = val[0]
    assert tuple(image.shape) == (3, 32, 32) and 0 <= label < 10


def test_cifar_file_with_code_is_refused(tmp_path):
    folder = _write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": os.system, b"labels": [0]}))
    with pytest.raises(DataError, match=r"test_batch: not a readable CIFAR batch \(refusing to load posix\.system\)"):
        build_dataset(DataConfig(name="cifar10", root=str(tmp_path)), "val", img_size=32)


def test_imagefolder_and_missing_paths(tmp_path):
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / split / name / "a.png")
    dataset = build_dataset(parse_data(str(tmp_path)), "train", img_size=24)
    assert dataset.classes == ["cat", "dog"] and tuple(dataset[0][0].shape) == (3, 24, 24)
    with pytest.raises(DataError, match=r"imagefolder: .*nowhere/val not found"):
        build_dataset(parse_data(str(tmp_path / "nowhere")), "val", img_size=24)
    with pytest.raises(DataError, match=r"cifar100: .*train not found \(expected the python version of CIFAR100"):
        build_dataset(DataConfig(name="cifar100", root=str(tmp_path)), "train", img_size=32)
    with pytest.raises(DataError, match=r"data\.root: the cifar10 data set needs a root folder"):
        DataConfig(name="cifar10")


def test_digits_split_is_fixed_and_disjoint():
    train_images, train_labels = load_digits("train")
    val_images, val_labels = load_digits("val")
    assert len(train_labels) == 1438 and len(val_labels) == 359
    assert train_images.shape == (1438, 3, 32, 32) and float(train_images.min()) >= -1.0
    again, _ = load_digits("val")
    assert (again == val_images).all()
    flat_train = {tuple(row) for row in train_images[:, 0, ::4, ::4].reshape(len(train_images), -1).tolist()}
    overlap = sum(tuple(row) in flat_train for row in val_images[:, 0, ::4, ::4].reshape(len(val_images), -1).tolist())
    assert overlap < 10  # scikit-learn's digits hold a few duplicate scans; the split itself is disjoint by index

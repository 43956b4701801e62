"""Data sets: local CIFAR (without executing pickles), ImageFolder, digits; missing paths are clear errors."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from vitnas.data import (
    DataConfig,
    DataError,
    build_dataset,
    load_digits,
    minival_indices,
    parse_data,
    trains_on_search_images,
)
from vitnas.train.recipe import RecipeError, load_recipe


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


# --- minival: the search split, carved from train with a fixed seed, optionally held out ---------------------------


def _rows(images) -> Counter:
    """Images as a multiset of rows (digits hold a few duplicate scans, so compare counts, not sets)."""
    return Counter(tuple(row) for row in images.reshape(len(images), -1).tolist())


def test_digits_minival_is_a_fixed_tenth_of_train_held_out_or_not():
    full_images, _ = load_digits("train", img_size=8, in_chans=1)
    minival_images, minival_labels = load_digits("minival", img_size=8, in_chans=1)
    held_images, _ = load_digits("train", img_size=8, in_chans=1, holdout=True)
    assert len(minival_labels) == round(0.1 * 1438) == 144 and len(held_images) == 1438 - 144
    assert _rows(held_images) + _rows(minival_images) == _rows(full_images)  # train ∪ minival == original train
    held = build_dataset(DataConfig(holdout=True), "train", img_size=8, in_chans=1)
    shared = build_dataset(DataConfig(), "train", img_size=8, in_chans=1)
    assert torch.equal(held.tensors[0], held_images) and torch.equal(shared.tensors[0], full_images)
    minival = build_dataset(DataConfig(holdout=True), "minival", img_size=8, in_chans=1)
    assert torch.equal(minival.tensors[0], minival_images) and torch.equal(minival.tensors[1], minival_labels)
    assert trains_on_search_images(DataConfig()) and not trains_on_search_images(DataConfig(holdout=True))


def test_minival_indices_are_disjoint_from_held_out_train_and_ignore_torch_seed():
    config = DataConfig(name="synthetic", synthetic_size=200, search_images=30, holdout=True)
    torch.manual_seed(0)
    first = build_dataset(config, "minival", img_size=8)
    torch.manual_seed(1)
    second = build_dataset(config, "minival", img_size=8)
    assert torch.equal(first.tensors[0], second.tensors[0]) and len(first) == 30
    full = build_dataset(replace(config, holdout=False), "train", img_size=8)
    held = build_dataset(config, "train", img_size=8)
    assert len(held) == 170 and len(build_dataset(replace(config, holdout=False), "train", img_size=8)) == 200
    held_rows, minival_rows = set(_rows(held.tensors[0])), set(_rows(first.tensors[0]))
    assert not held_rows & minival_rows and held_rows | minival_rows == set(_rows(full.tensors[0]))
    # the same images on every machine and run: pinned, not just self-consistent
    indices = minival_indices(config, 200)
    assert indices[:6].tolist() == [135, 130, 14, 1, 120, 46] and len(set(indices.tolist())) == 30
    assert minival_indices(DataConfig(), 1438)[:6].tolist() == [1048, 366, 894, 967, 1097, 877]
    assert torch.equal(first.tensors[0], full.tensors[0][torch.from_numpy(indices)])
    # a smaller minival is a prefix of a larger one (max_images and search_images agree)
    assert minival_indices(replace(config, search_images=10), 200).tolist() == indices[:10].tolist()


def test_minival_sizes_and_defaults(tmp_path):
    assert len(minival_indices(DataConfig(name="synthetic"), 512)) == round(0.1 * 512)
    assert len(minival_indices(DataConfig(name="synthetic"), 1_281_167)) == 10_000  # ImageNet-sized: capped
    assert len(build_dataset(DataConfig(name="synthetic", synthetic_size=48), "minival", img_size=8)) == 5
    _write_cifar10(tmp_path)  # 20 train images, 4 val
    cifar = DataConfig(name="cifar10", root=str(tmp_path), search_images=6, holdout=True)
    train, minival = (build_dataset(cifar, split, img_size=32) for split in ("train", "minival"))
    assert (len(train), len(minival), len(build_dataset(cifar, "val", img_size=32))) == (14, 6, 4)
    assert sorted(train.indices + minival.indices) == list(range(20))
    assert len(build_dataset(replace(cifar, holdout=False), "train", img_size=32)) == 20
    with pytest.raises(DataError, match=r"^data\.search_images: 20 images, but the train split has 20; use fewer"):
        build_dataset(replace(cifar, search_images=20), "minival", img_size=32)


@pytest.mark.parametrize("changes, message", [
    ({"search_images": 0}, r"data\.search_images: expected a positive number of images or null, got 0"),
    ({"search_images": True}, r"data\.search_images: expected a positive number of images or null, got True"),
    ({"search_images": 5, "name": "digits"}, r"data\.search_images: digits' minival is a fixed 10% of its train"),
    ({"search_images": 49}, r"data\.search_images: 49 images, but the train split has 48; use at most 48"),
    ({"search_images": 48, "holdout": True}, r"data\.search_images: 48 images, .* use fewer than 48 \(holdout"),
    ({"holdout": "yes"}, r"data\.holdout: expected true or false, got 'yes'"),
])
def test_bad_minival_settings_are_one_line_errors(changes, message):
    settings = {"name": "synthetic", "synthetic_size": 48, **changes}
    with pytest.raises(DataError, match=message) as caught:
        DataConfig(**settings)
    assert "\n" not in str(caught.value)
    field_name = message.split(":")[0]  # a recipe's own type check may word it differently, but names the field
    with pytest.raises(RecipeError, match=r"^<dict>: " + field_name + ":") as caught:
        load_recipe({"data": settings})
    assert "\n" not in str(caught.value)
    with pytest.raises(DataError, match=r"split: expected one of train, val, minival, got 'test'"):
        build_dataset(DataConfig(), "test", img_size=8)


def test_imagefolder_minival_is_not_augmented_and_holdout_keeps_classes(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        for split, count in (("train", 5), ("val", 1)):
            (tmp_path / split / name).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / name / f"{index}.png")
    config = replace(parse_data(str(tmp_path)), search_images=4, holdout=True)
    minival = build_dataset(config, "minival", img_size=24)
    train = build_dataset(config, "train", img_size=24)
    assert (len(minival), len(train)) == (4, 6) and train.classes == ["cat", "dog"]
    assert not set(train.indices) & set(minival.indices)
    assert all(torch.equal(minival[i][0], minival[i][0]) for i in range(4))  # two reads, identical: no augmentation
    torch.manual_seed(0)
    augmented = [train[0][0] for _ in range(4)]
    assert any(not torch.equal(augmented[0], other) for other in augmented[1:])  # ... while train is augmented


def test_train_images_is_a_fixed_draw_of_the_held_out_train_split(tmp_path):
    """Stand-alone ground truths train on `train_images`: the same images for every run, never minival's."""
    config = DataConfig(name="synthetic", synthetic_size=200, search_images=30, holdout=True, train_images=50)
    torch.manual_seed(0)
    first = build_dataset(config, "train", img_size=8)
    torch.manual_seed(1)
    second = build_dataset(config, "train", img_size=8)
    assert len(first) == 50 and torch.equal(first.tensors[0], second.tensors[0])
    held = build_dataset(replace(config, train_images=None), "train", img_size=8)
    subset_rows, held_rows = set(_rows(first.tensors[0])), set(_rows(held.tensors[0]))
    assert subset_rows < held_rows and not subset_rows & set(_rows(build_dataset(config, "minival", 8).tensors[0]))
    assert len(build_dataset(config, "val", img_size=8)) == 200 and len(build_dataset(config, "minival", 8)) == 30
    _write_cifar10(tmp_path)  # 20 train images: an image data set gets a Subset in the file's order
    cifar = build_dataset(DataConfig(name="cifar10", root=str(tmp_path), train_images=7), "train", img_size=32)
    assert len(cifar) == 7 and cifar.indices == sorted(cifar.indices) and len(set(cifar.indices)) == 7
    with pytest.raises(DataError, match=r"^data\.train_images: 171 images, but the train split has 170; use at most"):
        build_dataset(replace(config, train_images=171), "train", img_size=8)
    for bad in (0, True, 2.5):
        with pytest.raises(DataError, match=r"^data\.train_images: expected a positive number of images or null"):
            replace(config, train_images=bad)

"""Fashion-MNIST from its IDX files: splits, channels, normalisation, and one-line errors for bad files.

The data comes from Debian's dataset-fashion-mnist package. Where it is absent the tests
skip on a developer's machine but fail in CI (CI is set), which installs it in .ci/run.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vitnas.data import (
    FASHION_MNIST_ROOT,
    DataConfig,
    DataError,
    FashionMnistDataset,
    build_dataset,
    num_classes_of,
    parse_data,
)
from vitnas.export.metadata import class_names, input_spec

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def fashion_root() -> Path:
    root = Path(FASHION_MNIST_ROOT)
    if not all((root / name).is_file() for name in FILES):
        message = f"Fashion-MNIST is not in {root} (apt-get install dataset-fashion-mnist)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


def test_splits_counts_and_default_root(fashion_root):
    config = parse_data("fashion_mnist")
    assert config.root == str(fashion_root) and num_classes_of(config) == 10
    sizes = {split: len(build_dataset(config, split, 28, 1)) for split in ("train", "val", "minival")}
    assert sizes == {"train": 60_000, "val": 10_000, "minival": 5_000}
    held_out = DataConfig(name="fashion_mnist", holdout=True)
    assert len(build_dataset(held_out, "train", 28, 1)) == 55_000
    assert parse_data(f"fashion_mnist:{fashion_root}") == config


def test_grey_at_native_size_or_replicated_and_normalised(fashion_root):
    config = parse_data("fashion_mnist")
    val = build_dataset(config, "val", 28, 1)
    images = torch.stack([val[index][0] for index in range(1000)])
    assert images.shape == (1000, 1, 28, 28)
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05  # the data set's own statistics
    image, label = val[0]
    assert label == 9  # the first test image is an ankle boot
    rgb, _ = build_dataset(config, "val", 32, 3)[0]
    assert rgb.shape == (3, 32, 32) and torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[1], rgb[2])
    minival, _ = build_dataset(config, "minival", 28, 1)[0]  # minival reads train images without augmentation
    assert torch.equal(minival, build_dataset(config, "minival", 28, 1)[0][0])


def test_training_augmentation_keeps_the_garment(fashion_root):
    """The default crop keeps at least 3/4 of the image: a training view stays close to the plain one."""
    config = parse_data("fashion_mnist")
    plain = build_dataset(config, "minival", 28, 1)
    train = build_dataset(config, "train", 28, 1)
    index = int(plain.indices[0])
    torch.manual_seed(0)
    views = torch.stack([train[index][0] for _ in range(8)])
    assert views.shape == (8, 1, 28, 28) and not torch.equal(views[0], views[1])
    reference = plain[0][0]
    closeness = [torch.corrcoef(torch.stack([view.flatten(), reference.flatten()]))[0, 1].item() for view in views]
    flipped = [torch.corrcoef(torch.stack([view.flip(-1).flatten(), reference.flatten()]))[0, 1].item()
               for view in views]
    assert min(max(pair) for pair in zip(closeness, flipped)) > 0.6


def test_export_metadata_names_classes_and_grey_statistics(fashion_root):
    config = parse_data("fashion_mnist")
    assert class_names(config, 10)[0] == "T-shirt/top" and class_names(config, 10)[-1] == "Ankle boot"
    spec = input_spec(config, 28, 1)
    assert spec["mean"] == [FashionMnistDataset.MEAN] and spec["std"] == [FashionMnistDataset.STD]


def _copy(root: Path, target: Path) -> Path:
    target.mkdir()
    for name in FILES:
        shutil.copyfile(root / name, target / name)
    return target


def test_missing_folder_names_the_package_and_the_files(tmp_path):
    with pytest.raises(DataError) as raised:
        build_dataset(parse_data(f"fashion_mnist:{tmp_path}"), "val", 28, 1)
    message = str(raised.value)
    assert "\n" not in message and f"{tmp_path}/t10k-images-idx3-ubyte.gz not found" in message
    assert "apt-get install dataset-fashion-mnist" in message and "train-labels-idx1-ubyte.gz" in message


def test_truncated_and_foreign_files_are_one_line_errors(fashion_root, tmp_path):
    root = _copy(fashion_root, tmp_path / "fm")
    labels = gzip.decompress((root / FILES[3]).read_bytes())
    (root / FILES[3]).write_bytes(gzip.compress(labels[:-10]))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz is truncated \(9990 bytes of data for 10000\)"):
        build_dataset(parse_data(f"fashion_mnist:{root}"), "val", 28, 1)
    (root / FILES[3]).write_bytes(gzip.compress(b"\x00\x00\x08\x03" + labels[4:]))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz is not an IDX labels file \(bad magic number\)"):
        build_dataset(parse_data(f"fashion_mnist:{root}"), "val", 28, 1)
    (root / FILES[3]).write_bytes(gzip.compress(labels)[:100])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz cannot be read"):
        build_dataset(parse_data(f"fashion_mnist:{root}"), "val", 28, 1)


def test_unpacked_files_and_wrong_counts(fashion_root, tmp_path):
    root = tmp_path / "fm"
    root.mkdir()
    for name in FILES:  # users who unpacked the release have the files without .gz
        (root / name.removesuffix(".gz")).write_bytes(gzip.decompress((fashion_root / name).read_bytes()))
    assert len(build_dataset(parse_data(f"fashion_mnist:{root}"), "val", 28, 1)) == 10_000
    header = np.array([2049, 10], dtype=">u4").tobytes()
    (root / "t10k-labels-idx1-ubyte").write_bytes(header + bytes(10))
    with pytest.raises(DataError, match=r"holds 10000 val images and 10 labels, expected 10000 of each"):
        build_dataset(parse_data(f"fashion_mnist:{root}"), "val", 28, 1)


def test_channel_counts_other_than_one_or_three_are_refused(fashion_root):
    with pytest.raises(DataError, match="grey images feed spaces with in_chans 1 or 3, not 4"):
        build_dataset(parse_data("fashion_mnist"), "val", 28, 4)

"""Data sets: built-in digits, ImageFolder directories, local CIFAR-10/100. Nothing downloads.

- ``digits``: scikit-learn's 1,797 real 8x8 scans of handwritten digits (they ship with
  scikit-learn), upscaled bilinearly to the space's resolution; a fixed train/val split.
- ``imagefolder``: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*``.
- ``synthetic``: random pixels and labels, for smoke tests and throughput benchmarks.
- ``cifar10`` / ``cifar100``: the "python version" folders (``cifar-10-batches-py``,
  ``cifar-100-python``), read with an unpickler that only rebuilds numpy arrays.
- ``fashion_mnist``: the four IDX files of Fashion-MNIST (gzipped or not), by default from
  Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``):
  60,000 train and 10,000 test images of 28x28 grey clothes, 10 classes. ``val`` is the
  test set; minival is 5,000 train images unless ``search_images`` says otherwise.

Splits: ``train``, ``val`` and ``minival``. Architecture search must not choose on the
images it reports on, so ``minival`` is carved from the *train* split: a fixed 10% of
it for digits, ``search_images`` of it for the other kinds (default 10%, at most
10,000), drawn with a fixed seed so every machine and run scores candidates on the same
images. It is read with the validation transform (no augmentation). With
``holdout: true`` the ``train`` split leaves those images out, so the supernet never
trains on the images the search scores it on. ``train_images`` trains on a fixed seeded
draw of the train split (after holdout), so cheap stand-alone runs all learn from the same images.

A path that is missing is a `DataError` naming it, never a download attempt.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

from vitnas.errors import DataError
from vitnas.util.fields import require_bool, require_int

__all__ = [
    "DataConfig",
    "DataError",
    "SPLITS",
    "build_dataset",
    "load_digits",
    "minival_indices",
    "parse_data",
    "trains_on_search_images",
]

DIGITS_VAL_FRACTION = 0.2
DIGITS_MINIVAL_FRACTION = 0.1  # digits: share of the train split that forms minival (144 of 1,438 images)
MINIVAL_FRACTION = 0.1  # other kinds, search_images unset: share of the train split that forms minival ...
MINIVAL_MAX_IMAGES = 10_000  # ... capped at this many images (enough to rank candidates, cheap to score)
_SPLIT_SEED = 20211121  # fixed forever: changing it changes every reported digits accuracy
_MINIVAL_SEED = 20240817  # fixed forever: changing it changes which images every search scores on
_TRAIN_SUBSET_SEED = 20261202  # fixed forever: changing it changes which images a train_images run learns from
KINDS = ("digits", "imagefolder", "cifar10", "cifar100", "fashion_mnist", "synthetic")
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist package
FASHION_MNIST_MINIVAL_IMAGES = 5_000  # fashion_mnist, search_images unset: the minival size
SPLITS = ("train", "val", "minival")


@dataclass(frozen=True)
class DataConfig:
    """Which data, and how training images are augmented (timm's `create_transform` options)."""

    name: str = "digits"  # one of digits, imagefolder, cifar10, cifar100, fashion_mnist, synthetic
    root: str | None = None  # folder of an imagefolder / cifar / fashion_mnist data set (fashion_mnist: Debian's)
    synthetic_size: int = 512  # synthetic: images per split (random pixels, for smoke tests and benchmarks)
    num_classes: int = 10  # synthetic: label range
    augment: dict[str, Any] = field(default_factory=dict)  # extra kwargs for timm.data.create_transform
    holdout: bool = False  # leave the minival (search) images out of the train split the supernet learns from
    search_images: int | None = None  # minival size, seeded draw from train; None: 10% (<= 10,000); digits: None
    train_images: int | None = None  # train on a fixed seeded draw of this many train images (None: all of them)

    def __post_init__(self) -> None:
        if self.name not in KINDS:
            raise DataError(f"data.name: expected one of {', '.join(KINDS)}, got {self.name!r}")
        if self.name == "fashion_mnist" and not self.root:
            object.__setattr__(self, "root", FASHION_MNIST_ROOT)
        if self.name not in ("digits", "synthetic") and not self.root:
            raise DataError(f"data.root: the {self.name} data set needs a root folder")
        for name in ("synthetic_size", "num_classes"):
            require_int(f"data.{name}", getattr(self, name), DataError)
        require_bool("data.holdout", self.holdout, DataError)
        self._check_search_images()
        self._check_train_images()

    def _check_search_images(self) -> None:
        count = self.search_images
        if count is None:
            return
        require_int("data.search_images", count, DataError, what="a positive number of images or null")
        if self.name == "digits":
            raise DataError(f"data.search_images: digits' minival is a fixed {DIGITS_MINIVAL_FRACTION:.0%} of its "
                            f"train split; leave it null (got {count})")
        if self.name == "synthetic":
            _check_minival_size(count, self.synthetic_size, self.holdout)

    def _check_train_images(self) -> None:
        require_int("data.train_images", self.train_images, DataError, optional=True,
                    what="a positive number of images or null")


def trains_on_search_images(config: DataConfig) -> bool:
    """Whether a supernet trained on `config` saw its own minival images (no holdout).

    A search that scores candidates on images the shared weights were fitted to ranks
    them by memorisation as much as by quality, so the search reports it in one line.
    """
    return not config.holdout


def minival_indices(config: DataConfig, train_size: int) -> np.ndarray:
    """Positions in the train split that form minival, in a fixed random order.

    Drawn with numpy from `_MINIVAL_SEED` (never torch's global RNG), so every machine
    and run gets the same images. The order is a seeded permutation, so the first k
    images of minival are themselves a uniform sample of train (``max_images`` and a
    smaller ``search_images`` pick a prefix of a larger minival).

    Raises:
        DataError: `search_images` leaves no image to train on (holdout) or exceeds the train split.
    """
    if config.name == "digits":
        count = round(train_size * DIGITS_MINIVAL_FRACTION)
    elif config.search_images is not None:
        count = config.search_images
        _check_minival_size(count, train_size, config.holdout)
    elif config.name == "fashion_mnist":
        count = min(FASHION_MNIST_MINIVAL_IMAGES, train_size - 1)
    else:
        count = min(MINIVAL_MAX_IMAGES, max(1, round(train_size * MINIVAL_FRACTION)))
        _check_minival_size(count, train_size, config.holdout)
    return np.random.default_rng(_MINIVAL_SEED).permutation(train_size)[:count]


def _check_minival_size(count: int, train_size: int, holdout: bool) -> None:
    if count > train_size or (holdout and count == train_size):
        limit = f"fewer than {train_size} (holdout leaves the rest to train on)" if holdout else f"at most {train_size}"
        raise DataError(f"data.search_images: {count} images, but the train split has {train_size}; use {limit}")


def parse_data(spec: str | DataConfig) -> DataConfig:
    """"digits", "fashion_mnist[:/path]", "cifar10:/path", "cifar100:/path", "imagefolder:/path" or a bare folder path.

    A bare folder path is an ImageFolder.
    """
    if isinstance(spec, DataConfig):
        return spec
    kind, _, root = spec.partition(":")
    if kind in KINDS:
        return DataConfig(name=kind, root=root or None)
    return DataConfig(name="imagefolder", root=spec)


def build_dataset(config: DataConfig, split: str, img_size: int, in_chans: int = 3) -> Dataset:
    """The `split` ("train", "val" or "minival") of a data set, as (image tensor, label) pairs.

    Training splits of image data sets get timm's training transform (random resized
    crop, flip, and whatever `config.augment` adds); validation and minival splits a
    resize and centre crop, so a candidate's search score is not a random draw. minival
    is a `Subset` of the train images (see `minival_indices`); with ``config.holdout``
    the train split is the `Subset` of the rest. Digits and synthetic data stay plain
    tensors (a `TensorDataset`) and are not augmented.
    """
    if split not in SPLITS:
        raise DataError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    dataset = _whole_split(config, split, img_size, in_chans)
    if split == "train" and config.train_images is not None:
        return _train_subset(dataset, config.train_images)
    return dataset


def _whole_split(config: DataConfig, split: str, img_size: int, in_chans: int) -> Dataset:
    if config.name == "digits":
        return TensorDataset(*load_digits(split, img_size, in_chans, holdout=config.holdout))
    if config.name == "synthetic":
        generator = torch.Generator().manual_seed(1 if split == "val" else 0)
        images = torch.randn(config.synthetic_size, in_chans, img_size, img_size, generator=generator)
        labels = torch.randint(config.num_classes, (config.synthetic_size,), generator=generator)
        if split == "val" or (split == "train" and not config.holdout):
            return TensorDataset(images, labels)
        chosen = torch.from_numpy(_train_positions(config, split, config.synthetic_size))
        return TensorDataset(images[chosen], labels[chosen])
    if split == "val":
        return _image_dataset(config, "val", _transform(config, "val", img_size, in_chans), in_chans)
    # minival reads the train images through the validation transform: no augmentation.
    transform = _transform(config, "val" if split == "minival" else split, img_size, in_chans)
    dataset = _image_dataset(config, "train", transform, in_chans)
    if split == "train" and not config.holdout:
        return dataset
    subset = Subset(dataset, _train_positions(config, split, len(dataset)).tolist())
    if hasattr(dataset, "classes"):
        subset.classes = dataset.classes  # training checks the class count against the space through this
    return subset


def _train_subset(dataset: Dataset, count: int) -> Dataset:
    """A fixed draw of `count` images of a train split (after holdout), in ascending order.

    Stand-alone ground truths train many small runs; a subset makes them affordable while
    every run (arch, seed, machine) still learns from the very same images.
    """
    if count > len(dataset):
        raise DataError(f"data.train_images: {count} images, but the train split has {len(dataset)}; "
                        f"use at most {len(dataset)} or null")
    chosen = np.sort(np.random.default_rng(_TRAIN_SUBSET_SEED).permutation(len(dataset))[:count])
    if isinstance(dataset, TensorDataset):
        index = torch.from_numpy(chosen)
        return TensorDataset(*(tensor[index] for tensor in dataset.tensors))
    subset = Subset(dataset, chosen.tolist())
    if hasattr(dataset, "classes"):
        subset.classes = dataset.classes  # training checks the class count against the space through this
    return subset


def _train_positions(config: DataConfig, split: str, train_size: int) -> np.ndarray:
    """Indices into the full train split: minival's (in its seeded order), or train's without them (ascending)."""
    if split == "train" and not config.holdout:
        return np.arange(train_size)
    minival = minival_indices(config, train_size)
    if split == "minival":
        return minival
    keep = np.ones(train_size, dtype=bool)
    keep[minival] = False
    return np.flatnonzero(keep)


def _image_dataset(config: DataConfig, split: str, transform, in_chans: int) -> Dataset:
    root = Path(config.root)
    if config.name == "fashion_mnist":
        return FashionMnistDataset(root, split, transform, in_chans)
    if config.name == "imagefolder":
        from torchvision.datasets import ImageFolder

        folder = root / split
        if not folder.is_dir():
            raise DataError(f"imagefolder: {folder} not found (expected {root}/train/<class>/ and {root}/val/<class>/)")
        return ImageFolder(str(folder), transform=transform)
    return CifarDataset(root, config.name, split, transform)


def load_digits(split: str, img_size: int = 32, in_chans: int = 3, holdout: bool = False) -> tuple[Tensor, Tensor]:
    """Digits images (N, in_chans, img_size, img_size) scaled to [-1, 1], and labels (N,).

    Args:
        split: "train" (1,438 images; 1,294 with `holdout`), "val" (359 images) or
            "minival" (144 images: a fixed 10% of train, in a seeded random order).
        holdout: leave minival's images out of "train" (ignored by the other splits).
    """
    from sklearn.datasets import load_digits as sklearn_digits

    if split not in SPLITS:
        raise DataError(f"digits: split must be one of {', '.join(SPLITS)}, got {split!r}")
    digits = sklearn_digits()
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(digits.target))
    num_val = round(len(order) * DIGITS_VAL_FRACTION)
    chosen = order[:num_val] if split == "val" else order[num_val:]
    if split != "val":
        chosen = chosen[_train_positions(DataConfig(name="digits", holdout=holdout), split, len(chosen))]
    images = torch.from_numpy(digits.images[chosen]).float().div(16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False)
    images = images.sub(0.5).div(0.5).expand(-1, in_chans, -1, -1).contiguous()
    return images, torch.from_numpy(digits.target[chosen]).long()


def num_classes_of(config: DataConfig) -> int | None:
    """Class count a data set implies, where it is fixed (None for ImageFolder)."""
    fixed = {"digits": 10, "cifar10": 10, "cifar100": 100, "fashion_mnist": 10, "synthetic": config.num_classes}
    return fixed.get(config.name)


def normalisation(config: DataConfig, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) per channel that the data's transforms subtract and divide by.

    Fashion-MNIST uses its own grey-level statistics (replicated when the space asks
    for three channels); the other image data sets timm's ImageNet defaults.
    """
    if config.name == "fashion_mnist":
        return (FashionMnistDataset.MEAN,) * in_chans, (FashionMnistDataset.STD,) * in_chans
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)


def _transform(config: DataConfig, split: str, img_size: int, in_chans: int = 3):
    from timm.data import create_transform

    mean, std = normalisation(config, in_chans)
    if split == "train":
        augment = {**FashionMnistDataset.AUGMENT, **config.augment} if config.name == "fashion_mnist" else \
            config.augment
        return create_transform(img_size, is_training=True, mean=mean, std=std, **augment)
    return create_transform(img_size, is_training=False, crop_pct=1.0 if img_size <= 64 else None, mean=mean, std=std)


class CifarDataset(Dataset):
    """CIFAR-10/100 from the python-version folder, without executing pickled code."""

    FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
    FILES = {
        ("cifar10", "train"): [f"data_batch_{i}" for i in range(1, 6)],
        ("cifar10", "val"): ["test_batch"],
        ("cifar100", "train"): ["train"],
        ("cifar100", "val"): ["test"],
    }

    def __init__(self, root: Path, name: str, split: str, transform) -> None:
        folder = root / self.FOLDERS[name] if (root / self.FOLDERS[name]).is_dir() else root
        images, labels = [], []
        for file_name in self.FILES[(name, split)]:
            path = folder / file_name
            if not path.is_file():
                raise DataError(f"{name}: {path} not found (expected the python version of {name.upper()} in {root})")
            batch = _safe_unpickle(path)
            label_key = b"labels" if name == "cifar10" else b"fine_labels"
            if b"data" not in batch or label_key not in batch:
                raise DataError(f"{name}: {path} is not a CIFAR batch (no data / labels)")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.extend(int(label) for label in batch[label_key])
        self.images = np.concatenate(images)
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


class FashionMnistDataset(Dataset):
    """Fashion-MNIST from its four original IDX files, checked before use.

    The files are read whole into uint8 arrays (47 MB for train): 28x28 images are
    cheaper to keep than to decode per item. Each item is a PIL grey image through the
    split's transform, converted to RGB first when the space asks for three channels.
    """

    FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
             "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000)}
    CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
    MEAN, STD = 0.2860, 0.3530  # the train images' grey-level statistics, pixels in [0, 1]
    # Clothes at 28 px lose their shape under timm's default crop (scale 0.08-1: 11 points worse in
    # shared/review/fashion_mnist_calibration.md) and have no colour to jitter; a recipe's augment overrides.
    AUGMENT = {"scale": (0.75, 1.0), "ratio": (0.9, 1.1), "color_jitter": 0.0}
    _MAGIC = {"images": 2051, "labels": 2049}
    _HINT = ("install Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist) or point "
             "data.root at a folder with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
             "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")

    def __init__(self, root: Path, split: str, transform, in_chans: int = 1) -> None:
        if in_chans not in (1, 3):
            raise DataError(f"fashion_mnist: grey images feed spaces with in_chans 1 or 3, not {in_chans}")
        image_name, label_name, expected = self.FILES[split]
        self.images = _read_idx(root, image_name, "images", self._HINT)
        labels = _read_idx(root, label_name, "labels", self._HINT)
        if len(self.images) != expected or len(labels) != expected:
            raise DataError(f"fashion_mnist: {root} holds {len(self.images)} {split} images and {len(labels)} labels, "
                            f"expected {expected} of each; {self._HINT}")
        self.labels = labels.astype(np.int64).tolist()
        self.classes = list(self.CLASSES)
        self.transform = transform
        self.mode = "RGB" if in_chans == 3 else "L"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image

        image = Image.fromarray(self.images[index])  # a 2-D uint8 array is a grey ("L") image
        return self.transform(image.convert(self.mode) if self.mode != "L" else image), self.labels[index]


def _read_idx(root: Path, stem: str, kind: str, hint: str) -> np.ndarray:
    """One IDX file (``stem.gz`` or ``stem``) as a uint8 array, its magic number and length checked.

    IDX: a big-endian magic (2051 images, 2049 labels), the count, for images rows and
    columns, then the bytes. A short file is a truncated download, named as such.
    """
    import gzip

    path = next((root / name for name in (f"{stem}.gz", stem) if (root / name).is_file()), None)
    if path is None:
        raise DataError(f"fashion_mnist: {root / (stem + '.gz')} not found; {hint}")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"fashion_mnist: {path} cannot be read ({error}); {hint}") from None
    dims = 3 if kind == "images" else 1
    header = 4 * (1 + dims)
    if len(raw) < header or int.from_bytes(raw[:4], "big") != FashionMnistDataset._MAGIC[kind]:
        raise DataError(f"fashion_mnist: {path} is not an IDX {kind} file (bad magic number); {hint}")
    shape = tuple(int.from_bytes(raw[4 * i: 4 * i + 4], "big") for i in range(1, 1 + dims))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"fashion_mnist: {path} is truncated ({len(raw) - header} bytes of data for "
                        f"{' x '.join(map(str, shape))}); {hint}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain containers; refuses every other class."""

    ALLOWED = {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    } | {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _safe_unpickle(path: Path) -> dict:
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DataError(f"{path}: not a readable CIFAR batch ({error})") from None

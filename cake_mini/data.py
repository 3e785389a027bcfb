"""Data: toy 2D problems, real image data sets as preprocessed tensors, and labelled stand-ins.

    X, y = toy2d("moons", n=1000, noise=0.1)          # X (n, 2) float32, y (n,) int64
    train = load_dataset("fashion-mnist", "train")     # TensorDataset: (54000, 1, 32, 32), (54000,)
    fake = stand_in("cifar10", "train", n=2000)        # random, class-structured: NOT real data

Image data sets come back whole as float32 tensors, already transformed as in the paper, so
training loops can keep them on the device:

* mnist / fashion-mnist: 28x28 brought to 32x32 in pixel space, scaled to [0, 1], then
  normalised (mean 0.1307 / std 0.3081 for MNIST, 0.5 / 0.5 for FashionMNIST). ``resize="pad"``
  (the default) adds 2 background (0) pixels per side, so the border equals the normalised
  background value; ``resize="bilinear"`` stretches the image as the CAKE authors'
  ``transforms.Resize(32)`` does, so the object reaches the border.
* svhn / cifar10: 3x32x32, per-channel normalisation (``DATASET_INFO``).
* digits: sklearn's bundled 8x8 digits, 0..16 scaled to [0, 1], normalised with 0.5 / 0.5.

Splits: "train" and "val" are a fixed-seed (0) 90/10 split of the official training set,
"full-train" is all of it, "test" is the official test set. digits has no official split:
a fixed-seed 70/10/20 train/val/test split, with "full-train" = train + val.

Files are looked up locally (see ``load_dataset``); a download is attempted only if nothing is
found, and if that fails ``DatasetNotFoundError`` says where to put which files. There is never
a silent fallback to fake data: ``stand_in`` must be asked for by name.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

# -----------------------------------------------------------------------------
# toy 2D data

TOY2D_NAMES: tuple[str, ...] = ("moons", "circles", "blobs", "checkerboard", "spirals")
_TOY2D_DEFAULT_CLASSES = {"moons": 2, "circles": 2, "blobs": 3, "checkerboard": 2, "spirals": 3}


def toy2d(name: str, n: int = 1000, *, noise: float = 0.1, seed: int = 0,
          num_classes: int | None = None, offset: tuple[float, float] = (0.0, 0.0)) -> tuple[Tensor, Tensor]:
    """A 2D classification problem, deterministic in ``seed``, roughly inside [-3, 3]^2 + offset.

    Args:
        name: one of ``TOY2D_NAMES``:
            moons (2 interleaved half circles), circles (radius 2 = class 0 around radius 1 =
            class 1), blobs (Gaussian clusters with std 0.5 on a circle of radius 2),
            checkerboard (uniform in [-2, 2]^2, unit cells, class = (i + j) mod C),
            spirals (C interleaved spiral arms).
        n: number of points; classes are balanced (counts differ by at most one).
        noise: std of isotropic Gaussian noise added to every point.
        seed: seed of the torch.Generator that makes the data.
        num_classes: C; only blobs, spirals, checkerboard accept values other than the
            default (2 for moons/circles/checkerboard, 3 for blobs/spirals).
        offset: (dx, dy) added to every point, e.g. to move the decision boundary away from
            the origin where N(0, I) synthesis noise starts.

    Returns:
        X: float32 (n, 2), y: int64 (n,) with labels in 0..C-1, in random order.
    """
    if name not in TOY2D_NAMES:
        raise ValueError(f"Unknown toy2d name {name!r}; valid names are {', '.join(TOY2D_NAMES)}.")
    C = _TOY2D_DEFAULT_CLASSES[name] if num_classes is None else int(num_classes)
    if name in ("moons", "circles") and C != 2:
        raise ValueError(f"toy2d({name!r}) has exactly 2 classes, got num_classes={num_classes}; "
                         f"use 'blobs' or 'spirals' for more classes.")
    if C < 2:
        raise ValueError(f"toy2d needs num_classes >= 2, got {num_classes}.")
    if name == "checkerboard" and C > 7:
        raise ValueError(f"toy2d('checkerboard') has 4x4 cells, so at most 7 classes; got {C}.")
    if len(offset) != 2:
        raise ValueError(f"offset must be a pair (dx, dy), got {offset!r}.")

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    u = torch.rand(n, generator=g)  # position along each class's curve, in [0, 1)
    if name == "moons":
        t = math.pi * u
        upper = torch.stack([torch.cos(t), torch.sin(t)], 1)
        lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)
        X = torch.where((y == 0)[:, None], upper, lower)
        X = 1.5 * (X - torch.tensor([0.5, 0.25]))
    elif name == "circles":
        t = 2 * math.pi * u
        r = torch.where(y == 0, 2.0, 1.0)
        X = r[:, None] * torch.stack([torch.cos(t), torch.sin(t)], 1)
    elif name == "blobs":
        angle = 2 * math.pi * y / C + math.pi / 2
        X = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
        X = X + 0.5 * torch.randn(n, 2, generator=g)
    elif name == "checkerboard":
        # 4x4 unit cells on [-2, 2]^2, cell (i, j) has class (i + j) mod C; each point picks a
        # random cell of its own class, then a uniform position inside it
        ij = torch.cartesian_prod(torch.arange(4), torch.arange(4))
        cell_class = ij.sum(1) % C
        X = torch.empty(n, 2)
        for c in range(C):
            cells = ij[cell_class == c]
            mask = y == c
            pick = torch.randint(len(cells), (int(mask.sum()),), generator=g)
            X[mask] = cells[pick].float()
        X = X + torch.rand(n, 2, generator=g) - 2
    else:  # spirals
        r = 0.2 + 2.3 * u
        t = 3 * math.pi * u + 2 * math.pi * y / C
        X = r[:, None] * torch.stack([torch.cos(t), torch.sin(t)], 1)
    X = X + noise * torch.randn(n, 2, generator=g) + torch.tensor(offset, dtype=X.dtype)
    order = torch.randperm(n, generator=g)
    return X[order].float().contiguous(), y[order].long().contiguous()


# -----------------------------------------------------------------------------
# data set descriptions


class DatasetInfo(NamedTuple):
    """Shape, normalisation and class names (in label order, as torchvision's ``classes``)."""

    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]


_DIGITS = tuple(str(d) for d in range(10))
DATASET_INFO: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(1, 32, 10, (0.1307,), (0.3081,), _DIGITS),
    "fashion-mnist": DatasetInfo(1, 32, 10, (0.5,), (0.5,), (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "svhn": DatasetInfo(3, 32, 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), _DIGITS),
    "cifar10": DatasetInfo(3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")),
    "digits": DatasetInfo(1, 8, 10, (0.5,), (0.5,), _DIGITS),
}
SPLITS: tuple[str, ...] = ("train", "val", "test", "full-train")
_ALIASES = {"fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10"}


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files are neither on disk nor downloadable from here."""


def _canonical(name: str) -> str:
    key = name.lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASET_INFO:
        raise ValueError(f"Unknown dataset {name!r}; valid names are {', '.join(DATASET_INFO)}.")
    return key


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; valid splits are {', '.join(SPLITS)}.")


def _normalize(x: Tensor, info: DatasetInfo) -> Tensor:
    """(N, C, H, W) in [0, 1] -> normalised with the data set's per-channel mean and std."""
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    return (x - mean) / std


def denormalize(x: Tensor, name: str) -> Tensor:
    """Undo the data set's normalisation and clamp to [0, 1] for display.

    x: (..., C, H, W) with C = the data set's channel count. Returns a tensor of the same shape.
    """
    info = DATASET_INFO[_canonical(name)]
    if x.dim() < 3 or x.shape[-3] != info.in_channels:
        raise ValueError(f"denormalize({name!r}) expected (..., {info.in_channels}, H, W), "
                         f"got shape {tuple(x.shape)}.")
    mean = torch.tensor(info.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.tensor(info.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1)


def _split_indices(n: int, fractions: tuple[float, ...], seed: int = 0) -> list[Tensor]:
    """Fixed-seed random partition of range(n) into parts of the given fractions (sorted indices)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sizes = [round(f * n) for f in fractions[1:]]
    sizes = [n - sum(sizes)] + sizes
    return [part.sort().values for part in torch.split(perm, sizes)]


def _select(x: Tensor, y: Tensor, split: str, official_test: bool) -> tuple[Tensor, Tensor]:
    """Pick train / val / full-train out of the official training set (test is passed through)."""
    if official_test or split == "full-train":
        return x, y
    train_idx, val_idx = _split_indices(len(y), (0.9, 0.1))
    idx = train_idx if split == "train" else val_idx
    return x[idx], y[idx]


# -----------------------------------------------------------------------------
# locating files

# Debian's dataset packages (apt-get install dataset-fashion-mnist); tests monkeypatch this
DEBIAN_DIRS: dict[str, Path] = {
    "fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
    "mnist": Path("/usr/share/datasets/mnist"),
}
_TORCHVISION_DIR = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
_IDX_FILES = {  # official split -> (images, labels), without the .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGE_FILES = {  # what torchvision's SVHN / CIFAR10 classes read, relative to their root
    "svhn": {"train": "train_32x32.mat", "test": "test_32x32.mat"},
    "cifar10": {"train": "cifar-10-batches-py/data_batch_1", "test": "cifar-10-batches-py/test_batch"},
}


def _cache_dir() -> Path:
    return Path.home() / ".cache" / "cake_mini"


def _candidate_dirs(name: str, root: str | os.PathLike | None) -> list[Path]:
    """Directories searched for a data set's files, in order (duplicates removed)."""
    bases = [Path(root)] if root is not None else []
    env = os.environ.get("CAKE_MINI_DATA")
    if env:
        bases += [Path(env), Path(env) / name]
    dirs = []
    for base in bases:
        dirs.append(base)
        if name in _TORCHVISION_DIR:
            dirs.append(base / _TORCHVISION_DIR[name] / "raw")
    if name in DEBIAN_DIRS:
        dirs.append(DEBIAN_DIRS[name])
    cache = _cache_dir()
    dirs += [cache / name, cache]
    if name in _TORCHVISION_DIR:
        dirs.append(cache / _TORCHVISION_DIR[name] / "raw")
    return list(dict.fromkeys(dirs))


def _find_idx(directory: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` in ``directory`` (also the 'train-images.idx3-ubyte' spelling)."""
    for s in (stem, stem.replace("-idx", ".idx")):
        for candidate in (directory / (s + ".gz"), directory / s):
            if candidate.is_file():
                return candidate
    return None


def _locate(name: str, split: str, root) -> tuple[Path, ...] | None:
    """Paths of the files for the official ``split`` ('train' or 'test'), or None."""
    for d in _candidate_dirs(name, root):
        if name in _TORCHVISION_DIR:
            found = tuple(_find_idx(d, stem) for stem in _IDX_FILES[split])
            if all(found):
                return found
        elif (d / _IMAGE_FILES[name][split]).is_file():
            return (d,)
    return None


def _torchvision_download(name: str, target: Path) -> None:
    """Download the data set with torchvision into ``target`` (tests replace this function)."""
    import torchvision.datasets as tvd

    target.mkdir(parents=True, exist_ok=True)
    if name in ("mnist", "fashion-mnist"):
        cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
        cls(str(target), train=True, download=True)  # fetches train and test files
    elif name == "svhn":
        for split in ("train", "test"):
            tvd.SVHN(str(target), split=split, download=True)
    else:
        tvd.CIFAR10(str(target), train=True, download=True)


def _not_found_message(name: str, split: str, root, reason: str) -> str:
    searched = "\n".join(f"  - {d}" for d in _candidate_dirs(name, root))
    if name in _TORCHVISION_DIR:
        files = ", ".join(f"{f}[.gz]" for f in _IDX_FILES[split])
        what = f"the IDX files {files}"
    else:
        what = f"torchvision's {_IMAGE_FILES[name][split]!r} (relative to the data directory)"
    lines = [
        f"Could not find the {name!r} data set ({split} files); {reason}.",
        f"Searched:\n{searched}",
        "To fix, do one of:",
        f"  - put {what} in a directory and pass root=... or set CAKE_MINI_DATA to it "
        f"(CAKE_MINI_DATA/{name} also works);",
    ]
    if name == "fashion-mnist":
        lines.append("  - on Debian/Ubuntu: apt-get install dataset-fashion-mnist "
                     "(installs /usr/share/datasets/fashion-mnist);")
    lines.append(f"  - run load_dataset({name!r}) once on a machine with internet access "
                 f"(download=True saves to {Path(root) if root else _cache_dir()}) and copy the files.")
    return "\n".join(lines)


def _files_for(name: str, official: str, root, download: bool) -> tuple[Path, ...]:
    found = _locate(name, official, root)
    if found is not None:
        return found
    if not download:
        raise DatasetNotFoundError(_not_found_message(name, official, root, "download=False"))
    target = Path(root) if root is not None else _cache_dir()
    try:
        _torchvision_download(name, target)
    except Exception as err:  # offline, blocked mirror, checksum mismatch, ...
        reason = f"the download into {target} failed ({type(err).__name__}: {err})"
        raise DatasetNotFoundError(_not_found_message(name, official, root, reason)) from err
    found = _locate(name, official, root)
    if found is None:
        raise DatasetNotFoundError(_not_found_message(name, official, root,
                                                      "the download did not produce the files"))
    return found


# -----------------------------------------------------------------------------
# reading and decoding files (raw arrays cached in memory)


@functools.lru_cache(maxsize=8)
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or raw, into a read-only numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (expected magic 0x0000TTDD, got {data[:4].hex()}).")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    dtype, ndim = data[2], data[3]
    if dtype not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type 0x{dtype:02x}.")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=dtypes[dtype], offset=4 + 4 * ndim)
    if array.size != math.prod(shape):
        raise ValueError(f"{path}: header says shape {shape} but holds {array.size} values (truncated?).")
    return array.reshape(shape)


@functools.lru_cache(maxsize=4)
def _read_torchvision(name: str, directory: str, official: str) -> tuple[np.ndarray, np.ndarray]:
    """SVHN / CIFAR-10 via torchvision's readers: uint8 (N, 3, 32, 32) and int64 (N,)."""
    import torchvision.datasets as tvd

    if name == "svhn":
        ds = tvd.SVHN(directory, split=official, download=False)
        return ds.data, np.asarray(ds.labels, dtype=np.int64)
    ds = tvd.CIFAR10(directory, train=official == "train", download=False)
    return ds.data.transpose(0, 3, 1, 2), np.asarray(ds.targets, dtype=np.int64)


def _load_digits() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(digits.target, dtype=torch.int64)


RESIZES: tuple[str, ...] = ("pad", "bilinear")


def load_dataset(name: str, split: str = "train", *, root: str | os.PathLike | None = None,
                 download: bool = True, resize: str = "pad") -> TensorDataset:
    """A real data set, preprocessed, as a TensorDataset of (x float32 (N, C, H, W), y int64 (N,)).

    Shapes: mnist / fashion-mnist (N, 1, 32, 32); svhn / cifar10 (N, 3, 32, 32); digits (N, 1, 8, 8).
    Sizes for fashion-mnist: train 54000, val 6000, full-train 60000, test 10000.

    Files are searched in order: ``root``, ``$CAKE_MINI_DATA``, ``$CAKE_MINI_DATA/<name>`` (each also
    in torchvision's ``<dir>/MNIST/raw`` / ``<dir>/FashionMNIST/raw`` layout), Debian's
    ``/usr/share/datasets/<name>``, then ``~/.cache/cake_mini/<name>`` and ``~/.cache/cake_mini``.
    MNIST-type data are the four IDX files (``train-images-idx3-ubyte`` etc., raw or .gz); SVHN and
    CIFAR-10 are torchvision's files (``train_32x32.mat``, ``cifar-10-batches-py/``).
    If nothing is found and ``download``, torchvision downloads into ``root`` (or the cache);
    if that fails, ``DatasetNotFoundError`` explains how to provide the files.
    """
    name = _canonical(name)
    _check_split(split)
    info = DATASET_INFO[name]

    if name == "digits":
        x, y = _load_digits()
        parts = _split_indices(len(y), (0.7, 0.1, 0.2))
        idx = {"train": parts[0], "val": parts[1], "test": parts[2],
               "full-train": torch.cat(parts[:2]).sort().values}[split]
        return TensorDataset(_normalize(x[idx], info), y[idx])

    official = "test" if split == "test" else "train"
    files = _files_for(name, official, root, download)
    if name in _TORCHVISION_DIR:
        images, labels = (read_idx(f) for f in files)
        images = _to_32(images, info.image_size, resize)
    else:
        images, labels = _read_torchvision(name, str(files[0]), official)
    x = torch.from_numpy(np.ascontiguousarray(images))  # uint8 (N, C, 32, 32)
    y = torch.from_numpy(labels.astype(np.int64))
    x, y = _select(x, y, split, official_test=split == "test")
    x = x.float().div_(255.0)
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    x.sub_(mean).div_(std)
    return TensorDataset(x, y.contiguous())


def _to_32(images: np.ndarray, size: int, resize: str) -> np.ndarray:
    """uint8 (N, 28, 28) -> uint8 (N, 1, size, size), padded with background or resized."""
    if resize == "pad":
        pad = (size - images.shape[-1]) // 2
        return np.pad(images, ((0, 0), (pad, pad), (pad, pad)))[:, None]
    from torchvision.transforms.v2 import functional as TF

    resized = TF.resize(torch.from_numpy(np.array(images))[:, None], [size, size],
                        interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return resized.numpy()


# -----------------------------------------------------------------------------
# stand-in data (explicitly requested, never a fallback)

_STAND_IN_SIZES = {"train": 5000, "val": 500, "test": 1000, "full-train": 5500}


def stand_in(name: str, split: str = "train", n: int | None = None, seed: int = 0) -> TensorDataset:
    """Random, learnable data with the shape and class count of ``name``. NOT the real data set.

    For smoke tests of code paths whose real data is not available here (e.g. SVHN, CIFAR-10).
    Each class is a fixed random low-frequency pattern (a 4x4 grid per channel, bilinearly
    upsampled), shared by all splits for the same ``seed``; a sample is its class's pattern times
    a random contrast in [0.5, 1.5] plus pixel noise of std 0.5, in the normalised scale. A teacher
    trained on the "train" split reaches high accuracy on "test".

    Returns a TensorDataset of float32 (n, C, H, W) and int64 (n,); n defaults to
    5000 / 500 / 1000 / 5500 for train / val / test / full-train.
    """
    info = DATASET_INFO[_canonical(name)]
    _check_split(split)
    n = _STAND_IN_SIZES[split] if n is None else int(n)
    C, S, K = info.in_channels, info.image_size, info.num_classes
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(K, C, 4, 4, generator=g)
    patterns = torch.nn.functional.interpolate(coarse, size=(S, S), mode="bilinear", align_corners=False)
    patterns = patterns / patterns.flatten(1).std(1).view(-1, 1, 1, 1)  # unit std per class
    g.manual_seed(seed * 1000 + 1 + SPLITS.index(split))  # samples differ between splits
    y = torch.randint(K, (n,), generator=g)
    contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
    x = contrast * patterns[y] + 0.5 * torch.randn(n, C, S, S, generator=g)
    return TensorDataset(x, y)

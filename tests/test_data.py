"""Tests for cake_mini.data: toy 2D data, data set loading and lookup, stand-ins.

Nothing here touches the network: downloads are replaced by functions that fail or write files.
"""

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cake_mini import data
from cake_mini.data import (
    DATASET_INFO, TOY2D_NAMES, DatasetNotFoundError, denormalize, load_dataset, stand_in, toy2d,
)

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


# -----------------------------------------------------------------------------
# toy 2D


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_toy2d_shapes_determinism_offset(name):
    X, y = toy2d(name, n=600)
    assert X.shape == (600, 2) and X.dtype == torch.float32
    assert y.shape == (600,) and y.dtype == torch.int64
    assert X.abs().max() < 4.5
    counts = torch.bincount(y)
    assert counts.max() - counts.min() <= 1  # balanced
    X2, y2 = toy2d(name, n=600)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    X3, _ = toy2d(name, n=600, seed=1)
    assert not torch.equal(X, X3)
    Xo, yo = toy2d(name, n=600, offset=(3.0, -1.0))
    assert torch.equal(y, yo)
    assert torch.allclose(Xo, X + torch.tensor([3.0, -1.0]), atol=1e-5)


def test_toy2d_num_classes():
    for name in ("spirals", "blobs"):
        assert toy2d(name, n=100)[1].unique().tolist() == [0, 1, 2]
        assert toy2d(name, n=100, num_classes=5)[1].unique().tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="2 classes"):
        toy2d("moons", num_classes=3)


def test_toy2d_geometry_without_noise():
    X, y = toy2d("circles", n=200, noise=0.0)
    radius = X.norm(dim=1)
    assert torch.allclose(radius[y == 0], torch.tensor(2.0)) and torch.allclose(radius[y == 1], torch.tensor(1.0))
    X, y = toy2d("checkerboard", n=500, noise=0.0)
    assert torch.equal(y, (torch.floor(X).sum(1).long() % 2))


def test_toy2d_unknown_name():
    with pytest.raises(ValueError, match="moons"):
        toy2d("swissroll")


# -----------------------------------------------------------------------------
# digits (bundled with sklearn)


def test_digits_splits():
    sets = {s: load_dataset("digits", s).tensors for s in ("train", "val", "test", "full-train")}
    sizes = {s: len(y) for s, (x, y) in sets.items()}
    assert sizes == {"train": 1258, "val": 180, "test": 359, "full-train": 1438}
    x, y = sets["train"]
    assert x.shape == (1258, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() == -1.0 and x.max() == 1.0  # 0..16 -> [0, 1] -> mean 0.5 std 0.5
    assert DATASET_INFO["digits"][:3] == (1, 8, 10)
    train, val, test = data._split_indices(1797, (0.7, 0.1, 0.2))
    all_idx = torch.cat([train, val, test])
    assert len(all_idx.unique()) == 1797  # disjoint and complete
    full = load_dataset("digits", "full-train").tensors[0]
    assert torch.equal(full.sum(0), sets["train"][0].sum(0) + sets["val"][0].sum(0))


# -----------------------------------------------------------------------------
# MNIST-type IDX files


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def _write_mnist_files(directory: Path, n_train=20, n_test=6, gz=False):
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.full((n, 28, 28), 255, dtype=np.uint8)  # white image, black pad must appear
        _write_idx(directory / f"{prefix}-images-idx3-ubyte{ext}", images)
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte{ext}", rng.integers(0, 10, n))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Debian dirs, empty home and CAKE_MINI_DATA, and downloads that fail."""
    monkeypatch.setattr(data, "DEBIAN_DIRS", {})
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAKE_MINI_DATA", str(tmp_path / "env"))

    def no_network(name, target):
        raise OSError("no network in tests")

    monkeypatch.setattr(data, "_torchvision_download", no_network)
    return tmp_path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_from_root(offline, gz):
    root = offline / "root"
    _write_mnist_files(root, gz=gz)
    x, y = load_dataset("mnist", "full-train", root=root).tensors
    assert x.shape == (20, 1, 32, 32) and y.shape == (20,)
    background = (0 - 0.1307) / 0.3081
    foreground = (1 - 0.1307) / 0.3081
    assert torch.allclose(x[:, :, :2], torch.tensor(background))  # padded border
    assert torch.allclose(x[:, :, :, -2:], torch.tensor(background))
    assert torch.allclose(x[:, :, 2:30, 2:30], torch.tensor(foreground))
    assert [len(load_dataset("mnist", s, root=root)) for s in ("train", "val", "test")] == [18, 2, 6]


@pytest.mark.parametrize("layout", ["{env}", "{env}/fashion-mnist", "{env}/FashionMNIST/raw",
                                    "{home}/.cache/cake_mini/fashion-mnist"])
def test_idx_lookup_locations(offline, layout):
    directory = Path(layout.format(env=offline / "env", home=offline / "home"))
    _write_mnist_files(directory, n_train=10, gz=True)
    assert len(load_dataset("fashion-mnist", "full-train")) == 10


def test_download_is_used_when_nothing_found(offline, monkeypatch):
    calls = []

    def fake_download(name, target):  # writes where torchvision would
        calls.append((name, target))
        _write_mnist_files(target / "MNIST" / "raw", n_train=10, gz=True)

    monkeypatch.setattr(data, "_torchvision_download", fake_download)
    assert len(load_dataset("mnist", "test")) == 6
    assert calls == [("mnist", offline / "home" / ".cache" / "cake_mini")]


@pytest.mark.parametrize("name,expected", [("fashion-mnist", "train-images-idx3-ubyte"),
                                           ("cifar10", "cifar-10-batches-py"),
                                           ("svhn", "train_32x32.mat")])
def test_missing_dataset_offline_explains_fix(offline, name, expected):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, "train", root=offline / "empty")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "CAKE_MINI_DATA" in message and expected in message
    assert "no network in tests" in message and str(offline / "empty") in message
    if name == "fashion-mnist":
        assert "apt-get install dataset-fashion-mnist" in message


def test_download_false_never_downloads(offline, monkeypatch):
    def must_not_run(name, target):
        raise AssertionError("download attempted")

    monkeypatch.setattr(data, "_torchvision_download", must_not_run)
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        load_dataset("mnist", download=False)


def test_read_idx_rejects_other_files(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(bad)


@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian(monkeypatch):
    monkeypatch.delenv("CAKE_MINI_DATA", raising=False)
    sets = {s: load_dataset("fashion-mnist", s).tensors for s in ("train", "val", "test")}
    assert {s: tuple(x.shape) for s, (x, _) in sets.items()} == {
        "train": (54000, 1, 32, 32), "val": (6000, 1, 32, 32), "test": (10000, 1, 32, 32)}
    for x, y in sets.values():
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        border = torch.cat([x[:, :, :2].flatten(), x[:, :, -2:].flatten(),
                            x[:, :, :, :2].flatten(), x[:, :, :, -2:].flatten()])
        assert (border == -1.0).all()  # (0 - 0.5) / 0.5
        assert -1.0 <= x.min() and x.max() <= 1.0
    assert torch.bincount(sets["test"][1]).tolist() == [1000] * 10
    assert (torch.bincount(sets["train"][1]) + torch.bincount(sets["val"][1])).tolist() == [6000] * 10


# -----------------------------------------------------------------------------
# stand-ins, normalisation, names


@pytest.mark.parametrize("name", list(DATASET_INFO))
def test_stand_in_shapes(name):
    channels, size, classes = DATASET_INFO[name][:3]
    x, y = stand_in(name, "train", n=50).tensors
    assert x.shape == (50, channels, size, size) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and 0 <= y.min() and y.max() < classes
    assert torch.equal(x, stand_in(name, "train", n=50).tensors[0])
    assert len(stand_in(name, "val")) == 500


def test_stand_in_is_learnable_across_splits():
    # nearest class mean, fitted on train, must classify test well: classes share patterns
    x, y = stand_in("cifar10", "train", n=1000).tensors
    xt, yt = stand_in("cifar10", "test", n=300).tensors
    means = torch.stack([x[y == c].mean(0) for c in range(10)]).flatten(1)
    pred = torch.cdist(xt.flatten(1), means).argmin(1)
    assert (pred == yt).float().mean() > 0.9
    assert not torch.equal(xt[:10], x[:10])


def test_denormalize():
    assert torch.allclose(denormalize(torch.full((2, 1, 4, 4), -1.0), "fashion-mnist"), torch.tensor(0.0))
    mean, std = torch.tensor(DATASET_INFO["cifar10"].mean), torch.tensor(DATASET_INFO["cifar10"].std)
    x = ((0.25 - mean) / std).view(3, 1, 1).expand(3, 4, 4)
    assert torch.allclose(denormalize(x, "cifar10"), torch.tensor(0.25), atol=1e-6)
    assert denormalize(torch.full((1, 1, 2, 2), 50.0), "mnist").max() == 1.0
    with pytest.raises(ValueError, match="3, H, W"):
        denormalize(torch.zeros(2, 1, 4, 4), "svhn")


def test_unknown_names_and_splits():
    with pytest.raises(ValueError, match="fashion-mnist"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="full-train"):
        load_dataset("digits", "validation")
    with pytest.raises(ValueError, match="cifar10"):
        stand_in("cifar100")
    assert math.isclose(DATASET_INFO["fashion-mnist"].mean[0], 0.5)


def test_every_data_set_names_its_classes_in_label_order():
    torchvision = pytest.importorskip("torchvision")
    for name, info in DATASET_INFO.items():
        assert len(info.class_names) == info.num_classes == len(set(info.class_names)), name
    assert DATASET_INFO["fashion-mnist"].class_names == tuple(torchvision.datasets.FashionMNIST.classes)
    assert DATASET_INFO["mnist"].class_names == tuple(c[0] for c in torchvision.datasets.MNIST.classes)

"""Data loading and federated splitting.

The torchvision data sets are exercised with tiny files written in their genuine on-disk
formats (idx ubyte files, CIFAR pickle batches) under ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from aflqueue.errors import ValidationError
from aflqueue.fl import data as D
from aflqueue.fl.models import MODEL_NAMES, build_model

# --------------------------------------------------------------------------------------------
# writers for the real formats


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format (LeCun): magic 0x0000 <type 0x08 = ubyte> <ndim>, big-endian uint32 dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def fake_images(n: int, seed: int, shape: tuple[int, ...] = (28, 28)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def write_mnist_like(root: Path, folder: str, n_train: int = 5, n_test: int = 3, num_classes: int = 10,
                     prefix: tuple[str, str] = ("train", "t10k")) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": fake_images(n_train, 2),
        "y_train": rng.integers(0, num_classes, n_train).astype(np.uint8),
        "x_test": fake_images(n_test, 3),
        "y_test": rng.integers(0, num_classes, n_test).astype(np.uint8),
    }
    arrays["y_train"][0] = num_classes - 1  # the largest label must be accepted
    raw = root / folder / "raw"
    for split, pre in zip(("train", "test"), prefix):
        write_idx(raw / f"{pre}-images-idx3-ubyte", arrays[f"x_{split}"])
        write_idx(raw / f"{pre}-labels-idx1-ubyte", arrays[f"y_{split}"])
    return arrays


def cifar_batch(n: int, seed: int, label_key: str, num_classes: int) -> dict:
    rng = np.random.default_rng(seed)
    batch = {
        # One row per image: 1024 red, then 1024 green, then 1024 blue values, row-major.
        "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key: [int(v) for v in rng.integers(0, num_classes, n)],
        "batch_label": f"batch {seed}",
        "filenames": [f"img{seed}_{i}.png" for i in range(n)],
    }
    if label_key == "fine_labels":
        batch["coarse_labels"] = [v % 20 for v in batch[label_key]]
    return batch


def write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path) -> tuple[list[dict], dict]:
    folder = root / "cifar-10-batches-py"
    train = [cifar_batch(2, 10 + i, "labels", 10) for i in range(5)]
    for i, batch in enumerate(train, start=1):
        write_pickle(folder / f"data_batch_{i}", batch)
    test = cifar_batch(3, 20, "labels", 10)
    write_pickle(folder / "test_batch", test)
    write_pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072})
    return train, test


def write_cifar100(root: Path) -> tuple[dict, dict]:
    folder = root / "cifar-100-python"
    train, test = cifar_batch(4, 30, "fine_labels", 100), cifar_batch(2, 31, "fine_labels", 100)
    train["fine_labels"][0] = 99
    write_pickle(folder / "train", train)
    write_pickle(folder / "test", test)
    write_pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                   "coarse_label_names": [f"g{i}" for i in range(20)]})
    return train, test


def cifar_chw(batch: dict) -> np.ndarray:
    return batch["data"].reshape(-1, 3, 32, 32)


# --------------------------------------------------------------------------------------------
# Dataset container


def _toy(n: int = 6, classes: int = 3) -> D.Dataset:
    x = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    return D.Dataset(x, torch.arange(n) % classes, classes, "toy")


def test_dataset_basics() -> None:
    ds = _toy()
    assert len(ds) == 6 and ds.input_shape == (2,)
    sub = ds.subset(np.array([4, 1]))
    assert sub.x.tolist() == [[8.0, 9.0], [2.0, 3.0]] and sub.y.tolist() == [1, 1]
    assert ds.subset(torch.tensor([0])).y.tolist() == [0]
    assert ds.subset([]).x.shape == (0, 2)
    assert ds.label_histogram() == [2, 2, 2]
    unl = ds.without_labels()
    assert unl.y.tolist() == [-1] * 6 and unl.label_histogram() == [0, 0, 0]
    assert torch.equal(unl.x, ds.x) and torch.equal(ds.y, torch.arange(6) % 3), "original untouched"
    moved = ds.to("cpu")
    assert moved.x.device.type == "cpu" and moved.name == "toy"


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: D.Dataset(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.int64), 2), "x"),
        (lambda: D.Dataset(torch.zeros(3), torch.zeros(3, dtype=torch.int64), 2), "x"),
        (lambda: D.Dataset(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int32), 2), "y"),
        (lambda: D.Dataset(torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64), 2), "y"),
        (lambda: D.Dataset(torch.zeros(3, 2), torch.tensor([0, 1, 2]), 2), "y"),
        (lambda: D.Dataset(torch.zeros(3, 2), torch.tensor([0, -2, 1]), 2), "y"),
        (lambda: D.Dataset(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64), 0), "num_classes"),
        (lambda: _toy().subset([0, 6]), "indices"),
        (lambda: _toy().subset([-1]), "indices"),
        (lambda: _toy().subset([0.5]), "indices"),
    ],
)
def test_dataset_validation(make, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        make()
    assert info.value.field == field


# --------------------------------------------------------------------------------------------
# offline data sets


def test_digits_offline() -> None:
    from sklearn.datasets import load_digits

    train, test = D.load_dataset("digits")
    assert train.input_shape == (1, 8, 8) and test.input_shape == (1, 8, 8)
    assert len(train) + len(test) == 1797
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.num_classes == 10 and 0.0 <= float(train.x.min()) and float(train.x.max()) == 1.0
    # Stratified: per class exactly round(0.2 * n_c) test samples.
    counts = np.bincount(load_digits().target, minlength=10)
    assert test.label_histogram() == [int(round(0.2 * c)) for c in counts]
    # Pixels are the bundled counts 0..16 divided by 16, nothing else.
    assert torch.equal(train.x * 16, torch.round(train.x * 16))
    # Together the splits are exactly the bundled data set (compare sorted rows).
    both = torch.cat([train.x, test.x]).reshape(1797, 64).numpy() * 16
    ref = load_digits().data
    assert np.array_equal(np.unique(both, axis=0), np.unique(ref, axis=0))


def test_digits_split_depends_on_seed_only() -> None:
    a, _ = D.load_dataset("digits", seed=1)
    b, _ = D.load_dataset("DIGITS", seed=1)
    c, _ = D.load_dataset("digits", seed=2)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    _, test = D.load_dataset("digits", test_fraction=0.5)
    assert abs(len(test) - 1797 / 2) <= 10


def test_mnist1d_generated_locally_and_matches_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    monkeypatch.chdir(tmp_path)  # any cache file would land here
    np.random.seed(99)
    global_state = np.random.get_state()[1].copy()
    train, test = D.load_dataset("mnist1d", seed=3, num_samples=200)
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)
    assert list(tmp_path.iterdir()) == [], "nothing written, nothing downloaded"

    assert train.input_shape == (1, 40) and len(train) == 160 and len(test) == 40
    assert train.num_classes == 10 and train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert [a + b for a, b in zip(train.label_histogram(), test.label_histogram())] == [20] * 10

    args = get_dataset_args()
    args.num_samples, args.seed = 200, 3
    ref = make_dataset(args)
    np.testing.assert_allclose(train.x[:, 0].numpy(), ref["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(test.y.numpy(), ref["y_test"])

    again, _ = D.load_dataset("mnist1d", seed=3, num_samples=200)
    other, _ = D.load_dataset("mnist1d", seed=4, num_samples=200)
    assert torch.equal(again.x, train.x) and not torch.equal(other.x, train.x)


def test_synthetic_offline() -> None:
    train, test = D.load_dataset("synthetic", seed=5, num_samples=500, num_features=6, num_classes=5, class_sep=4.0)
    assert train.input_shape == (6,) and len(train) + len(test) == 500
    assert train.num_classes == 5
    # Balanced classes: 100 each, 20 of them in the test split.
    assert test.label_histogram() == [20] * 5
    assert [a + b for a, b in zip(train.label_histogram(), test.label_histogram())] == [100] * 5
    # Well separated mixture: nearest class mean (from train) classifies test nearly perfectly.
    means = torch.stack([train.x[train.y == c].mean(0) for c in range(5)])
    pred = torch.cdist(test.x, means).argmin(1)
    assert (pred == test.y).float().mean() > 0.9
    same, _ = D.load_dataset("synthetic", seed=5, num_samples=500, num_features=6, num_classes=5, class_sep=4.0)
    other, _ = D.load_dataset("synthetic", seed=6, num_samples=500, num_features=6, num_classes=5, class_sep=4.0)
    assert torch.equal(same.x, train.x) and not torch.equal(other.x, train.x)


def test_synthetic_without_separation_is_chance_level() -> None:
    train, test = D.load_dataset("synthetic", seed=0, num_samples=2000, num_features=4, num_classes=4, class_sep=0.0)
    means = torch.stack([train.x[train.y == c].mean(0) for c in range(4)])
    acc = (torch.cdist(test.x, means).argmin(1) == test.y).float().mean()
    assert 0.15 < acc < 0.4


def test_normalize_option() -> None:
    train, test = D.load_dataset("synthetic", num_samples=300, normalize=True)
    np.testing.assert_allclose(train.x.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.x.std(0).numpy(), 1.0, atol=1e-5)
    img, _ = D.load_dataset("digits", normalize=True)
    assert abs(float(img.x.mean())) < 1e-5 and abs(float(img.x.std()) - 1) < 1e-4


# --------------------------------------------------------------------------------------------
# torchvision data sets from tiny files


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_from_idx_files(tmp_path: Path, name: str, folder: str) -> None:
    arrays = write_mnist_like(tmp_path, folder)
    train, test = D.load_dataset(name, data_root=tmp_path)
    for ds, split in ((train, "train"), (test, "test")):
        assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert ds.x.shape == (len(arrays[f"y_{split}"]), 1, 28, 28)
        assert ds.num_classes == 10 and ds.name == name
        assert 0.0 <= float(ds.x.min()) and float(ds.x.max()) <= 1.0
        assert torch.equal(ds.x[:, 0], torch.from_numpy(arrays[f"x_{split}"]).float() / 255)
        assert ds.y.tolist() == arrays[f"y_{split}"].tolist()
    # The default model of the family takes these tensors.
    model = build_model(D.default_model_for(name), train.input_shape, train.num_classes, seed=0)
    assert model(train.x).shape == (len(train), 10)


def test_mnist_name_spellings(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, "FashionMNIST")
    a, _ = D.load_dataset("Fashion-MNIST", data_root=str(tmp_path))
    b, _ = D.load_dataset("fashion_mnist", data_root=tmp_path)
    assert torch.equal(a.x, b.x)


def test_mnist_legacy_processed_layout(tmp_path: Path) -> None:
    # torchvision < 0.9 cached tensors in MNIST/processed/{training,test}.pt; 0.29 still reads them.
    proc = tmp_path / "MNIST" / "processed"
    proc.mkdir(parents=True)
    x_tr, y_tr = torch.from_numpy(fake_images(4, 7)), torch.tensor([3, 1, 4, 1])
    x_te, y_te = torch.from_numpy(fake_images(2, 8)), torch.tensor([5, 9])
    torch.save((x_tr, y_tr), proc / "training.pt")
    torch.save((x_te, y_te), proc / "test.pt")
    train, test = D.load_dataset("mnist", data_root=tmp_path)
    assert torch.equal(train.x[:, 0], x_tr.float() / 255) and train.y.tolist() == [3, 1, 4, 1]
    assert test.y.tolist() == [5, 9]


@pytest.mark.parametrize("split, num_classes", [("balanced", 47), ("letters", 27), ("byclass", 62)])
def test_emnist_from_idx_files(tmp_path: Path, split: str, num_classes: int) -> None:
    arrays = write_mnist_like(
        tmp_path, "EMNIST", num_classes=num_classes, prefix=(f"emnist-{split}-train", f"emnist-{split}-test")
    )
    kwargs = {} if split == "balanced" else {"split": split}
    train, test = D.load_dataset("emnist", data_root=tmp_path, **kwargs)
    assert train.num_classes == num_classes and test.num_classes == num_classes
    assert train.x.shape == (5, 1, 28, 28) and test.x.shape == (3, 1, 28, 28)
    assert torch.equal(train.x[:, 0], torch.from_numpy(arrays["x_train"]).float() / 255)
    assert train.y.tolist() == arrays["y_train"].tolist() and test.y.tolist() == arrays["y_test"].tolist()
    upright, _ = D.load_dataset("emnist", data_root=tmp_path, transpose=True, **kwargs)
    assert torch.equal(upright.x[:, 0], train.x[:, 0].transpose(1, 2))


def test_cifar10_from_pickle_batches(tmp_path: Path) -> None:
    batches, test_batch = write_cifar10(tmp_path)
    train, test = D.load_dataset("cifar10", data_root=tmp_path)
    assert train.x.shape == (10, 3, 32, 32) and test.x.shape == (3, 3, 32, 32)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64 and train.num_classes == 10
    assert train.x.is_contiguous()
    want = np.concatenate([cifar_chw(b) for b in batches])  # batches 1..5 in order
    assert torch.equal(train.x, torch.from_numpy(want).float() / 255)
    assert train.y.tolist() == sum((b["labels"] for b in batches), [])
    assert torch.equal(test.x, torch.from_numpy(cifar_chw(test_batch)).float() / 255)
    assert test.y.tolist() == test_batch["labels"]
    # Channel 0 is red: the first 1024 bytes of the row.
    assert torch.equal(test.x[1, 0].flatten() * 255, torch.from_numpy(test_batch["data"][1, :1024]).float())
    model = build_model(D.default_model_for("cifar10"), train.input_shape, 10, seed=0)
    assert model(train.x).shape == (10, 10)


def test_cifar100_from_pickle_batches(tmp_path: Path) -> None:
    tr, te = write_cifar100(tmp_path)
    train, test = D.load_dataset("CIFAR-100", data_root=tmp_path)
    assert train.num_classes == 100 and train.x.shape == (4, 3, 32, 32) and test.x.shape == (2, 3, 32, 32)
    assert train.y.tolist() == tr["fine_labels"] and test.y.tolist() == te["fine_labels"]
    assert torch.equal(train.x, torch.from_numpy(cifar_chw(tr)).float() / 255)


def test_cifar_verify_checks_md5(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(ValidationError, match="md5") as info:
        D.load_dataset("cifar10", data_root=tmp_path, verify=True)
    assert info.value.field == "data_root"
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in str(info.value)


def test_cifar_normalize_per_channel(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    train, test = D.load_dataset("cifar10", data_root=tmp_path, normalize=True)
    np.testing.assert_allclose(train.x.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.x.std(dim=(0, 2, 3)).numpy(), 1.0, atol=1e-4)
    raw_train, raw_test = D.load_dataset("cifar10", data_root=tmp_path)
    mean = raw_train.x.mean(dim=(0, 2, 3), keepdim=True)
    std = raw_train.x.std(dim=(0, 2, 3), keepdim=True)
    torch.testing.assert_close(test.x, (raw_test.x - mean) / std)


# --------------------------------------------------------------------------------------------
# missing or broken files


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("fashionmnist", "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
        ("kmnist", "KMNIST/raw/train-labels-idx1-ubyte"),
        ("emnist", "EMNIST/raw/emnist-balanced-train-images-idx3-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar100", "cifar-100-python/train"),
    ],
)
def test_missing_files_name_expected_path(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        D.load_dataset(name, data_root=tmp_path)
    assert info.value.field == "data_root"
    assert str(tmp_path / expected) in str(info.value)
    assert "Dataset not found" not in str(info.value)


def test_partially_missing_and_gzipped_files(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    missing = raw / "t10k-labels-idx1-ubyte"
    missing.rename(raw / "t10k-labels-idx1-ubyte.gz")  # as left by a download, not decompressed
    with pytest.raises(ValidationError) as info:
        D.load_dataset("mnist", data_root=tmp_path)
    msg = str(info.value)
    assert f"missing {missing} (the other 3 files are there)" in msg and "gunzip" in msg


def test_cifar_archive_not_extracted(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(ValidationError, match="tar -xzf"):
        D.load_dataset("cifar10", data_root=tmp_path)


def test_data_root_required_and_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="needs data_root") as info:
        D.load_dataset("mnist")
    assert info.value.field == "data_root" and "digits" in str(info.value)
    with pytest.raises(ValidationError, match="not an existing folder"):
        D.load_dataset("cifar10", data_root=tmp_path / "nope")


def test_corrupt_files_give_validation_errors(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(ValidationError, match="could not read MNIST") as info:
        D.load_dataset("mnist", data_root=tmp_path)
    assert info.value.field == "data_root"

    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValidationError, match="could not read CIFAR10"):
        D.load_dataset("cifar10", data_root=tmp_path)


def test_out_of_range_labels_in_files(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, "MNIST")
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.array([0, 10, 1], dtype=np.uint8))
    with pytest.raises(ValidationError, match=r"\[0, 10\)"):
        D.load_dataset("mnist", data_root=tmp_path)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(name="imagenet"), "dataset"),
        (dict(name="digits", seed=-1), "seed"),
        (dict(name="digits", colour=True), "options"),
        (dict(name="mnist", split="balanced"), "options"),  # split is EMNIST's option
        (dict(name="digits", normalize="yes"), "normalize"),
        (dict(name="digits", test_fraction=1.0), "test_fraction"),
        (dict(name="mnist1d", num_samples=5), "num_samples"),
        (dict(name="synthetic", num_classes=1), "num_classes"),
        (dict(name="synthetic", class_sep=-1.0), "class_sep"),
        (dict(name="synthetic", num_samples=3, num_classes=5), "num_samples"),
        (dict(name="emnist", split="xyz", data_root="."), "split"),
    ],
)
def test_load_dataset_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        D.load_dataset(**kwargs)
    assert info.value.field == field


def test_unknown_name_lists_allowed() -> None:
    with pytest.raises(ValidationError) as info:
        D.load_dataset("imagenet")
    for name in D.DATASET_NAMES:
        assert name in str(info.value)


def test_default_models() -> None:
    assert set(D.DATASET_NAMES) >= set(D.OFFLINE_DATASET_NAMES)
    want = {"digits": "mlp", "synthetic": "mlp", "mnist1d": "cnn1d", "mnist": "cnn28", "fashionmnist": "cnn28",
            "kmnist": "cnn28", "emnist": "cnn28", "cifar10": "cnn32", "cifar100": "cnn32"}
    assert {n: D.default_model_for(n) for n in D.DATASET_NAMES} == want
    assert set(want.values()) <= set(MODEL_NAMES)
    with pytest.raises(ValidationError):
        D.default_model_for("svhn")


@pytest.mark.parametrize("name, options", [("digits", {}), ("synthetic", {"num_samples": 100}),
                                           ("mnist1d", {"num_samples": 100})])
def test_offline_sets_fit_their_default_model(name: str, options: dict) -> None:
    train, _ = D.load_dataset(name, **options)
    model = build_model(D.default_model_for(name), train.input_shape, train.num_classes, seed=0)
    assert model(train.x[:4]).shape == (4, train.num_classes)


# --------------------------------------------------------------------------------------------
# make_federated


def _rows(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in x.reshape(len(x), -1).tolist()}


def test_make_federated_split_is_exact_and_reproducible() -> None:
    kw = dict(partition="dirichlet", alpha=0.3, unlabeled_fraction=0.1, seed=4, max_train=400, max_test=50,
              num_samples=1000, num_features=5)
    fed = D.make_federated("synthetic", 8, **kw)
    assert fed.num_clients == 8 and fed.num_classes == 10 and fed.input_shape == (5,) and fed.name == "synthetic"
    assert len(fed.test) == 50
    assert fed.unlabeled is not None and len(fed.unlabeled) == 40
    assert fed.unlabeled.y.tolist() == [-1] * 40
    assert all(len(c) >= 1 for c in fed.clients)
    assert sum(len(c) for c in fed.clients) == 360
    # Clients and the unlabelled slice are disjoint and together form the subsampled train set
    # (the synthetic features are continuous, so rows identify samples).
    pieces = [_rows(c.x) for c in fed.clients] + [_rows(fed.unlabeled.x)]
    union = set().union(*pieces)
    assert len(union) == sum(len(p) for p in pieces) == 400
    full_train, full_test = D.load_dataset("synthetic", seed=4, num_samples=1000, num_features=5)
    assert union <= _rows(full_train.x) and _rows(fed.test.x) <= _rows(full_test.x)
    # Client labels are the original labels of those samples.
    lookup = {tuple(r): int(y) for r, y in zip(full_train.x.tolist(), full_train.y.tolist())}
    for c in fed.clients:
        assert [lookup[tuple(r)] for r in c.x.tolist()] == c.y.tolist()

    again = D.make_federated("synthetic", 8, **kw)
    assert all(torch.equal(a.x, b.x) and torch.equal(a.y, b.y) for a, b in zip(fed.clients, again.clients))
    other = D.make_federated("synthetic", 8, **{**kw, "seed": 5})
    assert not all(len(a) == len(b) and torch.equal(a.x, b.x) for a, b in zip(fed.clients, other.clients))


def test_make_federated_summary_is_json() -> None:
    fed = D.make_federated("digits", 5, "k_classes", classes_per_client=2, seed=1)
    summary = fed.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["num_clients"] == 5 and summary["unlabeled_size"] == 0
    assert summary["partition"] == {"kind": "k_classes", "k": 2}
    assert summary["client_sizes"] == [len(c) for c in fed.clients]
    assert sum(summary["client_sizes"]) == summary["train_size"]
    for hist in summary["client_label_histograms"]:
        assert len(hist) == 10 and sum(h > 0 for h in hist) == 2  # exactly two classes each
    # 5 clients x 2 classes over 10 classes: every client holds a fifth of the classes -> TV = 0.8
    # up to the small class imbalance of the digits.
    assert summary["label_skew"] == pytest.approx(0.8, abs=0.02)
    assert sum(summary["test_label_histogram"]) == summary["test_size"]


def test_make_federated_iid_and_quantity_skew() -> None:
    iid = D.make_federated("digits", 10, seed=0)
    sizes = [len(c) for c in iid.clients]
    assert max(sizes) - min(sizes) <= 1 and iid.summary()["label_skew"] < 0.2
    qs = D.make_federated("digits", 10, "quantity_skew", quantity_alpha=0.3, seed=0).summary()
    assert max(qs["client_sizes"]) > 3 * min(qs["client_sizes"])


def test_make_federated_device_move() -> None:
    fed = D.make_federated("synthetic", 3, num_samples=60, unlabeled_fraction=0.2).to("cpu")
    assert fed.unlabeled is not None and all(c.x.device.type == "cpu" for c in fed.clients)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(num_clients=0), "num_clients"),
        (dict(num_clients=400), "num_clients"),  # 320 training samples
        (dict(num_clients=3, partition="shards"), "partition"),
        (dict(num_clients=3, partition="dirichlet", alpha=0), "alpha"),
        (dict(num_clients=3, partition="k_classes", classes_per_client=11), "classes_per_client"),
        (dict(num_clients=3, partition="quantity_skew", quantity_alpha=-1), "quantity_alpha"),
        (dict(num_clients=3, unlabeled_fraction=1.0), "unlabeled_fraction"),
        (dict(num_clients=300, unlabeled_fraction=0.5), "unlabeled_fraction"),
        (dict(num_clients=3, max_train=0), "max_train"),
        (dict(num_clients=3, max_test=-5), "max_test"),
        (dict(num_clients=3, seed=1.5), "seed"),
    ],
)
def test_make_federated_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        D.make_federated("synthetic", num_samples=400, **kwargs)
    assert info.value.field == field


def test_make_federated_from_files(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    fed = D.make_federated("cifar10", 2, data_root=tmp_path, seed=0, normalize=True)
    assert fed.input_shape == (3, 32, 32) and sum(len(c) for c in fed.clients) == 10 and len(fed.test) == 3


class _Payload:
    """Unpickling this object would create a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("target", ["data_batch_3", "test_batch"])
def test_crafted_cifar_folder_does_not_execute(tmp_path: Path, target: str) -> None:
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    batch = cifar_batch(2, 5, "labels", 10)
    batch["labels"] = _Payload(marker)
    write_pickle(tmp_path / "cifar-10-batches-py" / target, batch)
    with pytest.raises(ValidationError) as info:
        D.load_dataset("cifar10", data_root=tmp_path)
    assert not marker.exists()
    msg = str(info.value)
    assert "\n" not in msg and target in msg and "refusing to load" in msg


def test_generated_mnist1d_is_kept_per_process_without_sharing_tensors():
    """The second request of the same MNIST-1D set comes from the cache: equal data, and writing
    into what the first request returned does not reach it."""
    pytest.importorskip("mnist1d")
    from aflqueue.fl.data import make_federated

    a = make_federated("mnist1d", 4, "iid", seed=11, num_samples=200)
    ref = [c.x.clone() for c in a.clients], a.test.x.clone()
    for c in a.clients:
        c.x.mul_(0.0)
    a.test.x.add_(1.0)
    b = make_federated("mnist1d", 4, "iid", seed=11, num_samples=200)
    assert all(torch.equal(c.x, r) for c, r in zip(b.clients, ref[0])) and torch.equal(b.test.x, ref[1])


def test_mnist_images_and_labels_that_disagree_name_the_folder(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, "MNIST", n_train=6)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))  # 6 images
    with pytest.raises(ValidationError) as e:
        D.load_dataset("mnist", data_root=tmp_path)
    msg = str(e.value)
    assert e.value.field == "data_root" and str(tmp_path / "MNIST" / "raw") in msg and "\n" not in msg

"""Data sets as in-memory tensors and their split among federated clients.

The trainer indexes tensors directly (no ``DataLoader`` workers), so every data set is loaded
whole: images become ``float32`` tensors in ``[0, 1]`` of shape ``(N, C, H, W)``, labels ``int64``
of shape ``(N,)``.

Three data sets need no files and are the offline defaults: ``digits`` (scikit-learn's bundled
8x8 digits), ``mnist1d`` (generated locally by the ``mnist1d`` package) and ``synthetic`` (a
seeded Gaussian mixture). The torchvision sets (``mnist``, ``fashionmnist``, ``kmnist``,
``emnist``, ``cifar10``, ``cifar100``) are read from ``data_root`` in torchvision's on-disk
layout and are never downloaded; missing files raise a :class:`ValidationError` that names the
exact paths to provide.
"""

from __future__ import annotations

import contextlib
import functools
import math
import pickle
import random
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from aflqueue.config import OFFLINE_DATASET_NAMES
from aflqueue.errors import ValidationError, check_fraction, check_integer
from aflqueue.fl import partition as _partitioning

__all__ = [
    "DATASET_NAMES",
    "OFFLINE_DATASET_NAMES",
    "Dataset",
    "FederatedData",
    "default_model_for",
    "load_dataset",
    "make_federated",
]

DATASET_NAMES: tuple[str, ...] = (
    "digits",
    "mnist1d",
    "synthetic",
    "mnist",
    "fashionmnist",
    "kmnist",
    "emnist",
    "cifar10",
    "cifar100",
)

_DEFAULT_MODELS: dict[str, str] = {
    "digits": "mlp",
    "synthetic": "mlp",
    "mnist1d": "cnn1d",
    "mnist": "cnn28",
    "fashionmnist": "cnn28",
    "kmnist": "cnn28",
    "emnist": "cnn28",
    "cifar10": "cnn32",
    "cifar100": "cnn32",
}


# --------------------------------------------------------------------------------------------
# containers


#: Largest generated data set (synthetic, MNIST-1D): samples, and values (samples x features),
#: about 400 MB as float64 while it is generated.
MAX_GENERATED_SAMPLES = 10_000_000
MAX_GENERATED_VALUES = 50_000_000


def _as_index_tensor(indices: Any, device: torch.device) -> torch.Tensor:
    if isinstance(indices, torch.Tensor):
        idx = indices.to(device=device, dtype=torch.int64)
    else:
        arr = np.asarray(indices)
        if arr.size == 0:
            arr = arr.astype(np.int64)
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValidationError("indices", f"must be integer sample indices (got dtype {arr.dtype})")
        idx = torch.as_tensor(arr.astype(np.int64, copy=False), device=device)
    if idx.ndim != 1:
        raise ValidationError("indices", f"must be a 1-D sequence of indices (got shape {tuple(idx.shape)})")
    return idx


@dataclass(eq=False)
class Dataset:
    """A labelled (or unlabelled) data set held as two tensors.

    Attributes:
        x: ``float32``, shape ``(N, *input_shape)``; images are in ``[0, 1]`` unless normalised.
        y: ``int64``, shape ``(N,)``; class ids in ``[0, num_classes)``, ``-1`` for unlabelled.
        num_classes: number of classes of the task (also for unlabelled sets).
        name: data-set name, e.g. ``"mnist"``.
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or self.x.dtype != torch.float32 or self.x.ndim < 2:
            raise ValidationError("x", "must be a float32 tensor of shape (N, *input_shape)")
        if not isinstance(self.y, torch.Tensor) or self.y.dtype != torch.int64 or self.y.ndim != 1:
            raise ValidationError("y", "must be an int64 tensor of shape (N,)")
        if self.y.shape[0] != self.x.shape[0]:
            raise ValidationError(
                "y", f"has {self.y.shape[0]} labels but x has {self.x.shape[0]} samples; they must match"
            )
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, Integral) or self.num_classes < 1:
            raise ValidationError("num_classes", f"must be an integer >= 1 (got {self.num_classes!r})")
        self.num_classes = int(self.num_classes)
        if self.y.numel():
            lo, hi = int(self.y.min()), int(self.y.max())
            if lo < -1 or hi >= self.num_classes:
                raise ValidationError(
                    "y", f"labels must be in [0, {self.num_classes}) or -1 for unlabelled (got range [{lo}, {hi}])"
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 28, 28)``."""
        return tuple(int(s) for s in self.x.shape[1:])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> Dataset:
        """The samples at ``indices`` (integers in ``[0, N)``), in that order (copies the data)."""
        idx = _as_index_tensor(indices, self.x.device)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise ValidationError(
                "indices", f"must lie in [0, {len(self)}) (got range [{int(idx.min())}, {int(idx.max())}])"
            )
        return Dataset(self.x[idx], self.y[idx.to(self.y.device)], self.num_classes, self.name)

    def to(self, device: torch.device | str) -> Dataset:
        """The same data on ``device`` (no copy if already there)."""
        return Dataset(self.x.to(device), self.y.to(device), self.num_classes, self.name)

    def without_labels(self) -> Dataset:
        """The same inputs with every label replaced by ``-1``."""
        return Dataset(self.x, torch.full_like(self.y, -1), self.num_classes, self.name)

    def label_histogram(self) -> list[int]:
        """Count of each class ``0..num_classes-1`` (unlabelled samples are not counted)."""
        y = self.y[self.y >= 0].cpu()
        return torch.bincount(y, minlength=self.num_classes).tolist()


@dataclass(eq=False)
class FederatedData:
    """A training set split among clients plus the server's test set.

    Attributes:
        clients: local training sets, one per client, each non-empty.
        test: test set held by the server.
        unlabeled: held-out slice of the training set with labels ``-1`` (e.g. for server-side
            distillation), or ``None``.
        validation: held-out labelled slice of the training set for tuning hyper-parameters
            without touching the test set, or ``None``.
        num_classes: number of classes.
        input_shape: shape of one sample.
        name: data-set name.
        partition: how the clients' data were split, e.g. ``{"kind": "dirichlet", "alpha": 0.5}``.
    """

    clients: list[Dataset]
    test: Dataset
    unlabeled: Dataset | None
    num_classes: int
    input_shape: tuple[int, ...]
    name: str
    partition: dict[str, Any] = field(default_factory=dict)
    validation: Dataset | None = None

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    def to(self, device: torch.device | str) -> FederatedData:
        """All tensors moved to ``device``."""
        return FederatedData(
            [c.to(device) for c in self.clients],
            self.test.to(device),
            None if self.unlabeled is None else self.unlabeled.to(device),
            self.num_classes,
            self.input_shape,
            self.name,
            dict(self.partition),
            None if self.validation is None else self.validation.to(device),
        )

    def summary(self) -> dict[str, Any]:
        """Sizes and label histograms as plain ints/floats/lists (JSON-serialisable).

        ``label_skew`` is :func:`aflqueue.fl.partition.label_skew` of the client split (mean
        total-variation distance to the pooled label distribution, 0 = IID).
        """
        sizes = [len(c) for c in self.clients]
        labels = np.concatenate([c.y.cpu().numpy() for c in self.clients]) if self.clients else np.zeros(0, np.int64)
        bounds = np.cumsum([0, *sizes])
        parts = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(sizes))]
        skew = _partitioning.label_skew(parts, labels, self.num_classes) if labels.size else 0.0
        return {
            "name": self.name,
            "num_classes": int(self.num_classes),
            "input_shape": [int(s) for s in self.input_shape],
            "num_clients": len(self.clients),
            "partition": {k: _plain(v) for k, v in self.partition.items()},
            "train_size": int(sum(sizes)),
            "test_size": len(self.test),
            "unlabeled_size": 0 if self.unlabeled is None else len(self.unlabeled),
            "client_sizes": [int(s) for s in sizes],
            "client_label_histograms": [c.label_histogram() for c in self.clients],
            "test_label_histogram": self.test.label_histogram(),
            "label_skew": float(skew),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


# --------------------------------------------------------------------------------------------
# small helpers


def _canonical_name(name: Any) -> str:
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in DATASET_NAMES:
        raise ValidationError("dataset", f"unknown data set {name!r}; allowed: {', '.join(DATASET_NAMES)}")
    return key


def default_model_for(name: str) -> str:
    """Name of the model in :mod:`aflqueue.fl.models` suited to data set ``name``."""
    return _DEFAULT_MODELS[_canonical_name(name)]


def _stratified_split(y: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a random ``round(test_fraction * n_c)`` samples go to test; sorted indices."""
    test: list[np.ndarray] = []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        test.append(idx[: int(round(test_fraction * len(idx)))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx


def _from_numpy(x: np.ndarray, y: np.ndarray, num_classes: int, name: str) -> Dataset:
    return Dataset(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
        num_classes,
        name,
    )


def _split_nonempty(train_idx: np.ndarray, test_idx: np.ndarray, field_name: str, n: int) -> None:
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ValidationError(
            field_name,
            f"{n} samples give an empty train or test split ({len(train_idx)}/{len(test_idx)}); "
            "use more samples or another test_fraction",
        )


@contextlib.contextmanager
def _preserved_global_rng() -> Iterator[None]:
    """Restore Python's and numpy's global RNG state on exit (for third-party code that seeds
    and draws from them, so that our callers' global streams are left untouched)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


# --------------------------------------------------------------------------------------------
# offline data sets


def _load_digits(root: Path | None, seed: int, test_fraction: float = 0.2) -> tuple[Dataset, Dataset]:
    from sklearn.datasets import load_digits  # lazy: sklearn

    tf = check_fraction(test_fraction, "test_fraction", allow_zero=False)
    bunch = load_digits()  # ships with scikit-learn, no download
    x = bunch.images.astype(np.float32)[:, None] / 16.0  # pixel counts 0..16 -> [0, 1]
    y = bunch.target.astype(np.int64)
    train_idx, test_idx = _stratified_split(y, tf, np.random.default_rng(seed))
    return _from_numpy(x[train_idx], y[train_idx], 10, "digits"), _from_numpy(x[test_idx], y[test_idx], 10, "digits")


def _load_mnist1d(
    root: Path | None, seed: int, num_samples: int = 5000, test_fraction: float = 0.2
) -> tuple[Dataset, Dataset]:
    n = check_integer(num_samples, "num_samples", 10, MAX_GENERATED_SAMPLES)
    tf = check_fraction(test_fraction, "test_fraction", allow_zero=False)
    if seed >= 2**32:
        raise ValidationError("seed", f"mnist1d needs a seed in [0, 2**32 - 1] (got {seed})")
    x, y, x_test, y_test = (a.copy() for a in _mnist1d_arrays(n, int(seed), float(tf)))
    train = _from_numpy(x[:, None, :], y, 10, "mnist1d")
    test = _from_numpy(x_test[:, None, :], y_test, 10, "mnist1d")
    if len(train) == 0 or len(test) == 0:
        raise ValidationError("num_samples", f"{n} samples give an empty train or test split; use more")
    return train, test


@functools.lru_cache(maxsize=8)
def _mnist1d_arrays(n: int, seed: int, test_fraction: float) -> tuple[np.ndarray, ...]:
    """The generated arrays ``(x, y, x_test, y_test)``, kept per process: generating 8,000 samples
    takes ~10 s, a third of a typical study run, and every run of a seed asks for the same ones
    (the caller copies them, so nothing it does reaches the cache)."""
    from mnist1d.data import get_dataset_args, make_dataset  # lazy: mnist1d

    args = get_dataset_args()  # the package's defaults: 5000 samples, 80/20 split, length 40
    args.num_samples = n
    args.seed = seed
    args.train_split = 1.0 - test_fraction
    # make_dataset is the package's generator (get_dataset would try to download a pickle and
    # write a cache file into the working directory). It reseeds and draws from numpy's global
    # RNG, so that state is saved and restored around it.
    with _preserved_global_rng():
        data = make_dataset(args)
    return tuple(np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test"))


def _load_synthetic(
    root: Path | None,
    seed: int,
    num_samples: int = 2000,
    num_features: int = 20,
    num_classes: int = 10,
    class_sep: float = 1.0,
    test_fraction: float = 0.2,
) -> tuple[Dataset, Dataset]:
    """Gaussian mixture: class means ``mu_c ~ N(0, class_sep^2 I)``, ``x = mu_y + N(0, I)``,
    balanced classes (``y = i mod C`` before shuffling). ``class_sep = 0`` gives pure noise."""
    n = check_integer(num_samples, "num_samples", 2, MAX_GENERATED_SAMPLES)
    f = check_integer(num_features, "num_features", 1, MAX_GENERATED_VALUES)
    c = check_integer(num_classes, "num_classes", 2, 10_000)
    if n * f > MAX_GENERATED_VALUES:  # the data set is generated in memory (float64, then float32)
        raise ValidationError("num_samples", f"num_samples x num_features = {n * f:,} exceeds "
                                             f"{MAX_GENERATED_VALUES:,} generated values")
    if isinstance(class_sep, bool) or not isinstance(class_sep, Real) or not math.isfinite(class_sep) or class_sep < 0:
        raise ValidationError("class_sep", f"must be a finite number >= 0 (got {class_sep!r})")
    tf = check_fraction(test_fraction, "test_fraction", allow_zero=False)
    if n < c:
        raise ValidationError("num_samples", f"must be >= num_classes = {c} so that every class occurs (got {n})")
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, float(class_sep), size=(c, f))
    y = rng.permutation(np.arange(n) % c)
    x = means[y] + rng.standard_normal((n, f))
    train_idx, test_idx = _stratified_split(y, tf, rng)
    _split_nonempty(train_idx, test_idx, "num_samples", n)
    return (
        _from_numpy(x[train_idx], y[train_idx], c, "synthetic"),
        _from_numpy(x[test_idx], y[test_idx], c, "synthetic"),
    )


# --------------------------------------------------------------------------------------------
# torchvision data sets read from data_root


def _require_root(data_root: str | Path | None, name: str, hint: str) -> Path:
    if data_root is None:
        raise ValidationError(
            "data_root",
            f"data set {name!r} is read from files and needs data_root, a folder containing {hint}; "
            f"nothing is downloaded. Data sets that need no files: {', '.join(OFFLINE_DATASET_NAMES)}",
        )
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise ValidationError("data_root", f"{root} is not an existing folder; it must contain {hint}")
    return root


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turn torchvision's parse errors on malformed files into one-line ValidationErrors."""
    try:
        yield
    except ValidationError:
        raise
    except (RuntimeError, OSError, ValueError, TypeError, AssertionError, KeyError, EOFError,
            pickle.UnpicklingError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]  # torch's messages run to paragraphs
        raise ValidationError("data_root", f"could not read {what}: {type(exc).__name__}: {first}") from exc


def _missing_files_error(name: str, folder: Path, expected: Sequence[Path], extra: str = "") -> ValidationError:
    missing = [str(p) for p in expected if not p.is_file()]
    listing = (
        f"expected {', '.join(missing)}"
        if len(missing) == len(expected)
        else f"missing {', '.join(missing)} (the other {len(expected) - len(missing)} files are there)"
    )
    gz = [p for p in missing if Path(p + ".gz").is_file()]
    hint = f" Found {', '.join(g + '.gz' for g in gz)}: decompress with gunzip." if gz else ""
    return ValidationError(
        "data_root",
        f"{name} files not found: {listing}. Put them in {folder}; nothing is downloaded.{hint}{extra}",
    )


_MNIST_CLASSES = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "kmnist": "KMNIST", "emnist": "EMNIST"}
_EMNIST_SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")


def _mnist_layout(name: str, root: Path, split: str) -> tuple[list[Path], list[Path]]:
    """(raw idx files, legacy processed files) that torchvision 0.29 reads.

    torchvision reads the *uncompressed* idx files from ``<root>/<Class>/raw/``; the ``.gz``
    archives are only used by its downloader. Caches written by torchvision < 0.9
    (``<root>/<Class>/processed/training.pt`` and ``test.pt``) take precedence when both exist.
    EMNIST's files are named ``emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte`` (the
    contents of the official ``gzip.zip``, gunzipped) and its caches ``training_<split>.pt``.
    """
    base = root / _MNIST_CLASSES[name]
    if name == "emnist":
        raw = [
            base / "raw" / f"emnist-{split}-{part}-{kind}"
            for part in ("train", "test")
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
        ]
        legacy = [base / "processed" / f"training_{split}.pt", base / "processed" / f"test_{split}.pt"]
    else:
        raw = [
            base / "raw" / f"{part}-{kind}"
            for part in ("train", "t10k")
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
        ]
        legacy = [base / "processed" / "training.pt", base / "processed" / "test.pt"]
    return raw, legacy


def _load_mnist_family(
    name: str, data_root: str | Path | None, split: str = "balanced", transpose: bool = False
) -> tuple[Dataset, Dataset]:
    import torchvision.datasets as tvd  # lazy: torchvision

    if name == "emnist" and split not in _EMNIST_SPLITS:
        raise ValidationError("split", f"EMNIST split must be one of {', '.join(_EMNIST_SPLITS)} (got {split!r})")
    cls_name = _MNIST_CLASSES[name]
    raw_hint = "emnist-<split>-train-images-idx3-ubyte etc." if name == "emnist" else "train-images-idx3-ubyte etc."
    root = _require_root(data_root, name, f"{cls_name}/raw/{raw_hint}")
    raw, legacy = _mnist_layout(name, root, split)
    if not all(p.is_file() for p in legacy) and not all(p.is_file() for p in raw):
        extra = (
            " EMNIST's files come from the official gzip.zip (folder gzip/), gunzipped."
            if name == "emnist"
            else ""
        )
        raise _missing_files_error(cls_name, raw[0].parent, raw, extra)

    cls = getattr(tvd, cls_name)
    kwargs: dict[str, Any] = {"split": split} if name == "emnist" else {}
    num_classes = len(cls.classes_split_dict[split]) if name == "emnist" else len(cls.classes)
    out = []
    for train in (True, False):
        with _reading(f"{cls_name} ({'train' if train else 'test'}) from {raw[0].parent}"):
            ds = cls(str(root), train=train, download=False, **kwargs)
        data, targets = ds.data, torch.as_tensor(ds.targets)
        if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8 or data.ndim != 3:
            raise ValidationError("data_root", f"{cls_name} images must be uint8 of shape (N, H, W) in {root}")
        x = data.to(torch.float32).div_(255.0).unsqueeze(1)
        if transpose:
            # The EMNIST idx files store images transposed relative to MNIST.
            x = x.transpose(-1, -2).contiguous()
        _check_file_labels(targets, num_classes, cls_name, root)
        try:
            out.append(Dataset(x, targets.to(torch.int64), num_classes, name))
        except ValidationError as e:  # images and labels that disagree: name the files' folder
            raise ValidationError("data_root", f"{cls_name} ({'train' if train else 'test'}) in {raw[0].parent}: "
                                               f"{e.field} {e.detail}") from None
    return out[0], out[1]


def _check_file_labels(targets: torch.Tensor, num_classes: int, what: str, root: Path) -> None:
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise ValidationError(
            "data_root",
            f"{what} labels in {root} must be in [0, {num_classes}) "
            f"(got range [{int(targets.min())}, {int(targets.max())}])",
        )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batch files that builds numpy arrays, lists, dicts and strings only.

    ``pickle.load`` on a file from ``data_root`` would run any callable the file names, so a
    crafted folder could execute code. The official batches only need numpy's array
    reconstruction (and ``_codecs.encode`` for bytes written by Python 3 at protocol 2); any
    other global is refused before it is looked up.
    """

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: CIFAR batch files hold only arrays, "
                                         "lists and strings")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path, name: str) -> dict[str, Any]:
    """One CIFAR batch/meta file as a dict with ``str`` keys (see :class:`_ArrayUnpickler`)."""
    with _reading(f"{name} batch {path}"):
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    if not isinstance(obj, dict):
        raise ValidationError("data_root", f"{path} is not a CIFAR batch file (top level is {type(obj).__name__})")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _cifar_split(folder: Path, files: Sequence[str], label_key: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of the given batch files, in order."""
    xs, ys = [], []
    for f in files:
        batch = _read_cifar_pickle(folder / f, name)
        if "data" not in batch or label_key not in batch:
            raise ValidationError("data_root", f"{folder / f} lacks 'data' or {label_key!r}: not a {name} batch file")
        data = np.asarray(batch["data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValidationError("data_root", f"{name} images in {folder / f} must be uint8 rows of 3072 values")
        labels = np.asarray(batch[label_key])
        if labels.ndim != 1 or labels.size != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise ValidationError("data_root", f"{folder / f}: {label_key!r} must be one integer label per image")
        # each row: 1024 red, 1024 green, 1024 blue values, row-major: already CHW
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _load_cifar(name: str, data_root: str | Path | None, verify: bool = False) -> tuple[Dataset, Dataset]:
    """CIFAR-10/100 from the extracted python batches, in torchvision's layout.

    torchvision supplies the file names and md5 sums (checked with ``verify=True``); the batches
    are parsed by :class:`_ArrayUnpickler`, never by a plain ``pickle.load``, so a folder that
    is not the official archive is read as data or rejected, and cannot execute code. Without
    ``verify`` any file in the right format is accepted (the md5 check re-reads ~180 MB)."""
    import torchvision.datasets as tvd  # lazy: torchvision
    from torchvision.datasets.utils import check_integrity  # lazy: torchvision

    base = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    num_classes = 10 if name == "cifar10" else 100
    root = _require_root(data_root, name, f"{base.base_folder}/ (the extracted {base.filename})")
    folder = root / base.base_folder
    entries = [*base.train_list, *base.test_list, [base.meta["filename"], base.meta["md5"]]]
    expected = [folder / f for f, _ in entries]
    if not all(p.is_file() for p in expected):
        tgz = root / base.filename
        extra = f" Found {tgz}: extract it with tar -xzf {tgz} -C {root}." if tgz.is_file() else ""
        raise _missing_files_error(base.__name__, folder, expected, extra)
    if verify:
        bad = [str(folder / f) for f, md5 in entries if not check_integrity(str(folder / f), md5)]
        if bad:
            raise ValidationError(
                "data_root",
                f"md5 check failed (verify=True) for {', '.join(bad)}: they differ from the official "
                f"{base.filename}; re-extract it, or pass verify=False to check presence only",
            )
    label_key = "labels" if name == "cifar10" else "fine_labels"
    out = []
    for files in ([f for f, _ in base.train_list], [f for f, _ in base.test_list]):
        data, targets_np = _cifar_split(folder, files, label_key, base.__name__)
        x = torch.from_numpy(data).to(torch.float32).div_(255.0).contiguous()
        targets = torch.from_numpy(targets_np)
        _check_file_labels(targets, num_classes, base.__name__, folder)
        out.append(Dataset(x, targets, num_classes, name))
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# public loading API

# Per data set: loader(data_root, seed, **options) and the options it accepts, with defaults.
_LOADERS: dict[str, tuple[Callable[..., tuple[Dataset, Dataset]], dict[str, Any]]] = {
    "digits": (lambda root, seed, **o: _load_digits(root, seed, **o), {"test_fraction": 0.2}),
    "mnist1d": (lambda root, seed, **o: _load_mnist1d(root, seed, **o), {"num_samples": 5000, "test_fraction": 0.2}),
    "synthetic": (
        lambda root, seed, **o: _load_synthetic(root, seed, **o),
        {"num_samples": 2000, "num_features": 20, "num_classes": 10, "class_sep": 1.0, "test_fraction": 0.2},
    ),
    "mnist": (lambda root, seed, **o: _load_mnist_family("mnist", root, **o), {}),
    "fashionmnist": (lambda root, seed, **o: _load_mnist_family("fashionmnist", root, **o), {}),
    "kmnist": (lambda root, seed, **o: _load_mnist_family("kmnist", root, **o), {}),
    "emnist": (
        lambda root, seed, **o: _load_mnist_family("emnist", root, **o),
        {"split": "balanced", "transpose": False},
    ),
    "cifar10": (lambda root, seed, **o: _load_cifar("cifar10", root, **o), {"verify": False}),
    "cifar100": (lambda root, seed, **o: _load_cifar("cifar100", root, **o), {"verify": False}),
}


def _standardize(train: Dataset, test: Dataset) -> tuple[Dataset, Dataset]:
    """Per-channel (dim 1 of x) zero mean / unit variance, statistics from the training set."""
    dims = [0, *range(2, train.x.ndim)]
    mean = train.x.mean(dim=dims, keepdim=True)
    std = train.x.std(dim=dims, keepdim=True).clamp_min(1e-8)  # a constant channel stays finite
    return (
        Dataset((train.x - mean) / std, train.y, train.num_classes, train.name),
        Dataset((test.x - mean) / std, test.y, test.num_classes, test.name),
    )


def load_dataset(
    name: str, data_root: str | Path | None = None, *, seed: int = 0, **options: Any
) -> tuple[Dataset, Dataset]:
    """Load a data set as (train, test) tensors.

    Args:
        name: one of :data:`DATASET_NAMES`, case-insensitive (``"fashion-mnist"``,
            ``"CIFAR_10"`` are accepted).
        data_root: folder in torchvision's layout for the file-based sets (``<root>/MNIST/raw/``,
            ``<root>/cifar-10-batches-py/``, ...); ignored by the offline sets.
        seed: seeds the train/test split of ``digits``/``synthetic`` and the generation of
            ``mnist1d``/``synthetic``; the file-based sets come with fixed splits.
        **options:
            all: ``normalize`` (False): standardise each channel with training-set statistics.
            ``digits``: ``test_fraction`` (0.2), stratified.
            ``mnist1d``: ``num_samples`` (5000, rounded down to a multiple of 10),
            ``test_fraction`` (0.2).
            ``synthetic``: ``num_samples`` (2000), ``num_features`` (20), ``num_classes`` (10),
            ``class_sep`` (1.0, std of the class means in units of the noise std),
            ``test_fraction`` (0.2).
            ``emnist``: ``split`` ("balanced"; also byclass, bymerge, letters, digits, mnist),
            ``transpose`` (False; True turns images upright like MNIST).
            ``cifar10``/``cifar100``: ``verify`` (False; True checks md5 sums).

    Returns:
        ``(train, test)``: x ``float32`` of shape ``(N, 1, 8, 8)`` (digits), ``(N, 1, 40)``
        (mnist1d), ``(N, num_features)`` (synthetic), ``(N, 1, 28, 28)`` (MNIST family) or
        ``(N, 3, 32, 32)`` (CIFAR); images in ``[0, 1]`` unless normalised; y ``int64``.
    """
    key = _canonical_name(name)
    seed = check_integer(seed, "seed", 0)
    loader, defaults = _LOADERS[key]
    allowed = {**defaults, "normalize": False}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValidationError(
            "options", f"unknown option(s) {', '.join(unknown)} for data set {key!r}; allowed: {', '.join(allowed)}"
        )
    opts = {**allowed, **options}
    normalize = opts.pop("normalize")
    if not isinstance(normalize, bool):
        raise ValidationError("normalize", f"must be true or false (got {normalize!r})")
    train, test = loader(data_root, seed, **opts)
    if normalize:
        train, test = _standardize(train, test)
    return train, test


def make_federated(
    name: str,
    num_clients: int,
    partition: str = "iid",
    *,
    alpha: float = 0.5,
    classes_per_client: int = 2,
    quantity_alpha: float = 1.0,
    unlabeled_fraction: float = 0.0,
    data_root: str | Path | None = None,
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
    validation_fraction: float = 0.0,
    **options: Any,
) -> FederatedData:
    """Load a data set and split its training part among ``num_clients`` clients.

    Steps, each with its own RNG stream derived from ``seed``:

    1. :func:`load_dataset` (``options`` are passed through);
    2. keep a random ``max_train`` / ``max_test`` samples if given;
    3. if ``validation_fraction > 0``, set aside that fraction of the training set as a labelled
       validation set (for tuning without the test set); then, if ``unlabeled_fraction > 0``,
       that fraction of the rest (at least one sample) as the server's unlabelled set, labels
       dropped; both before partitioning;
    4. split the rest with :func:`aflqueue.fl.partition.partition`: ``"iid"``, ``"dirichlet"``
       (uses ``alpha``), ``"k_classes"`` (``classes_per_client``) or ``"quantity_skew"``
       (``quantity_alpha``). The test set stays with the server.

    Raises:
        ValidationError: bad parameters, or a client would receive no samples.
    """
    k = check_integer(num_clients, "num_clients", 1)
    kind, params = _partition_params(partition, alpha, classes_per_client, quantity_alpha)
    seed = check_integer(seed, "seed", 0)
    frac = check_fraction(unlabeled_fraction, "unlabeled_fraction", allow_zero=True)
    vfrac = check_fraction(validation_fraction, "validation_fraction", allow_zero=True)
    for field_name, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None:
            check_integer(value, field_name, 1)
    train, test = load_dataset(name, data_root, seed=seed, **options)
    # children 0-3 are the streams of earlier versions (spawning more leaves them unchanged)
    sub_train, sub_test, carve, split, carve_val = np.random.SeedSequence(seed).spawn(5)
    train = _random_subset(train, max_train, sub_train)
    test = _random_subset(test, max_test, sub_test)
    validation, train = _carve(train, vfrac, k, carve_val, "validation_fraction")
    unlabeled, train = _carve(train, frac, k, carve, "unlabeled_fraction")
    if unlabeled is not None:
        unlabeled = unlabeled.without_labels()
    clients = _split_among_clients(train, kind, params, k, int(split.generate_state(1)[0]))
    return FederatedData(
        clients=clients,
        test=test,
        unlabeled=unlabeled,
        num_classes=train.num_classes,
        input_shape=train.input_shape,
        name=train.name,
        partition={"kind": kind, **params},
        validation=validation,
    )


def _partition_params(partition: Any, alpha: float, classes_per_client: int,
                      quantity_alpha: float) -> tuple[str, dict[str, Any]]:
    """The partition kind and the parameters its scheme takes, under the scheme's own names."""
    kind = str(partition).lower()
    if kind not in _partitioning.PARTITION_KINDS:
        raise ValidationError(
            "partition", f"unknown kind {partition!r}; allowed: {', '.join(_partitioning.PARTITION_KINDS)}"
        )
    return kind, {
        "iid": {},
        "dirichlet": {"alpha": alpha},
        "k_classes": {"k": classes_per_client},
        "quantity_skew": {"alpha": quantity_alpha},
    }[kind]


def _random_subset(data: Dataset, size: int | None, seed: np.random.SeedSequence) -> Dataset:
    """A uniformly random ``size`` samples (in their original order), or all of them."""
    if size is None or size >= len(data):
        return data
    return data.subset(np.sort(np.random.default_rng(seed).choice(len(data), size, replace=False)))


def _carve(train: Dataset, frac: float, k: int, seed: np.random.SeedSequence,
           field_name: str) -> tuple[Dataset | None, Dataset]:
    """Set aside ``frac`` of the training set (at least one sample) for the server; the rest."""
    if frac <= 0:
        return None, train
    n_out = max(1, int(round(frac * len(train))))
    if len(train) - n_out < k:
        raise ValidationError(
            field_name,
            f"{frac} of {len(train)} training samples leaves {len(train) - n_out} for {k} clients; "
            f"every client needs at least one, so lower {field_name} or num_clients",
        )
    perm = np.random.default_rng(seed).permutation(len(train))
    return train.subset(np.sort(perm[:n_out])), train.subset(np.sort(perm[n_out:]))


def _split_among_clients(train: Dataset, kind: str, params: dict[str, Any], k: int, seed: int) -> list[Dataset]:
    """Partition ``train`` among ``k`` clients; every client must receive a sample."""
    try:
        parts = _partitioning.partition(kind, train.y.cpu().numpy(), k, seed, **params)
    except ValidationError as exc:
        # Report the scheme's parameter under the name the caller used for it.
        renamed = {"k": "classes_per_client", "alpha": "quantity_alpha" if kind == "quantity_skew" else "alpha"}
        if exc.field in renamed:
            raise ValidationError(renamed[exc.field], exc.detail) from exc
        raise
    clients = [train.subset(p) for p in parts]
    empty = [i for i, c in enumerate(clients) if len(c) == 0]
    if empty:
        raise ValidationError(
            "num_clients", f"clients {empty[:10]} received no samples; use fewer clients or another partition"
        )
    return clients

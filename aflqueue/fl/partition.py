"""Splitting a training set among federated clients.

Every scheme is a pure numpy function of the labels (or just the sample count) and an explicit
seed. It returns one ``int64`` index array per client; the arrays are sorted, pairwise disjoint
and together cover ``0..num_samples-1`` exactly, so ``dataset.subset(part)`` gives the client's
local data. The same seed always gives the same partition (no global RNG state is touched).

Schemes:

* ``iid``: uniform random split, sizes differ by at most one.
* ``dirichlet``: label skew; per class, the class's samples are split with proportions drawn from
  ``Dir(alpha)`` (Hsu et al. 2019). Small ``alpha`` gives clients few dominant classes.
* ``k_classes``: pathological label skew; each client holds exactly ``k`` classes
  (McMahan et al. 2017 shards, arranged so that the count is exact).
* ``quantity_skew``: IID labels, client sizes proportional to a ``Dir(alpha)`` draw.

:func:`label_skew` measures how far a partition is from IID.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, Sequence

import numpy as np

from aflqueue.errors import ValidationError, check_integer, check_positive

__all__ = [
    "PARTITION_KINDS",
    "iid",
    "dirichlet",
    "k_classes",
    "quantity_skew",
    "partition",
    "label_skew",
]

PARTITION_KINDS: tuple[str, ...] = ("iid", "dirichlet", "k_classes", "quantity_skew")

# Parameters each kind accepts in :func:`partition` (besides labels, num_clients, seed).
_KIND_PARAMS: dict[str, tuple[str, ...]] = {
    "iid": (),
    "dirichlet": ("alpha", "min_size", "max_retries"),
    "k_classes": ("k",),
    "quantity_skew": ("alpha", "min_size"),
}


# --------------------------------------------------------------------------------------------
# validation helpers


def _rng(seed: Any) -> np.random.Generator:
    check_integer(seed, "seed", 0)
    return np.random.default_rng(int(seed))


def _check_labels(labels: Any) -> np.ndarray:
    """Labels as a 1-D int64 array of class ids >= 0."""
    if hasattr(labels, "detach"):  # a torch tensor; avoid importing torch here
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValidationError("labels", f"must be a 1-D array of class ids (got shape {y.shape})")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValidationError("labels", f"must be integer class ids (got dtype {y.dtype})")
    y = y.astype(np.int64, copy=False)
    if y.size and y.min() < 0:
        raise ValidationError(
            "labels", f"must be class ids >= 0 (got {int(y.min())}; drop unlabeled samples first)"
        )
    return y


def _check_clients(num_clients: Any, num_samples: int, min_size: int) -> int:
    k = check_integer(num_clients, "num_clients", 1)
    if k * min_size > num_samples:
        raise ValidationError(
            "num_clients",
            f"{k} clients with at least {min_size} sample(s) each need >= {k * min_size} samples, "
            f"but only {num_samples} are available; use at most {num_samples // max(min_size, 1)} "
            "clients or more data",
        )
    return k


def _finish(buckets: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.sort(np.asarray(b, dtype=np.int64)) for b in buckets]


# --------------------------------------------------------------------------------------------
# schemes


def iid(num_samples: int, num_clients: int, seed: int) -> list[np.ndarray]:
    """Uniform random split of ``range(num_samples)`` into ``num_clients`` parts.

    Returns:
        ``num_clients`` sorted ``int64`` index arrays whose sizes differ by at most one
        (the first ``num_samples % num_clients`` clients get the extra sample).
    """
    n = check_integer(num_samples, "num_samples", 0)
    k = _check_clients(num_clients, n, 1)
    perm = _rng(seed).permutation(n)
    return _finish(np.array_split(perm, k))


def dirichlet(
    labels: Sequence[int] | np.ndarray,
    num_clients: int,
    alpha: float,
    seed: int,
    min_size: int = 1,
    max_retries: int = 100,
) -> list[np.ndarray]:
    """Label-skewed split: each class is divided among clients with ``Dir(alpha)`` proportions.

    Args:
        labels: shape ``(N,)``, integer class ids >= 0.
        num_clients: number of parts ``K >= 1``.
        alpha: Dirichlet concentration ``> 0``; ``alpha -> 0`` gives one class per client,
            ``alpha -> inf`` gives IID label proportions.
        seed: RNG seed.
        min_size: every client gets at least this many samples.
        max_retries: redraws before falling back to the deterministic repair.

    Returns:
        ``K`` sorted, disjoint ``int64`` index arrays covering ``range(N)``.

    Draws are repeated until every client holds ``min_size`` samples (the usual scheme of
    Yurochkin et al. 2019 / Li et al. 2022). If that keeps failing, which happens for tiny
    ``alpha`` with many clients, the last draw is repaired by moving random samples from the
    largest clients to the deficient ones; that perturbs the skew only slightly.
    """
    y = _check_labels(labels)
    n = len(y)
    min_size = check_integer(min_size, "min_size", 0)
    k = _check_clients(num_clients, n, min_size)
    a = check_positive(alpha, "alpha")
    max_retries = check_integer(max_retries, "max_retries", 1)
    rng = _rng(seed)

    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    fair_share = n / k
    for _ in range(max_retries):
        chunks: list[list[np.ndarray]] = [[] for _ in range(k)]
        sizes = np.zeros(k, dtype=np.int64)
        for idx in by_class:
            idx = rng.permutation(idx)
            p = rng.dirichlet(np.full(k, a))
            # Balancing trick of the reference implementations: a client that already holds
            # its fair share n/K takes no more, so small alpha skews labels without one client
            # swallowing most of the data set.
            masked = np.where(sizes < fair_share, p, 0.0)
            if masked.sum() > 0:
                p = masked / masked.sum()
            cuts = (np.cumsum(p) * len(idx)).astype(np.int64)[:-1]
            for j, part in enumerate(np.split(idx, cuts)):
                chunks[j].append(part)
                sizes[j] += len(part)
        if sizes.min() >= min_size:
            break
    buckets = [np.concatenate(c) if c else np.empty(0, np.int64) for c in chunks]
    if sizes.min() < min_size:
        buckets = _repair(buckets, min_size, rng)
    return _finish(buckets)


def _repair(buckets: list[np.ndarray], min_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Move random samples from the largest clients until all hold ``min_size`` (feasible
    because the caller checked ``K * min_size <= N``)."""
    buckets = [rng.permutation(b) for b in buckets]
    for j in range(len(buckets)):
        while len(buckets[j]) < min_size:
            donor = int(np.argmax([len(b) for b in buckets]))
            take = min(min_size - len(buckets[j]), len(buckets[donor]) - min_size)
            buckets[j] = np.concatenate([buckets[j], buckets[donor][:take]])
            buckets[donor] = buckets[donor][take:]
    return buckets


def k_classes(
    labels: Sequence[int] | np.ndarray, num_clients: int, k: int, seed: int
) -> list[np.ndarray]:
    """Pathological label skew: every client holds samples of exactly ``k`` classes.

    Args:
        labels: shape ``(N,)``, integer class ids >= 0; ``C`` = number of distinct ids present.
        num_clients: number of parts ``K``, with ``K * k >= C`` so that every class has an owner.
        k: classes per client, in ``[1, C]``.
        seed: RNG seed.

    Returns:
        ``K`` sorted, disjoint ``int64`` index arrays covering ``range(N)``.

    The classes are put in a random cyclic order and client ``i`` owns the window of ``k``
    consecutive classes starting at ``i*k`` (mod ``C``): this is the shard scheme of McMahan et
    al. 2017 with shards aligned to class boundaries, so that the count is exactly ``k`` (random
    shards can land two on one class) and class loads differ by at most one owner. Each class's
    samples are then split evenly at random among its owners.
    """
    y = _check_labels(labels)
    n = len(y)
    num_clients = _check_clients(num_clients, n, 1)
    classes = np.unique(y)
    c = len(classes)
    if isinstance(k, bool) or not isinstance(k, Integral) or not 1 <= k <= c:
        raise ValidationError("k", f"classes per client must be an integer in [1, {c}] (got {k!r})")
    k = int(k)
    if num_clients * k < c:
        raise ValidationError(
            "k",
            f"num_clients * k = {num_clients * k} must be >= the {c} classes present, otherwise "
            f"some samples belong to no client; use k >= {math.ceil(c / num_clients)}",
        )
    rng = _rng(seed)
    order = rng.permutation(c)
    owners: list[list[int]] = [[] for _ in range(c)]
    for i in range(num_clients):
        for j in range(k):
            owners[order[(i * k + j) % c]].append(i)

    chunks: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for pos, cls in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(y == cls))
        if len(idx) < len(owners[pos]):
            raise ValidationError(
                "k",
                f"class {int(cls)} has {len(idx)} sample(s) but is shared by {len(owners[pos])} "
                "clients, so some client would miss it; lower k or num_clients",
            )
        for owner, part in zip(owners[pos], np.array_split(idx, len(owners[pos]))):
            chunks[owner].append(part)
    return _finish([np.concatenate(ch) for ch in chunks])


def quantity_skew(
    num_samples: int, num_clients: int, alpha: float, seed: int, min_size: int = 1
) -> list[np.ndarray]:
    """Size skew with IID labels: client ``j`` gets about ``q_j * N`` random samples,
    ``q ~ Dir(alpha)``.

    Args:
        num_samples: ``N``.
        num_clients: ``K``.
        alpha: Dirichlet concentration ``> 0``; small alpha gives very unequal sizes.
        seed: RNG seed.
        min_size: every client gets at least this many samples; the remaining
            ``N - K*min_size`` are allotted by the proportions (largest-remainder rounding).

    Returns:
        ``K`` sorted, disjoint ``int64`` index arrays covering ``range(N)``.
    """
    n = check_integer(num_samples, "num_samples", 0)
    min_size = check_integer(min_size, "min_size", 0)
    k = _check_clients(num_clients, n, min_size)
    a = check_positive(alpha, "alpha")
    rng = _rng(seed)
    q = rng.dirichlet(np.full(k, a))
    spare = n - k * min_size
    raw = q * spare
    sizes = np.floor(raw).astype(np.int64)
    short = spare - int(sizes.sum())
    # Largest-remainder rounding keeps sizes within one of q * spare and sums exactly.
    sizes[np.argsort(-(raw - sizes), kind="stable")[:short]] += 1
    sizes += min_size
    perm = rng.permutation(n)
    return _finish(np.split(perm, np.cumsum(sizes)[:-1]))


def partition(
    kind: str,
    labels: Sequence[int] | np.ndarray,
    num_clients: int,
    seed: int,
    **params: Any,
) -> list[np.ndarray]:
    """Dispatch to a scheme by name.

    Args:
        kind: one of :data:`PARTITION_KINDS` (case-insensitive).
        labels: shape ``(N,)`` class ids (only their count matters for ``iid``/``quantity_skew``).
        num_clients: number of parts.
        seed: RNG seed.
        **params: the scheme's own parameters: ``dirichlet``: ``alpha``, ``min_size``,
            ``max_retries``; ``k_classes``: ``k``; ``quantity_skew``: ``alpha``, ``min_size``.
    """
    name = str(kind).lower()
    if name not in _KIND_PARAMS:
        raise ValidationError("partition", f"unknown kind {kind!r}; allowed: {', '.join(PARTITION_KINDS)}")
    unknown = sorted(set(params) - set(_KIND_PARAMS[name]))
    if unknown:
        allowed = ", ".join(_KIND_PARAMS[name]) or "none"
        raise ValidationError(
            "partition", f"kind {name!r} takes no parameter(s) {', '.join(unknown)}; allowed: {allowed}"
        )
    y = _check_labels(labels)
    if name == "iid":
        return iid(len(y), num_clients, seed)
    if name == "dirichlet":
        return dirichlet(y, num_clients, seed=seed, **params)
    if name == "k_classes":
        return k_classes(y, num_clients, seed=seed, **params)
    return quantity_skew(len(y), num_clients, seed=seed, **params)


def label_skew(
    parts: Sequence[np.ndarray], labels: Sequence[int] | np.ndarray, num_classes: int
) -> float:
    """Mean total-variation distance between client label distributions and the global one.

    Args:
        parts: index arrays into ``labels``, one per client.
        labels: shape ``(N,)`` class ids in ``[0, num_classes)``.
        num_classes: ``C``.

    Returns:
        ``mean_j TV(p_j, p)`` in ``[0, 1]``, where ``p_j`` is client ``j``'s label histogram
        (normalised), ``p`` that of all samples in ``parts`` together and
        ``TV(a, b) = sum |a - b| / 2``. Clients without samples are left out. 0 means every
        client sees the global class mix; values near 1 mean disjoint label sets.
    """
    y = _check_labels(labels)
    c = check_integer(num_classes, "num_classes", 1)
    if y.size and y.max() >= c:
        raise ValidationError("labels", f"class ids must be < num_classes = {c} (got {int(y.max())})")
    arrays = [np.asarray(p, dtype=np.int64) for p in parts]
    nonempty = [p for p in arrays if p.size]
    if not nonempty:
        raise ValidationError("parts", "need at least one non-empty client to measure label skew")
    everything = np.concatenate(nonempty)
    glob = np.bincount(y[everything], minlength=c) / everything.size
    tvs = [0.5 * np.abs(np.bincount(y[p], minlength=c) / p.size - glob).sum() for p in nonempty]
    return float(np.mean(tvs))

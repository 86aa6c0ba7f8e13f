"""Client partitions: exact cover, sizes, determinism and the skew each scheme promises."""

from __future__ import annotations

import numpy as np
import pytest

from aflqueue.errors import ValidationError
from aflqueue.fl import partition as P


def _labels(num_classes: int = 10, per_class: int = 100, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


def _assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    for p in parts:
        assert p.dtype == np.int64 and p.ndim == 1
        assert np.all(np.diff(p) > 0), "each part is sorted without repeats"
    allidx = np.concatenate(parts)
    assert len(allidx) == n, "parts are disjoint and cover everything"
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))


ALL_SCHEMES = {
    "iid": lambda y, k, s: P.iid(len(y), k, s),
    "dirichlet": lambda y, k, s: P.dirichlet(y, k, 0.3, s),
    # k must be large enough that every one of the 10 classes has an owner.
    "k_classes": lambda y, k, s: P.k_classes(y, k, max(2, -(-10 // k)), s),
    "quantity_skew": lambda y, k, s: P.quantity_skew(len(y), k, 0.5, s),
}


@pytest.mark.parametrize("scheme", list(ALL_SCHEMES))
@pytest.mark.parametrize("num_clients", [1, 7, 20])
def test_exact_cover_and_nonempty(scheme: str, num_clients: int) -> None:
    y = _labels()
    parts = ALL_SCHEMES[scheme](y, num_clients, 3)
    assert len(parts) == num_clients
    _assert_exact_cover(parts, len(y))
    assert min(len(p) for p in parts) >= 1


@pytest.mark.parametrize("scheme", list(ALL_SCHEMES))
def test_deterministic_per_seed_and_seeds_differ(scheme: str) -> None:
    y = _labels()
    a = ALL_SCHEMES[scheme](y, 10, 11)
    b = ALL_SCHEMES[scheme](y, 10, 11)
    c = ALL_SCHEMES[scheme](y, 10, 12)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


@pytest.mark.parametrize("scheme", list(ALL_SCHEMES))
def test_no_global_rng_use(scheme: str) -> None:
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    ALL_SCHEMES[scheme](_labels(), 5, 0)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_iid_sizes_within_one() -> None:
    for n, k in [(1000, 7), (10, 10), (11, 3), (5, 1)]:
        parts = P.iid(n, k, 0)
        sizes = [len(p) for p in parts]
        assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
        # Sizes are exactly floor/ceil of n/k with n % k clients getting the extra one.
        assert sorted(sizes) == sorted([n // k + (i < n % k) for i in range(k)])


def test_iid_label_skew_small() -> None:
    y = _labels(per_class=500)
    assert P.label_skew(P.iid(len(y), 5, 0), y, 10) < 0.05


def test_label_skew_hand_computed() -> None:
    y = np.array([0, 0, 1, 1])
    # Global (1/2, 1/2); client {0,1} is (1, 0): TV = 1/2; client {2,3} likewise.
    assert P.label_skew([np.array([0, 1]), np.array([2, 3])], y, 2) == pytest.approx(0.5)
    # Perfect mixing.
    assert P.label_skew([np.array([0, 2]), np.array([1, 3])], y, 2) == 0.0
    # Three classes, global over the union only: labels 0,1,2,2 -> (1/4, 1/4, 1/2);
    # client A = {0: 1} -> TV = (3/4 + 1/4 + 1/2)/2 = 3/4; client B = {1, 2, 2} -> (0, 1/3, 2/3):
    # TV = (1/4 + 1/12 + 1/6)/2 = 1/4. Mean 1/2. Empty client ignored.
    y3 = np.array([0, 1, 2, 2, 1])
    parts = [np.array([0]), np.array([1, 2, 3]), np.array([], dtype=np.int64)]
    assert P.label_skew(parts, y3, 3) == pytest.approx(0.5)


def test_dirichlet_skew_decreases_with_alpha() -> None:
    y = _labels(per_class=200)
    skews = {
        alpha: np.mean([P.label_skew(P.dirichlet(y, 10, alpha, seed), y, 10) for seed in range(4)])
        for alpha in (0.05, 1.0, 100.0)
    }
    assert skews[0.05] > skews[1.0] > skews[100.0]
    assert skews[0.05] > 0.6  # nearly one class per client
    assert skews[100.0] < 0.1  # nearly IID


def test_dirichlet_min_size_respected_even_when_repair_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny alpha with many clients: the redraws alone fail, the repair must fix the last one.
    repairs = []
    real_repair = P._repair
    monkeypatch.setattr(P, "_repair", lambda *a: repairs.append(1) or real_repair(*a))
    y = _labels(num_classes=3, per_class=20)
    parts = P.dirichlet(y, 25, 0.01, seed=1, min_size=2, max_retries=2)
    assert repairs, "this case exercises the repair path"
    _assert_exact_cover(parts, len(y))
    assert min(len(p) for p in parts) >= 2


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_k_classes_exactly_k_labels(k: int) -> None:
    y = _labels()
    parts = P.k_classes(y, 20, k, seed=5)
    _assert_exact_cover(parts, len(y))
    for p in parts:
        assert len(np.unique(y[p])) == k


def test_k_classes_one_class_each_is_maximally_skewed() -> None:
    y = _labels()
    parts = P.k_classes(y, 10, 1, seed=0)
    # Ten clients, ten classes, one each: every client holds a whole class.
    assert sorted(len(p) for p in parts) == [100] * 10
    assert P.label_skew(parts, y, 10) == pytest.approx(0.9)


def test_k_classes_with_non_contiguous_labels() -> None:
    y = np.repeat(np.array([3, 7, 9]), 10)
    parts = P.k_classes(y, 4, 2, seed=0)
    _assert_exact_cover(parts, len(y))
    assert all(len(np.unique(y[p])) == 2 for p in parts)


def test_quantity_skew_sizes_vary_labels_do_not() -> None:
    y = _labels(per_class=500)
    parts = P.quantity_skew(len(y), 10, alpha=0.5, seed=2)
    sizes = np.array([len(p) for p in parts])
    assert sizes.max() > 3 * sizes.min()
    big = [p for p in parts if len(p) >= 200]
    assert big, "some clients are large"
    # Label mix of the large clients is close to global (sampling noise only).
    assert P.label_skew(big, y, 10) < 0.12
    # and far less skewed than a Dirichlet label split at the same alpha.
    assert P.label_skew(parts, y, 10) < P.label_skew(P.dirichlet(y, 10, 0.5, 2), y, 10)


def test_quantity_skew_min_size() -> None:
    parts = P.quantity_skew(100, 30, alpha=0.05, seed=0, min_size=3)
    _assert_exact_cover(parts, 100)
    assert min(len(p) for p in parts) >= 3


def test_quantity_skew_large_alpha_is_balanced() -> None:
    sizes = [len(p) for p in P.quantity_skew(10_000, 4, alpha=1e6, seed=0)]
    assert max(sizes) - min(sizes) < 50


def test_dispatcher_matches_direct_calls() -> None:
    y = _labels()
    pairs = [
        (P.partition("iid", y, 6, 1), P.iid(len(y), 6, 1)),
        (P.partition("Dirichlet", y, 6, 1, alpha=0.2), P.dirichlet(y, 6, 0.2, 1)),
        (P.partition("k_classes", y, 6, 1, k=3), P.k_classes(y, 6, 3, 1)),
        (P.partition("quantity_skew", y, 6, 1, alpha=2.0), P.quantity_skew(len(y), 6, 2.0, 1)),
    ]
    for got, want in pairs:
        assert all(np.array_equal(u, v) for u, v in zip(got, want))


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda y: P.partition("shards", y, 3, 0), "partition"),
        (lambda y: P.partition("iid", y, 3, 0, alpha=1.0), "partition"),
        (lambda y: P.dirichlet(y, 3, 0.0, 0), "alpha"),
        (lambda y: P.dirichlet(y, 3, -1, 0), "alpha"),
        (lambda y: P.dirichlet(y, 3, float("nan"), 0), "alpha"),
        (lambda y: P.quantity_skew(len(y), 3, 0, 0), "alpha"),
        (lambda y: P.k_classes(y, 5, 0, 0), "k"),
        (lambda y: P.k_classes(y, 5, 11, 0), "k"),
        (lambda y: P.k_classes(y, 3, 2, 0), "k"),  # 3*2 < 10 classes: some samples unowned
        (lambda y: P.iid(len(y), 0, 0), "num_clients"),
        (lambda y: P.iid(len(y), 1001, 0), "num_clients"),
        (lambda y: P.iid(len(y), 2.5, 0), "num_clients"),
        (lambda y: P.dirichlet(y, 600, 1.0, 0, min_size=2), "num_clients"),
        (lambda y: P.iid(len(y), 3, -1), "seed"),
        (lambda y: P.dirichlet(y - 1, 3, 1.0, 0), "labels"),
        (lambda y: P.dirichlet(y.astype(float), 3, 1.0, 0), "labels"),
        (lambda y: P.label_skew([np.arange(10)], y, 5), "labels"),
    ],
)
def test_errors_name_the_field(call, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        call(_labels())
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_k_classes_error_when_class_too_small_for_its_owners() -> None:
    y = np.array([0] * 10 + [1])  # class 1 has one sample
    with pytest.raises(ValidationError, match="class 1 has 1 sample"):
        P.k_classes(y, 4, 2, 0)

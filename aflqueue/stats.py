"""Confidence intervals and batch means: the one home of the toolkit's statistics.

Every interval is an :class:`Estimate` (point estimate, bounds, sample count). Which interval
fits depends on the quantity (docs/theory.md section 8):
* :func:`t_interval` -- means of approximately normal, unbounded quantities (batch means of a
  simulation, paired differences of losses);
* :func:`log_ratio_interval` -- ratios (time ratios, speed-ups): a t-interval of the mean log
  ratio, reported as a geometric mean with bounds that are always positive;
* :func:`bootstrap_interval` -- bounded quantities such as accuracies in ``[0, 1]`` and their
  paired differences in ``[-1, 1]``: a seeded BCa bootstrap of the mean, whose bounds never
  leave the range the data live in (percentile fallback when BCa is undefined).

Many comparisons at once: :func:`familywise_confidence` (the Bonferroni level of each interval)
and :func:`bonferroni_threshold` (the matching family-wise quantile of a t statistic). Rank
correlations: :func:`spearman`, its permutation tests (exact, every pairing enumerated, up to 12
pairs; else 10^6 seeded draws) and the noise ceiling of a correlation against noisy measurements
(:func:`spearman_noise_ceiling`).

All functions ignore non-finite and ``None`` values and say how many values they used.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .jit import cached_njit

__all__ = ["Estimate", "Estimates", "t_quantile", "t_interval", "log_ratio_interval", "bootstrap_interval", "bootstrap_band",
           "batch_means", "finite_values", "t_two_sided_p", "bonferroni_threshold", "familywise_confidence", "z_score",
           "spearman",
           "PermutationTest", "spearman_permutation_test", "stratified_spearman_permutation_test",
           "spearman_critical_value",
           "NoiseCeiling", "spearman_noise_ceiling", "sign_flip_test", "holm"]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a two-sided confidence interval (``nan`` bounds if undefined).

    Attributes:
        mean: the point estimate (for :func:`log_ratio_interval`, the geometric mean).
        lo, hi: interval bounds.
        n_batches: number of values (seeds, batches, replications) it rests on.
    """

    mean: float
    lo: float
    hi: float
    n_batches: int = 0

    @property
    def n(self) -> int:
        """Number of values the estimate rests on."""
        return self.n_batches

    @property
    def half_width(self) -> float:
        return 0.5 * (self.hi - self.lo)

    def contains(self, x: float) -> bool:
        return bool(self.lo <= x <= self.hi)

    def to_dict(self) -> dict[str, Any] | None:
        """``{"mean", "ci", "n"}`` (``ci`` null when undefined); None for an undefined estimate."""
        if not math.isfinite(self.mean):
            return None
        ci = [float(self.lo), float(self.hi)] if math.isfinite(self.lo) and math.isfinite(self.hi) else None
        return {"mean": float(self.mean), "ci": ci, "n": int(self.n_batches)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Estimate":
        """The estimate saved by :meth:`to_dict` (an undefined one for None; NaN bounds without ``ci``)."""
        if d is None:
            return cls(math.nan, math.nan, math.nan, 0)
        lo, hi = d.get("ci") or (math.nan, math.nan)
        return cls(float(d["mean"]), float(lo), float(hi), int(d.get("n", 0)))


@dataclass(frozen=True, eq=False)
class Estimates:
    """Point estimates with two-sided intervals, one per element (e.g. per client): arrays of shape
    ``(n,)``, so that ``est.relative_delay.mean`` lines up with ``analysis.relative_delay``.
    Indexing gives the element's :class:`Estimate` (``est.relative_delay[i].lo``) and iterating
    the estimates in order.

    Attributes:
        mean, lo, hi: point estimates and interval bounds (NaN where undefined).
        n_batches: number of values each estimate rests on (integers).
    """

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_batches: np.ndarray

    @classmethod
    def of(cls, estimates: Iterable[Estimate]) -> "Estimates":
        """The estimates of a sequence of :class:`Estimate`."""
        es = list(estimates)
        arrays = [np.array([getattr(e, k) for e in es], dtype=float) for k in ("mean", "lo", "hi")]
        return cls(*arrays, np.array([e.n_batches for e in es], dtype=np.int64))

    def __len__(self) -> int:
        return int(self.mean.size)

    def __getitem__(self, i: int) -> Estimate:
        return Estimate(float(self.mean[i]), float(self.lo[i]), float(self.hi[i]), int(self.n_batches[i]))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def to_dict(self) -> list[dict[str, Any] | None]:
        """One :meth:`Estimate.to_dict` per element."""
        return [e.to_dict() for e in self]


def finite_values(x: Iterable[Any]) -> np.ndarray:
    """The finite numbers of ``x`` (None, NaN and inf dropped) as float64."""
    return np.asarray([float(a) for a in x if a is not None and math.isfinite(float(a))], dtype=np.float64)


def t_quantile(confidence: float, dof: int) -> float:
    """Two-sided Student-t quantile ``t_{(1+confidence)/2, dof}``."""
    from scipy.stats import t  # lazy: scipy

    return float(t.ppf(0.5 + confidence / 2.0, dof))


def t_two_sided_p(z: float, dof: int) -> float:
    """``P(|T| > z)`` for Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t  # lazy: scipy

    return float(2.0 * t.sf(z, dof))


def bonferroni_threshold(n_tests: int, alpha: float, dof: int) -> float:
    """``|z|`` above which a Bonferroni test of ``n_tests`` t-statistics (``dof`` degrees of
    freedom) rejects at family-wise level ``alpha``: the family-wise two-sided t quantile, i.e.
    the half-width factor of intervals at :func:`familywise_confidence` ``(1 - alpha, n_tests)``."""
    from scipy.stats import t  # lazy: scipy

    return float(t.isf(alpha / (2.0 * max(n_tests, 1)), dof))


def familywise_confidence(confidence: float, comparisons: int) -> float:
    """The confidence level of each of ``comparisons`` two-sided intervals that keeps them all
    right at once with probability at least ``confidence`` (Bonferroni):
    ``1 - (1 - confidence) / comparisons`` (``comparisons`` below 1 counts as 1)."""
    return 1 - (1 - confidence) / max(comparisons, 1)


def z_score(estimate: "Estimate", reference: float, confidence: float) -> float:
    """``(estimate.mean - reference) / se``, with ``se = half_width / t_{(1+confidence)/2, n-1}`` the
    standard error behind a t-interval of ``n`` values (``nan`` below 2 values). A degenerate
    interval (a quantity constant in the data) gives 0 at the reference and +-inf elsewhere."""
    dev = estimate.mean - reference
    se = estimate.half_width / t_quantile(confidence, estimate.n_batches - 1) if estimate.n_batches >= 2 else math.nan
    if se > 0:
        return dev / se
    if math.isnan(se):
        return math.nan
    return 0.0 if dev == 0 else math.copysign(math.inf, dev)


def t_interval(x: Iterable[Any], confidence: float = 0.95) -> Estimate:
    """Mean and ``mean +- t sd / sqrt(k)`` of the finite values (NaN bounds for fewer than 2)."""
    v = finite_values(x)
    if v.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if v.size < 2:
        return Estimate(mean, math.nan, math.nan, int(v.size))
    half = t_quantile(confidence, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return Estimate(mean, mean - half, mean + half, int(v.size))


def log_ratio_interval(ratios: Iterable[Any], confidence: float = 0.95) -> Estimate:
    """Geometric mean of positive ratios with a t-interval on the log scale (bounds > 0)."""
    v = finite_values(ratios)
    v = v[v > 0]
    e = t_interval(np.log(v), confidence)
    return Estimate(math.exp(e.mean) if math.isfinite(e.mean) else math.nan,
                    math.exp(e.lo) if math.isfinite(e.lo) else math.nan,
                    math.exp(e.hi) if math.isfinite(e.hi) else math.nan, e.n_batches)


def bootstrap_interval(x: Iterable[Any], confidence: float = 0.95, resamples: int = 9999,
                       seed: int = 0) -> Estimate:
    """Mean with a seeded BCa bootstrap interval (percentile when BCa is degenerate).

    Bounds stay within ``[min(x), max(x)]``, hence within the range of a bounded quantity.
    With fewer than 2 distinct values the interval is undefined (NaN) or a point."""
    v = finite_values(x)
    if v.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if v.size < 2:
        return Estimate(mean, math.nan, math.nan, 1)
    if np.all(v == v[0]):
        return Estimate(mean, mean, mean, int(v.size))
    from scipy.stats import bootstrap  # lazy: scipy

    rng = np.random.default_rng(seed)
    lo = hi = math.nan
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ci = bootstrap((v,), np.mean, confidence_level=confidence, n_resamples=resamples, method=method,
                               random_state=rng).confidence_interval
        lo, hi = float(ci.low), float(ci.high)
        if math.isfinite(lo) and math.isfinite(hi):
            break
        rng = np.random.default_rng(seed)
    # BCa can extrapolate a hair beyond the data on tiny samples; a mean never leaves them
    lo, hi = max(lo, float(v.min())), min(hi, float(v.max()))
    return Estimate(mean, lo, hi, int(v.size))


def bootstrap_band(curves: Any, confidence: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean curve over seeds and a seeded percentile-bootstrap band of the mean, per point.

    ``curves``: shape ``(seeds, points)``. The same ``resamples`` draws of seeds are used at every
    point (a band of curves, not of independent points); with one seed the band is the curve."""
    A = np.asarray(curves, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, A.shape[0], size=(resamples, A.shape[0]))
    boot = A[idx].mean(axis=1)
    a = (1.0 - confidence) / 2.0
    return A.mean(0), np.quantile(boot, a, axis=0), np.quantile(boot, 1.0 - a, axis=0)


def batch_means(values: np.ndarray, batches: int) -> np.ndarray:
    """Means of ``batches`` contiguous groups of a (correlated) sequence (fewer if it is shorter).

    Consecutive batches of a long stationary run are nearly independent, so a t-interval over
    them estimates the sampling error of the overall mean."""
    values = np.asarray(values, dtype=float)
    b = min(int(batches), values.size)
    if b == 0:
        return np.zeros(0)
    return np.array([chunk.mean() for chunk in np.array_split(values, b)])


# --------------------------------------------------------------------------- rank correlation
def spearman(x: Iterable[Any], y: Iterable[Any]) -> float:
    """Spearman rank correlation of paired values (average ranks for ties; ``+inf`` ranks last).

    Pairs with a None/NaN on either side are dropped (a missing measurement says nothing about
    the order of the others); NaN when fewer than 3 pairs remain or when either side is constant
    (the correlation is undefined)."""
    from scipy.stats import rankdata  # lazy: scipy

    a = np.asarray([np.nan if v is None else float(v) for v in x], dtype=float)
    b = np.asarray([np.nan if v is None else float(v) for v in y], dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"spearman: {a.size} values against {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if a.size < 3:
        return math.nan
    ra, rb = rankdata(a), rankdata(b)
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass(frozen=True)
class PermutationTest:
    """A statistic with its permutation p-value.

    Attributes:
        statistic: the observed value (a Spearman correlation, or a mean of them).
        p_value: exact (``exact`` True): the share of *all* equally likely rearrangements, the
            observed one included, whose statistic is at least as extreme as the observed one
            (``>=`` for ``alternative = "greater"``, ``<=`` for ``"less"``, ``|.| >=`` for
            ``"two-sided"``; ties with the observed value count against it). Drawn (``exact``
            False): ``(1 + #{drawn at least as extreme}) / (1 + resamples)`` (the observed
            arrangement counts as one draw, so the p-value is never 0). NaN when the statistic is
            undefined.
        n: number of pairs (or of groups, for the stratified test) it rests on.
        resamples: rearrangements counted: all of them when ``exact`` (``n!`` pairings, ``2^n``
            sign vectors), else the seeded random draws.
        alternative: ``"greater"``, ``"less"`` or ``"two-sided"``.
        exact: True when the null distribution was enumerated (no Monte-Carlo error).
    """

    statistic: float
    p_value: float
    n: int
    resamples: int
    alternative: str
    exact: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"statistic": self.statistic if math.isfinite(self.statistic) else None,
                "p_value": self.p_value if math.isfinite(self.p_value) else None, "n": self.n,
                "resamples": self.resamples, "alternative": self.alternative, "exact": self.exact}


#: Largest number of pairs whose ``n!`` pairings :func:`spearman_permutation_test` enumerates
#: (12! = 479,001,600: seconds, compiled, once per pattern of ties); beyond it, :data:`PERMUTATION_DRAWS` seeded draws.
SPEARMAN_EXACT_MAX = 12
#: Seeded random rearrangements of a permutation test whose null distribution is not enumerated:
#: a p-value near 0.05 then carries a Monte-Carlo standard error of 0.0002.
PERMUTATION_DRAWS = 10**6
#: Random numbers drawn per block (bounded memory). Blocks are whole rows of one C-ordered stream,
#: so the permutations, and every p-value, do not depend on the block size.
_BLOCK_VALUES = 1 << 21


def _p_value(observed: float, null: np.ndarray, alternative: str) -> float:
    null = null[np.isfinite(null)]
    if not math.isfinite(observed) or null.size == 0:
        return math.nan
    tol = 1e-12  # ties with the observed value count against it (a conservative test)
    if alternative == "greater":
        hits = int(np.sum(null >= observed - tol))
    elif alternative == "less":
        hits = int(np.sum(null <= observed + tol))
    else:
        hits = int(np.sum(np.abs(null) >= abs(observed) - tol))
    return (1 + hits) / (1 + null.size)


def _random_permutations(rng: np.random.Generator, size: int, draws: int):
    """``draws`` seeded uniform permutations of ``range(size)``, in blocks of rows (each block an
    ``(rows, size)`` index array): the argsort of a row of uniform numbers, one row per permutation
    (as :func:`_stratified_block` reads them)."""
    rows = max(1, _BLOCK_VALUES // max(size, 1))
    for start in range(0, draws, rows):
        yield np.argsort(rng.random((min(rows, draws - start), size)), axis=1)


def _doubled_ranks(v: np.ndarray) -> np.ndarray:
    """Twice the average ranks of ``v`` (ties share the mean of their ranks, a multiple of 1/2), as
    exact integers."""
    from scipy.stats import rankdata  # lazy: scipy

    return np.rint(2.0 * rankdata(v)).astype(np.int64)


def _extreme(d: np.ndarray, d_obs: int, alternative: str) -> np.ndarray:
    """Which of the integer statistics ``d`` are at least as extreme as ``d_obs`` (a boolean mask)."""
    if alternative == "greater":
        return d >= d_obs
    if alternative == "less":
        return d <= d_obs
    return np.abs(d) >= abs(d_obs)


def _heap_histogram(rx: np.ndarray, ry: np.ndarray, hist: np.ndarray) -> None:
    """Add to ``hist[s]`` one count per ordering ``q`` of ``ry`` (all ``n!`` of them) with
    ``s = sum_i rx_i q_i`` (non-negative integers; ``hist`` long enough for the largest sum).

    Heap's algorithm visits every ordering by one swap of two entries from the last, and a swap of
    entries ``j`` and ``i`` changes the sum by ``(rx_j - rx_i)(q_i - q_j)``: O(1) per ordering.
    Compiled by :func:`_kernel` (numba, no fastmath: integer arithmetic)."""
    n = rx.size
    q = ry.copy()
    c = np.zeros(n, dtype=np.int64)
    s = 0
    for k in range(n):
        s += rx[k] * q[k]
    hist[s] += 1
    i = 1
    while i < n:
        if c[i] < i:
            j = 0 if i % 2 == 0 else c[i]
            s += (rx[j] - rx[i]) * (q[i] - q[j])
            t = q[j]
            q[j] = q[i]
            q[i] = t
            hist[s] += 1
            c[i] += 1
            i = 1
        else:
            c[i] = 0
            i += 1


def _stratified_block(u: np.ndarray, ra: np.ndarray, rb: np.ndarray, scale: float, out: np.ndarray) -> None:
    """Add to ``out[r]`` the correlation ``scale sum_j rb[perm_r[j]] ra[j]`` of each row ``r`` of
    uniforms ``u`` (shape ``(rows, k)``), where ``perm_r`` sorts row ``r`` (the permutation
    ``numpy.argsort`` gives; equal uniforms, which have probability ~1e-15, keep their order).

    An insertion sort of the indices per row (a few comparisons for the handful of routings of a
    regime; a merge sort beyond 16), then the sum in the order of ``rb[perm] @ ra``. Compiled by
    :func:`_kernel`."""
    rows, k = u.shape
    idx = np.empty(k, dtype=np.int64)
    for r in range(rows):
        if k > 16:  # insertion sort is quadratic: a merge sort (stable) for large groups
            idx[:] = np.argsort(u[r], kind="mergesort")
        else:
            for i in range(k):
                v = u[r, i]
                j = i
                while j > 0 and u[r, idx[j - 1]] > v:
                    idx[j] = idx[j - 1]
                    j -= 1
                idx[j] = i
        s = 0.0
        for j in range(k):
            s += rb[idx[j]] * ra[j]
        out[r] += scale * s


#: The compiled kernels, once per process.
_COMPILED: dict[str, Any] = {}
#: Exact null distributions already enumerated, by the two multisets of doubled ranks (it depends on
#: nothing else): tests on untied data of one size share one enumeration. Bounded.
_NULLS: dict[tuple[tuple[int, ...], tuple[int, ...]], np.ndarray] = {}
_NULLS_KEPT = 64


def _kernel(fn: Any) -> Any:
    """``fn`` compiled with numba (machine code cached on disk), once per process."""
    if fn.__name__ not in _COMPILED:
        _COMPILED[fn.__name__] = cached_njit()(fn)
    return _COMPILED[fn.__name__]


def _exact_null(rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """``hist[s]``: how many of the ``n!`` pairings of the doubled ranks ``rx`` and ``ry`` have
    ``sum_i rx_i ry_pi(i) = s`` (an int64 array)."""
    key = (tuple(sorted(rx.tolist())), tuple(sorted(ry.tolist())))
    if key not in _NULLS:
        sx, sy = np.array(key[0], dtype=np.int64), np.array(key[1], dtype=np.int64)
        hist = np.zeros(int(sx @ sy) + 1, dtype=np.int64)  # the largest sum pairs sorted with sorted
        _kernel(_heap_histogram)(sx, sy, hist)
        if len(_NULLS) >= _NULLS_KEPT:
            _NULLS.pop(next(iter(_NULLS)))
        _NULLS[key] = hist
    return _NULLS[key]


def _check_alternative(alternative: str) -> None:
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative must be greater, less or two-sided (got {alternative!r})")


def _check_resamples(resamples: int | None) -> None:
    if resamples is not None and (isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer))
                                  or resamples < 1):
        raise ValueError(f"resamples must be a positive integer or None (got {resamples!r})")


def spearman_permutation_test(x: Iterable[Any], y: Iterable[Any], resamples: int | None = None, seed: int = 0,
                              alternative: str = "greater") -> PermutationTest:
    """Spearman correlation of ``(x, y)`` and its permutation p-value (docs/theory.md section 10,
    "Permutation p-values").

    Under the null hypothesis (no association) every pairing of the ``y`` values with the ``x``
    values is equally likely. ``resamples=None`` (the default): up to
    :data:`SPEARMAN_EXACT_MAX` pairs the p-value is exact, the share of all ``n!`` pairings (the
    observed one included) whose correlation is at least as extreme as the observed one
    (``resamples = n!``, ``exact`` True); beyond, :data:`PERMUTATION_DRAWS` seeded random pairings.
    An integer ``resamples`` draws that many pairings whatever ``n`` (the former default, 9999, is
    how earlier reports computed theirs). Ties get average ranks; a pairing whose correlation equals
    the observed one counts against it. Pairs with a missing side are dropped first."""
    _check_alternative(alternative)
    _check_resamples(resamples)
    a = np.asarray([np.nan if v is None else float(v) for v in x], dtype=float)
    b = np.asarray([np.nan if v is None else float(v) for v in y], dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = int(a.size)
    rho = spearman(a, b)
    if not math.isfinite(rho):
        return PermutationTest(rho, math.nan, n, 0, alternative)
    # the correlation of a pairing is an increasing function of d = n sum_i rx_i ry_pi(i) - sum(rx) sum(ry)
    # (the rank vectors' norms do not change under permutation): compared exactly, in integers
    rx, ry = _doubled_ranks(a), _doubled_ranks(b)
    if 4 * n ** 4 >= 2 ** 62:
        raise ValueError(f"spearman_permutation_test: {n} pairs overflow its integer statistic")
    shift = int(rx.sum()) * int(ry.sum())
    d_obs = n * int(rx @ ry) - shift
    if resamples is None and n <= SPEARMAN_EXACT_MAX:
        hist = _exact_null(rx, ry)
        sums = np.flatnonzero(hist)
        hits = int(hist[sums[_extreme(n * sums - shift, d_obs, alternative)]].sum())
        total = math.factorial(n)
        return PermutationTest(rho, hits / total, n, total, alternative, exact=True)
    draws = PERMUTATION_DRAWS if resamples is None else int(resamples)
    rng = np.random.default_rng(seed)
    hits = sum(int(np.count_nonzero(_extreme(n * (ry[perms] @ rx) - shift, d_obs, alternative)))
               for perms in _random_permutations(rng, n, draws))
    return PermutationTest(rho, (1 + hits) / (1 + draws), n, draws, alternative)


def spearman_critical_value(n: int, alpha: float = 0.05) -> float:
    """The one-sided critical value of Spearman's correlation over ``n`` untied pairs
    (``3 <= n <= SPEARMAN_EXACT_MAX``): the smallest correlation ``c`` with exact
    ``P(rho >= c) <= alpha`` under the null hypothesis (every pairing equally likely), from the
    enumerated null distribution of :func:`spearman_permutation_test` (docs/theory.md section 10,
    "Permutation p-values"). A correlation reaches one-sided significance at level ``alpha`` exactly
    when it is at least ``c``; by symmetry ``-c`` is the lower critical value. NaN when no
    correlation reaches the level (e.g. ``n = 4``, ``alpha = 0.01``: one pairing in 24 is 0.042)."""
    if not 3 <= int(n) <= SPEARMAN_EXACT_MAX or not 0.0 < alpha < 1.0:
        raise ValueError(f"spearman_critical_value: n must be in 3..{SPEARMAN_EXACT_MAX} and alpha in (0, 1) "
                         f"(got n = {n!r}, alpha = {alpha!r})")
    n = int(n)
    r = 2 * np.arange(1, n + 1, dtype=np.int64)  # doubled ranks, untied
    hist = _exact_null(r, r)
    sums = np.flatnonzero(hist)
    upper = np.cumsum(hist[sums][::-1])[::-1]  # upper[k]: pairings with a sum >= sums[k]
    reach = np.flatnonzero(upper <= alpha * math.factorial(n))
    if reach.size == 0:
        return math.nan
    k = int(reach[0])
    shift = int(r.sum()) ** 2
    return float((n * int(sums[k]) - shift) / (n * int(r @ r) - shift))


def stratified_spearman_permutation_test(groups: Iterable[tuple[Iterable[Any], Iterable[Any]]],
                                         resamples: int | None = None, seed: int = 0,
                                         alternative: str = "greater") -> PermutationTest:
    """Mean over groups of the within-group Spearman correlation, with a stratified permutation
    p-value (docs/theory.md section 10, "Permutation p-values"): the ``y`` values are permuted within
    each group, independently; groups whose correlation is undefined are left out.

    Seeded random draws (the product of the groups' pairings is too large to enumerate):
    :data:`PERMUTATION_DRAWS` by default (``resamples=None``), else ``resamples``; the p-value is
    ``(1 + #{drawn mean >= observed}) / (1 + draws)``, a drawn mean within 1e-12 of the observed one
    counting against it. Memory stays bounded (blocks of draws) whatever their number."""
    _check_alternative(alternative)
    _check_resamples(resamples)
    clean = []
    for x, y in groups:
        a = np.asarray([np.nan if v is None else float(v) for v in x], dtype=float)
        b = np.asarray([np.nan if v is None else float(v) for v in y], dtype=float)
        keep = ~(np.isnan(a) | np.isnan(b))
        if math.isfinite(spearman(a[keep], b[keep])):
            clean.append((a[keep], b[keep]))
    if not clean:
        return PermutationTest(math.nan, math.nan, 0, 0, alternative)
    from scipy.stats import rankdata  # lazy: scipy

    observed = float(np.mean([spearman(a, b) for a, b in clean]))
    draws = PERMUTATION_DRAWS if resamples is None else int(resamples)
    rng = np.random.default_rng(seed)
    total = np.zeros(draws)
    block = _kernel(_stratified_block)
    for a, b in clean:  # group by group, each group's draws one after the other in one stream
        ra, rb = rankdata(a), rankdata(b)
        ra = (ra - ra.mean()) / np.linalg.norm(ra - ra.mean())
        rb = rb - rb.mean()
        rows = max(1, _BLOCK_VALUES // rb.size)
        for start in range(0, draws, rows):
            block(rng.random((min(rows, draws - start), rb.size)), ra, rb, 1.0 / float(np.linalg.norm(rb)),
                  total[start:start + rows])
    return PermutationTest(observed, _p_value(observed, total / len(clean), alternative), len(clean), draws,
                           alternative)


@dataclass(frozen=True)
class NoiseCeiling:
    """How high a rank correlation with *measured* values can be when the measurements are noisy.

    Attributes:
        reliability: estimated share of the measured values' variance that is real
            (``var_true / var_observed``, in [0, 1]).
        mean: expected Spearman correlation between the true values and their measurements, i.e.
            what a perfect predictor would score on average.
        lo, hi: 5% and 95% quantiles of that correlation over the simulated repetitions.
        prob_at_least: ``{threshold: P(correlation >= threshold)}`` for the thresholds asked.
        n: number of measured values; resamples: simulated repetitions (seeded).
    """

    reliability: float
    mean: float
    lo: float
    hi: float
    prob_at_least: dict[float, float]
    n: int
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        return {"reliability": self.reliability, "mean": self.mean, "lo": self.lo, "hi": self.hi,
                "prob_at_least": {str(k): v for k, v in self.prob_at_least.items()}, "n": self.n,
                "resamples": self.resamples}


def spearman_noise_ceiling(estimates: Iterable[Any], standard_errors: Iterable[Any], thresholds: Iterable[float] = (),
                           resamples: int = 20000, seed: int = 0) -> NoiseCeiling:
    """The Spearman correlation a perfect predictor can expect against noisy measurements
    (docs/theory.md section 10, "Noise ceiling of a rank correlation").

    ``estimates`` are measured values (on the scale where their error is roughly normal, e.g. log
    ratios) and ``standard_errors`` their standard errors (same shape ``(n,)``). Model:
    ``estimate_k = true_k + e_k``, ``e_k ~ N(0, se_k^2)``, the true values spread as
    ``N(0, var_true)`` with ``var_true = max(var(estimates) - mean(se^2), 0)`` (method of moments).
    Simulated ``resamples`` times (seeded): the Spearman correlation between the true values and
    fresh measurements of them. Measurement noise alone caps any predictor's expected correlation
    near ``mean``; a target above it is out of reach of the design, not of the predictor."""
    x = np.asarray([float(v) for v in estimates], dtype=float)
    se = np.asarray([float(v) for v in standard_errors], dtype=float)
    if x.shape != se.shape or x.size < 3 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(se))) or np.any(se < 0):
        raise ValueError("spearman_noise_ceiling: needs >= 3 finite estimates with as many finite standard errors >= 0")
    var_obs = float(x.var(ddof=1))
    var_true = max(var_obs - float(np.mean(se ** 2)), 0.0)
    rng = np.random.default_rng(seed)
    true = rng.normal(0.0, math.sqrt(var_true), (resamples, x.size))
    meas = true + rng.normal(0.0, 1.0, (resamples, x.size)) * se
    from scipy.stats import rankdata  # lazy: scipy

    rt, rm = rankdata(true, axis=1), rankdata(meas, axis=1)
    rt -= rt.mean(axis=1, keepdims=True)
    rm -= rm.mean(axis=1, keepdims=True)
    den = np.linalg.norm(rt, axis=1) * np.linalg.norm(rm, axis=1)
    # all-noise designs (var_true = 0) leave the true values tied: correlation undefined, counted as 0
    rho = np.divide(np.sum(rt * rm, axis=1), den, out=np.zeros(resamples), where=den > 0)
    return NoiseCeiling(reliability=var_true / var_obs if var_obs > 0 else 0.0, mean=float(rho.mean()),
                        lo=float(np.quantile(rho, 0.05)), hi=float(np.quantile(rho, 0.95)),
                        prob_at_least={float(t): float(np.mean(rho >= t)) for t in thresholds},
                        n=int(x.size), resamples=int(resamples))


#: Largest sample whose sign-flip null distribution :func:`sign_flip_test` enumerates (2^20 vectors);
#: beyond it, 10^6 seeded random sign vectors.
SIGN_FLIP_EXACT_MAX = 20


def sign_flip_test(x: Iterable[Any], alternative: str = "greater", seed: int = 0) -> PermutationTest:
    """Paired permutation test of ``mean(x) = 0`` (e.g. ``x`` = paired log ratios over seeds):
    under the null each difference is as likely positive as negative, so the ``2^n`` sign vectors
    are equally likely. Exact (every sign vector, through :func:`scipy.stats.permutation_test`) up
    to ``n = 20``, else 10^6 seeded draws; ``alternative="greater"`` tests ``mean > 0``. Non-finite
    values are dropped first."""
    from scipy.stats import permutation_test  # lazy: scipy

    _check_alternative(alternative)
    v = finite_values(x)
    if v.size == 0:
        return PermutationTest(math.nan, math.nan, 0, 0, alternative)
    exact = v.size <= SIGN_FLIP_EXACT_MAX
    res = permutation_test((v,), lambda a, axis=-1: np.mean(a, axis=axis), permutation_type="samples",
                           alternative=alternative, n_resamples=np.inf if exact else 10**6, vectorized=True,
                           rng=np.random.default_rng(seed))
    return PermutationTest(float(np.mean(v)), float(res.pvalue), int(v.size), 2 ** v.size if exact else 10**6,
                           alternative, exact=exact)


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence), in the
    input order: the ``k``-th smallest is multiplied by ``m - k + 1``, then made monotone and
    capped at 1. NaN p-values stay NaN and do not count in ``m``."""
    p = np.asarray(list(p_values), dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out

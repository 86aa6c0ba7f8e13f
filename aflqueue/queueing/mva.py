"""Exact Mean Value Analysis (MVA) of a closed single-class BCMP network.

For populations ``k = 1..m`` (Reiser and Lavenberg's recursion):

    R_s(k) = rho_s (1 + Q_s(k-1))      FIFO station
    R_s(k) = rho_s                     delay station
    lambda(k) = k / sum_s R_s(k)       throughput (updates per time unit)
    Q_s(k) = lambda(k) R_s(k)          mean queue length E_k[X_s]

Everything is a positive sum, so the recursion neither overflows nor cancels for any scale of
rates, and it yields the normalising constants for free: ``lambda(k) = G(k-1)/G(k)`` gives
``log G(m) = -sum_k log lambda(k)``. Cost ``O(S m)``.

Optionally the same pass carries a *cotangent recursion* that gives exact vector-Jacobian
products of ``E_M[X]`` with respect to the log-demands (see :func:`mva` and ``gradients.py``).
For rows ``c_j`` of a matrix ``C`` (shape ``(q, S)``), with ``s_j(r) = c_j . Q(r)``:

    Z_jt(M) = E_M[X_t (c_j . X)]
            = lambda(M) (rho_t Z_jt(M-1) + c_jt R_t(M) + rho_t s_j(M-1))    FIFO t
            = rho_t lambda(M) (s_j(M-1) + c_jt)                              delay t

It follows from ``E_M[1{X_t >= k} h(X)] = rho_t^k G(M-k)/G(M) E_{M-k}[h(X + k e_t)]`` (FIFO) and
``E_M[X_t h(X)] = rho_t G(M-1)/G(M) E_{M-1}[h(X + e_t)]`` (delay), both consequences of the
product form. Then ``Cov_M(c_j . X, X_t) = Z_jt(M) - s_j(M) Q_t(M)``, and because the product form is
an exponential family in ``theta = log rho``, ``d E_M[c_j . X] / d theta_t`` equals that covariance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..jit import caching_available, warn_once

__all__ = ["AUTO_COMPILED_WORK", "AUTO_STEP_OVERHEAD", "MVAResult", "auto_backend", "mva"]

#: ``backend="auto"`` runs the compiled kernel when the numpy loop's work, in station-steps (see
#: :func:`auto_backend`), reaches this: about 2 ms of numpy at ~4 ns per station-step. Loading
#: numba and the cached kernel costs ~0.5 s once per process, repaid after a few hundred calls at
#: this size (~75 at ``n = m = 1000``); below it a one-shot analysis (``import aflqueue`` and one
#: ``analyze``, the CLI) never imports numba.
AUTO_COMPILED_WORK = 500_000
#: numpy's fixed cost per population step (a dozen array calls, ~2.5 us), in station-steps.
AUTO_STEP_OVERHEAD = 600


@dataclass(frozen=True, eq=False)
class MVAResult:
    """Output of :func:`mva` for population ``m``.

    Attributes:
        throughput: shape ``(m+1,)``, ``lambda(k)`` for ``k = 0..m`` (``lambda(0) = 0``).
        log_normalizing_constants: shape ``(m+1,)``, ``log G(k)`` (``log G(0) = 0``).
        queue_lengths: shape ``(S,)``, ``E_m[X_s]``.
        queue_lengths_prev: shape ``(S,)``, ``E_{m-1}[X_s]`` (zeros when m = 1).
        history: shape ``(m+1, S)``, ``E_k[X_s]`` for all k, if asked for; else None.
        cotangent_dots: shape ``(q, m+1)``, ``s_j(k) = c_j . E_k[X]``, if cotangents were given.
        cross_moments: shape ``(q, S)``, ``Z_jt(m) = E_m[X_t (c_j . X)]``, if cotangents were given.
        cross_moments_prev: shape ``(q, S)``, ``Z_jt(m-1)``, if cotangents were given.
        backend: the backend that ran, ``"numpy"`` or ``"numba"`` (``"auto"`` resolved); the
            numbers do not depend on it.
    """

    throughput: np.ndarray
    log_normalizing_constants: np.ndarray
    queue_lengths: np.ndarray
    queue_lengths_prev: np.ndarray
    history: np.ndarray | None = None
    cotangent_dots: np.ndarray | None = None
    cross_moments: np.ndarray | None = None
    cross_moments_prev: np.ndarray | None = None
    backend: str = "numpy"

    @property
    def population(self) -> int:
        return self.throughput.size - 1


def auto_backend(stations: int, population: int, cotangents: int = 0) -> str:
    """The backend that ``mva(..., backend="auto")`` picks for a network of ``stations`` stations at
    population ``population`` with ``cotangents`` cotangent rows: ``"numba"`` when the work

        population * (stations * (1 + cotangents) + AUTO_STEP_OVERHEAD) >= AUTO_COMPILED_WORK

    (station-steps), else ``"numpy"``. It depends on the sizes only, never on what is imported,
    and both backends return the same bits, so it changes speed only. Where numba cannot keep
    its compiled code on disk (no writable cache folder) ``"auto"`` runs numpy all the same, after
    one warning line (:mod:`aflqueue.jit`).
    """
    work = int(population) * (int(stations) * (1 + int(cotangents)) + AUTO_STEP_OVERHEAD)
    return "numba" if work >= AUTO_COMPILED_WORK else "numpy"


def mva(
    demands: np.ndarray,
    is_delay: np.ndarray | None,
    population: int,
    *,
    history: bool = False,
    cotangents: np.ndarray | None = None,
    backend: str = "auto",
) -> MVAResult:
    """Exact MVA for populations ``1..population``.

    Args:
        demands: ``rho_s > 0``, shape ``(S,)`` (time units per update).
        is_delay: shape ``(S,)`` booleans (None: all FIFO).
        population: ``m >= 1``.
        history: keep ``E_k[X]`` for every ``k`` (memory ``(m+1) S`` floats).
        cotangents: optional ``C``, shape ``(q, S)`` or ``(S,)``; runs the cotangent recursion
            (module docstring) alongside.
        backend: ``"numpy"`` (vectorised over stations), ``"numba"`` (compiled, fused loop; compiled
            without a disk cache where none is writable) or ``"auto"``: the choice of
            :func:`auto_backend` by problem size. The two backends perform the same floating-point
            operations in the same order and return identical bits (tested), so the choice affects
            speed only; ``MVAResult.backend`` says which ran.
    """
    if backend not in ("auto", "numpy", "numba"):
        raise ValueError(f"backend: must be 'auto', 'numpy' or 'numba' (got {backend!r})")
    C = None if cotangents is None else np.atleast_2d(np.asarray(cotangents, dtype=np.float64))
    kernel = None
    if backend == "numba":
        from ._kernels import mva_cotangent_kernel  # lazy: keeps numba out of small analyses

        kernel = mva_cotangent_kernel
    elif backend == "auto" and auto_backend(np.size(demands), population, 0 if C is None else C.shape[0]) == "numba":
        kernel = _cached_kernel()
    if kernel is not None:
        return _mva_compiled(kernel, demands, is_delay, population, C, history)
    return _mva_numpy(demands, is_delay, population, C, history)


def _mva_numpy(demands, is_delay, population, C, history) -> MVAResult:
    """The recursion vectorised over stations (:func:`mva`'s ``"numpy"`` backend); ``C``: the
    cotangents as a 2-D float64 array, or None."""
    rho = np.asarray(demands, dtype=np.float64)
    S = rho.size
    delay = np.zeros(S, dtype=bool) if is_delay is None else np.asarray(is_delay, dtype=bool)
    m = int(population)
    fi = np.flatnonzero(~delay)
    di = np.flatnonzero(delay)
    f = rho[fi]
    d_sum = float(rho[di].sum())

    lam = np.zeros(m + 1)
    logG = np.zeros(m + 1)
    Qf = np.zeros(fi.size)
    Qf_prev = Qf
    hist = np.zeros((m + 1, S)) if history else None

    s = Z = Z_prev = None
    if C is not None:
        Cf, Cd = C[:, fi], C[:, di]
        cd_rho = delay_dots(Cd, rho[di])
        q = C.shape[0]
        s = np.zeros((q, m + 1))
        Z = np.zeros((q, fi.size))
        Z_prev = Z
        CR = np.zeros((q, fi.size + 1))  # column 0 stays 0.0: the kernel's accumulator start

    # Every sum below is accumulated left to right in the kernel's order (np.add.accumulate is a
    # sequential scan, unlike the pairwise np.sum), so this loop and the compiled kernel give the
    # same bits: a result never depends on which backend ran or on what was imported before.
    buf = np.empty(fi.size + 1)
    buf[0] = d_sum
    R = buf[1:]
    for k in range(1, m + 1):
        np.add(Qf, 1.0, out=R)
        R *= f
        x = k / float(np.add.accumulate(buf)[-1])
        lam[k] = x
        logG[k] = logG[k - 1] - math.log(x)
        Qf_prev = Qf
        Qf = x * R
        if C is not None:
            Z_prev = Z
            np.multiply(Cf, R, out=CR[:, 1:])
            # Z(k) = x (f (Z(k-1) + s(k-1)) + c R(k)), s(k) = x (c . R(k) + c . rho over delay stations)
            Z = x * (f * (Z + s[:, k - 1:k]) + CR[:, 1:])
            s[:, k] = x * (np.add.accumulate(CR, axis=1)[:, -1] + cd_rho)
        if hist is not None:
            hist[k, fi] = Qf
            hist[k, di] = x * rho[di]

    return _assemble(rho, fi, di, m, lam, logG, Qf, Qf_prev, C, s, Z, Z_prev, hist)


def delay_dots(Cd: np.ndarray, rho_delay: np.ndarray) -> np.ndarray:
    """``c_j . rho`` over the delay stations, shape ``(q,)``, summed left to right.

    A sequential scan rather than BLAS, whose summation order can depend on the thread count.
    """
    prod = np.zeros((Cd.shape[0], Cd.shape[1] + 1))
    np.multiply(Cd, rho_delay, out=prod[:, 1:])
    return np.add.accumulate(prod, axis=1)[:, -1].copy()


def _assemble(rho, fi, di, m, lam, logG, Qf, Qf_prev, C, s, Z, Z_prev, hist=None, backend="numpy") -> MVAResult:
    """Station-level result from the FIFO recursion (delay stations have closed forms)."""
    S = rho.size
    Q, Q_prev = np.zeros(S), np.zeros(S)
    Q[fi], Q_prev[fi] = Qf, Qf_prev
    Q[di] = lam[m] * rho[di]
    Q_prev[di] = lam[m - 1] * rho[di]
    out = dict(throughput=lam, log_normalizing_constants=logG, queue_lengths=Q, queue_lengths_prev=Q_prev,
               history=hist, backend=backend)
    if C is not None:
        Cd = C[:, di]
        Zm, Zp = np.zeros((C.shape[0], S)), np.zeros((C.shape[0], S))
        Zm[:, fi], Zp[:, fi] = Z, Z_prev
        # delay stations: Z_jt(M) = rho_t lambda(M) (s_j(M-1) + c_jt)
        Zm[:, di] = lam[m] * rho[di] * (s[:, m - 1:m] + Cd)
        if m >= 2:
            Zp[:, di] = lam[m - 1] * rho[di] * (s[:, m - 2:m - 1] + Cd)
        out.update(cotangent_dots=s, cross_moments=Zm, cross_moments_prev=Zp)
    return MVAResult(**out)


def _cached_kernel():
    """The compiled kernel where numba loads it from (or writes it to) its disk cache, else None
    after one warning line: without a cache each process would compile it again (seconds)."""
    try:
        from ._kernels import mva_cotangent_kernel  # lazy: numba costs ~0.5 s per process, repaid by large problems
    except ImportError as e:
        warn_once(f"aflqueue: numba cannot be imported ({e}): the exact analysis uses numpy (same results, slower)")
        return None
    return mva_cotangent_kernel if caching_available() else None


def _mva_compiled(kernel, demands, is_delay, population, C, history) -> MVAResult:
    rho = np.asarray(demands, dtype=np.float64)
    S = rho.size
    delay = np.zeros(S, dtype=bool) if is_delay is None else np.asarray(is_delay, dtype=bool)
    m = int(population)
    fi, di = np.flatnonzero(~delay), np.flatnonzero(delay)
    Ck = np.zeros((0, S)) if C is None else C
    Cf = np.ascontiguousarray(Ck[:, fi])
    cd_rho = delay_dots(Ck[:, di], rho[di])
    H = np.zeros((m + 1 if history else 0, fi.size))
    lam, logG, Qf, Qf_prev, s, Z, Z_prev = kernel(
        np.ascontiguousarray(rho[fi]), float(rho[di].sum()), m, Cf, cd_rho, H)
    hist = None
    if history:
        hist = np.zeros((m + 1, S))
        hist[:, fi] = H
        hist[1:, di] = lam[1:, None] * rho[di]  # the numpy loop's x * rho[di], row by row
    keep = C is not None
    return _assemble(rho, fi, di, m, lam, logG, Qf, Qf_prev, C, s if keep else None,
                     Z if keep else None, Z_prev if keep else None, hist, backend="numba")

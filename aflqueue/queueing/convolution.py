"""Buzen's convolution algorithm, entirely in log space.

``G(k)`` is the coefficient of ``z^k`` in ``prod_FIFO 1/(1 - rho_s z) * prod_delay exp(rho_s z)``.
For FIFO stations Buzen's recursion ``g_s(k) = g_{s-1}(k) + rho_s g_s(k-1)`` unrolls, at fixed
``k``, into a cumulative sum over stations, ``g_.(k) = cumsum(rho * g_.(k-1))``; in log space that is
one ``np.logaddexp.accumulate`` per ``k``. All delay stations together act as one delay station
of demand ``sum rho`` (their generating functions multiply), convolved in once at ``O(m^2)``.

No rescaling is involved, so no overflow/underflow for any ``n``, ``m`` or rate scale. This is
the independent cross-check of :mod:`aflqueue.queueing.mva`, and the source of tail probabilities
``P_m(X_s >= k) = rho_s^k G(m-k) / G(m)`` (FIFO) and of exact marginal distributions.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "log_normalizing_constants",
    "fifo_tail_probabilities",
    "mean_queue_lengths",
    "marginal_distribution",
]


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(x)


def log_normalizing_constants(demands: np.ndarray, is_delay: np.ndarray | None, population: int) -> np.ndarray:
    """``log G(k)`` for ``k = 0..population``, shape ``(m+1,)``.

    Args:
        demands: ``rho_s >= 0``, shape ``(S,)``.
        is_delay: shape ``(S,)`` (None: all FIFO).
        population: ``m >= 0``.
    """
    rho = np.asarray(demands, dtype=np.float64)
    delay = np.zeros(rho.size, dtype=bool) if is_delay is None else np.asarray(is_delay, dtype=bool)
    m = int(population)
    # Shift log-demands by their maximum c: G(k) = c^k G'(k). The shift keeps |log G'| small, which
    # preserves the relative precision of differences log G(m-k) - log G(m) when m is huge.
    pos = rho[rho > 0]
    log_c = float(np.log(pos.max())) if pos.size else 0.0
    log_f = _log(rho[~delay]) - log_c
    lg_fifo = np.full(m + 1, -np.inf)
    lg_fifo[0] = 0.0
    if log_f.size:
        lg = np.zeros(log_f.size)  # log g_s(0) = 0 for every prefix s
        for k in range(1, m + 1):
            lg = np.logaddexp.accumulate(log_f + lg)
            lg_fifo[k] = lg[-1]
    d_total = float(rho[delay].sum())
    k_all = np.arange(m + 1)
    from scipy.special import gammaln, logsumexp  # lazy: keeps scipy.special (~0.1 s) out of MVA-only analyses

    if d_total <= 0:
        return lg_fifo + k_all * log_c
    # delay aggregate: log(D^j / j!), convolved with the FIFO constants
    lg_delay = k_all * (np.log(d_total) - log_c) - gammaln(k_all + 1)
    out = np.empty(m + 1)
    for k in range(m + 1):
        out[k] = logsumexp(lg_delay[: k + 1] + lg_fifo[k::-1])
    return out + k_all * log_c


def fifo_tail_probabilities(log_rho: float, logG: np.ndarray, population: int | None = None) -> np.ndarray:
    """``P_m(X_s >= k)`` for ``k = 0..m`` of a FIFO station with log-demand ``log_rho``.

    ``logG`` holds ``log G(0..m')`` for the whole network, ``m <= m'`` (default ``m = m'``).
    """
    m = logG.size - 1 if population is None else int(population)
    k = np.arange(m + 1)
    return np.exp(k * log_rho + logG[m - k] - logG[m])


def mean_queue_lengths(demands: np.ndarray, is_delay: np.ndarray | None, logG: np.ndarray,
                       population: int | None = None, chunk: int = 256) -> np.ndarray:
    """``E_m[X_s]`` for every station from the normalising constants, shape ``(S,)``.

    FIFO: ``sum_{k=1..m} rho_s^k G(m-k)/G(m)``; delay: ``rho_s G(m-1)/G(m)``.
    """
    rho = np.asarray(demands, dtype=np.float64)
    delay = np.zeros(rho.size, dtype=bool) if is_delay is None else np.asarray(is_delay, dtype=bool)
    m = logG.size - 1 if population is None else int(population)
    out = np.zeros(rho.size)
    if m == 0:
        return out
    k = np.arange(1, m + 1)
    # work with the shifted constants (see log_normalizing_constants) to keep magnitudes small
    log_c = float(np.log(rho[rho > 0].max()))
    shifted = logG[: m + 1] - np.arange(m + 1) * log_c
    base = shifted[m - k] - shifted[m]  # (m,)
    fi = np.flatnonzero(~delay & (rho > 0))
    lr = np.log(rho[fi]) - log_c
    for a in range(0, fi.size, chunk):
        block = lr[a:a + chunk, None] * k[None, :] + base[None, :]
        out[fi[a:a + chunk]] = np.exp(block).sum(axis=1)
    di = np.flatnonzero(delay)
    out[di] = rho[di] * np.exp(logG[m - 1] - logG[m])
    return out


def marginal_distribution(demands: np.ndarray, is_delay: np.ndarray | None, population: int,
                          station: int) -> np.ndarray:
    """Exact ``P_m(X_station = k)`` for ``k = 0..m``, shape ``(m+1,)``.

    Computed as ``f_s(k) G_{-s}(m-k) / G(m)`` with ``G_{-s}`` the constants of the network without
    the station (one extra convolution, ``O(S m)``), which avoids the cancellation of
    ``G(m-k) - rho G(m-k-1)``.
    """
    rho = np.asarray(demands, dtype=np.float64)
    delay = np.zeros(rho.size, dtype=bool) if is_delay is None else np.asarray(is_delay, dtype=bool)
    m = int(population)
    keep = np.ones(rho.size, dtype=bool)
    keep[station] = False
    lg_all = log_normalizing_constants(rho, delay, m)
    lg_rest = log_normalizing_constants(rho[keep], delay[keep], m)
    from scipy.special import gammaln  # lazy: keeps scipy.special (~0.1 s) out of MVA-only analyses

    k = np.arange(m + 1)
    log_f = k * np.log(rho[station]) - (gammaln(k + 1) if delay[station] else 0.0)
    return np.exp(log_f + lg_rest[m - k] - lg_all[m])

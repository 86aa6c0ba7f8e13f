"""Closed product-form networks of load-dependent stations (exact; docs/theory.md section 9.8).

A station whose departure rate depends on the number of tasks present, ``r_s(k)`` with ``k``
tasks, keeps the product form of Jackson and Gordon-Newell: with visit ratios ``v_s``,

    pi_N(x) = prod_s f_s(x_s) / G(N),    f_s(k) = prod_{j=1..k} v_s / r_s(j),

and ``lambda(N) = G(N - 1) / G(N)`` updates per time unit. Marie's method (Marie 1979) replaces
each station of a network with general service by such a station, with ``r_s(k)`` its departure
rate given ``k`` tasks; the arrival theorem then holds in the replacement network. The toolkit
uses this only as an oracle (``aflqueue.experiments.delay_oracle``): fed departure rates
*measured* in simulation, it is the best case of every method of that family.

Everything is computed in log space (no rescaling, no overflow): ``O(S m^2)``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

__all__ = ["load_dependent_mean_queues"]


def _log_convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``log`` of the first ``len(a)`` coefficients of the product of two series given in logs."""
    return np.array([logsumexp(a[: k + 1] + b[k::-1]) for k in range(a.size)])


def load_dependent_mean_queues(visits: np.ndarray, rates: np.ndarray, population: int
                               ) -> tuple[float, np.ndarray]:
    """Throughput and mean queue lengths of a closed network of load-dependent stations.

    Args:
        visits: visit ratios ``v_s >= 0`` (e.g. the routing ``p``), shape ``(S,)``.
        rates: departure rates ``r_s(k) > 0`` with ``k`` tasks present, shape ``(S, m + 1)``
            (column 0 is ignored), per time unit.
        population: ``m >= 1`` tasks.

    Returns:
        ``(lambda, Q)``: throughput in visits of weight 1 per time unit (updates per time unit when
        ``sum v = 1``) and ``E_m[X_s]``, shape ``(S,)``. Constant rates give exact MVA's values.
    """
    v = np.asarray(visits, dtype=np.float64)
    r = np.asarray(rates, dtype=np.float64)
    m = int(population)
    if m < 1 or r.ndim != 2 or r.shape[0] != v.size or r.shape[1] < m + 1:
        raise ValueError("need population >= 1 and rates of shape (S, population + 1)")
    if np.any(v < 0) or np.any(r[:, 1:m + 1] <= 0):
        raise ValueError("visit ratios must be >= 0 and rates > 0")
    S = v.size
    with np.errstate(divide="ignore"):
        step = np.log(v)[:, None] - np.log(r[:, 1:m + 1])  # (S, m): log(v / r(k)), -inf when v = 0
    logf = np.concatenate([np.zeros((S, 1)), np.cumsum(step, axis=1)], axis=1)  # (S, m + 1)
    unit = np.full(m + 1, -np.inf)
    unit[0] = 0.0
    # prefix[s] = stations < s, suffix[s] = stations > s: every leave-one-out product in O(S m^2)
    prefix = [unit]
    for s in range(S - 1):
        prefix.append(_log_convolve(prefix[-1], logf[s]))
    suffix = [unit]
    for s in range(S - 1, 0, -1):
        suffix.append(_log_convolve(suffix[-1], logf[s]))
    suffix = suffix[::-1]
    logG = _log_convolve(prefix[-1], logf[S - 1])
    k = np.arange(1, m + 1)
    Q = np.empty(S)
    for s in range(S):
        rest = _log_convolve(prefix[s], suffix[s])  # G without station s
        Q[s] = float(np.sum(k * np.exp(logf[s, 1:] + rest[m - k] - logG[m])))
    return float(np.exp(logG[m - 1] - logG[m])), Q

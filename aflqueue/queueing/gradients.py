"""Exact gradients of the closed-network metrics with respect to routing and log-rates.

The product form is an exponential family in ``theta_s = log rho_s`` (``rho_s = v_s / mu_s``), so

    d log G(M) / d theta_s = E_M[X_s]
    d log lambda(M) / d theta_s = E_{M-1}[X_s] - E_M[X_s]
    d E_M[c . X] / d theta_t = Cov_M(c . X, X_t)

The first two are free after one MVA pass; the covariance is obtained exactly by the cotangent
recursion of :func:`aflqueue.queueing.mva.mva` (one pass, ``O(q S m)`` for ``q`` cotangents), so a
vector-Jacobian product costs about one extra MVA and a full Jacobian ``n`` of them.

Chain rules: a stage of client ``i`` has ``theta_s = log p_i - log mu_s``, hence
``d/dp_i = sum_{s in i} d/dtheta_s / p_i`` and ``d/dlog mu_s = -d/dtheta_s``. Routing gradients are
partial derivatives treating every ``p_i`` as a free variable (project onto the simplex's tangent
space, ``g - mean(g)``, for a direction that keeps ``sum p = 1``). Entries for clients with
``p_i = 0`` are NaN (the station does not exist there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..system import System
from .delay import relative_delay_from_queues
from .mva import MVAResult, mva
from .network import Network, network_of

__all__ = ["DelayObjective", "delay_objective", "RoutingGradients", "routing_gradients", "gradients_from_mva",
           "gradients_from_queues", "metrics_vjp", "RoutingJacobians", "routing_jacobians"]


@dataclass(frozen=True, eq=False)
class RoutingGradients:
    """Gradients of the scalar metrics. Routing gradients have shape ``(n,)``; log-rate gradients
    shape ``(S,)`` aligned with ``network`` (one entry per station, client stages and CS).

    Attributes:
        throughput: ``lambda(m)``.
        log_normalizing_constant: ``log G(m)``.
        d_log_normalizing_constant: ``d log G / d p_i``.
        d_throughput: ``d lambda / d p_i`` (updates per time unit per unit of probability).
        d_log_normalizing_constant_d_log_rates: ``d log G / d log mu_s``.
        d_throughput_d_log_rates: ``d lambda / d log mu_s``.
        network: the stations the log-rate gradients refer to.
    """

    throughput: float
    log_normalizing_constant: float
    d_log_normalizing_constant: np.ndarray
    d_throughput: np.ndarray
    d_log_normalizing_constant_d_log_rates: np.ndarray
    d_throughput_d_log_rates: np.ndarray
    network: Network


def _to_routing(net: Network, per_station: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Chain rule ``d/dp_i = sum_{s in i} d/dtheta_s / p_i``; NaN where p_i = 0. Shape ``(..., n)``."""
    g = net.per_client(per_station)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, g / np.where(p > 0, p, 1.0), np.nan)


def routing_gradients(system: System, backend: str = "auto") -> RoutingGradients:
    """Exact gradients of ``log G(m)`` and ``lambda(m)`` from one MVA pass."""
    net = network_of(system)
    res = mva(net.demands, net.is_delay, system.concurrency, backend=backend)
    return gradients_from_mva(net, res, system.routing)


def gradients_from_mva(net: Network, res: MVAResult, p: np.ndarray) -> RoutingGradients:
    """:class:`RoutingGradients` from an MVA pass already made (no extra cost)."""
    m = res.population
    return gradients_from_queues(net, float(res.throughput[m]), float(res.log_normalizing_constants[m]),
                                 res.queue_lengths, res.queue_lengths_prev, p)


def gradients_from_queues(net: Network, lam: float, log_g: float, q: np.ndarray, q_prev: np.ndarray,
                          p: np.ndarray) -> RoutingGradients:
    """:class:`RoutingGradients` from ``lambda(m)``, ``log G(m)`` and the per-station ``E_m[X]``,
    ``E_{m-1}[X]`` (docs/theory.md section 6): ``d log G / d theta_s = E_m[X_s]`` and
    ``d lambda / d theta_s = lambda (E_{m-1}[X_s] - E_m[X_s])``."""
    d_logG_theta = q
    d_lam_theta = lam * (q_prev - q)
    return RoutingGradients(
        throughput=lam,
        log_normalizing_constant=log_g,
        d_log_normalizing_constant=_to_routing(net, d_logG_theta, p),
        d_throughput=_to_routing(net, d_lam_theta, p),
        d_log_normalizing_constant_d_log_rates=-d_logG_theta,
        d_throughput_d_log_rates=-d_lam_theta,
        network=net,
    )


def _delay_cotangent(net: Network, p: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Station cotangent at population m-1 for ``sum_i b_i E[D_i]`` (see metrics_vjp)."""
    c = np.zeros(net.size)
    own = net.owner >= 0
    c[own] = b[net.owner[own]] / p[net.owner[own]]
    cs = net.server_index
    if cs is not None:
        c[cs] = float(b[p > 0].sum())
    return c


def _delay_explicit_gradient(net: Network, q_prev: np.ndarray, p: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The part of ``d/dp sum_i b_i E[D_i]`` from the explicit ``1/p_i`` in
    ``E[D_i] = E_{m-1}[Y_i]/p_i + E_{m-1}[X_cs]``: ``-b_i E_{m-1}[Y_i] / p_i^2`` (0 where p_i = 0)."""
    y_prev = net.per_client(q_prev)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, -b * y_prev / np.where(p > 0, p, 1.0) ** 2, 0.0)


def metrics_vjp(
    system: System,
    *,
    d_throughput: float = 0.0,
    d_log_normalizing_constant: float = 0.0,
    d_queue_lengths: np.ndarray | None = None,
    d_relative_delay: np.ndarray | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Gradient w.r.t. routing ``p`` (shape ``(n,)``) of the scalar

        F = a * lambda(m) + g * log G(m) + sum_i c_i E_m[Y_i] + sum_i b_i E[D_i]

    with ``a = d_throughput``, ``g = d_log_normalizing_constant``, ``c = d_queue_lengths`` and
    ``b = d_relative_delay`` (shapes ``(n,)``; entries for clients with ``p_i = 0`` are ignored).
    One MVA pass with the cotangent recursion: about twice the cost of the analysis itself.
    """
    net = network_of(system)
    p = system.routing
    m = system.concurrency
    rows = []
    if d_queue_lengths is not None:
        c = np.asarray(d_queue_lengths, dtype=float)
        rows.append(np.where(net.owner >= 0, c[np.maximum(net.owner, 0)], 0.0))
    b = None if d_relative_delay is None else np.where(p > 0, np.asarray(d_relative_delay, dtype=float), 0.0)
    if b is not None:
        rows.append(_delay_cotangent(net, p, b))
    C = np.vstack(rows) if rows else None
    res = mva(net.demands, net.is_delay, m, cotangents=C, backend=backend)
    lam = float(res.throughput[m])
    theta_grad = d_log_normalizing_constant * res.queue_lengths
    theta_grad = theta_grad + d_throughput * lam * (res.queue_lengths_prev - res.queue_lengths)
    explicit = np.zeros(system.n)
    r = 0
    if d_queue_lengths is not None:
        s_m = res.cotangent_dots[r, m]
        theta_grad = theta_grad + res.cross_moments[r] - s_m * res.queue_lengths
        r += 1
    if b is not None:
        s_prev = res.cotangent_dots[r, m - 1]
        theta_grad = theta_grad + res.cross_moments_prev[r] - s_prev * res.queue_lengths_prev
        explicit = _delay_explicit_gradient(net, res.queue_lengths_prev, p, b)
    return _to_routing(net, theta_grad, p) + explicit


@dataclass(frozen=True, eq=False)
class DelayObjective:
    """Values and routing gradients (shape ``(n,)``) used by the optimiser, from one MVA pass.

    Attributes:
        throughput: ``lambda(m)``; d_throughput: ``d lambda / d p``.
        relative_delay: ``E[D_i]`` (NaN where ``p_i = 0``).
        weighted_delay: ``sum_i w_i E[D_i]``; d_weighted_delay: its gradient with ``w`` held fixed.
        queue_lengths: per-station ``E_m[X_s]``; network: the stations.
    """

    throughput: float
    d_throughput: np.ndarray
    relative_delay: np.ndarray
    weighted_delay: float
    d_weighted_delay: np.ndarray
    queue_lengths: np.ndarray
    network: Network


def delay_objective(system: System, routing: np.ndarray, concurrency: int, weights: np.ndarray | None,
                    backend: str = "auto") -> DelayObjective:
    """Throughput, ``E[D_i]``, ``sum_i w_i E[D_i]`` and their exact routing gradients in one pass.

    ``routing`` is used as given (no validation: the optimiser passes feasible points); entries
    of ``weights`` for clients with ``p_i = 0`` are ignored. ``weights=None`` skips the delay
    gradient (plain MVA).
    """
    p = np.asarray(routing, dtype=float)
    net = network_of(system, p)
    m = int(concurrency)
    C = None
    if weights is not None:
        b = np.where(p > 0, np.asarray(weights, dtype=float), 0.0)
        C = _delay_cotangent(net, p, b)[None, :]
    res = mva(net.demands, net.is_delay, m, cotangents=C, backend=backend)
    lam = float(res.throughput[m])
    d_lam = _to_routing(net, lam * (res.queue_lengths_prev - res.queue_lengths), p)
    if np.any(p <= 0):
        # one-sided derivative at p_i = 0: E_k[X_s] / rho_s -> lambda(k) as rho_s -> 0, so
        # d lambda / d p_i = lambda(m) (lambda(m-1) - lambda(m)) sum_{s in i} 1 / mu_s
        t = system.stage_table
        inv_mu = np.bincount(t["owner"], weights=1.0 / t["rate"], minlength=p.size)
        d_lam = np.where(p > 0, d_lam, lam * (res.throughput[m - 1] - lam) * inv_mu)
    delay = relative_delay_from_queues(net, res.queue_lengths_prev, p)
    if weights is None:
        return DelayObjective(lam, d_lam, delay, float("nan"), np.full(p.size, np.nan), res.queue_lengths, net)
    s_prev = res.cotangent_dots[0, m - 1]
    theta = res.cross_moments_prev[0] - s_prev * res.queue_lengths_prev
    grad = _to_routing(net, theta, p) + _delay_explicit_gradient(net, res.queue_lengths_prev, p, b)
    return DelayObjective(lam, d_lam, delay, float(np.nansum(b * delay)), grad, res.queue_lengths, net)


@dataclass(frozen=True, eq=False)
class RoutingJacobians:
    """Full Jacobians w.r.t. routing, ``J[i, j] = d metric_i / d p_j``, shape ``(n, n)``.

    Attributes:
        queue_lengths: ``d E_m[Y_i] / d p_j``.
        relative_delay: ``d E[D_i] / d p_j`` (rows/columns of clients with ``p = 0`` are NaN).
        throughput: ``d lambda / d p_j``, shape ``(n,)``.
        log_normalizing_constant: ``d log G / d p_j``, shape ``(n,)``.
        queue_lengths_log_rates: ``d E_m[Y_i] / d log mu_s``, shape ``(n, S)`` (stations of ``network``).
        relative_delay_log_rates: ``d E[D_i] / d log mu_s``, shape ``(n, S)`` (NaN rows where ``p_i = 0``).
        network: the stations the log-rate columns refer to.
    """

    queue_lengths: np.ndarray
    relative_delay: np.ndarray
    throughput: np.ndarray
    log_normalizing_constant: np.ndarray
    queue_lengths_log_rates: np.ndarray | None = None
    relative_delay_log_rates: np.ndarray | None = None
    network: Network | None = None


def routing_jacobians(system: System, backend: str = "auto") -> RoutingJacobians:
    """All Jacobians in one MVA pass with ``n + 1`` cotangents (``O(n S m)`` time, ``O(n S)`` memory)."""
    net = network_of(system)
    p = system.routing
    m = system.concurrency
    n = system.n
    A = net.client_matrix()  # (n, S)
    cs = net.server_index
    e_cs = np.zeros((1, net.size))
    if cs is not None:
        e_cs[0, cs] = 1.0
    res = mva(net.demands, net.is_delay, m, cotangents=np.vstack([A, e_cs]), backend=backend)
    lam = float(res.throughput[m])
    s = res.cotangent_dots
    # d E_M[Y_i] / d theta_t = Z_it(M) - Y_i(M) Q_t(M)
    cov_m = res.cross_moments - s[:, m:m + 1] * res.queue_lengths[None, :]
    cov_prev = res.cross_moments_prev - s[:, m - 1:m] * res.queue_lengths_prev[None, :]
    jac_q = _to_routing(net, cov_m[:n], p)
    jac_y_prev = _to_routing(net, cov_prev[:n], p)
    jac_cs_prev = _to_routing(net, cov_prev[n], p) if cs is not None else np.zeros(n)
    y_prev = net.per_client(res.queue_lengths_prev)
    with np.errstate(divide="ignore", invalid="ignore"):
        jac_d = jac_y_prev / p[:, None] + jac_cs_prev[None, :]
        jac_d[np.diag_indices(n)] -= y_prev / p**2
    inactive = p <= 0
    jac_d[inactive, :] = np.nan
    jac_d[:, inactive] = np.nan
    jac_q[:, inactive] = np.nan
    d_lam = _to_routing(net, lam * (res.queue_lengths_prev - res.queue_lengths), p)
    d_logG = _to_routing(net, res.queue_lengths, p)
    # log-rates: theta_s = log v_s - log mu_s, so d/d log mu_s = -d/d theta_s (no explicit p term)
    q_lr = -cov_m[:n]
    with np.errstate(divide="ignore", invalid="ignore"):
        d_lr = -(cov_prev[:n] / p[:, None] + (cov_prev[n][None, :] if cs is not None else 0.0))
    d_lr[inactive, :] = np.nan
    return RoutingJacobians(queue_lengths=jac_q, relative_delay=jac_d, throughput=d_lam, log_normalizing_constant=d_logG,
                            queue_lengths_log_rates=q_lr, relative_delay_log_rates=d_lr, network=net)


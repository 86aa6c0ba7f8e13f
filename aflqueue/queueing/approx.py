"""Approximate analysis of the closed network under general service-time laws.

Implements docs/theory.md section 9 (general service); the derivation, references, assumptions
and limits are in ``docs/theory.md section 9``. Summary of the method:

* **Recursion.** An MVA-type recursion over populations ``N = 1..m``. For a FIFO station the mean
  number of tasks is split as ``E_N[X] = P_N(X >= 1) + E_N[(X - 1)^+]``. The first term is
  ``lambda(N) d`` by the utilisation law, exactly, for any law. The second term uses the
  product-form identity ``E_N[(X - 1)^+] = sigma lambda(N) E_{N-1}[X]``, which holds for a station
  whose queue-length marginal is geometric beyond the first task with decay ``sigma``. So

      R(N) = d (1 + g Q(N-1)),   lambda(N) = N / sum_s R_s(N),   Q(N) = lambda(N) R(N)

  with ``g = sigma / d``. Exponential service has ``g = 1`` (exact MVA). For another law, ``g``
  is chosen so that the station, fed at the load ``rho = lambda(N-1) d``, has the mean queue of an
  M/G/1 queue (Pollaczek-Khinchine) with residual service ``r``:
  ``g = X / (1 + rho (X - 1))``, ``X = r / E[S]``.
* **Finite population.** In a closed network the tasks that arrive during one long service
  are the few that are elsewhere, and once they have all returned, no more arrive. So the
  length-biased residual ``E[S^2] / (2 E[S])`` of the open queue is truncated at the mean return
  time ``tau`` of a task to the station: arrivals come at a constant rate until ``tau``,
  so ``r(tau) = E[S c - c^2 / 2] / E[c]`` with ``c = min(S, tau)``. It uses the whole law, not
  only two moments. ``r(0) = E[S]`` (a fresh service) and ``r(inf) = E[S^2] / (2 E[S])``;
  ``r = E[S]`` for every ``tau`` when the law is exponential.
  ``tau = (sum_j R_j(N-1) - R_s(N-1)) / v_s``.
* **Delay.** As in the product form, ``E[D_i] = E_{m-1}[Y_i] / p_i + E_{m-1}[X_cs]``. The mean
  number of tasks seen at update epochs is approximated by the time average at ``m - 1``. This
  keeps ``sum_i p_i E[D_i] = m - 1`` (the conservation law), but it is the weakest part of the
  approximation (see the validation report).

Delay (infinite-server) stations are insensitive and exact; FIFO stations with exponential
service are exact. When every FIFO station is exponential, the recursion performs the same
floating-point operations as :func:`aflqueue.queueing.mva.mva` and returns the same bits.

Implementation: ``X`` depends on the law only through its shape, so it is tabulated once per
shape (values and one-sided slopes at 64 knots per decade of ``x = tau / E[S]``, from closed
forms of the partial moments) and read by cubic Hermite interpolation inside a compiled loop;
the interpolant agrees with the closed forms to ~1e-8.

Gradients: :func:`approximate_mva_vjp` runs the recursion backwards (a hand-written adjoint,
``O(S m)`` like the forward pass) and gives exact derivatives of the approximation with
respect to the station demands. :func:`approx_delay_objective` and :func:`approx_metrics_vjp`
turn them into routing gradients.

Units: rates in tasks per time unit, demands ``d_s = v_s / mu_s`` in time units per update,
throughput in updates per time unit, delays in updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from ..errors import ValidationError
from ..laws import Deterministic, Empirical, Exponential, Gamma, LogNormal, Mixture, Pareto, ServiceLaw, Weibull
from ..system import System
from .analysis import Analysis, metrics_from_stations
from .delay import relative_delay_from_queues
from .gradients import DelayObjective
from ..jit import cached_njit
from .network import SERVER, network_of

__all__ = ["ApproxAnalysis", "ApproxMVAResult", "approx_analyze", "approximate_mva", "approximate_mva_vjp",
           "approx_delay_objective", "approx_metrics_vjp", "truncated_residual", "partial_moments",
           "approximated_stations", "residual_table", "residual_tables", "METHOD"]

METHOD = "approx"

# --------------------------------------------------------------------------- law functionals


def partial_moments(law: ServiceLaw, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(P(S > t), E[S; S <= t], E[S; S > t], E[S^2; S <= t])`` at durations ``t`` (time units).

    Closed forms for every law of :mod:`aflqueue.laws` (upper tails computed directly, not as
    ``1 - F``, so that they stay accurate far out); an empirical law uses its sorted samples and
    a mixture the weighted sum over its components. Shapes follow ``t``.
    """
    t = np.asarray(t, dtype=float)
    if isinstance(law, Exponential):
        u = t / law.mean
        e = np.exp(-u)
        return e, law.mean * (1.0 - e * (1.0 + u)), law.mean * e * (1.0 + u), \
            law.mean**2 * (2.0 - e * (u * u + 2.0 * u + 2.0))
    if isinstance(law, Deterministic):
        hit = (t >= law.mean).astype(float)
        return 1.0 - hit, law.mean * hit, law.mean * (1.0 - hit), law.mean**2 * hit
    if isinstance(law, LogNormal):
        s2 = math.log1p(law.cv**2)
        s, mu = math.sqrt(s2), math.log(law.mean) - 0.5 * s2
        with np.errstate(divide="ignore"):
            z = (np.log(t) - mu) / s
        return (special.ndtr(-z), law.mean * special.ndtr(z - s), law.mean * special.ndtr(s - z),
                law.mean**2 * math.exp(s2) * special.ndtr(z - 2 * s))
    if isinstance(law, Gamma):
        k, theta = law.shape, law.mean / law.shape
        u = t / theta
        return (special.gammaincc(k, u), law.mean * special.gammainc(k + 1, u), law.mean * special.gammaincc(k + 1, u),
                law.mean**2 * (k + 1) / k * special.gammainc(k + 2, u))
    if isinstance(law, Weibull):
        k, lam = law.shape, law.scale
        u = (t / lam) ** k
        m1 = lam * math.gamma(1 + 1 / k)
        return (np.exp(-u), m1 * special.gammainc(1 + 1 / k, u), m1 * special.gammaincc(1 + 1 / k, u),
                lam**2 * math.gamma(1 + 2 / k) * special.gammainc(1 + 2 / k, u))
    if isinstance(law, Pareto):
        a, xm = law.shape, law.minimum
        with np.errstate(divide="ignore"):
            ly = np.log(np.maximum(t, xm) / xm)  # >= 0; below x_m the law has no mass
        m1 = a * xm / (a - 1)
        e2 = 2 * xm**2 * ly if a == 2 else a * xm**2 / (a - 2) * -np.expm1(-(a - 2) * ly)
        return np.exp(-a * ly), m1 * -np.expm1(-(a - 1) * ly), m1 * np.exp(-(a - 1) * ly), e2
    if isinstance(law, Empirical):
        x = np.sort(law.samples)
        n = x.size
        c1 = np.concatenate([[0.0], np.cumsum(x)])
        c2 = np.concatenate([[0.0], np.cumsum(x * x)])
        k = np.searchsorted(x, t, side="right")
        up = np.concatenate([np.cumsum(x[::-1])[::-1], [0.0]])  # sum of x[k:], summed from the top
        return (n - k) / n, c1[k] / n, up[k] / n, c2[k] / n
    if isinstance(law, Mixture):
        out = [np.zeros_like(t) for _ in range(4)]
        for w, comp in zip(law.weights, law.components):
            for acc, part in zip(out, partial_moments(comp, t)):
                acc += w * part
        return out[0], out[1], out[2], out[3]
    raise ValidationError("service", f"law {type(law).__name__} is not supported by the approximate analysis")


def truncated_residual(law: ServiceLaw, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residual service seen by arrivals that stop at the horizon ``tau = x E[S]``.

    Returns ``(X, dX/dx)`` with ``X = r(tau) / E[S]`` and ``r(tau) = E[S c - c^2 / 2] / E[c]``,
    ``c = min(S, tau)``: the mean remaining service seen by arrivals spread uniformly over the
    first ``tau`` time units of a service (docs/theory.md section 9, "finite population").
    ``X(0) = 1``, ``X(inf) = E[S^2] / (2 E[S]^2)``, and ``X = 1`` for the exponential law. The
    derivative needs no density: ``dr/dtau = (E[(S - tau)^+] - r P(S > tau)) / E[c]``.
    """
    x = np.asarray(x, dtype=float)
    if isinstance(law, Exponential):
        return np.ones_like(x), np.zeros_like(x)
    mean = law.mean
    t = x * mean
    tail, e1, e1_up, e2 = partial_moments(law, t)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        excess = np.maximum(e1_up - t * tail, 0.0)       # E[(S - tau)^+]
        short = e1 + t * tail                            # E[min(S, tau)]
        num = 0.5 * e2 + t * excess + 0.5 * t * t * tail  # E[S c - c^2 / 2], a sum of positive terms
        r = num / short
        dr = (excess - r * tail) / short
    small = ~(short > 1e-300 * mean) | (x <= 0)
    # tau -> 0: an arrival at the start of a service waits the whole of it
    return np.where(small, 1.0, r / mean), np.where(small, -0.5, dr)


def _is_exponential(law: ServiceLaw) -> bool:
    return isinstance(law, Exponential)


# --------------------------------------------------------------------------- residual tables
# X(x) is tabulated once per law shape on a log grid and read by cubic Hermite interpolation in
# log x, with the exact values and one-sided slopes of truncated_residual at the knots. The
# compiled recursion then needs no special functions, and its derivative is the derivative of
# the interpolant (consistent with finite differences of the same function). Relative
# interpolation error ~1e-8 for smooth laws; below X_LO the law is linear (X = 1 - x/2 to first
# order); above X_HI (a million mean services) X is held at its last value.
_PER_DECADE = 64
_X_LO_EXP, _X_HI_EXP = -6, 6
_KNOTS = 10.0 ** (np.arange(_X_LO_EXP * _PER_DECADE, _X_HI_EXP * _PER_DECADE + 1) / _PER_DECADE)
_H = math.log(10.0) / _PER_DECADE
_TABLES: dict[Any, np.ndarray] = {}


def _shape_key(law: ServiceLaw) -> Any:
    """Laws equal up to scale share one key (hence one table): a value, never an object id."""
    if isinstance(law, Exponential):
        return ("exponential",)
    if isinstance(law, Deterministic):
        return ("deterministic",)
    if isinstance(law, LogNormal):
        return ("lognormal", law.cv)
    if isinstance(law, (Gamma, Weibull, Pareto)):
        return (law.name, law.shape)
    if isinstance(law, Empirical):
        return ("empirical", (law.samples / law.mean).tobytes())
    if isinstance(law, Mixture):
        return ("mixture", tuple(law.weights.tolist()),
                tuple((c.mean / law.mean, _shape_key(c)) for c in law.components))
    raise ValidationError("service", f"law {type(law).__name__} is not supported by the approximate analysis")


def residual_table(law: ServiceLaw) -> np.ndarray:
    """Knot table of :func:`truncated_residual` for the law's shape, shape ``(3, K)``: values,
    left slopes and right slopes (in ``d/d log x``) at the knots ``10^(j/64)``, ``|j| <= 384``."""
    key = _shape_key(law)
    tab = _TABLES.get(key)
    if tab is None:
        unit = law.with_mean(1.0)
        X, _ = truncated_residual(unit, _KNOTS)
        _, d_left = truncated_residual(unit, _KNOTS * (1.0 - 1e-9))
        _, d_right = truncated_residual(unit, _KNOTS * (1.0 + 1e-9))
        tab = np.ascontiguousarray(np.vstack([X, d_left * _KNOTS, d_right * _KNOTS]))
        tab.setflags(write=False)
        if len(_TABLES) > 256:  # bounded memory for long sessions over many laws
            _TABLES.clear()
        _TABLES[key] = tab
    return tab


_U0 = -_X_LO_EXP * _PER_DECADE  # knot index of x = 1
_X_LO = 10.0 ** _X_LO_EXP


@cached_njit(inline="always")
def _residual_at(tabs, j, x):  # pragma: no cover - compiled
    """``(X, dX/dx)`` from knot table ``j`` of ``tabs`` (shape ``(G, 3, K)``) at ``x >= 0``."""
    K = tabs.shape[2]
    if x <= 0.0:
        return 1.0, -0.5
    u = math.log(x) * (1.0 / _H) + _U0
    if u < 0.0:  # below the grid: linear from X(0) = 1
        s = (tabs[j, 0, 0] - 1.0) / _X_LO
        return 1.0 + s * x, s
    if u >= K - 1:
        return tabs[j, 0, K - 1], 0.0
    k = int(u)
    t = u - k
    y0 = tabs[j, 0, k]
    y1 = tabs[j, 0, k + 1]
    m0 = tabs[j, 2, k] * _H  # right slope at the left knot, left slope at the right one
    m1 = tabs[j, 1, k + 1] * _H
    t2 = t * t
    t3 = t2 * t
    X = (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * m0 + (-2 * t3 + 3 * t2) * y1 + (t3 - t2) * m1
    dXdu = ((6 * t2 - 6 * t) * (y0 - y1) + (3 * t2 - 4 * t + 1) * m0 + (3 * t2 - 2 * t) * m1) * (1.0 / _H)
    return X, dXdu / x


# --------------------------------------------------------------------------- stations
@dataclass(frozen=True, eq=False)
class _Stations:
    """Every station of a system, including those of clients with ``p_i = 0`` (zero demand), so that
    one-sided derivatives at the boundary of the simplex exist. Arrays of shape ``(S,)``."""

    demands: np.ndarray
    rates: np.ndarray
    is_delay: np.ndarray
    owner: np.ndarray
    laws: tuple[ServiceLaw, ...]


def _stations(system: System, routing: np.ndarray) -> _Stations:
    stages, owner = [], []
    for i, c in enumerate(system.clients):
        for _, stage in c.stages():  # visiting order, as in System.stage_table and network_of
            stages.append(stage)
            owner.append(i)
    if system.server is not None:
        stages.append(system.server)
        owner.append(SERVER)
    owner_arr = np.asarray(owner, dtype=np.int64)
    rates = np.array([stage.rate for stage in stages])
    visits = np.where(owner_arr >= 0, routing[np.maximum(owner_arr, 0)], 1.0)
    return _Stations(demands=visits / rates, rates=rates,  # d = v / mu, exactly as network_of
                     is_delay=np.array([stage.discipline == "delay" for stage in stages], dtype=bool),
                     owner=owner_arr, laws=tuple(stage.law for stage in stages))


def _active(st: _Stations, p: np.ndarray) -> np.ndarray:
    """Mask of the stations :func:`network_of` keeps (clients with ``p_i > 0``, and the server)."""
    return np.where(st.owner == SERVER, True, p[np.maximum(st.owner, 0)] > 0)


def residual_tables(laws: tuple[ServiceLaw, ...], is_delay: np.ndarray, demands: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(table index per FIFO station, stacked tables (G, 3, K))``. Index -1 (``X = 1`` exactly)
    for exponential laws and for zero-demand stations, which never hold a task."""
    fi = np.flatnonzero(~np.asarray(is_delay, dtype=bool))
    index = np.full(fi.size, -1, dtype=np.int64)
    tabs: list[np.ndarray] = []
    seen: dict[Any, int] = {}
    for k, s in enumerate(fi):
        law = laws[s]
        if _is_exponential(law) or demands[s] <= 0:
            continue
        key = _shape_key(law)
        if key not in seen:
            seen[key] = len(tabs)
            tabs.append(residual_table(law))
        index[k] = seen[key]
    stack = np.stack(tabs) if tabs else np.zeros((0, 3, _KNOTS.size))
    return index, np.ascontiguousarray(stack)


# --------------------------------------------------------------------------- recursion
@cached_njit()
def _forward_kernel(f, d_sum, m, index, tabs, tape):  # pragma: no cover - compiled
    """The recursion over FIFO demands ``f`` (module docstring). Returns ``lam (m+1,), Q, Q_prev,
    R (nf,)`` and, if ``tape``, ``Q(k-1)``, ``x``, ``X`` and ``dX/dx`` for ``k = 1..m`` (shape ``(m, nf)``).

    No fastmath, sums left to right from ``d_sum``: with ``index == -1`` everywhere this performs
    the operations of the exact MVA kernel in the same order (same bits)."""
    nf = f.size
    lam = np.zeros(m + 1)
    Q = np.zeros(nf)
    Qp = np.zeros(nf)
    R = np.zeros(nf)
    g = np.ones(nf)
    rows = m if tape else 0
    TQ = np.zeros((rows, nf))
    Tx = np.zeros((rows, nf))
    TX = np.ones((rows, nf))
    TdX = np.zeros((rows, nf))
    total_prev = 0.0
    for k in range(1, m + 1):
        for i in range(nf):
            g[i] = 1.0
            if k >= 2 and index[i] >= 0:
                x = (total_prev - R[i]) / f[i]
                X, dX = _residual_at(tabs, index[i], x)
                rho = min(lam[k - 1] * f[i], 1.0)
                g[i] = X / (1.0 + rho * (X - 1.0))
                if tape:
                    Tx[k - 1, i] = x
                    TX[k - 1, i] = X
                    TdX[k - 1, i] = dX
        if tape:
            for i in range(nf):
                TQ[k - 1, i] = Q[i]
        tot = d_sum
        for i in range(nf):
            r = f[i] * (1.0 + g[i] * Q[i])
            R[i] = r
            tot += r
        x_k = k / tot
        lam[k] = x_k
        total_prev = tot
        for i in range(nf):
            Qp[i] = Q[i]
            Q[i] = x_k * R[i]
    return lam, Q, Qp, R, TQ, Tx, TX, TdX


@cached_njit()
def _backward_kernel(f, m, index, lam, TQ, Tx, TX, TdX, lam_bar, Q_bar_m, Q_bar_prev):  # pragma: no cover
    """Adjoint of :func:`_forward_kernel`: cotangents on ``lambda(k)`` (``lam_bar``, modified in
    place), ``Q(m)`` and ``Q(m-1)`` of the FIFO stations; returns ``(f_bar (nf,), total_bar (m+1,))``
    where ``total_bar[k]`` is the cotangent of ``sum_s R_s(k)`` (the delay stations' share)."""
    nf = f.size
    f_bar = np.zeros(nf)
    total_bars = np.zeros(m + 1)
    Q_bar = Q_bar_m.copy()
    R_next_bar = np.zeros(nf)
    total_next_bar = 0.0
    g = np.ones(nf)
    X = np.ones(nf)
    dX = np.zeros(nf)
    for k in range(m, 0, -1):
        for i in range(nf):
            g[i] = 1.0
            X[i] = 1.0
            dX[i] = 0.0
            if k >= 2 and index[i] >= 0:
                X[i] = TX[k - 1, i]
                dX[i] = TdX[k - 1, i]
                rho = min(lam[k - 1] * f[i], 1.0)
                g[i] = X[i] / (1.0 + rho * (X[i] - 1.0))
        # Q(k) = lambda(k) R(k), lambda(k) = k / total(k), total(k) = d_sum + sum R(k)
        acc = 0.0
        for i in range(nf):
            acc += Q_bar[i] * f[i] * (1.0 + g[i] * TQ[k - 1, i])
        lam_bar[k] += acc
        total_bar = total_next_bar - lam[k] * lam[k] / k * lam_bar[k]
        total_bars[k] = total_bar
        T_sum = 0.0
        lam_prev_bar = 0.0
        for i in range(nf):
            q_prev = TQ[k - 1, i]
            R_bar = lam[k] * Q_bar[i] + R_next_bar[i] + total_bar
            # R(k) = f (1 + g Q(k-1))
            f_bar[i] += R_bar * (1.0 + g[i] * q_prev)
            g_bar = R_bar * f[i] * q_prev
            Q_bar[i] = R_bar * f[i] * g[i]
            if k == m:
                Q_bar[i] += Q_bar_prev[i]
            R_next_bar[i] = 0.0
            if k >= 2 and index[i] >= 0:
                rho_raw = lam[k - 1] * f[i]
                rho = min(rho_raw, 1.0)
                den = 1.0 + rho * (X[i] - 1.0)
                X_bar = g_bar * (1.0 - g[i] * rho) / den
                if rho_raw < 1.0:
                    rho_bar = -g_bar * g[i] * (X[i] - 1.0) / den
                    lam_prev_bar += rho_bar * f[i]
                    f_bar[i] += rho_bar * lam[k - 1]
                # x = (total(k-1) - R_i(k-1)) / f
                x_bar = X_bar * dX[i]
                T_bar = x_bar / f[i]
                f_bar[i] -= x_bar * Tx[k - 1, i] / f[i]
                T_sum += T_bar
                R_next_bar[i] = -T_bar
        if k >= 2:
            lam_bar[k - 1] += lam_prev_bar
        total_next_bar = T_sum
    return f_bar, total_bars


@dataclass(frozen=True, eq=False)
class ApproxMVAResult:
    """Output of :func:`approximate_mva` at population ``m``. Station arrays have shape ``(S,)``.

    Attributes:
        throughput: shape ``(m+1,)``, ``lambda(k)`` for ``k = 0..m`` (updates per time unit).
        queue_lengths: ``E_m[X_s]``; queue_lengths_prev: ``E_{m-1}[X_s]`` (zeros when m = 1).
        residence_times: ``R_s(m)`` (time units per update, ``= v_s`` times the mean sojourn).
        tape: what :func:`approximate_mva_vjp` needs (empty unless asked for).
    """

    throughput: np.ndarray
    queue_lengths: np.ndarray
    queue_lengths_prev: np.ndarray
    residence_times: np.ndarray
    tape: dict[str, Any] = field(default_factory=dict)

    @property
    def population(self) -> int:
        return self.throughput.size - 1


def approximate_mva(demands: np.ndarray, is_delay: np.ndarray, table_index: np.ndarray, tables: np.ndarray,
                    population: int, *, tape: bool = False) -> ApproxMVAResult:
    """The recursion of the module docstring for populations ``1..population`` (compiled).

    Args:
        demands: ``d_s >= 0``, shape ``(S,)`` (time units per update).
        is_delay: shape ``(S,)`` booleans.
        table_index, tables: from :func:`residual_tables` (one index per FIFO station, in order;
            -1 means exponential: ``X = 1``).
        population: ``m >= 1``.
        tape: keep what :func:`approximate_mva_vjp` needs (memory ``4 m S_fifo`` floats).
    """
    d = np.asarray(demands, dtype=np.float64)
    delay = np.asarray(is_delay, dtype=bool)
    m = int(population)
    fi, di = np.flatnonzero(~delay), np.flatnonzero(delay)
    f = np.ascontiguousarray(d[fi])
    lam, Qf, Qf_prev, Rf, TQ, Tx, TX, TdX = _forward_kernel(f, float(d[di].sum()), m,
                                                   np.ascontiguousarray(table_index, dtype=np.int64), tables, tape)
    S = d.size
    Q, Qp, Rs = np.zeros(S), np.zeros(S), np.zeros(S)
    Q[fi], Qp[fi], Rs[fi] = Qf, Qf_prev, Rf
    Q[di] = lam[m] * d[di]  # delay stations: E_k[X] = lambda(k) d, for any law
    Qp[di] = lam[m - 1] * d[di]
    Rs[di] = d[di]
    extra: dict[str, Any] = {}
    if tape:
        extra = dict(TQ=TQ, Tx=Tx, TX=TX, TdX=TdX, fi=fi, di=di, f=f, d=d,
                     index=np.ascontiguousarray(table_index, dtype=np.int64))
    return ApproxMVAResult(throughput=lam, queue_lengths=Q, queue_lengths_prev=Qp, residence_times=Rs, tape=extra)


def approximate_mva_vjp(res: ApproxMVAResult, *, d_throughput: float = 0.0,
                        d_queue_lengths: np.ndarray | None = None,
                        d_queue_lengths_prev: np.ndarray | None = None) -> np.ndarray:
    """Gradient with respect to the demands (shape ``(S,)``) of

        F = a lambda(m) + sum_s c_s E_m[X_s] + sum_s b_s E_{m-1}[X_s]

    (``a = d_throughput``, ``c = d_queue_lengths``, ``b = d_queue_lengths_prev``) for the
    approximation itself: the recursion run backwards (compiled, ``O(S m)``), from the values
    kept by ``approximate_mva(..., tape=True)``.
    """
    tp = res.tape
    if not tp:
        raise ValueError("res: run approximate_mva(..., tape=True) first")
    fi, di, f, d = tp["fi"], tp["di"], tp["f"], tp["d"]
    lam = res.throughput
    m = res.population
    S = d.size
    c = np.zeros(S) if d_queue_lengths is None else np.asarray(d_queue_lengths, dtype=float)
    b = np.zeros(S) if d_queue_lengths_prev is None else np.asarray(d_queue_lengths_prev, dtype=float)
    lam_bar = np.zeros(m + 1)
    lam_bar[m] += d_throughput
    # delay stations: E_k[X_s] = lambda(k) d_s
    lam_bar[m] += float(c[di] @ d[di])
    d_delay = lam[m] * c[di]
    lam_bar[m - 1] += float(b[di] @ d[di])
    d_delay = d_delay + lam[m - 1] * b[di]
    b_fifo = b[fi] if m >= 2 else np.zeros(fi.size)
    f_bar, total_bars = _backward_kernel(f, m, tp["index"], lam, tp["TQ"], tp["Tx"], tp["TX"], tp["TdX"], lam_bar,
                                         np.ascontiguousarray(c[fi]), np.ascontiguousarray(b_fifo))
    out = np.zeros(S)
    out[fi] = f_bar
    out[di] = d_delay + total_bars[1:].sum()  # every total(k) holds the delay demands once
    return out


# --------------------------------------------------------------------------- system level
def approximated_stations(system: System) -> list[str]:
    """Names of the stations the analysis approximates (FIFO with a non-exponential law);
    empty when the result is exact (it then equals the product form)."""
    out = []
    for c in system.clients:
        for name, st in c.stages():
            if st.discipline == "fifo" and not _is_exponential(st.law):
                out.append(f"{c.name}.{name} ({st.law.name})")
    if system.server is not None and system.server.discipline == "fifo" and not _is_exponential(system.server.law):
        out.append(f"server ({system.server.law.name})")
    return out


def _solve(system: System, routing: np.ndarray, concurrency: int, tape: bool) -> tuple[_Stations, ApproxMVAResult]:
    st = _stations(system, np.asarray(routing, dtype=float))
    index, tables = residual_tables(st.laws, st.is_delay, st.demands)
    res = approximate_mva(st.demands, st.is_delay, index, tables, int(concurrency), tape=tape)
    return st, res


#: Approximate results are :class:`~aflqueue.queueing.analysis.Analysis` objects with
#: ``method = "approx"`` and the approximated stations listed (empty: exact product form).
ApproxAnalysis = Analysis


def approx_analyze(system: System) -> ApproxAnalysis:
    """Approximate metrics of ``system`` at its concurrency (module docstring; exact when every
    FIFO station has exponential service)."""
    p = system.routing
    m = system.concurrency
    st, res = _solve(system, p, m, tape=False)
    net = network_of(system)
    keep = _active(st, p)
    q, q_prev, R = res.queue_lengths[keep], res.queue_lengths_prev[keep], res.residence_times[keep]
    resp = R / net.visits  # Little: E[X] = v lambda W and R = E[X] / lambda
    return metrics_from_stations(system, net, float(res.throughput[m]), q, q_prev, resp, METHOD,
                                 approximated=tuple(approximated_stations(system)))


def _client_sum_matrix(st: _Stations, n: int) -> np.ndarray:
    """``A[i, s] = 1`` if station ``s`` belongs to client ``i``, shape ``(n, S)``."""
    a = np.zeros((n, st.owner.size))
    own = st.owner >= 0
    a[st.owner[own], np.flatnonzero(own)] = 1.0
    return a


def _routing_from_demands(st: _Stations, d_bar: np.ndarray, n: int) -> np.ndarray:
    """Chain rule through ``d_s = p_i E[S_s]`` (client stations; the server does not depend on p)."""
    own = st.owner >= 0
    return np.bincount(st.owner[own], weights=(d_bar / st.rates)[own], minlength=n)


def approx_metrics_vjp(system: System, *, d_throughput: float = 0.0, d_queue_lengths: np.ndarray | None = None,
                       d_relative_delay: np.ndarray | None = None, routing: np.ndarray | None = None,
                       concurrency: int | None = None) -> np.ndarray:
    """Gradient w.r.t. routing ``p`` (shape ``(n,)``, every ``p_i`` a free variable) of

        F = a lambda(m) + sum_i c_i E_m[Y_i] + sum_i b_i E[D_i]

    for the approximation (``a = d_throughput``, ``c = d_queue_lengths``, ``b =
    d_relative_delay``; entries of ``b`` for clients with ``p_i = 0`` are ignored). One forward
    and one backward pass; at ``p_i = 0`` the derivative is one-sided.
    """
    p = system.routing if routing is None else np.asarray(routing, dtype=float)
    m = system.concurrency if concurrency is None else int(concurrency)
    n = system.n
    st, res = _solve(system, p, m, tape=True)
    A = _client_sum_matrix(st, n)
    c_st = np.zeros(st.owner.size) if d_queue_lengths is None else np.asarray(d_queue_lengths, float) @ A
    explicit = np.zeros(n)
    b_st = None
    if d_relative_delay is not None:
        b = np.where(p > 0, np.asarray(d_relative_delay, dtype=float), 0.0)
        b_st, explicit = _delay_cotangent(st, res, p, b)
    d_bar = approximate_mva_vjp(res, d_throughput=d_throughput, d_queue_lengths=c_st, d_queue_lengths_prev=b_st)
    return _routing_from_demands(st, d_bar, n) + explicit


def _delay_cotangent(st: _Stations, res: ApproxMVAResult, p: np.ndarray, b: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Cotangent on ``E_{m-1}[X_s]`` and the explicit ``d/dp_i`` of ``sum_i b_i E[D_i]``, with
    ``E[D_i] = sum_{s in i} E_{m-1}[X_s] / p_i + E_{m-1}[X_cs]``."""
    own = st.owner >= 0
    safe = np.where(p > 0, p, 1.0)
    c = np.zeros(st.owner.size)
    c[own] = np.where(p[st.owner[own]] > 0, b[st.owner[own]] / safe[st.owner[own]], 0.0)
    c[st.owner == SERVER] = float(b[p > 0].sum())
    y_prev = np.bincount(st.owner[own], weights=res.queue_lengths_prev[own], minlength=p.size)
    explicit = np.where(p > 0, -b * y_prev / safe**2, 0.0)
    return c, explicit


def approx_delay_objective(system: System, routing: np.ndarray, concurrency: int,
                           weights: np.ndarray | None) -> DelayObjective:
    """Drop-in replacement of :func:`aflqueue.queueing.gradients.delay_objective` for the
    approximation: throughput, ``E[D_i]``, ``sum_i w_i E[D_i]`` and their routing gradients.

    ``routing`` is used as given (the optimiser passes feasible points). ``weights=None`` skips
    the delay gradient. At ``p_i = 0`` the derivatives are one-sided.
    """
    p = np.asarray(routing, dtype=float)
    m = int(concurrency)
    n = system.n
    st, res = _solve(system, p, m, tape=True)
    lam = float(res.throughput[m])
    d_lam = _routing_from_demands(st, approximate_mva_vjp(res, d_throughput=1.0), n)
    net = network_of(system, p)
    keep = _active(st, p)
    delay = relative_delay_from_queues(net, res.queue_lengths_prev[keep], p)
    q = res.queue_lengths[keep]
    if weights is None:
        return DelayObjective(lam, d_lam, delay, float("nan"), np.full(n, np.nan), q, net)
    b = np.where(p > 0, np.asarray(weights, dtype=float), 0.0)
    c, explicit = _delay_cotangent(st, res, p, b)
    grad = _routing_from_demands(st, approximate_mva_vjp(res, d_queue_lengths_prev=c), n) + explicit
    return DelayObjective(lam, d_lam, delay, float(np.nansum(b * delay)), grad, q, net)

"""Convergence proxies of Generalized AsyncSGD (docs/theory.md section 5).

With ``S1(p) = (1/n^2) sum_i 1/p_i`` and ``S2(p, m) = (1/n^2) sum_i E[D_i] / p_i`` the per-update
proxy after ``K`` updates is

    U(p, m, eta; K) = c_opt Delta / (eta K) + c_var L (sigma2 + M2) S1 eta + c_stale L^2 (sigma2 + G2) S2 eta^2
                    = a / (eta K) + B eta + C eta^2

(defaults ``c_opt = 2``, ``c_var = c_stale = 1``; every coefficient is a field). Derived proxies:

* wall clock: ``W(tau) = U(K = lambda tau)``, optionally with a renewal correction
  ``K -> lambda tau / (1 + d / (lambda tau))`` for the dispersion ``d`` of the update count;
* time to accuracy: ``K_eps = min {K : min_eta U <= eps} = a / g*`` with
  ``g* = max_{0 < eta <= eta_max} eta (eps - B eta - C eta^2)``, and ``E[T_eps] ~ K_eps / lambda``;
* energy: power ``P = sum_s (P_busy,s U_s + P_idle,s (1 - U_s))`` and energy ``P E[T_eps]``.

Optimal step sizes have closed forms or a monotone Newton iteration: for ``U`` the stationarity
condition is ``2 C eta^3 + B eta^2 - a/K = 0`` (one positive root; U is convex in eta > 0, so
clipping at ``eta_max`` is optimal); for ``K_eps`` the maximiser of ``g`` is
``eta = eps / (B + sqrt(B^2 + 3 C eps))``. By the envelope theorem the derivatives of the
optimised proxies with respect to ``B``, ``C`` and ``K`` are the partial derivatives at the
optimal ``eta``; the optimiser relies on this.

Clipped importance weights (docs/theory.md section 11). With the weights
``w_i = min(1/(n p_i), c)`` capped at ``c`` the expected update is ``Q grad f_q`` with
``q_i = min(1/n, c p_i)``, ``Q = sum_i q_i``, and the proxy becomes

    U_c(p, m, eta; K) = a / (Q eta K) + b (S1_c / Q) eta + c S2_c eta^2 + H beta^2

with ``S1_c = sum_i p_i w_i^2``, ``S2_c = sum_i p_i w_i^2 E[D_i]``, the bias factor
``beta = min_s sum_i |q_i - s| / Q`` and the bias constant ``H`` (default ``M2``). ``cap=None`` (or
``inf``) is today's proxy, computed by the same operations (bit for bit). A mix of routings
``lam p + (1 - lam) u`` needs nothing here: the proxy is evaluated at the mixed routing.

These are proxies, not predictions of accuracy: they rank routings and concurrencies.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

from .errors import check_number, require

__all__ = ["ProxyConstants", "EnergyModel", "ProxyTerms", "ProxyValue", "s1", "s2", "s2_weights",
           "s2_gradient", "optimal_eta_per_update", "per_update", "per_update_proxy", "wallclock_proxy",
           "time_to_accuracy_updates", "time_to_accuracy_proxy", "power", "CONSTANT_NAMES",
           "check_cap", "cap_is_active", "clipped_weights", "effective_mass", "bias_factor", "ClipFactors",
           "clip_factors", "mixed_routing"]

#: Largest value a proxy constant may take (the proxies multiply up to three of them).
CONSTANT_RANGE = 1e12

CONSTANT_NAMES = ("Delta", "L", "sigma2", "M2", "G2")


@dataclass(frozen=True)
class ProxyConstants:
    """Problem constants and proxy coefficients (JSON-serialisable; names as in docs/theory.md).

    Attributes:
        Delta: ``f(w_0) - f*`` (loss units), > 0.
        L: smoothness constant, > 0.
        sigma2: stochastic-gradient variance ``sigma^2``, >= 0.
        M2: client heterogeneity bound ``M^2``, >= 0.
        G2: gradient second-moment bound ``G^2``, >= 0.
        eta: fixed step size in ``(0, eta_max]``, or None to optimise it.
        eta_max: stability cap on the step size (default ``1 / L``).
        c_opt, c_var, c_stale: coefficients of the three terms (defaults 2, 1, 1), >= 0.
    """

    Delta: float = 1.0
    L: float = 1.0
    sigma2: float = 1.0
    M2: float = 1.0
    G2: float = 1.0
    eta: float | None = None
    eta_max: float | None = None
    c_opt: float = 2.0
    c_var: float = 1.0
    c_stale: float = 1.0

    def __post_init__(self):
        def num(name: str, positive: bool) -> float:
            # beyond CONSTANT_RANGE the proxies' products over- or underflow in double precision
            x = check_number(getattr(self, name), name, 0.0, CONSTANT_RANGE, lo_open=positive)
            object.__setattr__(self, name, x)
            return x

        for name in ("Delta", "L"):
            num(name, True)
        for name in ("sigma2", "M2", "G2", "c_opt", "c_var", "c_stale"):
            num(name, False)
        require(self.c_opt > 0, "c_opt", f"must be > 0 (got {self.c_opt})")
        if self.eta_max is None:
            object.__setattr__(self, "eta_max", 1.0 / self.L)
        num("eta_max", True)
        if self.eta is not None:
            num("eta", True)
            require(self.eta <= self.eta_max * (1 + 1e-12), "eta",
                    f"must be <= eta_max = {self.eta_max:g} (got {self.eta:g})")

    @property
    def a(self) -> float:
        """Optimisation-term numerator ``c_opt Delta``."""
        return self.c_opt * self.Delta

    @property
    def b(self) -> float:
        """Variance-term factor ``c_var L (sigma2 + M2)`` (multiplies ``S1 eta``)."""
        return self.c_var * self.L * (self.sigma2 + self.M2)

    @property
    def c(self) -> float:
        """Staleness-term factor ``c_stale L^2 (sigma2 + G2)`` (multiplies ``S2 eta^2``)."""
        return self.c_stale * self.L**2 * (self.sigma2 + self.G2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ProxyConstants":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        require(not unknown, "constants", f"unknown field(s) {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**dict(d))


@dataclass(frozen=True, eq=False)
class EnergyModel:
    """Power drawn by each client (watts, or any power unit), busy and idle.

    ``busy_power`` defaults to the DVFS-style ``kappa * mu_i^3`` of the compute stage; ``idle_power``
    to 0. Arrays of shape ``(n,)``. Communication stages may add ``comm_power`` while a task is in
    a downlink/uplink stage (per client, default 0).
    """

    busy_power: np.ndarray
    idle_power: np.ndarray
    comm_power: np.ndarray | None = None

    def __post_init__(self):
        for name in ("busy_power", "idle_power", "comm_power"):
            v = getattr(self, name)
            if v is None:
                continue
            a = np.asarray(v, dtype=float).ravel()
            require(bool(np.all(np.isfinite(a))) and bool(np.all(a >= 0)), name, "powers must be finite and >= 0")
            object.__setattr__(self, name, a)
        require(self.busy_power.shape == self.idle_power.shape, "idle_power", "needs one value per client")

    @classmethod
    def dvfs(cls, rates: np.ndarray, kappa: float = 1.0, idle_fraction: float = 0.0) -> "EnergyModel":
        """``busy = kappa mu^3``, ``idle = idle_fraction * busy``."""
        require(kappa > 0, "kappa", f"must be > 0 (got {kappa})")
        require(0 <= idle_fraction <= 1, "idle_fraction", f"must be in [0, 1] (got {idle_fraction})")
        r = np.asarray(rates, dtype=float)
        # kappa mu^3 must stay finite: name the rates, not the power they overflow into
        limit = (np.finfo(float).max / kappa) ** (1.0 / 3.0)
        require(bool(np.all(r < limit)), "rates",
                f"must be below {limit:.3g} for the DVFS energy model (busy power kappa * rate^3; got {r.max():.3g})")
        busy = kappa * r**3
        return cls(busy, idle_fraction * busy)

    def load_weights(self, rates: np.ndarray, comm_time: np.ndarray | None = None) -> np.ndarray:
        """``w_i`` in ``P = sum(idle) + lambda sum_i p_i w_i`` (docs/theory.md section 5, energy).

        Client i's compute stage is busy a fraction ``p_i lambda / mu_i`` of the time, drawing
        ``busy - idle`` above idle; communication stages draw ``comm_power`` for their mean
        duration ``comm_time`` (time units, per task) when given. Shape ``(n,)``."""
        w = (self.busy_power - self.idle_power) / rates
        if self.comm_power is not None and comm_time is not None:
            w = w + self.comm_power * comm_time
        return w

    def to_dict(self) -> dict[str, Any]:
        d = {"busy_power": self.busy_power.tolist(), "idle_power": self.idle_power.tolist()}
        if self.comm_power is not None:
            d["comm_power"] = self.comm_power.tolist()
        return d


@dataclass(frozen=True)
class ProxyTerms:
    """The terms of ``U`` and the step size they were evaluated at.

    ``bias`` is the floor ``H beta^2`` of clipped importance weights (docs/theory.md section 11);
    it is 0 without a cap."""

    optimisation: float
    variance: float
    staleness: float
    eta: float
    bias: float = 0.0

    @property
    def total(self) -> float:
        return self.optimisation + self.variance + self.staleness + self.bias


# --------------------------------------------------------------------------- clipped weights (section 11)
def check_cap(cap: Any, field: str = "cap") -> float | None:
    """A weight cap: ``None`` or ``inf`` (no cap, returned as None) or a finite number > 0."""
    if cap is None:
        return None
    if isinstance(cap, (int, float)) and not isinstance(cap, bool) and cap == math.inf:
        return None
    return check_number(cap, field, 0.0, CONSTANT_RANGE, lo_open=True)


def cap_is_active(cap: float | None) -> bool:
    """Whether ``cap`` clips anything at all (``None`` and ``inf`` do not)."""
    return cap is not None and math.isfinite(cap)


def clipped_weights(p: np.ndarray, cap: float | None) -> np.ndarray:
    """Importance weights ``w_i = min(1/(n p_i), c)``, shape ``(n,)`` (docs/theory.md section 11).

    ``cap=None`` gives ``1/(n p_i)`` (inf where ``p_i = 0``); with a cap, ``p_i = 0`` gets ``c``."""
    p = np.asarray(p, dtype=float)
    n = p.size
    with np.errstate(divide="ignore"):  # p_i = 0: weight inf, or c with a cap (never routed, never applied)
        return 1.0 / (n * p) if not cap_is_active(cap) else np.minimum(1.0 / (n * p), cap)


def _clipped(p: np.ndarray, cap: float) -> np.ndarray:
    """Clients whose weight is clipped (``c p_i < 1/n``; at equality both forms agree)."""
    return cap * p < 1.0 / p.size


def effective_mass(p: np.ndarray, cap: float | None) -> tuple[float, np.ndarray]:
    """``Q = sum_i q_i``, ``q_i = p_i w_i = min(1/n, c p_i)``, and ``dQ/dp`` (shape ``(n,)``).

    ``Q <= 1`` scales the expected step: ``E[update] = eta Q grad f_q`` (docs/theory.md section 11).
    The gradient is one-sided (the unclipped side) where ``c p_i = 1/n``."""
    p = np.asarray(p, dtype=float)
    n = p.size
    if not cap_is_active(cap):
        return 1.0, np.zeros(n)
    q = np.minimum(1.0 / n, cap * p)
    return float(q.sum()), np.where(_clipped(p, cap), cap, 0.0)


def bias_factor(p: np.ndarray, cap: float | None) -> tuple[float, np.ndarray]:
    """``beta^2`` and its routing gradient (shape ``(n,)``), docs/theory.md section 11.

    ``beta = min_s sum_i |q_i - s| / Q``: the largest ``||grad f_q - grad f|| / M`` over all client
    gradients with ``||grad f_i - grad f|| <= M`` (the minimum is at a median of ``q``, so ``beta``
    is the sum of the ``floor(n/2)`` largest ``q_i`` minus the sum of the ``floor(n/2)`` smallest,
    over ``Q``). ``beta <= (1 - Q) / Q``, with equality when at most half the clients are clipped.
    Piecewise smooth: the gradient is one-sided where two ``q_i`` tie or a weight meets the cap."""
    p = np.asarray(p, dtype=float)
    n = p.size
    if not cap_is_active(cap) or not np.any(_clipped(p, cap)):
        return 0.0, np.zeros(n)  # every q_i = 1/n: f_q = f, no bias (exactly, not to rounding)
    q = np.minimum(1.0 / n, cap * p)
    Q = float(q.sum())
    order = np.argsort(q, kind="stable")
    h = n // 2
    sign = np.zeros(n)
    sign[order[n - h:]] = 1.0
    sign[order[:h]] = -1.0
    D = float(sign @ q)
    beta = D / Q
    _, dQ = effective_mass(p, cap)
    dD = sign * dQ  # dq_i/dp_i = c on clipped clients, 0 otherwise
    return beta * beta, 2.0 * beta * (dD / Q - D * dQ / (Q * Q))


@dataclass(frozen=True, eq=False)
class ClipFactors:
    """What a weight cap changes in the proxies (docs/theory.md section 11).

    Attributes:
        cap: the cap ``c``.
        Q: effective mass ``sum_i min(1/n, c p_i)`` (the expected step is ``eta Q``); d_Q: ``dQ/dp``.
        bias: the floor ``H beta^2`` (loss units of the proxy); d_bias: its routing gradient.
        beta2: ``beta^2``; H: the bias constant.
    Gradients have shape ``(n,)``."""

    cap: float
    Q: float
    d_Q: np.ndarray
    bias: float
    d_bias: np.ndarray
    beta2: float
    H: float


def clip_factors(p: np.ndarray, cap: float | None, H: float) -> ClipFactors | None:
    """:class:`ClipFactors` at routing ``p`` for cap ``c`` and bias constant ``H >= 0``; None
    when ``cap`` clips nothing (None or inf), so that the proxies take today's path."""
    if not cap_is_active(cap):
        return None
    Q, dQ = effective_mass(p, cap)
    b2, db2 = bias_factor(p, cap)
    return ClipFactors(float(cap), Q, dQ, H * b2, H * db2, b2, float(H))


def mixed_routing(p: np.ndarray, mix: float) -> np.ndarray:
    """``lam p + (1 - lam) u`` with ``u`` uniform (docs/theory.md section 11); shape ``(n,)``.
    Its routing gradient is ``lam`` times the gradient at the mixed routing."""
    p = np.asarray(p, dtype=float)
    if mix == 1.0:
        return p
    return mix * p + (1.0 - mix) / p.size


# --------------------------------------------------------------------------- routing factors
def s1(p: np.ndarray, cap: float | None = None) -> tuple[float, np.ndarray]:
    """``S1 = (1/n^2) sum 1/p_i`` and its gradient (shape ``(n,)``); needs ``p > 0``.

    With a cap ``c`` (docs/theory.md section 11): ``S1_c = sum_i p_i w_i^2`` with
    ``w_i = min(1/(n p_i), c)``, gradient ``c^2`` on clipped clients and ``-1/(n^2 p_i^2)`` on the
    others; it equals ``S1`` when no weight is clipped."""
    p = np.asarray(p, dtype=float)
    n = p.size
    if not cap_is_active(cap):
        return float(np.sum(1.0 / p) / n**2), -1.0 / (n**2 * p**2)
    clipped = _clipped(p, cap)
    with np.errstate(divide="ignore"):
        unclipped_term = 1.0 / (n * n * p)
        unclipped_grad = -1.0 / (n * n * p * p)
    return (float(np.sum(np.where(clipped, cap * cap * p, unclipped_term))),
            np.where(clipped, cap * cap, unclipped_grad))


def s2_weights(p: np.ndarray, cap: float | None = None) -> np.ndarray:
    """Weights ``p_i w_i^2`` with ``S2 = sum_i p_i w_i^2 E[D_i]``, shape ``(n,)``: ``1 / (n^2 p_i)``
    without a cap (needs ``p > 0``), ``c^2 p_i`` on clients clipped at ``c`` (section 11)."""
    p = np.asarray(p, dtype=float)
    n = p.size
    if not cap_is_active(cap):
        return 1.0 / (n * n * p)
    with np.errstate(divide="ignore"):
        return np.where(_clipped(p, cap), cap * cap * p, 1.0 / (n * n * p))


def s2(relative_delay: np.ndarray, p: np.ndarray, cap: float | None = None) -> float:
    """``S2 = (1/n^2) sum E[D_i] / p_i`` (docs/theory.md section 5; needs ``p > 0``), or with a cap
    ``S2_c = sum_i p_i w_i^2 E[D_i]`` (section 11)."""
    return float(np.nansum(s2_weights(p, cap) * np.asarray(relative_delay, dtype=float)))


def s2_gradient(relative_delay: np.ndarray, p: np.ndarray, d_weighted_delay: np.ndarray,
                cap: float | None = None) -> np.ndarray:
    """Routing gradient of ``S2`` (or ``S2_c``), shape ``(n,)``.

    ``d_weighted_delay`` is the gradient of ``sum_i w_i E[D_i]`` with the weights
    :func:`s2_weights` held fixed (one vector-Jacobian product of the delays, see
    :func:`aflqueue.queueing.gradients.delay_objective`); the weights' own dependence on ``p``
    adds ``-E[D_i] / (n^2 p_i^2)`` (``c^2 E[D_i]`` on clients clipped at ``c``)."""
    p = np.asarray(p, dtype=float)
    n = p.size
    if not cap_is_active(cap):
        return d_weighted_delay - np.asarray(relative_delay, dtype=float) / (n * n * p**2)
    with np.errstate(divide="ignore"):
        dw = np.where(_clipped(p, cap), cap * cap, -1.0 / (n * n * p**2))
    return d_weighted_delay + np.asarray(relative_delay, dtype=float) * dw


def optimal_eta_per_update(a_over_k: float, B: float, C: float, eta_max: float) -> float:
    """``argmin_{0 < eta <= eta_max} a/(eta K) + B eta + C eta^2`` (``a_over_k = a/K``).

    Root of ``2 C eta^3 + B eta^2 - a/K``: Newton from the upper bound
    ``min(sqrt(a/(K B)), cbrt(a/(2 K C)))``, where the polynomial is >= 0; it is convex and
    increasing on ``eta > 0``, so Newton decreases monotonically to the root.
    """
    if B <= 0 and C <= 0:
        return eta_max
    ub = math.inf
    if B > 0:
        ub = math.sqrt(a_over_k / B)
    if C > 0:
        ub = min(ub, (a_over_k / (2 * C)) ** (1.0 / 3.0))
    eta = ub
    for _ in range(100):
        f = 2 * C * eta**3 + B * eta**2 - a_over_k
        df = 6 * C * eta**2 + 2 * B * eta
        step = f / df
        eta -= step
        if abs(step) <= 1e-15 * eta:
            break
    return min(eta, eta_max)


def _coefficients(constants: ProxyConstants, S1: float, S2: float,
                  clip: ClipFactors | None) -> tuple[float, float, float, float]:
    """``(a_eff, B, C, floor)`` with ``U = a_eff/(eta K) + B eta + C eta^2 + floor``: today's
    ``(a, b S1, c S2, 0)`` without a cap, ``(a/Q, b S1_c/Q, c S2_c, H beta^2)`` with one (section 11)."""
    if clip is None:
        return constants.a, constants.b * S1, constants.c * S2, 0.0
    return constants.a / clip.Q, constants.b * S1 / clip.Q, constants.c * S2, clip.bias


def per_update(constants: ProxyConstants, S1: float, S2: float, K: float, eta: float | None = None,
               clip: ClipFactors | None = None) -> ProxyTerms:
    """The terms of ``U`` after ``K`` updates at step ``eta`` (default: the constants' fixed
    step, else the optimal one under ``eta_max``). With ``clip`` (docs/theory.md section 11) ``S1``
    and ``S2`` are ``S1_c`` and ``S2_c``, and the bias floor is added."""
    require(K > 0, "updates", f"must be > 0 (got {K})")
    a, B, C, floor = _coefficients(constants, S1, S2, clip)
    if eta is None:
        eta = constants.eta if constants.eta is not None else optimal_eta_per_update(a / K, B, C, constants.eta_max)
    return ProxyTerms(a / (eta * K), B * eta, C * eta**2, float(eta), floor)


@dataclass(frozen=True, eq=False)
class ProxyValue:
    """A proxy at one routing: its value, routing gradient (shape ``(n,)``) and what it rests on.

    Attributes:
        value: the proxy (loss units for U and W, time units for T_eps).
        gradient: ``d value / d p`` (partial derivatives, every ``p_i`` free).
        eta: the step size it is evaluated at (the constants' fixed step, or the optimal one).
        updates: ``K`` (the updates in the budget for W, ``K_eps`` for T_eps, ``K`` for U).
        d_updates: ``d K / d p`` (None where ``K`` does not depend on ``p``).
    """

    value: float
    gradient: np.ndarray
    eta: float
    updates: float
    d_updates: np.ndarray | None = None


def _clip_gradient(constants: ProxyConstants, clip: ClipFactors, eta: float, opt_term: float, S1: float,
                   d_S1: np.ndarray, d_S2: np.ndarray) -> np.ndarray:
    """Routing gradient of ``U_c`` at fixed ``eta`` and ``K`` (section 11): the variance term
    ``b (S1_c / Q) eta``, the staleness term ``c S2_c eta^2``, the optimisation term
    ``a / (Q eta K)`` (``opt_term``) through ``Q``, and the floor ``H beta^2``."""
    Q, dQ = clip.Q, clip.d_Q
    return (eta * constants.b * (d_S1 - S1 * dQ / Q) / Q + eta**2 * constants.c * d_S2
            - opt_term / Q * dQ + clip.d_bias)


def per_update_proxy(constants: ProxyConstants, S1: float, d_S1: np.ndarray, S2: float, d_S2: np.ndarray,
                     K: float, clip: ClipFactors | None = None) -> ProxyValue:
    """``U(p, m; K)`` and its routing gradient (docs/theory.md section 5, per-update proxy; with
    ``clip``, ``U_c`` of section 11).

    At the optimal step the envelope theorem makes the gradient the partial derivative at that
    step: ``eta c_var L (sigma2 + M2) dS1 + eta^2 c_stale L^2 (sigma2 + G2) dS2``."""
    t = per_update(constants, S1, S2, K, clip=clip)
    if clip is None:
        grad = t.eta * constants.b * d_S1 + t.eta**2 * constants.c * d_S2
    else:
        grad = _clip_gradient(constants, clip, t.eta, t.optimisation, S1, d_S1, d_S2)
    return ProxyValue(t.total, grad, t.eta, float(K))


def wallclock_proxy(constants: ProxyConstants, S1: float, d_S1: np.ndarray, S2: float, d_S2: np.ndarray,
                    throughput: float, d_throughput: np.ndarray, time_budget: float,
                    dispersion: float = 0.0, clip: ClipFactors | None = None) -> ProxyValue:
    """``W(p, m; tau) = U(K = lambda tau)`` and its routing gradient (docs/theory.md section 5; with
    ``clip``, ``U_c`` of section 11).

    With a dispersion ``d > 0`` the renewal correction ``K = N / (1 + d / N)``, ``N = lambda tau``,
    accounts for the randomness of the number of updates in the budget."""
    N = throughput * time_budget
    K = N / (1 + dispersion / N)
    dK = time_budget * (1 + 2 * dispersion / N) / (1 + dispersion / N) ** 2  # dK / d lambda
    t = per_update(constants, S1, S2, K, clip=clip)
    eta = t.eta
    if clip is None:
        a = constants.a
        grad = eta * constants.b * d_S1 + eta**2 * constants.c * d_S2 - a / (eta * K * K) * dK * d_throughput
    else:
        grad = (_clip_gradient(constants, clip, eta, t.optimisation, S1, d_S1, d_S2)
                - t.optimisation / K * dK * d_throughput)
    return ProxyValue(t.total, grad, eta, float(K), dK * d_throughput)


def time_to_accuracy_updates(constants: ProxyConstants, S1: float, S2: float, epsilon: float,
                             clip: ClipFactors | None = None) -> tuple[float, float]:
    """``(K_eps, eta)``: fewest updates for ``min_eta U <= epsilon`` and the step achieving it.

    ``K_eps = a / max_eta eta (eps - B eta - C eta^2)``; with a fixed step the maximisation is
    skipped, and ``K_eps = inf`` if ``eps <= B eta + C eta^2`` (the accuracy is below that step's floor).
    With ``clip`` (section 11) ``a``, ``B``, ``C`` are those of ``U_c`` and ``eps`` is lowered by the
    bias floor ``H beta^2``: ``K_eps = inf`` when the floor alone is ``>= eps``.
    """
    require(epsilon > 0, "epsilon", f"must be > 0 (got {epsilon})")
    a, B, C, floor = _coefficients(constants, S1, S2, clip)
    eps = epsilon - floor
    if eps <= 0:
        return math.inf, float(constants.eta if constants.eta is not None else constants.eta_max)
    if constants.eta is not None:
        eta = constants.eta
    else:
        eta = min(eps / (B + math.sqrt(B * B + 3.0 * C * eps)), constants.eta_max) if (B > 0 or C > 0) \
            else constants.eta_max
    g = eta * (eps - B * eta - C * eta**2)
    return (a / g if g > 0 else math.inf), float(eta)


def time_to_accuracy_proxy(constants: ProxyConstants, S1: float, d_S1: np.ndarray, S2: float, d_S2: np.ndarray,
                           throughput: float, d_throughput: np.ndarray, epsilon: float,
                           clip: ClipFactors | None = None) -> ProxyValue:
    """``E[T_eps] ~ K_eps / lambda`` (time units) and its routing gradient (docs/theory.md section 5;
    with ``clip``, section 11).

    ``value`` is ``inf`` (gradient NaN) when ``epsilon`` is below a fixed step size's floor (or
    below the bias floor)."""
    K, eta = time_to_accuracy_updates(constants, S1, S2, epsilon, clip=clip)
    n = np.asarray(d_S1).size
    if not math.isfinite(K):
        return ProxyValue(math.inf, np.full(n, np.nan), eta, math.inf, None)
    if clip is None:
        a = constants.a
        g = a / K
        dK = (a / g**2) * (eta**2 * constants.b * d_S1 + eta**3 * constants.c * d_S2)
    else:
        # K = (a/Q) / g with g = eta (eps - floor - B eta - C eta^2); envelope theorem in eta:
        # dK = -K dQ / Q + (K / g) eta (d floor + eta dB + eta^2 dC)
        Q, dQ = clip.Q, clip.d_Q
        g = constants.a / Q / K
        dB = constants.b * (d_S1 - S1 * dQ / Q) / Q
        dK = -K / Q * dQ + (K / g) * eta * (clip.d_bias + eta * dB + eta**2 * constants.c * d_S2)
    T = K / throughput
    gT = dK / throughput - K / throughput**2 * d_throughput
    return ProxyValue(T, gT, eta, K, dK)


def power(load_weights: np.ndarray, idle_total: float, p: np.ndarray, throughput: float,
          d_throughput: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean power ``P = sum(idle) + lambda sum_i p_i w_i`` and its routing gradient
    (docs/theory.md section 5, energy; ``w`` from :meth:`EnergyModel.load_weights`)."""
    load = float(p @ load_weights)
    return idle_total + throughput * load, load * d_throughput + throughput * load_weights

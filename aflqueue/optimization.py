"""Routing and concurrency optimisation (docs/theory.md section 6).

:func:`optimize` solves an :class:`OptimizationProblem`; ``aq.optimize(system, "wallclock",
**fields)`` (:func:`aflqueue.api.optimize`) builds the problem from a system and calls it.

Problems, all over ``p`` in the capped simplex ``{p_min <= p_i <= p_max, sum p = 1}`` and an
integer concurrency ``m`` in a range:
* ``per-update`` (P1): minimise ``U(p, m; K)``;
* ``wall-clock`` (P2; ``wallclock`` is accepted too): minimise ``W(p, m; tau) = U(K = lambda tau)``;
* ``time-to-accuracy`` (P3): minimise ``E[T_eps] = K_eps / lambda``;
* ``energy``: minimise the energy to accuracy ``P(p, m) E[T_eps]``;
* ``tradeoff`` (P4): minimise ``r E/E* + (1 - r) T/T*`` (``E*``, ``T*`` the separate optima);
  :func:`pareto_front` sweeps ``r``;
* ``max-throughput`` (P5, baseline): maximise ``lambda``.

The step size is optimised inside each objective (or fixed, see
:class:`~aflqueue.bounds.ProxyConstants`). Gradients are exact: one compiled MVA pass gives
``lambda``, ``E[D_i]`` and the gradients of ``lambda`` and of ``S2`` (see ``queueing/gradients.py``);
the optimal step enters through the envelope theorem.

Method: L-BFGS (scipy) on the log of the objective (scale-free) in a softmax parametrisation
``p = p_min + (1 - n p_min) softmax(z)``, which keeps ``p`` feasible and evens out the
``1/p``-type curvature of the proxies. When an upper bound ``p_max`` binds, a spectral projected
gradient method (Birgin, Martinez and Raydan: Barzilai-Borwein steps, non-monotone Armijo search,
exact Euclidean projection onto the capped simplex) continues from there. Several starts
(uniform, proportional to rates and to their square roots, seeded Dirichlet draws) because the
problems are not convex. The concurrency is
scanned exhaustively (warm-starting each ``m`` from its neighbour) when the range has at most
``scan_limit`` values, else on a coarse grid refined around the best. At ``m = 1`` staleness
vanishes and throughput is ``1 / sum p_i / mu_i``: P1 becomes ``min sum 1/p_i`` and P5 a linear
programme, which are solved with cvxpy.

Clipped importance weights and mixes (docs/theory.md section 11; opt-in, today's answer when the
defaults are kept). ``cap = c`` clips the weights at ``min(1/(n p_i), c)`` and adds the bias floor
``H beta^2`` to the proxies; ``mix = lam`` evaluates everything at ``lam p + (1 - lam) u``. With
``choose_cap`` the cap is chosen from ``caps`` (each candidate solved as above; largest cap wins
ties). With ``choose_mix`` the routing is pinned to the segment between uniform routing and the
unclipped optimum ``p*`` (the answer with ``cap = inf, mix = 1``): ``lam`` is searched on a grid
of 21 points and refined by bounded Brent, the concurrency re-optimised at every ``lam`` and the
step in closed form; with ``choose_cap`` too, every cap of ``caps`` is tried on that segment.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ._results import Result, require_pandas, result_repr
from .bounds import (EnergyModel, ProxyConstants, cap_is_active, check_cap, clip_factors, mixed_routing,
                     per_update_proxy, power, s1, s2_gradient, s2_weights, time_to_accuracy_proxy, wallclock_proxy)
from .errors import require
from .io import json_safe
from .queueing.gradients import delay_objective
from .system import System, validate_concurrency, validate_routing

__all__ = ["OBJECTIVES", "OptimizationProblem", "OptimizationResult", "Evaluation", "evaluate", "assess", "optimize",
           "optimize_routing", "pareto_front", "project_capped_simplex", "kkt_residual"]

#: Largest update or time budget a problem accepts (see OptimizationProblem's checks).
MAX_BUDGET = 1e15
#: Smallest time budget and target, and reciprocal of the largest target and dispersion, a problem accepts.
MIN_SCALE = 1e-9

OBJECTIVES = ("per-update", "wall-clock", "time-to-accuracy", "energy", "tradeoff", "max-throughput")
#: Old spellings still accepted.
OBJECTIVE_ALIASES = {"wallclock": "wall-clock"}
#: Analyses the objective can use: the exact product form, or the approximation for general service
#: laws (``aflqueue.queueing.approx``; equal to the product form when every FIFO station is exponential).
ANALYSES = ("product-form", "approx")
_USES_S = {"per-update", "wall-clock", "time-to-accuracy", "energy", "tradeoff"}
#: Candidate weight caps of ``choose_cap`` (docs/theory.md section 11); ``inf`` is no cap.
DEFAULT_CAPS = (1.0, 2.0, 4.0, 8.0, 16.0, math.inf)
#: Grid of mixes ``lam`` that ``choose_mix`` refines (docs/theory.md section 11).
MIX_GRID = tuple(float(x) for x in np.linspace(0.0, 1.0, 21))
#: Seconds between two progress lines of :func:`optimize` (none for a run shorter than this).
PROGRESS_SECONDS = 5.0


# --------------------------------------------------------------------------- problem
@dataclass(frozen=True, eq=False)
class OptimizationProblem:
    """A validated optimisation problem.

    Attributes:
        system: clients, stages and (unless ``concurrency`` is given) the concurrency.
        objective: one of :data:`OBJECTIVES`.
        constants: proxy constants (``Delta, L, sigma2, M2, G2``, step size).
        updates: ``K`` for ``per-update`` (default 1000).
        time_budget: ``tau`` for ``wallclock`` (time units; default: the time AsyncSGD -- uniform
            routing at the system's concurrency -- needs for 1000 updates).
        epsilon: target proxy value for ``time-to-accuracy``/``energy``/``tradeoff`` (default 0.1,
            in the loss units of ``Delta``).
        energy: power model (default :meth:`EnergyModel.dvfs` of the compute rates).
        weight: ``r`` in ``[0, 1]`` for ``tradeoff``.
        p_min, p_max: bounds on every ``p_i``.
        concurrency: inclusive range ``(m_lo, m_hi)``; default ``(m, m)`` of the system.
        dispersion: renewal correction of ``wallclock``: ``K = N / (1 + d / N)`` with
            ``N = lambda tau`` and ``d`` the dispersion of the update count (0 = none).
        reference: ``(E*, T*)`` for ``tradeoff``; computed if None.
        analysis: ``"product-form"`` (exact for exponential service) or ``"approx"`` (general service
            laws, docs/theory.md section 9); the default ``time_budget`` is computed with the product form.
        cap: importance-weight cap ``c > 0`` (weights ``min(1/(n p_i), c)``; docs/theory.md section 11);
            None or ``inf``: no cap (today's proxies).
        mix: ``lam`` in ``[0, 1]``: the objective is evaluated at ``lam p + (1 - lam) u`` (1: ``p`` itself).
        choose_cap: choose the cap from ``caps`` (module docstring).
        choose_mix: choose ``lam`` on the segment from uniform routing to the unclipped optimum.
        caps: candidate caps of ``choose_cap`` (each > 0, ``inf`` allowed).
        bias_constant: ``H`` in the bias floor ``H beta^2`` (loss units; default ``constants.M2``, the
            small-step constant of docs/theory.md section 11; see :func:`aflqueue.calibration.fit_bias_constant`).
    """

    system: System
    objective: str = "wall-clock"
    constants: ProxyConstants = field(default_factory=ProxyConstants)
    updates: float | None = None
    time_budget: float | None = None
    epsilon: float | None = None
    energy: EnergyModel | None = None
    weight: float = 0.5
    p_min: float = 0.0
    p_max: float = 1.0
    concurrency: tuple[int, int] | None = None
    dispersion: float = 0.0
    reference: tuple[float, float] | None = None
    analysis: str = "product-form"
    cap: float | None = None
    mix: float = 1.0
    choose_cap: bool = False
    choose_mix: bool = False
    caps: tuple[float, ...] = DEFAULT_CAPS
    bias_constant: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "objective", OBJECTIVE_ALIASES.get(self.objective, self.objective))
        require(self.objective in OBJECTIVES, "objective",
                f"unknown objective {self.objective!r}; allowed: {', '.join(OBJECTIVES)}")
        require(self.analysis in ANALYSES, "analysis",
                f"unknown analysis {self.analysis!r}; allowed: {', '.join(ANALYSES)}")
        require(isinstance(self.constants, ProxyConstants), "constants", "must be a ProxyConstants")
        n = self.system.n
        for name in ("p_min", "p_max"):
            v = getattr(self, name)
            require(isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 1, name,
                    f"must be in [0, 1] (got {v!r})")
        require(self.p_min <= self.p_max, "p_min", f"must be <= p_max ({self.p_min} > {self.p_max})")
        require(n * self.p_min <= 1 + 1e-12, "p_min", f"must be in [0, 1/n] = [0, {1 / n:.3g}] for n = {n} clients "
                                                      f"(got {self.p_min:g}: n * p_min = {n * self.p_min:g} > 1)")
        require(n * self.p_max >= 1 - 1e-12, "p_max", f"infeasible: n * p_max = {n * self.p_max:g} < 1 (n = {n})")
        if self.objective in _USES_S and self.p_min == 0:
            # S1 = sum 1/p_i is infinite on the boundary; keep the search strictly inside
            object.__setattr__(self, "p_min", min(1e-9, 1.0 / n))
        if self.concurrency is None:
            object.__setattr__(self, "concurrency", (self.system.concurrency, self.system.concurrency))
        lo, hi = self.concurrency
        for name, v in (("concurrency", lo), ("concurrency", hi)):
            require(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1, name,
                    f"must be integers >= 1 (got {self.concurrency})")
        require(lo <= hi, "concurrency", f"range must have lo <= hi (got {lo}:{hi})")
        object.__setattr__(self, "concurrency", (int(lo), int(hi)))
        if self.updates is None:
            object.__setattr__(self, "updates", 1000.0)
        # the proxies divide by K = updates (or lambda tau): beyond 1e15 the optimisation term a/K
        # underflows against the others and the step-size root is lost
        require(math.isfinite(self.updates) and 1 <= self.updates <= MAX_BUDGET, "updates",
                f"must be in [1, {MAX_BUDGET:g}] (got {self.updates})")
        if self.time_budget is not None:
            require(math.isfinite(self.time_budget) and MIN_SCALE <= self.time_budget <= MAX_BUDGET, "time_budget",
                    f"must be in [{MIN_SCALE:g}, {MAX_BUDGET:g}] time units (got {self.time_budget})")
        if self.epsilon is None:
            object.__setattr__(self, "epsilon", 0.1)
        require(math.isfinite(self.epsilon) and MIN_SCALE <= self.epsilon <= 1 / MIN_SCALE, "epsilon",
                f"must be in [{MIN_SCALE:g}, {1 / MIN_SCALE:g}] (got {self.epsilon})")
        require(0 <= self.weight <= 1, "weight", f"must be in [0, 1] (got {self.weight})")
        require(0 <= self.dispersion <= 1 / MIN_SCALE, "dispersion",
                f"must be in [0, {1 / MIN_SCALE:g}] (got {self.dispersion})")
        if self.energy is None:
            object.__setattr__(self, "energy", EnergyModel.dvfs(self.system.rates))
        require(self.energy.busy_power.size == n, "energy", f"needs one power per client ({n})")
        self._check_clipping()

    def _check_clipping(self) -> None:
        """Validate the cap, mix and bias options (docs/theory.md section 11)."""
        object.__setattr__(self, "cap", check_cap(self.cap, "cap"))
        require(isinstance(self.mix, (int, float)) and not isinstance(self.mix, bool) and 0 <= self.mix <= 1,
                "mix", f"must be a number in [0, 1] (got {self.mix!r})")
        object.__setattr__(self, "mix", float(self.mix))
        for name in ("choose_cap", "choose_mix"):
            require(isinstance(getattr(self, name), bool), name, f"must be true or false (got {getattr(self, name)!r})")
        require(isinstance(self.caps, (tuple, list)) and len(self.caps) >= 1, "caps",
                f"must be a non-empty list of caps > 0 (inf allowed) (got {self.caps!r})")
        caps = tuple(math.inf if check_cap(c, "caps") is None else float(c) for c in self.caps)
        object.__setattr__(self, "caps", caps)
        if self.bias_constant is not None:
            require(isinstance(self.bias_constant, (int, float)) and not isinstance(self.bias_constant, bool)
                    and math.isfinite(self.bias_constant) and 0 <= self.bias_constant <= 1e12, "bias_constant",
                    f"must be a number in [0, 1e12] (got {self.bias_constant!r})")
            object.__setattr__(self, "bias_constant", float(self.bias_constant))
        if self.clipping_active:
            require(self.objective in _USES_S, "cap",
                    f"caps and mixes act on the convergence proxies, not on {self.objective!r}")

    @property
    def clipping_active(self) -> bool:
        """Whether any option of docs/theory.md section 11 departs from today's problem."""
        return cap_is_active(self.cap) or self.mix != 1.0 or self.choose_cap or self.choose_mix

    @property
    def bias_H(self) -> float:
        """``H`` of the bias floor ``H beta^2``: ``bias_constant``, else ``constants.M2``."""
        return self.constants.M2 if self.bias_constant is None else self.bias_constant

    @property
    def baseline_concurrency(self) -> int:
        """Concurrency of the AsyncSGD baseline: the system's, clipped to the range."""
        lo, hi = self.concurrency
        return int(min(max(self.system.concurrency, lo), hi))

    def resolved_time_budget(self) -> float:
        if self.time_budget is not None:
            return float(self.time_budget)
        lam = delay_objective(self.system, np.full(self.system.n, 1.0 / self.system.n),
                              self.baseline_concurrency, None).throughput
        return 1000.0 / lam


# --------------------------------------------------------------------------- evaluation
@dataclass(frozen=True, eq=False)
class Evaluation:
    """Objective value and exact routing gradient at ``(p, m)``, with the quantities behind it."""

    value: float
    grad: np.ndarray
    routing: np.ndarray
    concurrency: int
    throughput: float
    relative_delay: np.ndarray
    eta: float
    S1: float
    S2: float
    proxies: dict[str, float]


class _Objective:
    """Evaluates one problem's objective; ``time_budget`` and references are resolved once. With
    ``progress``, a line every :data:`PROGRESS_SECONDS` names the run under way (see :meth:`begin`),
    its evaluations and its best objective value so far; it reads the values, never changes them."""

    def __init__(self, problem: OptimizationProblem, progress: Callable[[str], None] | None = None):
        self.pb = problem
        self.kind = problem.objective
        self.tau = problem.resolved_time_budget() if self.kind == "wall-clock" else problem.time_budget
        self.evaluations = 0
        self.progress, self.said = progress, time.monotonic()
        self.begin("search")
        sysm = problem.system
        comm_time = np.array([(0 if cl.downlink is None else 1 / cl.downlink.rate) +
                              (0 if cl.uplink is None else 1 / cl.uplink.rate) for cl in sysm.clients])
        self.load_weights = problem.energy.load_weights(sysm.rates, comm_time)
        self.idle_total = float(problem.energy.idle_power.sum())
        self.ref = problem.reference
        self.cap = problem.cap
        self.mix = problem.mix

    def begin(self, run: str) -> None:
        """The evaluations that follow belong to ``run`` (``"start 2 of 4"``) in progress lines."""
        self.run, self.first, self.best = run, self.evaluations, math.inf

    def __call__(self, p: np.ndarray, m: int) -> Evaluation:
        if self.mix == 1.0:
            ev = self._evaluate(p, m)
        else:  # docs/theory.md section 11: the objective at the mixed routing; d/dp = lam d/dr
            ev = self._evaluate(mixed_routing(p, self.mix), m)
            ev = replace(ev, grad=self.mix * ev.grad)
        self.best = min(self.best, ev.value)
        if self.progress is not None and time.monotonic() - self.said >= PROGRESS_SECONDS:
            self.said = time.monotonic()
            best = -self.best if self.kind == "max-throughput" else self.best
            self.progress(f"optimize {self.kind}: m = {m}, {self.run}, evaluation {self.evaluations - self.first}, "
                          f"best objective {best:.6g}")
        return ev

    def _evaluate(self, p: np.ndarray, m: int) -> Evaluation:
        self.evaluations += 1
        pb, kind, n = self.pb, self.kind, self.pb.system.n
        uses_s = kind in _USES_S
        starved = uses_s and bool(np.any(p <= 0))
        weights = None if (starved or not uses_s) else s2_weights(p, self.cap)
        if pb.analysis == "approx":
            from .queueing.approx import approx_delay_objective  # lazy: scipy

            d = approx_delay_objective(pb.system, p, m, weights)
        else:
            d = delay_objective(pb.system, p, m, weights, backend="numba")
        lam, g_lam = d.throughput, d.d_throughput
        prox: dict[str, float] = {"throughput": lam}
        if not uses_s:
            return Evaluation(-lam, -g_lam, p, m, lam, d.relative_delay, float("nan"), float("nan"), float("nan"), prox)
        if starved:  # a client never served: S1 = sum 1/p_i is infinite, and so is every proxy
            inf = math.inf
            prox.update(per_update=inf, wallclock=inf, time_to_accuracy=inf, updates_to_accuracy=inf, energy=inf)
            return Evaluation(inf, np.full(n, np.nan), p, m, lam, d.relative_delay, float("nan"), inf, inf, prox)
        S1, g_S1 = s1(p, self.cap)
        S2, g_S2 = d.weighted_delay, s2_gradient(d.relative_delay, p, d.d_weighted_delay, self.cap)
        const = pb.constants
        clip = clip_factors(p, self.cap, pb.bias_H)
        if clip is not None:
            prox.update(bias=clip.bias, beta2=clip.beta2, effective_mass=clip.Q)
        if kind == "per-update":
            u = per_update_proxy(const, S1, g_S1, S2, g_S2, pb.updates, clip=clip)
            val, grad, eta = u.value, u.gradient, u.eta
            prox.update(per_update=val)
        elif kind == "wall-clock":
            w = wallclock_proxy(const, S1, g_S1, S2, g_S2, lam, g_lam, self.tau, pb.dispersion, clip=clip)
            val, grad, eta = w.value, w.gradient, w.eta
            prox.update(wallclock=val, updates_in_budget=lam * self.tau)
        else:
            t = time_to_accuracy_proxy(const, S1, g_S1, S2, g_S2, lam, g_lam, pb.epsilon, clip=clip)
            eta = t.eta
            if not math.isfinite(t.value):  # the target is below this fixed step size's (or the bias) floor
                prox.update(time_to_accuracy=math.inf, updates_to_accuracy=math.inf, energy=math.inf)
                return Evaluation(math.inf, np.full(n, np.nan), p, m, lam, d.relative_delay, eta, S1, S2, prox)
            T, gT = t.value, t.gradient
            P, gP = power(self.load_weights, self.idle_total, p, lam, g_lam)
            prox.update(updates_to_accuracy=t.updates, time_to_accuracy=T, power=P, energy=P * T)
            if kind == "time-to-accuracy":
                val, grad = T, gT
            elif kind == "energy":
                val, grad = P * T, gP * T + P * gT
            else:
                E_ref, T_ref = self.ref
                r = pb.weight
                val = r * P * T / E_ref + (1 - r) * T / T_ref
                grad = r * (gP * T + P * gT) / E_ref + (1 - r) * gT / T_ref
        return Evaluation(float(val), grad, p, m, lam, d.relative_delay, float(eta), S1, S2, prox)


def evaluate(problem: OptimizationProblem, routing: Sequence[float], concurrency: int | None = None) -> Evaluation:
    """Objective value and exact gradient at a routing (validated) and concurrency."""

    p = validate_routing(routing, problem.system.n)
    m = validate_concurrency(problem.baseline_concurrency if concurrency is None else concurrency)
    return _objective_for(problem)(np.array(p), m)


def assess(problem: OptimizationProblem, routing: Sequence[float], concurrency: int | None = None) -> dict[str, Any]:
    """Every proxy of ``problem``'s settings at one routing: throughput, delays, ``per_update``,
    ``wallclock``, ``time_to_accuracy``, ``updates_to_accuracy``, ``power``, ``energy`` and the
    step sizes each one uses. Useful to compare routings found for different objectives."""
    m = problem.baseline_concurrency if concurrency is None else int(concurrency)
    out: dict[str, Any] = {"routing": [float(x) for x in routing], "concurrency": m}
    for kind in ("per-update", "wall-clock", "time-to-accuracy"):
        ev = evaluate(replace(problem, objective=kind), routing, m)
        out.update({k: v for k, v in ev.proxies.items()})
        out[f"eta_{kind}"] = ev.eta
        out["throughput"] = ev.throughput
        out["relative_delay"] = [float(x) for x in ev.relative_delay]
        out["S1"], out["S2"] = ev.S1, ev.S2
    out["mean_relative_delay"] = float(np.nansum(np.asarray(routing) * np.asarray(out["relative_delay"])))
    return out


def _objective_for(problem: OptimizationProblem, progress: Callable[[str], None] | None = None) -> _Objective:
    if problem.objective == "tradeoff" and problem.reference is None:
        e = optimize(replace(problem, objective="energy"), progress=progress)
        t = optimize(replace(problem, objective="time-to-accuracy"), progress=progress)
        problem = replace(problem, reference=(e.objective_value, t.objective_value))
    return _Objective(problem, progress)


# --------------------------------------------------------------------------- projection & KKT
def project_capped_simplex(y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Euclidean projection of ``y`` onto ``{lo <= p_i <= hi, sum p = 1}`` (needs ``n lo <= 1 <= n hi``).

    The projection is ``clip(y - t, lo, hi)`` where ``t`` solves the non-increasing piecewise
    linear equation ``sum clip(y - t, lo, hi) = 1``: bisection brackets ``t``, then ``t`` is solved
    exactly on the linear piece given by the final active set.
    """
    y = np.asarray(y, dtype=float)
    a, b = float(y.min()) - hi, float(y.max()) - lo  # sum(clip) is n*hi >= 1 at a, n*lo <= 1 at b
    for _ in range(200):
        t = 0.5 * (a + b)
        if np.clip(y - t, lo, hi).sum() > 1.0:
            a = t
        else:
            b = t
        if b - a <= 1e-15 * max(1.0, abs(t)):
            break
    x = y - 0.5 * (a + b)
    free = (x > lo) & (x < hi)
    k = int(free.sum())
    if k:
        t = (float(y[free].sum()) + hi * int((x >= hi).sum()) + lo * int((x <= lo).sum()) - 1.0) / k
        return np.clip(y - t, lo, hi)
    return np.clip(x, lo, hi)


def kkt_residual(p: np.ndarray, grad: np.ndarray, lo: float, hi: float) -> float:
    """``max |P(p - g) - p|`` for the capped simplex: zero exactly at KKT points (scale of ``g``)."""
    return float(np.max(np.abs(project_capped_simplex(p - grad, lo, hi) - p)))


# --------------------------------------------------------------------------- SPG
@dataclass
class _Run:
    p: np.ndarray
    ev: Evaluation
    iterations: int
    converged: bool


def _spg(fun: Callable[[np.ndarray], Evaluation], p0: np.ndarray, lo: float, hi: float, maximize_log: bool,
         max_iter: int = 500, tol: float = 1e-10, memory: int = 8) -> _Run:
    """Spectral projected gradient on ``log f`` (``log(-f)`` for max-throughput, whose f = -lambda)."""

    def logf(ev: Evaluation) -> tuple[float, np.ndarray]:
        if not np.all(np.isfinite(ev.grad)):
            return math.inf, ev.grad
        if maximize_log:  # ev.value = -lambda: minimise -log(lambda), gradient -grad(lambda)/lambda
            return -math.log(-ev.value), -ev.grad / ev.value
        if not math.isfinite(ev.value) or ev.value <= 0:
            return math.inf, ev.grad
        return math.log(ev.value), ev.grad / ev.value

    p = project_capped_simplex(p0, lo, hi)
    ev = fun(p)
    f, g = logf(ev)
    if not math.isfinite(f):
        return _Run(p, ev, 0, False)
    hist = [f]
    pg = project_capped_simplex(p - g, lo, hi) - p
    alpha = 1.0 / max(np.max(np.abs(pg)), 1e-12)
    alpha = min(alpha, 1e6)
    it = 0
    converged = False
    for it in range(1, max_iter + 1):
        if np.max(np.abs(pg)) <= tol:
            converged = True
            break
        d = project_capped_simplex(p - alpha * g, lo, hi) - p
        gd = float(g @ d)
        if gd >= 0:  # numerically no descent left
            converged = True
            break
        fmax = max(hist[-memory:])
        step = 1.0
        while True:
            pn = p + step * d
            evn = fun(pn)
            fn, gn = logf(evn)
            if fn <= fmax + 1e-4 * step * gd:
                break
            step *= 0.5
            if step < 1e-12:
                return _Run(p, ev, it, True)
        s, y = pn - p, gn - g
        sy = float(s @ y)
        alpha = float(s @ s) / sy if sy > 1e-300 else 1e6
        alpha = min(max(alpha, 1e-12), 1e12)
        rel_change = abs(fn - f)
        p, ev, f, g = pn, evn, fn, gn
        hist.append(f)
        pg = project_capped_simplex(p - g, lo, hi) - p
        if rel_change <= 1e-15 and np.max(np.abs(pg)) <= 1e3 * tol:
            converged = True
            break
    return _Run(p, ev, it, converged)


def _lbfgs_softmax(fun: Callable[[np.ndarray], Evaluation], p0: np.ndarray, lo: float, maximize_log: bool,
                   max_iter: int = 500, tol: float = 1e-10) -> _Run:
    """L-BFGS on ``z`` with ``p = lo + (1 - n lo) softmax(z)``: lower bounds and the simplex hold by
    construction, and the log-parametrisation evens out the ``1/p``-type curvature of the proxies
    (typically 10-20x fewer iterations than projected gradient)."""
    from scipy.optimize import minimize  # lazy: scipy

    n = p0.size
    scale = 1.0 - n * lo
    if scale <= 1e-12:  # p_min = 1/n: the only feasible point
        p = np.full(n, 1.0 / n)
        return _Run(p, fun(p), 0, True)
    sign = -1.0 if maximize_log else 1.0
    cache: dict[str, Any] = {}

    def to_p(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = np.exp(z - z.max())
        sm = e / e.sum()
        return lo + scale * sm, sm

    def f(z: np.ndarray) -> tuple[float, np.ndarray]:
        p, sm = to_p(z)
        ev = fun(p)
        cache["ev"], cache["p"] = ev, p
        v = sign * ev.value
        if not math.isfinite(v) or v <= 0 or not np.all(np.isfinite(ev.grad)):
            return math.inf, np.zeros(n)
        g = sign * ev.grad / (sign * ev.value) * (1.0 if not maximize_log else -1.0)
        # g = d(log f)/dp for minimisation, or d(-log lambda)/dp for max-throughput
        return (math.log(v) if not maximize_log else -math.log(v)), scale * sm * (g - sm @ g)

    z0 = np.log(np.maximum(np.asarray(p0) - lo, 1e-300) / scale)
    res = minimize(f, z0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-15, "maxcor": 20})
    p, _ = to_p(res.x)
    ev = cache["ev"] if np.array_equal(cache.get("p"), p) else fun(p)
    return _Run(p, ev, int(res.nit), bool(res.success) or res.status == 0)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False, repr=False)
class OptimizationResult(Result):
    """Solution of an :class:`OptimizationProblem` (scipy.optimize-style rich result).

    Attributes:
        objective: problem name; objective_value: its value at the solution (natural units:
            proxy value, time units, energy units, or updates per time unit for max-throughput).
        routing: ``p*``, shape ``(n,)``; concurrency: ``m*``; eta: step size at the solution.
        throughput: ``lambda(p*, m*)``; relative_delay: ``E[D_i]`` at the solution.
        proxies: every proxy defined at the solution (``per_update``, ``wallclock``,
            ``time_to_accuracy``, ``energy``, ``power`` ... as applicable).
        success, status (0 converged, 1 iteration limit), message, iterations, evaluations,
        wall_time (seconds), kkt_residual (projected-gradient norm of ``log f``), starts.
        concurrency_profile: ``[(m, best objective at m)]`` for every ``m`` examined.
        baseline: the same figures for AsyncSGD (uniform routing at the baseline concurrency).
        cap: the importance-weight cap ``c`` of the solution (``inf``: none); mix: its ``lam``
            (docs/theory.md section 11). ``routing`` is the routing used, ``lam p + (1 - lam) u``.
        anchor_routing: the ``p`` that is mixed with uniform routing (None when ``mix = 1``).
        operating_profile: ``[(cap, mix, best objective)]`` for every candidate ``choose_cap`` /
            ``choose_mix`` examined (empty otherwise). With ``choose_mix`` the routing is confined to a
            segment, so ``kkt_residual`` (of the problem over the whole simplex) is not expected to vanish.
    """

    objective: str
    objective_value: float
    routing: np.ndarray
    concurrency: int
    eta: float
    throughput: float
    relative_delay: np.ndarray
    proxies: dict[str, float]
    constants: ProxyConstants
    success: bool
    status: int
    message: str
    iterations: int
    evaluations: int
    wall_time: float
    kkt_residual: float
    starts: int
    method: str
    concurrency_profile: list[tuple[int, float]]
    baseline: dict[str, Any] | None = None
    problem: dict[str, Any] = field(default_factory=dict)
    cap: float = math.inf
    mix: float = 1.0
    anchor_routing: np.ndarray | None = None
    operating_profile: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of clients."""
        return int(self.routing.size)

    @property
    def mean_relative_delay(self) -> float:
        """``sum_i p_i E[D_i]`` at the solution (``= m - 1``)."""
        return float(np.nansum(self.routing * self.relative_delay))

    def __repr__(self) -> str:
        base = self.baseline or {}
        return result_repr(f"OptimizationResult ({self.objective}): n = {self.n}", [
            ("success", self.success), ("message", self.message), ("objective_value", self.objective_value),
            ("baseline_value", base.get("objective_value")), ("routing", self.routing),
            ("concurrency", self.concurrency), ("eta", self.eta), ("throughput", self.throughput),
            ("relative_delay", self.relative_delay), ("mean_relative_delay", self.mean_relative_delay),
            ("iterations", self.iterations), ("evaluations", self.evaluations),
            ("kkt_residual", self.kkt_residual), ("wall_time", self.wall_time)]
            + ([("cap", self.cap), ("mix", self.mix)] if math.isfinite(self.cap) or self.mix != 1.0 else []))

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict (NaN and inf become ``null``); keys as the attributes, plus
        ``mean_relative_delay``; ``routing``, ``concurrency``, ``throughput``, ``relative_delay``
        mean what they mean in :meth:`Analysis.to_dict <aflqueue.queueing.analysis.Analysis.to_dict>`."""
        d = super().to_dict()
        keys = list(d)
        at = keys.index("relative_delay") + 1  # the derived mean next to the per-client delays
        return {**{k: d[k] for k in keys[:at]}, "mean_relative_delay": json_safe(self.mean_relative_delay),
                **{k: d[k] for k in keys[at:]}}

    frame_attrs: ClassVar[tuple[str, ...]] = ("objective", "objective_value", "concurrency", "eta", "throughput",
                                              "mean_relative_delay", "proxies", "success", "message", "baseline")

    def frame_columns(self) -> dict[str, np.ndarray]:
        """Per client (index ``client``): ``routing`` and ``relative_delay`` at the solution,
        ``baseline_routing`` and ``baseline_relative_delay`` for AsyncSGD; ``to_frame()`` keeps the
        scalars (``objective``, ``objective_value``, ``concurrency``, ``eta``, ``throughput``,
        ``success``, ``baseline``...) in ``df.attrs``."""
        cols = {"routing": np.asarray(self.routing, dtype=float),
                "relative_delay": np.asarray(self.relative_delay, dtype=float)}
        if self.baseline is not None:
            cols["baseline_routing"] = np.asarray(self.baseline["routing"], dtype=float)
            cols["baseline_relative_delay"] = np.asarray(self.baseline["relative_delay"], dtype=float)
        return cols

    def profile_frame(self) -> Any:
        """The concurrency profile as a :class:`pandas.DataFrame`: index ``concurrency`` (every
        ``m`` examined), column ``objective_value`` (the best value found at that ``m``). Needs pandas."""
        pd = require_pandas("OptimizationResult.profile_frame()")
        ms = [int(m) for m, _ in self.concurrency_profile]
        vals = np.array([v for _, v in self.concurrency_profile], dtype=float)
        return pd.DataFrame({"objective_value": vals}, index=pd.Index(ms, name="concurrency"))


def _starts(system: System, lo: float, hi: float, count: int, seed: int) -> list[np.ndarray]:
    n = system.n
    mu = system.rates
    base = [np.full(n, 1.0 / n), mu / mu.sum(), np.sqrt(mu) / np.sqrt(mu).sum()]
    rng = np.random.default_rng(seed)
    out = [project_capped_simplex(b, lo, hi) for b in base]
    while len(out) < count:
        out.append(project_capped_simplex(rng.dirichlet(np.ones(n)), lo, hi))
    # drop duplicates (e.g. equal rates make the first three identical)
    uniq: list[np.ndarray] = []
    for s in out[:count]:
        if not any(np.allclose(s, u, atol=1e-12) for u in uniq):
            uniq.append(s)
    return uniq


def _convex_m1(problem: OptimizationProblem) -> np.ndarray | None:
    """At ``m = 1``: P1 is ``min sum 1/p_i`` and P5 ``min sum p_i / mu_i`` (LP), both with bounds."""
    import cvxpy as cp  # lazy: cvxpy

    n, mu = problem.system.n, problem.system.rates
    p = cp.Variable(n)
    cons = [cp.sum(p) == 1, p >= problem.p_min, p <= problem.p_max]
    obj = cp.sum(cp.inv_pos(p)) if problem.objective == "per-update" else cp.sum(cp.multiply(p, 1.0 / mu))
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve()
    if prob.status not in ("optimal", "optimal_inaccurate") or p.value is None:
        return None
    return project_capped_simplex(np.asarray(p.value).ravel(), problem.p_min, problem.p_max)


def optimize_routing(problem: OptimizationProblem, concurrency: int, starts: int = 4, seed: int = 0,
                     warm: np.ndarray | None = None, _fun: _Objective | None = None,
                     max_iter: int = 500, tol: float = 1e-10, polish: bool = True) -> tuple[_Run, int, str]:
    """Best routing at a fixed concurrency: ``(run, starts used, method)``.

    ``polish=False`` skips the projected-gradient finish (used while scanning concurrencies; the
    winner is polished afterwards)."""
    fun = _fun or _objective_for(problem)
    lo, hi = problem.p_min, problem.p_max
    maximize = problem.objective == "max-throughput"
    f = lambda p: fun(p, concurrency)  # noqa: E731
    if concurrency == 1 and problem.objective in ("per-update", "max-throughput") and problem.system.server is None \
            and not problem.system.is_multistage and not problem.clipping_active:
        p = _convex_m1(problem)
        if p is not None:
            ev = f(p)
            return _Run(p, ev, 1, True), 1, "cvxpy"
    inits = ([warm] if warm is not None else []) + (_starts(problem.system, lo, hi, starts, seed) if starts > 0 else [])
    best: _Run | None = None
    method = "lbfgs"
    for k, x0 in enumerate(inits):
        fun.begin(f"start {k + 1} of {len(inits)}")
        run = _lbfgs_softmax(f, x0, lo, maximize, max_iter=max_iter, tol=tol)
        if np.any(run.p > hi * (1 + 1e-12)):
            # the upper bound binds: continue from the projected point with exact projections
            run = _spg(f, run.p, lo, hi, maximize, max_iter=max_iter, tol=tol)
            method = "lbfgs+spg"
        elif polish:
            # the softmax reaches a lower bound only asymptotically: a short projected-gradient
            # finish puts such coordinates exactly on p_min (no-op when already stationary)
            it = run.iterations
            polished = _spg(f, run.p, lo, hi, maximize, max_iter=50, tol=tol)
            if polished.ev.value <= run.ev.value:
                run = _Run(polished.p, polished.ev, it + polished.iterations, run.converged or polished.converged)
        if best is None or run.ev.value < best.ev.value:
            best = run
    assert best is not None
    return best, len(inits), method


def _baseline(problem: OptimizationProblem, fun: _Objective) -> dict[str, Any]:
    n = problem.system.n
    m = problem.baseline_concurrency
    if problem.clipping_active:  # AsyncSGD: no cap, no mix (same budget and references)
        fun = _Objective(replace(fun.pb, cap=None, mix=1.0, choose_cap=False, choose_mix=False))
    ev = fun(np.full(n, 1.0 / n), m)
    val = -ev.value if problem.objective == "max-throughput" else ev.value
    return {"routing": [1.0 / n] * n, "concurrency": m, "objective_value": val if math.isfinite(val) else None,
            "eta": None if not math.isfinite(ev.eta) else ev.eta, "throughput": ev.throughput,
            "relative_delay": [float(x) for x in ev.relative_delay],
            "mean_relative_delay": float(np.nansum(ev.relative_delay / n)),
            "proxies": {k: float(v) for k, v in ev.proxies.items()}}


def optimize(problem: OptimizationProblem, starts: int = 4, seed: int = 0, scan_limit: int = 256,
             max_iter: int = 500, tol: float = 1e-10,
             progress: Callable[[str], None] | None = None) -> OptimizationResult:
    """Solve ``problem`` over routing and (if a range is given) concurrency. ``progress``: a
    callable given a short line every :data:`PROGRESS_SECONDS` while it runs (none for a short run)."""
    from threadpoolctl import threadpool_limits  # lazy: threadpoolctl

    # L-BFGS works on tiny dense matrices: extra BLAS threads only spin (measured 6x slower
    # on a busy 2-core machine), so pin BLAS to one thread for the duration.
    with threadpool_limits(limits=1, user_api="blas"):
        if problem.choose_cap or problem.choose_mix:
            return _operating_point(problem, starts, seed, scan_limit, max_iter, tol, progress)
        return _optimize(problem, starts, seed, scan_limit, max_iter, tol, progress)


def _concurrencies(problem: OptimizationProblem, scan_limit: int) -> list[int]:
    """The concurrencies scanned: all of the range, or a geometric grid of 48 when it has more than
    ``scan_limit`` values (refined around the best afterwards)."""
    lo_m, hi_m = problem.concurrency
    if problem.objective == "max-throughput":
        lo_m = hi_m  # throughput is non-decreasing in m: the top of the range is optimal
    ms = list(range(lo_m, hi_m + 1))
    if len(ms) > scan_limit:
        coarse = np.unique(np.round(np.geomspace(lo_m, hi_m, 48)).astype(int))
        ms = [int(x) for x in coarse]
    return ms


def _optimize(problem: OptimizationProblem, starts: int, seed: int, scan_limit: int, max_iter: int,
              tol: float, progress: Callable[[str], None] | None = None) -> OptimizationResult:
    t0 = time.perf_counter()
    fun = _objective_for(problem, progress)
    lo_m, hi_m = problem.concurrency
    if problem.objective == "max-throughput":
        lo_m = hi_m  # throughput is non-decreasing in m: the top of the range is optimal
    ms = _concurrencies(problem, scan_limit)
    profile: dict[int, _Run] = {}
    iters = 0
    total_starts = 0
    methods = set()
    warm = None
    for k, m in enumerate(ms):
        run, used, method = optimize_routing(problem, m, starts=starts if k == 0 else 0, seed=seed, warm=warm,
                                             _fun=fun, max_iter=max_iter, tol=tol, polish=len(ms) == 1)
        profile[m] = run
        iters += run.iterations
        total_starts += used
        methods.add(method)
        warm = run.p
    if len(ms) < hi_m - lo_m + 1:  # refine exhaustively around the best coarse point
        best_m = min(profile, key=lambda mm: profile[mm].ev.value)
        i = ms.index(best_m)
        a, b = ms[max(i - 1, 0)], ms[min(i + 1, len(ms) - 1)]
        for m in range(a, b + 1):
            if m in profile:
                continue
            run, used, method = optimize_routing(problem, m, starts=0, warm=profile[best_m].p, _fun=fun,
                                                 max_iter=max_iter, tol=tol, polish=False)
            profile[m] = run
            iters += run.iterations
            total_starts += used
    best_m = min(profile, key=lambda mm: profile[mm].ev.value)
    if len(profile) > 1:  # polish the winner, with fresh starts (non-convex)
        run, used, method = optimize_routing(problem, best_m, starts=starts if starts > 1 else 0, seed=seed + 1,
                                             warm=profile[best_m].p, _fun=fun, max_iter=max_iter, tol=tol)
        iters += run.iterations
        total_starts += used
        if run.ev.value < profile[best_m].ev.value:
            profile[best_m] = run
    best = profile[best_m]
    ev = best.ev
    value = -ev.value if problem.objective == "max-throughput" else ev.value
    # gradient of the minimised log objective (-log lambda for max-throughput): the SPG's scale
    lg = (-1.0 if problem.objective == "max-throughput" else 1.0) * ev.grad / ev.value \
        if math.isfinite(ev.value) and ev.value != 0 else ev.grad
    kkt = kkt_residual(best.p, lg, problem.p_min, problem.p_max) if np.all(np.isfinite(lg)) else math.inf
    success = math.isfinite(value) and (best.converged or kkt < 1e-6)
    mix = problem.mix
    return OptimizationResult(
        objective=problem.objective, objective_value=float(value),
        routing=best.p.copy() if mix == 1.0 else mixed_routing(best.p, mix), concurrency=int(best_m),
        eta=ev.eta, throughput=ev.throughput, relative_delay=ev.relative_delay, proxies=dict(ev.proxies),
        constants=problem.constants, success=bool(success), status=0 if best.converged else 1,
        message="converged" if best.converged else ("projected gradient small" if success else "iteration limit"),
        iterations=iters, evaluations=fun.evaluations, wall_time=time.perf_counter() - t0, kkt_residual=kkt,
        starts=total_starts, method="+".join(sorted(methods)),
        concurrency_profile=sorted((m, (-r.ev.value if problem.objective == "max-throughput" else r.ev.value))
                                   for m, r in profile.items()),
        baseline=_baseline(problem, fun),
        problem=_problem_record(problem, fun),
        cap=math.inf if problem.cap is None else float(problem.cap), mix=mix,
        anchor_routing=None if mix == 1.0 else best.p.copy(),
    )


def _problem_record(problem: OptimizationProblem, fun: _Objective) -> dict[str, Any]:
    return {"p_min": problem.p_min, "p_max": problem.p_max, "concurrency_range": list(problem.concurrency),
            "updates": problem.updates, "time_budget": fun.tau, "epsilon": problem.epsilon,
            "weight": problem.weight, "dispersion": problem.dispersion,
            "reference": None if fun.ref is None else list(fun.ref),
            "cap": problem.cap, "mix": problem.mix, "choose_cap": problem.choose_cap,
            "choose_mix": problem.choose_mix, "caps": list(problem.caps), "bias_constant": problem.bias_H}


# --------------------------------------------------------------------------- cap and mix (section 11)
def _operating_point(problem: OptimizationProblem, starts: int, seed: int, scan_limit: int, max_iter: int,
                     tol: float, progress: Callable[[str], None] | None) -> OptimizationResult:
    """``choose_cap`` / ``choose_mix``: the search of the module docstring (docs/theory.md section 11)."""
    t0 = time.perf_counter()
    base_fun = _objective_for(problem, progress)  # resolves the time budget and the tradeoff references once
    base = replace(base_fun.pb, choose_cap=False, choose_mix=False)
    # largest cap first: a tie (no client clipped at either cap) keeps the larger cap
    caps = sorted(set(problem.caps), reverse=True) if problem.choose_cap else \
        [math.inf if problem.cap is None else problem.cap]
    profile: list[tuple[float, float, float]] = []
    evaluations = 0
    if not problem.choose_mix:
        best: OptimizationResult | None = None
        for c in caps:
            r = _optimize(replace(base, cap=c), starts, seed, scan_limit, max_iter, tol, progress)
            evaluations += r.evaluations
            profile.append((float(c), r.mix, r.objective_value))
            if best is None or r.objective_value < best.objective_value:
                best = r
        assert best is not None
        return replace(best, evaluations=evaluations, wall_time=time.perf_counter() - t0, operating_profile=profile,
                       problem=_problem_record(problem, base_fun))
    # the mix: pinned to the segment from uniform routing to the unclipped optimum p*
    anchor = _optimize(replace(base, cap=None, mix=1.0), starts, seed, scan_limit, max_iter, tol, progress)
    evaluations += anchor.evaluations
    p_star = anchor.routing
    ms = _concurrencies(problem, scan_limit)
    choice = None  # (value, cap, lam, m)
    for c in caps:
        fun = _Objective(replace(base, cap=c, mix=1.0), progress)
        lam, val, m = _best_mix(fun, p_star, ms, problem.concurrency, scan_limit)
        evaluations += fun.evaluations
        profile.append((float(c), lam, val))
        if choice is None or val < choice[0]:
            choice = (val, c, lam, m)
    assert choice is not None
    val, c, lam, m = choice
    fun = _Objective(replace(base, cap=c, mix=1.0))
    routing = mixed_routing(p_star, lam)
    ev = fun(routing, m)
    evaluations += fun.evaluations
    lg = ev.grad / ev.value if math.isfinite(ev.value) and ev.value != 0 else ev.grad
    kkt = kkt_residual(routing, lg, problem.p_min, problem.p_max) if np.all(np.isfinite(lg)) else math.inf
    return OptimizationResult(
        objective=problem.objective, objective_value=float(ev.value), routing=routing, concurrency=int(m),
        eta=ev.eta, throughput=ev.throughput, relative_delay=ev.relative_delay, proxies=dict(ev.proxies),
        constants=problem.constants, success=bool(math.isfinite(ev.value)) and anchor.success, status=anchor.status,
        message="best mix on the segment to the unclipped optimum" if math.isfinite(ev.value) else
        "the objective is infinite on the whole segment",
        iterations=anchor.iterations, evaluations=evaluations, wall_time=time.perf_counter() - t0,
        kkt_residual=kkt, starts=anchor.starts, method=anchor.method + "+mix-search",
        concurrency_profile=[(m, float(ev.value))], baseline=_baseline(problem, base_fun),
        problem=_problem_record(problem, base_fun), cap=float(c), mix=float(lam), anchor_routing=p_star.copy(),
        operating_profile=profile)


def _best_mix(fun: _Objective, p_star: np.ndarray, ms: list[int], m_range: tuple[int, int],
              scan_limit: int) -> tuple[float, float, int]:
    """``(lam, value, m)`` minimising ``min_m fun(lam p* + (1 - lam) u, m)`` over ``lam in [0, 1]``:
    the grid :data:`MIX_GRID`, then bounded Brent between the best grid point's neighbours."""
    from scipy.optimize import minimize_scalar  # lazy: scipy

    def at(lam: float) -> tuple[float, int]:
        r = mixed_routing(p_star, lam)
        vals = {m: fun(r, m).value for m in ms}
        if len(ms) < m_range[1] - m_range[0] + 1:  # coarse grid of m: refine around its best
            k = ms.index(min(vals, key=vals.__getitem__))
            for m in range(ms[max(k - 1, 0)], ms[min(k + 1, len(ms) - 1)] + 1):
                if m not in vals:
                    vals[m] = fun(r, m).value
        m = min(vals, key=vals.__getitem__)
        return float(vals[m]), int(m)

    grid = [(lam, *at(lam)) for lam in MIX_GRID]
    k = min(range(len(grid)), key=lambda i: grid[i][1])
    best = grid[k]
    lo, hi = MIX_GRID[max(k - 1, 0)], MIX_GRID[min(k + 1, len(MIX_GRID) - 1)]
    if math.isfinite(best[1]):
        res = minimize_scalar(lambda x: at(float(x))[0], bounds=(lo, hi), method="bounded",
                              options={"xatol": 1e-7})
        lam = float(res.x)
        v, m = at(lam)
        if v < best[1]:
            best = (lam, v, m)
    return best


def pareto_front(problem: OptimizationProblem, weights: Sequence[float] = tuple(np.linspace(0, 1, 11)),
                 **kw) -> list[OptimizationResult]:
    """P4: solve ``tradeoff`` for each weight ``r`` (energy vs time to accuracy), references shared."""
    e = optimize(replace(problem, objective="energy"), **kw)
    t = optimize(replace(problem, objective="time-to-accuracy"), **kw)
    ref = (e.objective_value, t.objective_value)
    return [optimize(replace(problem, objective="tradeoff", weight=float(r), reference=ref), **kw) for r in weights]

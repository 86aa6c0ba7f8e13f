"""The formulas of a comparison protocol against AsyncSGD, each in one place.

A comparison of routings (AsyncSGD's uniform routing against an optimised one) fixes its settings
from AsyncSGD alone, before any comparison (docs/theory.md section 8, "Validation protocol"):

* :func:`time_budget` -- every routing trains for the same simulated time ``tau = U0 / lambda``,
  the time uniform routing needs for ``U0`` updates;
* :func:`target_epsilon` -- the target ``eps`` of the time-to-accuracy problem P3: the proxy
  value uniform routing reaches after ``U0`` updates;
* :func:`step_ratio` -- the step-size rule of an operating point: the optimum's proxy step over
  uniform routing's, which scales a learning rate tuned for AsyncSGD;
* :func:`largest_importance_weight` -- the largest weight ``1/(n p_i)`` a routing gives an update.

Pure functions of a :class:`~aflqueue.system.System` (and the proxy constants); the exact
analysis (:func:`aflqueue.queueing.analyze`) gives the throughput and delays they need.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .bounds import ProxyConstants, per_update, s1, s2
from .errors import require
from .queueing import analyze
from .system import System

__all__ = ["uniform_routing", "time_budget", "target_epsilon", "step_ratio", "largest_importance_weight"]


def uniform_routing(n: int) -> np.ndarray:
    """AsyncSGD's routing ``p_i = 1/n``, shape ``(n,)``."""
    require(int(n) >= 1, "n", f"must be >= 1 (got {n})")
    return np.full(int(n), 1.0 / int(n))


def time_budget(system: System, updates: float) -> float:
    """The time budget ``tau = U0 / lambda(uniform routing, m)`` (time units): AsyncSGD's expected
    time for ``updates`` (``U0``) updates, with the exact throughput of uniform routing at the
    system's concurrency ``m`` (docs/theory.md section 8, validation protocol; section 2 for
    ``lambda``). The system's own routing is ignored."""
    require(math.isfinite(updates) and updates > 0, "updates", f"must be > 0 (got {updates})")
    lam = analyze(system.with_routing(uniform_routing(system.n))).throughput
    return float(updates / lam)


def target_epsilon(system: System, constants: ProxyConstants, updates: float) -> float:
    """The P3 target ``eps = U(uniform routing, m, eta*; K = U0)``: the per-update proxy that
    AsyncSGD reaches after ``updates`` updates at its optimal step (docs/theory.md section 5,
    ``U`` and ``T_eps``; ``S1 = 1`` and ``S2`` from the exact delays at the system's concurrency).
    The time-to-accuracy problem then asks how soon a routing gets as far as AsyncSGD does in
    ``U0`` updates (loss units of the proxy)."""
    require(math.isfinite(updates) and updates > 0, "updates", f"must be > 0 (got {updates})")
    u = uniform_routing(system.n)
    delays = analyze(system.with_routing(u)).relative_delay
    return float(per_update(constants, s1(u)[0], s2(delays, u), updates).total)


def step_ratio(result: Any) -> float | None:
    """``eta*(p*, m*) / eta*(uniform, m)``: the optimum's proxy step over uniform routing's
    (docs/theory.md section 5, "Optimal step"), which scales a learning rate tuned for AsyncSGD
    into the operating point's. ``result``: an :class:`~aflqueue.optimization.OptimizationResult`
    (``eta`` and ``baseline["eta"]``). None when the objective has no step size (max-throughput)
    or either step is missing, not finite or not positive."""
    eta = getattr(result, "eta", None)
    eta_u = (getattr(result, "baseline", None) or {}).get("eta")
    if eta is None or eta_u is None:
        return None
    eta, eta_u = float(eta), float(eta_u)
    if not (math.isfinite(eta) and math.isfinite(eta_u) and eta > 0 and eta_u > 0):
        return None
    return eta / eta_u


def largest_importance_weight(routing: Sequence[float]) -> float:
    """``max_i 1/(n p_i)`` over the clients with ``p_i > 0``: the largest factor Generalized
    AsyncSGD puts on one client's update (docs/theory.md section 10; the same ``1/p_i`` that
    ``S1`` sums, section 5). A client with ``p_i = 0`` is never sent a task, so no update of it is
    ever weighted: it is left out (uniform routing gives 1). ``routing``: shape ``(n,)``."""
    p = np.asarray(routing, dtype=float)
    require(p.ndim == 1 and p.size >= 1 and bool(np.all(np.isfinite(p))) and bool(np.all(p >= 0))
            and bool(np.any(p > 0)), "routing", "must be n >= 1 finite probabilities >= 0, not all 0")
    return float(1.0 / (p.size * p[p > 0].min()))

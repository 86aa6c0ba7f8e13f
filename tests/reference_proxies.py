"""Independent reference implementation of the proxies for tests.

Built only from ``analyze()`` (exact metrics of a validated System) and generic scalar
optimisation over the step size / bisection over K: it shares no code with aflqueue.bounds or
aflqueue.optimization, so agreement checks both the closed forms and the optimiser's search.
"""

import math

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from aflqueue import System
from aflqueue.queueing import analyze


def metrics(system, p, m):
    s = System(system.clients, np.asarray(p, float), m, system.server)
    a = analyze(s)
    n = s.n
    S1 = np.sum(1.0 / s.routing) / n**2
    S2 = np.sum(a.relative_delay / s.routing) / n**2
    return a.throughput, S1, S2, a


def U(c, S1, S2, K, eta):
    return (c.c_opt * c.Delta / (eta * K) + c.c_var * c.L * (c.sigma2 + c.M2) * S1 * eta
            + c.c_stale * c.L**2 * (c.sigma2 + c.G2) * S2 * eta**2)


def min_over_eta(fun, eta_max):
    r = minimize_scalar(fun, bounds=(1e-12, eta_max), method="bounded", options={"xatol": 1e-14, "maxiter": 500})
    return min(r.fun, fun(eta_max)), (r.x if r.fun <= fun(eta_max) else eta_max)


def objective(kind, system, p, m, c, K=1000.0, tau=None, eps=0.1, energy=None, weight=0.5, ref=None):
    lam, S1, S2, a = metrics(system, p, m)
    if kind == "max-throughput":
        return lam
    if kind == "per-update":
        return min_over_eta(lambda e: U(c, S1, S2, K, e), c.eta_max)[0]
    if kind == "wallclock":
        return min_over_eta(lambda e: U(c, S1, S2, lam * tau, e), c.eta_max)[0]
    # smallest K with min_eta U(K) <= eps, by bracketing and bisection in log K
    f = lambda logK: min_over_eta(lambda e: U(c, S1, S2, math.exp(logK), e), c.eta_max)[0] - eps
    logK = brentq(f, 0.0, 60.0, xtol=1e-13)
    T = math.exp(logK) / lam
    if kind == "time-to-accuracy":
        return T
    busy, idle = energy
    util = lam * np.asarray(p) / system.rates
    P = float(np.sum(busy * util + idle * (1 - util)))
    if kind == "energy":
        return P * T
    return weight * P * T / ref[0] + (1 - weight) * T / ref[1]

"""Pilot-run calibration: fit the proxy's constants to short training runs (docs/theory.md section 10).

The initial-model calibration (:mod:`aflqueue.calibrate`) estimates ``Delta, L, sigma2, M2, G2``
at one point, before any training; the proxy built on them ranks routings poorly once training
moves away from that point. This module fits the bound's *shape* to what a few cheap training
runs (the *pilots*: a handful of routings and learning rates, one seed, a fraction of the budget)
actually did, and predicts from the fit what a routing gains over uniform routing (AsyncSGD).

**Fitted family.** With one local SGD step per task the trainer's learning rate is the proxy's
step ``eta`` (Generalized AsyncSGD: ``w <- w - lr / (n p_I) g_I``), so the validation loss after
``K`` applied updates is modelled as

    loss(K) = theta0 + theta1 / (eta K) + theta2 eta S1(p) + theta3 eta^2 S2(p, m),   theta >= 0,

the three terms of the proxy ``U`` (optimisation, variance, staleness) with free weights and an
offset ``theta0`` (the loss the bound's ``f*`` stands for). ``S1`` and ``S2`` are exact
(:func:`aflqueue.bounds.s1`, :func:`aflqueue.bounds.s2`, :func:`aflqueue.queueing.analysis.analyze`).

**Fit.** Non-negative least squares over the evaluation points of every pilot curve after the
first ``skip_fraction`` of its evaluations and after its first ``m`` updates (the first wave of
updates is computed from the initial model); diverged runs (a non-finite loss) are left out.
``eta_max`` is the largest pilot learning rate at which no pilot diverged. The fit maps to
:class:`~aflqueue.bounds.ProxyConstants` with ``c_opt = 2, Delta = theta1 / 2, L = 1, sigma2 = 0,
M2 = theta2, G2 = theta3, c_var = c_stale = 1``: ``a = theta1, b = theta2, c = theta3``, so every
proxy, optimiser and step-size rule of the toolkit works on the fitted constants unchanged.

**Uncertainty.** A seeded bootstrap over pilot runs: by default the runs are resampled with
replacement and refitted (``method="cases"``); every prediction is read off each refit and
intervals are percentiles. With a handful of runs a resample can miss a whole routing or rate,
which widens the intervals: on curves drawn from the family itself (tests/test_pilot.py) the 95%
intervals of the case bootstrap covered the true ``theta`` in 93-100% of 40 repetitions. The wild
cluster bootstrap (``method="wild"``: each run's residual curve times one random Webb weight) keeps
the design fixed but covered only 55-68% there (6 clusters, 4 parameters), so it is not the
default.

**Accuracy.** Accuracy is mapped from loss by a non-increasing (isotonic) fit on the pilots'
``(validation loss, validation accuracy)`` pairs, piecewise linear between its knots.

**Predictions** (:func:`predict_gain`). For a routing and concurrency the updates applied by
time ``t`` are the mean over a few simulated schedules (:func:`operating_point`; they include the
start-up transient that ``lambda t`` misses); the loss at the budget ``tau`` is the fitted model
at the step size that minimises it (``eta <= eta_max``: a tuned learning rate), and the time to a
target accuracy (``target_fraction`` times the accuracy uniform routing is predicted to reach at
``tau``) is read off the model's ``K_eps`` (:func:`aflqueue.bounds.time_to_accuracy_updates`).
The gain of a routing over uniform: the ratio of the times to that target, and the difference of
accuracies at ``tau``, each with its bootstrap interval. When the ratio's interval covers 1 the
verdict is "optimisation not expected to pay".
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .bounds import ProxyConstants, optimal_eta_per_update, s1, s2, time_to_accuracy_updates
from .errors import ValidationError, require

__all__ = ["FAMILY", "TERMS", "PilotCurve", "AccuracyMap", "PilotFit", "OperatingPoint", "GainPrediction",
           "features", "select_points", "fit_theta", "fit_pilots", "operating_point", "loss_at", "time_to_loss",
           "predict_gain", "write_constants", "read_constants", "initial_constants", "pilot_routings",
           "pilot_jobs", "pilot_run", "calibrate_pilot", "budget_of", "constants_from_theta", "curve_of", "verdict"]

FAMILY = "loss(K) = theta0 + theta1/(eta K) + theta2 eta S1 + theta3 eta^2 S2, theta >= 0"
#: The three terms of the bound, in the order of ``theta[1:]``.
TERMS = ("optimisation", "variance", "staleness")


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class PilotCurve:
    """One pilot run: its step size, routing statistics and loss/accuracy curve.

    Attributes:
        lr: the trainer's learning rate (= the proxy's ``eta`` with one local step).
        S1, S2: ``S1(p)`` and ``S2(p, m)`` of the run's routing and concurrency (exact).
        concurrency: ``m``.
        updates: updates applied at each evaluation (``K``).
        loss, accuracy: validation loss and accuracy at each evaluation.
        label: a name for reports (e.g. ``"uniform lr 0.03"``).
    """

    lr: float
    S1: float
    S2: float
    concurrency: int
    updates: tuple[float, ...]
    loss: tuple[float, ...]
    accuracy: tuple[float, ...] = ()
    label: str = ""

    def __post_init__(self):
        for name in ("updates", "loss", "accuracy"):
            v = getattr(self, name)
            object.__setattr__(self, name, tuple(math.nan if x is None else float(x) for x in v))
        require(len(self.updates) == len(self.loss), "pilot.curve",
                f"{self.label or 'a curve'}: {len(self.updates)} update counts for {len(self.loss)} losses")
        require(not self.accuracy or len(self.accuracy) == len(self.loss), "pilot.curve",
                f"{self.label or 'a curve'}: {len(self.accuracy)} accuracies for {len(self.loss)} losses")
        for name in ("lr", "S1"):
            require(math.isfinite(getattr(self, name)) and getattr(self, name) > 0, f"pilot.{name}",
                    f"must be > 0 (got {getattr(self, name)})")
        require(math.isfinite(self.S2) and self.S2 >= 0, "pilot.S2", f"must be >= 0 (got {self.S2})")

    @property
    def diverged(self) -> bool:
        """A non-finite loss anywhere on the curve (the run blew up)."""
        return any(not math.isfinite(x) for x in self.loss)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def features(eta: np.ndarray, K: np.ndarray, S1: np.ndarray, S2: np.ndarray) -> np.ndarray:
    """Design matrix ``[1, 1/(eta K), eta S1, eta^2 S2]``, shape ``(N, 4)``."""
    eta, K, S1, S2 = (np.asarray(a, dtype=float) for a in (eta, K, S1, S2))
    return np.column_stack([np.ones_like(K), 1.0 / (eta * K), eta * S1, eta * eta * S2])


def select_points(curve: PilotCurve, skip_fraction: float = 0.5) -> np.ndarray:
    """Indices of the evaluations a fit uses: after the first ``skip_fraction`` of the curve's
    evaluations, at least ``m`` updates in (the first wave of updates comes from the initial
    model), with a finite loss and ``K >= 1``."""
    n = len(curve.loss)
    K = np.asarray(curve.updates, dtype=float)
    y = np.asarray(curve.loss, dtype=float)
    idx = np.arange(n)
    keep = (idx >= int(math.floor(skip_fraction * n))) & (K >= max(curve.concurrency, 1)) & np.isfinite(y)
    return idx[keep]


def _stack(curves: Sequence[PilotCurve], skip_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, run index)`` over the selected points of every curve."""
    Xs, ys, rs = [], [], []
    for r, c in enumerate(curves):
        j = select_points(c, skip_fraction)
        if j.size == 0:
            continue
        K = np.asarray(c.updates, dtype=float)[j]
        Xs.append(features(np.full(j.size, c.lr), K, np.full(j.size, c.S1), np.full(j.size, c.S2)))
        ys.append(np.asarray(c.loss, dtype=float)[j])
        rs.append(np.full(j.size, r))
    if not Xs:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int)
    return np.vstack(Xs), np.concatenate(ys), np.concatenate(rs)


def fit_theta(X: np.ndarray, y: np.ndarray, terms: Sequence[str] = TERMS) -> np.ndarray:
    """Non-negative least squares ``min ||X theta - y||, theta >= 0`` (columns scaled to unit
    norm for conditioning); terms not in ``terms`` are held at 0. Shape ``(4,)``."""
    from scipy.optimize import nnls

    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    cols = [0] + [1 + TERMS.index(t) for t in terms]
    A = X[:, cols]
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    sol, _ = nnls(A / scale, y, maxiter=50 * A.shape[1] + 100)
    theta = np.zeros(4)
    theta[cols] = sol / scale
    return theta


# --------------------------------------------------------------------------- accuracy map
def _sigmoid(z: Any) -> Any:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


@dataclass(frozen=True)
class AccuracyMap:
    """Non-increasing map from loss to accuracy: ``acc = floor + (1 - floor) sigmoid(alpha -
    beta loss)`` with ``beta >= 0`` and ``0 <= floor < 1`` (least squares on pilot pairs).

    A parametric monotone fit rather than an isotonic one: pilots run a fraction of the budget,
    so the losses reached at the full budget lie below the pilots' range, and a step function
    would stay flat there. ``loss_range`` is the range of the pairs it was fitted on."""

    alpha: float
    beta: float
    floor: float = 0.0
    loss_range: tuple[float, float] = (0.0, math.inf)

    @classmethod
    def fit(cls, loss: Sequence[float], accuracy: Sequence[float]) -> "AccuracyMap":
        from scipy.optimize import least_squares

        x = np.asarray(loss, dtype=float)
        a = np.asarray(accuracy, dtype=float)
        ok = np.isfinite(x) & np.isfinite(a)
        require(int(ok.sum()) >= 3, "pilot.accuracy", "needs at least 3 finite (loss, accuracy) pairs")
        x, a = x[ok], a[ok]
        lo = float(max(0.0, min(a.min(), 0.98)))

        def resid(v):
            al, be, fl = v
            return fl + (1 - fl) * _sigmoid(al - be * x) - a

        best = None
        for be0 in (0.5, 2.0, 8.0):
            al0 = be0 * float(np.median(x))
            r = least_squares(resid, [al0, be0, 0.5 * lo], bounds=([-np.inf, 0.0, 0.0], [np.inf, np.inf, 0.99]))
            if best is None or r.cost < best.cost:
                best = r
        al, be, fl = (float(v) for v in best.x)
        return cls(al, be, fl, (float(x.min()), float(x.max())))

    def __call__(self, loss: Any) -> Any:
        out = self.floor + (1 - self.floor) * _sigmoid(self.alpha - self.beta * np.asarray(loss, dtype=float))
        return float(out) if np.ndim(out) == 0 else out

    def inverse(self, accuracy: float) -> float:
        """The largest loss at which the map reaches ``accuracy``: NaN if none does (at or above
        1, or a flat map above it); the top of ``loss_range`` if every loss does (at or below the
        floor)."""
        if not math.isfinite(accuracy) or accuracy >= 1:
            return math.nan
        if accuracy <= self.floor:
            return float(self.loss_range[1])
        q = (accuracy - self.floor) / (1 - self.floor)
        if self.beta <= 0:
            return float(self.loss_range[1]) if self(0.0) >= accuracy else math.nan
        return float((self.alpha - math.log(q / (1 - q))) / self.beta)

    def quality(self, loss: Sequence[float], accuracy: Sequence[float]) -> dict[str, Any]:
        """How well the map predicts ``accuracy`` from ``loss``: mean absolute error, R^2, pairs."""
        x = np.asarray(loss, dtype=float)
        a = np.asarray(accuracy, dtype=float)
        ok = np.isfinite(x) & np.isfinite(a)
        if ok.sum() < 2:
            return {"mae": None, "r2": None, "pairs": int(ok.sum())}
        pred = np.asarray(self(x[ok]))
        ss = float(np.sum((a[ok] - a[ok].mean()) ** 2))
        return {"mae": float(np.mean(np.abs(pred - a[ok]))),
                "r2": (1 - float(np.sum((pred - a[ok]) ** 2)) / ss) if ss > 0 else None, "pairs": int(ok.sum())}

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, "floor": self.floor, "loss_range": list(self.loss_range)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AccuracyMap":
        return cls(float(d["alpha"]), float(d["beta"]), float(d.get("floor", 0.0)),
                   tuple(float(x) for x in d.get("loss_range", (0.0, math.inf))))


# --------------------------------------------------------------------------- the fit
def constants_from_theta(theta: Sequence[float], eta_max: float) -> ProxyConstants:
    """``ProxyConstants`` whose proxy ``U`` is ``theta1/(eta K) + theta2 S1 eta + theta3 S2 eta^2``
    (``c_opt = 2, Delta = theta1/2, L = 1, sigma2 = 0, M2 = theta2, G2 = theta3``). A zero
    ``theta1`` (the curves show no progress with K) is raised to 1e-12 (``Delta`` must be > 0)."""
    t = [float(x) for x in theta]
    return ProxyConstants(Delta=max(t[1], 2e-12) / 2.0, L=1.0, sigma2=0.0, M2=t[2], G2=t[3], eta_max=float(eta_max),
                          c_opt=2.0, c_var=1.0, c_stale=1.0)


@dataclass(frozen=True, eq=False)
class PilotFit:
    """Fitted ``theta`` (point and bootstrap), ``eta_max``, the accuracy map and diagnostics.

    Attributes:
        theta: ``(theta0, theta1, theta2, theta3)`` fitted on every pilot run.
        eta_max: the largest pilot learning rate at which no pilot diverged.
        bootstrap: ``(B, 4)`` refits on pilot runs resampled with replacement.
        accuracy_map: loss -> accuracy (None without accuracies).
        diagnostics: R^2 and RMSE overall and per run, the points used, the terms' sizes.
        settings: how the fit was made (skip fraction, terms, bootstrap seed, ...).
    """

    theta: np.ndarray
    eta_max: float
    bootstrap: np.ndarray
    accuracy_map: AccuracyMap | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def constants(self) -> ProxyConstants:
        """The point fit as :class:`ProxyConstants` (:func:`constants_from_theta`)."""
        return constants_from_theta(self.theta, self.eta_max)

    def thetas(self) -> np.ndarray:
        """The point fit followed by the bootstrap refits, shape ``(1 + B, 4)``."""
        return np.vstack([self.theta[None, :], self.bootstrap.reshape(-1, 4)])

    def to_dict(self) -> dict[str, Any]:
        """The constants-file layout: table ``constants`` (read by ``optimize --constants`` and
        ``routing.constants``) and table ``pilot`` (everything :func:`predict_gain` needs)."""
        c = self.constants.to_dict()
        c = {k: v for k, v in c.items() if v is not None}
        pilot: dict[str, Any] = {"family": FAMILY, "theta": [float(x) for x in self.theta],
                                 "eta_max": float(self.eta_max),
                                 "bootstrap": {"theta": [[float(x) for x in row] for row in self.bootstrap]},
                                 "diagnostics": self.diagnostics, "settings": self.settings}
        if self.accuracy_map is not None:
            pilot["accuracy_map"] = self.accuracy_map.to_dict()
        return {"constants": c, "pilot": pilot}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PilotFit":
        p = d.get("pilot")
        require(isinstance(p, Mapping), "constants", "has no 'pilot' table (not written by calibrate --pilot)")
        try:
            theta = np.asarray(p["theta"], dtype=float).reshape(4)
            boot = np.asarray(p.get("bootstrap", {}).get("theta", []), dtype=float).reshape(-1, 4)
            eta_max = float(p["eta_max"])
            amap = p.get("accuracy_map")
            amap = AccuracyMap.from_dict(amap) if amap else None
        except (KeyError, TypeError, ValueError) as e:
            raise ValidationError("constants", f"malformed 'pilot' table ({type(e).__name__}: {e})") from None
        require(bool(np.all(np.isfinite(theta))) and bool(np.all(theta >= 0)), "pilot.theta",
                f"must be 4 finite numbers >= 0 (got {theta.tolist()})")
        require(math.isfinite(eta_max) and eta_max > 0, "pilot.eta_max", f"must be > 0 (got {eta_max})")
        return cls(theta, eta_max, boot, amap, dict(p.get("diagnostics", {})), dict(p.get("settings", {})))


def _eta_max(curves: Sequence[PilotCurve]) -> float:
    lrs = sorted({c.lr for c in curves})
    bad = {c.lr for c in curves if c.diverged}
    ok = [lr for lr in lrs if lr not in bad and lr < min(bad, default=math.inf)]
    return max(ok) if ok else min(lrs) / 2.0


def _r2(y: np.ndarray, pred: np.ndarray) -> float | None:
    ss = float(np.sum((y - y.mean()) ** 2))
    return (1 - float(np.sum((y - pred) ** 2)) / ss) if y.size >= 2 and ss > 0 else None


#: Webb's six-point weights for the wild cluster bootstrap (mean 0, variance 1).
WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])
BOOTSTRAP_METHODS = ("wild", "cases")


def fit_pilots(curves: Sequence[PilotCurve], *, bootstrap: int = 200, seed: int = 0, skip_fraction: float = 0.5,
               terms: Sequence[str] = TERMS, eta_max: float | None = None, method: str = "cases") -> PilotFit:
    """Fit the family (module docstring) to pilot curves, with a seeded bootstrap over runs.

    Args:
        curves: the pilot runs; diverged ones (non-finite loss) only set ``eta_max``.
        bootstrap: number of bootstrap refits (0: none).
        seed: seeds the resampling.
        method: ``"cases"`` (default): resample the runs with replacement and refit;
            ``"wild"``: the wild cluster bootstrap with the runs as clusters (every run's residual
            curve times one random Webb weight, added back to the fit; the design stays fixed, but
            with a handful of runs its intervals are too narrow, see the module docstring).
        skip_fraction: share of each curve's first evaluations left out (:func:`select_points`).
        terms: which of :data:`TERMS` to fit (the others are held at 0; for ablations).
        eta_max: the step-size cap (default: the largest pilot rate with no divergence).
    """
    require(len(curves) >= 1, "pilot", "needs at least one pilot run")
    for t in terms:
        require(t in TERMS, "pilot.terms", f"unknown term {t!r}; allowed: {', '.join(TERMS)}")
    require("optimisation" in terms, "pilot.terms", "the optimisation term is needed (it carries the K dependence)")
    require(isinstance(bootstrap, int) and bootstrap >= 0, "bootstrap", f"must be an integer >= 0 (got {bootstrap!r})")
    require(0 <= skip_fraction < 1, "skip_fraction", f"must be in [0, 1) (got {skip_fraction})")
    usable = [c for c in curves if not c.diverged]
    require(bool(usable), "pilot", "every pilot run diverged: lower the learning rates")
    X, y, run = _stack(usable, skip_fraction)
    require(y.size >= 4, "pilot", f"only {y.size} usable evaluation points; run longer pilots or evaluate more often")
    theta = fit_theta(X, y, terms)
    em = float(eta_max) if eta_max is not None else _eta_max(curves)
    require(method in BOOTSTRAP_METHODS, "bootstrap-method",
            f"must be one of {', '.join(BOOTSTRAP_METHODS)} (got {method!r})")
    rng = np.random.default_rng(seed)
    boots = []
    pred = X @ theta
    resid = y - pred
    runs_present = np.unique(run)
    for _ in range(bootstrap):
        if method == "wild":
            w = WEBB[rng.integers(0, WEBB.size, size=runs_present.size)]
            weight = np.zeros(len(usable))
            weight[runs_present] = w
            boots.append(fit_theta(X, pred + weight[run] * resid, terms))
            continue
        pick = rng.integers(0, len(usable), size=len(usable))
        parts = [(X[run == r], y[run == r]) for r in pick]
        Xb = np.vstack([p[0] for p in parts])
        yb = np.concatenate([p[1] for p in parts])
        boots.append(fit_theta(Xb, yb, terms) if yb.size >= 4 else theta)
    per_run = []
    for r, c in enumerate(usable):
        sel = run == r
        if not sel.any():
            continue
        yr, pr = y[sel], pred[sel]
        last = X[sel][-1] * theta
        per_run.append({"label": c.label, "lr": c.lr, "S1": c.S1, "S2": c.S2, "concurrency": c.concurrency,
                        "points": int(sel.sum()), "rmse": float(np.sqrt(np.mean((yr - pr) ** 2))),
                        "r2": _r2(yr, pr), "mean_residual": float(np.mean(yr - pr)),
                        "terms_at_last_point": {"offset": float(last[0]), **{t: float(last[1 + k])
                                                                              for k, t in enumerate(TERMS)}}})
    amap = None
    pairs_l = [x for c in usable for x in c.loss]
    pairs_a = [x for c in usable for x in c.accuracy] if all(c.accuracy for c in usable) else []
    diag: dict[str, Any] = {"points": int(y.size), "runs_used": len(usable),
                            "runs_diverged": [c.label for c in curves if c.diverged],
                            "r2": _r2(y, pred), "rmse": float(np.sqrt(np.mean((y - pred) ** 2))), "per_run": per_run,
                            "degenerate": [name for k, name in enumerate(TERMS) if name in terms and theta[1 + k] == 0]}
    if pairs_a:
        amap = AccuracyMap.fit(pairs_l, pairs_a)
        diag["accuracy_map"] = amap.quality(pairs_l, pairs_a)
    settings = {"skip_fraction": skip_fraction, "terms": list(terms), "bootstrap": bootstrap,
                "bootstrap_method": method, "seed": seed, "runs": len(curves)}
    return PilotFit(theta, em, np.asarray(boots, dtype=float).reshape(-1, 4), amap, diag, settings)


# --------------------------------------------------------------------------- predictions
@dataclass(frozen=True, eq=False)
class OperatingPoint:
    """A routing and concurrency with what the predictions need from the queueing side.

    Attributes:
        routing: ``p``, shape ``(n,)``; concurrency: ``m``.
        throughput: exact ``lambda``; S1, S2: exact.
        times, updates: the mean number of updates applied by each time of a grid (simulated
            schedules); beyond the grid the count grows at rate ``lambda``.
    """

    routing: np.ndarray
    concurrency: int
    throughput: float
    S1: float
    S2: float
    times: np.ndarray
    updates: np.ndarray

    def updates_at(self, t: float) -> float:
        """Expected updates applied by time ``t``."""
        if t <= self.times[-1]:
            return float(np.interp(t, self.times, self.updates))
        return float(self.updates[-1] + self.throughput * (t - self.times[-1]))

    def time_for(self, K: float) -> float:
        """First time at which ``K`` updates are expected (inf for an infinite ``K``)."""
        if not math.isfinite(K):
            return math.inf
        if K <= self.updates[-1]:
            return float(np.interp(K, self.updates, self.times))
        return float(self.times[-1] + (K - self.updates[-1]) / self.throughput)

    def to_dict(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "throughput": self.throughput, "S1": self.S1, "S2": self.S2}


def operating_point(system, routing: Sequence[float], concurrency: int, horizon: float,
                    sim_seeds: Sequence[int] = (5000, 5001, 5002), grid: int = 200) -> OperatingPoint:
    """Exact ``lambda``, ``S1``, ``S2`` of ``(routing, concurrency)`` on ``system``, and the mean
    update count over ``grid`` times in ``(0, horizon]`` from simulated schedules (``sim_seeds``;
    no training). With no seeds the count is ``lambda t``."""
    from .queueing.analysis import analyze
    from .sim import simulate

    p = np.asarray(routing, dtype=float)
    sysm = system.with_routing(p).with_concurrency(int(concurrency))
    a = analyze(sysm)
    lam = float(a.throughput)
    S1 = s1(p)[0]
    S2 = s2(a.relative_delay, p)
    times = horizon * np.arange(0, grid + 1) / grid
    if sim_seeds:
        counts = np.zeros_like(times)
        U = int(math.ceil(lam * horizon * 1.5)) + 2 * int(concurrency) + 50
        for sd in sim_seeds:
            tr = simulate(sysm, U, seed=int(sd))
            done = np.sort(tr.completion_time[tr.completed])
            counts += np.searchsorted(done, times, side="right")
        updates = counts / len(sim_seeds)
    else:
        updates = lam * times
    return OperatingPoint(p, int(concurrency), lam, float(S1), float(S2), times, updates)


def loss_at(theta: Sequence[float], eta_max: float, S1: float, S2: float, K: float,
            eta: float | None = None) -> tuple[float, float]:
    """``(loss, eta)``: the family after ``K`` updates at step ``eta`` (default: the step in
    ``(0, eta_max]`` that minimises it, as a tuned learning rate would)."""
    t0, t1, t2, t3 = (float(x) for x in theta)
    if K <= 0:
        return math.inf, math.nan
    if eta is None:
        if t1 <= 0:
            eta = 1e-12 * eta_max
        else:
            eta = optimal_eta_per_update(t1 / K, t2 * S1, t3 * S2, eta_max)
    return t0 + t1 / (eta * K) + t2 * S1 * eta + t3 * S2 * eta * eta, float(eta)


def time_to_loss(theta: Sequence[float], eta_max: float, op: OperatingPoint, target: float) -> float:
    """Predicted time for ``op`` to bring the loss to ``target`` at the best step size (inf if the
    family says it never does)."""
    eps = float(target) - float(theta[0])
    if not (eps > 0) or not math.isfinite(eps):
        return math.inf
    K, _ = time_to_accuracy_updates(constants_from_theta(theta, eta_max), op.S1, op.S2, eps)
    return op.time_for(K)


@dataclass(frozen=True)
class GainPrediction:
    """Predicted gain of a routing over a baseline (uniform routing).

    Attributes:
        time_ratio: ``{"point", "lo", "hi"}``: time to the target accuracy, routing / baseline
            (< 1: the routing is faster); interval from the bootstrap refits.
        accuracy_difference: accuracy at the budget, routing minus baseline (same layout).
        loss: predicted losses at the budget ``{"routing", "baseline"}`` (point fit).
        target_accuracy: the target (``target_fraction`` x the baseline's predicted accuracy).
        verdict: ``"pays"`` (the ratio's whole interval is below 1), ``"not expected to pay"``
            (it covers 1) or ``"not expected to pay: expected to lose"`` (it is above 1).
        confidence: level of the intervals; samples: bootstrap refits they rest on.
    """

    time_ratio: dict[str, float | None]
    accuracy_difference: dict[str, float | None]
    loss: dict[str, float]
    target_accuracy: float | None
    verdict: str
    confidence: float
    samples: int
    eta: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from .io import json_safe

        return json_safe(asdict(self))


def _one_gain(theta: np.ndarray, eta_max: float, amap: AccuracyMap | None, cand: OperatingPoint,
              base: OperatingPoint, tau: float, target_fraction: float) -> tuple[float, float, float, float, float, float, float]:
    lc, ec = loss_at(theta, eta_max, cand.S1, cand.S2, cand.updates_at(tau))
    lb, eb = loss_at(theta, eta_max, base.S1, base.S2, base.updates_at(tau))
    if amap is not None:
        acc_b, acc_c = amap(lb), amap(lc)
        target_acc = target_fraction * acc_b
        target_loss = amap.inverse(target_acc)
    else:  # no map: the target is the loss the baseline reaches at the budget
        acc_b = acc_c = target_acc = math.nan
        target_loss = lb
    tb = time_to_loss(theta, eta_max, base, target_loss) if math.isfinite(target_loss) else math.nan
    tc = time_to_loss(theta, eta_max, cand, target_loss) if math.isfinite(target_loss) else math.nan
    ratio = tc / tb if (math.isfinite(tb) and tb > 0) else math.nan
    return ratio, acc_c - acc_b, lc, lb, target_acc, ec, eb


def _interval(point: float, samples: Sequence[float], confidence: float) -> dict[str, float | None]:
    v = np.asarray([x for x in samples if x is not None and not math.isnan(x)], dtype=float)
    if v.size < 2:
        return {"point": point, "lo": None, "hi": None}
    q = (1 - confidence) / 2
    return {"point": point, "lo": float(np.quantile(v, q)), "hi": float(np.quantile(v, 1 - q))}


def verdict(ratio: Mapping[str, Any]) -> str:
    """``"pays"`` / ``"not expected to pay"`` / ``"not expected to pay: expected to lose"`` from a
    time-ratio interval (point only when no interval: below 1 pays)."""
    lo, hi, pt = ratio.get("lo"), ratio.get("hi"), ratio.get("point")
    if lo is None or hi is None:
        if pt is None or not math.isfinite(pt):
            return "not expected to pay"
        return "pays" if pt < 1 else "not expected to pay"
    if hi < 1:
        return "pays"
    if lo > 1:
        return "not expected to pay: expected to lose"
    return "not expected to pay"


def predict_gain(fit: PilotFit, candidate: OperatingPoint, baseline: OperatingPoint, time_budget: float, *,
                 target_fraction: float = 0.9, confidence: float = 0.95) -> GainPrediction:
    """Predicted time-to-target ratio and accuracy difference of ``candidate`` against
    ``baseline`` at the budget ``time_budget``, with bootstrap intervals (module docstring)."""
    require(math.isfinite(time_budget) and time_budget > 0, "time_budget", f"must be > 0 (got {time_budget})")
    require(0 < target_fraction <= 1, "target_fraction", f"must be in (0, 1] (got {target_fraction})")
    require(0 < confidence < 1, "confidence", f"must be in (0, 1) (got {confidence})")
    point = _one_gain(fit.theta, fit.eta_max, fit.accuracy_map, candidate, baseline, time_budget, target_fraction)
    boots = [_one_gain(th, fit.eta_max, fit.accuracy_map, candidate, baseline, time_budget, target_fraction)
             for th in fit.bootstrap]
    ratio = _interval(point[0], [b[0] for b in boots], confidence)
    acc = _interval(point[1], [b[1] for b in boots], confidence)
    return GainPrediction(time_ratio=ratio, accuracy_difference=acc, loss={"routing": point[2], "baseline": point[3]},
                          target_accuracy=None if math.isnan(point[4]) else point[4], verdict=verdict(ratio),
                          confidence=confidence, samples=len(boots), eta={"routing": point[5], "baseline": point[6]})


# --------------------------------------------------------------------------- constants files
def write_constants(path: str | Path, data: Mapping[str, Any] | PilotFit | ProxyConstants) -> Path:
    """Write a constants file (TOML, YAML or JSON by extension): a table ``constants`` that
    ``optimize --constants`` and ``routing.constants`` read, and anything else beside it."""
    from .io import atomic_write_json, atomic_write_text, dumps_toml, json_safe

    if isinstance(data, PilotFit):
        data = data.to_dict()
    elif isinstance(data, ProxyConstants):
        data = {"constants": {k: v for k, v in data.to_dict().items() if v is not None}}
    p = Path(path)
    suffix = p.suffix.lower()
    require(suffix in (".toml", ".json", ".yaml", ".yml"), "output",
            f"unknown extension {suffix!r} for {str(p)!r}; use .toml, .yaml/.yml or .json")
    if suffix == ".json":
        return atomic_write_json(p, data, indent=1)
    if suffix == ".toml":
        return atomic_write_text(p, dumps_toml(data))
    import yaml

    return atomic_write_text(p, yaml.safe_dump(json_safe(data), sort_keys=False))


def read_constants(path: str | Path) -> tuple[ProxyConstants, PilotFit | None]:
    """The constants of a constants file and, if it has a ``pilot`` table, the pilot fit."""
    from .system import read_mapping

    data = read_mapping(path, "constants")
    inner = data.get("constants", data)
    require(isinstance(inner, Mapping), "constants", f"{str(path)!r}: 'constants' must be a table")
    consts = ProxyConstants.from_dict({k: v for k, v in inner.items()})
    fit = PilotFit.from_dict(data) if isinstance(data.get("pilot"), Mapping) else None
    return consts, fit


# --------------------------------------------------------------------------- running pilots
def budget_of(cfg) -> tuple[float, int]:
    """``(tau, U0)``: the configuration's time budget, or AsyncSGD's expected time for its update
    budget (``run.updates``; :func:`aflqueue.protocol.time_budget`: uniform routing at the
    system's concurrency, exact throughput)."""
    from .pipeline import build_system
    from .protocol import time_budget, uniform_routing
    from .queueing.analysis import analyze

    system = build_system(cfg, cfg.data.clients)
    if cfg.run.time_budget is not None:
        lam = analyze(system.with_routing(uniform_routing(system.n))).throughput
        return float(cfg.run.time_budget), int(round(lam * cfg.run.time_budget))
    U0 = int(cfg.run.updates)
    return time_budget(system, U0), U0


def initial_constants(cfg, seed: int | None = None, **kw: Any) -> ProxyConstants:
    """The zero-cost option: :func:`aflqueue.calibrate.calibrate` at the configuration's initial
    model (seed ``cfg.seed`` unless given), 4 minibatches per client and 4 directions by default."""
    from .calibrate import calibrate
    from .config import with_updates
    from .pipeline import build_data_and_model

    c = cfg if seed is None else with_updates(cfg, seed=int(seed))
    data, model = build_data_and_model(c)
    kw = {"num_batches": 4, "num_directions": 4, **kw}
    return calibrate(model, data.clients, seed=int(c.seed), **kw).constants


def pilot_routings(names: Sequence[str], system, constants: ProxyConstants, time_budget: float,
                   p_min: float = 1e-3) -> dict[str, np.ndarray]:
    """Routings named ``uniform``, ``p2`` (the wall-clock optimum for ``constants`` at the
    system's concurrency), ``mid`` (their midpoint) or ``mix:T`` (``(1-T) uniform + T p2``)."""
    from .optimization import OptimizationProblem, optimize

    n = system.n
    u = np.full(n, 1.0 / n)
    p2 = None
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "uniform":
            out[name] = u
            continue
        if name == "mid":
            t = 0.5
        elif name == "p2":
            t = 1.0
        elif name.startswith("mix:"):
            try:
                t = float(name[4:])
            except ValueError:
                raise ValidationError("routings", f"{name!r}: mix:T needs a number T in [0, 1]") from None
            require(0 <= t <= 1, "routings", f"{name!r}: mix:T needs T in [0, 1]")
        else:
            raise ValidationError("routings", f"unknown pilot routing {name!r}; use uniform, p2, mid or mix:T")
        if p2 is None:
            p2 = optimize(OptimizationProblem(system, "wall-clock", constants=constants, p_min=p_min,
                                              time_budget=time_budget)).routing
        out[name] = (1 - t) * u + t * p2
    return out


def pilot_run(args: Mapping[str, Any]) -> dict[str, Any]:
    """One pilot (or evaluation) training run, a job of :func:`aflqueue.jobs.run_jobs`.

    ``args``: ``config`` (a :class:`~aflqueue.config.TrainConfig` dict), ``routing`` (list, or
    None for uniform), ``concurrency``, ``lr``, ``seed``, ``time_budget``, ``evaluate_on``
    (``"validation"`` or ``"test"``), ``eval_times``, and optional ``tags`` copied to the record."""
    import tempfile

    import torch

    from .config import TrainConfig, with_updates
    from .pipeline import prepare, train
    from .protocol import largest_importance_weight
    from .queueing.analysis import analyze

    t0 = time.perf_counter()
    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict(args["config"])
    routing = {"kind": "uniform"} if args.get("routing") is None else \
        {"kind": "explicit", "values": [float(x) for x in args["routing"]]}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_updates(cfg, output=tmp, seed=int(args["seed"]), routing=routing,
                           system={"concurrency": int(args["concurrency"])}, local={"lr": float(args["lr"])},
                           run={"time_budget": float(args["time_budget"]), "updates": None,
                                "evaluate_on": args.get("evaluate_on", "validation"), "eval_every": 0,
                                "eval_times": int(args.get("eval_times", 20)), "checkpoint_every": 0})
        pr = prepare(cfg)
        res = train(cfg, prepared=pr)
    p = np.asarray(pr.system.routing)
    a = analyze(pr.system)
    return {"tags": dict(args.get("tags", {})), "lr": float(args["lr"]), "seed": int(args["seed"]),
            "concurrency": int(pr.system.concurrency), "time_budget": float(args["time_budget"]),
            "evaluate_on": args.get("evaluate_on", "validation"),
            "S1": s1(p)[0], "S2": s2(a.relative_delay, p), "throughput": float(a.throughput),
            "max_importance_weight": largest_importance_weight(p),
            "measured": {"final_accuracy": res.final_accuracy, "final_loss": res.final_loss, "arrivals": res.arrivals,
                         "diverged": res.diverged,
                         "diverged_at_time": (float(res.log["time"][-1]) if res.diverged else None),
                         "curves": {k: res.curves[k] for k in ("time", "updates", "test_loss", "test_accuracy")}},
            "timing": {"wall_time": time.perf_counter() - t0}}


def curve_of(record: Mapping[str, Any]) -> PilotCurve:
    """The :class:`PilotCurve` of a :func:`pilot_run` record (a diverged run's loss is NaN)."""
    c = record["measured"]["curves"]
    loss = [math.nan if x is None else x for x in c["test_loss"]]
    if record["measured"].get("diverged"):
        loss = loss + [math.nan]
    return PilotCurve(lr=record["lr"], S1=record["S1"], S2=record["S2"], concurrency=record["concurrency"],
                      updates=tuple(c["updates"]) + ((c["updates"][-1] if c["updates"] else 1.0,)
                                                     if record["measured"].get("diverged") else ()),
                      loss=tuple(loss), accuracy=tuple(c["test_accuracy"]) + ((math.nan,) if record["measured"].get(
                          "diverged") else ()), label=str(record.get("tags", {}).get("label", "")))


def pilot_jobs(prefix: str, config: Mapping[str, Any], routings: Mapping[str, np.ndarray], concurrency: int,
               lrs: Sequence[float], seed: int, time_budget: float, eval_times: int = 20,
               tags: Mapping[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Jobs ``(id, args)`` of :func:`pilot_run`: every routing at every rate, one seed, on the
    validation split."""
    jobs = []
    for name, p in routings.items():
        for lr in lrs:
            jid = f"{prefix}__{name.replace(':', '')}__lr{lr:g}"
            jobs.append((jid, {"config": dict(config), "routing": None if name == "uniform" else [float(x) for x in p],
                               "concurrency": int(concurrency), "lr": float(lr), "seed": int(seed),
                               "time_budget": float(time_budget), "evaluate_on": "validation",
                               "eval_times": int(eval_times),
                               "tags": {**(tags or {}), "routing": name, "label": f"{name} lr {lr:g}"}}))
    return jobs


def calibrate_pilot(cfg, output: str | Path, *, routings: Sequence[str] = ("uniform", "p2", "mid"),
                    lrs: Sequence[float] = (0.03, 0.1), seed: int = 1000, budget_fraction: float = 0.5,
                    bootstrap: int = 200, skip_fraction: float = 0.5, method: str = "cases", eval_times: int = 20,
                    backend: str = "serial",
                    workers: int | None = None, address: str | None = None, progress: Callable[[str], None] | None = print) -> PilotFit:
    """Run the pilots of a configuration (saved under ``output``, resumable) and fit them.

    The pilots train ``cfg`` with every routing of ``routings`` (:func:`pilot_routings`, the
    wall-clock optimum from the initial-model constants at ``seed``) at every rate of ``lrs``,
    on one ``seed``, for ``budget_fraction`` of the budget (:func:`budget_of`), evaluated on a
    validation split (``data.validation_fraction``, 0.1 if unset)."""
    from .config import with_updates
    from .jobs import JobStore, run_jobs
    from .pipeline import build_system

    require(0 < budget_fraction <= 1, "budget-fraction", f"must be in (0, 1] (got {budget_fraction})")
    require(len(lrs) >= 1 and all(math.isfinite(x) and x > 0 for x in lrs), "lrs", f"must be > 0 (got {list(lrs)})")
    require(len(routings) >= 1, "routings", "needs at least one routing")
    if cfg.data.validation_fraction <= 0:
        cfg = with_updates(cfg, data={"validation_fraction": 0.1})
    tau, U0 = budget_of(cfg)
    system = build_system(cfg, cfg.data.clients)
    consts = initial_constants(cfg, seed=seed)
    rts = pilot_routings(list(routings), system, consts, tau)
    raw = cfg.to_dict()
    raw["routing"] = {"kind": "uniform"}
    jobs = pilot_jobs("pilot", raw, rts, system.concurrency, lrs, seed, budget_fraction * tau, eval_times)
    t0 = time.perf_counter()
    records = run_jobs(jobs, pilot_run, JobStore(Path(output)), backend=backend, workers=workers, address=address,
                       progress=progress, describe=lambda r: f"final validation loss {r['measured']['final_loss']}")
    wanted = {j for j, _ in jobs}
    records = [r for r in records if r["id"] in wanted]
    fit = fit_pilots([curve_of(r) for r in records], bootstrap=bootstrap, seed=seed, skip_fraction=skip_fraction,
                     method=method)
    cost = sum(r.get("timing", {}).get("wall_time", 0.0) for r in records)
    fit.settings.update({"routings": list(routings), "lrs": [float(x) for x in lrs], "pilot_seed": int(seed),
                         "budget_fraction": budget_fraction, "time_budget": tau, "pilot_time_budget": budget_fraction * tau,
                         "reference_updates": U0, "initial_constants": {k: v for k, v in consts.to_dict().items()
                                                                        if v is not None},
                         "pilot_runs": len(records), "pilot_wall_time_s": cost,
                         "session_wall_time_s": time.perf_counter() - t0})
    return fit

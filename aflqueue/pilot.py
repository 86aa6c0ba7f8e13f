"""Pilot-run calibration: fit the proxy's constants to short training runs (docs/theory.md section 10).

The initial-model calibration (:mod:`aflqueue.calibration`) estimates ``Delta, L, sigma2, M2, G2``
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

**The commands** (:func:`calibrate`, :func:`predict`: what ``aflqueue calibrate`` and ``aflqueue
predict`` run). :func:`calibrate` fits the pilots of a run configuration (or estimates at the
initial model) and writes a constants file; its pilot runs are keyed by the content of their
configuration, never by a name, so a calibration with other settings never reuses another's runs.
:func:`predict` returns a :class:`Prediction` whose :meth:`~Prediction.verdict` states a verdict
only when the numbers support one: a pilot fit, a target with a time to it (above the accuracy
map's floor, within its reach), every bootstrap refit giving a time ratio, enough refits for the
interval's tails (:func:`min_bootstrap`) and a finite interval; otherwise "no verdict" and why.
(:func:`verdict` and :func:`predict_gain` keep the rules the regime studies were run with.)

**Constants files** are read as hostile input (:func:`load_constants`): the bounded reader of
:mod:`aflqueue.io`, then :func:`check_constants_file` (known tables and keys, no empty constants,
finite ranges, the ``pilot`` table's shapes and the accuracy map's ``0 <= floor < 1``, constants
that match the fit's ``theta``), and :func:`predict` refuses constants fitted on another number
of clients (table ``fitted_on``). :func:`write_constants` checks what it writes the same way.
Cached pilot records are checked (:func:`check_pilot_record`) before they are fitted.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._results import Result, result_repr
from .bounds import ProxyConstants, optimal_eta_per_update, s1, s2, time_to_accuracy_updates
from .errors import ValidationError, check_integer, check_number, require
from .io import file_errors, short_repr, source_name

__all__ = ["FAMILY", "TERMS", "PilotCurve", "AccuracyMap", "PilotFit", "OperatingPoint", "GainPrediction",
           "ConstantsFile", "Prediction", "Verdict", "features", "select_points", "fit_theta", "fit_pilots",
           "operating_point", "loss_at", "time_to_loss", "predict_gain", "write_constants", "read_constants",
           "load_constants", "check_constants_file", "check_pilot_table", "check_pilot_record", "initial_constants",
           "initial_calibration", "pilot_routings", "pilot_jobs", "pilot_identity", "pilot_run", "calibrate_pilot",
           "calibrate", "predict", "min_bootstrap", "budget_of", "constants_from_theta", "curve_of", "verdict",
           "MAX_BOOTSTRAP", "CONSTANTS_FILE_TABLES"]

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

    def __post_init__(self):
        object.__setattr__(self, "alpha", check_number(self.alpha, "accuracy_map.alpha"))
        object.__setattr__(self, "beta", check_number(self.beta, "accuracy_map.beta", 0.0))
        # an accuracy is a fraction: a floor of 1 or more would "reach" every target at any loss
        object.__setattr__(self, "floor", check_number(self.floor, "accuracy_map.floor", 0.0, 1.0, hi_open=True))
        lr = self.loss_range
        require(isinstance(lr, (tuple, list)) and len(lr) == 2, "accuracy_map.loss_range",
                f"must be [lowest, highest] loss (got {short_repr(lr)})")
        lo = check_number(lr[0], "accuracy_map.loss_range[0]")
        hi = math.inf if isinstance(lr[1], float) and lr[1] == math.inf else \
            check_number(lr[1], "accuracy_map.loss_range[1]", lo)
        object.__setattr__(self, "loss_range", (lo, hi))

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
        """``alpha``, ``beta``, ``floor`` and ``loss_range`` (left out when unbounded: files hold finite numbers)."""
        d: dict[str, Any] = {"alpha": self.alpha, "beta": self.beta, "floor": self.floor}
        if math.isfinite(self.loss_range[1]):
            d["loss_range"] = list(self.loss_range)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AccuracyMap":
        """The map of :meth:`to_dict` (each value checked; unknown keys refused)."""
        require(isinstance(d, Mapping), "accuracy_map", f"must be a table (got {short_repr(d)})")
        unknown = sorted(set(d) - {"alpha", "beta", "floor", "loss_range"})
        require(not unknown, f"accuracy_map.{unknown[0] if unknown else ''}",
                "unknown key (allowed: alpha, beta, floor, loss_range)")
        for k in ("alpha", "beta"):
            require(k in d, f"accuracy_map.{k}", "missing")
        return cls(d["alpha"], d["beta"], d.get("floor", 0.0), tuple(d.get("loss_range", (0.0, math.inf))))


# --------------------------------------------------------------------------- the fit
def constants_from_theta(theta: Sequence[float], eta_max: float) -> ProxyConstants:
    """``ProxyConstants`` whose proxy ``U`` is ``theta1/(eta K) + theta2 S1 eta + theta3 S2 eta^2``
    (``c_opt = 2, Delta = theta1/2, L = 1, sigma2 = 0, M2 = theta2, G2 = theta3``). A zero
    ``theta1`` (the curves show no progress with K) is raised to 1e-12 (``Delta`` must be > 0)."""
    t = [float(x) for x in theta]
    return ProxyConstants(Delta=max(t[1], 2e-12) / 2.0, L=1.0, sigma2=0.0, M2=t[2], G2=t[3], eta_max=float(eta_max),
                          c_opt=2.0, c_var=1.0, c_stale=1.0)


@dataclass(frozen=True, eq=False, repr=False)
class PilotFit(Result):
    """Fitted ``theta`` (point and bootstrap), ``eta_max``, the accuracy map and diagnostics.

    Its :meth:`to_dict` is the layout of a constants file (tables ``constants`` and ``pilot``);
    :meth:`to_frame` has one row per ``theta`` term (offset, optimisation, variance, staleness).

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

    frame_index = "term"
    frame_fields = ("theta",)
    repr_fields = ("theta", "eta_max", "bootstrap", "accuracy_map", "settings")

    def title(self) -> str:
        return f"PilotFit ({FAMILY}; {self.bootstrap.shape[0]} bootstrap refits)"

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
    def from_dict(cls, d: Mapping[str, Any], source: str = "the pilot table") -> "PilotFit":
        """The fit of a constants file's ``pilot`` table (``d`` is the whole file's table), every
        value checked (:func:`check_pilot_table`); errors name ``source``."""
        p = d.get("pilot") if isinstance(d, Mapping) else None
        require(isinstance(p, Mapping), "constants", f"{source} has no 'pilot' table (not written by calibrate --pilot)")
        return check_pilot_table(p, source)


_PILOT_KEYS = ("family", "theta", "eta_max", "bootstrap", "accuracy_map", "diagnostics", "settings")
#: Most bootstrap refits a constants file may hold (as ``calibrate --bootstrap``).
MAX_BOOTSTRAP = 100_000


def _theta_row(v: Any, field: str, src: str) -> list[float]:
    if not (isinstance(v, list) and len(v) == 4):
        raise ValidationError(field, f"{src}: must be 4 numbers >= 0 (offset, optimisation, variance, staleness; got "
                                     f"{short_repr(v)})")
    with file_errors(src):
        return [check_number(x, f"{field}[{j}]", 0.0) for j, x in enumerate(v)]


def check_pilot_table(p: Any, source: str) -> PilotFit:
    """The :class:`PilotFit` of a constants file's ``pilot`` table after checking it: known keys,
    ``theta`` 4 finite numbers >= 0, ``eta_max`` a finite number > 0, ``bootstrap.theta`` at most
    :data:`MAX_BOOTSTRAP` rows like ``theta``, the accuracy map's ``alpha`` finite, ``beta >= 0``,
    ``0 <= floor < 1``, ``loss_range`` finite and ordered, ``diagnostics`` and ``settings`` tables.
    Errors name ``source``."""
    src = source
    if not isinstance(p, Mapping):
        raise ValidationError("pilot", f"{src}: must be a table (got {short_repr(p)})")
    unknown = sorted(set(p) - set(_PILOT_KEYS))
    if unknown:
        raise ValidationError(f"pilot.{unknown[0]}", f"{src}: unknown key (a pilot table holds {', '.join(_PILOT_KEYS)})")
    if "family" in p and p["family"] != FAMILY:
        raise ValidationError("pilot.family", f"{src}: fitted with another family ({short_repr(p['family'])}); this "
                                              f"version fits {FAMILY!r}")
    for k in ("theta", "eta_max"):
        if k not in p:
            raise ValidationError(f"pilot.{k}", f"{src}: missing")
    theta = np.asarray(_theta_row(p["theta"], "pilot.theta", src))
    with file_errors(src):
        eta_max = check_number(p["eta_max"], "pilot.eta_max", 0.0, 1e12, lo_open=True)
    boot = p.get("bootstrap", {})
    if not isinstance(boot, Mapping) or set(boot) - {"theta"}:
        raise ValidationError("pilot.bootstrap", f"{src}: must be a table holding 'theta' (a list of rows of 4 "
                                                 f"numbers; got {short_repr(boot)})")
    rows = boot.get("theta", [])
    if not isinstance(rows, list) or len(rows) > MAX_BOOTSTRAP:
        raise ValidationError("pilot.bootstrap.theta", f"{src}: must be a list of at most {MAX_BOOTSTRAP:,} rows of 4 "
                                                       f"numbers (got {short_repr(rows) if not isinstance(rows, list) else f'{len(rows):,} rows'})")
    bootstrap = np.asarray([_theta_row(r, f"pilot.bootstrap.theta[{i}]", src) for i, r in enumerate(rows)],
                           dtype=float).reshape(-1, 4)
    amap = None
    if p.get("accuracy_map") is not None:
        with file_errors(src, "pilot"):
            amap = AccuracyMap.from_dict(p["accuracy_map"])
    tables = {}
    for k in ("diagnostics", "settings"):
        v = p.get(k, {})
        if not isinstance(v, Mapping):
            raise ValidationError(f"pilot.{k}", f"{src}: must be a table (got {short_repr(v)})")
        tables[k] = dict(v)
    return PilotFit(theta, eta_max, bootstrap, amap, tables["diagnostics"], tables["settings"])


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


def _gain_samples(fit: PilotFit, candidate: OperatingPoint, baseline: OperatingPoint, time_budget: float,
                  target_fraction: float) -> tuple[tuple, list[tuple]]:
    """:func:`_one_gain` at the point fit and at every bootstrap refit."""
    point = _one_gain(fit.theta, fit.eta_max, fit.accuracy_map, candidate, baseline, time_budget, target_fraction)
    boots = [_one_gain(th, fit.eta_max, fit.accuracy_map, candidate, baseline, time_budget, target_fraction)
             for th in fit.bootstrap]
    return point, boots


def predict_gain(fit: PilotFit, candidate: OperatingPoint, baseline: OperatingPoint, time_budget: float, *,
                 target_fraction: float = 0.9, confidence: float = 0.95) -> GainPrediction:
    """Predicted time-to-target ratio and accuracy difference of ``candidate`` against
    ``baseline`` at the budget ``time_budget``, with bootstrap intervals (module docstring)."""
    require(math.isfinite(time_budget) and time_budget > 0, "time_budget", f"must be > 0 (got {time_budget})")
    require(0 < target_fraction <= 1, "target_fraction", f"must be in (0, 1] (got {target_fraction})")
    require(0 < confidence < 1, "confidence", f"must be in (0, 1) (got {confidence})")
    point, boots = _gain_samples(fit, candidate, baseline, time_budget, target_fraction)
    ratio = _interval(point[0], [b[0] for b in boots], confidence)
    acc = _interval(point[1], [b[1] for b in boots], confidence)
    return GainPrediction(time_ratio=ratio, accuracy_difference=acc, loss={"routing": point[2], "baseline": point[3]},
                          target_accuracy=None if math.isnan(point[4]) else point[4], verdict=verdict(ratio),
                          confidence=confidence, samples=len(boots), eta={"routing": point[5], "baseline": point[6]})


# --------------------------------------------------------------------------- constants files
#: Top-level tables of a constants file.
CONSTANTS_FILE_TABLES = ("constants", "fitted_on", "pilot", "initial")
CONSTANTS_METHODS = ("pilot", "initial", "given")


@dataclass(frozen=True, eq=False, repr=False)
class ConstantsFile(Result):
    """What a constants file holds (written by :func:`calibrate`, read by :func:`load_constants`).

    Attributes:
        constants: the proxy constants (table ``constants``; what ``optimize --constants`` and
            ``routing.constants`` use).
        method: ``"pilot"`` (fitted to pilot runs: table ``pilot``), ``"initial"`` (estimated at
            the initial model: table ``initial``) or ``"given"`` (written by hand).
        clients: the number of clients ``n`` of the system they were fitted on (table
            ``fitted_on``), None when the file does not say (hand-written files).
        fit: the pilot fit (method ``pilot``), else None.
        initial: the initial-model estimate's settings and spread (method ``initial``), else None.
        path: the file read or written, if any.
        runs: the folder of the pilot runs (when :func:`calibrate` ran them), else None.

    :meth:`to_dict` is the file's layout; :meth:`to_frame` has one row per constant.
    """

    constants: ProxyConstants
    method: str
    clients: int | None = None
    fit: PilotFit | None = None
    initial: dict[str, Any] | None = None
    path: str | None = None
    runs: str | None = None

    frame_index = "constant"

    def title(self) -> str:
        where = f" ({self.path})" if self.path else ""
        size = f" on {self.clients} clients" if self.clients is not None else ""
        return f"ConstantsFile{where}: {self.method}{size}"

    def __repr__(self) -> str:
        items: list[tuple[str, Any]] = [("constants", {k: v for k, v in self.constants.to_dict().items()
                                                       if v is not None})]
        if self.fit is not None:
            items += [("theta", self.fit.theta), ("eta_max", self.fit.eta_max),
                      ("bootstrap refits", int(self.fit.bootstrap.shape[0]))]
        items.append(("pilot runs", self.runs))
        return result_repr(self.title(), items)

    def to_dict(self) -> dict[str, Any]:
        """The constants-file layout: ``constants``, ``fitted_on`` (when known), and ``pilot`` or
        ``initial``."""
        from .io import json_safe

        d: dict[str, Any] = self.fit.to_dict() if self.fit is not None else {}
        d["constants"] = {k: v for k, v in self.constants.to_dict().items() if v is not None}
        if self.clients is not None:
            d["fitted_on"] = {"clients": int(self.clients)}
        if self.initial is not None:
            d["initial"] = self.initial
        order = [k for k in CONSTANTS_FILE_TABLES if k in d]
        return json_safe({k: d[k] for k in order})

    def frame_columns(self) -> dict[str, np.ndarray]:
        c = {k: v for k, v in self.constants.to_dict().items() if v is not None}
        return {"value": np.asarray(list(c.values()), dtype=float)}

    def to_frame(self) -> Any:
        """One row per constant (index: its name), column ``value``; the rest in ``df.attrs``."""
        df = super().to_frame()
        df.index = [k for k, v in self.constants.to_dict().items() if v is not None]
        df.index.name = self.frame_index
        return df

    def report(self) -> str:
        """What ``aflqueue calibrate`` prints."""
        c = self.constants
        where = f"; written to {self.path}" if self.path else ""
        if self.fit is None:
            return (f"{self.method} constants: Delta {c.Delta:.4g}, L {c.L:.4g}, sigma2 {c.sigma2:.4g}, M2 {c.M2:.4g}, "
                    f"G2 {c.G2:.4g}" + (f" ({self.clients} clients)" if self.clients else "") + where)
        t, d, st = self.fit.theta, self.fit.diagnostics, self.fit.settings
        r2 = d.get("r2")
        lines = [f"fitted {st.get('pilot_runs', '?')} pilot runs ({st.get('pilot_wall_time_s', 0.0):.0f} s of training) "
                 f"on {self.clients} clients: theta0 {t[0]:.4g}, optimisation {t[1]:.4g}, variance {t[2]:.4g}, "
                 f"staleness {t[3]:.4g}; eta_max {self.fit.eta_max:g}; R^2 {'-' if r2 is None else round(r2, 3)} over "
                 f"{d.get('points', '?')} points; {self.fit.bootstrap.shape[0]} bootstrap refits"]
        if d.get("degenerate"):
            lines.append(f"terms fitted to zero: {', '.join(d['degenerate'])}")
        if self.path:
            runs = f" (pilot runs in {self.runs}/)" if self.runs else ""
            lines.append(f"constants written to {self.path}{runs}; use them with optimize --constants {self.path}, "
                         f"predict --constants {self.path}, or train --set routing.constants=\"{self.path}\"")
        return "\n".join(lines)


def _size_from(data: Mapping[str, Any], src: str) -> int | None:
    """The system size a file's constants were fitted on: ``fitted_on.clients``, else (files
    written before ``fitted_on``) the pilot's or initial estimate's ``settings.clients``."""
    fo = data.get("fitted_on")
    if fo is not None:
        if not isinstance(fo, Mapping) or set(fo) - {"clients"} or "clients" not in fo:
            raise ValidationError("fitted_on", f"{src}: must be a table holding 'clients' (got {short_repr(fo)})")
        with file_errors(src):
            return check_integer(fo["clients"], "fitted_on.clients", 1, 10**9)
    for table in ("pilot", "initial"):
        t = data.get(table)
        n = t.get("settings", {}).get("clients") if isinstance(t, Mapping) and isinstance(t.get("settings"),
                                                                                            Mapping) else None
        if n is not None:
            with file_errors(src):
                return check_integer(n, f"{table}.settings.clients", 1, 10**9)
    return None


def check_constants_file(data: Any, source: str, path: str | None = None) -> ConstantsFile:
    """The :class:`ConstantsFile` of a parsed constants file after checking it; every failure is
    one :class:`ValidationError` naming ``source``.

    A constants file is a table holding either a table ``constants`` (with optional ``fitted_on``,
    ``pilot``, ``initial``; nothing else) or the constants themselves at top level (a hand-written
    file). The constants are :class:`~aflqueue.bounds.ProxyConstants` fields, each checked there;
    an empty table is refused (it would silently mean the default constants). A ``pilot`` table is
    checked by :func:`check_pilot_table`, and the constants must be the ones its ``theta`` gives
    (:func:`constants_from_theta`; an edited table would optimise one thing and predict another).
    """
    src = source
    if not isinstance(data, Mapping) or not data:
        raise ValidationError("constants", f"{src} holds no constants (an empty file would silently mean the default "
                                           "constants; write them, or calibrate)")
    names = {f for f in ProxyConstants.__dataclass_fields__}
    if "constants" in data:
        unknown = sorted(set(data) - set(CONSTANTS_FILE_TABLES))
        if unknown:
            raise ValidationError(unknown[0], f"{src}: unknown table (a constants file holds "
                                              f"{', '.join(CONSTANTS_FILE_TABLES)})")
        table = data["constants"]
        prefix = "constants."
    else:
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValidationError(unknown[0], f"{src}: unknown key (a constants file holds a table 'constants', or the "
                                              f"constants themselves: {', '.join(sorted(names))})")
        table, prefix = data, ""
    if not isinstance(table, Mapping):
        raise ValidationError("constants", f"{src}: 'constants' must be a table (got {short_repr(table)})")
    if not table:
        raise ValidationError("constants", f"{src}: the table 'constants' is empty (it would silently mean the default "
                                           "constants; write them, or calibrate)")
    unknown = sorted(set(table) - names)
    if unknown:
        raise ValidationError(f"{prefix}{unknown[0]}", f"{src}: unknown constant (allowed: {', '.join(sorted(names))})")
    with file_errors(src, prefix):
        consts = ProxyConstants.from_dict(dict(table))
    clients = _size_from(data, src)
    fit = None
    if data.get("pilot") is not None:
        fit = check_pilot_table(data["pilot"], src)
        expected = fit.constants
        for k, want in expected.to_dict().items():
            got = getattr(consts, k)
            if want is None and got is None:
                continue
            if want is None or got is None or not math.isclose(got, want, rel_tol=1e-9, abs_tol=0.0):
                raise ValidationError(f"constants.{k}", f"{src}: {got!r} does not match the pilot fit's theta "
                                                        f"({want!r}; edited by hand? remove the 'pilot' table or "
                                                        "calibrate again)")
    initial = data.get("initial")
    if initial is not None and not isinstance(initial, Mapping):
        raise ValidationError("initial", f"{src}: must be a table (got {short_repr(initial)})")
    method = "pilot" if fit is not None else "initial" if initial is not None else "given"
    return ConstantsFile(consts, method, clients, fit, None if initial is None else dict(initial), path)


def load_constants(path: str | Path) -> ConstantsFile:
    """A constants file (TOML, YAML or JSON), read by :func:`aflqueue.io.read_mapping` (bounded
    size and nesting, no huge integers, finite numbers) and checked by :func:`check_constants_file`."""
    from .io import read_mapping

    return check_constants_file(read_mapping(path, "constants"), source_name(path), str(path))


def write_constants(path: str | Path, data: Mapping[str, Any] | PilotFit | ProxyConstants | ConstantsFile) -> Path:
    """Write a constants file (TOML, YAML or JSON by extension): a table ``constants`` that
    ``optimize --constants`` and ``routing.constants`` read, and anything else beside it. What
    is written is first checked as :func:`load_constants` checks what it reads, so that every
    file written reads back."""
    from .io import DATA_FORMATS, atomic_write_data, json_safe

    if isinstance(data, (PilotFit, ConstantsFile)):
        data = data.to_dict()
    elif isinstance(data, ProxyConstants):
        data = {"constants": {k: v for k, v in data.to_dict().items() if v is not None}}
    p = Path(path)
    suffix = p.suffix.lower()
    require(suffix in DATA_FORMATS, "output", f"unknown extension {suffix!r} for {str(p)!r}; use .toml, .yaml/.yml "
                                              "or .json")
    plain = json_safe(dict(data))
    check_constants_file(plain, f"the constants being written to {source_name(p)}")
    return atomic_write_data(p, plain)


def read_constants(path: str | Path) -> tuple[ProxyConstants, PilotFit | None]:
    """The constants of a constants file and, if it has a ``pilot`` table, the pilot fit
    (:func:`load_constants`)."""
    cf = load_constants(path)
    return cf.constants, cf.fit


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


def initial_calibration(cfg, seed: int | None = None, **kw: Any):
    """The zero-cost option: :func:`aflqueue.calibration.calibrate` at the configuration's initial
    model (seed ``cfg.seed`` unless given), 4 minibatches per client and 4 directions by default.
    Returns its :class:`~aflqueue.calibration.Calibration`."""
    from .calibration import calibrate as estimate_at_initial_model
    from .config import with_updates
    from .pipeline import build_data_and_model

    c = cfg if seed is None else with_updates(cfg, seed=int(seed))
    data, model = build_data_and_model(c)
    kw = {"num_batches": 4, "num_directions": 4, **kw}
    return estimate_at_initial_model(model, data.clients, seed=int(c.seed), **kw)


def initial_constants(cfg, seed: int | None = None, **kw: Any) -> ProxyConstants:
    """The constants of :func:`initial_calibration`."""
    return initial_calibration(cfg, seed, **kw).constants


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


def check_pilot_record(record: Any, source: str) -> Mapping[str, Any]:
    """``record`` (a :func:`pilot_run` record read back from its job store) if it holds what
    :func:`curve_of` reads: ``lr > 0``, ``S1 > 0``, ``S2 >= 0``, ``concurrency >= 1``, and
    ``measured.curves`` with lists ``updates`` (integers >= 0), ``test_loss`` (numbers >= 0 or
    null) and ``test_accuracy`` (in ``[0, 1]`` or null) of one length; else one
    :class:`ValidationError` naming ``source``."""
    src = source
    if not isinstance(record, Mapping):
        raise ValidationError("record", f"{src}: must be a table")
    with file_errors(src, "record"):
        check_number(record.get("lr"), "lr", 0.0, lo_open=True)
        check_number(record.get("S1"), "S1", 0.0, lo_open=True)
        check_number(record.get("S2"), "S2", 0.0)
        check_integer(record.get("concurrency"), "concurrency", 1)
    m = record.get("measured")
    c = m.get("curves") if isinstance(m, Mapping) else None
    if not isinstance(c, Mapping):
        raise ValidationError("record.measured.curves", f"{src}: missing (the pilot's curves)")
    n = None
    for k, lo, hi, nullable in (("updates", 0.0, None, False), ("test_loss", 0.0, None, True),
                                ("test_accuracy", 0.0, 1.0, True)):
        v = c.get(k)
        if not isinstance(v, list) or (n is not None and len(v) != n):
            raise ValidationError(f"record.measured.curves.{k}", f"{src}: must be a list, one entry per evaluation"
                                                                 + (f" ({n})" if n is not None else ""))
        n = len(v)
        for i, x in enumerate(v):
            if x is None and nullable:
                continue
            with file_errors(src):
                check_number(x, f"record.measured.curves.{k}[{i}]", lo, hi)
    return record


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


def pilot_identity(args: Mapping[str, Any]) -> dict[str, Any]:
    """What a :func:`pilot_run` job's result depends on: its arguments without ``tags`` and
    without the configuration's ``output`` and ``seed`` (the run overrides both)."""
    config = {k: v for k, v in dict(args["config"]).items() if k not in ("output", "seed")}
    return {**{k: v for k, v in args.items() if k not in ("tags", "config")}, "config": config}


def pilot_jobs(prefix: str, config: Mapping[str, Any], routings: Mapping[str, np.ndarray], concurrency: int,
               lrs: Sequence[float], seed: int, time_budget: float, eval_times: int = 20,
               tags: Mapping[str, Any] | None = None, *, content_key: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """Jobs ``(id, args)`` of :func:`pilot_run`: every routing at every rate, one seed, on the
    validation split. ``content_key``: end each id with a digest of the job's content
    (:func:`pilot_identity`), so that a store never hands a job the record of another one with
    the same name (:func:`calibrate_pilot` does; the studies' ids predate it)."""
    from .io import json_digest

    jobs = []
    for name, p in routings.items():
        for lr in lrs:
            jid = f"{prefix}__{name.replace(':', '')}__lr{lr:g}"
            args = {"config": dict(config), "routing": None if name == "uniform" else [float(x) for x in p],
                    "concurrency": int(concurrency), "lr": float(lr), "seed": int(seed),
                    "time_budget": float(time_budget), "evaluate_on": "validation", "eval_times": int(eval_times),
                    "tags": {**(tags or {}), "routing": name, "label": f"{name} lr {lr:g}"}}
            if content_key:
                jid += f"__{json_digest(pilot_identity(args))}"
            jobs.append((jid, args))
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
    # keyed by content: a second calibration with other settings never reuses the first one's runs
    jobs = pilot_jobs("pilot", raw, rts, system.concurrency, lrs, seed, budget_fraction * tau, eval_times,
                      content_key=True)
    t0 = time.perf_counter()
    store = JobStore(Path(output))
    records = run_jobs(jobs, pilot_run, store, backend=backend, workers=workers, address=address,
                       progress=progress, describe=lambda r: f"final validation loss {r['measured']['final_loss']}",
                       settings=pilot_identity)
    wanted = {j for j, _ in jobs}
    records = [check_pilot_record(r, source_name(store.path(r["id"]))) for r in records if r["id"] in wanted]
    require(len(records) == len(wanted), "pilot", f"{len(wanted) - len(records)} pilot run(s) have no record in "
                                                  f"{str(store.cells)!r}")
    fit = fit_pilots([curve_of(r) for r in records], bootstrap=bootstrap, seed=seed, skip_fraction=skip_fraction,
                     method=method)
    cost = sum(r.get("timing", {}).get("wall_time", 0.0) for r in records)
    fit.settings.update({"clients": int(system.n), "concurrency": int(system.concurrency),
                         "routings": list(routings), "lrs": [float(x) for x in lrs], "pilot_seed": int(seed),
                         "budget_fraction": budget_fraction, "time_budget": tau, "pilot_time_budget": budget_fraction * tau,
                         "reference_updates": U0, "initial_constants": {k: v for k, v in consts.to_dict().items()
                                                                        if v is not None},
                         "pilot_runs": len(records), "pilot_wall_time_s": cost,
                         "session_wall_time_s": time.perf_counter() - t0})
    return fit


# --------------------------------------------------------------------------- calibrate and predict
#: Pilot routings :func:`calibrate` accepts (and ``mix:T`` with ``T`` in ``[0, 1]``).
PILOT_ROUTINGS = ("uniform", "p2", "mid")
#: Largest concurrency :func:`predict` scans (each objective evaluation is one MVA pass; as
#: ``aflqueue optimize``).
MAX_SCAN_CONCURRENCY = 100_000
_MAX_LR = 100.0


def _check_routing_names(routings: Sequence[str]) -> list[str]:
    names = [str(r).strip() for r in routings]
    require(bool(names) and all(names), "routings", "needs at least one routing (uniform, p2, mid or mix:T)")
    for r in names:
        ok = r in PILOT_ROUTINGS
        if r.startswith("mix:"):
            try:
                ok = 0 <= float(r[4:]) <= 1
            except ValueError:
                ok = False
        require(ok, "routings", f"unknown pilot routing {r!r}; use uniform, p2, mid or mix:T with T in [0, 1]")
    return names


def _check_output(output: str | Path | None) -> Path | None:
    if output is None:
        return None
    from .io import DATA_FORMATS

    out = Path(output)
    require(out.suffix.lower() in DATA_FORMATS, "output", f"must end in .toml, .json, .yaml or .yml (got {str(out)!r})")
    require(not out.is_dir(), "output", f"{str(out)!r} is a folder; give a file name")
    return out


def calibrate(cfg, *, method: str = "pilot", output: str | Path | None = None, runs: str | Path | None = None,
              routings: Sequence[str] = ("uniform", "p2", "mid"), lrs: Sequence[float] = (0.03, 0.1), seed: int = 1000,
              budget_fraction: float = 0.5, bootstrap: int = 200, bootstrap_method: str = "cases",
              backend: str = "serial", workers: int | None = None, address: str | None = None,
              progress: Callable[[str], None] | None = print) -> ConstantsFile:
    """The proxy constants of a run configuration ``cfg`` (a :class:`~aflqueue.config.TrainConfig`),
    as ``aflqueue calibrate`` computes them, written to ``output`` when given.

    ``method="pilot"`` (docs/theory.md section 10): train ``cfg`` briefly with every routing of
    ``routings`` at every learning rate of ``lrs`` (one pilot ``seed``, ``budget_fraction`` of the
    budget, on a validation split) and fit the family to the loss curves, with ``bootstrap``
    refits (``bootstrap_method`` ``cases`` or ``wild``). The runs are saved in ``runs`` (default:
    next to ``output``, ``<output stem>_pilots``) and resumed from there, each keyed by the
    content of its configuration (:func:`pilot_jobs` with ``content_key``): a calibration with
    other settings never reuses another's runs. ``backend``, ``workers``, ``address``: where the
    runs train (:func:`aflqueue.jobs.run_jobs`). ``method="initial"`` (section 7): the zero-cost
    estimate at the initial model (:func:`initial_calibration`, seed ``cfg.seed``); the pilot
    arguments must keep their defaults.

    Every argument is checked before anything runs (one :class:`ValidationError` naming it). The
    result records the system size (``clients``), which :func:`predict` requires to match.
    """
    require(method in ("pilot", "initial"), "method", f"must be pilot or initial (got {method!r})")
    out = _check_output(output)
    names = _check_routing_names(routings)
    lrs = [check_number(x, "lrs", 0.0, _MAX_LR, lo_open=True) for x in (lrs if isinstance(lrs, (list, tuple)) else [lrs])]
    require(bool(lrs), "lrs", "needs at least one learning rate")
    seed = check_integer(seed, "pilot-seed", 0, 2**32 - 1)
    budget_fraction = check_number(budget_fraction, "budget-fraction", 0.0, 1.0, lo_open=True)
    bootstrap = check_integer(bootstrap, "bootstrap", 0, MAX_BOOTSTRAP)
    require(bootstrap_method in BOOTSTRAP_METHODS, "bootstrap-method",
            f"must be one of {', '.join(BOOTSTRAP_METHODS)} (got {bootstrap_method!r})")
    from .pipeline import build_system

    n = build_system(cfg, cfg.data.clients).n
    if method == "initial":
        cal = initial_calibration(cfg)
        initial = {"settings": cal.settings,
                   "spread": {k: {kk: vv for kk, vv in v.items() if kk != "values"} for k, v in cal.spread.items()}}
        cf = ConstantsFile(cal.constants, "initial", n, None, initial, None if out is None else str(out))
    else:
        if runs is None:
            require(out is not None, "runs", "give a folder for the pilot runs (or an output file to put them next to)")
            runs = str(out.with_suffix("")) + "_pilots"
        fit = calibrate_pilot(cfg, Path(runs), routings=names, lrs=sorted(set(lrs)), seed=seed,
                              budget_fraction=budget_fraction, bootstrap=bootstrap, method=bootstrap_method,
                              backend=backend, workers=workers, address=address, progress=progress)
        cf = ConstantsFile(fit.constants, "pilot", n, fit, None, None if out is None else str(out), str(runs))
    if out is not None:
        write_constants(out, cf)
    return cf


@dataclass(frozen=True)
class Verdict:
    """What a :class:`Prediction` allows one to say, and why.

    Attributes:
        kind: ``"pays"`` (the whole interval of the time ratio is below 1), ``"not expected to
            pay"`` (it covers 1), ``"not expected to pay: expected to lose"`` (it is above 1) or
            ``"no verdict"`` (the numbers support none).
        reason: the numbers behind it, or why there is none.
    """

    kind: str
    reason: str

    def __str__(self) -> str:
        lead = {"pays": "optimisation pays", "not expected to pay": "optimisation not expected to pay",
                "not expected to pay: expected to lose": "optimisation not expected to pay: expected to lose",
                "no verdict": "no verdict"}[self.kind]
        return f"verdict: {lead} ({self.reason})"


def min_bootstrap(confidence: float) -> int:
    """Fewest bootstrap refits for a two-sided ``confidence`` interval whose tails each rest on at
    least one refit: ``ceil(2 / (1 - confidence))`` (40 at 95%)."""
    return int(math.ceil(2.0 / (1.0 - confidence) - 1e-9))


@dataclass(frozen=True, eq=False, repr=False)
class Prediction(Result):
    """What optimising the routing is predicted to gain over AsyncSGD (uniform routing, the
    system's concurrency), as ``aflqueue predict`` reports it (:func:`predict`).

    Attributes:
        objective: the optimiser's objective (``wall-clock`` or ``time-to-accuracy``).
        n: clients; concurrency_uniform: AsyncSGD's ``m``; concurrency: the optimum's ``m``.
        routing: the optimum's routing, shape ``(n,)``.
        time_budget: ``tau`` (time units): AsyncSGD's expected time for ``reference_updates``.
        max_importance_weight, step_ratio: of the optimum (step size over AsyncSGD's; None if none).
        constants_file: where the constants came from; source: ``"pilot fit"`` or ``"constants
            without a pilot fit"``; proxy_ratio: the proxy's optimum / AsyncSGD (no pilot fit).
        time_ratio: ``{"point", "lo", "hi"}``: predicted time to the target accuracy, optimum /
            AsyncSGD (< 1: faster), interval over the bootstrap refits (inf: never reaches it);
            None without a pilot fit.
        accuracy_difference: accuracy at the budget, optimum minus AsyncSGD (same layout).
        target_accuracy: the target (``target_fraction`` x AsyncSGD's predicted accuracy).
        loss, eta: predicted losses and step sizes at the budget ``{"routing", "baseline"}``.
        confidence: the intervals' level; samples: bootstrap refits; defined: refits that give a
            time ratio (a target out of a refit's reach gives none).
        unreachable: why no time to the target exists (target at or below the accuracy map's
            floor, or beyond what the map reaches), else None.

    :meth:`verdict` says what the numbers allow; :meth:`to_dict` adds it (``verdict``,
    ``verdict_reason``); :meth:`to_frame` has one row per client (the optimum's routing).
    """

    objective: str
    n: int
    concurrency_uniform: int
    concurrency: int
    routing: np.ndarray
    time_budget: float
    reference_updates: int
    max_importance_weight: float
    step_ratio: float | None
    constants_file: str | None
    source: str
    proxy_ratio: float | None = None
    time_ratio: dict[str, float | None] | None = None
    accuracy_difference: dict[str, float | None] | None = None
    target_accuracy: float | None = None
    loss: dict[str, float] | None = None
    eta: dict[str, float] | None = None
    confidence: float = 0.95
    samples: int = 0
    defined: int = 0
    unreachable: str | None = None

    frame_fields = ("routing",)

    def title(self) -> str:
        return f"Prediction ({self.objective} optimum against AsyncSGD, n = {self.n}): {self.verdict().kind}"

    def verdict(self) -> Verdict:
        """The verdict the numbers support (docs/theory.md section 10), or ``no verdict`` and why:
        no pilot fit, a target with no time to it, an undefined point prediction, too few
        bootstrap refits for the interval's tails (:func:`min_bootstrap`), refits without a time
        ratio, or no interval."""
        if self.source != "pilot fit":
            return Verdict("no verdict", "the constants carry no pilot fit: the proxy ranks routings but predicts no "
                                         "time or accuracy, and carries no interval (run aflqueue calibrate --pilot)")
        if self.unreachable:
            return Verdict("no verdict", self.unreachable)
        tr = self.time_ratio or {}
        pct = f"{100 * self.confidence:g}%"
        pt = tr.get("point")
        if pt is None or not math.isfinite(pt):
            return Verdict("no verdict", "the point fit predicts no finite time ratio")
        need = min_bootstrap(self.confidence)
        if self.samples < need:
            return Verdict("no verdict", f"{self.samples} bootstrap refits cannot bound a {pct} interval (each tail needs "
                                         f"one: at least {need}; calibrate --pilot --bootstrap {need} or more)")
        if self.defined < self.samples:
            return Verdict("no verdict", f"{self.samples - self.defined} of {self.samples} bootstrap refits give no time "
                                         "ratio (the target is out of their reach): an interval over the others "
                                         "would be too narrow")
        lo, hi = tr.get("lo"), tr.get("hi")
        if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
            return Verdict("no verdict", "the time ratio has no interval")
        iv = f"the {pct} interval of the time ratio over {self.samples} bootstrap refits, [{lo:.3g}, {hi:.3g}],"
        if hi < 1:
            return Verdict("pays", f"{iv} is below 1")
        if lo > 1:
            return Verdict("not expected to pay: expected to lose", f"{iv} is above 1")
        return Verdict("not expected to pay", f"{iv} covers 1")

    def to_dict(self) -> dict[str, Any]:
        v = self.verdict()
        return {**super().to_dict(), "verdict": v.kind, "verdict_reason": v.reason}

    def report(self) -> str:
        """What ``aflqueue predict`` prints."""
        lines = [f"system: n = {self.n}, m = {self.concurrency_uniform}; budget tau = {self.time_budget:.4g} time units "
                 f"(AsyncSGD's expected time for {self.reference_updates} updates)",
                 f"optimum ({self.objective}, constants from {self.constants_file}): m = {self.concurrency}, largest "
                 f"importance weight {self.max_importance_weight:.1f}, step size "
                 f"{'-' if self.step_ratio is None else f'{self.step_ratio:.3g}'} x AsyncSGD's"]
        if self.source != "pilot fit":
            r = self.proxy_ratio
            lines.append(f"proxy ratio (optimum / AsyncSGD): {'-' if r is None else f'{r:.3f}'}")
            lines.append(str(self.verdict()))
            return "\n".join(lines)
        pct = f"{100 * self.confidence:g}%"

        def iv(d: Mapping[str, Any] | None, scale: float = 1.0, signed: bool = False) -> str:
            def f(x: Any) -> str:
                if x is None or (isinstance(x, float) and math.isnan(x)):
                    return "-"
                return f"{scale * x:+.1f}" if signed else f"{scale * x:.3f}"

            d = d or {}
            if d.get("lo") is None:
                return f(d.get("point"))
            return f"{f(d['point'])} [{f(d['lo'])}, {f(d['hi'])}] ({pct}, {self.samples} refits)"

        tgt = self.target_accuracy
        if self.unreachable:
            lines.append(f"predicted time to the target: none ({self.unreachable})")
        else:
            lines.append(f"predicted time to {'the target' if tgt is None else f'accuracy {tgt:.3f}'} (optimum / "
                         f"AsyncSGD): {iv(self.time_ratio)}")
        lines.append(f"predicted accuracy difference at the budget (points): "
                     f"{iv(self.accuracy_difference, 100, signed=True)}")
        lines.append(str(self.verdict()))
        return "\n".join(lines)


def _safe_interval(point: float, samples: Sequence[float], confidence: float) -> dict[str, float | None]:
    """:func:`_interval` (linear percentiles of the defined samples) that keeps ``inf`` (a refit
    that never reaches the target) instead of turning a quantile between two of them into NaN."""
    big = 1e300
    v = [min(x, big) for x in samples if x is not None and not math.isnan(x)]
    out = _interval(point, v, confidence)
    for k in ("lo", "hi"):
        if out[k] is not None and out[k] >= big:
            out[k] = math.inf
    return out


def predict(cfg, constants: str | Path | ConstantsFile, *, objective: str = "wall-clock",
            concurrency_range: Sequence[int] | None = None, p_min: float | None = None, target_fraction: float = 0.9,
            confidence: float = 0.95, starts: int = 4,
            sim_seeds: Sequence[int] = (5000, 5001, 5002)) -> Prediction:
    """What optimising the routing of ``cfg`` (a :class:`~aflqueue.config.TrainConfig`) is
    predicted to gain over AsyncSGD, from ``constants`` (a constants file or a
    :class:`ConstantsFile`), as ``aflqueue predict`` reports it (docs/theory.md section 10).

    The optimum of ``objective`` (``wall-clock`` or ``time-to-accuracy``; over the concurrency
    range ``[lo, hi]`` when given; every ``p_i >= p_min``, default ``cfg.routing.p_min``) on the
    configuration's system and budget; with a pilot fit, its predicted time to a target accuracy
    (``target_fraction`` in ``(0, 1]`` x AsyncSGD's predicted accuracy at the budget) and accuracy
    at the budget against AsyncSGD's, with ``confidence`` bootstrap intervals (update counts from
    simulated schedules with ``sim_seeds``). :meth:`Prediction.verdict` says what they allow.

    Refused (:class:`ValidationError`): constants fitted on another number of clients than the
    configuration's system has (both sizes named), an empty or malformed constants file,
    arguments out of range. A target the accuracy map puts at or below its floor, or cannot
    reach, is reported as unreachable (no time, no verdict).
    """
    from .optimization import OptimizationProblem, optimize
    from .pipeline import build_system
    from .protocol import largest_importance_weight, step_ratio, uniform_routing

    objective = {"wallclock": "wall-clock"}.get(objective, objective)
    require(objective in ("wall-clock", "time-to-accuracy"), "objective",
            f"must be wall-clock or time-to-accuracy (got {objective!r})")
    confidence = check_number(confidence, "confidence", 0.0, 1.0, lo_open=True, hi_open=True)
    target_fraction = check_number(target_fraction, "target-fraction", 0.0, 1.0, lo_open=True)
    starts = check_integer(starts, "starts", 1, 1000)
    rng = None
    if concurrency_range is not None:
        require(len(concurrency_range) == 2, "concurrency-range", f"must be LO:HI (got {concurrency_range!r})")
        lo_m = check_integer(concurrency_range[0], "concurrency-range", 1, MAX_SCAN_CONCURRENCY)
        hi_m = check_integer(concurrency_range[1], "concurrency-range", lo_m, MAX_SCAN_CONCURRENCY)
        rng = (lo_m, hi_m)
    cf = constants if isinstance(constants, ConstantsFile) else load_constants(constants)
    src = source_name(cf.path) if cf.path else "the constants"
    tau, U0 = budget_of(cfg)
    system = build_system(cfg, cfg.data.clients)
    n, m = system.n, system.concurrency
    if cf.clients is not None and cf.clients != n:
        raise ValidationError("constants", f"{src} were fitted on {cf.clients} clients, but this configuration's system "
                                           f"has {n}: constants do not carry over between system sizes (calibrate on "
                                           "this configuration)")
    p_min = check_number(cfg.routing.p_min if p_min is None else p_min, "p-min", 0.0, 1.0 / n)
    res = optimize(OptimizationProblem(system, objective, constants=cf.constants, p_min=p_min, time_budget=tau,
                                       concurrency=rng, updates=float(U0)), starts=starts)
    common = dict(objective=res.objective, n=n, concurrency_uniform=m, concurrency=int(res.concurrency),
                  routing=np.asarray(res.routing, dtype=float), time_budget=float(tau), reference_updates=int(U0),
                  max_importance_weight=float(largest_importance_weight(res.routing)), step_ratio=step_ratio(res),
                  constants_file=cf.path, confidence=confidence)
    fit = cf.fit
    if fit is None:
        base_value = (res.baseline or {}).get("objective_value")
        ratio = res.objective_value / base_value if base_value else None
        return Prediction(**common, source="constants without a pilot fit",
                          proxy_ratio=None if ratio is None or not math.isfinite(ratio) else float(ratio))
    u = uniform_routing(n)
    op_u = operating_point(system, u, m, 3 * tau, sim_seeds=sim_seeds)
    op_c = operating_point(system, res.routing, res.concurrency, 3 * tau, sim_seeds=sim_seeds)
    point, boots = _gain_samples(fit, op_c, op_u, tau, target_fraction)
    ratio_iv = _safe_interval(point[0], [b[0] for b in boots], confidence)
    acc_iv = _interval(point[1], [b[1] for b in boots], confidence)
    defined = sum(1 for b in boots if not math.isnan(b[0]))
    target = point[4]
    unreachable = None
    amap = fit.accuracy_map
    if amap is not None and math.isfinite(target):
        base_acc = target / target_fraction
        if target <= amap.floor:
            unreachable = (f"the target accuracy {target:.3f} ({target_fraction:g} x AsyncSGD's predicted {base_acc:.3f}) "
                           f"is at or below the accuracy map's floor {amap.floor:.3f}, which every loss reaches: there is "
                           "no time to reach it (raise --target-fraction)")
        elif not target < 1 or math.isnan(amap.inverse(target)):
            unreachable = (f"the accuracy map never reaches the target accuracy {target:.3f}: there is no time to reach "
                           "it (lower --target-fraction)")
    elif amap is not None:
        unreachable = "AsyncSGD's predicted accuracy at the budget is undefined: there is no target to time"
    if unreachable is None and math.isnan(point[0]):
        unreachable = "AsyncSGD never reaches the target under the point fit: the time ratio is undefined"
    return Prediction(**common, source="pilot fit", time_ratio=ratio_iv, accuracy_difference=acc_iv,
                      target_accuracy=None if math.isnan(target) else float(target),
                      loss={"routing": point[2], "baseline": point[3]}, eta={"routing": point[5], "baseline": point[6]},
                      samples=len(boots), defined=defined, unreachable=unreachable)

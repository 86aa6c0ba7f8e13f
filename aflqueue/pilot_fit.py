"""The pilot fit: the proxy's shape fitted to short training runs, what it predicts, and the
constants files that carry it (docs/theory.md section 10).

The initial-model calibration (:mod:`aflqueue.calibration`) estimates ``Delta, L, sigma2, M2, G2``
at one point, before any training; the proxy built on them ranks routings poorly once training
moves away from that point. This module fits the bound's *shape* to what a few cheap training
runs (the *pilots*: a handful of routings and learning rates, one seed, a fraction of the budget)
actually did, and predicts from the fit what a routing gains over uniform routing (AsyncSGD).

**The fit** (docs/theory.md section 10 gives the family, the fit, the bootstrap, the loss-to-accuracy
map and the predictions, with their measured coverage). The validation loss after ``K`` applied
updates at step ``eta`` is modelled as

    loss(K) = theta0 + theta1 / (eta K) + theta2 eta S1(p) + theta3 eta^2 S2(p, m),   theta >= 0,

the three terms of the proxy ``U`` with free weights (:func:`fit_pilots`: non-negative least squares
over the later evaluations of every pilot curve, diverged runs left out, ``eta_max`` the largest
rate at which no pilot diverged), mapped to :class:`~aflqueue.bounds.ProxyConstants` by
:func:`constants_from_theta` so that every proxy, optimiser and step-size rule works on the fitted
constants unchanged. Intervals come from a seeded bootstrap over pilot runs (cases by default;
``method="wild"``: Webb weights per run); accuracy is read from loss by a monotone sigmoid
(:class:`AccuracyMap`); :func:`gain_samples` reads the time-to-target ratio and the accuracy
difference at the budget off the point fit and every refit (:func:`aflqueue.pilot.predict` turns
them into a prediction and a verdict).

**Constants files** are read as hostile input (:func:`load_constants`): the bounded reader of
:mod:`aflqueue.io`, then :func:`check_constants_file` (known tables and keys, no empty constants,
finite ranges, the ``pilot`` table's shapes and the accuracy map's ``0 <= floor < 1``, constants
that match the fit's ``theta``), and :func:`predict` refuses constants fitted on another number
of clients (table ``fitted_on``). :func:`write_constants` checks what it writes the same way.
Cached pilot records are checked (:func:`check_pilot_record`) before they are fitted.

"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._results import Result, result_repr
from .bounds import ProxyConstants, optimal_eta_per_update, s1, s2, time_to_accuracy_updates
from .errors import ValidationError, check_integer, check_number, check_values, require, short_repr
from .io import DATA_FORMATS, atomic_write_data, file_errors, json_safe, read_mapping, source_name
from .queueing.analysis import analyze

__all__ = ["FAMILY", "TERMS", "MAX_BOOTSTRAP", "WEBB", "BOOTSTRAP_METHODS", "CONSTANTS_FILE_TABLES",
           "CONSTANTS_METHODS", "PilotCurve", "features", "select_points", "fit_theta", "AccuracyMap",
           "constants_from_theta", "PilotFit", "check_pilot_table", "fit_pilots", "OperatingPoint", "operating_point",
           "loss_at", "time_to_loss", "percentile_interval", "gain_samples", "ConstantsFile", "check_constants_file", "load_constants", "write_constants",
           "read_constants"]


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
    from scipy.optimize import nnls  # lazy: scipy

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
        from scipy.optimize import least_squares  # lazy: scipy

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

    def to_dict(self) -> dict[str, Any]:
        """The constants-file layout: table ``constants`` (read by ``optimize --constants`` and
        ``routing.constants``) and table ``pilot`` (everything :func:`gain_samples` needs)."""
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
    d, st = tables["diagnostics"], tables["settings"]
    with file_errors(src, "pilot"):  # the entries a report prints (the others are carried, not read)
        check_values([d.get("r2")], "diagnostics.r2", src, hi=1.0, nullable=True)
        for field, value in (("diagnostics.points", d.get("points")), ("settings.pilot_runs", st.get("pilot_runs"))):
            if value is not None:
                check_integer(value, field, 0)
        check_values([st.get("pilot_wall_time_s")], "settings.pilot_wall_time_s", src, lo=0.0, nullable=True)
        degenerate = d.get("degenerate", [])
        require(isinstance(degenerate, list) and set(degenerate) <= set(TERMS), "diagnostics.degenerate",
                f"must be a list of the terms {', '.join(TERMS)}")
    return PilotFit(theta, eta_max, bootstrap, amap, d, st)


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
    from .sim import simulate  # lazy: numba

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


def percentile_interval(point: float, samples: Sequence[float], confidence: float) -> dict[str, float | None]:
    v = np.asarray([x for x in samples if x is not None and not math.isnan(x)], dtype=float)
    if v.size < 2:
        return {"point": point, "lo": None, "hi": None}
    q = (1 - confidence) / 2
    return {"point": point, "lo": float(np.quantile(v, q)), "hi": float(np.quantile(v, 1 - q))}


def gain_samples(fit: PilotFit, candidate: OperatingPoint, baseline: OperatingPoint, time_budget: float,
                  target_fraction: float) -> tuple[tuple, list[tuple]]:
    """:func:`_one_gain` at the point fit and at every bootstrap refit."""
    point = _one_gain(fit.theta, fit.eta_max, fit.accuracy_map, candidate, baseline, time_budget, target_fraction)
    boots = [_one_gain(th, fit.eta_max, fit.accuracy_map, candidate, baseline, time_budget, target_fraction)
             for th in fit.bootstrap]
    return point, boots


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

    return check_constants_file(read_mapping(path, "constants"), source_name(path), str(path))


def write_constants(path: str | Path, data: Mapping[str, Any] | PilotFit | ProxyConstants | ConstantsFile) -> Path:
    """Write a constants file (TOML, YAML or JSON by extension): a table ``constants`` that
    ``optimize --constants`` and ``routing.constants`` read, and anything else beside it. What
    is written is first checked as :func:`load_constants` checks what it reads, so that every
    file written reads back."""

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

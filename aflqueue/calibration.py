"""Estimate the proxy constants (docs/theory.md section 7) from a model and the clients' data.

At the model's current parameters ``w`` (normally the initial model ``w_0``):
* ``Delta = f(w) - f_low``, ``f = (1/n) sum_i f_i`` (``f_low = 0`` for cross-entropy and MSE);
* ``M2 = (1/n) sum_i ||grad f_i(w) - grad f(w)||^2`` (heterogeneity of the client gradients);
* ``sigma2 = (1/n) sum_i E ||g_i,B(w) - grad f_i(w)||^2`` over ``num_batches`` random minibatches
  ``B`` of size ``batch_size`` per client (stochastic-gradient variance);
* ``G2 = (1/n) sum_i E ||g_i,B(w)||^2`` (second moment of the stochastic gradients);
* ``L = max ||grad f(w + d) - grad f(w)|| / ||d||`` over ``num_directions`` random directions and
  the same number of descent directions ``d = -r grad f(w) / ||grad f(w)||`` (and short steps
  along it), each of length ``r = radius * max(||w||, 1)`` (local smoothness from gradient
  differences; a lower estimate of the true constant, whose exact value is a supremum).

Each constant comes with its spread (per-client values, or per-direction for ``L``): these are
estimates, and the optimiser's answer should be read with that in mind.

The bias bound of clipped importance weights (docs/theory.md section 11) assumes the per-client
bound ``||grad f_i - grad f||^2 <= M^2``: its estimate at ``w`` is the largest per-client value,
``spread["M2"]["max"]``, not the mean. The constant ``H`` of the proxy's bias floor ``H beta^2`` is
fitted from pilot runs by :func:`fit_bias_constant`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ._results import Result, result_repr
from .bounds import ProxyConstants
from .errors import ValidationError, require

__all__ = ["Calibration", "calibrate", "LOSSES", "BiasFit", "fit_bias_constant"]

LOSSES = ("cross_entropy", "mse")


def _spread(values: Sequence[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "values": [float(x) for x in v]}


@dataclass(frozen=True, eq=False, repr=False)
class Calibration(Result):
    """Estimated constants and their spread.

    Attributes:
        constants: :class:`ProxyConstants` with the point estimates (other fields default).
        spread: per constant ``{"mean", "std", "min", "max", "values"}`` (per client for
            Delta/sigma2/M2/G2, per direction for L).
        settings: the estimation settings (batch size, batches, directions, radius, seed, loss).

    :meth:`to_frame` has one row per constant (index: its name) with the estimate and its spread.
    """

    constants: ProxyConstants
    spread: dict[str, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    frame_index = "constant"

    def title(self) -> str:
        return f"Calibration at the initial model ({self.settings.get('clients', '?')} clients)"

    def __repr__(self) -> str:
        return result_repr(self.title(), [(k, getattr(self.constants, k)) for k in _NAMES]
                           + [("settings", self.settings)])

    def to_dict(self) -> dict[str, Any]:
        return {"constants": {k: getattr(self.constants, k) for k in _NAMES}, "spread": self.spread,
                "settings": self.settings}

    def frame_columns(self) -> dict[str, np.ndarray]:
        cols = {"estimate": np.asarray([getattr(self.constants, k) for k in _NAMES], dtype=float)}
        for stat in ("std", "min", "max"):
            cols[stat] = np.asarray([self.spread.get(k, {}).get(stat, math.nan) for k in _NAMES], dtype=float)
        return cols

    def to_frame(self) -> Any:
        df = super().to_frame()
        df.index = list(_NAMES)
        df.index.name = self.frame_index
        return df


_NAMES = ("Delta", "L", "sigma2", "M2", "G2")


class _LossModel:
    """Loss and gradients of ``model`` at explicit parameters (``torch.func.functional_call``);
    the model's own parameters are never modified."""

    def __init__(self, model, loss: str, device, chunk: int):
        import torch  # lazy: torch

        self.torch = torch
        self.model, self.loss, self.chunk = model, loss, chunk
        self.dev = torch.device(device) if device is not None else next(model.parameters()).device
        self.names = [k for k, _ in model.named_parameters()]
        self.w0 = {k: v.detach().to(self.dev).clone() for k, v in model.named_parameters()}
        self.buffers = {k: v.to(self.dev) for k, v in model.named_buffers()}
        self.sizes = [v.numel() for v in self.w0.values()]

    def _value(self, params, x, y):
        from torch.func import functional_call  # lazy: torch

        out = functional_call(self.model, {**params, **self.buffers}, (x,))
        if self.loss == "cross_entropy":
            return self.torch.nn.functional.cross_entropy(out, y, reduction="sum")
        return 0.5 * ((out - y.reshape(out.shape).to(out.dtype)) ** 2).sum()

    def _grad(self, value, p):
        return self.torch.cat([g.reshape(-1) for g in self.torch.autograd.grad(value, [p[k] for k in self.names])])

    def full_loss_grad(self, params, data):
        """Mean loss and its gradient (shape ``(P,)``) over a whole data set, in chunks."""
        total, grad, N = 0.0, None, len(data.x)
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        for a in range(0, N, self.chunk):
            x, y = data.x[a:a + self.chunk].to(self.dev), data.y[a:a + self.chunk].to(self.dev)
            val = self._value(p, x, y)
            g = self._grad(val, p)
            grad = g if grad is None else grad + g
            total += float(val.detach())
        return total / N, grad / N

    def batch_grad(self, params, data, idx):
        """Minibatch gradient (shape ``(P,)``) on the samples ``idx``."""
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        x, y = data.x[idx].to(self.dev), data.y[idx].to(self.dev)
        return self._grad(self._value(p, x, y) / len(idx), p)

    def shifted(self, direction, length: float) -> dict:
        """``w0 + length * direction / ||direction||`` as a parameter dict."""
        d = direction / direction.norm() * length
        parts = self.torch.split(d, self.sizes)
        return {k: v + parts[j].reshape(v.shape) for j, (k, v) in enumerate(self.w0.items())}


def _stochastic_moments(lm: _LossModel, clients: Sequence, full: list, batch_size: int, num_batches: int,
                        gen) -> tuple[list[float], list[float]]:
    """Per client: ``E ||g_B - grad f_i||^2`` (variance) and ``E ||g_B||^2`` over random minibatches."""
    torch = lm.torch
    var_i, sq_i = [], []
    for c, g_i in zip(clients, full):
        N = len(c.x)
        b = min(batch_size, N)
        v, sq = [], []
        for _ in range(num_batches):
            idx = torch.randperm(N, generator=gen)[:b]
            gb = lm.batch_grad(lm.w0, c, idx)
            v.append(float(((gb - g_i) ** 2).sum()))
            sq.append(float((gb ** 2).sum()))
        var_i.append(float(np.mean(v)))
        sq_i.append(float(np.mean(sq)))
    return var_i, sq_i


def _smoothness_ratios(lm: _LossModel, clients: Sequence, g_mean, num_directions: int, radius: float,
                       gen) -> list[float]:
    """``||grad f(w0 + d) - grad f(w0)|| / ||d||`` along random and descent directions."""
    torch = lm.torch
    w_norm = math.sqrt(sum(float((v ** 2).sum()) for v in lm.w0.values()))
    r = radius * max(w_norm, 1.0)

    def grad_f(params):
        return torch.stack([lm.full_loss_grad(params, c)[1] for c in clients]).mean(0)

    ratios = []
    for _ in range(num_directions):
        d = torch.randn(g_mean.numel(), generator=gen).to(lm.dev)
        ratios.append(float((grad_f(lm.shifted(d, r)) - g_mean).norm()) / r)
    if float(g_mean.norm()) > 0:
        for j in range(num_directions):
            length = r * (j + 1) / num_directions
            ratios.append(float((grad_f(lm.shifted(-g_mean, length)) - g_mean).norm()) / length)
    return ratios


def calibrate(model, clients: Sequence, *, loss: str = "cross_entropy", lower_bound: float = 0.0,
              batch_size: int = 32, num_batches: int = 8, num_directions: int = 8, radius: float = 1e-2,
              seed: int = 0, device: str | None = None, chunk: int = 1024) -> Calibration:
    """Estimate ``Delta, L, sigma2, M2, G2`` (module docstring) for ``model`` on client data.

    Args:
        model: a ``torch.nn.Module``; its parameters are left unchanged.
        clients: per-client data sets with ``.x`` (inputs) and ``.y`` (labels or targets)
            tensors, e.g. :class:`aflqueue.fl.data.Dataset`.
        loss: ``"cross_entropy"`` (classification) or ``"mse"`` (regression, mean over samples
            of ``0.5 ||out - y||^2``).
        lower_bound: ``f_low`` in ``Delta = f(w) - f_low``.
        batch_size, num_batches: minibatches per client for ``sigma2`` and ``G2``.
        num_directions, radius: probes for ``L`` (relative radius).
        seed: seeds the minibatches and directions.
        device: torch device (default: the model's).
        chunk: samples per forward pass when computing full gradients.
    """
    import torch  # lazy: torch

    require(loss in LOSSES, "loss", f"must be one of {', '.join(LOSSES)} (got {loss!r})")
    require(len(clients) >= 1, "clients", "need at least one client data set")
    for name, v, lo in (("batch_size", batch_size, 1), ("num_batches", num_batches, 2), ("num_directions", num_directions, 1)):
        require(isinstance(v, int) and v >= lo, name, f"must be an integer >= {lo} (got {v!r})")
    require(radius > 0, "radius", f"must be > 0 (got {radius})")
    for i, c in enumerate(clients):
        require(len(c.x) >= 1, f"clients[{i}]", "has no samples")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the same bits whatever the caller's thread count (reductions split by thread)
    try:
        return _calibrate(model, clients, loss, lower_bound, batch_size, num_batches, num_directions, radius, seed,
                          device, chunk)
    finally:
        torch.set_num_threads(before)


def _calibrate(model, clients, loss, lower_bound, batch_size, num_batches, num_directions, radius, seed, device,
               chunk) -> Calibration:
    import torch  # lazy: torch

    lm = _LossModel(model, loss, device, chunk)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    losses, full = [], []
    for c in clients:
        f_i, g_i = lm.full_loss_grad(lm.w0, c)
        losses.append(f_i)
        full.append(g_i)
    G_full = torch.stack(full)  # (n, P)
    g_mean = G_full.mean(0)
    hetero = ((G_full - g_mean) ** 2).sum(1)  # per client ||grad f_i - grad f||^2
    var_i, sq_i = _stochastic_moments(lm, clients, full, batch_size, num_batches, gen)
    ratios = _smoothness_ratios(lm, clients, g_mean, num_directions, radius, gen)
    f0 = float(np.mean(losses))
    Delta = f0 - lower_bound
    if not (Delta > 0):
        raise ValidationError("lower_bound", f"must be below the initial loss {f0:g} (got {lower_bound:g})")
    consts = ProxyConstants(Delta=Delta, L=max(ratios), sigma2=float(np.mean(var_i)),
                            M2=float(hetero.mean()), G2=float(np.mean(sq_i)))
    spread = {
        "Delta": _spread(np.asarray(losses) - lower_bound),
        "L": _spread(ratios),
        "sigma2": _spread(var_i),
        "M2": _spread(hetero.cpu().numpy()),
        "G2": _spread(sq_i),
    }
    settings = {"loss": loss, "lower_bound": lower_bound, "batch_size": batch_size, "num_batches": num_batches,
                "num_directions": num_directions, "radius": radius, "seed": seed, "clients": len(clients),
                "parameters": int(g_mean.numel())}
    return Calibration(consts, spread, settings)


# --------------------------------------------------------------------------- bias constant (section 11)
@dataclass(frozen=True)
class BiasFit:
    """The fitted constant ``H`` of the bias floor ``H beta^2`` (docs/theory.md section 11).

    Attributes:
        H: the estimate, >= 0 (units of the excess losses it was fitted to).
        standard_error: its standard error from the residuals (``N - 1`` degrees of freedom; 0 with
            one point).
        interval: ``(lo, hi)``, the t interval at ``confidence`` (``lo`` clipped at 0).
        residual_rms: root mean square of ``excess - H beta2``.
        points: the number of measurements ``N``.
        confidence: the interval's level.
    """

    H: float
    standard_error: float
    interval: tuple[float, float]
    residual_rms: float
    points: int
    confidence: float


def fit_bias_constant(excess: Sequence[float], beta2: Sequence[float], confidence: float = 0.95) -> BiasFit:
    """Fit ``H`` in the bias floor ``H beta^2`` of the clipped proxy (docs/theory.md section 11).

    Measurements, one per clipped pilot run ``r`` (shape ``(N,)`` each):
    * ``excess[r]``: the run's loss at its end (or on its plateau) minus what the proxy *without*
      the bias term predicts for the same run. With the pilot fit of docs/theory.md section 10
      that prediction is ``theta0 + theta1/(Q eta K) + theta2 eta S1_c/Q + theta3 eta^2 S2_c`` at the
      run's routing, cap, step and updates; with a twin run that differs only by having no cap, at
      the end of a long run (where the ``1/K`` and ``eta`` terms are small against the floor),
      the twin's loss.
    * ``beta2[r]``: ``beta^2(p_r, c_r)`` of the run (:func:`aflqueue.bounds.bias_factor`).

    Estimator: least squares through the origin, ``H = sum_r beta2_r excess_r / sum_r beta2_r^2``,
    clipped at 0; standard error ``s / sqrt(sum beta2^2)`` with ``s^2`` the residual mean square on
    ``N - 1`` degrees of freedom; a t interval. Runs with ``beta2 = 0`` (nothing clipped) carry no
    information on ``H`` and do not change the estimate.
    """
    from scipy import stats  # lazy: scipy

    e = np.asarray(excess, dtype=float).ravel()
    b = np.asarray(beta2, dtype=float).ravel()
    require(e.size >= 1, "excess", "needs at least one measurement")
    require(b.size == e.size, "beta2", f"needs one value per measurement ({e.size}), got {b.size}")
    require(bool(np.all(np.isfinite(e))), "excess", "must be finite numbers")
    require(bool(np.all(np.isfinite(b))) and bool(np.all(b >= 0)), "beta2", "must be finite numbers >= 0")
    require(0 < confidence < 1, "confidence", f"must be in (0, 1) (got {confidence})")
    sbb = float(b @ b)
    require(sbb > 0, "beta2", "at least one run must clip (beta2 > 0) for H to be identified")
    H_ls = float(b @ e) / sbb
    resid = e - H_ls * b
    N = e.size
    if N > 1:
        s2 = float(resid @ resid) / (N - 1)
        se = math.sqrt(s2 / sbb)
        t = float(stats.t.ppf(0.5 + confidence / 2, N - 1))
    else:
        se, t = 0.0, 0.0
    H = max(H_ls, 0.0)
    return BiasFit(H=H, standard_error=se, interval=(max(H_ls - t * se, 0.0), max(H_ls + t * se, 0.0)),
                   residual_rms=math.sqrt(float(np.mean((e - H * b) ** 2))), points=N, confidence=float(confidence))

"""Estimate the proxy constants (THEORY.md section 7) from a model and the clients' data.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .bounds import ProxyConstants
from .errors import ValidationError, require

__all__ = ["Calibration", "calibrate", "LOSSES"]

LOSSES = ("cross_entropy", "mse")


def _spread(values: Sequence[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "values": [float(x) for x in v]}


@dataclass(frozen=True, eq=False)
class Calibration:
    """Estimated constants and their spread.

    Attributes:
        constants: :class:`ProxyConstants` with the point estimates (other fields default).
        spread: per constant ``{"mean", "std", "min", "max", "values"}`` (per client for
            Delta/sigma2/M2/G2, per direction for L).
        settings: the estimation settings (batch size, batches, directions, radius, seed, loss).
    """

    constants: ProxyConstants
    spread: dict[str, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"constants": {k: getattr(self.constants, k) for k in ("Delta", "L", "sigma2", "M2", "G2")},
                "spread": self.spread, "settings": self.settings}


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
    import torch
    from torch.func import functional_call

    require(loss in LOSSES, "loss", f"must be one of {', '.join(LOSSES)} (got {loss!r})")
    require(len(clients) >= 1, "clients", "need at least one client data set")
    for name, v, lo in (("batch_size", batch_size, 1), ("num_batches", num_batches, 2), ("num_directions", num_directions, 1)):
        require(isinstance(v, int) and v >= lo, name, f"must be an integer >= {lo} (got {v!r})")
    require(radius > 0, "radius", f"must be > 0 (got {radius})")
    for i, c in enumerate(clients):
        require(len(c.x) >= 1, f"clients[{i}]", "has no samples")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    names = [k for k, _ in model.named_parameters()]
    w0 = {k: v.detach().to(dev).clone() for k, v in model.named_parameters()}
    buffers = {k: v.to(dev) for k, v in model.named_buffers()}
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def loss_fn(params, x, y):
        out = functional_call(model, {**params, **buffers}, (x,))
        if loss == "cross_entropy":
            return torch.nn.functional.cross_entropy(out, y, reduction="sum")
        return 0.5 * ((out - y.reshape(out.shape).to(out.dtype)) ** 2).sum()

    def flat(grads) -> torch.Tensor:
        return torch.cat([g.reshape(-1) for g in grads])

    def full_loss_grad(params, data) -> tuple[float, torch.Tensor]:
        """Mean loss and its gradient over a whole data set (chunked)."""
        total, grad, N = 0.0, None, len(data.x)
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        for a in range(0, N, chunk):
            x, y = data.x[a:a + chunk].to(dev), data.y[a:a + chunk].to(dev)
            val = loss_fn(p, x, y)
            g = flat(torch.autograd.grad(val, [p[k] for k in names]))
            grad = g if grad is None else grad + g
            total += float(val.detach())
        return total / N, grad / N

    def batch_grad(params, data, idx) -> torch.Tensor:
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        x, y = data.x[idx].to(dev), data.y[idx].to(dev)
        val = loss_fn(p, x, y) / len(idx)
        return flat(torch.autograd.grad(val, [p[k] for k in names]))

    losses, full = [], []
    for c in clients:
        f_i, g_i = full_loss_grad(w0, c)
        losses.append(f_i)
        full.append(g_i)
    G_full = torch.stack(full)  # (n, d)
    g_mean = G_full.mean(0)
    hetero = ((G_full - g_mean) ** 2).sum(1)  # per client ||grad f_i - grad f||^2
    var_i, sq_i = [], []
    for c, g_i in zip(clients, full):
        N = len(c.x)
        b = min(batch_size, N)
        v, sq = [], []
        for _ in range(num_batches):
            idx = torch.randperm(N, generator=gen)[:b]
            gb = batch_grad(w0, c, idx)
            v.append(float(((gb - g_i) ** 2).sum()))
            sq.append(float((gb ** 2).sum()))
        var_i.append(float(np.mean(v)))
        sq_i.append(float(np.mean(sq)))
    # smoothness from gradient differences of f = mean_i f_i
    w_norm = math.sqrt(sum(float((v ** 2).sum()) for v in w0.values()))
    r = radius * max(w_norm, 1.0)
    sizes = [v.numel() for v in w0.values()]

    def grad_f(params) -> torch.Tensor:
        return torch.stack([full_loss_grad(params, c)[1] for c in clients]).mean(0)

    def shifted(direction: torch.Tensor, length: float) -> dict:
        d = direction / direction.norm() * length
        parts = torch.split(d, sizes)
        return {k: v + parts[j].reshape(v.shape) for j, (k, v) in enumerate(w0.items())}

    ratios = []
    for j in range(num_directions):
        d = torch.randn(g_mean.numel(), generator=gen).to(dev)
        ratios.append(float((grad_f(shifted(d, r)) - g_mean).norm()) / r)
    if float(g_mean.norm()) > 0:
        for j in range(num_directions):
            length = r * (j + 1) / num_directions
            ratios.append(float((grad_f(shifted(-g_mean, length)) - g_mean).norm()) / length)
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

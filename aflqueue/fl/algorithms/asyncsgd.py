"""Generalized AsyncSGD (importance-weighted) and AsyncSGD (ALGORITHMS.md)."""

from __future__ import annotations

import time

import torch

from ...errors import require
from .base import AlgorithmContext, Arrival, ServerAlgorithm, check_params, finite_positive


class GeneralizedAsyncSGD(ServerAlgorithm):
    """On each arrival from client ``i``: ``w <- w + eta_g / (n p_i) * delta``.

    The weight ``1 / (n p_i)`` makes the update unbiased for ``f = (1/n) sum f_i`` under any
    routing (a fraction ``p_i`` of updates comes from client i); ``weighting="uniform"`` drops it.
    ``weight_cap = c`` clips the weights at ``c``: it bounds the variance that rarely routed
    clients' large weights add, at the price of a bias toward frequently routed clients (the
    update then descends ``sum_i p_i min(1/(n p_i), c) f_i`` instead of ``f``).
    """

    name = "generalized-asyncsgd"
    defaults = {"eta_g": 1.0, "weighting": "importance", "weight_cap": None}

    def __init__(self, params: torch.Tensor, ctx: AlgorithmContext, **hp):
        super().__init__(params, ctx)
        hp = check_params(self.name, hp, self.defaults)
        self.eta_g = finite_positive(hp["eta_g"], "algorithm.eta_g")
        require(hp["weighting"] in ("importance", "uniform"), "algorithm.weighting",
                f"must be 'importance' or 'uniform' (got {hp['weighting']!r})")
        self.weighting = hp["weighting"]
        p = torch.tensor(list(ctx.routing), dtype=torch.float64)
        self.weights = (1.0 / (ctx.n_clients * p)).tolist() if self.weighting == "importance" else [1.0] * ctx.n_clients
        if hp["weight_cap"] is not None:
            cap = finite_positive(hp["weight_cap"], "algorithm.weight_cap")
            self.weights = [min(w, cap) for w in self.weights]

    def on_arrival(self, a: Arrival) -> None:
        t = time.perf_counter()
        self.params = self.params + (self.eta_g * self.weights[a.client]) * a.delta
        self.version += 1
        self.cost["arrivals"] += 1
        self.cost["server_seconds"] += time.perf_counter() - t


class AsyncSGD(GeneralizedAsyncSGD):
    """AsyncSGD: every arrival applied with weight ``eta_g`` (no importance weights). Run it with
    uniform routing and ``m = n`` for the classical algorithm."""

    name = "asyncsgd"
    defaults = {"eta_g": 1.0, "weighting": "uniform", "weight_cap": None}

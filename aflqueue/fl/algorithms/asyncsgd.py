"""Generalized AsyncSGD (importance-weighted) and AsyncSGD (ALGORITHMS.md)."""

from __future__ import annotations

import torch

from .base import AlgorithmContext, Arrival, ServerAlgorithm, client_weights, finite_positive


class GeneralizedAsyncSGD(ServerAlgorithm):
    """On each arrival from client ``i``: ``w <- w + eta_g / (n p_i) * delta``.

    The weight ``1 / (n p_i)`` makes the update unbiased for ``f = (1/n) sum f_i`` under any
    routing (a fraction ``p_i`` of updates comes from client i); ``weighting="uniform"`` drops it
    (:func:`~aflqueue.fl.algorithms.base.client_weights`).
    ``weight_cap = c`` clips the weights at ``c``: it bounds the variance that rarely routed
    clients' large weights add, at the price of a bias toward frequently routed clients (the
    update then descends ``sum_i p_i min(1/(n p_i), c) f_i`` instead of ``f``).
    """

    name = "generalized-asyncsgd"
    defaults = {"eta_g": 1.0, "weighting": "importance", "weight_cap": None}

    def __init__(self, params: torch.Tensor, ctx: AlgorithmContext, **hp):
        super().__init__(params, ctx, **hp)
        self.eta_g = finite_positive(self.hp["eta_g"], "algorithm.eta_g")
        self.weighting = self.hp["weighting"]
        cap = self.hp["weight_cap"]
        cap = None if cap is None else finite_positive(cap, "algorithm.weight_cap")
        self.weights = client_weights(ctx, self.weighting, cap)

    def apply(self, a: Arrival) -> None:
        self.params = self.params + (self.eta_g * self.weights[a.client]) * a.delta
        self.version += 1


class AsyncSGD(GeneralizedAsyncSGD):
    """AsyncSGD: every arrival applied with weight ``eta_g`` (no importance weights). Run it with
    uniform routing and ``m = n`` for the classical algorithm."""

    name = "asyncsgd"
    defaults = {"eta_g": 1.0, "weighting": "uniform", "weight_cap": None}

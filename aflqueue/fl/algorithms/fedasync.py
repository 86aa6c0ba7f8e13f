"""FedAsync (Xie et al. 2019): staleness-weighted mixing of the server and local models."""

from __future__ import annotations

import torch

from ...errors import require
from .base import STALENESS_FUNCTIONS, AlgorithmContext, Arrival, ServerAlgorithm, staleness_weight


class FedAsync(ServerAlgorithm):
    """``w <- (1 - a_t) w + a_t w_local`` with ``a_t = a s(tau)``, ``w_local = w_start + delta``."""

    name = "fedasync"
    defaults = {"a": 0.5, "staleness": "polynomial", "b": 0.5, "hinge_a": 10.0, "hinge_b": 4.0}

    def __init__(self, params: torch.Tensor, ctx: AlgorithmContext, **hp):
        super().__init__(params, ctx, **hp)
        h = self.hp
        require(0 < float(h["a"]) <= 1, "algorithm.a", f"must be in (0, 1] (got {h['a']})")
        require(h["staleness"] in STALENESS_FUNCTIONS, "algorithm.staleness",
                f"must be one of {', '.join(STALENESS_FUNCTIONS)} (got {h['staleness']!r})")
        require(float(h["b"]) >= 0, "algorithm.b", f"must be >= 0 (got {h['b']})")

    def mixing(self, tau: int) -> float:
        h = self.hp
        return float(h["a"]) * staleness_weight(tau, h["staleness"], float(h["b"]), float(h["hinge_a"]), float(h["hinge_b"]))

    def apply(self, a: Arrival) -> None:
        alpha = self.mixing(self.staleness(a))
        w_local = a.start + a.delta
        self.params = (1.0 - alpha) * self.params + alpha * w_local
        self.version += 1

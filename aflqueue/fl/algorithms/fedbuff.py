"""FedBuff (Nguyen et al. 2022): buffered asynchronous aggregation."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from ...errors import require
from .base import AlgorithmContext, Arrival, ServerAlgorithm, check_params, finite_positive


class FedBuff(ServerAlgorithm):
    """Accumulate deltas (optionally weighted by ``1/sqrt(1 + tau)``); every ``buffer`` arrivals
    apply ``w <- w + eta_g * mean(buffer)`` and advance the model version. Dispatches follow the
    queueing model (one per arrival) with whatever model is current."""

    name = "fedbuff"
    defaults = {"buffer": 10, "eta_g": 1.0, "staleness_weighting": False, "weighting": "uniform"}

    def __init__(self, params: torch.Tensor, ctx: AlgorithmContext, **hp):
        super().__init__(params, ctx)
        hp = check_params(self.name, hp, self.defaults)
        b = hp["buffer"]
        require(isinstance(b, int) and b >= 1, "algorithm.buffer", f"must be an integer >= 1 (got {b!r})")
        require(hp["weighting"] in ("importance", "uniform"), "algorithm.weighting",
                f"must be 'importance' or 'uniform' (got {hp['weighting']!r})")
        self.buffer_size = b
        self.eta_g = finite_positive(hp["eta_g"], "algorithm.eta_g")
        self.staleness_weighting = bool(hp["staleness_weighting"])
        p = torch.tensor(list(ctx.routing), dtype=torch.float64)
        self.weights = (1.0 / (ctx.n_clients * p)).tolist() if hp["weighting"] == "importance" else [1.0] * ctx.n_clients
        self.acc = torch.zeros_like(self.params)
        self.count = 0

    def contribution(self, a: Arrival) -> torch.Tensor:
        """The weighted delta this arrival adds to the buffer (subclasses change it)."""
        w = self.weights[a.client]
        if self.staleness_weighting:
            w = w / math.sqrt(1.0 + self.staleness(a))
        return w * a.delta

    def on_arrival(self, a: Arrival) -> None:
        t = time.perf_counter()
        self.acc = self.acc + self.contribution(a)
        self.count += 1
        if self.count >= self.buffer_size:
            self.flush()
        self.cost["arrivals"] += 1
        self.cost["server_seconds"] += time.perf_counter() - t

    def flush(self) -> None:
        self.params = self.params + self.eta_g * self.acc / self.count
        self.acc = torch.zeros_like(self.params)
        self.count = 0
        self.version += 1

    def costs(self) -> dict[str, Any]:
        return {**super().costs(), "memory_buffer_bytes": int(self.acc.numel() * self.acc.element_size())}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "acc": self.acc, "count": self.count}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        self.acc = d["acc"].to(self.params.device)
        self.count = int(d["count"])

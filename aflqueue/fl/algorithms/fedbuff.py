"""FedBuff (Nguyen et al. 2022): buffered asynchronous aggregation."""

from __future__ import annotations

import math
from typing import Any

import torch

from ...errors import require
from .base import AlgorithmContext, Arrival, ServerAlgorithm, client_weights, finite_positive


class FedBuff(ServerAlgorithm):
    """Accumulate weighted deltas; every ``buffer`` arrivals apply ``w <- w + eta_g * mean(buffer)``
    and advance the model version. Dispatches follow the queueing model (one per arrival) with
    whatever model is current.

    Hyper-parameters: ``buffer`` (``B``), ``eta_g`` (server step), ``staleness_weighting``
    (multiply an update by ``1/sqrt(1 + tau)``), ``weighting`` (``uniform``: every update counts
    1, FedBuff as published for uniform client sampling; ``importance``: ``1/(n p_i)``, unbiased
    under routing ``p``; :func:`~aflqueue.fl.algorithms.base.client_weights`). The mean divides the
    weighted sum by the number of arrivals ``B`` (not by the sum of weights), so with importance
    weights the buffer estimates ``(1/n) sum_i delta_i`` as Generalized AsyncSGD does.
    """

    name = "fedbuff"
    defaults = {"buffer": 10, "eta_g": 1.0, "staleness_weighting": False, "weighting": "uniform"}

    def __init__(self, params: torch.Tensor, ctx: AlgorithmContext, **hp):
        super().__init__(params, ctx, **hp)
        h = self.hp
        b = h["buffer"]
        require(isinstance(b, int) and not isinstance(b, bool) and b >= 1, "algorithm.buffer",
                f"must be an integer >= 1 (got {b!r})")
        self.buffer_size = b
        self.eta_g = finite_positive(h["eta_g"], "algorithm.eta_g")
        self.staleness_weighting = bool(h["staleness_weighting"])
        self.weighting = h["weighting"]
        self.weights = client_weights(ctx, self.weighting)
        self.acc = torch.zeros_like(self.params)
        self.count = 0

    def contribution(self, a: Arrival, delta: torch.Tensor | None = None) -> torch.Tensor:
        """The weighted update (``delta``, by default ``a.delta``) this arrival adds to the buffer."""
        w = self.weights[a.client]
        if self.staleness_weighting:
            w = w / math.sqrt(1.0 + self.staleness(a))
        return w * (a.delta if delta is None else delta)

    def apply(self, a: Arrival) -> None:
        self.add_to_buffer(self.contribution(a))

    def add_to_buffer(self, contribution: torch.Tensor) -> None:
        """Accumulate one weighted update; a full buffer is flushed (:meth:`flush`)."""
        self.acc = self.acc + contribution
        self.count += 1
        if self.count >= self.buffer_size:
            self.flush()

    def flush(self) -> None:
        """``w <- w + eta_g acc / count``, empty the buffer, ``version + 1``."""
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

"""The server-algorithm interface: one narrow protocol, independent of how clients run.

The engine calls :meth:`ServerAlgorithm.on_arrival` once per completed task, in simulated
wall-clock order, and reads :attr:`ServerAlgorithm.params` whenever it dispatches a new task.
An algorithm owns the server model (a flat float32 vector) and its *model version*, which
advances when the model changes (every arrival for AsyncSGD, every ``B`` arrivals for FedBuff).
Rule: whenever ``params`` changes, ``version`` must change too (the engine snapshots one model
per version for the tasks it dispatches). Updating ``params`` in place is allowed: snapshots
are copies.
Staleness as algorithms see it is ``tau = version - arrival.start_version``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ...errors import ValidationError, require

__all__ = ["Arrival", "AlgorithmContext", "ServerAlgorithm", "staleness_weight", "STALENESS_FUNCTIONS"]


@dataclass
class Arrival:
    """A completed task reaching the server.

    Attributes:
        index: arrival number ``k`` (1-based; the queueing model's update count).
        task: task id; client: client index.
        delta: ``w_local - w_start``, shape ``(P,)``.
        start: the model the task started from, shape ``(P,)`` (do not modify).
        start_version: server model version of ``start``.
        relative_delay: arrivals between the task's dispatch and this one (queueing staleness).
        time: simulated wall-clock time of the arrival.
        extras: what the client uploads besides the update, on request of the algorithm: with
            ``client_statistics = True``, ``extras["activation_stats"]`` holds the local model's
            per-layer activation means and variances on the task's last minibatch
            (:func:`aflqueue.fl.local.activation_statistics`).
    """

    index: int
    task: int
    client: int
    delta: torch.Tensor
    start: torch.Tensor
    start_version: int
    relative_delay: int
    time: float
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class AlgorithmContext:
    """What an algorithm may know about the run (shapes, routing, data for server-side work).

    Attributes:
        n_clients, routing (shape ``(n,)``), concurrency: the queueing side.
        model: an ``nn.Module`` template (architecture only); spec: its ``ParamSpec``.
        num_classes, input_shape: the task.
        unlabeled: server-held inputs without labels (tensor ``(N, *input_shape)``) or None.
        device: torch device; seed: base seed for the algorithm's own randomness.
    """

    n_clients: int
    routing: Any
    concurrency: int
    model: Any = None
    spec: Any = None
    num_classes: int = 0
    input_shape: tuple[int, ...] = ()
    unlabeled: torch.Tensor | None = None
    device: Any = "cpu"
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


class ServerAlgorithm:
    """Base class. Subclasses set ``name``, implement :meth:`on_arrival`, and list the tensors and
    scalars of their state in :meth:`state_dict` so that checkpoints resume exactly."""

    name = "base"
    #: ask clients to upload activation statistics with each update (see :class:`Arrival`)
    client_statistics = False

    def __init__(self, params: torch.Tensor, ctx: AlgorithmContext):
        self.params = params.detach().clone()
        self.version = 0
        self.ctx = ctx
        self.cost = {"server_seconds": 0.0, "arrivals": 0}

    def on_arrival(self, a: Arrival) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def staleness(self, a: Arrival) -> int:
        return self.version - a.start_version

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.params, "version": self.version, "cost": dict(self.cost)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.params = d["params"].to(self.params.device)
        self.version = int(d["version"])
        self.cost = dict(d["cost"])

    def costs(self) -> dict[str, Any]:
        """Server-side overhead (seconds of compute, memory held) for the results file."""
        c = dict(self.cost)
        c["server_seconds_per_arrival"] = c["server_seconds"] / max(c["arrivals"], 1)
        return c


STALENESS_FUNCTIONS = ("constant", "polynomial", "hinge")


def staleness_weight(tau: int, kind: str = "polynomial", b: float = 0.5, hinge_a: float = 10.0,
                     hinge_b: float = 4.0) -> float:
    """FedAsync's ``s(tau)``: constant 1, polynomial ``(1 + tau)^-b``, or hinge ``1`` for
    ``tau <= hinge_b`` else ``1 / (hinge_a (tau - hinge_b) + 1)`` (Xie et al. 2019)."""
    if kind == "constant":
        return 1.0
    if kind == "polynomial":
        return (1.0 + tau) ** (-b)
    if kind == "hinge":
        return 1.0 if tau <= hinge_b else 1.0 / (hinge_a * (tau - hinge_b) + 1.0)
    raise ValidationError("staleness", f"must be one of {', '.join(STALENESS_FUNCTIONS)} (got {kind!r})")


def check_params(name: str, given: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """Merge ``given`` hyper-parameters over defaults, rejecting unknown names."""
    unknown = set(given) - set(allowed)
    require(not unknown, f"algorithm.{name}", f"unknown parameter(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    out = {**allowed, **given}
    return out


def finite_positive(value: Any, field_name: str, allow_zero: bool = False) -> float:
    x = float(value)
    ok = math.isfinite(x) and (x >= 0 if allow_zero else x > 0)
    require(ok, field_name, f"must be {'>= 0' if allow_zero else '> 0'} (got {value!r})")
    return x

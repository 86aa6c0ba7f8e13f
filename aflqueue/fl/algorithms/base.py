"""The server-algorithm interface: one narrow, abstract protocol, independent of how clients run.

Modelled on Flower's ``Strategy`` (the server logic is an object with a few hooks, separate from
client execution) and SimPy's core (a small documented contract, everything else in plain code).

**Who calls what.** The engine (:mod:`aflqueue.fl.engine`) builds an algorithm with
:func:`aflqueue.fl.algorithms.make_algorithm`, then, for every completed task in simulated
wall-clock order, calls :meth:`ServerAlgorithm.on_arrival` exactly once and afterwards reads
:attr:`~ServerAlgorithm.params` and :attr:`~ServerAlgorithm.version` to dispatch the next task. At
checkpoints it stores :meth:`~ServerAlgorithm.state_dict`; on resume it builds a fresh instance
with the same arguments and calls :meth:`~ServerAlgorithm.load_state_dict`. At the end it reads
:meth:`~ServerAlgorithm.costs`.

**What a subclass implements.** ``name``, ``defaults`` (every hyper-parameter with its default:
unknown names are rejected, see :func:`check_params`), :meth:`~ServerAlgorithm.apply` (the
update rule for one arrival), and, when it holds state besides the model, ``state_dict`` /
``load_state_dict`` / ``costs`` extending the base ones. It does not time itself:
:meth:`~ServerAlgorithm.on_arrival` wraps ``apply`` with the common cost accounting (arrival
count and ``server_seconds``); finer timers go through :meth:`~ServerAlgorithm.timed`.

**Invariants.**

* ``params`` is a flat float32 tensor of shape ``(P,)`` on ``ctx.device``; it may be replaced or
  updated in place (the engine snapshots copies).
* ``version`` is an int that never decreases and changes whenever ``params`` changes (the engine
  keeps one snapshot per version referenced by a task in flight). Staleness as algorithms see it
  is ``tau = version - arrival.start_version`` (:meth:`~ServerAlgorithm.staleness`).
* ``state_dict()`` holds only tensors, Python numbers, strings, booleans, None and plain
  dict/list/tuple (checkpoints are read with ``torch.load(weights_only=True)``); after
  ``load_state_dict`` the instance continues exactly as the saved one would have (bit for bit),
  which includes the state of every ``torch.Generator`` it draws from.
* ``costs()``: wall-clock measurements are exactly the keys containing ``"seconds"``; every other
  value is deterministic (counts, bytes, means of deterministic quantities), so two identical runs
  give identical cost dicts but for those keys.
* Randomness only from explicit generators seeded from ``ctx.seed``
  (:func:`aflqueue.fl.distill.seeded_generator`); torch's global RNG is left untouched.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import numpy as np
import torch

from ...bounds import clipped_weights
from ...errors import ValidationError, require
from ..distill import tensor_bytes

__all__ = ["Arrival", "AlgorithmContext", "ServerAlgorithm", "staleness_weight", "STALENESS_FUNCTIONS",
           "WEIGHTINGS", "client_weights", "check_params", "finite_positive"]


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
        n_clients, routing (shape ``(n,)``, sums to 1), concurrency: the queueing side.
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


class ServerAlgorithm(ABC):
    """Abstract server algorithm (module docstring: call order, hooks and invariants).

    Args:
        params: the initial model, flat ``(P,)`` (copied).
        ctx: the run's :class:`AlgorithmContext`.
        **hyper: hyper-parameters; merged over :attr:`defaults` (unknown names raise a
            ``ValidationError`` naming ``algorithm.<name>``) into :attr:`hp`.
    """

    #: registered name (also names the algorithm in error messages and results)
    name: ClassVar[str] = "base"
    #: every hyper-parameter with its default
    defaults: ClassVar[dict[str, Any]] = {}
    #: ask clients to upload activation statistics with each update (see :class:`Arrival`)
    client_statistics: ClassVar[bool] = False

    def __init__(self, params: torch.Tensor, ctx: AlgorithmContext, **hyper: Any):
        self.hp: dict[str, Any] = check_params(self.name, hyper, self.defaults)
        self.params = params.detach().clone()
        self.version = 0
        self.ctx = ctx
        self.cost: dict[str, Any] = {"server_seconds": 0.0, "arrivals": 0}

    # ------------------------------------------------------------------ the engine's entry point
    def on_arrival(self, a: Arrival) -> None:
        """Handle one arrival: :meth:`apply` it, count it, and add its server time to
        ``cost["server_seconds"]``. Called by the engine once per arrival, in arrival order."""
        t = time.perf_counter()
        self.apply(a)
        self.cost["arrivals"] += 1
        self.cost["server_seconds"] += time.perf_counter() - t

    @abstractmethod
    def apply(self, a: Arrival) -> None:
        """The update rule for one arrival: may change ``params`` (then also ``version``) and the
        algorithm's own state; must not modify ``a.start`` or ``a.delta``."""

    # ------------------------------------------------------------------ helpers for subclasses
    def staleness(self, a: Arrival) -> int:
        """``tau = version - a.start_version`` (server versions since the task's start model)."""
        return self.version - a.start_version

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Add the wall-clock time of the ``with`` block to ``cost[key]`` (``key`` must contain
        ``"seconds"``: the cost convention of the module docstring)."""
        if "seconds" not in key:
            raise ValueError(f"timer keys must contain 'seconds' (got {key!r})")
        t = time.perf_counter()
        try:
            yield
        finally:
            self.cost[key] = self.cost.get(key, 0.0) + (time.perf_counter() - t)

    # ------------------------------------------------------------------ checkpoints and costs
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (types: module docstring). Subclasses extend it."""
        return {"params": self.params, "version": self.version, "cost": dict(self.cost)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output into an instance built with the same arguments."""
        self.params = d["params"].to(self.params.device)
        self.version = int(d["version"])
        self.cost = dict(d["cost"])

    def state_bytes(self) -> int:
        """Bytes of the tensors the algorithm holds besides the model, measured on
        :meth:`state_dict` without ``params``: buffers, teachers and their logits, generator and
        optimiser moments, synthetic pool, random-generator states. Start checkpoints that the
        engine keeps for the tasks in flight are not the algorithm's and are not counted."""
        d = self.state_dict()
        d.pop("params", None)
        return tensor_bytes(d)

    def costs(self) -> dict[str, Any]:
        """Server-side overhead (seconds of compute, memory held) for the results file;
        ``memory_state_bytes`` is :meth:`state_bytes` at the time of the call."""
        c = dict(self.cost)
        c["server_seconds_per_arrival"] = c["server_seconds"] / max(c["arrivals"], 1)
        c["memory_state_bytes"] = self.state_bytes()
        return c


# ---------------------------------------------------------------------------------------------- shared rules
STALENESS_FUNCTIONS = ("constant", "polynomial", "hinge")
#: aggregation weights of a client's update: ``importance`` = ``1/(n p_i)``, ``uniform`` = 1
WEIGHTINGS = ("importance", "uniform")


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


def client_weights(ctx: AlgorithmContext, weighting: str, cap: float | None = None) -> list[float]:
    """Per-client aggregation weights, a list of ``n`` floats, clipped at ``cap`` if given.

    ``importance``: ``1 / (n p_i)`` (:func:`aflqueue.bounds.clipped_weights`, docs/theory.md
    section 11). Client ``i`` sends a fraction ``p_i`` of the updates, so the weighted mean of
    updates estimates the average over clients ``(1/n) sum_i`` of their updates, the direction of
    ``f = (1/n) sum f_i``, under any routing (equal to 1 for uniform routing). ``uniform``: 1 for
    every client, i.e. the mean over *updates*, which under non-uniform routing favours the
    frequently routed clients.
    """
    require(weighting in WEIGHTINGS, "algorithm.weighting",
            f"must be one of {', '.join(WEIGHTINGS)} (got {weighting!r})")
    if weighting == "uniform":
        return [1.0 if cap is None else min(1.0, cap)] * ctx.n_clients
    return clipped_weights(np.asarray(ctx.routing, dtype=float), cap).tolist()


def check_params(name: str, given: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """Merge ``given`` hyper-parameters over defaults, rejecting unknown names."""
    unknown = set(given) - set(allowed)
    require(not unknown, f"algorithm.{name}", f"unknown parameter(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return {**allowed, **given}


def finite_positive(value: Any, field_name: str, allow_zero: bool = False) -> float:
    x = float(value)
    ok = math.isfinite(x) and (x >= 0 if allow_zero else x > 0)
    require(ok, field_name, f"must be {'>= 0' if allow_zero else '> 0'} (got {value!r})")
    return x

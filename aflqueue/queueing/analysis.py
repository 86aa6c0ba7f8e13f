"""Exact steady-state metrics of a :class:`~aflqueue.system.System` (docs/theory.md sections 2-4).

``analyze(system)`` returns an :class:`Analysis`: throughput, per-client queue lengths,
utilisation, response times and mean relative delay ``E[D_i]``, and the same per station.

Relative delay (staleness in updates) is ``E[D_i] = E_{m-1}[Y_i] / p_i + E_{m-1}[X_cs]``
(:mod:`aflqueue.queueing.delay`); ``sum_i p_i E[D_i] = m - 1`` for every routing and rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np

from .._results import Result, require_pandas, result_repr
from ..io import json_safe
from ..system import System
from . import convolution
from .delay import relative_delay_from_queues
from .gradients import gradients_from_mva, gradients_from_queues
from .mva import mva
from .network import Network, network_of

__all__ = ["Analysis", "StationMetrics", "analyze", "relative_delay_from_queues", "metrics_from_stations"]


def _json_list(a: np.ndarray) -> list[Any]:
    return [None if not math.isfinite(float(v)) else float(v) for v in np.asarray(a, dtype=float).ravel()]


@dataclass(frozen=True, eq=False)
class StationMetrics:
    """Per-station metrics, arrays of shape ``(S,)`` aligned with :class:`Network`."""

    client: np.ndarray
    stage: tuple[str, ...]
    discipline: tuple[str, ...]
    rate: np.ndarray
    visit: np.ndarray
    demand: np.ndarray
    mean_queue_length: np.ndarray
    utilization: np.ndarray
    mean_response_time: np.ndarray

    def to_list(self) -> list[dict[str, Any]]:
        return [
            {"client": int(self.client[s]) if self.client[s] >= 0 else None, "stage": self.stage[s],
             "discipline": self.discipline[s], "rate": float(self.rate[s]), "visit": float(self.visit[s]),
             "demand": float(self.demand[s]), "mean_queue_length": float(self.mean_queue_length[s]),
             "utilization": float(self.utilization[s]), "mean_response_time": float(self.mean_response_time[s])}
            for s in range(self.rate.size)
        ]


@dataclass(frozen=True, eq=False, repr=False)
class Analysis(Result):
    """Exact steady-state metrics at concurrency ``m``. Per-client arrays have shape ``(n,)``.

    Attributes:
        routing: ``p``.
        concurrency: ``m``.
        throughput: ``lambda`` = updates applied per time unit.
        client_throughput: ``p_i lambda`` (tasks completed by client i per time unit).
        mean_queue_lengths: ``E_m[Y_i]``, mean tasks at client i (all its stages).
        utilization: fraction of time client i's compute stage is busy (``p_i lambda / mu_i``).
        mean_response_times: mean time a task spends at client i's stages (time units; NaN if p_i = 0).
        mean_round_trip_times: dispatch-to-update time of a task sent to client i (adds the CS sojourn).
        relative_delay: ``E[D_i]`` in updates (NaN, i.e. undefined, if p_i = 0).
        mean_relative_delay: ``sum_i p_i E[D_i]`` (= m - 1).
        log_normalizing_constant: ``log G(m)`` with demands ``rho = v / mu`` in time units.
        queue_lengths_prev: ``E_{m-1}[Y_i]`` (used by the delay formula).
        stations: per-station metrics.
        server: CS metrics ``{utilization, mean_queue_length, mean_response_time}`` or None.
        method: ``"mva"`` or ``"convolution"``.
        gradients: exact :class:`~aflqueue.queueing.gradients.RoutingGradients` when asked for
            (``analyze(..., gradient=True)``), else None.
        approximated: for ``method="approx"`` (:func:`aflqueue.queueing.approx.approx_analyze`),
            the stations whose service law is approximated (empty: the result is exact).
    """

    routing: np.ndarray
    concurrency: int
    throughput: float
    client_throughput: np.ndarray
    mean_queue_lengths: np.ndarray
    utilization: np.ndarray
    mean_response_times: np.ndarray
    mean_round_trip_times: np.ndarray
    relative_delay: np.ndarray
    mean_relative_delay: float
    log_normalizing_constant: float
    queue_lengths_prev: np.ndarray
    stations: StationMetrics
    server: dict[str, float] | None = None
    method: str = "mva"
    gradients: Any = None
    approximated: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        """False for an approximation of a system whose product form is not exact."""
        return not self.approximated

    @property
    def n(self) -> int:
        return int(self.routing.size)

    def __repr__(self) -> str:
        return result_repr(f"Analysis ({self.method}, exact): n = {self.n}, m = {self.concurrency}", [
            ("throughput", self.throughput), ("routing", self.routing), ("relative_delay", self.relative_delay),
            ("mean_relative_delay", self.mean_relative_delay), ("mean_queue_lengths", self.mean_queue_lengths),
            ("utilization", self.utilization), ("mean_response_times", self.mean_response_times),
            ("server", self.server), ("gradients", None if self.gradients is None else "d_throughput, "
                                      "d_log_normalizing_constant (see .gradients)")])

    def to_dict(self, stations: bool = True) -> dict[str, Any]:
        """Strict-JSON dict (undefined values, NaN, become ``null``); ``stations=False`` leaves out
        the per-station list. Per-client lists are in client order."""
        d: dict[str, Any] = {
            "concurrency": self.concurrency,
            "routing": _json_list(self.routing),
            "throughput": float(self.throughput),
            "client_throughput": _json_list(self.client_throughput),
            "mean_queue_lengths": _json_list(self.mean_queue_lengths),
            "utilization": _json_list(self.utilization),
            "mean_response_times": _json_list(self.mean_response_times),
            "mean_round_trip_times": _json_list(self.mean_round_trip_times),
            "relative_delay": _json_list(self.relative_delay),
            "mean_relative_delay": float(self.mean_relative_delay),
            "log_normalizing_constant": float(self.log_normalizing_constant),
            "method": self.method,
        }
        if self.method == "approx":
            d.update(exact=self.exact, approximated=list(self.approximated))
        if self.server is not None:
            d["server"] = {k: float(v) for k, v in self.server.items()}
        if stations:
            d["stations"] = self.stations.to_list()
        return json_safe(d)

    frame_attrs: ClassVar[tuple[str, ...]] = ("concurrency", "throughput", "mean_relative_delay",
                                              "log_normalizing_constant", "method", "server")

    def frame_columns(self) -> dict[str, np.ndarray]:
        """Per client (index ``client``; named as in :meth:`to_dict`): ``routing``,
        ``client_throughput``, ``mean_queue_lengths``, ``utilization``, ``mean_response_times``,
        ``mean_round_trip_times``, ``relative_delay``, ``queue_lengths_prev``, plus ``d_throughput``
        and ``d_log_normalizing_constant`` when the analysis has gradients. ``to_frame()`` keeps
        the scalars (``concurrency``, ``throughput``, ``mean_relative_delay``,
        ``log_normalizing_constant``, ``method``, ``server``) in ``df.attrs``."""
        cols = {name: np.asarray(getattr(self, name), dtype=float) for name in (
            "routing", "client_throughput", "mean_queue_lengths", "utilization", "mean_response_times",
            "mean_round_trip_times", "relative_delay", "queue_lengths_prev")}
        if self.gradients is not None:
            cols["d_throughput"] = np.asarray(self.gradients.d_throughput, dtype=float)
            cols["d_log_normalizing_constant"] = np.asarray(self.gradients.d_log_normalizing_constant, dtype=float)
        return cols

    def stations_frame(self) -> Any:
        """Per-station :class:`pandas.DataFrame` (multi-stage systems: one row per downlink,
        compute and uplink stage of every client with ``p_i > 0``, then the central server).
        Columns: ``client`` (nullable integer, missing for the server), ``stage``, ``discipline``,
        ``rate``, ``visit``, ``demand``, ``mean_queue_length``, ``utilization``,
        ``mean_response_time``. Needs pandas."""
        pd = require_pandas("Analysis.stations_frame()")
        st = self.stations
        client = pd.array([int(c) if c >= 0 else None for c in st.client], dtype="Int64")
        df = pd.DataFrame({"client": client, "stage": list(st.stage), "discipline": list(st.discipline),
                           "rate": st.rate, "visit": st.visit, "demand": st.demand,
                           "mean_queue_length": st.mean_queue_length, "utilization": st.utilization,
                           "mean_response_time": st.mean_response_time},
                          index=pd.RangeIndex(st.rate.size, name="station"))
        df.attrs.update(concurrency=self.concurrency, throughput=float(self.throughput))
        return df


def analyze(system: System, method: Literal["mva", "convolution"] = "mva", gradient: bool = False,
            backend: str = "auto") -> Analysis:
    """Exact metrics of ``system`` at its concurrency.

    ``method="mva"`` (default) runs exact MVA (``O(S m)``, stable at any scale);
    ``"convolution"`` computes log-space normalising constants and queue lengths from them
    (``O(S m)`` plus ``O(m^2)`` if delay stations exist). Both are exact and agree to ~1e-12.

    ``gradient=True`` also returns, in ``gradients``, the exact
    :class:`~aflqueue.queueing.gradients.RoutingGradients` (``d lambda / d p``, ``d log G / d p`` and
    their log-rate versions), from the same MVA pass at no extra cost. For gradients of queue
    lengths or delays use :func:`~aflqueue.queueing.gradients.metrics_vjp` or
    :func:`~aflqueue.queueing.gradients.routing_jacobians`.

    ``backend`` (MVA only): ``"numpy"``, ``"numba"`` or ``"auto"``, which picks by problem size
    (:func:`aflqueue.queueing.mva.auto_backend`: compiled from about 2 ms of numpy work, e.g.
    ``n = m = 1000``; numpy for small systems, which then never import numba). Every backend
    returns the same bits.
    """
    net = network_of(system)
    m = system.concurrency
    grads = None
    if method == "mva":
        res = mva(net.demands, net.is_delay, m, backend=backend)
        if gradient:
            grads = gradients_from_mva(net, res, system.routing)
        lam_m = float(res.throughput[m])
        logG = float(res.log_normalizing_constants[m])
        q, q_prev = res.queue_lengths, res.queue_lengths_prev
    elif method == "convolution":
        lg = convolution.log_normalizing_constants(net.demands, net.is_delay, m)
        lam_m = float(np.exp(lg[m - 1] - lg[m]))
        logG = float(lg[m])
        q = convolution.mean_queue_lengths(net.demands, net.is_delay, lg, m)
        q_prev = convolution.mean_queue_lengths(net.demands, net.is_delay, lg, m - 1)
        if gradient:
            grads = gradients_from_queues(net, lam_m, logG, q, q_prev, system.routing)
    else:
        raise ValueError(f"method: must be 'mva' or 'convolution' (got {method!r})")
    return replace(_metrics(system, net, lam_m, logG, q, q_prev, method), gradients=grads)


def _metrics(system: System, net: Network, lam: float, logG: float, q: np.ndarray, q_prev: np.ndarray,
             method: str) -> Analysis:
    # arrival theorem: an arriving task sees E_{m-1}[X]; a delay station never queues
    resp = np.where(net.is_delay, 1.0 / net.rates, (1.0 + q_prev) / net.rates)
    return metrics_from_stations(system, net, lam, q, q_prev, resp, method, log_normalizing_constant=logG)


def metrics_from_stations(system: System, net: Network, lam: float, q: np.ndarray, q_prev: np.ndarray,
                          resp: np.ndarray, method: str, log_normalizing_constant: float = math.nan,
                          approximated: tuple[str, ...] = ()) -> Analysis:
    """Per-client metrics from per-station ones (shapes ``(S,)``): ``q = E_m[X_s]``,
    ``q_prev = E_{m-1}[X_s]``, ``resp`` mean response times (time units), throughput ``lam``.

    Utilisation is ``lambda d_s`` (exact accounting for any law); delays follow
    :func:`relative_delay_from_queues` (docs/theory.md sections 3-4)."""
    p = system.routing
    n = system.n
    util = lam * net.demands  # busy fraction (FIFO) or mean busy servers (delay)
    stations = StationMetrics(
        client=net.owner.copy(), stage=net.stage,
        discipline=tuple("delay" if d else "fifo" for d in net.is_delay),
        rate=net.rates, visit=net.visits, demand=net.demands,
        mean_queue_length=q, utilization=util, mean_response_time=resp,
    )
    active = p > 0
    compute = np.array([st == "compute" for st in net.stage], dtype=bool)
    util_client = np.zeros(n)
    util_client[net.owner[compute]] = util[compute]
    resp_client = net.per_client(resp, fill=np.nan)
    cs = net.server_index
    server = None
    cs_resp = 0.0
    if cs is not None:
        cs_resp = float(resp[cs])
        server = {"utilization": float(util[cs]), "mean_queue_length": float(q[cs]), "mean_response_time": cs_resp}
    delay = relative_delay_from_queues(net, q_prev, p)
    return Analysis(
        routing=p.copy(), concurrency=system.concurrency, throughput=lam, client_throughput=p * lam,
        mean_queue_lengths=net.per_client(q), utilization=util_client,
        mean_response_times=np.where(active, resp_client, np.nan),
        mean_round_trip_times=np.where(active, resp_client + cs_resp, np.nan),
        relative_delay=delay, mean_relative_delay=float(np.nansum(p * delay)),
        log_normalizing_constant=log_normalizing_constant, queue_lengths_prev=net.per_client(q_prev),
        stations=stations, server=server, method=method, approximated=tuple(approximated),
    )

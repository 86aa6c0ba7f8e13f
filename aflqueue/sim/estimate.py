"""Steady-state estimates with confidence intervals from simulation traces.

Warm-up removal: the first ``warmup`` updates (a fraction if < 1, a count otherwise) are
discarded; time averages start at the completion time of the last discarded update.

Batch means (one long run): the post-warm-up time window is cut into ``batches`` equal
sub-windows; time averages (throughput, queue lengths, utilisation) are computed per window and
treated as approximately i.i.d. Per-task averages (relative delay, response time) use
contiguous batches of each client's own task sequence. Independent replications (several
seeds): one estimate per run. Either way the interval is ``mean +- t_{1-a/2, B-1} sd / sqrt(B)``.

Quantities match :func:`aflqueue.queueing.analyze` and use its key names:
``mean_queue_lengths`` counts tasks at a client's stages (dispatched, not yet arrived at the
central server), ``utilization`` is the busy fraction of the compute stage,
``mean_response_times`` is the time from dispatch to arrival at the central server, and
``relative_delay`` is ``E[D_i]`` in updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._results import require_pandas, result_repr
from ..errors import require
from ..io import json_safe
from ..stats import Estimate, batch_means, t_interval
from .trace import Trace

__all__ = ["Estimate", "SimulationEstimates", "estimate", "estimate_replications", "delay_distribution",
           "departure_rates_by_queue"]


@dataclass(frozen=True, eq=False)
class SimulationEstimates:
    """Estimates of the steady-state metrics; per-client lists have length ``n``.

    ``relative_delay[i]`` and ``mean_response_times[i]`` are NaN estimates for clients that
    produced no update after warm-up. ``delay_quantiles[i]`` holds the empirical 50/90/99%
    quantiles and the maximum of client i's relative delay.
    """

    throughput: Estimate
    mean_queue_lengths: list[Estimate]
    utilization: list[Estimate]
    mean_response_times: list[Estimate]
    relative_delay: list[Estimate]
    mean_relative_delay: Estimate
    delay_quantiles: list[dict[str, float]]
    server: dict[str, Estimate] | None
    warmup_updates: int
    updates_used: int
    batches: int
    confidence: float
    method: str

    @property
    def n(self) -> int:
        """Number of clients."""
        return len(self.relative_delay)

    def __repr__(self) -> str:
        how = (f"batch means over {self.batches} batches" if self.method == "batch_means"
               else f"{self.batches} replications")
        return result_repr(
            f"SimulationEstimates ({how}, {self.confidence:.0%} intervals): n = {self.n}, "
            f"{self.updates_used} updates after {self.warmup_updates} warm-up", [
                ("throughput", self.throughput),
                ("relative_delay", [e.mean for e in self.relative_delay]),
                ("mean_relative_delay", self.mean_relative_delay),
                ("mean_queue_lengths", [e.mean for e in self.mean_queue_lengths]),
                ("utilization", [e.mean for e in self.utilization]),
                ("mean_response_times", [e.mean for e in self.mean_response_times]),
                ("server", self.server)])

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict: each estimate as ``{"mean", "ci": [lo, hi], "n"}`` (``null`` if undefined),
        per-client lists in client order, keys as in :meth:`Analysis.to_dict`."""
        d: dict[str, Any] = {
            "throughput": self.throughput.to_dict(),
            "mean_queue_lengths": [e.to_dict() for e in self.mean_queue_lengths],
            "utilization": [e.to_dict() for e in self.utilization],
            "mean_response_times": [e.to_dict() for e in self.mean_response_times],
            "relative_delay": [e.to_dict() for e in self.relative_delay],
            "mean_relative_delay": self.mean_relative_delay.to_dict(),
            "delay_quantiles": self.delay_quantiles,
            "warmup_updates": self.warmup_updates,
            "updates_used": self.updates_used,
            "batches": self.batches,
            "confidence": self.confidence,
            "estimation": self.method,
        }
        if self.server is not None:
            d["server"] = {k: v.to_dict() for k, v in self.server.items()}
        return json_safe(d)

    def to_frame(self) -> Any:
        """Per-client :class:`pandas.DataFrame` (index ``client``). For each of
        ``mean_queue_lengths``, ``utilization``, ``mean_response_times`` and ``relative_delay`` the
        point estimate under the same name as in :meth:`Analysis.to_frame` (so the two frames
        line up column by column) and the interval bounds as ``<name>_lo``, ``<name>_hi``; then the
        empirical relative-delay quantiles ``delay_p50``, ``delay_p90``, ``delay_p99``, ``delay_max``.
        Scalar estimates (``throughput``, ``mean_relative_delay``, ``server``) are in ``df.attrs``
        as ``{"mean", "ci", "n"}``, with ``confidence``, ``estimation``, ``updates_used``,
        ``warmup_updates`` and ``batches``. Needs pandas."""
        pd = require_pandas("SimulationEstimates.to_frame()")
        cols: dict[str, np.ndarray] = {}
        for name in ("mean_queue_lengths", "utilization", "mean_response_times", "relative_delay"):
            est = getattr(self, name)
            cols[name] = np.array([e.mean for e in est], dtype=float)
            cols[f"{name}_lo"] = np.array([e.lo for e in est], dtype=float)
            cols[f"{name}_hi"] = np.array([e.hi for e in est], dtype=float)
        for q in ("p50", "p90", "p99", "max"):
            cols[f"delay_{q}"] = np.array([np.nan if d is None else d[q] for d in self.delay_quantiles], dtype=float)
        df = pd.DataFrame(cols, index=pd.RangeIndex(self.n, name="client"))
        full = self.to_dict()
        df.attrs.update({k: full[k] for k in ("throughput", "mean_relative_delay", "confidence", "estimation",
                                              "updates_used", "warmup_updates", "batches")})
        df.attrs["server"] = full.get("server")
        return df


def _warmup_count(trace: Trace, warmup: float) -> int:
    require(warmup >= 0, "warmup", f"must be >= 0 (a fraction < 1 or a number of updates; got {warmup})")
    U = trace.num_updates
    k = int(round(warmup * U)) if warmup < 1 else int(warmup)
    require(k < U - 1, "warmup", f"discards {k} of {U} updates; simulate more updates or lower the warm-up")
    return k


def interval_integrals(start: np.ndarray, end: np.ndarray, group: np.ndarray, n: int,
                       edges: np.ndarray) -> np.ndarray:
    """``out[b, g] = integral over [edges[b], edges[b+1]) of #{intervals of group g open at t}``.

    Intervals are ``[start, end)``; NaN ``end`` means still open at the end of the trace.
    """
    s = np.nan_to_num(start, nan=np.inf)  # never started: contributes nothing
    e = np.where(np.isnan(end), np.inf, end)
    keep = (s < edges[-1]) & (e > edges[0]) & (e > s)
    s, e, g = s[keep], e[keep], group[keep]
    length = e - s
    cum = np.empty((edges.size, n))
    for k, x in enumerate(edges):
        cum[k] = np.bincount(g, weights=np.clip(x - s, 0.0, length), minlength=n)
    return np.diff(cum, axis=0)


def estimate(trace: Trace, warmup: float = 0.1, batches: int = 20, confidence: float = 0.95) -> SimulationEstimates:
    """Batch-means estimates from one long run (see module docstring)."""
    require(isinstance(batches, (int, np.integer)) and batches >= 2, "batches", f"must be an integer >= 2 (got {batches})")
    require(0 < confidence < 1, "confidence", f"must be in (0, 1) (got {confidence})")
    n = trace.n_clients
    up = trace.updates()
    k0 = _warmup_count(trace, warmup)
    t0 = float(up["time"][k0 - 1]) if k0 > 0 else 0.0
    t1 = trace.horizon
    require(t1 > t0, "updates", "the post-warm-up window has zero length")
    edges = np.linspace(t0, t1, batches + 1)
    width = edges[1] - edges[0]
    # throughput: updates completed per window
    counts = np.histogram(up["time"][k0:], bins=edges)[0]
    thr = t_interval(counts / width, confidence)
    client = trace.client
    queue = interval_integrals(trace.dispatch_time, trace.uplink_end, client, n, edges) / width
    busy = interval_integrals(trace.compute_start, trace.compute_end, client, n, edges) / width
    mean_q = [t_interval(queue[:, i], confidence) for i in range(n)]
    util = [t_interval(busy[:, i], confidence) for i in range(n)]
    # per-task quantities, post warm-up updates only
    tasks = up["task"][k0:]
    delays = up["relative_delay"][k0:].astype(float)
    cl = up["client"][k0:]
    resp = (trace.uplink_end - trace.dispatch_time)[tasks]
    rd, rt, dq = [], [], []
    for i in range(n):
        mask = cl == i
        rd.append(t_interval(batch_means(delays[mask], batches), confidence))
        rt.append(t_interval(batch_means(resp[mask], batches), confidence))
        dq.append(_quantiles(delays[mask]))
    mean_d = t_interval(batch_means(delays, batches), confidence)
    server = None
    if np.any(trace.completion_time[trace.completed] > trace.uplink_end[trace.completed]):
        cs = interval_integrals(trace.uplink_end, trace.completion_time, np.zeros(len(trace), dtype=np.int64), 1,
                                 edges)[:, 0] / width
        server = {"mean_queue_length": t_interval(cs, confidence)}
    return SimulationEstimates(
        throughput=thr, mean_queue_lengths=mean_q, utilization=util, mean_response_times=rt, relative_delay=rd,
        mean_relative_delay=mean_d, delay_quantiles=dq, server=server, warmup_updates=k0,
        updates_used=int(delays.size), batches=int(batches), confidence=float(confidence), method="batch_means",
    )


def _quantiles(d: np.ndarray) -> dict[str, float] | None:
    if d.size == 0:
        return None
    q = np.quantile(d, [0.5, 0.9, 0.99])
    return {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]), "max": float(d.max())}


def estimate_replications(traces: Sequence[Trace], warmup: float = 0.1, confidence: float = 0.95) -> SimulationEstimates:
    """Independent replications: each run's post-warm-up average is one sample."""
    require(len(traces) >= 2, "replications", f"need at least 2 runs (got {len(traces)})")
    per_run = [estimate(t, warmup=warmup, batches=2, confidence=confidence) for t in traces]
    n = traces[0].n_clients

    def pool(get) -> Estimate:
        return t_interval(np.array([get(r) for r in per_run]), confidence)

    logs = [(t.updates(), r.warmup_updates) for t, r in zip(traces, per_run)]
    delays = [np.concatenate([u["relative_delay"][k:][u["client"][k:] == i] for u, k in logs]).astype(float)
              for i in range(n)]
    return SimulationEstimates(
        throughput=pool(lambda r: r.throughput.mean),
        mean_queue_lengths=[pool(lambda r, i=i: r.mean_queue_lengths[i].mean) for i in range(n)],
        utilization=[pool(lambda r, i=i: r.utilization[i].mean) for i in range(n)],
        mean_response_times=[pool(lambda r, i=i: r.mean_response_times[i].mean) for i in range(n)],
        relative_delay=[pool(lambda r, i=i: r.relative_delay[i].mean) for i in range(n)],
        mean_relative_delay=pool(lambda r: r.mean_relative_delay.mean),
        delay_quantiles=[_quantiles(d) for d in delays],
        server=None if per_run[0].server is None else
        {"mean_queue_length": pool(lambda r: r.server["mean_queue_length"].mean)},
        warmup_updates=per_run[0].warmup_updates, updates_used=sum(r.updates_used for r in per_run),
        batches=len(traces), confidence=float(confidence), method="replications",
    )


def delay_distribution(trace: Trace, warmup: float = 0.1, max_delay: int | None = None) -> np.ndarray:
    """Empirical ``P(D = d | client i)``, shape ``(n, max_delay + 1)`` (rows NaN without updates)."""
    up = trace.updates()
    k0 = _warmup_count(trace, warmup)
    d, cl = up["relative_delay"][k0:], up["client"][k0:]
    top = int(d.max()) if max_delay is None else int(max_delay)
    out = np.full((trace.n_clients, top + 1), np.nan)
    for i in range(trace.n_clients):
        di = d[cl == i]
        if di.size:
            out[i] = np.bincount(np.minimum(di, top), minlength=top + 1)[: top + 1] / di.size
    return out


def departure_rates_by_queue(trace: Trace, warmup: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Departures and time per client and number of tasks present, after the warm-up.

    Returns ``(departures, time)``, each of shape ``(n, m + 1)`` (``m`` the trace's concurrency): ``time[i, k]`` is the
    time client ``i`` held ``k`` tasks (dispatched, not yet arrived at the central server) and
    ``departures[i, k]`` the tasks that left it when it held ``k`` (the departing one included).
    ``departures / time`` estimates the departure rate given ``k`` tasks, ``r_i(k)`` of
    :mod:`aflqueue.queueing.load_dependent` (Marie's method; docs/theory.md section 9.8).
    Simultaneous events at one client are ordered departures first.
    """
    m = int(trace.concurrency)
    k0 = _warmup_count(trace, warmup)
    up = trace.updates()
    t0, t1 = float(up["time"][k0 - 1]) if k0 > 0 else 0.0, float(up["time"][-1])
    n = trace.n_clients
    deps = np.zeros((n, m + 1))
    held = np.zeros((n, m + 1))
    start, end = trace.dispatch_time, trace.uplink_end
    for i in range(n):
        mine = trace.client == i
        s_i = start[mine]
        e_i = end[mine]
        e_i = e_i[~np.isnan(e_i)]
        t = np.concatenate([s_i, e_i])
        step = np.concatenate([np.ones(s_i.size, dtype=np.int64), -np.ones(e_i.size, dtype=np.int64)])
        order = np.lexsort((step, t))  # at equal times departures (-1) first
        t, step = t[order], step[order]
        before = np.concatenate([[0], np.cumsum(step)[:-1]])
        after = before + step
        nxt = np.append(t[1:], t1)
        length = np.clip(nxt, t0, t1) - np.clip(t, t0, t1)
        np.add.at(held[i], after, np.maximum(length, 0.0))
        leave = (step < 0) & (t > t0) & (t <= t1)
        np.add.at(deps[i], before[leave], 1.0)
    return deps, held

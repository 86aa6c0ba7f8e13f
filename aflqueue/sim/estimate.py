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

Streaming: :func:`estimate` reads the trace in two passes of task-order chunks (a
:class:`~aflqueue.sim.trace.Trace` in memory or a :class:`~aflqueue.sim.tracefile.TraceFile`
streamed from disk, the same bits either way): sums over tasks run in task order as one
``np.bincount`` over the whole trace would; per-update values are put back in version order
(:class:`~aflqueue.sim.records.VersionOrder`) and each batch of a batch mean is gathered into one
array before it is averaged; delay quantiles come from counts of (client, delay) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
from numba import njit

from .._results import Result, result_repr
from ..errors import ValidationError, require
from ..io import json_safe
from ..stats import Estimate, Estimates, t_interval
from .records import VersionOrder
from .trace import Trace
from .tracefile import TraceFile

__all__ = ["Estimate", "SimulationEstimates", "estimate", "estimate_replications", "delay_distribution",
           "departure_rates_by_queue", "interval_integrals", "accumulate_interval_integrals", "quantiles_from_counts",
           "histogram_counts"]


@dataclass(frozen=True, eq=False, repr=False)
class SimulationEstimates(Result):
    """Estimates of the steady-state metrics with confidence intervals. Per-client fields are
    :class:`~aflqueue.stats.Estimates` of length ``n`` (``.mean``, ``.lo``, ``.hi`` arrays lined up
    with :class:`~aflqueue.queueing.analysis.Analysis`'s arrays; ``[i]`` is client i's
    :class:`~aflqueue.stats.Estimate`).

    ``relative_delay`` and ``mean_response_times`` are NaN for clients that produced no update
    after warm-up. ``delay_quantiles[i]`` holds the empirical 50/90/99% quantiles and the maximum of
    client i's relative delay (None without any).
    """

    throughput: Estimate
    mean_queue_lengths: Estimates
    utilization: Estimates
    mean_response_times: Estimates
    relative_delay: Estimates
    mean_relative_delay: Estimate
    delay_quantiles: list[dict[str, float] | None]
    server: dict[str, Estimate] | None
    warmup_updates: int
    updates_used: int
    batches: int
    confidence: float
    method: str

    #: per-client point estimates, named as :class:`Analysis`'s columns, with ``_lo``/``_hi`` bounds
    PER_CLIENT: ClassVar[tuple[str, ...]] = ("mean_queue_lengths", "utilization", "mean_response_times",
                                             "relative_delay")
    frame_attrs: ClassVar[tuple[str, ...]] = ("throughput", "mean_relative_delay", "confidence", "estimation",
                                              "updates_used", "warmup_updates", "batches", "server")

    @property
    def n(self) -> int:
        """Number of clients."""
        return len(self.relative_delay)

    def title(self) -> str:
        how = (f"batch means over {self.batches} batches" if self.method == "batch_means"
               else f"{self.batches} replications")
        return (f"SimulationEstimates ({how}, {self.confidence:.0%} intervals): n = {self.n}, "
                f"{self.updates_used} updates after {self.warmup_updates} warm-up")

    def __repr__(self) -> str:
        return result_repr(self.title(), [
            ("throughput", self.throughput), ("relative_delay", self.relative_delay.mean),
            ("mean_relative_delay", self.mean_relative_delay), ("mean_queue_lengths", self.mean_queue_lengths.mean),
            ("utilization", self.utilization.mean), ("mean_response_times", self.mean_response_times.mean),
            ("server", self.server)])

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict: each estimate as ``{"mean", "ci", "n"}`` (``null`` if undefined),
        per-client lists in client order, keys as in :meth:`Analysis.to_dict`."""
        d: dict[str, Any] = {
            "throughput": self.throughput.to_dict(),
            **{name: getattr(self, name).to_dict() for name in self.PER_CLIENT},
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

    def frame_columns(self) -> dict[str, np.ndarray]:
        """Per client (index ``client``): each of :attr:`PER_CLIENT` under the same name as in
        :meth:`Analysis.to_frame` (so the two frames line up column by column) with its interval
        bounds as ``<name>_lo``, ``<name>_hi``; then the empirical relative-delay quantiles
        ``delay_p50``, ``delay_p90``, ``delay_p99``, ``delay_max``. Scalar estimates
        (``throughput``, ``mean_relative_delay``, ``server``) go to ``df.attrs`` as
        ``{"mean", "ci", "n"}``, with ``confidence``, ``estimation``, ``updates_used``,
        ``warmup_updates`` and ``batches``."""
        cols: dict[str, np.ndarray] = {}
        for name in self.PER_CLIENT:
            est = getattr(self, name)
            cols.update({name: est.mean, f"{name}_lo": est.lo, f"{name}_hi": est.hi})
        for q in ("p50", "p90", "p99", "max"):
            cols[f"delay_{q}"] = np.array([np.nan if d is None else d[q] for d in self.delay_quantiles], dtype=float)
        return cols


def _warmup_count(trace: Trace | TraceFile, warmup: float) -> int:
    require(warmup >= 0, "warmup", f"must be >= 0 (a fraction < 1 or a number of updates; got {warmup})")
    U = trace.num_updates
    k = int(round(warmup * U)) if warmup < 1 else int(warmup)
    require(k < U - 1, "warmup", f"discards {k} of {U} updates; simulate more updates or lower the warm-up")
    return k


@njit(cache=True)
def _accumulate(acc, start, end, group, edges):  # pragma: no cover - compiled
    """The loop of :func:`accumulate_interval_integrals`: for each interval in order, for each
    edge, ``acc[k, g] += clip(edges[k] - s, 0, e - s)`` (no fastmath: every sum runs in the
    order of the intervals, as ``np.bincount`` adds)."""
    lo, hi = edges[0], edges[edges.size - 1]
    for i in range(start.size):
        s, e = start[i], end[i]
        if np.isnan(s):  # never started: contributes nothing
            s = np.inf
        if np.isnan(e):  # still open at the end
            e = np.inf
        if not (s < hi and e > lo and e > s):
            continue
        length = e - s
        g = group[i]
        for k in range(edges.size):
            w = edges[k] - s
            if w < 0.0:
                w = 0.0
            if w > length:
                w = length
            acc[k, g] += w


def accumulate_interval_integrals(acc: np.ndarray, start: np.ndarray, end: np.ndarray, group: np.ndarray,
                                  edges: np.ndarray) -> None:
    """Add to ``acc[k, g]`` the integral over ``(-inf, edges[k])`` of #{intervals of group g open
    at t}, for a chunk of intervals ``[start, end)`` (NaN ``end``: still open at the end).

    Each sum runs in the order of the intervals, so feeding a sequence chunk by chunk gives the
    same bits as feeding it at once (and as ``np.bincount`` of the clipped lengths)."""
    _accumulate(acc, np.ascontiguousarray(start, dtype=np.float64), np.ascontiguousarray(end, dtype=np.float64),
                np.ascontiguousarray(group, dtype=np.int64), np.ascontiguousarray(edges, dtype=np.float64))


def histogram_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(x, bins=edges)[0]`` without sorting ``x``: bins ``[e_k, e_k+1)``, the last
    one closed, values outside ignored (``edges`` non-decreasing)."""
    nb = edges.size - 1
    idx = np.searchsorted(edges, x, side="right") - 1
    idx[x == edges[-1]] = nb - 1
    return np.bincount(idx[(idx >= 0) & (idx < nb)], minlength=nb)


def interval_integrals(start: np.ndarray, end: np.ndarray, group: np.ndarray, n: int,
                       edges: np.ndarray) -> np.ndarray:
    """``out[b, g] = integral over [edges[b], edges[b+1]) of #{intervals of group g open at t}``.

    Intervals are ``[start, end)``; NaN ``end`` means still open at the end of the trace.
    """
    acc = np.zeros((edges.size, n))
    accumulate_interval_integrals(acc, start, end, group, edges)
    return np.diff(acc, axis=0)


def stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` of non-negative integers, by radix sort when they fit
    in 16 bits (client indices usually do)."""
    if keys.size and int(keys.max()) < 2**16:
        keys = keys.astype(np.uint16)
    return np.argsort(keys, kind="stable")


def _split_sizes(total: np.ndarray, batches: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(groups, q, r)``: :func:`aflqueue.stats.batch_means` cuts ``total`` values into
    ``groups = min(batches, total)`` contiguous groups, the first ``r`` of ``q + 1`` values and
    the others of ``q`` (as ``np.array_split``)."""
    groups = np.minimum(int(batches), total)
    q, r = np.divmod(total, np.maximum(groups, 1))
    return groups, q, r


class _BatchMeans:
    """:func:`aflqueue.stats.batch_means` of several sequences (streams) whose values arrive in
    pieces, in order: each group's values are gathered into one contiguous array and averaged
    there, so the means are those of the whole sequence bit for bit. Holds one open group per
    stream (about ``total / batches`` values)."""

    def __init__(self, total: np.ndarray, batches: int):
        self.groups, self.q, self.r = _split_sizes(np.asarray(total, dtype=np.int64), batches)
        self.group = np.zeros(self.groups.size, dtype=np.int64)
        self.fill = np.zeros(self.groups.size, dtype=np.int64)
        self.buf: dict[int, np.ndarray] = {}
        self.means: list[list[float]] = [[] for _ in range(self.groups.size)]

    def _size(self, i: int, g: int) -> int:
        return int(self.q[i] + 1 if g < self.r[i] else self.q[i])

    def feed_one(self, i: int, seg: np.ndarray) -> None:
        """Values of stream ``i`` that follow the ones fed before (a contiguous float64 array)."""
        pos, n = 0, seg.size
        while pos < n:
            g = int(self.group[i])
            if g >= self.groups[i]:
                raise RuntimeError("batch means: more values than declared")
            size, f = self._size(i, g), int(self.fill[i])
            take = min(size - f, n - pos)
            if f == 0 and take == size:
                self.means[i].append(seg[pos:pos + size].mean())
                self.group[i] = g + 1
            else:
                buf = self.buf.get(i)
                if buf is None:
                    buf = self.buf[i] = np.empty(int(self.q[i]) + 1)
                buf[f:f + take] = seg[pos:pos + take]
                f += take
                if f == size:
                    self.means[i].append(buf[:size].mean())
                    self.group[i] = g + 1
                    f = 0
                self.fill[i] = f
            pos += take

    def feed(self, stream: np.ndarray, values: np.ndarray, order: np.ndarray | None = None) -> None:
        """Values of several streams, each stream's in order; ``order``: :func:`stable_order` of
        ``stream`` if already computed."""
        order = stable_order(stream) if order is None else order
        s, v = stream[order], values[order]
        cut = np.flatnonzero(np.diff(s)) + 1
        for a, b in zip(np.concatenate(([0], cut)), np.concatenate((cut, [s.size]))):
            self.feed_one(int(s[a]), v[a:b])

    def result(self, i: int) -> np.ndarray:
        if self.group[i] != self.groups[i]:
            raise RuntimeError("batch means: fewer values than declared")
        return np.array(self.means[i], dtype=np.float64)


class _DelayCounts:
    """How often each (client, relative delay) pair occurs: sorted keys ``client * (U + 1) +
    delay`` with counts, merged chunk by chunk (memory: the distinct pairs, not the updates)."""

    def __init__(self, updates: int):
        self.base = int(updates) + 1
        self.keys = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, client: np.ndarray, delay: np.ndarray) -> None:
        client, delay = client.astype(np.int64), delay.astype(np.int64)
        lo, hi = int(delay.min()), int(delay.max())
        span, top = hi - lo + 1, int(client.max()) + 1
        if span * top <= 4 * client.size + 1024:  # a dense count is cheaper than sorting
            dense = np.bincount(client * span + (delay - lo), minlength=span * top)
            nz = np.flatnonzero(dense)
            k, c = (nz // span) * self.base + nz % span + lo, dense[nz]
        else:
            k, c = np.unique(client * self.base + delay, return_counts=True)
        pos = np.searchsorted(self.keys, k)
        found = pos < self.keys.size
        found[found] = self.keys[pos[found]] == k[found]
        self.counts[pos[found]] += c[found]
        self.keys = np.insert(self.keys, pos[~found], k[~found])
        self.counts = np.insert(self.counts, pos[~found], c[~found])

    def of(self, client: int) -> tuple[np.ndarray, np.ndarray]:
        """``(delays as float64, counts)`` of a client, delays increasing."""
        a, b = np.searchsorted(self.keys, [client * self.base, (client + 1) * self.base])
        return (self.keys[a:b] - client * self.base).astype(np.float64), self.counts[a:b]


def quantiles_from_counts(values: np.ndarray, counts: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.quantile(np.repeat(values, counts), q)`` (method ``linear``), bit for bit, without
    the repeat: the two order statistics around ``(N - 1) q`` are read off the cumulative
    counts and interpolated as numpy does (from below for a weight < 1/2, from above
    otherwise). ``values``: sorted, distinct float64; ``counts`` >= 1."""
    N = int(counts.sum())
    virtual = (N - 1) * np.asarray(q, dtype=np.float64)
    prev = np.floor(virtual)
    nxt = prev + 1
    top = virtual >= N - 1  # the largest value (numpy indexes it as -1)
    prev[top] = -1
    nxt[top] = -1
    gamma = virtual - prev
    cum = np.cumsum(counts)

    def order_statistic(idx: np.ndarray) -> np.ndarray:
        i = idx.astype(np.int64)
        return values[np.searchsorted(cum, np.where(i < 0, N + i, i), side="right")]

    a, b = order_statistic(prev), order_statistic(nxt)
    diff = b - a
    out = a + diff * gamma
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), out)


def estimate(trace: Trace | TraceFile, warmup: float = 0.1, batches: int = 20,
             confidence: float = 0.95) -> SimulationEstimates:
    """Batch-means estimates from one long run (see module docstring).

    ``trace``: a :class:`~aflqueue.sim.trace.Trace` or a
    :class:`~aflqueue.sim.tracefile.TraceFile` (e.g. from :func:`aflqueue.sim.simulate_to_file`).
    Either way the trace is read in two passes of task-order chunks, in memory bounded by the
    chunk, ``n x batches`` and the spread of the relative delays (not the number of updates),
    and the estimates are the same, bit for bit."""
    require(isinstance(batches, (int, np.integer)) and batches >= 2, "batches", f"must be an integer >= 2 (got {batches})")
    require(0 < confidence < 1, "confidence", f"must be in (0, 1) (got {confidence})")
    n = trace.n_clients
    U = trace.num_updates
    k0 = _warmup_count(trace, warmup)
    t0, t1, server, per_client = _window(trace, k0)  # pass 1
    require(t1 > t0, "updates", "the post-warm-up window has zero length")
    edges = np.linspace(t0, t1, batches + 1)
    width = edges[1] - edges[0]
    # pass 2: time averages in task order; per-update values put back in version order
    counts = np.zeros(batches, dtype=np.int64)
    queue, busy, central = np.zeros((edges.size, n)), np.zeros((edges.size, n)), np.zeros((edges.size, 1))
    budget = trace.window_budget() if isinstance(trace, TraceFile) else None
    order = VersionOrder(k0 + 1, U, {"client": np.int64, "delay": np.int64, "resp": np.float64}, field="trace",
                         source=getattr(trace, "source", "the trace"), budget=budget)
    overall, delay_means, resp_means = _BatchMeans(np.array([U - k0]), batches), _BatchMeans(per_client, batches), \
        _BatchMeans(per_client, batches)
    delay_counts = _DelayCounts(U)

    def consume(up: dict[str, np.ndarray]) -> None:
        if up["client"].size == 0:
            return
        d = up["delay"].astype(float)
        overall.feed_one(0, d)
        by_client = stable_order(up["client"])
        delay_means.feed(up["client"], d, by_client)
        resp_means.feed(up["client"], up["resp"], by_client)
        delay_counts.add(up["client"], up["delay"])

    for _, c in trace.chunks():
        av, cl = c["applied_version"], c["client"]
        post = av > k0
        counts += histogram_counts(c["completion_time"][post], edges)
        accumulate_interval_integrals(queue, c["dispatch_time"], c["uplink_end"], cl, edges)
        accumulate_interval_integrals(busy, c["compute_start"], c["compute_end"], cl, edges)
        if server:
            accumulate_interval_integrals(central, c["uplink_end"], c["completion_time"], np.zeros(cl.size, dtype=np.int64),
                                          edges)
        order.put(av[post], client=cl[post], delay=(av - 1 - c["dispatch_version"])[post],
                  resp=(c["uplink_end"] - c["dispatch_time"])[post])
        consume(order.take())
    if not order.done():  # only a trace changed between the passes gets here
        raise ValidationError("trace", f"{getattr(trace, 'source', 'the trace')}: versions {order.next}.. are missing")
    thr = t_interval(counts / width, confidence)
    queue = np.diff(queue, axis=0) / width
    busy = np.diff(busy, axis=0) / width
    mean_q = [t_interval(queue[:, i], confidence) for i in range(n)]
    util = [t_interval(busy[:, i], confidence) for i in range(n)]
    rd = [t_interval(delay_means.result(i), confidence) for i in range(n)]
    rt = [t_interval(resp_means.result(i), confidence) for i in range(n)]
    dq = [_quantiles(*delay_counts.of(i)) for i in range(n)]
    mean_d = t_interval(overall.result(0), confidence)
    server_est = None
    if server:
        server_est = {"mean_queue_length": t_interval(np.diff(central, axis=0)[:, 0] / width, confidence)}
    return SimulationEstimates(
        throughput=thr, mean_queue_lengths=Estimates.of(mean_q), utilization=Estimates.of(util),
        mean_response_times=Estimates.of(rt), relative_delay=Estimates.of(rd),
        mean_relative_delay=mean_d, delay_quantiles=dq, server=server_est, warmup_updates=k0,
        updates_used=int(U - k0), batches=int(batches), confidence=float(confidence), method="batch_means",
    )


def _window(trace: Trace | TraceFile, k0: int) -> tuple[float, float, bool, np.ndarray]:
    """:func:`estimate`'s first pass: the window ``[t0, t1]`` of the time averages (from the
    completion of update ``k0``, the last one of the warm-up, to the last update), whether a
    central server queues (some update completes after its uplink), and each client's updates
    after the warm-up, shape ``(n,)``."""
    n = trace.n_clients
    t0, t1, server = 0.0, -np.inf, False
    per_client = np.zeros(n, dtype=np.int64)
    for _, c in trace.chunks(("client", "uplink_end", "completion_time", "applied_version")):
        av, ct = c["applied_version"], c["completion_time"]
        done = av >= 1
        if k0 > 0:
            hit = np.flatnonzero(av == k0)
            if hit.size:
                t0 = float(ct[hit[0]])
        if done.any():
            t1 = max(t1, float(ct[done].max()))
            server = server or bool(np.any(ct[done] > c["uplink_end"][done]))
        per_client += np.bincount(c["client"][av > k0], minlength=n)
    return t0, t1, server, per_client


def _quantiles(values: np.ndarray, counts: np.ndarray) -> dict[str, float] | None:
    """The 50/90/99% quantiles and the maximum of a client's relative delays (as
    ``np.quantile`` of the delays themselves; None without any)."""
    if counts.size == 0:
        return None
    q = quantiles_from_counts(values, counts, [0.5, 0.9, 0.99])
    return {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]), "max": float(values[-1])}


def estimate_replications(traces: Sequence[Trace], warmup: float = 0.1, confidence: float = 0.95) -> SimulationEstimates:
    """Independent replications: each run's post-warm-up average is one sample (traces in memory)."""
    require(len(traces) >= 2, "replications", f"need at least 2 runs (got {len(traces)})")
    per_run = [estimate(t, warmup=warmup, batches=2, confidence=confidence) for t in traces]
    n = traces[0].n_clients

    def pool(get) -> Estimate:
        return t_interval(np.array([get(r) for r in per_run]), confidence)

    logs = [(t.updates(), r.warmup_updates) for t, r in zip(traces, per_run)]
    delays = [np.concatenate([u["relative_delay"][k:][u["client"][k:] == i] for u, k in logs]).astype(float)
              for i in range(n)]
    pooled = [np.unique(d, return_counts=True) for d in delays]
    return SimulationEstimates(
        throughput=pool(lambda r: r.throughput.mean),
        **{name: Estimates.of(pool(lambda r, i=i, name=name: getattr(r, name).mean[i]) for i in range(n))
           for name in SimulationEstimates.PER_CLIENT},
        mean_relative_delay=pool(lambda r: r.mean_relative_delay.mean),
        delay_quantiles=[_quantiles(v, c) for v, c in pooled],
        server=None if per_run[0].server is None else
        {"mean_queue_length": pool(lambda r: r.server["mean_queue_length"].mean)},
        warmup_updates=per_run[0].warmup_updates, updates_used=sum(r.updates_used for r in per_run),
        batches=len(traces), confidence=float(confidence), method="replications",
    )


def delay_distribution(trace: Trace, warmup: float = 0.1, max_delay: int | None = None) -> np.ndarray:
    """Empirical ``P(D = d | client i)``, shape ``(n, max_delay + 1)`` (rows NaN without updates);
    ``trace`` in memory."""
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
    the delay-oracle study's ``validation/approx/load_dependent.py`` (Marie's method; docs/theory.md section 9.8).
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

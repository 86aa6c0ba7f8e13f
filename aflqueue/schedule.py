"""See the schedule: what a trace (or a training run's schedule) did, client by client.

From a trace (``.npz``, :class:`~aflqueue.sim.trace.Trace`) or a run folder (its ``trace.npz``,
limited to the arrivals the run applied, from ``results.json``), :func:`schedule_data` computes

* a **timeline**: for each client (all of them, or an even sample across speeds for many clients)
  its tasks over a window of simulated time, each task *waiting* in the client's FIFO queue
  (``downlink_end`` to ``compute_start``), *in service* (``compute_start`` to ``compute_end``) or
  *in transit* (downlink, uplink, central server); and how many of the ``m`` tasks in flight are
  in each state at every moment (they always add up to ``m``);
* **relative delays**: per client, the histogram of its updates' relative delays (updates applied
  between the task's dispatch and its own), their mean, the closed-form mean ``E[D_i]`` of the
  system (docs/theory.md section 3; exact for product-form systems, an approximation otherwise,
  and labelled so) and, for small exponential systems, the exact law of the delay from the
  brute-force tagged-task chain (:func:`aflqueue.queueing.ctmc.relative_delay_distribution`). The
  chain is used only when its state space has at most :data:`EXACT_STATE_LIMIT` states;
  otherwise only the closed-form mean is drawn, and the figure says why;
* the **arrival share** of each client against its routing probability ``p_i``, with the 95% range
  of a multinomial share of the dispatches (every dispatch goes to client ``i`` with probability
  ``p_i``, independently; arrivals differ from dispatches only by the ``m`` tasks still in flight).

:func:`schedule_figures` draws the three figures (``schedule_timeline``, ``schedule_delays``,
``schedule_arrival_share``, PNG and PDF) and saves the data as ``schedule.json``; ``aflqueue
schedule SOURCE`` calls it.
"""

from __future__ import annotations

from math import comb
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import plots
from .errors import RATE_RANGE, ValidationError, check_integer, require
from .io import atomic_write_json, file_errors, json_safe, read_json, source_name
from .queueing.analysis import analyze
from .queueing.network import network_of
from .sim.trace import Trace
from .system import System

__all__ = ["EXACT_STATE_LIMIT", "load_schedule", "system_of", "delay_chain_states", "schedule_data",
           "schedule_figures"]

#: Largest state space (stationary or tagged-task chain) for which the exact delay law is computed.
EXACT_STATE_LIMIT = 20_000
#: Clients drawn in the timeline and in the delay histograms when there are more.
TIMELINE_CLIENTS = 24
HISTOGRAM_CLIENTS = 12


def load_schedule(source: str | Path) -> tuple[Trace, int | None, dict[str, Any] | None]:
    """``(trace, arrivals applied or None, results.json or None)`` of a trace file or run folder."""
    p = Path(source)
    require(p.exists(), "source", f"no such trace file or run folder: {str(p)!r}")
    if p.is_dir():
        tp = p / "trace.npz"
        require(tp.is_file(), "source", f"{str(p)!r} has no trace.npz (give a run folder of aflqueue train or a "
                                        "trace .npz from aflqueue simulate --trace)")
        results = read_json(p / "results.json", "source") if (p / "results.json").is_file() else None
        trace = Trace.load(tp)
        arrivals = None
        if isinstance(results, dict) and "arrivals" in results:  # the arrivals the run applied, of the trace's
            with file_errors(source_name(p / "results.json")):
                arrivals = check_integer(results["arrivals"], "results.arrivals", 1, trace.num_updates)
        return trace, arrivals, results
    require(p.suffix == ".npz", "source", f"{str(p)!r}: give a trace .npz or a run folder")
    return Trace.load(p), None, None


def system_of(trace: Trace, results: dict[str, Any] | None = None) -> System | None:
    """The system a trace was drawn from: recorded in its metadata by :func:`aflqueue.simulate`, or
    rebuilt from a run's ``results.json`` (rates, routing, concurrency); None when unknown."""
    sysm = None
    meta = trace.meta.get("system") if isinstance(trace.meta, dict) else None
    if isinstance(meta, dict):
        try:
            sysm = System.from_dict(meta)
        except (ValidationError, TypeError, ValueError):
            sysm = None
    if sysm is None and isinstance(results, dict) and results.get("rates"):
        try:
            sysm = System.from_rates(results["rates"], routing=results.get("routing"),
                                     concurrency=int(results.get("concurrency") or trace.concurrency))
        except (ValidationError, TypeError, ValueError):
            sysm = None
    if sysm is None or sysm.n != trace.n_clients:
        return None
    if trace.routing is not None and not np.allclose(sysm.routing, trace.routing, atol=1e-9):
        sysm = sysm.with_routing(trace.routing)
    if sysm.concurrency != trace.concurrency:
        sysm = sysm.with_concurrency(trace.concurrency)
    return sysm


def delay_chain_states(system: System) -> int:
    """States of the larger of the two brute-force chains behind the exact delay law: the
    stationary chain (``C(S + m - 1, m)``) and the tagged-task chain (others' positions, the
    tagged task's station and, at a FIFO station, how many are ahead of it)."""


    net = network_of(system)
    S, m = net.size, system.concurrency
    fifo = int((~np.asarray(net.is_delay, dtype=bool)).sum())
    stationary = comb(S + m - 1, m)
    others = comb(S + m - 2, m - 1) if m >= 1 else 0
    tagged = others * S + (fifo * others * (m - 1)) // S if S else 0
    return int(max(stationary, tagged))


def _pick(rates: np.ndarray, limit: int) -> list[int]:
    """All clients, or ``limit`` of them spread evenly over the speed order (fastest first)."""
    order = np.argsort(-rates, kind="stable")
    if rates.size <= limit:
        return sorted(range(rates.size), key=lambda i: list(order).index(i))
    return [int(order[k]) for k in np.unique(np.round(np.linspace(0, rates.size - 1, limit)).astype(int))]


def _segments(start: np.ndarray, end: np.ndarray, t0: float, t1: float) -> list[list[float]]:
    a, b = np.maximum(start, t0), np.minimum(end, t1)
    keep = np.isfinite(a) & np.isfinite(b) & (b > a)
    return [[float(x), float(y)] for x, y in zip(a[keep], b[keep])]


def _timeline(trace: Trace, rates: np.ndarray, names: list[str], U: int, window: tuple[float, float] | None,
              clients: Sequence[int] | None) -> dict[str, Any]:
    order = trace.update_order[:U]
    if window is None:
        k = min(U, max(60, 12 * trace.concurrency), 400)
        window = (0.0, float(trace.completion_time[order[k - 1]]))
    t0, t1 = window
    last = float(trace.completion_time[order[U - 1]])
    require(t1 > t0 >= 0 and t1 <= RATE_RANGE[1], "window",
            f"must be START:END with 0 <= START < END <= {RATE_RANGE[1]:g} (got {t0:g}:{t1:g})")
    require(t0 < last, "window", f"must start before the last update shown, at time {last:g} (got START {t0:g})")
    lanes = list(clients) if clients is not None else _pick(rates, TIMELINE_CLIENTS)
    # a task still in flight at the end of the trace has NaN times for the stages it did not reach
    end_or = lambda a: np.where(np.isnan(a), np.inf, a)  # noqa: E731
    disp, dl, cs, ce, done = (trace.dispatch_time, end_or(trace.downlink_end), end_or(trace.compute_start),
                              end_or(trace.compute_end), end_or(trace.completion_time))
    states = {"queue": (dl, cs), "service": (cs, ce), "transit_down": (disp, dl), "transit_up": (ce, done)}
    seg: dict[str, dict[str, list]] = {"queue": {}, "service": {}, "transit": {}}
    for i in lanes:
        mask = trace.client == i
        for key, (a, b) in states.items():
            s = _segments(a[mask], b[mask], t0, t1)
            name = "transit" if key.startswith("transit") else key
            seg[name].setdefault(str(i), []).extend(s)
    for name in seg:
        for i in lanes:
            seg[name][str(i)].sort()
    # how many tasks wait in each shown client's queue, over the window
    waiting: dict[str, dict[str, list]] = {}
    for i in lanes:
        mask = (trace.client == i) & (cs > dl)
        a, b = np.sort(dl[mask]), np.sort(cs[mask])
        g = np.unique(np.concatenate([[t0], a[(a > t0) & (a < t1)], b[(b > t0) & (b < t1)]]))
        c = np.searchsorted(a, g, side="right") - np.searchsorted(b, g, side="right")
        waiting[str(i)] = {"time": g.tolist(), "count": c.astype(int).tolist()}
    # how many of the m tasks are in each state at each moment (all clients)
    bounds = [np.asarray([t0])]
    for a, b in states.values():
        bounds += [a[(a > t0) & (a < t1)], b[(b > t0) & (b < t1)]]
    grid = np.unique(np.concatenate(bounds))
    counts = {}
    for name, keys in (("queue", ["queue"]), ("service", ["service"]), ("transit", ["transit_down", "transit_up"])):
        c = np.zeros(grid.size)
        for key in keys:
            a, b = states[key]
            ok = b > a
            sa, sb = np.sort(a[ok]), np.sort(b[ok])
            c += np.searchsorted(sa, grid, side="right") - np.searchsorted(sb, grid, side="right")
        counts[name] = c.astype(int).tolist()
    return {"window": [t0, t1], "clients": lanes, "names": names, "rates": rates.tolist(), "n_clients": len(rates),
            "concurrency": int(trace.concurrency), "segments": seg, "waiting": waiting,
            "counts": {"time": grid.tolist(), **counts}}


def schedule_data(trace: Trace, system: System | None = None, updates: int | None = None,
                  window: tuple[float, float] | None = None, clients: Sequence[int] | None = None,
                  exact: bool = True, exact_limit: int = EXACT_STATE_LIMIT) -> dict[str, Any]:
    """The timeline, delay histograms and arrival shares of a trace (module docstring), over its
    first ``updates`` arrivals (default all). ``system`` gives the closed forms (default
    :func:`system_of`); ``clients`` restricts the timeline to these client indices."""

    n = trace.n_clients
    system = system if system is not None else system_of(trace)
    U = trace.num_updates if updates is None else int(updates)
    require(1 <= U <= trace.num_updates, "updates", f"must be in [1, {trace.num_updates}] (got {U})")
    if clients is not None:
        bad = [c for c in clients if not 0 <= int(c) < n]
        require(not bad, "clients", f"client indices must be in [0, {n - 1}] (got {bad[0] if bad else ''})")
    rates = system.rates if system is not None else np.full(n, np.nan)
    names = [c.name or f"client {i}" for i, c in enumerate(system.clients)] if system is not None else \
        [f"client {i}" for i in range(n)]
    order = trace.update_order[:U]
    who = trace.client[order]
    delay = trace.relative_delay[order]
    routing = trace.routing if trace.routing is not None else (system.routing if system is not None else None)
    # closed forms and the exact law
    cf, exact_pmf, notes = None, None, []
    if system is not None:
        a = analyze(system)
        cf = np.asarray(a.relative_delay, dtype=float)
        if not system.is_product_form:
            notes.append("closed-form mean is an approximation (" + system.describe_product_form() + ")")
    else:
        notes.append("the trace does not record its system: no closed form")
    shown = _pick(np.nan_to_num(rates, nan=1.0), HISTOGRAM_CLIENTS)
    max_d = int(max((delay[who == i].max() for i in shown if np.any(who == i)), default=0))
    if exact and system is not None and system.is_product_form:
        states = delay_chain_states(system)
        if states <= exact_limit:
            from .queueing.ctmc import relative_delay_distribution  # lazy: scipy

            exact_pmf = relative_delay_distribution(system, max_delay=max_d + 1, max_states=exact_limit)
        else:
            notes.append(f"exact law not drawn: its chain has {states:,} states (> {exact_limit:,}); closed-form "
                         "mean only")
    elif exact and system is not None:
        notes.append("exact law not drawn: the brute-force chain needs exponential service")
    per_client = []
    for i in shown:
        d = delay[who == i]
        counts = np.bincount(d, minlength=1) if d.size else np.zeros(1, dtype=int)
        display = int(max(1, np.quantile(d, 0.995))) if d.size else 1
        entry = {"client": int(i), "name": names[i], "rate": float(rates[i]),
                 "p": float(routing[i]) if routing is not None else float("nan"), "updates": int(d.size),
                 "counts": counts.tolist(), "mean": float(d.mean()) if d.size else None,
                 "display_max": min(display, len(counts) - 1) if d.size else 1,
                 "closed_form_mean": None if cf is None or not np.isfinite(cf[i]) else float(cf[i]),
                 "exact_pmf": None if exact_pmf is None or not np.all(np.isfinite(exact_pmf[i])) else
                 exact_pmf[i].tolist()}
        per_client.append(entry)
    # arrival share against p
    arrivals = np.bincount(who, minlength=n)
    share = {"updates": U, "counts": arrivals.tolist(), "share": (arrivals / U).tolist()}
    if routing is not None:
        p = np.asarray(routing, dtype=float)
        T = U + trace.concurrency  # dispatches behind U arrivals
        half = 1.959964 * np.sqrt(p * (1 - p) / T)
        share.update({"p": p.tolist(), "expected_lo": np.maximum(p - half, 0).tolist(),
                      "expected_hi": np.minimum(p + half, 1).tolist(), "dispatches": T})
    return json_safe({"n_clients": n, "concurrency": int(trace.concurrency), "updates": U,
                      "horizon": float(trace.completion_time[order[-1]]),
                      "timeline": _timeline(trace, np.nan_to_num(rates, nan=0.0), names, U, window, clients),
                      "delays": {"clients": per_client, "note": "; ".join(notes) or None,
                                 "exact": exact_pmf is not None,
                                 "closed_form_exact": system is not None and system.is_product_form},
                      "share": share if routing is not None else None})


def schedule_figures(source: str | Path | Trace, out: str | Path, window: tuple[float, float] | None = None,
                     clients: Sequence[int] | None = None, exact: bool = True) -> tuple[list[Path], dict[str, Any]]:
    """Draw the three schedule figures of a trace, trace file or run folder into ``out`` and save
    their data as ``out/schedule.json``. Returns ``(paths, data)``."""

    if isinstance(source, Trace):
        trace, arrivals, results = source, None, None
    else:
        trace, arrivals, results = load_schedule(source)
    data = schedule_data(trace, system_of(trace, results), updates=arrivals, window=window, clients=clients,
                         exact=exact)
    paths = plots.schedule_timeline_figure(data, out) + plots.schedule_delay_figure(data, out)
    if data["share"] is not None:
        paths += plots.schedule_share_figure(data, out)
    paths.append(atomic_write_json(Path(out) / "schedule.json", data, indent=1))
    return paths, data

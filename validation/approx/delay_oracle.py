"""Is the delay formula or the queue approximation the limit? An oracle test.

The approximate analysis (docs/theory.md section 9.3, "Delays") computes per-client relative delays
with the arrival-theorem form ``E[D_i] = E_{m-1}[Y_i] / p_i`` (single-stage systems), feeding it
the approximate time-average queues of the network with ``m - 1`` tasks. On the validation grid
of :mod:`validation.approx.experiment` its delays are within 3% at only about a third of the points.
Two things could be at fault: the approximate queues, or the formula itself. This experiment
separates them: it replaces the approximate ``E_{m-1}[Y_i]`` by the *simulated* time-average
queues of the same system with ``m - 1`` tasks (the oracle) and scores the formula against the
delays simulated at ``m`` that the approx validation already saved (``validation/approx/results/
cells``; nothing at ``m`` is re-simulated). If the oracle fails as often as the approximation, no
better queue approximation can rescue the formula: the update-epoch (Palm) state of the network
must be modelled (docs/theory.md section 9.7).

A second oracle tests the best case of Marie's method, the other MVA-family route for general
service (docs/theory.md section 9.8): each client's departure rate given the number of tasks it
holds, ``r_i(k)``, is *measured* in a simulation of the system itself (at ``m``; a seed of its
own), and the delays are the arrival-theorem delays of the load-dependent product-form network
with those rates (:func:`validation.approx.load_dependent.load_dependent_mean_queues`).

A third, the *queue-state projection* (:func:`projected_delays`), keeps the simulated path's
queue lengths and replaces each client's true departure intensity by its mean given its queue:
the best case of any method whose intensities are functions of queue lengths.

Jobs: for the first oracle, one per main-grid point of the approx validation with ``m >= 3``
(single stage, heterogeneous family); for the second and third, one per main-grid point. At
``m = 2`` the network with one task is exact for every law (``E_1[Y_i] = d_i / sum_j d_j``), so
the first oracle needs no simulation there: it is computed in the summary. Records and their
``code_version`` (the package's and this study's code, :data:`CODE`) are saved as each job
finishes (:func:`aflqueue.jobs.run_jobs`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from aflqueue.jobs import JobStore, run_jobs
from aflqueue.stats import Estimate, t_quantile
from validation.approx.experiment import (CODE, CONFIDENCE, CRITERION, LAW_OF_CV, WARMUP, Point, grid, main_grid,
                                          simulate_point)

__all__ = ["ORACLE_PROTOCOL", "oracle_jobs", "run_oracle_point", "run_marie_point", "oracle_delays",
           "marie_rates", "perfect_pass_probability", "summarize_oracle", "run_delay_oracle", "CODE"]

ORACLE_PROTOCOL_VERSION = 2  # 2: the cross projection added (the first oracle's jobs are unchanged)
ORACLE_SEED_BASE = 600_000  # point k of the approx grid: seed 600_000 + 100 k (disjoint from the grid's)
MARIE_SEED_BASE = 700_000  # the second oracle's simulation of point k at m: 700_000 + 100 k
MIN_DEPARTURES = 100  # a measured r_i(k) is used when it rests on at least this many departures
PROFILE_STATES = 8  # the report keeps each type's r(k) / r(1) for k = 1..8

ORACLE_PROTOCOL = """\
**Protocol (`ORACLE_PROTOCOL_VERSION` 2; version 1 fixed after a look at 8 points, before the rest).**
Points: the 240 delay-judged points of the approx validation's main grid (heterogeneous family,
single stage, m >= 2, deterministic and lognormal cv 0.5 to 3). For each, the same system (rates,
routing, law) with m - 1 tasks is simulated once (updates per replication as in the approx
protocol, one replication, seed 600_000 + 100 k for grid point k; first 10% discarded; 20 time
batches; 95% t-intervals) and its time-average number of tasks at each speed type's clients is
estimated. At m = 2 the one-task network is exact for every law and is computed, not simulated.
Oracle delay of type g: sum of E_{m-1}[Y_j] over the type's clients divided by the type's routing
mass (the arrival-theorem form of docs/theory.md section 9.3 with exact time averages, pooled
task-weighted as in the approx validation). It is scored against the delays simulated at m that
the approx validation saved, by the same criterion (every type within 3%), next to the product
form and the approximation from the same records.

*Second and third oracles (fixed after a look at 3 points, before their run).* Each main-grid
point is simulated again at its own m (one replication, updates as above, seed 700_000 + 100 k,
first 10% discarded). For each client, the departure rate given k tasks held, r_i(k) =
departures at k / time at k, is measured; states with fewer than 100 departures take the rate of
the nearest smaller k that has them. *Marie at its best:* the delays of the product-form network
of load-dependent stations with these rates (arrival theorem: E_{m-1}[Y_i] of that network over
p_i), pooled per type and scored as above. *Queue-state projection:* along the simulated path,
each task's sojourn integral of sum_l r_l(Y_l(t)) minus 1 (its own update), averaged per type and
scored against the delays simulated on the same path (the difference is then only the
projection's error, not sampling noise between runs).

*Version 2 (added after version 1's results, as a diagnostic of where the projection fails):*
the *cross projection* counts the task's own client exactly (the tasks found ahead leave before
it, FIFO) and projects only the other clients' terms; scored like the projection. The simulations
and the other oracles are unchanged. The two projections are scored on their own path; the
first two oracles, the approximation and the product form against the approx validation's
records of the same systems.
"""


def _points() -> list[tuple[int, Point]]:
    """``(grid index, point)`` of the delay-judged main-grid points, in grid order."""
    pts = list(enumerate(grid()))
    judged = {r["id"] for r in main_grid([{"id": p.id, "family": p.family, "multistage": p.multistage, "m": p.m}
                                          for _, p in pts]) if not r["id"].startswith("homo")}
    return [(k, p) for k, p in pts if p.id in judged]


def oracle_jobs(only: Sequence[str] | None = None) -> list[tuple[str, tuple[str, int, int]]]:
    """The simulation jobs ``(id, (kind, grid index, updates))``: ``"oracle"`` for every
    delay-judged point with m >= 3, then ``"marie"`` for every delay-judged point."""
    pts = _points()
    jobs = [(f"oracle_{p.id}", ("oracle", k, p.budget(False)[1])) for k, p in pts if p.m >= 3]
    jobs += [(f"marie_{p.id}", ("marie", k, p.budget(False)[1])) for k, p in pts]
    if only is not None:
        jobs = [j for j in jobs if j[0].split("_", 1)[1] in set(only)]
    return jobs


def _settings(args: tuple[str, int, int]) -> dict[str, Any]:
    kind, k, updates = args
    pt = grid()[k]
    seed = (ORACLE_SEED_BASE if kind == "oracle" else MARIE_SEED_BASE) + 100 * k
    return {"protocol_version": 1 if kind == "oracle" else ORACLE_PROTOCOL_VERSION, "kind": kind, "point": pt.id,
            "m_simulated": pt.m - 1 if kind == "oracle" else pt.m, "law": pt.law, "updates": int(updates),
            "replications": 1, "seed": seed, "min_departures": MIN_DEPARTURES}


def _run_job(args: tuple[str, int, int]) -> dict[str, Any]:
    """Job function (module level: picklable for every backend)."""
    kind, k, updates = args
    return run_oracle_point((k, updates)) if kind == "oracle" else run_marie_point((k, updates))


def run_oracle_point(args: tuple[int, int]) -> dict[str, Any]:
    """Simulate grid point ``k``'s system with ``m - 1`` tasks; the per-type time-average queues."""
    k, updates = args
    pt = grid()[k]
    smaller = dataclasses.replace(pt, m=pt.m - 1)
    sim = simulate_point(smaller.system(), pt.types(), 1, updates, ORACLE_SEED_BASE + 100 * k)
    return {"point": pt.id, "index": k, "n": pt.n, "m": pt.m, "cv": pt.cv, "routing": pt.routing,
            "queue_m_minus_1": sim["queue"], "throughput_m_minus_1": sim["throughput"],
            "updates_used": sim["updates_used"]}


def marie_rates(departures: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Measured departure rates ``r_i(k)``, shape ``(n, m + 1)``, from the counts of
    :func:`aflqueue.sim.estimate.departure_rates_by_queue`: a state with fewer than
    :data:`MIN_DEPARTURES` departures takes the rate of the nearest smaller ``k`` that has them
    (the client's overall rate when none has)."""
    n, width = departures.shape
    r = np.empty((n, width))
    for i in range(n):
        last = departures[i, 1:].sum() / max(time[i, 1:].sum(), 1e-300)
        for k in range(width):
            if k >= 1 and departures[i, k] >= MIN_DEPARTURES:
                last = departures[i, k] / time[i, k]
            r[i, k] = last
    return r


def projected_delays(trace: Any, rates: np.ndarray, start: float) -> dict[str, np.ndarray]:
    """Per task dispatched after ``start`` and applied (single-stage traces): its client, its
    simulated delay, the *queue-state projection* ``int_sojourn sum_l r_l(Y_l(t)) dt - 1`` and the
    *cross projection*, which counts the task's own client exactly (the ``A`` tasks found ahead)
    and projects only the others: ``A + int_sojourn sum_{l != i} r_l(Y_l(t)) dt``.

    ``rates[l, k]``: client ``l``'s departure rate given ``k`` tasks, shape ``(n, m + 1)``;
    ``Y_l(t)``: the tasks it holds at ``t`` on the simulated path. Over a sojourn, the number of
    updates minus the integral of their true stochastic intensity has mean zero (optional
    stopping). The projection replaces that intensity, which depends on every client's service
    age, by its conditional mean given each client's own queue, so its error is exactly what
    queue-length information cannot explain (docs/theory.md section 9.8); the cross projection's
    error is the part due to the other clients.
    """
    r = np.asarray(rates, dtype=float).copy()
    r[:, 0] = 0.0
    applied = trace.completed
    tasks = np.flatnonzero(applied)
    t_in, t_out, cl = trace.dispatch_time[tasks], trace.uplink_end[tasks], trace.client[tasks]
    # every task still in flight at the end holds its client until after the last event
    late = np.flatnonzero(~applied)
    times = np.concatenate([t_in, t_out, trace.dispatch_time[late]])
    step = np.concatenate([np.ones(tasks.size, np.int64), -np.ones(tasks.size, np.int64),
                           np.ones(late.size, np.int64)])
    who = np.concatenate([cl, cl, trace.client[late]])
    order = np.lexsort((step, times))  # departures first at equal times
    times, step, who = times[order], step[order], who[order]
    # each client's count before and after each of its events, in global time order
    by_client = np.argsort(who, kind="stable")
    running = np.cumsum(step[by_client])
    first = np.r_[0, np.flatnonzero(np.diff(who[by_client])) + 1]
    offsets = np.zeros(running.size, np.int64)
    offsets[first] = np.r_[0, running[first[1:] - 1]]
    after = np.empty(running.size, np.int64)
    after[by_client] = running - np.maximum.accumulate(offsets)
    before = after - step
    intensity = np.cumsum(r[who, after] - r[who, before])  # sum_l r_l(Y_l) right after each event
    gaps = np.diff(times, append=times[-1])
    cum = np.r_[0.0, np.cumsum(intensity * gaps)]  # cum[e] = integral up to event e
    where = np.empty(times.size, np.int64)
    where[order] = np.arange(times.size)
    k = tasks.size
    integral = cum[where[k:2 * k]] - cum[where[:k]]
    # the same integral of the task's own client's term alone, along that client's events
    t_bc = times[by_client]
    gap_bc = np.diff(t_bc, append=t_bc[-1])
    gap_bc[np.r_[first[1:] - 1, t_bc.size - 1]] = 0.0  # a client's last event closes nothing
    own_cum = np.empty(times.size)
    own_cum[by_client] = np.r_[0.0, np.cumsum(r[who[by_client], after[by_client]] * gap_bc)[:-1]]
    own = own_cum[where[k:2 * k]] - own_cum[where[:k]]
    ahead = before[where[:k]]  # FIFO: exactly these leave before the task, then the task itself
    keep = t_in > start
    return {"client": cl[keep], "simulated": trace.relative_delay[tasks][keep].astype(float),
            "projected": integral[keep] - 1.0, "cross_projected": (ahead + integral - own)[keep]}


def run_marie_point(args: tuple[int, int]) -> dict[str, Any]:
    """Simulate grid point ``k`` at its own ``m`` and measure ``r_i(k)``. Per type: the delays of
    the load-dependent product-form network with those rates (``delay``), the queue-state
    projection along the simulated path (``projected_delay``, :func:`projected_delays`) and the
    delays simulated on that path (``path_delay``); each type's rate profile ``r(k) / r(1)``
    (pooled over the type's clients) and both throughputs."""
    from validation.approx.load_dependent import load_dependent_mean_queues
    from aflqueue.sim import simulate
    from aflqueue.sim.estimate import departure_rates_by_queue

    k, updates = args
    pt = grid()[k]
    system, types = pt.system(), pt.types()
    G = int(types.max()) + 1
    trace = simulate(system, updates, seed=MARIE_SEED_BASE + 100 * k)
    deps, held = departure_rates_by_queue(trace, warmup=WARMUP)
    window = float(held[0].sum())
    r = marie_rates(deps, held)
    up = trace.updates()
    paths = projected_delays(trace, r, float(up["time"][int(round(WARMUP * up["time"].size)) - 1]))
    del trace, up
    by_type = types[paths["client"]]
    sim_path = [float(paths["simulated"][by_type == g].mean()) for g in range(G)]
    projected = [float(paths["projected"][by_type == g].mean()) for g in range(G)]
    cross = [float(paths["cross_projected"][by_type == g].mean()) for g in range(G)]
    p = system.routing
    _, q = load_dependent_mean_queues(p, r, pt.m - 1)
    lam_equivalent, _ = load_dependent_mean_queues(p, r, pt.m)
    mass = np.bincount(types, weights=p, minlength=G)
    td = np.array([deps[types == g].sum(axis=0) for g in range(G)])
    th = np.array([held[types == g].sum(axis=0) for g in range(G)])
    top = min(PROFILE_STATES, pt.m)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = (td[:, 1:top + 1] / th[:, 1:top + 1]) / (td[:, 1:2] / th[:, 1:2])
    return {"point": pt.id, "index": k, "n": pt.n, "m": pt.m, "cv": pt.cv, "routing": pt.routing,
            "delay": (np.bincount(types, weights=q, minlength=G) / mass).tolist(),
            "path_delay": sim_path, "projected_delay": projected, "cross_projected_delay": cross,
            "rate_profile": [[None if not math.isfinite(x) else float(x) for x in row] for row in profile],
            "throughput_equivalent": lam_equivalent, "throughput_simulated": float(deps.sum() / window),
            "updates_used": int(deps.sum())}


def oracle_delays(pt: Point, queue_m_minus_1: Sequence[float] | None) -> np.ndarray:
    """Per-type oracle delays (updates) of point ``pt``: the arrival-theorem form with the given
    per-type time-average queues at ``m - 1`` (``None`` at ``m = 2``: the exact one-task network)."""
    system = pt.system()
    types = pt.types()
    G = int(types.max()) + 1
    mass = np.bincount(types, weights=system.routing, minlength=G)
    if queue_m_minus_1 is None:
        if pt.m != 2:
            raise ValueError("the queues at m - 1 are needed unless m = 2")
        demand = system.routing / system.rates
        q = np.bincount(types, weights=demand / demand.sum(), minlength=G)
    else:
        q = np.asarray(queue_m_minus_1, dtype=float)
    return q / mass


def perfect_pass_probability(delays: Sequence[dict[str, Any]], criterion: float = CRITERION) -> float:
    """Probability that an analysis equal to the true delays passes a point (every type within
    ``criterion`` of the simulated mean), given each type's saved estimate
    (:meth:`aflqueue.stats.Estimate.to_dict`, a 95% t-interval): its error is taken as normal with
    the interval's standard error. The mean over points is the share a perfect analysis could reach."""
    from scipy.stats import norm

    prob = 1.0
    for e in delays:
        est = Estimate.from_dict(e)
        se = est.half_width / t_quantile(CONFIDENCE, est.n - 1)
        prob *= 1.0 if se == 0 else float(2 * norm.cdf(criterion * est.mean / se) - 1)
    return prob


def _rel_err(a: float, s: float) -> float:
    return (a - s) / s


def _max_rel(a: Sequence[float], s: Sequence[float]) -> float:
    return float(max(abs(x - y) / y for x, y in zip(a, s)))


def summarize_oracle(oracle_records: Sequence[dict[str, Any]], approx_records: Sequence[dict[str, Any]]
                     ) -> dict[str, Any]:
    """Per point: the worst-type relative delay error of the oracle, the approximation and the
    product form against the delays simulated at ``m`` (``approx_records``); and the share of
    points within :data:`CRITERION` overall and per cv and per n. Points without both records are
    left out (and counted)."""
    by_point = {r["point"]: r for r in oracle_records if r.get("id", "").startswith("oracle_")}
    marie = {r["point"]: r for r in oracle_records if r.get("id", "").startswith("marie_")}
    approx_by_id = {r["id"]: r for r in approx_records}
    rows = []
    missing = 0
    for _, pt in _points():
        rec = approx_by_id.get(pt.id)
        orc = by_point.get(pt.id)
        if rec is None or (pt.m >= 3 and orc is None):
            missing += 1
            continue
        q = None if pt.m == 2 else [Estimate.from_dict(e).mean for e in orc["queue_m_minus_1"]]
        sim = [e["mean"] for e in rec["simulation"]["delay"]]
        mr = marie.get(pt.id)
        rows.append({"point": pt.id, "n": pt.n, "m": pt.m, "cv": pt.cv, "routing": pt.routing,
                     "simulated": sim, "oracle_delay": oracle_delays(pt, q).tolist(),
                     "oracle": _max_rel(oracle_delays(pt, q), sim),
                     "marie": None if mr is None else _max_rel(mr["delay"], sim),
                     "marie_delay": None if mr is None else mr["delay"],
                     "projection": None if mr is None else _max_rel(mr["projected_delay"], mr["path_delay"]),
                     "cross_projection": None if mr is None else _max_rel(mr["cross_projected_delay"],
                                                                          mr["path_delay"]),
                     "marie_throughput": None if mr is None else _rel_err(mr["throughput_equivalent"],
                                                                          mr["throughput_simulated"]),
                     "approx": _max_rel(rec["approx"]["delay"], sim),
                     "perfect_pass": perfect_pass_probability(rec["simulation"]["delay"]),
                     "product_form": _max_rel(rec["product_form"]["delay"], sim)})

    def share(sel: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"points": len(sel)}
        for key in ("oracle", "marie", "projection", "cross_projection", "approx", "product_form"):
            x = np.array([r[key] for r in sel if r[key] is not None])
            out[key] = ({"count": int(x.size), "within_3pct": float(np.mean(x <= CRITERION)),
                         "median": float(np.median(x)),
                         "p95": float(np.quantile(x, 0.95)), "max": float(x.max())} if x.size else None)
        return out

    return {"all": share(rows),
            "perfect_analysis_share": float(np.mean([r["perfect_pass"] for r in rows])) if rows else None,
            "by_cv": {f"{cv:g}": share([r for r in rows if r["cv"] == cv]) for cv in sorted(LAW_OF_CV)},
            "by_n": {str(n): share([r for r in rows if r["n"] == n]) for n in sorted({r["n"] for r in rows})},
            "m2": share([r for r in rows if r["m"] == 2]), "m3plus": share([r for r in rows if r["m"] >= 3]),
            "rows": rows, "missing": missing}


def run_delay_oracle(out: str | Path, approx_records: Sequence[dict[str, Any]], backend: str = "serial",
                     workers: int | None = None, progress: Callable[[str], None] | None = print,
                     only: Sequence[str] | None = None, limit: int | None = None) -> dict[str, Any]:
    """Run the missing oracle jobs into ``out`` (resumable) and return :func:`summarize_oracle`
    with ``meta`` (code versions, updates simulated)."""
    jobs = oracle_jobs(only)
    records = run_jobs(jobs, _run_job, JobStore(Path(out)), backend=backend, workers=workers,
                       progress=progress, settings=_settings, limit=limit, code=CODE)
    mine = [r for r in records if r.get("id", "").startswith(("oracle_", "marie_"))]
    summary = summarize_oracle(mine, approx_records)
    def versions(recs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        seen = sorted({(r["code_version"]["source"], r["code_version"].get("commit") or "") for r in recs})
        return [{"source": s, "commit": c or None} for s, c in seen]

    summary["meta"] = {"protocol_version": ORACLE_PROTOCOL_VERSION, "code_versions": versions(mine),
                       "code_versions_by_kind": {kind: versions([r for r in mine if r["id"].startswith(kind + "_")])
                                                 for kind in ("oracle", "marie")},
                       "updates_used": int(sum(r["updates_used"] for r in mine)),
                       "simulated_points": len(mine),
                       "simulated_by_kind": {kind: sum(r["id"].startswith(kind + "_") for r in mine)
                                             for kind in ("oracle", "marie")},
                       "approx_code_versions": sorted({r["code_version"]["source"] for r in approx_records
                                                       if "code_version" in r})}
    return summary

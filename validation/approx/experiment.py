"""The approximation for general service vs simulation, next to the product form (docs/theory.md section 9).

A fixed protocol (:data:`PROTOCOL`, stated at the top of the report) over a grid of systems:
each grid point is simulated and analysed with both the product form
(:func:`aflqueue.queueing.analyze`, exact for exponential service) and the approximation
(:func:`aflqueue.queueing.approx.approx_analyze`); for a few systems, the routings that the
wall-clock optimiser finds with each analysis are both simulated ("item 3" of the protocol).

Every grid point and every optimisation comparison is one job of :func:`aflqueue.jobs.run_jobs`,
so an interrupted experiment resumes job by job (records stamped with the package's and, from this
study's move out of the package on, this study's own code: :data:`CODE`).
Results folder (``out``):

* ``cells/<id>.json`` -- one record per job, id the point's id (``hetero_n10_m20_uniform_cv1.5``,
  ``ms_fifo_n10_cv2``, ...) or the optimisation system's (``opt_hetero_n10_m10_cv3``), with
  ``__quick`` appended in quick mode; each holds its ``settings`` (protocol version, law, budget,
  seeds, estimator settings, digest of the system) and the ``code_version`` it was computed with;
* ``timings/<id>.json`` -- simulation, analysis and optimiser seconds of that job;
* ``approx.json`` -- the summary of one invocation (:func:`assemble` without the records, which
  stay in ``cells/``): metadata, error distributions per subset, optimisation records.

The report is :func:`validation.approx.report.write_approx_report` and the figure
:func:`validation.approx.figures.approx_error_figure`; the oracle tests of the delay formula that
build on these records are :mod:`validation.approx.delay_oracle`.

Conventions: relative error = (analysis - simulation) / simulation; intervals are 95%
t-intervals over pooled batch means (:mod:`aflqueue.stats`).
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from aflqueue.errors import require
from aflqueue.io import atomic_write_json, json_digest
from aflqueue.stats import Estimate, batch_means, t_interval
from aflqueue.jobs import JobStore, run_jobs
from aflqueue.system import System
from validation import code

__all__ = ["PROTOCOL", "PROTOCOL_VERSION", "Point", "grid", "OPT_SYSTEMS", "jobs_of", "run_point",
           "run_optimisation", "simulate_point", "batch_values", "point_errors", "summarize", "main_grid",
           "assemble", "keep_stamps", "save_summary", "run_approx", "load_records", "RESULTS_FILE", "LAW_OF_CV",
           "CRITERION", "CODE"]

#: The code outside the package that computes this study's records (stamped into them).
CODE = code("approx")

PROTOCOL_VERSION = 1
FORMAT_VERSION = 2  # 1: the first script's points/ and optimisation/ files; 2: one record per job
RESULTS_FILE = "approx.json"

PROTOCOL = """\
**Protocol (fixed before any result of this grid was computed; `PROTOCOL_VERSION` 1).**

*Grid.* Compute-time laws: cv 0 = deterministic; cv 0.5, 1, 1.5, 2, 3 = lognormal with that
coefficient of variation (FL traces are close to lognormal; cv 1 is lognormal, not exponential:
exponential service is exact for both analyses). Main family ("hetero"): n in {2, 3, 5, 10, 20,
50, 100} clients of T = min(n, 4) speed types with base rates 10^(-j/(T-1)), j = 0..T-1 (a 10x
spread), client i of type i mod T, each rate multiplied by exp(U(-0.1, 0.1)) (seeded by n; this
jitter avoids the artificial lattice of exactly commensurate deterministic service times,
where simultaneous completions and their tie-breaking dominate); concurrency m in
{max(2, round(n/4)), n, 2n}; routing uniform (AsyncSGD: slow clients become bottlenecks, heavy
load) or proportional to the rates (equal load on every client). 240 points. "homo" family: n in
{5, 20, 100}, all base rates 1 (with the jitter), uniform routing, m = n (18 points; there the
type-pooled delay is m - 1 for any law, so only throughput is informative). Multi-stage
(SimPy): 6 systems with FIFO/delay links and a FIFO/delay central server, non-exponential
compute (and in one system non-exponential links and server). m = 1 checks: 4 points.
Other laws (not in the acceptance set; they show what two moments miss): gamma cv 3 and Weibull
shape 0.5 on two systems (4 points).

*Simulation.* Single-stage points use the compiled fast path, multi-stage points the SimPy
model (`aflqueue.sim.simulate`). Updates per replication and replications: cv 0 and 0.5: 1 x
2,000,000; cv 1: 1 x 3,000,000; cv 1.5: 1 x 4,000,000; cv 2: 2 x 3,000,000; cv 3: 3 x
4,000,000; multi-stage: 1 x 400,000. Seeds: point k of the grid (in the order of `grid()`)
uses seed 18_000 + 100 k + replication. Estimation: the first 10% of the updates of each
replication are discarded; 20 batches per replication (time windows for throughput and queue
lengths, contiguous blocks of each type's update sequence for delays); the batch means of all
replications are pooled; 95% t-intervals.

*Quantities compared.* Throughput; per speed type (clients pooled, task-weighted, the same
pooling on both sides): the mean relative delay E[D] (updates) and the mean number of tasks at
the type's clients. Relative error = (analysis - simulation) / simulation.

*Criteria (the issue's bar).* A point passes for throughput if |error| <= 3%; for delays if
every type's |error| <= 3% (points with m = 1, where E[D] = 0, are excluded from the delay
criterion; so is the "homo" family). Primary delay error: the plain relative error above.
Secondary (reported next to it, not replacing it): the error divided by max(E[D], 1), i.e.
absolute error in updates for delays below one update. A criterion is met if it holds at >= 95%
of the points; the worst case is reported. Each point's interval half-width is reported; an error
is "resolved" when |error| exceeds the relative half-width. Load class of a point: the largest
simulated utilisation of a type's compute stage: light < 0.5 <= moderate < 0.8 <= heavy.

*Item 3.* Wall-clock proxy (P2, default constants and time budget, fixed m, default bounds):
the routing optimised with the product form and the one optimised with the approximation are
both simulated (seed 18_900 + k, updates as above); the proxy is evaluated with the simulated
throughput and simulated per-client delays (`bounds.per_update` at K = lambda tau, S2 from
the simulated E[D_i]); 95% intervals from the 20 batches.
"""

LAW_OF_CV = {0.0: "deterministic", 0.5: "lognormal:cv=0.5", 1.0: "lognormal:cv=1", 1.5: "lognormal:cv=1.5",
             2.0: "lognormal:cv=2", 3.0: "lognormal:cv=3"}
# (replications, updates per replication)
BUDGET = {0.0: (1, 2_000_000), 0.5: (1, 2_000_000), 1.0: (1, 3_000_000), 1.5: (1, 4_000_000),
          2.0: (2, 3_000_000), 3.0: (3, 4_000_000)}
BUDGET_SIMPY = (1, 400_000)
QUICK_DIVISOR = 50  # quick mode: 50x fewer updates (at least QUICK_MIN_UPDATES)
QUICK_MIN_UPDATES = 20_000
WARMUP = 0.1
BATCHES = 20
CONFIDENCE = 0.95
SEED_BASE = 18_000
OPT_SEED_OFFSET = 900  # optimisation system k, replication r: SEED_BASE + 900 + 10 k + r
JITTER = 0.1
CRITERION = 0.03
QUICK_POINTS = ("hetero_n3_m3_uniform_cv3", "hetero_n10_m20_uniform_cv0", "hetero_n5_m5_proportional_cv1.5",
                "ms_fifo_n10_cv2", "m1_n5_cv3")


# --------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class Point:
    """One grid point; :meth:`system` rebuilds the system deterministically."""

    id: str
    family: str
    n: int
    m: int
    cv: float
    law: str
    routing: str
    multistage: str = ""

    def system(self) -> System:
        rates, _ = _rates(self.family, self.n)
        if self.multistage:
            return _multistage(self.multistage, rates, self.m, self.law)
        p = None if self.routing == "uniform" else (rates / rates.sum()).tolist()
        return System.from_rates(rates.tolist(), p, self.m, service=self.law)

    def types(self) -> np.ndarray:
        return _rates(self.family, self.n)[1]

    def budget(self, quick: bool) -> tuple[int, int]:
        """(replications, updates per replication) of the protocol."""
        reps, updates = BUDGET_SIMPY if self.multistage else BUDGET.get(self.cv, BUDGET[3.0])
        return reps, _quick_updates(updates) if quick else updates


def _quick_updates(updates: int) -> int:
    return max(updates // QUICK_DIVISOR, QUICK_MIN_UPDATES)


def _rates(family: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Client rates and speed types of a family (deterministic: the jitter is seeded by n)."""
    rng = np.random.default_rng([7, n])
    jitter = np.exp(rng.uniform(-JITTER, JITTER, n))
    if family == "homo":
        return jitter, np.zeros(n, dtype=np.int64)
    T = min(n, 4)
    base = 10.0 ** (-np.arange(T) / (T - 1)) if T > 1 else np.ones(1)
    types = np.arange(n) % T
    return base[types] * jitter, types


def _multistage(kind: str, rates: np.ndarray, m: int, law: str) -> System:
    """Multi-stage systems: slow clients (types >= 2) also have slow links."""
    from aflqueue.laws import law_from_spec
    from aflqueue.system import Client, Stage

    n = rates.size
    slow = rates < 0.4
    dl = np.where(slow, 0.5, 2.0)
    ul = np.where(slow, 0.25, 1.0)
    links = {"service": law, "downlink_rates": dl, "uplink_rates": ul}
    if kind == "fifo":
        return System.from_rates(rates, None, m, **links, server_rate=1.0 * n / 10)
    if kind == "delay_links":
        return System.from_rates(rates, None, m, **links, downlink_discipline="delay", uplink_discipline="delay",
                                 server_rate=1.0 * n / 10)
    if kind == "delay_server":
        return System.from_rates(rates, None, m, **links, server_rate=0.5 * n / 10, server_discipline="delay")
    if kind == "all_general":  # every FIFO stage non-exponential: links lognormal cv 1.5, server lognormal cv 1
        link = "lognormal:cv=1.5"
        clients = tuple(Client(compute=Stage(law_from_spec(law, mean=1 / r)),
                               downlink=Stage(law_from_spec(link, mean=1 / d)),
                               uplink=Stage(law_from_spec(link, mean=1 / u)),
                               name=f"c{i}") for i, (r, d, u) in enumerate(zip(rates, dl, ul)))
        server = Stage(law_from_spec("lognormal:cv=1", mean=10.0 / n))
        return System(clients, np.full(n, 1.0 / n), m, server)
    raise ValueError(f"unknown multi-stage kind {kind!r}")


def grid(quick: bool = False) -> list[Point]:
    """All points in a fixed order (the order defines the seeds); ``quick``: five of them."""
    pts: list[Point] = []
    cvs = sorted(LAW_OF_CV)
    for n in (2, 3, 5, 10, 20, 50, 100):
        for m in sorted({max(2, round(n / 4)), n, 2 * n}):
            for routing in ("uniform", "proportional"):
                pts += [Point(f"hetero_n{n}_m{m}_{routing}_cv{cv:g}", "hetero", n, m, cv, LAW_OF_CV[cv], routing)
                        for cv in cvs]
    for n in (5, 20, 100):
        pts += [Point(f"homo_n{n}_m{n}_cv{cv:g}", "homo", n, n, cv, LAW_OF_CV[cv], "uniform") for cv in cvs]
    for kind, cv, n in (("fifo", 2.0, 10), ("fifo", 0.0, 10), ("delay_links", 3.0, 10), ("delay_server", 0.0, 10),
                        ("all_general", 2.0, 10), ("fifo", 2.0, 20)):
        pts.append(Point(f"ms_{kind}_n{n}_cv{cv:g}", "hetero", n, n, cv, LAW_OF_CV[cv], "uniform", multistage=kind))
    for n, cv in ((5, 0.0), (5, 3.0), (50, 0.0), (50, 3.0)):
        pts.append(Point(f"m1_n{n}_cv{cv:g}", "hetero", n, 1, cv, LAW_OF_CV[cv], "uniform"))
    for n, (law, cv) in ((5, ("gamma:cv=3", 3.0)), (20, ("gamma:cv=3", 3.0)), (5, ("weibull:shape=0.5", 2.236)),
                         (20, ("weibull:shape=0.5", 2.236))):
        pts.append(Point(f"other_n{n}_{law.replace(':', '_').replace('=', '')}", "hetero", n, n, cv, law, "uniform"))
    if quick:
        pts = [p for p in pts if p.id in QUICK_POINTS]
    return pts


def main_grid(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the main grid (hetero and homo, single stage, m >= 2, lognormal/deterministic)."""
    return [r for r in records if r["family"] in ("hetero", "homo") and not r["multistage"] and r["m"] > 1
            and not r["id"].startswith("other")]


# --------------------------------------------------------------------------- estimation
def batch_values(trace: Any, types: np.ndarray, G: int) -> dict[str, Any]:
    """Per-batch throughput, per-type delay, per-type tasks at client stages, per-type compute
    utilisation and central-server queue of one replication (warm-up removed)."""
    from aflqueue.sim.estimate import interval_integrals

    up = trace.updates()
    U = up["time"].size
    k0 = int(round(WARMUP * U))
    edges = np.linspace(float(up["time"][k0 - 1]), float(up["time"][-1]), BATCHES + 1)
    width = edges[1] - edges[0]
    cl = up["client"][k0:]
    D = up["relative_delay"][k0:].astype(float)
    tg = types[cl]
    delay = np.full((BATCHES, G), np.nan)
    for g in range(G):
        x = D[tg == g]
        if x.size >= BATCHES:
            delay[:, g] = batch_means(x, BATCHES)
    gt = types[trace.client]
    one_group = np.zeros(len(trace), dtype=np.int64)
    return {
        "throughput": np.histogram(up["time"][k0:], bins=edges)[0] / width, "delay": delay,
        "queue": interval_integrals(trace.dispatch_time, trace.uplink_end, gt, G, edges) / width,
        "busy": interval_integrals(trace.compute_start, trace.compute_end, gt, G, edges) / width,
        "server_queue": interval_integrals(trace.uplink_end, trace.completion_time, one_group, 1, edges)[:, 0] / width,
        "per_client_delay": np.bincount(cl, weights=D, minlength=types.size)
        / np.maximum(np.bincount(cl, minlength=types.size), 1),
        "updates_used": int(U - k0)}


def _replications(system: System, types: np.ndarray, reps: int, updates: int, seed0: int) -> list[dict[str, Any]]:
    """:func:`batch_values` of ``reps`` replications seeded ``seed0, seed0 + 1, ...``."""
    from aflqueue.sim import simulate

    G = int(types.max()) + 1
    parts = []
    for r in range(reps):
        tr = simulate(system, updates, seed=seed0 + r, engine="auto")
        parts.append(batch_values(tr, types, G))
        del tr
    return parts


def _est(values: np.ndarray) -> dict[str, Any] | None:
    return t_interval(values, CONFIDENCE).to_dict()


def simulate_point(system: System, types: np.ndarray, reps: int, updates: int, seed0: int) -> dict[str, Any]:
    """Pooled batch-means estimates (:meth:`aflqueue.stats.Estimate.to_dict`) over ``reps``
    replications (see the protocol)."""
    parts = _replications(system, types, reps, updates, seed0)
    G = int(types.max()) + 1
    pooled = {k: np.concatenate([p[k] for p in parts])
              for k in ("throughput", "delay", "queue", "busy", "server_queue")}
    return {
        "throughput": _est(pooled["throughput"]),
        "delay": [_est(pooled["delay"][:, g]) for g in range(G)],
        "queue": [_est(pooled["queue"][:, g]) for g in range(G)],
        "server_queue": _est(pooled["server_queue"]),
        "utilization_by_type": (pooled["busy"].mean(axis=0) / np.bincount(types, minlength=G)).tolist(),
        "per_client_delay": np.mean([p["per_client_delay"] for p in parts], axis=0).tolist(),
        "updates": int(updates), "replications": int(reps), "seeds": [seed0 + r for r in range(reps)],
        "updates_used": int(sum(p["updates_used"] for p in parts)),
        "engine": "simpy" if system.is_multistage else "fast",
    }


# --------------------------------------------------------------------------- one grid point
def _typed(res: Any, system: System, types: np.ndarray) -> dict[str, Any]:
    """Throughput and per-type delay (task-weighted) and queue of an analysis result."""
    p = system.routing
    D, Q = [], []
    for g in range(int(types.max()) + 1):
        mem = types == g
        w = p[mem]
        D.append(float(np.sum(w * res.relative_delay[mem]) / w.sum()) if w.sum() > 0 else math.nan)
        Q.append(float(np.sum(res.mean_queue_lengths[mem])))
    out = {"throughput": float(res.throughput), "delay": D, "queue": Q,
           "relative_delay": [float(x) for x in res.relative_delay]}
    if res.server is not None:
        out["server_queue"] = float(res.server["mean_queue_length"])
    return out


def _best_time(fun: Callable[[], Any], repeat: int = 3) -> float:
    """Fastest of ``repeat`` wall-clock timings of ``fun()`` (seconds)."""
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fun()
        best = min(best, time.perf_counter() - t)
    return best


def run_point(pt: Point, index: int, quick: bool) -> dict[str, Any]:
    """Simulate and analyse grid point ``index`` (the record; seconds under ``timing``)."""
    from aflqueue.queueing import analyze
    from aflqueue.queueing.approx import approx_analyze

    system = pt.system()
    types = pt.types()
    reps, updates = pt.budget(quick)
    t0 = time.perf_counter()
    sim = simulate_point(system, types, reps, updates, SEED_BASE + 100 * index)
    t1 = time.perf_counter()
    ap = approx_analyze(system)
    return {
        "kind": "point", "index": index, "family": pt.family, "n": pt.n, "m": pt.m, "cv": pt.cv, "law": pt.law,
        "routing": pt.routing, "multistage": pt.multistage, "rates": system.rates.tolist(),
        "routing_vector": system.routing.tolist(), "types": types.tolist(),
        "simulation": sim, "product_form": _typed(analyze(system), system, types), "approx": _typed(ap, system, types),
        "approximated_stations": len(ap.approximated),
        "timing": {"simulation_seconds": t1 - t0, "product_form_seconds": _best_time(lambda: analyze(system)),
                   "approx_seconds": _best_time(lambda: approx_analyze(system)),
                   "wall_time": time.perf_counter() - t0},
    }


# --------------------------------------------------------------------------- item 3
OPT_SYSTEMS = (  # (id, family, n, m, cv)
    ("opt_hetero_n10_m10_cv3", "hetero", 10, 10, 3.0),
    ("opt_hetero_n10_m10_cv2", "hetero", 10, 10, 2.0),
    ("opt_hetero_n10_m10_cv0", "hetero", 10, 10, 0.0),
    ("opt_hetero_n20_m20_cv3", "hetero", 20, 20, 3.0),
    ("opt_hetero_n20_m40_cv1.5", "hetero", 20, 40, 1.5),
    ("opt_hetero_n20_m20_cv0", "hetero", 20, 20, 0.0),
)
ANALYSES = ("product-form", "approx")


def _opt_system(spec: tuple) -> System:
    _, family, n, m, cv = spec
    return System.from_rates(_rates(family, n)[0].tolist(), None, m, service=LAW_OF_CV[cv])


def _proxy(problem: Any, p: np.ndarray, lam: float, delays: np.ndarray, tau: float) -> float:
    """Wall-clock proxy W at routing ``p`` with throughput ``lam`` and per-client delays ``delays``."""
    from aflqueue.bounds import per_update, s1, s2

    return float(per_update(problem.constants, s1(p)[0], s2(delays, p), lam * tau).total)


def run_optimisation(spec: tuple, index: int, quick: bool) -> dict[str, Any]:
    """Optimise the wall-clock proxy with each analysis and simulate both routings (item 3)."""
    from aflqueue.optimization import OptimizationProblem, optimize
    from aflqueue.queueing import analyze
    from aflqueue.queueing.approx import approx_analyze

    _, family, n, m, cv = spec
    system = _opt_system(spec)
    types = _rates(family, n)[1]
    reps, updates = BUDGET[cv]
    if quick:
        updates = _quick_updates(updates)
    out: dict[str, Any] = {"kind": "optimisation", "index": index, "n": n, "m": m, "cv": cv, "law": LAW_OF_CV[cv],
                           "rates": system.rates.tolist()}
    timing: dict[str, float] = {}
    t_start = time.perf_counter()
    for analysis in ANALYSES:
        pb = OptimizationProblem(system=system, objective="wallclock", analysis=analysis)
        t = time.perf_counter()
        res = optimize(pb)
        timing[f"{analysis}_optimizer_seconds"] = time.perf_counter() - t
        p = res.routing
        tau = float(res.problem["time_budget"])
        sim_sys = system.with_routing(p)
        parts = _replications(sim_sys, types, reps, updates, SEED_BASE + OPT_SEED_OFFSET + 10 * index)
        thr = np.concatenate([q["throughput"] for q in parts])
        per_client = np.mean([q["per_client_delay"] for q in parts], axis=0)
        # batch-level proxy: throughput per batch with the run's per-client delays (delay noise is
        # second order for this proxy: S2 enters through a term small next to the others)
        vals = np.array([_proxy(pb, p, lam_b, per_client, tau) for lam_b in thr])
        out[analysis] = {
            "routing": p.tolist(), "predicted_objective": float(res.objective_value), "time_budget": tau,
            "predicted_throughput": float(res.throughput), "kkt_residual": res.kkt_residual,
            "simulated_throughput": _est(thr), "simulated_objective": _est(vals),
            "simulated_objective_point": _proxy(pb, p, float(thr.mean()), per_client, tau),
            "product_form_throughput_at_routing": float(analyze(sim_sys).throughput),
            "approx_throughput_at_routing": float(approx_analyze(sim_sys).throughput),
        }
    timing["wall_time"] = time.perf_counter() - t_start
    out["timing"] = timing
    return out


# --------------------------------------------------------------------------- jobs
def _job_id(base: str, quick: bool) -> str:
    return f"{base}__quick" if quick else base


def jobs_of(quick: bool = False, optimisation: bool = True,
            only: Sequence[str] | None = None) -> list[tuple[str, tuple]]:
    """The jobs ``(id, args)`` in protocol order: every grid point (``("point", index, quick)``),
    then the optimisation systems (``("opt", index, quick)``; the first only when ``quick``).
    ``only``: keep the jobs whose point or system id is listed (seeds are unchanged)."""
    jobs = [(_job_id(p.id, quick), ("point", k, quick)) for k, p in enumerate(grid(quick))]
    if optimisation:
        specs = OPT_SYSTEMS[:1] if quick else OPT_SYSTEMS
        jobs += [(_job_id(s[0], quick), ("opt", k, quick)) for k, s in enumerate(specs)]
    if only is not None:
        known = {p.id for p in grid(quick)} | {s[0] for s in OPT_SYSTEMS}
        unknown = sorted(set(only) - known)
        require(not unknown, "points", f"unknown point or system id(s): {', '.join(unknown)}")
        jobs = [j for j in jobs if j[0].removesuffix("__quick") in set(only)]
    return jobs


def _job_settings(args: tuple) -> dict[str, Any]:
    """What a record must have been computed with to be reused (see :func:`run_jobs`)."""
    kind, k, quick = args
    common = {"format": FORMAT_VERSION, "protocol_version": PROTOCOL_VERSION, "quick": quick, "warmup": WARMUP,
              "batches": BATCHES, "confidence": CONFIDENCE}
    if kind == "point":
        pt = grid(quick)[k]
        reps, updates = pt.budget(quick)
        return {**common, "law": pt.law, "replications": reps, "updates": updates,
                "seeds": [SEED_BASE + 100 * k + r for r in range(reps)],
                "system_sha256": json_digest(pt.system().to_dict())}
    spec = OPT_SYSTEMS[k]
    reps, updates = BUDGET[spec[4]]
    return {**common, "law": LAW_OF_CV[spec[4]], "replications": reps,
            "updates": _quick_updates(updates) if quick else updates, "objective": "wallclock", "analyses": ANALYSES,
            "seeds": [SEED_BASE + OPT_SEED_OFFSET + 10 * k + r for r in range(reps)],
            "system_sha256": json_digest(_opt_system(spec).to_dict())}


def _run_job(args: tuple) -> dict[str, Any]:
    """Job function of :func:`run_jobs` (module level: picklable for every backend)."""
    kind, k, quick = args
    if kind == "point":
        return run_point(grid(quick)[k], k, quick)
    return run_optimisation(OPT_SYSTEMS[k], k, quick)


def _describe(rec: dict[str, Any]) -> str:
    if rec["kind"] == "optimisation":
        a, p = rec["approx"], rec["product-form"]
        return (f"simulated W: approx routing {a['simulated_objective_point']:.4g}, "
                f"product-form routing {p['simulated_objective_point']:.4g}")
    s = rec["simulation"]["throughput"]["mean"]
    return (f"throughput error: approx {_pct(_rel(rec['approx']['throughput'], s))}, "
            f"product form {_pct(_rel(rec['product_form']['throughput'], s))}")


def _pct(x: float) -> str:
    return f"{100 * x:+.2f}%"


# --------------------------------------------------------------------------- summary
def _rel(a: float, s: float) -> float:
    return (a - s) / s if s else math.nan


def _half_width(e: dict[str, Any] | None) -> float:
    """Half-width of a saved :meth:`Estimate.to_dict` (NaN when undefined)."""
    return Estimate.from_dict(e).half_width


def point_errors(rec: dict[str, Any]) -> dict[str, Any]:
    """Relative errors of both analyses at one point (see the protocol), the relative half-width
    of the simulated throughput and of the widest per-type delay, and the point's load class."""
    sim = rec["simulation"]
    s_thr = sim["throughput"]["mean"]
    out: dict[str, Any] = {"thr_hw": _half_width(sim["throughput"]) / s_thr}
    delay_judged = rec["m"] > 1 and rec["family"] != "homo"
    for key in ("product_form", "approx"):
        a = rec[key]
        e: dict[str, Any] = {"throughput": _rel(a["throughput"], s_thr)}
        d_rel, d_floor, q_rel = [], [], []
        for g, est in enumerate(sim["delay"]):
            if est is None or a["delay"][g] is None:
                continue
            s = est["mean"]
            d_rel.append(_rel(a["delay"][g], s) if s > 0 else math.nan)
            d_floor.append((a["delay"][g] - s) / max(s, 1.0))
        q_rel = [_rel(a["queue"][g], est["mean"]) for g, est in enumerate(sim["queue"]) if est and est["mean"]]
        e["delay_max"] = float(np.nanmax(np.abs(d_rel))) if delay_judged and d_rel else None
        e["delay_floor_max"] = float(np.max(np.abs(d_floor))) if delay_judged and d_floor else None
        e["delay_by_type"] = d_rel
        e["queue_max"] = float(np.nanmax(np.abs(q_rel))) if q_rel else None
        out[key] = e
    hws = [_half_width(est) / est["mean"] for est in sim["delay"] if est is not None and est["mean"] > 0]
    out["delay_hw_max"] = float(max(hws)) if hws else None
    util = max(sim["utilization_by_type"])
    out["load"] = "light" if util < 0.5 else ("moderate" if util < 0.8 else "heavy")
    out["max_utilization"] = util
    return out


def _dist(values: Sequence[float | None]) -> dict[str, Any]:
    """Median, 95th percentile, largest |value| and the share within :data:`CRITERION`."""
    x = np.abs(np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float))
    if x.size == 0:
        return {"count": 0}
    return {"count": int(x.size), "median": float(np.median(x)), "p95": float(np.quantile(x, 0.95)),
            "max": float(x.max()), "within_3pct": float(np.mean(x <= CRITERION))}


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Error distributions of both analyses over the main grid, overall and per cv, n, load and
    routing; interval widths; per-point errors under ``errors`` (by id)."""
    main = main_grid(records)
    errs = {r["id"]: point_errors(r) for r in records}

    def block(sel: list[dict[str, Any]]) -> dict[str, Any]:
        return {key: {metric: _dist([errs[r["id"]][key][field] for r in sel])
                      for metric, field in (("throughput", "throughput"), ("delay", "delay_max"),
                                            ("delay_floor", "delay_floor_max"), ("queue", "queue_max"))}
                for key in ("product_form", "approx")}

    return {
        "all": block(main),
        "by_cv": {f"{cv:g}": block([r for r in main if r["cv"] == cv]) for cv in sorted(LAW_OF_CV)},
        "by_n": {str(n): block([r for r in main if r["n"] == n]) for n in sorted({r["n"] for r in main})},
        "by_load": {ld: block([r for r in main if errs[r["id"]]["load"] == ld])
                    for ld in ("light", "moderate", "heavy")},
        "by_routing": {rt: block([r for r in main if r["routing"] == rt]) for rt in ("uniform", "proportional")},
        "interval_widths": {"throughput": _dist([errs[r["id"]]["thr_hw"] for r in main]),
                            "delay": _dist([errs[r["id"]]["delay_hw_max"] for r in main])},
        "errors": errs,
    }


# --------------------------------------------------------------------------- driver
def assemble(records: Sequence[dict[str, Any]], quick: bool = False) -> dict[str, Any]:
    """The records of one mode as the results dict ``{"meta", "points", "optimisation", "summary"}``
    (points in grid order, then optimisation systems; records of the other mode are left out)."""
    by_id = {r["id"]: r for r in records}
    points = [by_id[_job_id(p.id, quick)] for p in grid(quick) if _job_id(p.id, quick) in by_id]
    opts = [by_id[_job_id(s[0], quick)] for s in OPT_SYSTEMS if _job_id(s[0], quick) in by_id]
    used = points + opts
    versions = sorted({(r["code_version"]["source"], r["code_version"].get("commit") or "") for r in used})
    meta = {"format": FORMAT_VERSION, "protocol_version": PROTOCOL_VERSION, "quick": quick, "warmup": WARMUP,
            "batches": BATCHES, "confidence": CONFIDENCE, "criterion": CRITERION,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "platform": platform.platform(),
            "code_versions": [{"source": s, "commit": c or None} for s, c in versions],
            "simulation_seconds": float(sum((r.get("timing") or {}).get("simulation_seconds", 0.0) for r in points)),
            "wall_seconds": float(sum((r.get("timing") or {}).get("wall_time", 0.0) for r in used)),
            "updates_used": int(sum(r["simulation"]["updates_used"] for r in points))}
    return {"meta": meta, "points": points, "optimisation": opts, "summary": summarize(points)}


def load_records(out: str | Path) -> list[dict[str, Any]]:
    """Every record saved in the results folder ``out`` (timings merged under ``timing``)."""
    return JobStore(Path(out)).load()


def run_approx(out: str | Path, quick: bool = False, fresh: bool = False, optimisation: bool = True,
               progress: Callable[[str], None] | None = print, backend: str = "serial", workers: int | None = None,
               limit: int | None = None, only: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every missing job (records with the same settings are reused unless ``fresh``), write
    ``out/approx.json`` (the summary, without the records) and return the assembled results.

    ``quick``: five points and one optimisation system with 50x fewer updates (a smoke test, not
    a validation); ``only``: run only these point or system ids; ``limit``: stop after that many
    new jobs (used to test interruption)."""
    out = Path(out)
    jobs = jobs_of(quick, optimisation, only)
    records = run_jobs(jobs, _run_job, JobStore(out), backend=backend, workers=workers, progress=progress,
                       limit=limit, describe=_describe, settings=_job_settings, fresh=fresh, code=CODE)
    results = assemble(records, quick)
    save_summary(results, out)
    return results


def keep_stamps(results: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """``results`` with the generation date and platform of the summary already saved in ``out``
    when that summary rests on the same records (same code versions, updates and simulation
    time): rebuilding the report from saved records then leaves the summary as it was."""
    saved = Path(out) / RESULTS_FILE
    if saved.is_file():
        from aflqueue.io import read_json

        old = read_json(saved, "approx.json").get("meta") or {}
        if all(old.get(k) == results["meta"].get(k) for k in ("code_versions", "updates_used", "simulation_seconds",
                                                               "quick")):
            results["meta"].update({k: old[k] for k in ("date", "platform") if k in old})
    return results


def save_summary(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``out/approx.json``: the results without the per-point records and errors."""
    summary = {k: v for k, v in results["summary"].items() if k != "errors"}
    return atomic_write_json(Path(out) / RESULTS_FILE, {"meta": results["meta"], "summary": summary,
                                                        "optimisation": results["optimisation"]})

"""Approximate analysis for general service vs simulation, next to the product form (issue 18).

Runs the fixed protocol below over a grid of systems, saves every grid point as it finishes
(``points/<id>.json``, written atomically; a restart skips the points already there), and
writes ``approx.json`` (all records and the summary) and ``approx.md`` (the report: protocol
first, then the error distributions of the approximation and of the product form side by side,
the worst cases, the interval widths, and the routing comparison of item 3).

Usage::

    python validation/approx_analysis.py [--out validation/results/approx] [--quick] [--fresh]
                                         [--report-only] [--skip-optimisation]

``--quick`` runs a handful of points with 50x fewer updates (a smoke test, < 1 min); its
results are not a validation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from aflqueue import System  # noqa: E402
from aflqueue.laws import law_from_spec  # noqa: E402
from aflqueue.queueing import analyze  # noqa: E402
from aflqueue.queueing.approx import approx_analyze  # noqa: E402
from aflqueue.sim import simulate  # noqa: E402
from aflqueue.system import Client, Stage  # noqa: E402

PROTOCOL_VERSION = 1

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

RESULTS = REPO / "validation" / "results" / "approx"
LAW_OF_CV = {0.0: "deterministic", 0.5: "lognormal:cv=0.5", 1.0: "lognormal:cv=1", 1.5: "lognormal:cv=1.5",
             2.0: "lognormal:cv=2", 3.0: "lognormal:cv=3"}
# (replications, updates per replication)
BUDGET = {0.0: (1, 2_000_000), 0.5: (1, 2_000_000), 1.0: (1, 3_000_000), 1.5: (1, 4_000_000),
          2.0: (2, 3_000_000), 3.0: (3, 4_000_000)}
BUDGET_SIMPY = (1, 400_000)
QUICK_DIVISOR = 50
WARMUP = 0.1
BATCHES = 20
SEED_BASE = 18_000
JITTER = 0.1
CRITERION = 0.03


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
        p = None if self.routing == "uniform" else (rates / rates.sum()).tolist()
        if self.multistage:
            return _multistage(self.multistage, rates, self.m, self.law)
        return System.from_rates(rates.tolist(), p, self.m, service=self.law)

    def types(self) -> np.ndarray:
        return _rates(self.family, self.n)[1]


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
    n = rates.size
    slow = rates < 0.4
    dl = np.where(slow, 0.5, 2.0)
    ul = np.where(slow, 0.25, 1.0)
    if kind == "fifo":
        return System.from_rates(rates, None, m, service=law, downlink_rates=dl, uplink_rates=ul, server_rate=1.0 * n / 10)
    if kind == "delay_links":
        return System.from_rates(rates, None, m, service=law, downlink_rates=dl, uplink_rates=ul,
                                 downlink_discipline="delay", uplink_discipline="delay", server_rate=1.0 * n / 10)
    if kind == "delay_server":
        return System.from_rates(rates, None, m, service=law, downlink_rates=dl, uplink_rates=ul,
                                 server_rate=0.5 * n / 10, server_discipline="delay")
    if kind == "all_general":  # every FIFO stage non-exponential: links lognormal cv 1.5, server lognormal cv 1
        link = "lognormal:cv=1.5"
        clients = tuple(Client(compute=Stage(law_from_spec(law, mean=1 / r)),
                               downlink=Stage(law_from_spec(link, mean=1 / d)), uplink=Stage(law_from_spec(link, mean=1 / u)),
                               name=f"c{i}") for i, (r, d, u) in enumerate(zip(rates, dl, ul)))
        server = Stage(law_from_spec("lognormal:cv=1", mean=10.0 / n))
        return System(clients, np.full(n, 1.0 / n), m, server)
    raise ValueError(kind)


def grid(quick: bool = False) -> list[Point]:
    """All points in a fixed order (the order defines the seeds)."""
    pts: list[Point] = []
    cvs = sorted(LAW_OF_CV)
    for n in (2, 3, 5, 10, 20, 50, 100):
        ms = sorted({max(2, round(n / 4)), n, 2 * n})
        for m in ms:
            for routing in ("uniform", "proportional"):
                for cv in cvs:
                    pts.append(Point(f"hetero_n{n}_m{m}_{routing}_cv{cv:g}", "hetero", n, m, cv, LAW_OF_CV[cv], routing))
    for n in (5, 20, 100):
        for cv in cvs:
            pts.append(Point(f"homo_n{n}_m{n}_cv{cv:g}", "homo", n, n, cv, LAW_OF_CV[cv], "uniform"))
    for kind, cv, n in (("fifo", 2.0, 10), ("fifo", 0.0, 10), ("delay_links", 3.0, 10), ("delay_server", 0.0, 10),
                        ("all_general", 2.0, 10), ("fifo", 2.0, 20)):
        pts.append(Point(f"ms_{kind}_n{n}_cv{cv:g}", "hetero", n, n, cv, LAW_OF_CV[cv], "uniform", multistage=kind))
    for n, cv in ((5, 0.0), (5, 3.0), (50, 0.0), (50, 3.0)):
        pts.append(Point(f"m1_n{n}_cv{cv:g}", "hetero", n, 1, cv, LAW_OF_CV[cv], "uniform"))
    for n, (law, cv) in ((5, ("gamma:cv=3", 3.0)), (20, ("gamma:cv=3", 3.0)), (5, ("weibull:shape=0.5", 2.236)),
                         (20, ("weibull:shape=0.5", 2.236))):
        pts.append(Point(f"other_n{n}_{law.replace(':', '_').replace('=', '')}", "hetero", n, n, cv, law, "uniform"))
    if quick:
        keep = {"hetero_n3_m3_uniform_cv3", "hetero_n10_m20_uniform_cv0", "hetero_n5_m5_proportional_cv1.5",
                "ms_fifo_n10_cv2", "m1_n5_cv3"}
        pts = [p for p in pts if p.id in keep]
    return pts


# --------------------------------------------------------------------------- estimation
def _t975(dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def _interval(batch_values: np.ndarray) -> dict[str, float]:
    x = np.asarray(batch_values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return {"mean": float(x.mean()) if x.size else math.nan, "half_width": math.nan, "batches": int(x.size)}
    return {"mean": float(x.mean()), "half_width": _t975(x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size),
            "batches": int(x.size)}


def _window_integrals(start: np.ndarray, end: np.ndarray, group: np.ndarray, G: int, edges: np.ndarray) -> np.ndarray:
    """``out[b, g]``: integral over window b of the number of group-g intervals ``[start, end)`` open."""
    e = np.where(np.isnan(end), np.inf, end)
    s = np.nan_to_num(start, nan=np.inf)
    keep = (s < edges[-1]) & (e > edges[0]) & (e > s)
    s, e, g = s[keep], e[keep], group[keep]
    length = e - s
    cum = np.empty((edges.size, G))
    for k, x in enumerate(edges):
        cum[k] = np.bincount(g, weights=np.clip(x - s, 0.0, length), minlength=G)
    return np.diff(cum, axis=0)


def batch_values(trace, types: np.ndarray, G: int) -> dict[str, np.ndarray]:
    """Per-batch throughput, per-type delay, per-type tasks at client stages, per-type compute
    utilisation and central-server queue of one replication (warm-up removed)."""
    up = trace.updates()
    U = up["time"].size
    k0 = int(round(WARMUP * U))
    t0, t1 = float(up["time"][k0 - 1]), float(up["time"][-1])
    edges = np.linspace(t0, t1, BATCHES + 1)
    width = edges[1] - edges[0]
    thr = np.histogram(up["time"][k0:], bins=edges)[0] / width
    cl = up["client"][k0:]
    D = up["relative_delay"][k0:].astype(float)
    tg = types[cl]
    delay = np.full((BATCHES, G), np.nan)
    for g in range(G):
        x = D[tg == g]
        if x.size >= BATCHES:
            delay[:, g] = [c.mean() for c in np.array_split(x, BATCHES)]
    gt = types[trace.client]
    queue = _window_integrals(trace.dispatch_time, trace.uplink_end, gt, G, edges) / width
    busy = _window_integrals(trace.compute_start, trace.compute_end, gt, G, edges) / width
    cs = _window_integrals(trace.uplink_end, trace.completion_time, np.zeros(len(trace), dtype=np.int64), 1,
                           edges)[:, 0] / width
    per_client_delay = np.bincount(cl, weights=D, minlength=types.size) / np.maximum(
        np.bincount(cl, minlength=types.size), 1)
    return {"throughput": thr, "delay": delay, "queue": queue, "busy": busy, "server_queue": cs,
            "per_client_delay": per_client_delay, "updates_used": int(U - k0)}


def simulate_point(system: System, types: np.ndarray, reps: int, updates: int, seed0: int,
                   engine: str = "auto") -> dict[str, Any]:
    """Pooled batch-means estimates over ``reps`` replications (see the protocol)."""
    G = int(types.max()) + 1
    parts = []
    t_start = time.perf_counter()
    for r in range(reps):
        tr = simulate(system, updates, seed=seed0 + r, engine=engine)
        parts.append(batch_values(tr, types, G))
        del tr
    wall = time.perf_counter() - t_start
    thr = np.concatenate([p["throughput"] for p in parts])
    delay = np.vstack([p["delay"] for p in parts])
    queue = np.vstack([p["queue"] for p in parts])
    busy = np.vstack([p["busy"] for p in parts])
    members = np.bincount(types, minlength=G)
    return {
        "throughput": _interval(thr),
        "delay": [_interval(delay[:, g]) for g in range(G)],
        "queue": [_interval(queue[:, g]) for g in range(G)],
        "server_queue": _interval(np.concatenate([p["server_queue"] for p in parts])),
        "utilization_by_type": (busy.mean(axis=0) / members).tolist(),
        "per_client_delay": np.mean([p["per_client_delay"] for p in parts], axis=0).tolist(),
        "updates": int(updates), "replications": int(reps), "seeds": [seed0 + r for r in range(reps)],
        "updates_used": int(sum(p["updates_used"] for p in parts)), "wall_s": wall,
        "engine": "fast" if not system.is_multistage else "simpy",
    }


# --------------------------------------------------------------------------- analyses
def _typed(res: Any, system: System, types: np.ndarray) -> dict[str, Any]:
    """Throughput and per-type delay (task-weighted) and queue of an analysis result."""
    p = system.routing
    G = int(types.max()) + 1
    D, Q = [], []
    for g in range(G):
        mem = types == g
        w = p[mem]
        D.append(float(np.sum(w * res.relative_delay[mem]) / w.sum()) if w.sum() > 0 else math.nan)
        Q.append(float(np.sum(res.mean_queue_lengths[mem])))
    out = {"throughput": float(res.throughput), "delay": D, "queue": Q,
           "relative_delay": [float(x) for x in res.relative_delay]}
    if res.server is not None:
        out["server_queue"] = float(res.server["mean_queue_length"])
    return out


def _best_time(fun, repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fun()
        best = min(best, time.perf_counter() - t)
    return best


def run_point(pt: Point, index: int, quick: bool) -> dict[str, Any]:
    system = pt.system()
    types = pt.types()
    reps, updates = BUDGET_SIMPY if pt.multistage else BUDGET.get(pt.cv, BUDGET[3.0])
    if quick:
        updates = max(updates // QUICK_DIVISOR, 20_000)
    seed0 = SEED_BASE + 100 * index
    sim = simulate_point(system, types, reps, updates, seed0)
    pf = analyze(system)
    ap = approx_analyze(system)
    return {
        "id": pt.id, "index": index, "family": pt.family, "n": pt.n, "m": pt.m, "cv": pt.cv, "law": pt.law,
        "routing": pt.routing, "multistage": pt.multistage, "rates": system.rates.tolist(),
        "routing_vector": system.routing.tolist(), "types": types.tolist(),
        "simulation": sim, "product_form": _typed(pf, system, types), "approx": _typed(ap, system, types),
        "approximated_stations": len(ap.approximated),
        "analysis_seconds": {"product_form": _best_time(lambda: analyze(system)),
                             "approx": _best_time(lambda: approx_analyze(system))},
        "protocol_version": PROTOCOL_VERSION, "quick": quick,
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


def _proxy_from_estimates(problem: Any, p: np.ndarray, lam: float, delays: np.ndarray, tau: float) -> float:
    from aflqueue.bounds import per_update, s1, s2

    return float(per_update(problem.constants, s1(p)[0], s2(delays, p), lam * tau).total)


def run_optimisation(spec: tuple, index: int, quick: bool) -> dict[str, Any]:
    from aflqueue.optimize import OptimizationProblem, optimize

    oid, family, n, m, cv = spec
    rates, types = _rates(family, n)
    system = System.from_rates(rates.tolist(), None, m, service=LAW_OF_CV[cv])
    out: dict[str, Any] = {"id": oid, "n": n, "m": m, "cv": cv, "law": LAW_OF_CV[cv], "rates": rates.tolist(),
                           "protocol_version": PROTOCOL_VERSION, "quick": quick}
    reps, updates = BUDGET[cv]
    if quick:
        updates = max(updates // QUICK_DIVISOR, 20_000)
    for analysis in ("product-form", "approx"):
        pb = OptimizationProblem(system=system, objective="wallclock", analysis=analysis)
        t = time.perf_counter()
        res = optimize(pb)
        wall = time.perf_counter() - t
        p = res.routing
        tau = float(res.problem["time_budget"])
        sim_sys = system.with_routing(p)
        G = int(types.max()) + 1
        parts = []
        for r in range(reps):
            tr = simulate(sim_sys, updates, seed=SEED_BASE + 900 + 10 * index + r)
            parts.append(batch_values(tr, types, G))
            del tr
        thr = np.concatenate([q["throughput"] for q in parts])
        per_client = np.mean([q["per_client_delay"] for q in parts], axis=0)
        # batch-level proxy: throughput per batch with the run's per-client delays (delay noise is
        # second order for this proxy: S2 enters through a term small next to the others)
        vals = np.array([_proxy_from_estimates(pb, p, lam_b, per_client, tau) for lam_b in thr])
        pf_eval = analyze(sim_sys)
        ap_eval = approx_analyze(sim_sys)
        out[analysis] = {
            "routing": p.tolist(), "predicted_objective": float(res.objective_value), "time_budget": tau,
            "predicted_throughput": float(res.throughput), "optimizer_seconds": wall, "kkt_residual": res.kkt_residual,
            "simulated_throughput": _interval(thr), "simulated_objective": _interval(vals),
            "simulated_objective_point": _proxy_from_estimates(pb, p, float(thr.mean()), per_client, tau),
            "product_form_throughput_at_routing": float(pf_eval.throughput),
            "approx_throughput_at_routing": float(ap_eval.throughput),
        }
    return out


# --------------------------------------------------------------------------- persistence
def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _write_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=1, allow_nan=False))
    os.replace(tmp, path)


def _load(path: Path, quick: bool) -> dict[str, Any] | None:
    if not path.exists():
        return None
    rec = json.loads(path.read_text())
    if rec.get("protocol_version") != PROTOCOL_VERSION or bool(rec.get("quick")) != quick:
        return None
    return rec


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(out: Path, quick: bool = False, fresh: bool = False, optimisation: bool = True,
        log=print) -> dict[str, Any]:
    points = grid(quick)
    records = []
    for k, pt in enumerate(points):
        path = out / "points" / f"{pt.id}.json"
        rec = None if fresh else _load(path, quick)
        if rec is None:
            t = time.perf_counter()
            rec = run_point(pt, k, quick)
            rec["commit"] = git_commit()
            _write_atomic(path, rec)
            log(f"[{k + 1}/{len(points)}] {pt.id}: {time.perf_counter() - t:.1f} s")
        records.append(rec)
    opts = []
    if optimisation:
        specs = OPT_SYSTEMS[:1] if quick else OPT_SYSTEMS
        for k, spec in enumerate(specs):
            path = out / "optimisation" / f"{spec[0]}.json"
            rec = None if fresh else _load(path, quick)
            if rec is None:
                t = time.perf_counter()
                rec = run_optimisation(spec, k, quick)
                rec["commit"] = git_commit()
                _write_atomic(path, rec)
                log(f"[opt {k + 1}/{len(specs)}] {spec[0]}: {time.perf_counter() - t:.1f} s")
            opts.append(rec)
    return {"points": records, "optimisation": opts}


# --------------------------------------------------------------------------- summary
def _rel(a: float, s: float) -> float:
    return (a - s) / s if s else math.nan


def point_errors(rec: dict[str, Any]) -> dict[str, Any]:
    """Relative errors of both analyses at one point (see the protocol)."""
    sim = rec["simulation"]
    s_thr = sim["throughput"]["mean"]
    out: dict[str, Any] = {"thr_hw": sim["throughput"]["half_width"] / s_thr}
    delay_judged = rec["m"] > 1 and rec["family"] != "homo"
    for key in ("product_form", "approx"):
        a = rec[key]
        e: dict[str, Any] = {"throughput": _rel(a["throughput"], s_thr)}
        d_rel, d_floor, q_rel = [], [], []
        for g, est in enumerate(sim["delay"]):
            s = est["mean"]
            if s is None or a["delay"][g] is None:
                continue
            d_rel.append(_rel(a["delay"][g], s) if s > 0 else math.nan)
            d_floor.append((a["delay"][g] - s) / max(s, 1.0))
        for g, est in enumerate(sim["queue"]):
            if est["mean"]:
                q_rel.append(_rel(a["queue"][g], est["mean"]))
        e["delay_max"] = float(np.nanmax(np.abs(d_rel))) if delay_judged and d_rel else None
        e["delay_floor_max"] = float(np.max(np.abs(d_floor))) if delay_judged and d_floor else None
        e["delay_by_type"] = d_rel
        e["queue_max"] = float(np.nanmax(np.abs(q_rel))) if q_rel else None
        out[key] = e
    hws = [est["half_width"] / est["mean"] for est in sim["delay"]
           if est["mean"] and est["half_width"] is not None and est["mean"] > 0]
    out["delay_hw_max"] = float(max(hws)) if hws else None
    util = max(sim["utilization_by_type"])
    out["load"] = "light" if util < 0.5 else ("moderate" if util < 0.8 else "heavy")
    out["max_utilization"] = util
    return out


def _dist(values: Sequence[float]) -> dict[str, Any]:
    x = np.abs(np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float))
    if x.size == 0:
        return {"count": 0}
    return {"count": int(x.size), "median": float(np.median(x)), "p95": float(np.quantile(x, 0.95)),
            "max": float(x.max()), "within_3pct": float(np.mean(x <= CRITERION))}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    main = [r for r in records if r["family"] in ("hetero", "homo") and not r["multistage"] and r["m"] > 1
            and not r["id"].startswith("other")]
    errs = {r["id"]: point_errors(r) for r in records}
    out: dict[str, Any] = {}

    def block(sel: list[dict[str, Any]]) -> dict[str, Any]:
        b = {}
        for key in ("product_form", "approx"):
            b[key] = {"throughput": _dist([errs[r["id"]][key]["throughput"] for r in sel]),
                      "delay": _dist([errs[r["id"]][key]["delay_max"] for r in sel]),
                      "delay_floor": _dist([errs[r["id"]][key]["delay_floor_max"] for r in sel]),
                      "queue": _dist([errs[r["id"]][key]["queue_max"] for r in sel])}
        return b

    out["all"] = block(main)
    out["by_cv"] = {f"{cv:g}": block([r for r in main if r["cv"] == cv]) for cv in sorted(LAW_OF_CV)}
    out["by_n"] = {str(n): block([r for r in main if r["n"] == n]) for n in sorted({r["n"] for r in main})}
    out["by_load"] = {ld: block([r for r in main if errs[r["id"]]["load"] == ld]) for ld in ("light", "moderate", "heavy")}
    out["by_routing"] = {rt: block([r for r in main if r["routing"] == rt]) for rt in ("uniform", "proportional")}
    out["interval_widths"] = {
        "throughput": _dist([errs[r["id"]]["thr_hw"] for r in main]),
        "delay": _dist([errs[r["id"]]["delay_hw_max"] for r in main]),
    }
    out["errors"] = errs
    return out


# --------------------------------------------------------------------------- report
def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:+.{digits}f}%"


def _apct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def _dist_cells(d: dict[str, Any]) -> str:
    if not d.get("count"):
        return "- | - | - | -"
    return f"{_apct(d['median'])} | {_apct(d['p95'])} | {_apct(d['max'])} | {100 * d['within_3pct']:.0f}%"


def _side_by_side(title: str, blocks: dict[str, dict[str, Any]], metric: str) -> list[str]:
    lines = [f"**{title}** (|relative error|: median, 95th percentile, worst; share of points within 3%)", "",
             "| subset | points | PF median | PF p95 | PF worst | PF within 3% | approx median | approx p95 | "
             "approx worst | approx within 3% |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, b in blocks.items():
        cnt = b["approx"][metric].get("count", 0)
        if not cnt:
            continue
        lines.append(f"| {name} | {cnt} | {_dist_cells(b['product_form'][metric])} | {_dist_cells(b['approx'][metric])} |")
    return lines + [""]


def write_report(results: dict[str, Any], path: Path) -> Path:
    records = results["points"]
    summ = results["summary"]
    errs = summ["errors"]
    L: list[str] = ["# Approximate analysis for general service vs simulation", "",
                    f"Generated by `validation/approx_analysis.py` from results of commit `{results['commit']}` "
                    f"({results['generated']}; {len(records)} grid points, "
                    f"{sum(r['simulation']['updates_used'] for r in records):,} simulated updates after warm-up, "
                    f"{results['simulation_seconds'] / 60:.1f} min of simulation on one core). Method: "
                    "`aflqueue.queueing.approx` (docs/theory.md section 9). PF = product form (the exact analysis "
                    "for exponential service, which uses only the means).", "", PROTOCOL, "", "## Results", ""]
    if results.get("quick"):
        L += ["**Quick mode: a smoke test with 50x fewer updates, not a validation.**", ""]
    a = summ["all"]
    L += [f"Main grid: {a['approx']['throughput'].get('count', 0)} points (hetero and homo, m >= 2). "
          f"Throughput within 3%: approximation at {_apct(a['approx']['throughput'].get('within_3pct'), 0)} of the "
          f"points (worst {_apct(a['approx']['throughput'].get('max'))}), product form at "
          f"{_apct(a['product_form']['throughput'].get('within_3pct'), 0)} (worst "
          f"{_apct(a['product_form']['throughput'].get('max'))}). Delays (every type within 3%, "
          f"{a['approx']['delay'].get('count', 0)} points): approximation "
          f"{_apct(a['approx']['delay'].get('within_3pct'), 0)}, product form "
          f"{_apct(a['product_form']['delay'].get('within_3pct'), 0)}.", ""]
    L += _side_by_side("Throughput", {"all": a, **{f"cv {k}": v for k, v in summ["by_cv"].items()}}, "throughput")
    L += _side_by_side("Mean relative delay E[D], worst type of each point (primary, plain relative error)",
                       {"all": a, **{f"cv {k}": v for k, v in summ["by_cv"].items()}}, "delay")
    L += _side_by_side("Mean relative delay, error / max(E[D], 1) (secondary)",
                       {"all": a, **{f"cv {k}": v for k, v in summ["by_cv"].items()}}, "delay_floor")
    L += _side_by_side("Mean number of tasks per type, worst type of each point",
                       {"all": a, **{f"cv {k}": v for k, v in summ["by_cv"].items()}}, "queue")
    L += _side_by_side("Throughput by number of clients", {f"n = {k}": v for k, v in summ["by_n"].items()}, "throughput")
    L += _side_by_side("Delay by number of clients", {f"n = {k}": v for k, v in summ["by_n"].items()}, "delay")
    L += _side_by_side("Throughput by load (largest simulated compute utilisation of a type)", summ["by_load"],
                       "throughput")
    L += _side_by_side("Delay by load", summ["by_load"], "delay")
    L += _side_by_side("Throughput by routing", summ["by_routing"], "throughput")
    L += _side_by_side("Delay by routing", summ["by_routing"], "delay")
    iw = summ["interval_widths"]
    L += ["**Simulation resolution.** 95% half-width relative to the estimate: throughput median "
          f"{_apct(iw['throughput'].get('median'), 2)}, largest {_apct(iw['throughput'].get('max'), 2)}; "
          f"per-type delay (largest type of each point) median {_apct(iw['delay'].get('median'), 2)}, 95th percentile "
          f"{_apct(iw['delay'].get('p95'), 2)}, largest {_apct(iw['delay'].get('max'), 2)}.", ""]
    main = [r for r in records if r["family"] in ("hetero", "homo") and not r["multistage"] and r["m"] > 1
            and not r["id"].startswith("other")]
    # worst cases
    for metric, label in (("throughput", "throughput"), ("delay_max", "delay (worst type)")):
        ranked = sorted(main, key=lambda r: -abs(errs[r["id"]]["approx"][metric] or 0.0))[:12]
        L += [f"**Worst {label} errors of the approximation** (simulation 95% half-width in brackets)", "",
              "| point | load | simulated throughput | PF | approx | types: simulated E[D] / PF / approx |",
              "|---|---|---|---|---|---|"]
        for r in ranked:
            e = errs[r["id"]]
            s = r["simulation"]
            dl = "; ".join(f"{_fmt(d['mean'])} / {_pct(pe)} / {_pct(ae)}" for d, pe, ae in
                           zip(s["delay"], e["product_form"]["delay_by_type"], e["approx"]["delay_by_type"]))
            L.append(f"| {r['id']} | {e['load']} ({e['max_utilization']:.2f}) | {_fmt(s['throughput']['mean'])} "
                     f"(±{_apct(e['thr_hw'], 2)}) | {_pct(e['product_form']['throughput'])} | "
                     f"{_pct(e['approx']['throughput'])} | {dl} |")
        L.append("")
    # per-point table, compact
    L += ["**Every point of the main grid** (relative errors; delay: worst type)", "",
          "| point | load | thr ±hw | thr PF | thr approx | delay ±hw | abs delay PF | abs delay approx |",
          "|---|---|---|---|---|---|---|---|"]
    for r in main:
        e = errs[r["id"]]
        L.append(f"| {r['id']} | {e['load']} | {_apct(e['thr_hw'], 2)} | {_pct(e['product_form']['throughput'])} | "
                 f"{_pct(e['approx']['throughput'])} | {_apct(e['delay_hw_max'], 2)} | "
                 f"{_apct(e['product_form']['delay_max'])} | {_apct(e['approx']['delay_max'])} |")
    L.append("")
    # extra families
    extra = [r for r in records if r not in main]
    if extra:
        L += ["## Multi-stage, m = 1 and other laws", "",
              "| point | law | simulated throughput ±hw | PF | approx | worst-type delay PF | approx | "
              "server queue sim / PF / approx |", "|---|---|---|---|---|---|---|---|"]
        for r in extra:
            e = errs[r["id"]]
            s = r["simulation"]
            sq = "-"
            if r["multistage"] and "server_queue" in r["approx"]:
                sq = (f"{_fmt(s['server_queue']['mean'])} / {_fmt(r['product_form']['server_queue'])} / "
                      f"{_fmt(r['approx']['server_queue'])}")
            dpf = e["product_form"]["delay_max"] if r["m"] > 1 else None
            dap = e["approx"]["delay_max"] if r["m"] > 1 else None
            L.append(f"| {r['id']} | {r['law']} | {_fmt(s['throughput']['mean'])} ±{_apct(e['thr_hw'], 2)} | "
                     f"{_pct(e['product_form']['throughput'])} | {_pct(e['approx']['throughput'])} | "
                     f"{_apct(dpf)} | {_apct(dap)} | {sq} |")
        L.append("")
    # timings
    tpf = [r["analysis_seconds"]["product_form"] for r in main]
    tap = [r["analysis_seconds"]["approx"] for r in main]
    L += [f"Analysis time per grid point (one-shot, including set-up): product form median {1e3 * np.median(tpf):.2f} ms, "
          f"approximation median {1e3 * np.median(tap):.2f} ms, largest {1e3 * max(tap):.1f} ms. Timing against "
          "the product form at n = 100 and n = 1000: `python validation/bench_approx.py`.", ""]
    # item 3
    opts = results.get("optimisation", [])
    if opts:
        L += ["## Item 3: routings optimised with each analysis, evaluated by simulation", "",
              "Wall-clock proxy W (P2; lower is better) at the same time budget tau for both routings. "
              "Predicted: the optimiser's own value. Simulated: the proxy with the simulated throughput and "
              "per-client delays (95% interval over batches).", "",
              "| system | law | routing from | predicted W | simulated W | simulated throughput | predicted throughput |",
              "|---|---|---|---|---|---|---|"]
        for o in opts:
            for key, lab in (("product-form", "PF"), ("approx", "approx")):
                x = o[key]
                so = x["simulated_objective"]
                st = x["simulated_throughput"]
                L.append(f"| {o['id']} | {o['law']} | {lab} | {_fmt(x['predicted_objective'])} | "
                         f"{_fmt(x['simulated_objective_point'])} ±{_fmt(so['half_width'])} | "
                         f"{_fmt(st['mean'])} ±{_fmt(st['half_width'])} | {_fmt(x['predicted_throughput'])} |")
        L.append("")
        L += ["| system | simulated W: approx routing vs PF routing | resolved (intervals disjoint) |", "|---|---|---|"]
        for o in opts:
            a_, p_ = o["approx"], o["product-form"]
            diff = _rel(a_["simulated_objective_point"], p_["simulated_objective_point"])
            hw = a_["simulated_objective"]["half_width"] + p_["simulated_objective"]["half_width"]
            res_ = abs(a_["simulated_objective_point"] - p_["simulated_objective_point"]) > hw
            L.append(f"| {o['id']} | {_pct(diff, 2)} | {'yes' if res_ else 'no'} |")
        L.append("")
    L += ["## Reading", "", results.get("reading", "(see docs/theory.md section 9)"), ""]
    path.write_text("\n".join(L))
    return path


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(float(x)):
        return "-"
    return f"{float(x):.{digits}g}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (points/, approx.json, approx.md)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 5 points, 50x fewer updates")
    ap.add_argument("--fresh", action="store_true", help="ignore saved points")
    ap.add_argument("--report-only", action="store_true", help="rebuild the report from saved points")
    ap.add_argument("--skip-optimisation", action="store_true", help="skip item 3")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.report_only:
        data = {"points": [r for r in (_load(args.out / "points" / f"{p.id}.json", args.quick)
                                       for p in grid(args.quick)) if r is not None],
                "optimisation": [r for r in (_load(args.out / "optimisation" / f"{s[0]}.json", args.quick)
                                             for s in (OPT_SYSTEMS[:1] if args.quick else OPT_SYSTEMS)) if r is not None]}
    else:
        data = run(args.out, quick=args.quick, fresh=args.fresh, optimisation=not args.skip_optimisation)
    if not data["points"]:
        print("error: no results; run without --report-only first", file=sys.stderr)
        return 2
    commits = sorted({r.get("commit", "unknown") for r in data["points"] + data["optimisation"]})
    results = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": ", ".join(commits), "quick": args.quick, "protocol": PROTOCOL,
        "protocol_version": PROTOCOL_VERSION, "platform": platform.platform(),
        "simulation_seconds": sum(r["simulation"]["wall_s"] for r in data["points"]),
        "points": data["points"], "optimisation": data["optimisation"],
    }
    results["summary"] = summarize(data["points"])
    reading = args.out / "reading.md"
    if reading.exists():
        results["reading"] = reading.read_text().strip()
    _write_atomic(args.out / "approx.json", results)
    md = write_report(results, args.out / "approx.md")
    print(f"wrote {args.out / 'approx.json'} and {md} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

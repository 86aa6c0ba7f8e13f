"""Is the delay formula or the queue approximation the limit? An oracle test (issue 18).

The approximate analysis (docs/theory.md section 9.3, "Delays") computes per-client relative delays
with the arrival-theorem form ``E[D_i] = E_{m-1}[Y_i] / p_i`` (single-stage systems), feeding it
the approximate time-average queues of the network with ``m - 1`` tasks. On the validation grid
of :mod:`aflqueue.experiments.approx` its delays are within 3% at only about a third of the points.
Two things could be at fault: the approximate queues, or the formula itself. This experiment
separates them: it replaces the approximate ``E_{m-1}[Y_i]`` by the *simulated* time-average
queues of the same system with ``m - 1`` tasks (the oracle) and scores the formula against the
delays simulated at ``m`` that the approx validation already saved (``validation/results/approx/
cells``; nothing at ``m`` is re-simulated). If the oracle fails as often as the approximation, no
better queue approximation can rescue the formula: the update-epoch (Palm) state of the network
must be modelled (docs/theory.md section 9.7).

Jobs: one per main-grid point of the approx validation with ``m >= 3`` (single stage,
heterogeneous family). At ``m = 2`` the network with one task is exact for every law
(``E_1[Y_i] = d_i / sum_j d_j``), so those points need no simulation: the oracle is computed in the
summary. Records and their ``code_version`` are saved as each job finishes (:mod:`.runner`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..stats import Estimate
from .approx import CRITERION, LAW_OF_CV, Point, grid, main_grid, simulate_point
from .runner import JobStore, run_jobs

__all__ = ["ORACLE_PROTOCOL", "oracle_jobs", "run_oracle_point", "oracle_delays", "summarize_oracle",
           "run_delay_oracle"]

ORACLE_PROTOCOL_VERSION = 1
ORACLE_SEED_BASE = 600_000  # point k of the approx grid: seed 600_000 + 100 k (disjoint from the grid's)

ORACLE_PROTOCOL = """\
**Protocol (`ORACLE_PROTOCOL_VERSION` 1; fixed after a look at 8 points, before the rest).**
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
"""


def _points() -> list[tuple[int, Point]]:
    """``(grid index, point)`` of the delay-judged main-grid points, in grid order."""
    pts = list(enumerate(grid()))
    judged = {r["id"] for r in main_grid([{"id": p.id, "family": p.family, "multistage": p.multistage, "m": p.m}
                                          for _, p in pts]) if not r["id"].startswith("homo")}
    return [(k, p) for k, p in pts if p.id in judged]


def oracle_jobs(only: Sequence[str] | None = None) -> list[tuple[str, tuple[int, int]]]:
    """The simulation jobs ``(id, (grid index, updates))``: every delay-judged point with m >= 3."""
    jobs = [(f"oracle_{p.id}", (k, p.budget(False)[1])) for k, p in _points() if p.m >= 3]
    if only is not None:
        jobs = [j for j in jobs if j[0].removeprefix("oracle_") in set(only)]
    return jobs


def _settings(args: tuple[int, int]) -> dict[str, Any]:
    k, updates = args
    pt = grid()[k]
    return {"protocol_version": ORACLE_PROTOCOL_VERSION, "point": pt.id, "m_simulated": pt.m - 1,
            "law": pt.law, "updates": int(updates), "replications": 1, "seed": ORACLE_SEED_BASE + 100 * k}


def run_oracle_point(args: tuple[int, int]) -> dict[str, Any]:
    """Simulate grid point ``k``'s system with ``m - 1`` tasks; the per-type time-average queues."""
    k, updates = args
    pt = grid()[k]
    smaller = dataclasses.replace(pt, m=pt.m - 1)
    sim = simulate_point(smaller.system(), pt.types(), 1, updates, ORACLE_SEED_BASE + 100 * k)
    return {"point": pt.id, "index": k, "n": pt.n, "m": pt.m, "cv": pt.cv, "routing": pt.routing,
            "queue_m_minus_1": sim["queue"], "throughput_m_minus_1": sim["throughput"],
            "updates_used": sim["updates_used"]}


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


def _max_rel(a: Sequence[float], s: Sequence[float]) -> float:
    return float(max(abs(x - y) / y for x, y in zip(a, s)))


def summarize_oracle(oracle_records: Sequence[dict[str, Any]], approx_records: Sequence[dict[str, Any]]
                     ) -> dict[str, Any]:
    """Per point: the worst-type relative delay error of the oracle, the approximation and the
    product form against the delays simulated at ``m`` (``approx_records``); and the share of
    points within :data:`CRITERION` overall and per cv and per n. Points without both records are
    left out (and counted)."""
    by_point = {r["point"]: r for r in oracle_records}
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
        rows.append({"point": pt.id, "n": pt.n, "m": pt.m, "cv": pt.cv, "routing": pt.routing,
                     "simulated": sim, "oracle_delay": oracle_delays(pt, q).tolist(),
                     "oracle": _max_rel(oracle_delays(pt, q), sim),
                     "approx": _max_rel(rec["approx"]["delay"], sim),
                     "product_form": _max_rel(rec["product_form"]["delay"], sim)})

    def share(sel: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"points": len(sel)}
        for key in ("oracle", "approx", "product_form"):
            x = np.array([r[key] for r in sel])
            out[key] = ({"within_3pct": float(np.mean(x <= CRITERION)), "median": float(np.median(x)),
                         "p95": float(np.quantile(x, 0.95)), "max": float(x.max())} if x.size else None)
        return out

    return {"all": share(rows),
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
    records = run_jobs(jobs, run_oracle_point, JobStore(Path(out)), backend=backend, workers=workers,
                       progress=progress, settings=_settings, limit=limit)
    mine = [r for r in records if r.get("id", "").startswith("oracle_")]
    summary = summarize_oracle(mine, approx_records)
    versions = sorted({(r["code_version"]["source"], r["code_version"].get("commit") or "") for r in mine})
    summary["meta"] = {"protocol_version": ORACLE_PROTOCOL_VERSION,
                       "code_versions": [{"source": s, "commit": c or None} for s, c in versions],
                       "updates_used": int(sum(r["updates_used"] for r in mine)),
                       "simulated_points": len(mine),
                       "approx_code_versions": sorted({r["code_version"]["source"] for r in approx_records
                                                       if "code_version" in r})}
    return summary

"""The ``aflqueue figures`` driver: computes or loads each figure's data and has
:mod:`aflqueue.plots` draw it.

* Analytic figures are computed from the exact analysis and the optimiser (deterministic, a few
  seconds): relative delay against routing, throughput and proxies against concurrency (the U
  shape of time against ``m``), optimal routing against client speed, the time/energy Pareto front.
  Their data are saved next to them (``figures/data/*.json``).
* Simulation and training figures are drawn from saved results only: closed form vs simulation
  (``validation/results/closed_forms/closed_forms.json``) and accuracy against simulated time
  per routing and algorithm (validation-grid cells).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .io import atomic_write_json
from .system import FIVE_TYPES

__all__ = ["make_all", "delay_vs_routing", "concurrency_sweep", "routing_vs_speed", "energy_pareto"]


def _dump(out: Path, name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Save a figure's data as ``out/data/<name>.json`` (strict JSON) and return it unchanged."""
    atomic_write_json(out / "data" / f"{name}.json", data)
    return data


def delay_vs_routing(out: Path) -> list[Path]:
    """E[D] of fast and slow clients and throughput as routing mass moves to the slow half."""
    from .queueing.analysis import analyze
    from .system import example_system

    s = example_system()
    q = np.linspace(0.02, 0.9, 60)  # total routing mass of the 5 slow clients
    rows = []
    for x in q:
        p = np.r_[np.full(5, (1 - x) / 5), np.full(5, x / 5)]
        a = analyze(s.with_routing(p))
        rows.append((a.relative_delay[0], a.relative_delay[-1], a.mean_relative_delay, a.throughput))
    R = np.asarray(rows)
    data = _dump(out, "delay_vs_routing", {"slow_mass": q, "delay_fast": R[:, 0], "delay_slow": R[:, 1],
                                           "mean_delay": R[:, 2], "throughput": R[:, 3]})
    return plots.delay_vs_routing_figure(data, out)


def concurrency_sweep(out: Path) -> list[Path]:
    """Throughput and proxies against m for uniform and optimal routing (U shape of time vs m)."""
    from .optimize import OptimizationProblem, assess, optimize
    from .system import example_system

    s = example_system()
    n = s.n
    ms = list(range(1, 41))
    uni = np.full(n, 1.0 / n)
    base = OptimizationProblem(s, "time-to-accuracy", p_min=1e-3)
    tau = base.resolved_time_budget()
    t_opt = optimize(OptimizationProblem(s, "time-to-accuracy", p_min=1e-3, concurrency=(1, 40)))
    w_opt = optimize(OptimizationProblem(s, "wallclock", p_min=1e-3, concurrency=(1, 40), time_budget=tau))
    ua = [assess(OptimizationProblem(s, "wallclock", p_min=0, time_budget=tau), uni, m) for m in ms]
    prof_t = dict(t_opt.concurrency_profile)
    prof_w = dict(w_opt.concurrency_profile)
    lam_u = [a["throughput"] for a in ua]
    data = {"m": ms, "throughput_uniform": lam_u, "time_to_accuracy_uniform": [a["time_to_accuracy"] for a in ua],
            "time_to_accuracy_optimal": [prof_t[m] for m in ms], "wallclock_uniform": [a["wallclock"] for a in ua],
            "wallclock_optimal": [prof_w[m] for m in ms], "m_star_time": t_opt.concurrency,
            "m_star_wallclock": w_opt.concurrency, "time_budget": tau}
    return plots.concurrency_sweep_figure(_dump(out, "concurrency_sweep", data), out)


def routing_vs_speed(out: Path) -> list[Path]:
    """Optimal p_i against mu_i for each objective (five device types, 4 clients each)."""
    from .optimize import OptimizationProblem, optimize
    from .system import System

    s = System.from_rates(np.repeat(np.asarray(FIVE_TYPES), 4), concurrency=20)
    res = {}
    for obj, pmin in (("per-update", 1e-4), ("wallclock", 1e-4), ("time-to-accuracy", 1e-4), ("max-throughput", 0.0)):
        r = optimize(OptimizationProblem(s, obj, p_min=pmin))
        res[obj] = r.routing
    return plots.routing_vs_speed_figure(_dump(out, "routing_vs_speed", {"rates": s.rates, **res}), out)


def energy_pareto(out: Path) -> list[Path]:
    """Time to accuracy vs energy to accuracy over the trade-off weight r (P4)."""
    from .optimize import OptimizationProblem, assess, pareto_front
    from .system import System

    s = System.from_rates(np.repeat(np.asarray(FIVE_TYPES), 4), concurrency=20)
    pb = OptimizationProblem(s, "tradeoff", p_min=1e-4)
    weights = np.linspace(0, 1, 11)
    front = pareto_front(pb, weights=weights)
    T = [r.proxies["time_to_accuracy"] for r in front]
    E = [r.proxies["energy"] for r in front]
    u = assess(pb, np.full(s.n, 1 / s.n), s.concurrency)
    data = {"weights": weights, "time": T, "energy": E, "uniform_time": u["time_to_accuracy"],
            "uniform_energy": u["energy"]}
    return plots.energy_pareto_figure(_dump(out, "energy_pareto", data), out)


def make_all(out: str | Path = "figures", closed_forms: str | Path | None = None,
             grids: list[str | Path] | None = None, comparisons: list[str | Path] | None = None) -> list[Path]:
    """Regenerate every figure: analytic ones, closed forms (if results exist), validation grids
    and algorithm comparisons (results folders of :mod:`aflqueue.experiments.comparison`)."""
    out = Path(out)
    made: list[Path] = []
    for f in (delay_vs_routing, concurrency_sweep, routing_vs_speed, energy_pareto):
        made += f(out)
    cf = Path(closed_forms) if closed_forms else Path("validation/results/closed_forms/closed_forms.json")
    if cf.is_file():
        from .experiments.closed_forms import load_results

        made += plots.closed_forms_figures(load_results(cf), out)
    for g in grids or []:
        from .experiments.grid import load_cells

        recs = load_cells(g)
        if recs:
            made += [p for p, _ in plots.grid_accuracy_figures(recs, out)]
    for c in comparisons or []:
        from .experiments.runner import JobStore

        recs = [r for r in JobStore(Path(c)).load() if "preset" in r]
        for preset in dict.fromkeys(r["preset"] for r in recs):
            made += [p for p, _ in plots.comparison_accuracy_figure([r for r in recs if r["preset"] == preset],
                                                                    out, preset)]
    return made

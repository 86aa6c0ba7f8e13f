"""The analytic figures, computed from the public API (exact analysis and optimiser only).

    python examples/paper_figures.py --output figures/examples          # a few seconds
    python examples/paper_figures.py --output /tmp/f --points 8 --max-concurrency 12   # quicker

Writes four figures (PNG and PDF, in the toolkit's style from ``aflqueue.style``, at the size a
paper prints them) and their data (``<name>.json``) to ``--output``:

* ``delay_vs_routing``: relative delay E[D_i] of a fast and a slow client, and the throughput,
  as routing mass moves to the slow half (5 fast clients at rate 1, 5 slow at 0.1, m = 10);
  the mean staleness sum_i p_i E[D_i] stays at m - 1 (docs/theory.md section 3);
* ``concurrency_sweep``: throughput and the time-to-accuracy proxy against m, for uniform routing
  and for the optimal routing at each m (the U shape of time against m; section 5);
* ``routing_vs_speed``: the optimal p_i against the compute rate mu_i for each objective
  (five device types, four clients each; section 6);
* ``energy_pareto``: time to accuracy against energy to accuracy along the trade-off (P4).

``aflqueue figures`` draws the committed versions of these figures (figures/) from the library.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import aflqueue as aq
from aflqueue.optimization import evaluate
from aflqueue.style import (GREY, colour, legend_below, legend_entries, log_axis, save_figure, styled, subplots)

P_MIN = 1e-3  # the proxies need every p_i > 0


def save(fig, out: Path, name: str, data: dict) -> Path:
    """Write the figure (PNG and PDF, in the toolkit's style and at paper size) and its data."""
    png = save_figure(fig, out, name)[0]
    (out / f"{name}.json").write_text(json.dumps(data, indent=1))
    return png


def delay_vs_routing(out: Path, points: int) -> Path:
    system = aq.example_system()  # clients 0-4 at rate 1, 5-9 at rate 0.1, m = 10
    mass = np.linspace(0.02, 0.9, points)  # routing mass on the slow half
    rows = []
    for x in mass:
        a = aq.analyze(system.with_routing(np.r_[np.full(5, (1 - x) / 5), np.full(5, x / 5)]))
        rows.append([a.relative_delay[0], a.relative_delay[-1], a.mean_relative_delay, a.throughput])
    fast, slow, mean, lam = np.asarray(rows).T
    mk = "o" if points <= 12 else None  # few points: mark each
    with styled():
        fig, axes = subplots(1, 2, width="double", panel_height=2.0)
        a1, a2 = axes[0]
        a1.plot(mass, slow, color=colour(3), ls="--", marker=mk, label="slow client (rate 0.1)")
        a1.plot(mass, fast, color=colour(2), ls="-.", marker=mk, label="fast client (rate 1)")
        a1.plot(mass, mean, color=GREY, ls=":", marker=mk, label=r"mean $\Sigma_i\, p_i E[D_i] = m - 1$")
        log_axis(a1, "y")
        a1.set_ylabel(r"relative delay $E[D_i]$ (updates)")
        a1.set_title("relative delay of a fast and a slow client")
        a2.plot(mass, lam, color=colour(0), marker=mk, label=r"throughput $\lambda$")
        a2.set_ylabel(r"throughput $\lambda$ (updates / time unit)")
        a2.set_title("throughput")
        for a in (a1, a2):
            a.set_xlabel("routing mass on the 5 slow clients (share)")
        legend_below(fig, *legend_entries(axes), ncol=4)
        fig.suptitle("Exact analysis, 5 clients at rate 1 and 5 at 0.1, m = 10")
        return save(fig, out, "delay_vs_routing", {"slow_mass": mass.tolist(), "delay_fast": fast.tolist(),
                                                   "delay_slow": slow.tolist(), "mean_delay": mean.tolist(),
                                                   "throughput": lam.tolist()})


def concurrency_sweep(out: Path, max_m: int) -> Path:
    system = aq.example_system()
    ms = np.arange(1, max_m + 1)
    problem = aq.OptimizationProblem(system, "time-to-accuracy", p_min=P_MIN)
    uniform = np.full(system.n, 1 / system.n)
    uniform_time = [evaluate(problem, uniform, int(m)).value for m in ms]  # the proxy at one routing
    best = aq.optimize(system, "time-to-accuracy", p_min=P_MIN, concurrency=(1, max_m))
    optimal_time = dict(best.concurrency_profile)
    lam = [aq.analyze(system.with_concurrency(int(m))).throughput for m in ms]
    mk = "o" if len(ms) <= 12 else None
    with styled():
        fig, axes = subplots(1, 2, width="double", panel_height=2.0)
        a1, a2 = axes[0]
        a1.plot(ms, lam, color="black", marker=mk, label="uniform routing (AsyncSGD)")
        a1.set_ylabel(r"throughput $\lambda(m)$ (updates / time unit)")
        a1.set_title("throughput")
        a2.plot(ms, uniform_time, color="black", marker=mk, label="uniform routing (AsyncSGD)")
        a2.plot(ms, [optimal_time[int(m)] for m in ms], color=colour(0), ls="--", marker=mk,
                label="optimal routing at each m")
        a2.plot([best.concurrency], [optimal_time[int(best.concurrency)]], "*", color=colour(1), ms=8,
                label=f"optimum m* = {best.concurrency}")
        a2.set_ylabel(r"time to accuracy $E[T_\epsilon]$ (time units)")
        a2.set_title("time-to-accuracy proxy (P3)")
        for a in (a1, a2):
            a.set_xlabel("concurrency m (tasks in flight)")
        legend_below(fig, *legend_entries(axes), ncol=3)
        fig.suptitle("Exact analysis against concurrency, 5 clients at rate 1 and 5 at 0.1")
        return save(fig, out, "concurrency_sweep", {"m": ms.tolist(), "throughput_uniform": lam,
                                                    "time_to_accuracy_uniform": uniform_time,
                                                    "time_to_accuracy_optimal": [optimal_time[int(m)] for m in ms],
                                                    "m_star": best.concurrency})


def routing_vs_speed(out: Path) -> Path:
    rates = np.repeat([3.0, 1.5, 0.6, 0.25, 0.1], 4)  # five device types, 30x apart
    system = aq.System.from_rates(rates, concurrency=20)
    routing = {}
    names = {"per-update": "P1 per-update", "wallclock": "P2 wall-clock", "time-to-accuracy": "P3 time to accuracy",
             "max-throughput": "P5 max-throughput"}
    speeds = np.unique(rates)
    with styled():
        fig, axes = subplots(1, 1, width="single", panel_height=2.3)
        ax = axes[0][0]
        for k, objective in enumerate(names):
            r = aq.optimize(system, objective, p_min=0.0 if objective == "max-throughput" else P_MIN)
            routing[objective] = r.routing.tolist()
            p = np.maximum(r.routing, 1e-6)
            # one point per speed (clients of a speed share it), shifted apart so that equal routings stay visible
            ax.plot(speeds * 10 ** ((k - 1.5) * 0.02), [p[rates == s].mean() for s in speeds], color=colour(k),
                    marker="osD^"[k], ls=("-", "--", "-.", ":")[k], label=names[objective])
        ax.axhline(1 / system.n, color=GREY, ls=":", lw=1, label="uniform (AsyncSGD)")
        log_axis(ax, "both")
        ax.set_xlabel(r"compute rate $\mu_i$ (tasks / time unit)")
        ax.set_ylabel(r"optimal routing $p_i$ (share)")
        ax.set_title("five device types, m = 20")
        legend_below(fig, *legend_entries(axes), ncol=2, title="objective")
        return save(fig, out, "routing_vs_speed", {"rates": rates.tolist(), **routing})


def energy_pareto(out: Path, points: int) -> Path:
    system = aq.example_system()
    problem = aq.OptimizationProblem(system, "tradeoff", p_min=P_MIN)
    front = aq.pareto_front(problem, weights=np.linspace(0, 1, points))
    time = [r.proxies["time_to_accuracy"] for r in front]
    energy = [r.proxies["energy"] for r in front]
    with styled():
        fig, axes = subplots(1, 1, width="single", panel_height=2.3)
        ax = axes[0][0]
        ax.plot(time, energy, "o-", color=colour(0), mfc="none", label="optimum at trade-off weight r (0 to 1)")
        ax.set_xlabel(r"time to accuracy $E[T_\epsilon]$ (time units)")
        ax.set_ylabel(r"energy to accuracy (energy units)")
        ax.set_title("time/energy Pareto front (P4)")
        legend_below(fig, *legend_entries(axes), ncol=1)
        return save(fig, out, "energy_pareto", {"weight": np.linspace(0, 1, points).tolist(), "time": time,
                                                "energy": energy})


def main(argv: list[str] | None = None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="figures/examples", help="folder for the PNGs and their data")
    ap.add_argument("--points", type=int, default=40, help="points per curve (default 40)")
    ap.add_argument("--max-concurrency", type=int, default=30, help="largest m of the sweep (default 30)")
    args = ap.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    paths = [delay_vs_routing(out, args.points), concurrency_sweep(out, args.max_concurrency),
             routing_vs_speed(out), energy_pareto(out, max(2, min(args.points, 11)))]
    for p in paths:
        print(p)
    return paths


if __name__ == "__main__":
    main()

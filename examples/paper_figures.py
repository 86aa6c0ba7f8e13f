"""The analytic figures, computed from the public API (exact analysis and optimiser only).

    python examples/paper_figures.py --output figures/examples          # a few seconds
    python examples/paper_figures.py --output /tmp/f --points 8 --max-concurrency 12   # quicker

Writes four PNGs and their data (``<name>.json``) to ``--output``:

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

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import aflqueue as aq  # noqa: E402
from aflqueue.optimization import evaluate  # noqa: E402

P_MIN = 1e-3  # the proxies need every p_i > 0


def save(fig, out: Path, name: str, data: dict) -> Path:
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=120)
    plt.close(fig)
    (out / f"{name}.json").write_text(json.dumps(data, indent=1))
    return out / f"{name}.png"


def delay_vs_routing(out: Path, points: int) -> Path:
    system = aq.example_system()  # clients 0-4 at rate 1, 5-9 at rate 0.1, m = 10
    mass = np.linspace(0.02, 0.9, points)  # routing mass on the slow half
    rows = []
    for x in mass:
        a = aq.analyze(system.with_routing(np.r_[np.full(5, (1 - x) / 5), np.full(5, x / 5)]))
        rows.append([a.relative_delay[0], a.relative_delay[-1], a.mean_relative_delay, a.throughput])
    fast, slow, mean, lam = np.asarray(rows).T
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    a1.semilogy(mass, fast, label="fast client (rate 1)")
    a1.semilogy(mass, slow, label="slow client (rate 0.1)")
    a1.semilogy(mass, mean, "k--", lw=1, label=r"$\sum_i p_i E[D_i] = m - 1$")
    a1.set_ylabel(r"relative delay $E[D_i]$ (updates)")
    a1.legend(fontsize=8)
    a2.plot(mass, lam)
    a2.set_ylabel(r"throughput $\lambda$ (updates / time)")
    for a in (a1, a2):
        a.set_xlabel("routing mass on the 5 slow clients")
        a.grid(alpha=0.3)
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
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    a1.plot(ms, lam)
    a1.set_ylabel(r"throughput $\lambda(m)$, uniform routing")
    a2.plot(ms, uniform_time, label="uniform routing")
    a2.plot(ms, [optimal_time[int(m)] for m in ms], label="optimal routing at each m")
    a2.axvline(best.concurrency, color="tab:orange", ls=":", lw=1)
    a2.set_ylabel(r"time to accuracy $K_\epsilon / \lambda$")
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.set_xlabel("concurrency m")
        a.grid(alpha=0.3)
    return save(fig, out, "concurrency_sweep", {"m": ms.tolist(), "throughput_uniform": lam,
                                                "time_to_accuracy_uniform": uniform_time,
                                                "time_to_accuracy_optimal": [optimal_time[int(m)] for m in ms],
                                                "m_star": best.concurrency})


def routing_vs_speed(out: Path) -> Path:
    rates = np.repeat([3.0, 1.5, 0.6, 0.25, 0.1], 4)  # five device types, 30x apart
    system = aq.System.from_rates(rates, concurrency=20)
    routing = {}
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for objective in ("per-update", "wallclock", "time-to-accuracy", "max-throughput"):
        r = aq.optimize(system, objective, p_min=0.0 if objective == "max-throughput" else P_MIN)
        routing[objective] = r.routing.tolist()
        ax.semilogx(rates, r.routing, "o-", label=objective)
    ax.axhline(1 / system.n, color="grey", ls=":", lw=1, label="uniform")
    ax.set_xlabel(r"compute rate $\mu_i$")
    ax.set_ylabel(r"optimal routing $p_i$")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, out, "routing_vs_speed", {"rates": rates.tolist(), **routing})


def energy_pareto(out: Path, points: int) -> Path:
    system = aq.example_system()
    problem = aq.OptimizationProblem(system, "tradeoff", p_min=P_MIN)
    front = aq.pareto_front(problem, weights=np.linspace(0, 1, points))
    time = [r.proxies["time_to_accuracy"] for r in front]
    energy = [r.proxies["energy"] for r in front]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(time, energy, "o-")
    ax.set_xlabel(r"time to accuracy $E[T_\epsilon]$")
    ax.set_ylabel(r"energy to accuracy $P \cdot E[T_\epsilon]$")
    ax.grid(alpha=0.3)
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

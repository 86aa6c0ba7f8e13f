"""The main job (``aflqueue run``): analyse -> optimise -> simulate -> train, and compare.

On the embedded default system (10 clients, 5 fast at rate 1 and 5 slow at rate 0.1, ``m = 10``)
and data (digits, Dirichlet 0.5 split, MLP): exact analysis of AsyncSGD's network, the
wall-clock-optimal routing for a time budget of ``updates`` AsyncSGD updates, a simulation of
both routings (checked against the closed forms), and trace-driven training of Generalized
AsyncSGD under both routings for the same simulated time. It prints predicted and measured
gains side by side and writes ``summary.json`` plus each run's outputs under ``output``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main_job"]


def main_job(output: str = "runs/main", seed: int = 0, updates: int = 1500, quiet: bool = False,
             target: float = 0.9) -> dict[str, Any]:
    from rich.table import Table

    from .config import load_config
    from .console import console, fmt
    from .experiments.outcomes import time_to_target
    from .pipeline import train
    from .optimize import OptimizationProblem, assess, optimize
    from .queueing.analysis import analyze
    from .sim import estimate
    from .system import example_system

    con = console()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    system = example_system()
    n = system.n
    a = analyze(system)
    tau = updates / a.throughput
    con.rule("1. exact analysis of AsyncSGD (uniform routing)")
    con.print(f"{n} clients (5 at rate 1, 5 at rate 0.1), m = {system.concurrency}: throughput {fmt(a.throughput)} "
              f"updates/time; E[D] fast {fmt(a.relative_delay[0])}, slow {fmt(a.relative_delay[-1])} updates "
              f"(mean {fmt(a.mean_relative_delay)} = m - 1)")
    con.rule("2. wall-clock-optimal routing")
    problem = OptimizationProblem(system, "wallclock", time_budget=tau, p_min=1e-3)
    opt = optimize(problem, seed=seed)
    con.print(f"time budget {fmt(tau)} (= {updates} AsyncSGD updates); optimum p fast {fmt(opt.routing[0])}, "
              f"slow {fmt(opt.routing[-1])}; predicted throughput {fmt(opt.throughput)} "
              f"({opt.throughput / a.throughput:.2f}x); proxy W {fmt(opt.baseline['objective_value'])} -> "
              f"{fmt(opt.objective_value)}")
    routings = {"uniform (AsyncSGD)": np.full(n, 1.0 / n), "wall-clock optimal": opt.routing}
    rows: dict[str, dict[str, Any]] = {}
    con.rule("3. simulation and 4. trace-driven training")
    for name, p in routings.items():
        tag = "uniform" if name.startswith("uniform") else "optimal"
        cfg = load_config(overrides=[f'output="{(out / tag).as_posix()}"', "routing.kind=\"explicit\"",
                                     f"routing.values={json.dumps([float(x) for x in p])}",
                                     f"run.time_budget={tau!r}", "run.updates=null", "run.eval_every=0",
                                     "run.eval_times=20", f"seed={seed}"])
        res = train(cfg, progress=not quiet)
        from .sim.trace import Trace

        tr = Trace.load(out / tag / "trace.npz")
        est = estimate(tr, warmup=0.1, batches=10)
        pred = assess(problem, p, system.concurrency)
        rows[name] = {
            "routing": [float(x) for x in p], "predicted_throughput": pred["throughput"],
            "simulated_throughput": est.throughput.to_dict(), "arrivals_in_budget": res.arrivals,
            "predicted_wallclock_proxy": pred["wallclock"], "final_accuracy": res.final_accuracy,
            "final_loss": res.final_loss, "time_to_target": time_to_target(res.curves, target),
            "curves": res.curves,
        }
    t = Table(title=f"Predicted vs measured at equal simulated time {fmt(tau)} (seed {seed})")
    for col in ("routing", "throughput pred.", "throughput sim.", "arrivals", "proxy W pred.", "test accuracy",
                "test loss", f"time to {int(100 * target)}%"):
        t.add_column(col, justify="left" if col == "routing" else "right")
    for name, r in rows.items():
        st = r["simulated_throughput"]
        t.add_row(name, fmt(r["predicted_throughput"]), f"{fmt(st['mean'])} ± {fmt((st['ci'][1] - st['ci'][0]) / 2, 2)}",
                  str(r["arrivals_in_budget"]), fmt(r["predicted_wallclock_proxy"]), f"{100 * r['final_accuracy']:.2f}%",
                  fmt(r["final_loss"]), fmt(r["time_to_target"]))
    con.print(t)
    u, o = rows["uniform (AsyncSGD)"], rows["wall-clock optimal"]
    summary = {
        "time_budget": tau, "target_accuracy": target, "rows": rows,
        "predicted_proxy_ratio": o["predicted_wallclock_proxy"] / u["predicted_wallclock_proxy"],
        "measured_accuracy_gain": o["final_accuracy"] / u["final_accuracy"] - 1,
        "measured_time_to_target_ratio": (o["time_to_target"] / u["time_to_target"])
        if o["time_to_target"] and u["time_to_target"] else None,
    }
    con.print(f"predicted: proxy W x{summary['predicted_proxy_ratio']:.3f} (lower is better); measured: accuracy "
              f"{100 * summary['measured_accuracy_gain']:+.2f}% relative, time to {int(100 * target)}% "
              + ("x" + f"{summary['measured_time_to_target_ratio']:.2f}" if summary["measured_time_to_target_ratio"]
                 else "not reached by both") + " (one seed; see `aflqueue validate` for confidence intervals)")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary

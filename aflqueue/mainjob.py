"""The main job (``aflqueue run``): analyse -> optimise -> simulate -> train, and compare.

On the embedded default system (10 clients, 5 fast at rate 1 and 5 slow at rate 0.1, ``m = 10``)
and data (digits, Dirichlet 0.5 split, MLP), for each of several seeds:

1. exact analysis of AsyncSGD's network (uniform routing, ``m = n``) fixes the time budget: the
   expected time of ``updates`` AsyncSGD updates;
2. the wall-clock optimiser, with constants calibrated at the seed's initial model, returns its
   operating point -- routing and step size (``routing.kind = "optimal"``);
3. both routings are simulated (the trace is checked against the closed forms) and trained
   with Generalized AsyncSGD for the same simulated time.

It prints the predicted and measured gains paired by seed, with intervals that respect each
quantity (bootstrap for accuracy differences, log scale for time ratios, docs/theory.md section
8), and writes every run and ``summary.json`` under ``output``. Runs are saved as they finish, so
an interrupted main job resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main_job", "TARGET"]

#: Test accuracy whose time to reach is compared (digits; AsyncSGD reaches it within the budget).
TARGET = 0.9
ROUTINGS = {"uniform": "AsyncSGD (uniform)", "optimal": "wall-clock operating point"}


def _run(args: tuple) -> dict[str, Any]:
    """One training run of the main job (a job of :func:`aflqueue.jobs.run_jobs`)."""
    import time

    from .config import load_config
    from .outcomes import time_to_target
    from .io import atomic_write_json
    from .pipeline import prepare, train
    from .sim import estimate

    kind, seed, tau, out = args
    t0 = time.perf_counter()
    sets = [f"output={json.dumps(out)}", f"seed={seed}", f"run.time_budget={tau!r}", "run.eval_every=0",
            "run.eval_times=20", "run.checkpoint_every=0", f"routing.kind={json.dumps(kind)}"]
    if kind == "optimal":
        sets += ['routing.constants="calibrate"', "routing.p_min=0.001"]
    cfg = load_config(None, sets)
    pr = prepare(cfg)
    res = train(cfg, prepared=pr)
    est = estimate(pr.trace, warmup=0.1, batches=10)
    rec = {
        "routing_kind": kind, "seed": seed, "routing": [float(x) for x in pr.routing],
        "concurrency": int(pr.system.concurrency), "step_size": pr.step_size, "lr": pr.lr,
        "predicted": {k: pr.predicted.get(k) for k in ("throughput", "wallclock", "S1", "S2")},
        "simulated_throughput": est.throughput.to_dict(), "arrivals": res.arrivals,
        "final_accuracy": res.final_accuracy, "final_loss": res.final_loss, "diverged": res.diverged,
        "time_to_target": time_to_target(res.curves, TARGET), "curves": res.curves,
        "timing": {"wall_time": time.perf_counter() - t0},
    }
    atomic_write_json(Path(out) / "summary_run.json", rec)
    return rec


def _pairs(records: list[dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    by: dict[int, dict[str, dict[str, Any]]] = {}
    for r in records:
        by.setdefault(r["seed"], {})[r["routing_kind"]] = r
    return {s: v for s, v in by.items() if len(v) == 2}


def summarize(records: list[dict[str, Any]], tau: float) -> dict[str, Any]:
    """Paired gains of the operating point over AsyncSGD, with intervals (module docstring)."""
    from .stats import bootstrap_interval, log_ratio_interval

    pairs = _pairs(records)
    seeds = sorted(pairs)
    u = [pairs[s]["uniform"] for s in seeds]
    o = [pairs[s]["optimal"] for s in seeds]
    acc_diff = bootstrap_interval([b["final_accuracy"] - a["final_accuracy"] for a, b in zip(u, o)])
    ratios = [b["time_to_target"] / a["time_to_target"] for a, b in zip(u, o)
              if a["time_to_target"] and b["time_to_target"]]
    both = len(ratios)
    t_ratio = log_ratio_interval(ratios)
    proxy = log_ratio_interval([b["predicted"]["wallclock"] / a["predicted"]["wallclock"] for a, b in zip(u, o)
                                if a["predicted"]["wallclock"] and b["predicted"]["wallclock"]])
    per = {k: {"accuracy": bootstrap_interval([p[k]["final_accuracy"] for p in pairs.values()]).to_dict(),
               "reached_target": sum(p[k]["time_to_target"] is not None for p in pairs.values()),
               "diverged": sum(bool(p[k]["diverged"]) for p in pairs.values()),
               "throughput_predicted": float(np.mean([p[k]["predicted"]["throughput"] for p in pairs.values()])),
               "throughput_simulated": float(np.mean([p[k]["simulated_throughput"]["mean"] for p in pairs.values()])),
               "arrivals": float(np.mean([p[k]["arrivals"] for p in pairs.values()])),
               "lr": float(np.mean([p[k]["lr"] for p in pairs.values()]))} for k in ROUTINGS}
    return {"time_budget": tau, "target_accuracy": TARGET, "seeds": seeds, "per_routing": per,
            "accuracy_difference": acc_diff.to_dict(), "time_to_target_ratio": t_ratio.to_dict(),
            "time_to_target_pairs": both, "predicted_wallclock_ratio": proxy.to_dict()}


def main_job(output: str = "runs/main", seed: int = 0, seeds: int = 5, updates: int = 1500, quiet: bool = False,
             backend: str = "serial", workers: int | None = None, address: str | None = None) -> dict[str, Any]:
    """Run the main job (module docstring) on seeds ``seed .. seed + seeds - 1``; return the summary."""
    from rich.table import Table

    from .console import console, fmt
    from .io import atomic_write_json
    from .jobs import JobStore, run_jobs
    from .protocol import time_budget
    from .queueing.analysis import analyze
    from .system import example_system

    con = console()
    out = Path(output)
    system = example_system()  # uniform routing at m = n: AsyncSGD
    a = analyze(system)
    tau = time_budget(system, updates)
    con.rule("1. exact analysis of AsyncSGD (uniform routing)")
    con.print(f"{system.n} clients (5 at rate 1, 5 at rate 0.1), m = {system.concurrency}: throughput "
              f"{fmt(a.throughput)} updates/time; E[D] fast {fmt(a.relative_delay[0])}, slow "
              f"{fmt(a.relative_delay[-1])} updates (mean {fmt(a.mean_relative_delay)} = m - 1); time budget "
              f"{fmt(tau)} = {updates} AsyncSGD updates")
    con.rule(f"2-3. operating point, simulation and training on {seeds} seeds")
    jobs = [(f"{kind}_s{s}", (kind, s, tau, str((out / f"{kind}_s{s}").as_posix())))
            for s in range(seed, seed + seeds) for kind in ROUTINGS]
    records = run_jobs(jobs, _run, JobStore(out / "runs"), backend=backend, workers=workers, address=address,
                       progress=None if quiet else con.print,
                       describe=lambda r: f"accuracy {100 * r['final_accuracy']:.2f}%")
    records = [r for r in records if r["seed"] in range(seed, seed + seeds)]
    summary = summarize(records, tau)
    per = summary["per_routing"]
    t = Table(title=f"AsyncSGD vs the wall-clock operating point at equal simulated time {fmt(tau)} "
                    f"({len(summary['seeds'])} seeds, 95% intervals)")
    for col in ("routing", "learning rate", "throughput pred.", "throughput sim.", "arrivals", "test accuracy",
                f"reached {int(100 * TARGET)}%", "diverged"):
        t.add_column(col, justify="left" if col == "routing" else "right")
    for k, label in ROUTINGS.items():
        r = per[k]
        acc = r["accuracy"]
        t.add_row(label, fmt(r["lr"]), fmt(r["throughput_predicted"]), fmt(r["throughput_simulated"]),
                  f"{r['arrivals']:.0f}", _pct_ci(acc), f"{r['reached_target']}/{len(summary['seeds'])}",
                  str(r["diverged"]))
    con.print(t)
    d, tr, pw = summary["accuracy_difference"], summary["time_to_target_ratio"], summary["predicted_wallclock_ratio"]
    con.print(f"predicted: wall-clock proxy ratio {_ratio_ci(pw)} (operating point / AsyncSGD; < 1 is better)")
    con.print(f"measured: accuracy difference {_pp_ci(d)} (paired by seed, bootstrap); time to "
              f"{int(100 * TARGET)}% ratio {_ratio_ci(tr)} over the {summary['time_to_target_pairs']} seed(s) where "
              "both reached it (log scale)")
    atomic_write_json(out / "summary.json", summary)
    con.print(f"outputs: {out}/summary.json and one folder per run under {out}/ (results.json, updates.csv, "
              "trace.npz, config.json)")
    return summary


def _pct_ci(e: dict[str, Any] | None) -> str:
    if not e:
        return "-"
    ci = e["ci"]
    return f"{100 * e['mean']:.2f}%" + ("" if ci is None else f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]")


def _pp_ci(e: dict[str, Any] | None) -> str:
    if not e:
        return "-"
    ci = e["ci"]
    return f"{100 * e['mean']:+.2f} points" + ("" if ci is None else f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]")


def _ratio_ci(e: dict[str, Any] | None) -> str:
    if not e:
        return "-"
    ci = e["ci"]
    return f"x{e['mean']:.3f}" + ("" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")

"""Optimal routing from a script: compare AsyncSGD (uniform), P1, P2, P3 and P5 routings.

    python analysis/optimal_routing.py                      # built-in 5 fast / 5 slow example
    python analysis/optimal_routing.py system.toml --concurrency-range 1:40 --json out.json
    python analysis/optimal_routing.py --calibrate digits   # constants estimated from a model

For each routing the table lists throughput (updates per time unit), the mean and per-client
relative delay E[D_i] (updates), and every proxy: U after K updates, W within the time budget,
the time and the energy to reach the target. Proxies rank routings; they do not predict accuracy.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import aflqueue as aq
from aflqueue.bounds import ProxyConstants
from aflqueue.optimization import OptimizationProblem, assess, optimize
from aflqueue.console import console, fmt


def calibrated_constants(dataset: str, clients: int, seed: int) -> ProxyConstants:
    """Estimate Delta, L, sigma2, M2, G2 at initialisation of the data set's default model."""
    from aflqueue.calibration import calibrate
    from aflqueue.fl.data import default_model_for, make_federated
    from aflqueue.fl.models import build_model

    fd = make_federated(dataset, clients, "dirichlet", alpha=0.5, seed=seed)
    model = build_model(default_model_for(dataset), fd.input_shape, fd.num_classes, seed=seed)
    cal = calibrate(model, fd.clients, seed=seed)
    print("calibrated constants:", {k: round(v, 4) for k, v in cal.to_dict()["constants"].items()})
    return cal.constants


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("system", nargs="?", help="system file (default: the built-in example)")
    ap.add_argument("--concurrency-range", default=None, help="LO:HI for the P3 joint optimisation (default 1:3n)")
    ap.add_argument("--calibrate", metavar="DATASET", help="estimate the constants on an offline data set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the comparison as JSON")
    args = ap.parse_args()

    system = aq.load_system(args.system) if args.system else aq.example_system()
    constants = calibrated_constants(args.calibrate, system.n, args.seed) if args.calibrate else ProxyConstants()
    lo, hi = (int(x) for x in args.concurrency_range.split(":")) if args.concurrency_range else (1, 3 * system.n)
    base = OptimizationProblem(system, "wallclock", constants=constants, p_min=1e-4)
    m = system.concurrency
    uniform = np.full(system.n, 1.0 / system.n)

    runs = {
        "AsyncSGD (uniform)": (uniform, m),
        "P1 per-update": None,
        "P2 wall-clock": None,
        f"P3 time-to-accuracy (m in {lo}..{hi})": None,
        "P5 max-throughput": None,
    }
    specs = {"P1 per-update": ("per-update", None), "P2 wall-clock": ("wallclock", None),
             f"P3 time-to-accuracy (m in {lo}..{hi})": ("time-to-accuracy", (lo, hi)),
             "P5 max-throughput": ("max-throughput", None)}
    for name, (objective, rng) in specs.items():
        pb = OptimizationProblem(system, objective, constants=constants, p_min=1e-4 if objective != "max-throughput" else 0.0,
                                 concurrency=rng, time_budget=base.resolved_time_budget())
        res = optimize(pb, seed=args.seed)
        runs[name] = (res.routing, res.concurrency)

    rows = {name: assess(base, p, mm) for name, (p, mm) in runs.items()}
    from rich.table import Table

    t = Table(title=f"Routings compared: n = {system.n}, constants {constants.to_dict()}")
    cols = ["routing", "m", "throughput", "mean E[D]", "U (K=1000)", "W (budget)", "T to target", "energy"]
    for c in cols:
        t.add_column(c, justify="left" if c == "routing" else "right")
    for name, r in rows.items():
        t.add_row(name, str(r["concurrency"]), fmt(r["throughput"]), fmt(r["mean_relative_delay"]),
                  fmt(r["per_update"]), fmt(r["wallclock"]), fmt(r["time_to_accuracy"]), fmt(r["energy"]))
    con = console()
    con.print(t)
    d = Table(title="Per-client routing p_i and relative delay E[D_i]")
    d.add_column("client")
    d.add_column("mu_i", justify="right")
    for name in rows:
        d.add_column(name.split(" (")[0], justify="right")
    for i, cl in enumerate(system.clients):
        d.add_row(cl.name or str(i), fmt(cl.rate),
                  *[f"{fmt(r['routing'][i])} / {fmt(r['relative_delay'][i])}" for r in rows.values()])
    con.print(d)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"constants": constants.to_dict(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()

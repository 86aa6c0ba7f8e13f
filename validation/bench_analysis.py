"""Benchmark: full exact analysis with gradient vs a plain numpy MVA computing throughput only.

Issue 2 target: the full analysis (throughput, E[X_i], E[D_i] for every client, and the
gradient) at n = m = 1000 within 1.5x of the throughput-only baseline, measured in the same run.

Timings interleave the contenders and report the median of repeated runs, because this machine
is shared and noisy; the ratio is what counts.

    python validation/bench_analysis.py [--sizes 1000,10000] [--repeats 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from aflqueue import System
from aflqueue.queueing import analyze, metrics_vjp


def baseline_mva_throughput(rho: np.ndarray, m: int) -> float:
    """The named baseline: textbook vectorised MVA, throughput only."""
    q = np.zeros_like(rho)
    x = 0.0
    for k in range(1, m + 1):
        r = rho * (1.0 + q)
        x = k / r.sum()
        q = x * r
    return x


def full_analysis(system: System, backend: str = "auto"):
    """Throughput, E[X_i], E[D_i] for all clients, d lambda/dp and d log G/dp (one MVA pass)."""
    return analyze(system, gradient=True, backend=backend)


def full_analysis_with_delay_vjp(system: System, backend: str = "auto"):
    """As above plus the exact gradient of the staleness term sum_i E[D_i] / (n^2 p_i) of the proxy."""
    a = analyze(system, gradient=True, backend=backend)
    n = system.n
    g = metrics_vjp(system, d_relative_delay=1.0 / (n * n * system.routing), backend=backend)
    return a, g


def time_it(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def bench(n: int, m: int, repeats: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rates = np.exp(rng.uniform(np.log(0.1), np.log(10.0), n))
    p = rng.dirichlet(np.ones(n))
    system = System.from_rates(rates, p, m)
    rho = p / rates
    # same answer check, then warm up (this also loads the compiled kernel)
    lam_base = baseline_mva_throughput(rho, m)
    contenders = {
        "full_analysis_with_gradient": lambda: full_analysis(system),
        "full_analysis_with_gradient_numba": lambda: full_analysis(system, "numba"),
        "full_analysis_with_gradient_and_delay_vjp": lambda: full_analysis_with_delay_vjp(system),
        "full_analysis_with_gradient_and_delay_vjp_numba": lambda: full_analysis_with_delay_vjp(system, "numba"),
    }
    for fn in contenders.values():
        out = fn()
        a = out[0] if isinstance(out, tuple) else out
        assert abs(a.throughput - lam_base) <= 1e-10 * lam_base
    times: dict[str, list[float]] = {"baseline": [], **{k: [] for k in contenders}}
    for _ in range(repeats):
        times["baseline"].append(time_it(baseline_mva_throughput, rho, m))
        for k, fn in contenders.items():
            times[k].append(time_it(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    row: dict = {"n": n, "m": m, "repeats": repeats, "baseline_throughput_only_s": med["baseline"]}
    for k in contenders:
        row[f"{k}_s"] = med[k]
        row[f"ratio_{k}"] = med[k] / med["baseline"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated n = m values")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", help="write results to this file")
    args = ap.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        reps = args.repeats if size <= 2000 else max(3, args.repeats // 2)
        r = bench(size, size, reps)
        rows.append(r)
        print(f"n = m = {size}: baseline numpy MVA, throughput only: {r['baseline_throughput_only_s'] * 1e3:.2f} ms")
        for k in ("full_analysis_with_gradient", "full_analysis_with_gradient_numba",
                  "full_analysis_with_gradient_and_delay_vjp", "full_analysis_with_gradient_and_delay_vjp_numba"):
            print(f"    {k:<50} {r[k + '_s'] * 1e3:9.2f} ms   ratio {r['ratio_' + k]:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

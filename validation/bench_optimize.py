"""Benchmark: routing/concurrency optimisation wall time (issue 4 targets).

* n = 100 clients (five device types, rates 3, 1.5, 0.6, 0.25, 0.1), joint optimisation of
  routing p and concurrency m in 1..100 for the wall-clock proxy: target <= 5 s.
* n = 1000 clients, fixed m (100 and 1000), wall-clock proxy: target <= 10 s.

Each case is timed from a fresh problem (kernels already compiled: the one-time numba load is
reported separately), median of ``--repeats`` runs.

    python validation/bench_optimize.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from aflqueue import System
from aflqueue.system import FIVE_TYPES
from aflqueue.optimization import OptimizationProblem, optimize

TYPES = np.asarray(FIVE_TYPES)


def timed(problem: OptimizationProblem, repeats: int) -> tuple[float, object]:
    times, res = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        res = optimize(problem)
        times.append(time.perf_counter() - t)
    return statistics.median(times), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write results to this file")
    args = ap.parse_args()
    t = time.perf_counter()
    optimize(OptimizationProblem(System.from_rates([1.0, 2.0], concurrency=2), "wallclock"))
    print(f"first call (numba kernel load/compile): {time.perf_counter() - t:.2f} s")
    cases = [
        ("n=100, joint p and m in 1..100", System.from_rates(np.repeat(TYPES, 20), concurrency=100), (1, 100), 5.0),
        ("n=1000, fixed m=100", System.from_rates(np.repeat(TYPES, 200), concurrency=100), None, 10.0),
        ("n=1000, fixed m=1000", System.from_rates(np.repeat(TYPES, 200), concurrency=1000), None, 10.0),
    ]
    rows = []
    for name, system, rng, target in cases:
        wall, res = timed(OptimizationProblem(system, "wallclock", concurrency=rng), args.repeats)
        gain = 1 - res.objective_value / res.baseline["objective_value"]
        rows.append({"case": name, "seconds": wall, "target_seconds": target, "concurrency": res.concurrency,
                     "iterations": res.iterations, "evaluations": res.evaluations, "kkt_residual": res.kkt_residual,
                     "improvement_over_uniform": gain})
        print(f"{name:<34} {wall:6.2f} s (target <= {target:.0f} s)  m* = {res.concurrency:4d}  "
              f"{res.evaluations:5d} evaluations  KKT {res.kkt_residual:.1e}  proxy -{100 * gain:.1f}% vs uniform")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

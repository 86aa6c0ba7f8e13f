"""Timing of the approximate analysis for general service against the exact product form.

For n = 100 and n = 1000 clients (rates log-uniform over a 10x range, lognormal compute with
cv 1.5, uniform routing) and m = n and m = 2n, the script times:

* one analysis: ``approx_analyze`` against ``analyze`` (exact MVA, numpy backend);
* what the optimiser calls: throughput, ``E[D_i]``, ``sum_i w_i E[D_i]`` and their routing
  gradients, ``approx_delay_objective`` against ``delay_objective`` (compiled exact MVA with the
  cotangent recursion).

Contenders are interleaved and each figure is the median of the repeats (the machine is shared
and noisy). Compilation happens before timing. No assertion on time: it prints a table.

    python validation/bench_approx.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aflqueue import System  # noqa: E402
from aflqueue.queueing import analyze  # noqa: E402
from aflqueue.queueing.approx import approx_analyze, approx_delay_objective  # noqa: E402
from aflqueue.queueing.gradients import delay_objective  # noqa: E402


def _system(n: int, m: int) -> System:
    rates = np.exp(np.random.default_rng(n).uniform(np.log(0.1), 0.0, n))
    return System.from_rates(rates, None, m, service="lognormal:cv=1.5")


def _time(fun) -> float:
    t = time.perf_counter()
    fun()
    return time.perf_counter() - t


def bench(n: int, m: int, repeats: int) -> dict[str, float]:
    s = _system(n, m)
    p, w = s.routing, 1.0 / (n * n * s.routing)
    contenders = {
        "pf_analysis": lambda: analyze(s, backend="numpy"),
        "approx_analysis": lambda: approx_analyze(s),
        "pf_objective": lambda: delay_objective(s, p, m, w, backend="numba"),
        "approx_objective": lambda: approx_delay_objective(s, p, m, w),
    }
    for f in contenders.values():  # compile and warm caches
        f()
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for k, f in contenders.items():
            samples[k].append(_time(f))
    return {k: statistics.median(v) for k, v in samples.items()}


def _ms(x: float) -> str:
    return f"{1e3 * x:.2f} ms" if x < 1 else f"{x:.2f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    print("| n | m | analysis: product form | analysis: approx | ratio | value + gradients: product form "
          "| value + gradients: approx | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (100, 1000):
        for m in (n, 2 * n):
            r = bench(n, m, args.repeats if n <= 100 else max(3, args.repeats // 2))
            print(f"| {n} | {m} | {_ms(r['pf_analysis'])} | {_ms(r['approx_analysis'])} | "
                  f"{r['approx_analysis'] / r['pf_analysis']:.1f}x | {_ms(r['pf_objective'])} | "
                  f"{_ms(r['approx_objective'])} | {r['approx_objective'] / r['pf_objective']:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

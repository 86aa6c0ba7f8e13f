"""Benchmark: simulated updates per second, trace recording on.

Contenders, measured in one run on the same systems (n = m, exponential service, rates spread
over [0.1, 1], uniform routing):

* ``minimal``: a plain minimal SimPy closed-network model written here (the named baseline):
  m customer processes, one ``simpy.Resource`` per client, ``random.expovariate`` service, no
  recording.
* ``simpy``: aflqueue's SimPy model (full trace recorded).
* ``fast``: aflqueue's compiled fast path (full trace recorded).

Issue 3 targets: simpy >= 0.8x minimal; fast >= 1,000,000 updates/s at n = m = 20 and
>= 500,000 at n = m = 1000. Runs are interleaved and the median of repeats is reported, because
this machine is shared and noisy.

    python validation/bench_simulator.py [--sizes 20,200,1000] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import statistics
import time

import numpy as np
import simpy

from aflqueue import System
from aflqueue.sim import simulate


def minimal_simpy(rates: list[float], routing: np.ndarray, m: int, updates: int, seed: int) -> int:
    """The baseline: the smallest reasonable SimPy model of the closed network."""
    env = simpy.Environment()
    rng = random.Random(seed)
    res = [simpy.Resource(env, capacity=1) for _ in rates]
    cdf = np.cumsum(routing).tolist()
    last = len(rates) - 1
    count = [0]
    done = env.event()

    def customer(env):
        while True:
            j = min(bisect.bisect_right(cdf, rng.random()), last)
            with res[j].request() as req:
                yield req
                yield env.timeout(rng.expovariate(rates[j]))
            count[0] += 1
            if count[0] == updates:
                done.succeed()

    for _ in range(m):
        env.process(customer(env))
    env.run(until=done)
    return count[0]


def rate_of(fn, updates: int) -> float:
    t = time.perf_counter()
    fn()
    return updates / (time.perf_counter() - t)


def bench(n: int, repeats: int, simpy_updates: int, fast_updates: int) -> dict:
    system = System.from_rates(np.linspace(0.1, 1.0, n), concurrency=n)
    rates = system.rates.tolist()
    simulate(system, 100, seed=0, engine="fast")  # compile / load the kernel once
    out: dict[str, list[float]] = {"minimal": [], "simpy": [], "fast": []}
    for r in range(repeats):
        out["minimal"].append(rate_of(lambda: minimal_simpy(rates, system.routing, n, simpy_updates, r), simpy_updates))
        out["simpy"].append(rate_of(lambda: simulate(system, simpy_updates, seed=r, engine="simpy"), simpy_updates))
        out["fast"].append(rate_of(lambda: simulate(system, fast_updates, seed=r, engine="fast"), fast_updates))
    med = {k: statistics.median(v) for k, v in out.items()}
    return {"n": n, "m": n, "repeats": repeats, "updates_per_second": med,
            "simpy_vs_minimal": med["simpy"] / med["minimal"], "fast_vs_minimal": med["fast"] / med["minimal"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20,200,1000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--simpy-updates", type=int, default=100_000)
    ap.add_argument("--fast-updates", type=int, default=2_000_000)
    ap.add_argument("--json", help="write results to this file")
    args = ap.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        r = bench(n, args.repeats, args.simpy_updates, args.fast_updates)
        rows.append(r)
        u = r["updates_per_second"]
        print(f"n = m = {n:>5}: minimal SimPy {u['minimal']:>10,.0f}/s | aflqueue SimPy {u['simpy']:>10,.0f}/s "
              f"({r['simpy_vs_minimal']:.2f}x) | fast path {u['fast']:>12,.0f}/s ({r['fast_vs_minimal']:.0f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

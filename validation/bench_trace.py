"""Benchmark: memory and time of a simulation's trace, streamed to disk or kept in memory.

Issue 25 measured, before streaming: about 150 B per update in memory (4.7 GB peak for 3e7
updates, refused at the default 4 GB cap) and 265 s of a 284 s run spent writing the 1 GB trace.
Targets: ``aflqueue simulate --trace x.npz`` with 3e7 updates under 1 GB peak RSS, and writing
the trace cheaper than simulating it.

Each measurement runs in a fresh Python process, which reports its own peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and times (``time.perf_counter``). On one
single-stage system (n = m = 20, exponential service, rates spread over [0.1, 1], uniform
routing; the compiled fast path):

* ``discard``: the engine and the trace recorder with the chunks thrown away: the cost of
  simulating (producing the trace) without keeping or writing it;
* ``stream``: :func:`aflqueue.sim.simulate_to_file`: the same run, each chunk written to the file
  as it is finished. Write time = ``stream`` - ``discard``; the ratio write / simulate is printed;
* ``estimate``: :func:`aflqueue.sim.estimate` of that file (two validated passes);
* ``cli``: the whole ``aflqueue simulate --trace x.npz --json`` in one process (peak RSS is the
  issue's number);
* ``memory``: :func:`aflqueue.sim.simulate` (trace in memory) then ``Trace.save``
  (``--no-memory`` skips it: it needs about 36 B per update).

The machine is shared and noisy: ``--repeats`` runs each of ``discard`` and ``stream``, alternating,
and the medians are reported.

    python validation/bench_trace.py [--updates 30000000] [--repeats 1] [--no-memory] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N = M = 20


def _system():
    import numpy as np

    from aflqueue import System

    return System.from_rates(list(np.linspace(0.1, 1.0, N)), concurrency=M)


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def child(mode: str, updates: int, path: str) -> dict:
    """One measurement, in this (fresh) process."""
    import time

    from aflqueue.sim import Trace, TraceFile, estimate, simulate, simulate_to_file

    system = _system()
    simulate(system, 1000, seed=0)  # compile and import outside the timings
    out: dict = {"mode": mode}
    t0 = time.perf_counter()
    if mode == "discard":
        from aflqueue.sim.fast import record_fast
        from aflqueue.sim.records import TaskRecorder

        recorder = TaskRecorder(system.concurrency + updates, lambda start, cols: None)
        record_fast(system, updates, 1, recorder)
        recorder.close()
        out["seconds"] = time.perf_counter() - t0
    elif mode == "stream":
        tf = simulate_to_file(system, updates, path, seed=1, engine="fast")
        out["seconds"] = time.perf_counter() - t0
        out["file_bytes"] = os.path.getsize(path)
        tf.close()
    elif mode == "estimate":
        with TraceFile.open(path) as tf:
            e = estimate(tf)
        out["seconds"] = time.perf_counter() - t0
        out["throughput"] = e.throughput.mean
    elif mode == "cli":
        from contextlib import redirect_stdout

        from aflqueue.cli import main

        argv = ["simulate", "--rates", ",".join(f"{r:.17g}" for r in system.rates), "--concurrency", str(M),
                "--updates", str(updates), "--seed", "1", "--trace", path, "--json"]
        with open(os.devnull, "w") as null, redirect_stdout(null):
            out["exit_status"] = main(argv)
        out["seconds"] = time.perf_counter() - t0
    elif mode == "memory":
        trace = simulate(system, updates, seed=1, engine="fast")
        t1 = time.perf_counter()
        out["seconds"] = t1 - t0
        out["simulate_peak_rss_mb"] = _peak_mb()
        out["trace_bytes"] = sum({id(a.base if a.base is not None else a): a.nbytes for a in
                                  (getattr(trace, c) for c in ("client", "dispatch_time", "downlink_end",
                                                               "compute_start", "compute_end", "uplink_end",
                                                               "completion_time", "dispatch_version",
                                                               "applied_version"))}.values())
        trace.save(path)
        t2 = time.perf_counter()
        out["save_seconds"] = t2 - t1
        loaded = Trace.load(path)
        out["load_seconds"] = time.perf_counter() - t2
        out["identical"] = loaded.digest() == trace.digest()
    out["peak_rss_mb"] = _peak_mb()
    return out


def run(mode: str, updates: int, path: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, __file__, "--child", mode, "--updates", str(updates), "--path", path],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{mode} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    from aflqueue.errors import OneLineArgumentParser, ValidationError

    ap = OneLineArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=30_000_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true", help="skip the in-memory trace")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    try:
        args = ap.parse_args()
    except ValidationError as e:
        print(f"bench_trace: {e}", file=sys.stderr)
        return 2
    if args.child:
        print(json.dumps(child(args.child, args.updates, args.path)))
        return 0
    U = args.updates
    with tempfile.TemporaryDirectory(prefix="bench_trace.") as tmp:
        path = str(Path(tmp) / "trace.npz")
        runs: dict[str, list[dict]] = {"discard": [], "stream": []}
        for _ in range(args.repeats):
            for mode in ("discard", "stream"):
                runs[mode].append(run(mode, U, path))
        est = run("estimate", U, path)
        cli = run("cli", U, path)
        mem = None if args.no_memory else run("memory", U, path)
    sim = statistics.median(r["seconds"] for r in runs["discard"])
    streamed = statistics.median(r["seconds"] for r in runs["stream"])
    write = streamed - sim
    size = runs["stream"][-1]["file_bytes"]
    print(f"{U:,} updates, n = m = {N}, fast path (medians of {args.repeats})")
    print(f"  simulate, trace discarded      : {sim:7.2f} s   peak RSS {max(r['peak_rss_mb'] for r in runs['discard']):7.0f} MB")
    print(f"  simulate + stream to the file  : {streamed:7.2f} s   peak RSS {max(r['peak_rss_mb'] for r in runs['stream']):7.0f} MB"
          f"   file {size / 1e9:.2f} GB ({size / (U + M):.1f} B/task)")
    print(f"  writing the trace              : {write:7.2f} s   = {write / sim:.2f} x simulating")
    print(f"  estimate from the file         : {est['seconds']:7.2f} s   peak RSS {est['peak_rss_mb']:7.0f} MB")
    print(f"  aflqueue simulate --trace .npz : {cli['seconds']:7.2f} s   peak RSS {cli['peak_rss_mb']:7.0f} MB "
          f"(target < 1024 MB; exit status {cli['exit_status']})")
    if mem is not None:
        print(f"  simulate, trace in memory      : {mem['seconds']:7.2f} s   peak RSS {mem['simulate_peak_rss_mb']:7.0f} MB   "
              f"trace {mem['trace_bytes'] / (U + M):.1f} B/task")
        print(f"  Trace.save of it               : {mem['save_seconds']:7.2f} s   = {mem['save_seconds'] / mem['seconds']:.2f} x "
              f"simulating in memory; Trace.load {mem['load_seconds']:.2f} s (identical: {mem['identical']}; peak RSS "
              f"with both in memory {mem['peak_rss_mb']:.0f} MB)")
    if args.json:
        Path(args.json).write_text(json.dumps({"updates": U, "discard": runs["discard"], "stream": runs["stream"],
                                               "estimate": est, "cli": cli, "memory": mem,
                                               "write_over_simulate": write / sim}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

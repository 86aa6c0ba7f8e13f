"""Benchmark: validation-grid wall time with the serial, process and Ray backends (the grid study,
validation/grid, as the workload).

Runs the same grid (default: the 'tiny' preset with 2 seeds, 8 cells) from scratch with each
backend into separate folders, checks that the results are identical, and reports wall times
and speed-ups over serial. On this 2-core machine the ideal speed-up is 2x; process start-up
(spawned interpreters import torch) is part of the measured time. Ray runs only on an existing
cluster (``--address``; aflqueue never starts a Ray instance of its own).

    python validation/bench_backends.py [--preset tiny] [--seeds 2] [--workers 2] [--address HOST:PORT]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation.grid.experiment import PRESETS, run_grid  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--backends", default=None, help="default serial,process (and ray with --address)")
    ap.add_argument("--address", default=None, help="an existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto)")
    ap.add_argument("--json", help="write results to this file")
    args = ap.parse_args()
    preset = PRESETS[args.preset]
    root = Path(tempfile.mkdtemp(prefix="bench_backends_"))
    rows, results = [], {}
    try:
        backends = args.backends or ("serial,process" + (",ray" if args.address else ""))
        for backend in backends.split(","):
            t = time.perf_counter()
            recs = run_grid(preset, root / backend, seeds=args.seeds, backend=backend,
                            workers=None if backend == "serial" else args.workers, progress=None,
                            address=args.address if backend == "ray" else None)
            wall = time.perf_counter() - t
            results[backend] = {r["id"]: (r["measured"]["final_accuracy"], r["measured"]["arrivals"]) for r in recs}
            rows.append({"backend": backend, "cells": len(recs), "seconds": wall})
        base = rows[0]["seconds"]
        same = all(v == results[rows[0]["backend"]] for v in results.values())
        for r in rows:
            r["speedup_vs_serial"] = base / r["seconds"]
            print(f"{r['backend']:>8}: {r['cells']} cells in {r['seconds']:6.1f} s  ({r['speedup_vs_serial']:.2f}x serial)")
        print(f"identical results across backends: {same}")
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": rows, "identical": same}, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

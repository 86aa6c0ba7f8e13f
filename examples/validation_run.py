"""A small validation run: train under several routings on the same simulated time budget,
compare what the proxies predicted with what training measured, and write the report.

    python examples/validation_run.py                    # the `tiny` preset, 1 seed, in a temporary folder
    python examples/validation_run.py --seeds 2 --output runs/tiny

The `tiny` preset of the grid study (validation/grid/experiment.py, in the source repository) is a synthetic 4-class task on 6 clients in
two speed groups, Generalized AsyncSGD under uniform, wall-clock-optimal (P2) and max-throughput
(P5) routing, and FedBuff under uniform routing: about 5 s per seed on a CPU. It exercises the
machinery; its numbers prove nothing (``python validation/grid/run.py --preset default`` is the real grid,
docs/theory.md section 8). Finished cells are saved one by one, so rerunning with the same
``--output`` skips them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the studies live in the repository, not the package
from validation.grid.experiment import PRESETS, run_grid  # noqa: E402
from validation.grid.report import write_report  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="grid preset (default tiny)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per cell (default 1)")
    ap.add_argument("--output", help="results folder (default: a new temporary folder)")
    args = ap.parse_args(argv)
    out = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="aflqueue-validation-"))

    records = run_grid(PRESETS[args.preset], out, seeds=args.seeds, progress=None)
    print(f"{'routing':<16} {'algorithm':<22} {'seed':>4} {'predicted throughput':>20} {'arrivals':>8} "
          f"{'accuracy':>8}")
    for r in sorted(records, key=lambda r: r["id"]):
        cell, measured = r["cell"], r["measured"]
        print(f"{cell['routing']:<16} {cell['algorithm']:<22} {cell['seed']:>4} "
              f"{r['predicted']['throughput']:>20.4g} {measured['arrivals']:>8} {measured['final_accuracy']:>8.2%}")
    md, html = write_report(records, out / "report.md", out / "figures")
    print(f"report: {md} and {html}; cells in {out / 'cells'}")
    return md


if __name__ == "__main__":
    main()

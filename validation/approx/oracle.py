"""Oracle tests of the approximation's delay formula: the arrival-theorem form fed
exact time-average queues at m - 1, Marie's network fed measured queue-dependent rates, and the
queue-state projection (docs/theory.md section 9.8).

The second command of the approximation study (the first, ``run.py``, makes the records this
one needs): the experiment is :mod:`validation.approx.delay_oracle`, the report
:func:`validation.approx.report.write_delay_oracle_report`. It needs the approx validation's
records (``validation/approx/results/cells``, committed) for the delays at m; it simulates the
systems with m - 1 tasks, and each system again at m for the departure rates and the projection.

Usage (from anywhere)::

    python validation/approx/oracle.py [--out validation/approx/results/oracle]
                                       [--approx validation/approx/results] [--backend process]
                                       [--workers 2] [--report-only]

Results: ``<out>/cells/oracle_<point>.json`` and ``marie_<point>.json`` (one record per
simulated system, saved as it finishes; a restart skips those already saved), ``<out>/oracle.json``
(the summary) and ``<out>/oracle.md`` (the report, with ``<out>/reading.md`` as its
interpretation). 432 systems, about 13 minutes with ``--backend process --workers 2``.
Bad input: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
if str(HERE.parent.parent) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE.parent.parent))

from aflqueue.errors import OneLineArgumentParser, ValidationError, require  # noqa: E402
from aflqueue.io import atomic_write_json  # noqa: E402
from validation.approx.delay_oracle import oracle_jobs, run_delay_oracle  # noqa: E402
from validation.approx.experiment import load_records  # noqa: E402
from validation.approx.report import write_delay_oracle_report  # noqa: E402

RESULTS = HERE / "results"


def main(argv: Sequence[str] | None = None) -> int:
    ap = OneLineArgumentParser(description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=RESULTS / "oracle", help="results folder (default %(default)s)")
    ap.add_argument("--approx", type=Path, default=RESULTS,
                    help="the approx validation's results folder, with cells/ (default %(default)s)")
    ap.add_argument("--backend", choices=("serial", "process"), default="serial")
    ap.add_argument("--workers", type=int, default=None, help="processes for --backend process (>= 1)")
    ap.add_argument("--report-only", action="store_true", help="rebuild the report from saved records")
    t0 = time.perf_counter()
    try:
        args = ap.parse_args(argv)
        require(args.workers is None or args.workers >= 1, "--workers", "must be an integer >= 1")
        approx_records = [r for r in load_records(args.approx) if r.get("kind") == "point"]
        require(bool(approx_records), "--approx", f"no approx validation records in {args.approx / 'cells'}")
        if args.report_only:  # no job: summarise the saved records
            summary = run_delay_oracle(args.out, approx_records, progress=None, only=[])
            require(summary["meta"]["simulated_points"] > 0, "--out", f"no oracle records in {args.out / 'cells'}")
        else:
            summary = run_delay_oracle(args.out, approx_records, backend=args.backend, workers=args.workers)
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_write_json(args.out / "oracle.json", summary)
    reading = args.out / "reading.md"
    report = write_delay_oracle_report(summary, args.out / "oracle.md",
                                       reading.read_text() if reading.is_file() else None)
    print(f"{summary['meta']['simulated_points']} of {len(oracle_jobs())} systems simulated; "
          f"report {report} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

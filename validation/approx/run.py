"""Approximate analysis for general service vs simulation, next to the product form.

The one command of this study (its protocol: ``PROTOCOL.md``): the experiment (protocol, grid,
one resumable job per grid point and per optimisation comparison) is
:mod:`validation.approx.experiment`, the report :func:`validation.approx.report.write_approx_report`
and the figure :func:`validation.approx.figures.approx_error_figure`. The oracle tests of the
delay formula, built on these records, are the second command, ``validation/approx/oracle.py``.

Usage (from anywhere)::

    python validation/approx/run.py [--out validation/approx/results] [--figures DIR] [--quick]
                                    [--fresh] [--report-only] [--skip-optimisation]

Results: ``<out>/cells/<id>.json`` (one record per job, saved as it finishes; a restart skips
the jobs already saved with the same settings unless ``--fresh``), ``<out>/timings/``,
``<out>/approx.json`` (the summary), ``<out>/approx.md`` and ``.html`` (the report, with
``reading.md`` from ``<out>`` as its last section) and the figure ``approx_errors.png``/``.pdf``
(in ``validation/approx/figures`` for the default results, else in ``<out>/figures``, unless
``--figures``). ``--quick`` runs five points and one optimisation system with 50x fewer updates
(a smoke test, < 1 min; results in ``validation/approx/results/quick`` unless ``--out``); its
results are not a validation. Bad input: one line on stderr, exit status 2.
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

from aflqueue.errors import OneLineArgumentParser, ValidationError  # noqa: E402
from validation.approx.experiment import (RESULTS_FILE, assemble, keep_stamps, load_records, run_approx,  # noqa: E402
                                          save_summary)
from validation.approx.figures import approx_error_figure  # noqa: E402
from validation.approx.report import write_approx_report  # noqa: E402

RESULTS = HERE / "results"
FIGURES = HERE / "figures"


def main(argv: Sequence[str] | None = None) -> int:
    ap = OneLineArgumentParser(description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (cells/, approx.json, approx.md; default validation/approx/results, "
                         "its quick/ subfolder with --quick)")
    ap.add_argument("--figures", type=Path, default=None,
                    help="figures folder (default: validation/approx/figures for the default results, else <out>/figures)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 5 points, 50x fewer updates")
    ap.add_argument("--fresh", action="store_true", help="recompute the jobs already saved")
    ap.add_argument("--report-only", action="store_true", help="rebuild the report from saved records")
    ap.add_argument("--skip-optimisation", action="store_true", help="skip item 3")
    t0 = time.perf_counter()
    try:
        args = ap.parse_args(argv)
        if args.report_only and args.fresh:
            ap.error("--report-only and --fresh exclude each other")
        if args.out is None:
            args.out = RESULTS / "quick" if args.quick else RESULTS
        if args.out.exists() and not args.out.is_dir():
            raise ValidationError("out", f"{str(args.out)!r} is not a folder")
        if args.report_only:
            results = keep_stamps(assemble(load_records(args.out), quick=args.quick), args.out)
            if not results["points"]:
                raise ValidationError("out", f"no {'quick ' if args.quick else ''}results in {str(args.out)!r}; "
                                             "run without --report-only first")
            save_summary(results, args.out)
        else:
            results = run_approx(args.out, quick=args.quick, fresh=args.fresh,
                                 optimisation=not args.skip_optimisation)
        reading = args.out / "reading.md"
        figures = args.figures or (FIGURES if args.out == RESULTS else args.out / "figures")
        figs = approx_error_figure(results, figures)
        md, _ = write_approx_report(results, args.out / "approx.md", figs,
                                    reading.read_text(encoding="utf-8").strip() if reading.is_file() else None)
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / RESULTS_FILE}, {md} and {len(figs)} figure(s) ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

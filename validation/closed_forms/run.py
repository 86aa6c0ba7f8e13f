"""Closed forms vs discrete-event simulation (docs/theory.md sections 2-4 and 8, step 2).

The one command of this study: the experiment is :mod:`validation.closed_forms.experiment`
(scenarios, laws, one resumable job per scenario and law, the delay-formula and delay-law
checks), the report :func:`validation.closed_forms.report.write_closed_forms_report` and the
figures :func:`validation.closed_forms.figures.closed_forms_figures`.

Usage (from anywhere)::

    python validation/closed_forms/run.py [--out DIR] [--figures DIR] [--quick] [--seed 0] [--fresh]
                                          [--report-only]

Results (default ``validation/closed_forms/results``): ``cells/<id>.json`` (one record per job,
saved as it finishes; a restart skips the jobs already saved with the same settings unless
``--fresh``), ``closed_forms.json`` (the records of this invocation assembled), ``closed_forms.md``
and ``.html``. Figures (``closed_forms_*.png``/``.pdf``, default ``validation/closed_forms/figures``)
are drawn from ``closed_forms.json`` only; ``--report-only`` redraws them and the report from it.
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
from validation.closed_forms.experiment import RESULTS_FILE, SEED_STRIDE, load_results, run_closed_forms  # noqa: E402
from validation.closed_forms.figures import closed_forms_figures  # noqa: E402
from validation.closed_forms.report import write_closed_forms_report  # noqa: E402

RESULTS = HERE / "results"
FIGURES = HERE / "figures"


def main(argv: Sequence[str] | None = None) -> int:
    ap = OneLineArgumentParser(description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=RESULTS,
                    help="results folder (cells/, closed_forms.json, closed_forms.md; default %(default)s)")
    ap.add_argument("--figures", type=Path, default=FIGURES, help="figures folder (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="~40x fewer updates and fewer laws (< 1 min)")
    ap.add_argument("--seed", type=int, default=0, help=f"base seed s; run k uses {SEED_STRIDE} * s + k")
    ap.add_argument("--fresh", action="store_true", help="recompute the jobs already saved")
    ap.add_argument("--report-only", action="store_true", help="redraw figures and report from the saved JSON")
    t0 = time.perf_counter()
    try:
        args = ap.parse_args(argv)
        require(args.seed >= 0, "--seed", f"must be >= 0 (got {args.seed})")
        json_path = args.out / RESULTS_FILE
        if args.report_only:
            require(json_path.is_file(), "--out", f"no results at {str(json_path)!r}; run without --report-only first")
        else:
            run_closed_forms(args.out, quick=args.quick, seed=args.seed, fresh=args.fresh)
        results = load_results(json_path)  # report and figures from the saved file only
        md, _ = write_closed_forms_report(results, args.out / "closed_forms.md")
        figs = closed_forms_figures(results, args.figures)
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'read' if args.report_only else 'wrote'} {json_path}; wrote {md} and {len(figs)} figure files in "
          f"{args.figures} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

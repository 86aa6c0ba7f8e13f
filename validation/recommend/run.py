"""The recommendation on held-out regimes (PROTOCOL.md): tuning, recommendations, evaluation, report.

The one command of this study. Every run is saved as it finishes (an interrupted study resumes
where it stopped); each regime's recommendation is saved before any of its evaluation runs; the
report is rebuilt from the saved records.

Usage (from anywhere)::

    python validation/recommend/run.py --backend process --workers 2    # the whole study (hours; resumable)
    python validation/recommend/run.py --tier held-in                   # the calibration regimes only
    python validation/recommend/run.py --regimes O1,O2                  # some regimes
    python validation/recommend/run.py --report-only                    # report from the saved records

Results in ``validation/recommend/results-v2`` (the second execution, AMENDMENT.md; the first,
which could not complete, is ``results/``): ``tuning/``, ``tuned.json``, ``pilots/<regime>/``,
``recommendations/``, ``cells/``, ``report.md``, ``calibration.json``; figures in
``validation/recommend/figures/``. Bad input: one line on stderr, exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
if str(HERE.parent.parent) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE.parent.parent))

from aflqueue.errors import require  # noqa: E402
from validation.command import add_backend_arguments, check_backend, parser, require_training, run_main  # noqa: E402
from validation.recommend.experiment import REGIMES, run_study  # noqa: E402

RESULTS = HERE / "results-v2"
FIGURES = HERE / "figures"


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or only report) the study; bad input is one line on stderr and exit status 2."""
    return run_main(_run, argv)


def _run(argv: Sequence[str] | None) -> int:
    from validation.recommend.report import write_report

    ap = parser(__doc__)
    ap.add_argument("--tier", choices=["held-in", "held-out", "all"], default="all", help="regimes to run (default all)")
    ap.add_argument("--regimes", default="", help=f"comma-separated regime ids (default: every one of the tier)")
    ap.add_argument("--output", "-o", help="results folder (default validation/recommend/results-v2)")
    add_backend_arguments(ap, "runs")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from the saved records")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    chosen = [x.strip() for x in args.regimes.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in REGIMES]
    require(not unknown, "regimes", f"unknown {', '.join(unknown)}; ids are {', '.join(REGIMES)}")
    check_backend(args)
    out = Path(args.output) if args.output else RESULTS
    if not args.report_only:
        require_training("the recommendation study")
        tiers = ("held-in", "held-out") if args.tier == "all" else (args.tier,)
        run_study(out, tiers=tiers, regimes=chosen, backend=args.backend, workers=args.workers,
                  progress=None if args.quiet else print)
    # the figures of the default results (the second execution) sit in the study's figures folder
    md = write_report(out, figures=FIGURES if out.resolve() == RESULTS.resolve() else out / "figures")
    print(f"report: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Regime map: does the pilot-calibrated predictor say where optimising the routing pays?

The one command of this study (protocols ``PROTOCOL.md`` and ``CONFIRM_PROTOCOL.md``): the stages
of :mod:`validation.regimes.experiment` (design, pilots, predictions, then per regime tuning, the
frozen selection and evaluation; every run saved as it finishes, frozen files read back, so an
interrupted map resumes), then the report (:mod:`validation.regimes.report`) and figures
(:mod:`validation.regimes.figures`). Presets: regimes (the first map, hours), regimes-confirm (its
confirmatory map), regimes-tiny (seconds, tests). Both maps pooled: ``validation/regimes/pooled.py``.

Usage (from anywhere)::

    python validation/regimes/run.py --backend process                            # the first map (hours)
    python validation/regimes/run.py --preset regimes-confirm --backend process   # its confirmatory map
    python validation/regimes/run.py --preset regimes --report-only               # report from the saved runs

Results: ``validation/regimes/results/<preset>/`` (``design.json``, ``pilots/``,
``predictions.json``, ``tuning/``, ``selection.json``, ``cells/``, ``report.md``); figures in
``validation/regimes/figures/<preset>/``. Bad input: one line on stderr, exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
if str(HERE.parent.parent) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE.parent.parent))

from aflqueue.errors import ValidationError, require  # noqa: E402
from validation.command import (add_backend_arguments, add_report_arguments, check_backend, parser,  # noqa: E402
                                require_training, run_main)
from validation.regimes.experiment import REGIME_PRESETS, load_regimes, run_regimes  # noqa: E402
from validation.regimes.report import write_regimes_report  # noqa: E402

RESULTS = HERE / "results"
FIGURES = HERE / "figures"
STAGES = ("design", "pilots", "predict", "tune", "eval", "all")


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or only report) a map; bad input is one line on stderr and exit status 2."""
    return run_main(_run, argv)


def _run(argv: Sequence[str] | None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--preset", default="regimes", help=f"one of {', '.join(REGIME_PRESETS)} (default regimes)")
    ap.add_argument("--stage", choices=STAGES, default="all", help="run up to this stage (default all)")
    ap.add_argument("--output", "-o", help="results folder (default validation/regimes/results/<preset>)")
    add_backend_arguments(ap, "runs")
    add_report_arguments(ap, "figures folder (default validation/regimes/figures/<preset>, or figures/ in "
                             "the results folder given by --output)")
    args = ap.parse_args(argv)
    require(args.preset in REGIME_PRESETS, "preset",
            f"must be one of {', '.join(REGIME_PRESETS)} (got {args.preset!r})")
    if not args.report_only:
        require_training("the regime map")
    check_backend(args)
    preset = REGIME_PRESETS[args.preset]
    output = Path(args.output) if args.output else RESULTS / args.preset
    report = Path(args.report) if args.report else output / "report.md"
    figures = Path(args.figures) if args.figures else (output / "figures" if args.output else FIGURES / args.preset)
    if args.report_only:
        data = load_regimes(output)
    else:
        data = run_regimes(preset, output, stage=args.stage, backend=args.backend, workers=args.workers,
                           address=args.address, progress=None if args.quiet else print)
    if not data["pilots"] and data["design"] is None:
        raise ValidationError("output", f"no finished runs under {str(output)!r}")
    md = write_regimes_report(preset, data, report, figures)
    print(f"report: {md} ({len(data['pilots'])} pilot, {len(data['tuning'])} tuning and {len(data['evaluation'])} "
          f"evaluation runs); runs in {output}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Paper-scale validation: the optimiser's operating point against tuned baselines (PROTOCOL.md).

The one command of this study: the runs of :mod:`validation.paper.experiment` (tuning, the
frozen selection, evaluation; each run saved as it finishes, so an interrupted study resumes),
then the report (:mod:`validation.paper.report`) and figures (:mod:`validation.paper.figures`).
Presets: paper (the committed headline, hours), paper-n20 (second tier), paper-tiny (seconds,
tests).

Usage (from anywhere)::

    python validation/paper/run.py --backend process             # the committed results (hours; resumable)
    python validation/paper/run.py --report-only                 # report and figures from the saved runs
    python validation/paper/run.py --data-root ~/data            # the same protocol on the torchvision sets there
    python validation/paper/run.py --preset paper-tiny --output /tmp/paper-tiny

Results: the paper preset in ``validation/paper/results`` (``tuning/``, ``selection.json``,
``cells/``, ``report.md``) with its figures in ``validation/paper/figures``; another preset in
``validation/paper/results/<preset>`` (report and figures inside). Bad input: one line on stderr,
exit status 2.
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
                                require_training, run_main, torchvision_sets_under)
from validation.paper.experiment import PAPER_PRESETS, load_paper, run_paper, with_torchvision  # noqa: E402
from validation.paper.report import write_paper_report  # noqa: E402

RESULTS = HERE / "results"
FIGURES = HERE / "figures"


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or only report) the study; bad input is one line on stderr and exit status 2."""
    return run_main(_run, argv)


def _run(argv: Sequence[str] | None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--preset", default="paper", help=f"one of {', '.join(PAPER_PRESETS)} (default paper)")
    ap.add_argument("--stage", choices=["tune", "eval", "all"], default="all",
                    help="run only the tuning stage, only the evaluation stage, or both (default)")
    ap.add_argument("--output", "-o", help="results folder (default validation/paper/results[/<preset>])")
    ap.add_argument("--data-root", help="run the protocol on the torchvision sets found in this folder instead")
    ap.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    add_backend_arguments(ap, "runs")
    add_report_arguments(ap, "figures folder (default validation/paper/figures for the paper preset, else "
                             "figures/ in the results folder)")
    args = ap.parse_args(argv)
    require(args.preset in PAPER_PRESETS, "preset",
            f"must be one of {', '.join(PAPER_PRESETS)} (got {args.preset!r})")
    if not args.report_only:
        require_training("the paper study")
    check_backend(args)
    preset = PAPER_PRESETS[args.preset]
    if args.data_root:
        preset = with_torchvision(preset, torchvision_sets_under(args.data_root))
    headline = preset.name == "paper"
    output = Path(args.output) if args.output else (RESULTS if headline else RESULTS / preset.name)
    report = Path(args.report) if args.report else output / "report.md"
    figures = Path(args.figures) if args.figures else (FIGURES if headline and not args.output else output / "figures")
    if args.report_only:
        data = load_paper(output)
    else:
        data = run_paper(preset, output, stage=args.stage, device=args.device, data_root=args.data_root,
                         backend=args.backend, workers=args.workers, address=args.address,
                         progress=None if args.quiet else print)
    if not (data["tuning"] or data["evaluation"]):
        raise ValidationError("output", f"no finished runs under {str(output)!r}")
    md = write_paper_report(preset, data, report, figures)
    print(f"report: {md} ({len(data['tuning'])} tuning runs, {len(data['evaluation'])} evaluation runs); runs in "
          f"{output}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

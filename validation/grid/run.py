"""The validation grid (superseded by the paper study): routings x algorithms, predicted vs measured.

The one command of this study: cells of :mod:`validation.grid.experiment` (each saved as it
finishes, so an interrupted grid resumes), then the report (:mod:`validation.grid.report`) and
figures (:mod:`validation.grid.figures`). Presets: tiny (seconds, tests), small (< 15 min on 2 CPU
cores), default (the committed 324 runs), full.

Usage (from anywhere)::

    python validation/grid/run.py --preset small                     # < 15 min on 2 CPU cores
    python validation/grid/run.py --preset default --report-only     # report and figures of the committed cells
    python validation/grid/run.py --preset small --data-root ~/data  # torchvision sets found there

Results: ``validation/grid/results/<preset>[_<data sets>]/`` (``cells/``, ``timings/``,
``grid.json``, ``report.md`` and ``.html``); figures in ``validation/grid/figures`` for the default
preset, else in the results folder's ``figures/``. Bad input: one line on stderr, exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
if str(HERE.parent.parent) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE.parent.parent))

from aflqueue.errors import ValidationError, check_number, require  # noqa: E402
from validation.command import (add_backend_arguments, add_report_arguments, check_backend, parser,  # noqa: E402
                                require_training, run_main, torchvision_sets_under)
from validation.grid.experiment import PRESETS, load_cells, run_grid  # noqa: E402
from validation.grid.report import write_report  # noqa: E402

RESULTS = HERE / "results"
FIGURES = HERE / "figures"


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or only report) the grid; bad input is one line on stderr and exit status 2."""
    return run_main(_run, argv)


def _run(argv: Sequence[str] | None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--preset", default="small", help=f"one of {', '.join(PRESETS)} (default small)")
    ap.add_argument("--output", "-o", help="results folder (default validation/grid/results/<preset>[_<data sets>])")
    ap.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    ap.add_argument("--datasets", help="comma-separated data sets (default: the preset's; with --data-root: the "
                                       "torchvision sets found there)")
    ap.add_argument("--data-root", help="folder with torchvision data sets (MNIST/, cifar-10-batches-py/, ...)")
    ap.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    add_backend_arguments(ap, "cells")
    ap.add_argument("--gpus-per-cell", type=float, default=0.0, help="GPUs reserved per cell on Ray (default 0)")
    add_report_arguments(ap, "figures folder (default validation/grid/figures for the default preset, "
                             "else figures/ in the results folder)", "cells")
    args = ap.parse_args(argv)
    require(args.preset in PRESETS, "preset", f"must be one of {', '.join(PRESETS)} (got {args.preset!r})")
    if not args.report_only:
        require_training("the grid")
    check_backend(args)
    if args.seeds is not None:
        require(1 <= args.seeds <= 1000, "seeds", f"must be an integer in [1, 1000] (got {args.seeds})")
    check_number(args.gpus_per_cell, "gpus-per-cell", 0.0)
    if args.gpus_per_cell:
        require(args.backend == "ray", "gpus-per-cell", "is used only with --backend ray")
    preset = PRESETS[args.preset]
    datasets = [d for d in args.datasets.split(",") if d] if args.datasets else (
        torchvision_sets_under(args.data_root) if args.data_root else None)
    tag = args.preset + ("_" + "_".join(datasets) if datasets else "")
    output = Path(args.output) if args.output else RESULTS / tag
    report = Path(args.report) if args.report else output / "report.md"
    committed = args.preset == "default" and not datasets
    figures = Path(args.figures) if args.figures else (FIGURES if committed else output / "figures")
    if args.report_only:
        records = load_cells(output)
    else:
        records = run_grid(preset, output, seeds=args.seeds, datasets=datasets, data_root=args.data_root,
                           device=args.device, backend=args.backend, workers=args.workers, address=args.address,
                           gpus_per_cell=args.gpus_per_cell, progress=None if args.quiet else print)
    if not records:
        raise ValidationError("output", f"no finished cells under {str(output)!r}")
    md, html = write_report(records, report, figures)
    print(f"report: {md} and {html} ({len(records)} runs); cells in {output}/cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())

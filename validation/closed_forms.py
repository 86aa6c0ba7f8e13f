"""Closed forms vs discrete-event simulation (docs/theory.md sections 2-4 and 8, step 2).

A thin entry point: the experiment is :mod:`aflqueue.experiments.closed_forms` (scenarios, laws,
one resumable job per scenario and law, the delay-formula and delay-law checks), the report
:func:`aflqueue.experiments.report.write_closed_forms_report` and the figures
:func:`aflqueue.plots.closed_forms_figures`.

Usage::

    python validation/closed_forms.py [--out validation/results/closed_forms] [--figures figures]
                                      [--quick] [--seed 0] [--fresh] [--figures-only]

Results: ``<out>/cells/<id>.json`` (one record per job, saved as it finishes; a restart skips
the jobs already saved with the same settings unless ``--fresh``), ``<out>/closed_forms.json``
(the records of this invocation assembled), ``<out>/closed_forms.md`` and ``.html``. Figures
(``closed_forms_*.png``/``.pdf``) are drawn from ``closed_forms.json`` only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from aflqueue.errors import OneLineArgumentParser, ValidationError, require
from aflqueue.experiments.closed_forms import RESULTS_FILE, SEED_STRIDE, load_results, run_closed_forms
from aflqueue.experiments.report import write_closed_forms_report
from aflqueue.plots import closed_forms_figures

REPO = Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None) -> int:
    ap = OneLineArgumentParser(description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "validation" / "results" / "closed_forms",
                    help="results folder (cells/, closed_forms.json, closed_forms.md)")
    ap.add_argument("--figures", type=Path, default=REPO / "figures", help="figures folder")
    ap.add_argument("--quick", action="store_true", help="~40x fewer updates and fewer laws (< 1 min)")
    ap.add_argument("--seed", type=int, default=0, help=f"base seed s; run k uses {SEED_STRIDE} * s + k")
    ap.add_argument("--fresh", action="store_true", help="recompute the jobs already saved")
    ap.add_argument("--figures-only", action="store_true", help="redraw figures and report from the saved JSON")
    t0 = time.perf_counter()
    try:
        args = ap.parse_args(argv)
        require(args.seed >= 0, "--seed", f"must be >= 0 (got {args.seed})")
        json_path = args.out / RESULTS_FILE
        if args.figures_only:
            if not json_path.exists():
                print(f"error: no results at {json_path}; run without --figures-only first", file=sys.stderr)
                return 2
        else:
            run_closed_forms(args.out, quick=args.quick, seed=args.seed, fresh=args.fresh)
        results = load_results(json_path)  # report and figures from the saved file only
        md, _ = write_closed_forms_report(results, args.out / "closed_forms.md")
        figs = closed_forms_figures(results, args.figures)
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'read' if args.figures_only else 'wrote'} {json_path}; wrote {md} and {len(figs)} figure files in "
          f"{args.figures} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

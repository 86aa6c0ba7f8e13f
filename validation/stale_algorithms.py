"""Server algorithms (FedBuff, FedEcho, FedRevive) at equal simulated time, paired by seed.

A thin entry point: the experiment and its presets are :mod:`aflqueue.experiments.comparison`
(``stale``: the default, digits with 20 clients, two speed groups 10x apart and m = 40;
``fedrevive-schedule``; ``fedecho-like``; ``tiny``), the statistics and report
:func:`aflqueue.experiments.report.write_comparison_report`.

Usage::

    nice -n 10 python validation/stale_algorithms.py [--preset stale] [--seeds 5] [--budget 1300]
                                                     [--quick] [--fresh] [--out DIR] [--runs DIR]

Results: ``validation/results/<preset>_algorithms/`` (``-`` in the preset name becomes ``_``):
``cells/<preset>__<algorithm>__s<seed>.json`` (one record per run, saved as it finishes; a
restart skips finished runs with the same settings and resumes an interrupted one from its
checkpoint under ``runs/<preset>_algorithms/``), ``timings/``, ``report.md`` and ``report.html``,
figures in ``figures/``. ``--quick`` is the preset's smoke version, written under ``.../quick/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aflqueue.errors import OneLineArgumentParser, ValidationError
from aflqueue.experiments.comparison import PRESETS, preset_summary, run_comparison
from aflqueue.experiments.report import write_comparison_report

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = OneLineArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="stale", help=f"scenario: {', '.join(PRESETS)} (default stale)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (0, 1, ...); default the preset's "
                                                            "(stale: 5, quick: 2)")
    ap.add_argument("--budget", type=float, default=None, help="simulated time budget (default the preset's; "
                                                               "stale: 1300, quick 250)")
    ap.add_argument("--quick", action="store_true", help="the preset's smoke version")
    ap.add_argument("--out", default=None, help="results folder (default validation/results/<preset>_algorithms[/quick])")
    ap.add_argument("--runs", default=None, help="per-run outputs and checkpoints (default runs/<preset>_algorithms/"
                                                 "{quick,full})")
    ap.add_argument("--fresh", action="store_true", help="recompute finished runs and drop their checkpoints")
    try:
        args = ap.parse_args(argv)
        folder = f"{args.preset.replace('-', '_')}_algorithms"
        sub = "quick" if args.quick else ""
        out = Path(args.out) if args.out else REPO / "validation" / "results" / folder / sub
        runs = Path(args.runs) if args.runs else REPO / "runs" / folder / ("quick" if args.quick else "full")
        preset, records = run_comparison(args.preset, out, runs, quick=args.quick, budget=args.budget,
                                         seeds=args.seeds, fresh=args.fresh)
        md, _ = write_comparison_report(records, out / "report.md", preset_summary(preset), out / "figures",
                                        quick=args.quick)
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

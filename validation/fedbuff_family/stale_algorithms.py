"""Server algorithms (FedBuff, FedEcho, FedRevive) at equal simulated time, paired by seed, untuned.

The command of this study's first, untuned comparison (superseded by the tuned claims, ``run.py``):
the experiment and its presets are :mod:`validation.fedbuff_family.comparison` (``stale``: the
default, digits with 20 clients, two speed groups 10x apart and m = 40; ``fedrevive-schedule``;
``fedecho-like``; ``tiny``), the statistics and report
:func:`validation.fedbuff_family.report.write_comparison_report`.

Usage (from anywhere)::

    nice -n 10 python validation/fedbuff_family/stale_algorithms.py [--preset stale] [--seeds 5] [--budget 1300]
                                                [--quick] [--fresh] [--out DIR] [--runs DIR] [--report-only]

Results: ``validation/fedbuff_family/results/<preset>_algorithms/`` (``-`` in the preset name becomes
``_``): ``cells/<preset>__<algorithm>__s<seed>.json`` (one record per run, saved as it finishes; a
restart skips finished runs with the same settings and resumes an interrupted one from its
checkpoint under ``runs/<preset>_algorithms/``), ``timings/``, ``report.md`` and ``report.html``,
figures in ``figures/``. ``--quick`` is the preset's smoke version, written under ``.../quick/``.
The committed ``results/stale_algorithms`` was written by this command's first version, whose
run records were not kept. Bad input: one line on stderr, exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from aflqueue.errors import OneLineArgumentParser, ValidationError  # noqa: E402
from validation.command import run_main  # noqa: E402
from aflqueue.jobs import JobStore  # noqa: E402
from validation.fedbuff_family.comparison import PRESETS, preset_summary, resolve, run_comparison  # noqa: E402
from validation.fedbuff_family.report import write_comparison_report  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study (or only its report); bad input is one line on stderr and exit status 2."""
    return run_main(_run, argv)


def _run(argv: Sequence[str] | None) -> int:
    ap = OneLineArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="stale", help=f"scenario: {', '.join(PRESETS)} (default stale)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (0, 1, ...); default the preset's "
                                                            "(stale: 5, quick: 2)")
    ap.add_argument("--budget", type=float, default=None, help="simulated time budget (default the preset's; "
                                                               "stale: 1300, quick 250)")
    ap.add_argument("--quick", action="store_true", help="the preset's smoke version")
    ap.add_argument("--out", default=None, help="results folder (default validation/fedbuff_family/results/"
                                                "<preset>_algorithms[/quick])")
    ap.add_argument("--runs", default=None, help="per-run outputs and checkpoints (default runs/<preset>_algorithms/"
                                                 "{quick,full})")
    ap.add_argument("--fresh", action="store_true", help="recompute finished runs and drop their checkpoints")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from the saved records")
    args = ap.parse_args(argv)
    folder = f"{args.preset.replace('-', '_')}_algorithms"
    sub = "quick" if args.quick else ""
    out = Path(args.out) if args.out else HERE / "results" / folder / sub
    runs = Path(args.runs) if args.runs else REPO / "runs" / folder / ("quick" if args.quick else "full")
    if args.report_only:
        if args.preset not in PRESETS:
            raise ValidationError("preset", f"must be one of {', '.join(PRESETS)} (got {args.preset!r})")
        preset, _ = resolve(PRESETS[args.preset], args.quick, args.budget, args.seeds)
        records = [r for r in JobStore(out).load() if r.get("preset") == preset.name]
        if not records:
            raise ValidationError("out", f"no saved records of preset {preset.name!r} under {str(out)!r}")
    else:
        preset, records = run_comparison(args.preset, out, runs, quick=args.quick, budget=args.budget,
                                         seeds=args.seeds, fresh=args.fresh)
    md, _ = write_comparison_report(records, out / "report.md", preset_summary(preset), out / "figures",
                                    quick=args.quick)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

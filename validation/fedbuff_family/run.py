"""The FedBuff-family papers' claims (FedRevive, FedEcho vs FedBuff), every algorithm tuned.

The one command of this study's main experiment (its protocol: ``PROTOCOL.md``): the protocol,
the stages and the statistics are :mod:`validation.fedbuff_family.claims`, the report
:func:`validation.fedbuff_family.report.write_claims_report`. The study's earlier parts have their
own commands: ``stale_algorithms.py`` (the untuned comparison), ``checks.py`` (FedEcho's collapse
and the aggregation weights), ``reproduce.py`` (one record recomputed with the current code).

Usage (from anywhere)::

    OMP_NUM_THREADS=1 nice -n 10 python validation/fedbuff_family/run.py [--stage all|tune|eval]
                                             [--posthoc] [--quick] [--out DIR] [--runs DIR] [--report-only]

Results: ``validation/fedbuff_family/results/claims/`` (``--quick``: ``.../quick/``), per scenario
``<scenario>/tuning/`` and ``<scenario>/cells/`` (one record per run, saved as it finishes; a
restart skips finished runs and resumes an interrupted one from its checkpoint under
``runs/fedbuff_claims/``) and ``<scenario>/selection.json`` (frozen once the scenario's tuning is
complete); ``report.md`` and ``report.html`` (rewritten after every stage: the protocol is in it
before the first run), figures in ``validation/fedbuff_family/figures`` (``--quick`` or ``--out``:
in the results folder's ``figures/``). ``--report-only`` rebuilds the report from the saved
records (with ``--posthoc``, the post-hoc checks from theirs). Bad input: one line on stderr, exit
status 2.
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
from validation.fedbuff_family.claims import CLAIMS_PRESETS, POSTHOC, extend_grid, load_claims, run_claims  # noqa: E402
from validation.fedbuff_family.report import write_claims_report  # noqa: E402

RESULTS = HERE / "results" / "claims"
FIGURES = HERE / "figures"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study (or only its report); bad input is one line on stderr and exit status 2."""
    return run_main(_run, argv)


def _run(argv: Sequence[str] | None) -> int:
    ap = OneLineArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", default="all", help="tune, eval or all (default all)")
    ap.add_argument("--quick", action="store_true", help="the machinery on synthetic data in seconds (claims-tiny)")
    ap.add_argument("--out", default=None, help="results folder (default validation/fedbuff_family/results/claims"
                                                "[/quick])")
    ap.add_argument("--runs", default=None, help="per-run outputs and checkpoints (default runs/fedbuff_claims/...)")
    ap.add_argument("--posthoc", action="store_true", help="also the post-hoc grid extensions (claims.POSTHOC; not "
                                                          "pre-registered, reported apart) once evaluated")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from the saved records")
    args = ap.parse_args(argv)
    name = "claims-tiny" if args.quick else "claims"
    sub = "quick" if args.quick else ""
    out = Path(args.out) if args.out else RESULTS / sub
    figures = FIGURES if not (args.out or args.quick) else out / "figures"
    runs = Path(args.runs) if args.runs else REPO / "runs" / "fedbuff_claims" / (sub or "full")
    command = "python validation/fedbuff_family/run.py" + (" --quick" if args.quick else "")
    preset = CLAIMS_PRESETS[name]
    checks: list[dict] = []

    def report() -> Path:
        md, _ = write_claims_report(preset, load_claims(preset, out), out / "report.md", figures,
                                    command=command + (" --posthoc" if checks else ""), posthoc=checks)
        return md

    if args.report_only:
        data = load_claims(preset, out)
        if not (data["tuning"] or data["evaluation"]):
            raise ValidationError("out", f"no saved records under {str(out)!r}")
    else:
        report()  # the protocol on disk before any run

        def progress(line: str) -> None:
            print(line, flush=True)
            if "job(s) to run" in line:  # a stage starts: its protocol and selection go on disk first
                report()

        data = run_claims(preset, out, runs, stage=args.stage, progress=progress)
    if args.posthoc and data["evaluation"] and (data["selection"] or {}).get("complete"):
        names = {sc.name for sc in preset.scenarios}
        # with --report-only nothing runs (limit 0): the checks are read from their saved records
        checks += [extend_grid(preset, out, runs, c["scenario"], c["algorithm"], c["routing"], c["etas"],
                               progress=None if args.report_only else print,
                               limit=0 if args.report_only else None)
                   for c in POSTHOC if c["scenario"] in names]
    md = report()
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

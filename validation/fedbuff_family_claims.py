"""The FedBuff-family papers' claims (FedRevive, FedEcho vs FedBuff), every algorithm tuned.

A thin entry point: the protocol, the stages and the statistics are
:mod:`aflqueue.experiments.claims`, the report
:func:`aflqueue.experiments.report.write_claims_report`.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python validation/fedbuff_family_claims.py [--stage all|tune|eval]
                                                      [--posthoc] [--quick] [--out DIR] [--runs DIR]

Results: ``validation/results/fedbuff_claims/`` (``--quick``: ``.../quick/``), per scenario
``<scenario>/tuning/`` and ``<scenario>/cells/`` (one record per run, saved as it finishes; a
restart skips finished runs and resumes an interrupted one from its checkpoint under
``runs/fedbuff_claims/``) and ``<scenario>/selection.json`` (frozen once the scenario's tuning is
complete); ``report.md`` and ``report.html`` (rewritten after every stage: the protocol is in it
before the first run), figures in ``figures/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aflqueue.errors import OneLineArgumentParser, ValidationError
from aflqueue.experiments.claims import CLAIMS_PRESETS, POSTHOC, extend_grid, load_claims, run_claims
from aflqueue.experiments.report import write_claims_report

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = OneLineArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", default="all", help="tune, eval or all (default all)")
    ap.add_argument("--quick", action="store_true", help="the machinery on synthetic data in seconds (claims-tiny)")
    ap.add_argument("--out", default=None, help="results folder (default validation/results/fedbuff_claims[/quick])")
    ap.add_argument("--runs", default=None, help="per-run outputs and checkpoints (default runs/fedbuff_claims/...)")
    ap.add_argument("--posthoc", action="store_true", help="also the post-hoc grid extensions (claims.POSTHOC; not "
                                                          "pre-registered, reported apart) once evaluated")
    try:
        args = ap.parse_args(argv)
        name = "claims-tiny" if args.quick else "claims"
        sub = "quick" if args.quick else ""
        out = Path(args.out) if args.out else REPO / "validation" / "results" / "fedbuff_claims" / sub
        runs = Path(args.runs) if args.runs else REPO / "runs" / "fedbuff_claims" / (sub or "full")
        command = "python validation/fedbuff_family_claims.py" + (" --quick" if args.quick else "")
        preset = CLAIMS_PRESETS[name]
        checks: list[dict] = []

        def report() -> Path:
            md, _ = write_claims_report(preset, load_claims(preset, out), out / "report.md", out / "figures",
                                        command=command + (" --posthoc" if checks else ""), posthoc=checks)
            return md

        report()  # the protocol on disk before any run
        def progress(line: str) -> None:
            print(line, flush=True)
            if "job(s) to run" in line:  # a stage starts: its protocol and selection go on disk first
                report()

        data = run_claims(preset, out, runs, stage=args.stage, progress=progress)
        if args.posthoc and data["evaluation"] and (data["selection"] or {}).get("complete"):
            names = {sc.name for sc in preset.scenarios}
            checks += [extend_grid(preset, out, runs, c["scenario"], c["algorithm"], c["routing"], c["etas"])
                       for c in POSTHOC if c["scenario"] in names]
        md = report()
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The commands on a researcher's own run folders: ``plot`` and ``compare``. Each parses its
arguments (the shared vocabulary is :mod:`aflqueue.options`), makes one library call and prints."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..options import check, check_finite, nonempty_path, print_json
from ..runs import compare, compare_table, group_runs, load_run, load_runs, plot_runs


# --------------------------------------------------------------------------- plot / compare
def _cmd_plot(args: argparse.Namespace) -> int:
    check_finite(args.target, "target", 0.0, 1.0)
    paths, data = plot_runs(args.runs, args.output, target=args.target, title=args.title)
    for g in data["groups"]:
        print(f"{g['legend']}: {len(g['seeds'])} run(s), seeds {', '.join(str(s) for s in g['seeds'])}")
    print(f"{len(paths)} files written to {args.output}/ ({', '.join(Path(p).name for p in paths)})")
    return 0


def add_plot_parser(sub) -> None:
    p = sub.add_parser("plot", help="plot your own runs: accuracy and loss against time and updates",
                       description="""Draw test accuracy and loss against simulated time and against updates for one
                                   or many run folders (written by aflqueue train). Runs whose configurations differ
                                   only in the seed are one group: their mean with a 95% bootstrap band; the legend
                                   names the settings that differ between groups. A folder holding run folders stands
                                   for all of them. Writes runs_curves.png, .pdf and .json.""")
    p.add_argument("runs", nargs="+", type=nonempty_path, metavar="RUN_DIR", help="run folders (or folders of them)")
    p.add_argument("--output", "-o", type=nonempty_path, default="plots", help="output folder (default plots/)")
    p.add_argument("--target", type=float, help="draw a target accuracy line, in [0, 1]")
    p.add_argument("--title", help="figure title (default: how many configurations and runs)")
    p.set_defaults(func=_cmd_plot)


def _cmd_compare(args: argparse.Namespace) -> int:
    check_finite(args.target, "target", 0.0, 1.0)
    check_finite(args.time, "time", 0.0, lo_open=True)
    groups = group_runs(load_runs(args.runs))
    reference = 0
    if args.reference is not None:
        ref = load_run(args.reference).path.resolve()
        hits = [k for k, g in enumerate(groups) if any(r.path.resolve() == ref for r in g.runs)]
        check(bool(hits), "reference", f"{args.reference!r} is not one of the runs compared")
        reference = hits[0]
    res = compare(groups, target=args.target, at_time=args.time, reference=reference)
    if args.json:
        print_json(res)
    else:
        print(compare_table(res))
    return 0


def add_compare_parser(sub) -> None:
    c = sub.add_parser("compare", help="paired table of your own runs: time to a target, accuracy at equal time",
                       description="""For run folders grouped as in aflqueue plot (seeds of one configuration): test
                                   accuracy at an equal simulated time, time to a target accuracy, and against a
                                   reference group, paired by seed, the accuracy difference (bootstrap interval) and
                                   the time ratio (log-scale interval).""")
    c.add_argument("runs", nargs="+", type=nonempty_path, metavar="RUN_DIR", help="run folders (or folders of them)")
    c.add_argument("--target", type=float, help="target test accuracy in [0, 1] (default: 90%% of the best accuracy "
                                                "the weakest run reached)")
    c.add_argument("--time", type=float, help="the equal simulated time (default: the shortest run's last evaluation)")
    c.add_argument("--reference", type=nonempty_path, metavar="RUN_DIR",
                   help="a run of the reference group (default: the first group)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=_cmd_compare)

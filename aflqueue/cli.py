"""Command-line interface: ``aflqueue <command> ...``. This module assembles the commands of
:mod:`aflqueue.commands` (each parses its arguments with the shared vocabulary of
:mod:`aflqueue.options`, makes one library call, and prints) and turns every failure into one line.

Bad input prints one line on stderr naming the field and exits with status 2; an error while
running (a full disk, a bug) prints one line and exits with status 1 (``AFLQUEUE_DEBUG=1`` shows
the traceback). Nothing here imports torch: training commands reach it through the library.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from . import __version__
from .commands import queueing, runs, training
from .errors import ValidationError
from .options import EXIT_FAILURE, EXIT_USAGE, Parser, UsageError, join_negative_values

#: The subcommands, in the order ``aflqueue --help`` lists them.
PARSERS = (queueing.add_analyze_parser, queueing.add_simulate_parser, queueing.add_optimize_parser,
           training.add_train_parser, training.add_tune_parser, training.add_run_parser,
           training.add_validate_parser, queueing.add_figures_parser, queueing.add_sweep_parser,
           runs.add_plot_parser, runs.add_compare_parser, queueing.add_schedule_parser,
           training.add_calibrate_parser, training.add_predict_parser, training.add_recommend_parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``aflqueue`` parser with every subcommand of :data:`PARSERS`."""
    parser = Parser(prog="aflqueue", description="Asynchronous FL as a closed queueing network.")
    parser.add_argument("--version", action="version", version=f"aflqueue {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for add in PARSERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aflqueue`` console script."""
    parser = build_parser()
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
        if getattr(args, "objective", None) == "wallclock":
            args.objective = "wall-clock"
        return int(args.func(args) or 0)
    except (UsageError, ValidationError) as e:
        msg = f"{e}" if isinstance(e, UsageError) else f"aflqueue: error: {e}"
        print((msg.splitlines() or ["aflqueue: error"])[0], file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the promise is one line, never a traceback
        if os.environ.get("AFLQUEUE_DEBUG"):
            raise
        what = f"{e.filename}: " if isinstance(e, OSError) and e.filename else ""
        detail = (str(getattr(e, "strerror", None) or e).strip().splitlines() or [""])[0]
        print(f"aflqueue: failed: {what}{type(e).__name__}: {detail} (AFLQUEUE_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())

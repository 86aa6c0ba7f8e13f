"""Command-line interface: ``aflqueue <command> ...``. This module assembles the commands of
:mod:`aflqueue.commands` (each parses its arguments with the shared vocabulary of
:mod:`aflqueue.options`, makes one library call, and prints) and turns every failure into one line.

Bad input prints one line on stderr naming the field and exits with status 2 (a path that cannot
be used as given -- a file where a folder is needed, a folder without write permission -- is bad
input too); an error while running (a full disk, a bug) prints one line and exits with status 1
(``AFLQUEUE_DEBUG=1`` shows the traceback). SIGTERM ends a command as an interruption does, so that
no half-written file is left behind. Nothing here imports torch: training commands reach it through
the library.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import fields
from typing import Sequence

from . import __version__
from .commands import queueing, runs, training
from .config import TrainConfig
from .errors import ValidationError
from .io import naming_file, source_name
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


#: Errors of a path the user gave that cannot be used as asked: bad input, not a failure.
PATH_ERRORS = (FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _naming_config(e: ValidationError, args: argparse.Namespace | None) -> ValidationError:
    """``e`` naming the run configuration file when it is about one of its fields (checked deep in
    the library, where the file is no longer known)."""
    config = getattr(args, "config", None)
    sections = {f.name for f in fields(TrainConfig)}
    if not config or e.field.split(".")[0].split("[")[0] not in sections:
        return e
    return naming_file(e, f"{source_name(config)} (with the command line's overrides)")


def _terminated(signum, frame) -> None:
    # unwinds like an interruption: atomic writes remove their temporary files on the way out
    raise KeyboardInterrupt


def _is_interruption(e: BaseException | None) -> bool:
    """Whether ``e`` is an interruption: a KeyboardInterrupt, or the SystemError that CPython raises
    in its place when it arrives while a compiled (numba) kernel runs ("... returned a result with
    an exception set", caused by the interruption, possibly through another such SystemError)."""
    while isinstance(e, SystemError):
        e = e.__cause__ or e.__context__
    return isinstance(e, KeyboardInterrupt)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aflqueue`` console script."""
    if argv is None:  # the console script (a caller passing argv keeps its own signal handling)
        signal.signal(signal.SIGTERM, _terminated)
    parser = build_parser()
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    args = None
    try:
        args = parser.parse_args(argv)
        if getattr(args, "objective", None) == "wallclock":
            args.objective = "wall-clock"
        return int(args.func(args) or 0)
    except (UsageError, ValidationError) as e:
        msg = f"{e}" if isinstance(e, UsageError) else f"aflqueue: error: {_naming_config(e, args)}"
        print((msg.splitlines() or ["aflqueue: error"])[0], file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): nothing left to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except PATH_ERRORS as e:
        print(f"aflqueue: error: {e.filename or 'output'}: {e.strerror or type(e).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - the promise is one line, never a traceback
        if _is_interruption(e):
            print("interrupted", file=sys.stderr)
            return 130
        if os.environ.get("AFLQUEUE_DEBUG"):
            raise
        what = f"{e.filename}: " if isinstance(e, OSError) and e.filename else ""
        detail = (str(getattr(e, "strerror", None) or e).strip().splitlines() or [""])[0]
        print(f"aflqueue: failed: {what}{type(e).__name__}: {detail} (AFLQUEUE_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())

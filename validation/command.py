"""What the studies' commands (``validation/<study>/run.py``) share: the parser whose errors are one
line, the backend flags of ``aflqueue`` itself, the torchvision sets found under a folder, and the
one-line error report (exit status 2)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from aflqueue.options import add_backend_arguments, check_backend
from aflqueue.errors import OneLineArgumentParser, ValidationError

__all__ = ["parser", "add_backend_arguments", "add_report_arguments", "check_backend", "require_training",
           "torchvision_sets_under", "run_main"]

#: Folders of the torchvision data sets a ``--data-root`` may hold.
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "kmnist": "KMNIST", "emnist": "EMNIST",
                       "cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser described by the first paragraph of ``doc`` (the script's docstring),
    whose bad command lines raise :class:`~aflqueue.errors.ValidationError`."""
    return OneLineArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)


def add_report_arguments(ap: argparse.ArgumentParser, figures_help: str, records: str = "runs") -> None:
    """The flags of a study's outputs: ``--report`` (path), ``--figures`` (folder; ``figures_help``
    says its default), ``--report-only`` (rebuild from the saved ``records``) and ``--quiet``."""
    ap.add_argument("--report", help="report path (default: report.md in the results folder)")
    ap.add_argument("--figures", help=figures_help)
    ap.add_argument("--report-only", action="store_true", help=f"only rebuild the report from the saved {records}")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")


def require_training(what: str) -> None:
    """Refuse (one line) a study that trains models when the ``fl`` extra (torch...) is missing."""
    from aflqueue.errors import FL_EXTRA_MESSAGE, missing_fl_modules

    missing = missing_fl_modules()
    if missing:
        raise ValidationError("fl", f"{what} trains models: {FL_EXTRA_MESSAGE} (missing: {', '.join(missing)})")


def torchvision_sets_under(root: str) -> list[str]:
    """Torchvision data sets whose folders exist under ``root`` (the loader checks the files)."""
    if not Path(root).is_dir():
        raise ValidationError("data-root", f"{root!r} is not an existing folder")
    found = [k for k, f in TORCHVISION_FOLDERS.items() if (Path(root) / f).is_dir()]
    if not found:
        raise ValidationError("data-root", f"no torchvision data set folder under {root!r} (expected one of "
                                           f"{', '.join(TORCHVISION_FOLDERS.values())})")
    return found


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """``main(argv)``, with bad input reported as one line on stderr and exit status 2."""
    try:
        return main(argv)
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

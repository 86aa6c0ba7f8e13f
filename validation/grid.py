"""Validation grid (predicted vs measured), the same as ``aflqueue validate``.

    python validation/grid.py --preset small                     # < 15 min on 2 CPU cores
    python validation/grid.py --preset default --backend process # writes validation/report.md
    python validation/grid.py --preset small --data-root ~/data  # torchvision sets found there
"""

import sys

from aflqueue.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))

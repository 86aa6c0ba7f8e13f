"""The regime maps pooled: across-regime correlations over the first map and the confirmatory one.

The secondary analysis of ``validation/regimes/CONFIRM_PROTOCOL.md``: the statistics are
:func:`validation.regimes.experiment.pool_regime_maps`, the report
:func:`validation.regimes.report.write_regimes_pooled_report`.

Usage (from anywhere)::

    python validation/regimes/pooled.py

Reads ``validation/regimes/results/regimes`` and ``validation/regimes/results/regimes-confirm``;
writes ``validation/regimes/results/regimes-confirm/pooled.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent.parent) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE.parent.parent))

from validation.regimes.experiment import REGIME_PRESETS, load_regimes  # noqa: E402
from validation.regimes.report import write_regimes_pooled_report  # noqa: E402

RESULTS = HERE / "results"

if __name__ == "__main__":
    maps = [(REGIME_PRESETS[name], load_regimes(RESULTS / name)) for name in ("regimes", "regimes-confirm")]
    print(write_regimes_pooled_report(maps, RESULTS / "regimes-confirm" / "pooled.md"))

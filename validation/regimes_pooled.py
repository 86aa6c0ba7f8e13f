"""The regime maps pooled: across-regime correlations over the first map and the confirmatory one.

A thin entry point (the secondary analysis of ``validation/REGIMES_CONFIRM_PROTOCOL.md``): the
statistics are :func:`aflqueue.experiments.regimes.pool_regime_maps`, the report
:func:`aflqueue.experiments.report.write_regimes_pooled_report`.

Usage::

    python validation/regimes_pooled.py

Reads ``validation/results/regimes`` and ``validation/results/regimes-confirm``; writes
``validation/results/regimes-confirm/pooled.md``.
"""

from __future__ import annotations

from pathlib import Path

from aflqueue.experiments.regimes import REGIME_PRESETS, load_regimes
from aflqueue.experiments.report import write_regimes_pooled_report

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    maps = [(REGIME_PRESETS[name], load_regimes(RESULTS / name)) for name in ("regimes", "regimes-confirm")]
    print(write_regimes_pooled_report(maps, RESULTS / "regimes-confirm" / "pooled.md"))

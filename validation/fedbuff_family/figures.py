"""The FedBuff-family study's figure, in the toolkit's one style (:mod:`aflqueue.plots`): accuracy
against simulated time per algorithm (every seed thin, the mean bold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aflqueue.plots import (ACCURACY, GREY, LINESTYLES, SIM_TIME, as_array, colour, human, legend_below, legend_entries,
                            save_figure, styled, subplots)

__all__ = ["comparison_accuracy_figure"]


def comparison_accuracy_figure(records: list[Mapping[str, Any]], out_dir: str | Path,
                               preset: str) -> list[tuple[Path, str]]:
    """Algorithm comparison: test accuracy against simulated time per algorithm, every seed as a
    thin line and the mean over seeds bold (a t-band over a handful of seeds would cover most of
    ``[0, 1]``; the report gives the bootstrap intervals), the preset's target dotted.
    ``records``: the comparison's run records (``algorithm``, ``seed``, ``curve``, ``target``).
    Returns ``[(png, caption)]`` (empty without records)."""
    if not records:
        return []
    algorithms = list(dict.fromkeys(r["algorithm"] for r in records))
    with styled():
        fig, axes = subplots(1, 1, panel=(4.6, 3.2))
        ax = axes[0][0]
        for k, alg in enumerate(algorithms):
            col, ls = colour(k), LINESTYLES[k % len(LINESTYLES)]
            curves = [r["curve"] for r in records if r["algorithm"] == alg]
            for c in curves:
                ax.plot(c["time"], 100 * as_array(c["test_accuracy"]), color=col, ls=ls, lw=0.5, alpha=0.4)
            t = curves[0]["time"]
            A = np.asarray([c["test_accuracy"] for c in curves if len(c["test_accuracy"]) == len(t)], dtype=float)
            ax.plot(t, 100 * A.mean(0), color=col, ls=ls, lw=1.8, label=f"{human(alg)} ({A.shape[0]} seeds)")
        tgt = records[0]["target"]
        ax.axhline(100 * tgt, color=GREY, ls=":", lw=0.8, label=f"target accuracy ({100 * tgt:.0f}%)")
        ax.set_ylim(0, 100)
        ax.set_xlabel(SIM_TIME)
        ax.set_ylabel(ACCURACY)
        ax.set_title("accuracy at equal simulated time (bold: mean, thin: one seed)")
        legend_below(fig, *legend_entries(axes), ncol=2, title="server algorithm")
        fig.suptitle(f"Server algorithms compared, scenario {preset}")
        paths = save_figure(fig, out_dir, f"comparison_accuracy_{preset}")
    return [(Path(paths[0]), f"{preset}: test accuracy against simulated time per algorithm (thin: one seed; "
                             f"bold: mean over seeds)")]

"""The FedBuff-family study's figure, in the toolkit's one style (:mod:`aflqueue.style`): accuracy
against simulated time per algorithm (every seed thin, the mean bold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aflqueue.style import (ACCURACY, GREY, LINESTYLES, MARKERS, SIM_TIME, as_array, colour, few_points_marker, human,
                            legend_below, legend_entries, save_figure, seed_range, styled, subplots)

__all__ = ["comparison_accuracy_figure"]


def _name(algorithm: str) -> str:
    """Display name of ``"fedbuff"`` or ``"fedbuff / p2"`` (algorithm / routing)."""
    alg, _, routing = (s.strip() for s in algorithm.partition("/"))
    if not routing:
        return human(alg)
    return f"{human(alg)}, {'uniform routing' if routing == 'uniform' else human(routing)}"


def _scenario(preset: str) -> str:
    """Display name of a scenario key (``claims_fedecho-like`` -> ``fedecho-like``)."""
    return preset.removeprefix("claims_").replace("_", " ")


def comparison_accuracy_figure(records: list[Mapping[str, Any]], out_dir: str | Path,
                               preset: str) -> list[tuple[Path, str]]:
    """Algorithm comparison: test accuracy against simulated time per algorithm, every seed as a
    thin line and the mean over seeds bold (the report gives the bootstrap intervals), the
    preset's target dotted. ``records``: the comparison's run records (``algorithm``, ``seed``,
    ``curve``, ``target``). Returns ``[(png, caption)]`` (empty without records)."""
    if not records:
        return []
    algorithms = list(dict.fromkeys(r["algorithm"] for r in records))
    counts: list[int] = []
    with styled():
        fig, axes = subplots(1, 1, width="single", panel_height=2.2)
        ax = axes[0][0]
        for k, alg in enumerate(algorithms):
            col, ls = colour(k), LINESTYLES[k % len(LINESTYLES)]
            curves = [r["curve"] for r in records if r["algorithm"] == alg]
            t = curves[0]["time"]
            mk = few_points_marker(len(t), MARKERS[k % len(MARKERS)])
            for c in curves:
                ax.plot(c["time"], 100 * as_array(c["test_accuracy"]), color=col, ls=ls, lw=0.5, alpha=0.4,
                        gid="per-seed", label=_name(alg))
            A = np.asarray([c["test_accuracy"] for c in curves if len(c["test_accuracy"]) == len(t)], dtype=float)
            counts.append(A.shape[0])
            ax.plot(t, 100 * A.mean(0), color=col, ls=ls, lw=1.6, marker=mk, label=_name(alg))
        tgt = records[0]["target"]
        ax.axhline(100 * tgt, color=GREY, ls=":", lw=0.8, label=f"target accuracy ({100 * tgt:.0f}%)")
        ax.set_ylim(0, 100)
        ax.set_xlabel(SIM_TIME)
        ax.set_ylabel(ACCURACY)
        ax.set_title(f"scenario {_scenario(preset)}")
        note = f"bold: mean over {seed_range(counts)} seeds, thin: each seed"
        legend_below(fig, *legend_entries(axes), ncol=2, title=f"server algorithm, routing; {note}")
        fig.suptitle("Server algorithms compared at equal simulated time")
        paths = save_figure(fig, out_dir, f"comparison_accuracy_{preset}")
    return [(Path(paths[0]), f"{preset}: test accuracy against simulated time per algorithm (thin: one seed; "
                             f"bold: mean over seeds)")]

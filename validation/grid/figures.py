"""The validation grid's figures, in the toolkit's one style (:mod:`aflqueue.plots`), from its
cell records."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aflqueue.plots import (ACCURACY, GREY, SIM_TIME, colour, human, legend_below, legend_entries, mean_band,
                            save_figure, styled, subplots)
from validation.grid.experiment import ROUTING_LABELS

__all__ = ["grid_accuracy_figures"]


#: Routing groups of a grid figure: one message per figure (P2 vs AsyncSGD; the other proxies).
_GRID_GROUPS = (("", ("uniform", "wallclock", "wallclock-eta")),
                ("_other_proxies", ("uniform", "per-update", "time-to-accuracy", "max-throughput")))


def grid_accuracy_figures(records: list[Mapping[str, Any]], out_dir: str | Path) -> list[tuple[Path, str]]:
    """Validation grid: accuracy against simulated time (mean and 95% bootstrap band over seeds),
    per routing for each (data set, algorithm), one panel per (speeds, partition). The wall-clock
    routings (P2, with and without its step size) and the other proxies go to separate figures
    so that a panel compares at most three routings with AsyncSGD. Returns ``[(png, caption)]``."""
    made: list[tuple[Path, str]] = []
    by: dict[tuple, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        c = r["cell"]
        by[(c["dataset"], c["algorithm"])][(c["speed"], c["partition"], c["routing"])].append(r)
    style = {"uniform": ("black", "-"), "wallclock": (colour(1), "--"), "wallclock-eta": (colour(0), "-."),
             "per-update": (colour(2), "--"), "time-to-accuracy": (colour(3), "-."),
             "max-throughput": (colour(4), ":")}
    order = ("iid", "dir0.5", "dir0.1")
    for (dataset, algorithm), cells in sorted(by.items()):
        for suffix, routings in _GRID_GROUPS:
            present = [rt for rt in routings if any(k[2] == rt for k in cells)]
            if not [rt for rt in present if rt != "uniform"]:
                continue
            scen = sorted({(s, p) for s, p, _ in cells})
            speeds = sorted({s for s, _ in scen})
            parts = sorted({p for _, p in scen}, key=lambda x: order.index(x) if x in order else 9)
            with styled():
                fig, axes = subplots(len(speeds), len(parts), panel=(3.0, 2.3), sharey=True)
                for sp, pa in scen:
                    ax = axes[speeds.index(sp)][parts.index(pa)]
                    target = next(rr for (s2, p2, _), v in cells.items() if (s2, p2) == (sp, pa) for rr in v)["target"]
                    for routing in present:
                        runs = cells.get((sp, pa, routing))
                        if not runs:
                            continue
                        t = np.asarray(runs[0]["measured"]["curves"]["time"])
                        curves = [r["measured"]["curves"]["test_accuracy"] for r in runs
                                  if len(r["measured"]["curves"]["test_accuracy"]) == t.size]
                        col, ls = style.get(routing, (GREY, "-"))
                        mean_band(ax, t, curves, col, ROUTING_LABELS.get(routing, routing), ls)
                    ax.axhline(100 * target, color=GREY, ls=":", lw=0.8, label=f"target accuracy ({100 * target:.0f}%)")
                    ax.set_title(f"{human(sp)}, {human(pa)}")
                    ax.set_ylim(0, 100)
                    ax.set_xlabel(SIM_TIME)
                for row in axes:
                    row[0].set_ylabel(ACCURACY)
                handles, labels = legend_entries(axes)
                legend_below(fig, handles, labels, ncol=min(len(labels), 3),
                              title="routing (mean over seeds, band: 95% bootstrap interval of the mean)")
                what = "the wall-clock routing" if not suffix else "the other proxies' routings"
                fig.suptitle(f"{human(dataset)}, {human(algorithm)}: {what} against AsyncSGD at equal time")
                paths = save_figure(fig, out_dir, f"grid_accuracy_{dataset}_{algorithm}{suffix}")
            made.append((Path(paths[0]), f"{human(dataset)}, {human(algorithm)}: test accuracy against simulated "
                                         f"time, {what} vs AsyncSGD (mean, 95% bootstrap band over seeds)"))
    return made

"""The validation grid's figures, in the toolkit's one style (:mod:`aflqueue.style`), from its
cell records."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aflqueue.style import (ACCURACY, GREY, MARKERS, SIM_TIME, band_note, colour, human, legend_below, legend_entries,
                            save_figure, seed_curves, styled, subplots)
from validation.grid.experiment import ROUTING_LABELS

__all__ = ["grid_accuracy_figures"]


#: Routing groups of a grid figure: one message per figure (P2 vs AsyncSGD; the other proxies).
_GRID_GROUPS = (("", ("uniform", "wallclock", "wallclock-eta")),
                ("_other_proxies", ("uniform", "per-update", "time-to-accuracy", "max-throughput")))

#: Short names of the speed scenarios (panel titles share a column's width with the partition).
_SPEEDS = {"five-types": "5 device types (30x)", "two-groups": "2 speed groups (10x)"}


def grid_accuracy_figures(records: list[Mapping[str, Any]], out_dir: str | Path) -> list[tuple[Path, str]]:
    """Validation grid: accuracy against simulated time per routing for each (data set,
    algorithm), one panel per (speeds, partition): the mean over seeds with its 95% bootstrap band
    from three seeds, every seed below (:func:`aflqueue.style.seed_curves`). The wall-clock
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
            counts: list[int] = []
            with styled():
                fig, axes = subplots(len(speeds), len(parts), width="double" if len(parts) > 1 else "single",
                                     panel_height=1.7, sharey=True)
                for sp, pa in scen:
                    ax = axes[speeds.index(sp)][parts.index(pa)]
                    target = next(rr for (s2, p2, _), v in cells.items() if (s2, p2) == (sp, pa) for rr in v)["target"]
                    for k, routing in enumerate(present):
                        runs = cells.get((sp, pa, routing))
                        if not runs:
                            continue
                        t = np.asarray(runs[0]["measured"]["curves"]["time"])
                        curves = [r["measured"]["curves"]["test_accuracy"] for r in runs
                                  if len(r["measured"]["curves"]["test_accuracy"]) == t.size]
                        col, ls = style.get(routing, (GREY, "-"))
                        counts.append(seed_curves(ax, t, curves, col, ROUTING_LABELS.get(routing, routing), ls,
                                                  scale=100.0, marker=MARKERS[k % len(MARKERS)]))
                    ax.axhline(100 * target, color=GREY, ls=":", lw=0.8, label=f"target accuracy ({100 * target:.0f}%)")
                    ax.set_title(f"{_SPEEDS.get(sp, human(sp))}, {human(pa)}")
                    ax.set_ylim(0, 100)
                    ax.set_xlabel(SIM_TIME)
                for row in axes:
                    row[0].set_ylabel(ACCURACY)
                note = band_note(counts)
                legend_below(fig, *legend_entries(axes), ncol=4, title=f"routing; {note}")
                what = "the wall-clock routing" if not suffix else "the other proxies' routings"
                fig.suptitle(f"{human(dataset)}, {human(algorithm)}: {what} against AsyncSGD at equal time")
                paths = save_figure(fig, out_dir, f"grid_accuracy_{dataset}_{algorithm}{suffix}")
            made.append((Path(paths[0]), f"{human(dataset)}, {human(algorithm)}: test accuracy against simulated "
                                         f"time, {what} vs AsyncSGD ({note})"))
    return made

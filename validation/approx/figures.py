"""The approximation study's figure, in the toolkit's one style (:mod:`aflqueue.style`): errors of
the approximation and of the product form against simulation, per compute-time cv."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aflqueue.style import GREY, guide, legend_below, log_axis, save_figure, styled, subplots
from validation.approx.experiment import CRITERION, LAW_OF_CV, main_grid

__all__ = ["approx_error_figure"]


#: Okabe-Ito colours of the two analyses compared with simulation.
_ANALYSIS_COLOURS = {"product_form": ("product form (PF)", "#E69F00"), "approx": ("approximation", "#0072B2")}


_ERROR_FLOOR = 1e-3  # |error| in % below this is drawn at it (a log axis has no zero)


def approx_error_figure(results: Mapping[str, Any], out_dir: str | Path) -> list[tuple[Path, str]]:
    """Approximation vs product form against simulation, per compute-time cv, over the main grid:
    |relative error| of the throughput (left) and of the worst type's mean relative delay (right),
    as box plots side by side (box: quartiles, line: median, whiskers: 5th-95th percentile,
    dots: beyond), log scale, with the 3% criterion dashed. ``results``: the assembled results
    of :func:`validation.approx.experiment.assemble`. Returns ``[(png, caption)]``."""
    from matplotlib.patches import Patch

    errs = results["summary"]["errors"]
    main = main_grid(results["points"])
    if not main:
        return []
    cvs = [cv for cv in sorted(LAW_OF_CV) if any(r["cv"] == cv for r in main)]
    panels = (("throughput", "(a) throughput"), ("delay_max", "(b) mean relative delay $E[D]$ of the worst type"))
    with styled():
        fig, axes = subplots(1, 2, width="double", panel_height=2.1)
        for ax, (field, title) in zip(axes[0], panels):
            for k, key in enumerate(_ANALYSIS_COLOURS):
                label, colour = _ANALYSIS_COLOURS[key]
                data = [np.maximum(100 * np.abs([errs[r["id"]][key][field] for r in main if r["cv"] == cv
                                                 and errs[r["id"]][key][field] is not None]), _ERROR_FLOOR)
                        for cv in cvs]
                parts = ax.boxplot(data, positions=np.arange(len(cvs)) + (k - 0.5) * 0.36, widths=0.3, whis=(5, 95),
                                   patch_artist=True, manage_ticks=False,
                                   boxprops={"facecolor": colour, "alpha": 0.55, "edgecolor": colour},
                                   medianprops={"color": "black", "lw": 1.0}, whiskerprops={"color": colour},
                                   capprops={"color": colour},
                                   flierprops={"marker": ".", "ms": 2.5, "mfc": colour, "mec": "none", "alpha": 0.7})
                for part, artists in parts.items():  # every part of a box belongs to its analysis
                    for a in artists:
                        a.set_label(label)
                        if part in ("whiskers", "caps", "medians"):
                            guide(a)  # segments of the box, not curves through points
            ax.axhline(100 * CRITERION, color=GREY, ls="--", lw=0.8, label=f"{100 * CRITERION:.0f}% criterion")
            log_axis(ax, "y")
            ax.set_xticks(range(len(cvs)), [f"{cv:g}" for cv in cvs])
            ax.grid(False, axis="x")
            ax.set_xlabel("compute-time CV (lognormal; 0: deterministic)")
            ax.set_ylabel("|relative error| vs simulation (%)")
            ax.set_title(title)
        from matplotlib.lines import Line2D

        handles = [Patch(facecolor=c, edgecolor=c, alpha=0.55) for _, c in _ANALYSIS_COLOURS.values()]
        handles.append(Line2D([], [], color=GREY, ls="--", lw=0.8))
        labels = [lab for lab, _ in _ANALYSIS_COLOURS.values()] + [f"{100 * CRITERION:.0f}% criterion"]
        legend_below(fig, handles, labels, ncol=3,
                     title=f"per CV over the main grid's {len(main)} points: box quartiles, line median, "
                           "whiskers 5th-95th percentile, dots beyond")
        paths = save_figure(fig, out_dir, "approx_errors")
    return [(Path(paths[0]), "Absolute relative error against simulation of the product form and the approximation "
                             f"per compute-time cv over the {len(main)} points of the main grid (box: quartiles; "
                             "whiskers: 5th-95th percentile; dots: beyond; errors below 0.001% drawn at 0.001%)")]

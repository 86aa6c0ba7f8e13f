"""The approximation study's figure, in the toolkit's one style (:mod:`aflqueue.plots`): errors of
the approximation and of the product form against simulation, per compute-time cv."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aflqueue.plots import STYLE, pyplot, save_figure
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
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    errs = results["summary"]["errors"]
    main = main_grid(results["points"])
    if not main:
        return []
    cvs = [cv for cv in sorted(LAW_OF_CV) if any(r["cv"] == cv for r in main)]
    plt = pyplot()
    panels = (("throughput", "(a) throughput"), ("delay_max", "(b) mean relative delay $E[D]$, worst type"))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.0), sharey=False)
        for ax, (field, title) in zip(axes, panels):
            for k, key in enumerate(_ANALYSIS_COLOURS):
                colour = _ANALYSIS_COLOURS[key][1]
                data = [np.maximum(100 * np.abs([errs[r["id"]][key][field] for r in main if r["cv"] == cv
                                                 and errs[r["id"]][key][field] is not None]), _ERROR_FLOOR)
                        for cv in cvs]
                ax.boxplot(data, positions=np.arange(len(cvs)) + (k - 0.5) * 0.36, widths=0.3, whis=(5, 95),
                           patch_artist=True, manage_ticks=False,
                           boxprops={"facecolor": colour, "alpha": 0.55, "edgecolor": colour},
                           medianprops={"color": "black", "lw": 1.0}, whiskerprops={"color": colour},
                           capprops={"color": colour},
                           flierprops={"marker": ".", "ms": 2.5, "mfc": colour, "mec": "none", "alpha": 0.7})
            ax.axhline(100 * CRITERION, color="0.3", ls="--", lw=0.8)
            ax.set_yscale("log")
            ax.set_xticks(range(len(cvs)), [f"{cv:g}" for cv in cvs])
            ax.set_xlabel("compute-time cv (0 = deterministic, else lognormal)")
            ax.set_ylabel("|relative error| vs simulation (%)")
            ax.set_title(title)
        handles = [Patch(facecolor=c, edgecolor=c, alpha=0.55, label=lab) for lab, c in _ANALYSIS_COLOURS.values()]
        handles.append(Line2D([], [], color="0.3", ls="--", lw=0.8, label=f"{100 * CRITERION:.0f}% criterion"))
        fig.legend(handles=handles, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout(rect=(0, 0, 1, 0.9))
        paths = save_figure(fig, out_dir, "approx_errors")
    return [(Path(paths[0]), "Absolute relative error against simulation of the product form and the approximation "
                             f"per compute-time cv over the {len(main)} points of the main grid (box: quartiles; "
                             "whiskers: 5th-95th percentile; dots: beyond; errors below 0.001% drawn at 0.001%)")]

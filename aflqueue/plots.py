"""Paper figures. Every figure is produced from saved results (a dict loaded from a results JSON),
never by re-running an analysis or a simulation, so that ``aflqueue figures`` can regenerate all
of them from what the validation and experiment scripts saved.

Each function takes the results dict and an output folder, writes the figure as PNG and PDF
(file names starting with the figure's family, e.g. ``closed_forms_``) and returns the paths.
matplotlib is imported inside the functions (Agg backend) so that ``import aflqueue`` stays light.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

__all__ = ["closed_forms_delay_scatter", "closed_forms_cv_deviation", "closed_forms_delay_law",
           "closed_forms_figures", "STYLE"]

#: Shared paper style (applied with ``rc_context``, never globally).
STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "savefig.dpi": 200,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable/searchable in the PDF
}

# One marker/colour per service law (by label), stable across figures.
_LAW_ORDER = ("exponential", "deterministic", "gamma cv=0.5", "lognormal cv=0.5", "lognormal cv=1.5",
              "lognormal cv=3", "weibull k=0.7")
_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "h")
_FAMILY_MARKERS = {"exponential": "o", "deterministic": "s", "gamma": "D", "lognormal": "^", "weibull": "X",
                   "pareto": "P"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _law_style(label: str, index_hint: int = 0) -> tuple[str, Any]:
    """(marker, colour) of a law label; unknown labels get the next free style."""
    plt = _plt()
    colours = plt.get_cmap("tab10").colors
    k = _LAW_ORDER.index(label) if label in _LAW_ORDER else len(_LAW_ORDER) + index_hint
    return _MARKERS[k % len(_MARKERS)], colours[k % len(colours)]


def _save(fig: Any, out_dir: str | Path, stem: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for p in paths:
        # no creation date in the PDF: regenerating a figure from the same results gives the same file
        fig.savefig(p, bbox_inches="tight", metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    _plt().close(fig)
    return paths


def _grid(n: int, ncols: int = 3) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return int(math.ceil(n / ncols)), ncols


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(float(x))


# --------------------------------------------------------------------------- closed forms
def closed_forms_delay_scatter(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Simulated vs closed-form ``E[D_i]`` (updates), log-log, one panel per scenario.

    Error bars are the 95% confidence intervals; the diagonal is exact agreement. One marker and
    colour per compute-time law. Reads ``results["scenarios"][name]["runs"][k]["comparisons"]``.
    """
    plt = _plt()
    import numpy as np
    from matplotlib.ticker import NullFormatter

    scen = results["scenarios"]
    names = [n for n, sc in scen.items() if sc.get("runs")]
    if not names:
        raise ValueError("closed_forms_delay_scatter: no scenario with runs in the results")
    nrows, ncols = _grid(len(names))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.5 * nrows), squeeze=False)
        handles: dict[str, Any] = {}
        for ax, name in zip(axes.flat, names):
            lo_all, hi_all = math.inf, 0.0
            for k, run in enumerate(scen[name]["runs"]):
                label = run["law"]["label"]
                rows = [r for r in run["comparisons"] if r["metric"] == "relative_delay"
                        and _finite(r["closed_form"]) and _finite(r["sim_mean"]) and r["closed_form"] > 0]
                if not rows:
                    continue
                x = np.array([r["closed_form"] for r in rows])
                y = np.array([r["sim_mean"] for r in rows])
                lo = np.array([r["ci"][0] if r["ci"] and _finite(r["ci"][0]) else r["sim_mean"] for r in rows])
                hi = np.array([r["ci"][1] if r["ci"] and _finite(r["ci"][1]) else r["sim_mean"] for r in rows])
                lo = np.maximum(lo, 0.5 * y)  # a log axis cannot show a non-positive lower bound
                marker, colour = _law_style(label, k)
                h = ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt=marker, color=colour, ms=3.5, mfc="none",
                                mew=0.9, elinewidth=0.7, capsize=0, label=label)
                handles.setdefault(label, h)
                lo_all, hi_all = min(lo_all, x.min(), lo.min()), max(hi_all, x.max(), hi.max())
            if hi_all > 0:
                # at least ~1.5 decades so that log ticks stay readable on narrow ranges
                centre = math.sqrt(lo_all * hi_all)
                half = max(math.sqrt(hi_all / lo_all) * 1.5, 10 ** 0.75)
                span = np.array([centre / half, centre * half])
                ax.plot(span, span, color="0.4", lw=0.8, ls="--", zorder=0)
                ax.set_xlim(*span)
                ax.set_ylim(*span)
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_minor_formatter(NullFormatter())
            ax.set_title(name)
            ax.set_xlabel("closed-form $E[D_i]$ (updates)")
            ax.set_ylabel("simulated $E[D_i]$ (updates)")
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        ncol = min(len(handles), 4)
        legend_rows = max(1, math.ceil(len(handles) / ncol))
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol,
                   frameon=False, bbox_to_anchor=(0.5, 0.0))
        fig.suptitle("Relative delay per client: simulation (95% CI) vs closed form")
        # reserve room for the legend below the panels (in figure-height fractions)
        fig.tight_layout(rect=(0, (0.1 + 0.2 * legend_rows) / fig.get_figheight(), 1, 1))
        return _save(fig, out_dir, "closed_forms_delay_scatter")


def _deviation(row: Mapping[str, Any]) -> tuple[float, float, float]:
    """(relative deviation, lower, upper) in percent, the bounds from the CI."""
    cf = row["closed_form"]
    mid = 100.0 * (row["sim_mean"] - cf) / cf
    if row.get("ci") and _finite(row["ci"][0]) and _finite(row["ci"][1]):
        return mid, 100.0 * (row["ci"][0] - cf) / cf, 100.0 * (row["ci"][1] - cf) / cf
    return mid, mid, mid


def closed_forms_cv_deviation(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Relative deviation (%) of throughput and of the slowest clients' mean ``E[D]`` vs the CV.

    One colour per single-stage scenario, one marker per law family; the line joins the
    deterministic, exponential and lognormal points (in CV order). Exponential service (CV = 1,
    dotted line) is the exact reference. "Slowest clients" = the client type with the lowest
    compute rate, delay pooled over its clients (task-weighted).
    """
    plt = _plt()

    scen = {n: sc for n, sc in results["scenarios"].items() if not sc.get("multistage") and sc.get("runs")}
    if not scen:
        raise ValueError("closed_forms_cv_deviation: no single-stage scenario in the results")
    colours = plt.get_cmap("tab10").colors
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.9))
        fam_handles: dict[str, Any] = {}
        scen_handles: dict[str, Any] = {}
        for c, (name, sc) in enumerate(scen.items()):
            colour = colours[c % len(colours)]
            pts: list[list[tuple[float, float, float, float, str]]] = [[], []]
            for run in sc["runs"]:
                cv = run["law"]["cv"]
                if not _finite(cv):
                    continue
                thr = next(r for r in run["comparisons"] if r["metric"] == "throughput")
                slow = min(run["group_comparisons"], key=lambda r: r["rate"])
                for k, row in enumerate((thr, slow)):
                    pts[k].append((float(cv), *_deviation(row), run["law"]["family"]))
            for k, ax in enumerate(axes):
                for cv, mid, lo, hi, fam in pts[k]:
                    ax.errorbar([cv], [mid], yerr=[[mid - lo], [hi - mid]], fmt=_FAMILY_MARKERS.get(fam, "o"),
                                    color=colour, mfc="none" if fam != "exponential" else colour, ms=4.5,
                                    mew=0.9, elinewidth=0.8, capsize=1.5)
                    fam_handles.setdefault(fam, ax.plot([], [], _FAMILY_MARKERS.get(fam, "o"), color="0.3",
                                                        mfc="none", label=fam)[0])
                line = sorted((p for p in pts[k] if p[4] in ("deterministic", "exponential", "lognormal")),
                              key=lambda p: p[0])
                if line:
                    h = ax.plot([p[0] for p in line], [p[1] for p in line], color=colour, lw=0.9, alpha=0.8)[0]
                    scen_handles.setdefault(name, h)
        for ax, title in zip(axes, ("throughput", "mean $E[D]$ of the slowest clients")):
            ax.axhline(0.0, color="0.3", lw=0.8)
            ax.axvline(1.0, color="0.5", lw=0.8, ls=":")
            ax.set_xlabel("compute-time CV (std / mean)")
            ax.set_ylabel("(simulated - closed form) / closed form (%)")
            ax.set_title(title)
            ax.set_xlim(left=-0.15)
        axes[0].legend(list(scen_handles.values()), list(scen_handles), loc="lower left", frameon=False,
                       title="scenario")
        axes[1].legend(list(fam_handles.values()), list(fam_handles), loc="lower left", frameon=False, title="law")
        fig.tight_layout()
        return _save(fig, out_dir, "closed_forms_cv_deviation")


def closed_forms_delay_law(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Tail ``P(D >= d)`` of the relative delay per client: exact chain (lines) vs simulation (markers).

    Reads ``results["delay_distribution"][name]["clients"][k]["exact_pmf" / "empirical_pmf"]``;
    the last pmf bin holds the mass of ``D >= max_delay``.
    """
    plt = _plt()
    import numpy as np

    dd = results.get("delay_distribution") or {}
    if not dd:
        raise ValueError("closed_forms_delay_law: no delay_distribution entry in the results")
    colours = plt.get_cmap("tab10").colors
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(dd), figsize=(3.4 * len(dd), 2.8), squeeze=False)
        for ax, (name, rec) in zip(axes.flat, dd.items()):
            for k, c in enumerate(rec["clients"]):
                colour = colours[k % len(colours)]
                ex = np.asarray(c["exact_pmf"], dtype=float)
                em = np.asarray([np.nan if v is None else v for v in c["empirical_pmf"]], dtype=float)
                d = np.arange(ex.size)
                tail_ex = ex[::-1].cumsum()[::-1]
                tail_em = em[::-1].cumsum()[::-1]
                keep = tail_ex > 1e-7
                ax.plot(d[keep], tail_ex[keep], color=colour, lw=1.0, label=c["name"])
                ok = tail_em > 0
                ax.plot(d[ok], tail_em[ok], "o", color=colour, ms=2.5, mfc="none", mew=0.7)
            ax.plot([], [], "-", color="0.3", lw=1.0, label="exact (CTMC)")
            ax.plot([], [], "o", color="0.3", ms=2.5, mfc="none", mew=0.7, label="simulated")
            ax.set_yscale("log")
            ax.set_xlabel("relative delay $d$ (updates)")
            ax.set_ylabel(r"$P(D_i \geq d)$")
            ax.set_title(f"{name} ({rec['updates']:,} updates)")
            ax.legend(frameon=False, ncol=1)
        fig.tight_layout()
        return _save(fig, out_dir, "closed_forms_delay_law")


def closed_forms_figures(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """All closed-forms figures that the results support; returns every written path."""
    paths = closed_forms_delay_scatter(results, out_dir) + closed_forms_cv_deviation(results, out_dir)
    if results.get("delay_distribution"):
        paths += closed_forms_delay_law(results, out_dir)
    return paths


def pyplot():
    """matplotlib.pyplot with the Agg backend (no display needed)."""
    return _plt()


def save_figure(fig: Any, out_dir: str | Path, stem: str) -> list[Path]:
    """Save ``fig`` as ``<out_dir>/<stem>.png`` and ``.pdf`` (reproducible: no creation date) and close it."""
    return _save(fig, out_dir, stem)

"""The figures of closed forms vs simulation, in the toolkit's one style (:mod:`aflqueue.plots`),
from the saved results dict of :func:`validation.closed_forms.experiment.run_closed_forms`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aflqueue.plots import (GREY, LIGHT_GREY, LINESTYLES, MARKERS, as_array, colour, finite, legend_below,
                            legend_entries, panel_grid, save_figure, styled, subplots, wrap)

__all__ = ["closed_forms_delay_scatter", "closed_forms_cv_deviation", "closed_forms_delay_law", "closed_forms_figures"]


# One marker/colour per service law (by label), stable across figures.
_LAW_ORDER = ("exponential", "deterministic", "gamma cv=0.5", "lognormal cv=0.5", "lognormal cv=1.5",
              "lognormal cv=3", "weibull k=0.7")


_FAMILY_MARKERS = {"exponential": "o", "deterministic": "s", "gamma": "D", "lognormal": "^", "weibull": "X",
                   "pareto": "P"}


def _law_style(label: str, index_hint: int = 0) -> tuple[str, Any]:
    """(marker, colour) of a law label; unknown labels get the next free style."""
    k = _LAW_ORDER.index(label) if label in _LAW_ORDER else len(_LAW_ORDER) + index_hint
    return MARKERS[k % len(MARKERS)], colour(k)


def closed_forms_delay_scatter(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Simulated vs closed-form ``E[D_i]`` (updates), log-log, one panel per scenario.

    Error bars are the 95% confidence intervals; the diagonal is exact agreement. One marker and
    colour per compute-time law. Reads ``results["scenarios"][name]["runs"][k]["comparisons"]``.
    """
    from matplotlib.ticker import NullFormatter

    scen = results["scenarios"]
    names = [n for n, sc in scen.items() if sc.get("runs")]
    if not names:
        raise ValueError("closed_forms_delay_scatter: no scenario with runs in the results")
    nrows, ncols = panel_grid(len(names))
    with styled():
        fig, axes = subplots(nrows, ncols, panel=(2.8, 2.7))
        for ax, name in zip(axes.flat, names):
            lo_all, hi_all = math.inf, 0.0
            for k, run in enumerate(scen[name]["runs"]):
                label = run["law"]["label"]
                rows = [r for r in run["comparisons"] if r["metric"] == "relative_delay"
                        and finite(r["closed_form"]) and finite(r["sim_mean"]) and r["closed_form"] > 0]
                if not rows:
                    continue
                x = np.array([r["closed_form"] for r in rows])
                y = np.array([r["sim_mean"] for r in rows])
                lo = np.array([r["ci"][0] if r["ci"] and finite(r["ci"][0]) else r["sim_mean"] for r in rows])
                hi = np.array([r["ci"][1] if r["ci"] and finite(r["ci"][1]) else r["sim_mean"] for r in rows])
                lo = np.maximum(lo, 0.5 * y)  # a log axis cannot show a non-positive lower bound
                marker, col = _law_style(label, k)
                ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt=marker, color=col, ms=3.5, mfc="none", mew=0.9,
                            elinewidth=0.7, capsize=0, label=label)
                lo_all, hi_all = min(lo_all, x.min(), lo.min()), max(hi_all, x.max(), hi.max())
            if hi_all > 0:
                # at least ~1.5 decades so that log ticks stay readable on narrow ranges
                centre = math.sqrt(lo_all * hi_all)
                half = max(math.sqrt(hi_all / lo_all) * 1.5, 10 ** 0.75)
                span = np.array([centre / half, centre * half])
                ax.plot(span, span, color=GREY, lw=0.8, ls="--", zorder=0, label="simulation = closed form")
                ax.set_xlim(*span)
                ax.set_ylim(*span)
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_minor_formatter(NullFormatter())
            ax.set_title(wrap(scen[name].get("title") or name, 42), fontsize=8)
            ax.set_xlabel("closed-form $E[D_i]$ (updates)")
            ax.set_ylabel("simulated $E[D_i]$ (updates)")
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        handles, labels = legend_entries(axes)
        legend_below(fig, handles, labels, ncol=4, title="compute-time law (bars: 95% confidence intervals)")
        fig.suptitle("Relative delay per client: simulation against the closed form")
        return save_figure(fig, out_dir, "closed_forms_delay_scatter")


def _deviation(row: Mapping[str, Any]) -> tuple[float, float, float]:
    """(relative deviation, lower, upper) in percent, the bounds from the CI."""
    cf = row["closed_form"]
    mid = 100.0 * (row["sim_mean"] - cf) / cf
    if row.get("ci") and finite(row["ci"][0]) and finite(row["ci"][1]):
        return mid, 100.0 * (row["ci"][0] - cf) / cf, 100.0 * (row["ci"][1] - cf) / cf
    return mid, mid, mid


def closed_forms_cv_deviation(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Relative deviation (%) of throughput and of the slowest clients' mean ``E[D]`` vs the CV.

    One colour per single-stage scenario, one marker per law family; the line joins the
    deterministic, exponential and lognormal points (in CV order). Exponential service (CV = 1,
    dotted line) is the exact reference. "Slowest clients" = the client type with the lowest
    compute rate, delay pooled over its clients (task-weighted).
    """
    scen = {n: sc for n, sc in results["scenarios"].items() if not sc.get("multistage") and sc.get("runs")}
    if not scen:
        raise ValueError("closed_forms_cv_deviation: no single-stage scenario in the results")
    with styled():
        fig, axes = subplots(1, 2, panel=(3.7, 3.4))
        axes = axes[0]
        fam_handles: dict[str, Any] = {}
        scen_handles: dict[str, Any] = {}
        for c, (name, sc) in enumerate(scen.items()):
            col = colour(c)
            pts: list[list[tuple[float, float, float, float, str]]] = [[], []]
            for run in sc["runs"]:
                cv = run["law"]["cv"]
                if not finite(cv):
                    continue
                thr = next(r for r in run["comparisons"] if r["metric"] == "throughput")
                slow = min(run["group_comparisons"], key=lambda r: r["rate"])
                for k, row in enumerate((thr, slow)):
                    pts[k].append((float(cv), *_deviation(row), run["law"]["family"]))
            for k, ax in enumerate(axes):
                for cv, mid, lo, hi, fam in pts[k]:
                    ax.errorbar([cv], [mid], yerr=[[mid - lo], [hi - mid]], fmt=_FAMILY_MARKERS.get(fam, "o"),
                                color=col, mfc="none" if fam != "exponential" else col, ms=4.5,
                                mew=0.9, elinewidth=0.8, capsize=1.5)
                    fam_handles.setdefault(fam, ax.plot([], [], _FAMILY_MARKERS.get(fam, "o"), color=GREY,
                                                        mfc="none")[0])
                line = sorted((p for p in pts[k] if p[4] in ("deterministic", "exponential", "lognormal")),
                              key=lambda p: p[0])
                if line:
                    h = ax.plot([p[0] for p in line], [p[1] for p in line], color=col, lw=0.9, alpha=0.8)[0]
                    scen_handles.setdefault(wrap(sc.get("title") or name, 40), h)
        for ax, title in zip(axes, ("throughput", "mean $E[D]$ of the slowest clients")):
            ax.axhline(0.0, color=GREY, lw=0.8)
            ax.axvline(1.0, color=LIGHT_GREY, lw=0.8, ls=":")
            ax.set_xlabel("compute-time CV (std / mean, dimensionless)")
            ax.set_ylabel("deviation from closed form (%)")
            ax.set_title(f"{title}: simulated vs closed form")
            ax.set_xlim(left=-0.15)
        handles = list(scen_handles.values()) + list(fam_handles.values())
        labels = list(scen_handles) + [f"law: {f}" for f in fam_handles]
        legend_below(fig, handles, labels, ncol=2)
        fig.suptitle("Product form is exact at CV = 1 (dotted); other laws bias it")
        return save_figure(fig, out_dir, "closed_forms_cv_deviation")


def closed_forms_delay_law(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Tail ``P(D >= d)`` of the relative delay per client: exact chain (lines) vs simulation (markers).

    Reads ``results["delay_distribution"][name]["clients"][k]["exact_pmf" / "empirical_pmf"]``;
    the last pmf bin holds the mass of ``D >= max_delay``.
    """
    dd = results.get("delay_distribution") or {}
    if not dd:
        raise ValueError("closed_forms_delay_law: no delay_distribution entry in the results")
    with styled():
        fig, axes = subplots(1, len(dd), panel=(3.4, 2.8))
        for ax, (name, rec) in zip(axes.flat, dd.items()):
            for k, c in enumerate(rec["clients"]):
                col = colour(k)
                ex = np.asarray(c["exact_pmf"], dtype=float)
                em = as_array(c["empirical_pmf"])
                d = np.arange(ex.size)
                tail_ex = ex[::-1].cumsum()[::-1]
                tail_em = em[::-1].cumsum()[::-1]
                keep = tail_ex > 1e-7
                ax.plot(d[keep], tail_ex[keep], color=col, lw=1.0, ls=LINESTYLES[k % len(LINESTYLES)],
                        label=f"client {c['name']}")
                ok = tail_em > 0
                ax.plot(d[ok], tail_em[ok], MARKERS[k % len(MARKERS)], color=col, ms=2.5, mfc="none", mew=0.7)
            ax.plot([], [], "-", color=GREY, lw=1.0, label="exact (tagged-task CTMC)")
            ax.plot([], [], "o", color=GREY, ms=2.5, mfc="none", mew=0.7, label="simulated")
            ax.set_yscale("log")
            ax.set_xlabel("relative delay $d$ (updates)")
            ax.set_ylabel(r"tail $P(D_i \geq d)$ (probability)")
            ax.set_title(wrap(f"{rec.get('title') or name} ({rec['updates']:,} updates)", 46), fontsize=8)
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
        fig.suptitle("Law of the relative delay: exact chain vs simulation")
        return save_figure(fig, out_dir, "closed_forms_delay_law")


def closed_forms_figures(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """All closed-forms figures that the results support; returns every written path."""
    paths = closed_forms_delay_scatter(results, out_dir) + closed_forms_cv_deviation(results, out_dir)
    if results.get("delay_distribution"):
        paths += closed_forms_delay_law(results, out_dir)
    return paths

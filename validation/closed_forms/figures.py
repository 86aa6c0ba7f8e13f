"""The figures of closed forms vs simulation, in the toolkit's one style (:mod:`aflqueue.style`),
from the saved results dict of :func:`validation.closed_forms.experiment.run_closed_forms`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from aflqueue.style import (GREY, LIGHT_GREY, LINESTYLES, MARKERS, as_array, colour, finite, legend_below,
                            guide, legend_entries, log_axis, panel_grid, save_figure, styled, subplots)

__all__ = ["closed_forms_delay_scatter", "closed_forms_cv_deviation", "closed_forms_delay_law", "closed_forms_figures"]


# One marker/colour per service law (by label), stable across figures.
_LAW_ORDER = ("exponential", "deterministic", "gamma cv=0.5", "lognormal cv=0.5", "lognormal cv=1.5",
              "lognormal cv=3", "weibull k=0.7")


#: Short panel titles of the committed scenarios (their full descriptions are in the report).
_SHORT = {"example": "example: 5 at rate 1, 5 at 0.1, m = 10",
          "five_types": "five device types, uniform, m = 20",
          "five_types_sqrt": r"five types, $p_i \propto \sqrt{\mu_i}$, m = 20",
          "ms_fifo": "example + FIFO links, FIFO server",
          "ms_delay_links": "example + delay links, FIFO server",
          "ms_delay_server": "example + FIFO links, delay server",
          "small3": "3 clients (rates 1, 0.5, 0.2), m = 4",
          "small_multistage": "2 clients, FIFO links and server, m = 3"}


def _short(name: str, entry: Mapping[str, Any]) -> str:
    """Panel title of a scenario: its short name, else its own title."""
    return _SHORT.get(name) or entry.get("title") or name


def _batches(results: Mapping[str, Any]) -> str:
    b = (results.get("meta") or {}).get("batches")
    return f"{b} batch means of one run" if b else "batch means of one run"


_FAMILY_MARKERS = {"exponential": "o", "deterministic": "s", "gamma": "D", "lognormal": "^", "weibull": "X",
                   "pareto": "P"}


def _law_style(label: str, index_hint: int = 0) -> tuple[str, Any]:
    """(marker, colour) of a law label; unknown labels get the next free style."""
    k = _LAW_ORDER.index(label) if label in _LAW_ORDER else len(_LAW_ORDER) + index_hint
    return MARKERS[k % len(MARKERS)], colour(k)


def closed_forms_delay_scatter(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Simulated over closed-form ``E[D_i]`` per client against the closed form (log), one panel
    per scenario: 1 is exact agreement, and the deviation of each compute-time law reads off the
    vertical axis (a scatter of simulated against closed-form values hides it on the diagonal).

    Error bars are the 95% confidence intervals from the batch means of one long run. One marker
    and colour per compute-time law, the laws side by side around each client's closed form.
    Reads ``results["scenarios"][name]["runs"][k]["comparisons"]``.
    """
    scen = results["scenarios"]
    names = [n for n, sc in scen.items() if sc.get("runs")]
    if not names:
        raise ValueError("closed_forms_delay_scatter: no scenario with runs in the results")
    nrows, ncols = panel_grid(len(names))
    with styled():
        fig, axes = subplots(nrows, ncols, width="double", panel_height=1.75, sharey=True)
        for ax, name in zip(axes.flat, names):
            runs = scen[name]["runs"]
            xs: list[float] = []
            for k, run in enumerate(runs):
                label = run["law"]["label"]
                rows = [r for r in run["comparisons"] if r["metric"] == "relative_delay"
                        and finite(r["closed_form"]) and finite(r["sim_mean"]) and r["closed_form"] > 0]
                if not rows:
                    continue
                x = np.array([r["closed_form"] for r in rows])
                cf = x.copy()
                y = np.array([r["sim_mean"] for r in rows]) / cf
                lo = np.array([r["ci"][0] if r["ci"] and finite(r["ci"][0]) else r["sim_mean"] for r in rows]) / cf
                hi = np.array([r["ci"][1] if r["ci"] and finite(r["ci"][1]) else r["sim_mean"] for r in rows]) / cf
                marker, col = _law_style(label, k)
                dx = 10.0 ** ((k - (len(runs) - 1) / 2) * 0.035)  # laws side by side around each client
                ax.errorbar(x * dx, y, yerr=[y - lo, hi - y], fmt=marker, color=col, ms=2.8, mfc="none", mew=0.7,
                            elinewidth=0.6, capsize=0, label=label)
                xs += list(x)
            ax.axhline(1.0, color=GREY, lw=0.8, ls="--", zorder=0, label="simulation = closed form")
            if xs:
                lo_x, hi_x = min(xs), max(xs)
                pad = max(math.sqrt(hi_x / lo_x) * 1.4, 10 ** 0.6)
                ax.set_xlim(math.sqrt(lo_x * hi_x) / pad, math.sqrt(lo_x * hi_x) * pad)
            log_axis(ax, "x")
            ax.set_title(_short(name, scen[name]))
            ax.set_xlabel("closed-form $E[D_i]$ (updates)")
        for row in axes:
            row[0].set_ylabel("simulated / closed form (ratio)")
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        handles, labels = legend_entries(axes)
        legend_below(fig, handles, labels, ncol=4,
                     title=f"compute-time law; bars: 95% confidence intervals from {_batches(results)}")
        fig.suptitle("Relative delay per client: simulation over the closed form")
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
        fig, axes = subplots(1, 2, width="double", panel_height=2.1)
        axes = axes[0]
        fam_handles: dict[str, Any] = {}
        for c, (name, sc) in enumerate(scen.items()):
            col = colour(c)
            title = _short(name, sc)
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
                                color=col, mfc="none" if fam != "exponential" else col, ms=4, mew=0.9,
                                elinewidth=0.8, capsize=1.5, label=title)
                    fam_handles.setdefault(fam, Line2D([], [], ls="none", marker=_FAMILY_MARKERS.get(fam, "o"),
                                                       color=GREY, mfc="none" if fam != "exponential" else GREY))
                line = sorted((p for p in pts[k] if p[4] in ("deterministic", "exponential", "lognormal")),
                              key=lambda p: p[0])
                if line:
                    guide(ax.plot([p[0] for p in line], [p[1] for p in line], color=col, lw=0.9, alpha=0.8,
                                  label=title)[0])
        for ax, title in zip(axes, ("throughput", "mean $E[D]$ of the slowest clients")):
            ax.axhline(0.0, color=GREY, lw=0.8, label="no deviation")
            ax.axvline(1.0, color=LIGHT_GREY, lw=0.8, ls=":", label="CV = 1: exponential, product form exact")
            ax.set_xlabel("compute-time CV (std / mean)")
            ax.set_ylabel("deviation from closed form (%)")
            ax.set_title(f"{title}: simulated vs closed form")
            ax.set_xlim(left=-0.15)
        handles, labels = legend_entries(axes)
        labels += [f"law: {f}" for f in fam_handles]
        handles += list(fam_handles.values())
        legend_below(fig, handles, labels, ncol=3, title=f"scenario (colour), law (marker); bars: 95% confidence "
                                                         f"intervals from {_batches(results)}")
        fig.suptitle("The product form is exact at CV = 1; other compute-time laws bias it")
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
        fig, axes = subplots(1, len(dd), width="double" if len(dd) > 1 else "single", panel_height=2.0)
        for ax, (name, rec) in zip(axes.flat, dd.items()):
            for k, c in enumerate(rec["clients"]):
                col = colour(k)
                ex = np.asarray(c["exact_pmf"], dtype=float)
                em = as_array(c["empirical_pmf"])
                d = np.arange(ex.size)
                tail_ex = ex[::-1].cumsum()[::-1]
                tail_em = em[::-1].cumsum()[::-1]
                keep = tail_ex > 1e-7
                label = f"client {c['name']}"
                guide(ax.plot(d[keep], tail_ex[keep], color=col, lw=1.0, ls=LINESTYLES[k % len(LINESTYLES)],
                              label=label)[0])
                ok = tail_em > 0
                ax.plot(d[ok], tail_em[ok], MARKERS[k % len(MARKERS)], color=col, ms=2.5, mfc="none", mew=0.7,
                        label=label)
            log_axis(ax, "y")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("relative delay $d$ (updates)")
            ax.set_ylabel(r"tail $P(D_i \geq d)$ (probability)")
            ax.set_title(f"{_short(name, rec)} ({rec['updates']:,} updates)")
        handles, labels = legend_entries(axes)
        keys = [Line2D([], [], color=GREY, lw=1.0), Line2D([], [], ls="none", marker="o", color=GREY, ms=2.5,
                                                           mfc="none", mew=0.7)]
        legend_below(fig, keys + handles, ["exact (tagged-task CTMC): lines", "simulated: markers"] + labels, ncol=5)
        fig.suptitle("Law of the relative delay: exact chain against simulation")
        return save_figure(fig, out_dir, "closed_forms_delay_law")


def closed_forms_figures(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """All closed-forms figures that the results support; returns every written path."""
    paths = closed_forms_delay_scatter(results, out_dir) + closed_forms_cv_deviation(results, out_dir)
    if results.get("delay_distribution"):
        paths += closed_forms_delay_law(results, out_dir)
    return paths

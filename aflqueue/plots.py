"""Every figure of the toolkit is drawn here, from data already computed or saved.

No function here runs an analysis, a simulation or a training: each takes data (the dict saved
next to an analytic figure, a closed-forms results dict, grid or comparison records) and an
output folder, writes the figure as PNG and PDF (file names starting with the figure's family,
e.g. ``closed_forms_``) and returns the paths. :mod:`aflqueue.figures` computes or loads the data
for ``aflqueue figures``; the experiment reports call the record-based figures directly.

Families: analytic (``delay_vs_routing``, ``concurrency_sweep``, ``routing_vs_speed``,
``energy_pareto``), closed forms vs simulation (``closed_forms_*``), validation grid
(``grid_accuracy_*``) and algorithm comparison (``comparison_accuracy_*``).

matplotlib is imported inside the functions (Agg backend) so that ``import aflqueue`` stays light;
:func:`pyplot`, :func:`save_figure` and :data:`STYLE` are the shared style helpers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["STYLE", "pyplot", "save_figure", "closed_forms_delay_scatter", "closed_forms_cv_deviation",
           "closed_forms_delay_law", "closed_forms_figures", "delay_vs_routing_figure", "concurrency_sweep_figure",
           "routing_vs_speed_figure", "energy_pareto_figure", "grid_accuracy_figures", "comparison_accuracy_figure"]

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


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _law_style(label: str, index_hint: int = 0) -> tuple[str, Any]:
    """(marker, colour) of a law label; unknown labels get the next free style."""
    plt = pyplot()
    colours = plt.get_cmap("tab10").colors
    k = _LAW_ORDER.index(label) if label in _LAW_ORDER else len(_LAW_ORDER) + index_hint
    return _MARKERS[k % len(_MARKERS)], colours[k % len(colours)]


def save_figure(fig: Any, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.png`` and ``.pdf`` (no creation date: the same data give the
    same files), close it and return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for p in paths:
        # no creation date in the PDF: regenerating a figure from the same results gives the same file
        fig.savefig(p, bbox_inches="tight", metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    pyplot().close(fig)
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
    plt = pyplot()
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
        return save_figure(fig, out_dir, "closed_forms_delay_scatter")


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
    plt = pyplot()

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
        return save_figure(fig, out_dir, "closed_forms_cv_deviation")


def closed_forms_delay_law(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Tail ``P(D >= d)`` of the relative delay per client: exact chain (lines) vs simulation (markers).

    Reads ``results["delay_distribution"][name]["clients"][k]["exact_pmf" / "empirical_pmf"]``;
    the last pmf bin holds the mass of ``D >= max_delay``.
    """
    plt = pyplot()
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
        return save_figure(fig, out_dir, "closed_forms_delay_law")


def closed_forms_figures(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """All closed-forms figures that the results support; returns every written path."""
    paths = closed_forms_delay_scatter(results, out_dir) + closed_forms_cv_deviation(results, out_dir)
    if results.get("delay_distribution"):
        paths += closed_forms_delay_law(results, out_dir)
    return paths


# --------------------------------------------------------------------------- analytic figures
def delay_vs_routing_figure(data: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """``E[D]`` of a fast and a slow client, and the throughput, against the routing mass on the
    slow half. ``data``: ``slow_mass``, ``delay_fast``, ``delay_slow``, ``mean_delay``,
    ``throughput`` (equal-length lists; delays in updates, throughput in updates per time unit)."""
    plt = pyplot()
    q = data["slow_mass"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    a1.semilogy(q, data["delay_fast"], label="fast client (rate 1)")
    a1.semilogy(q, data["delay_slow"], label="slow client (rate 0.1)")
    a1.semilogy(q, data["mean_delay"], "k--", lw=1, label=r"$\sum_i p_i E[D_i] = m-1$")
    a1.axvline(0.5, color="grey", ls=":", lw=0.8)
    a1.set_xlabel("routing mass on the 5 slow clients")
    a1.set_ylabel(r"relative delay $E[D_i]$ (updates)")
    a1.legend(fontsize=8)
    a2.plot(q, data["throughput"])
    a2.axvline(0.5, color="grey", ls=":", lw=0.8)
    a2.set_xlabel("routing mass on the 5 slow clients")
    a2.set_ylabel(r"throughput $\lambda$ (updates / time)")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.suptitle("Exact analysis, 5 fast + 5 slow clients (10x), m = 10 (dotted: uniform)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_dir, "delay_vs_routing")


def concurrency_sweep_figure(data: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Throughput and proxies against ``m`` for uniform and optimal routing (the U shape of time
    against ``m``). ``data``: ``m``, ``throughput_uniform``, ``time_to_accuracy_{uniform,optimal}``,
    ``wallclock_{uniform,optimal}`` (lists over ``m``), ``m_star_time``, ``m_star_wallclock``."""
    plt = pyplot()
    ms = data["m"]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(12, 3.4))
    a1.plot(ms, data["throughput_uniform"], label="uniform routing")
    a1.set_ylabel(r"throughput $\lambda(m)$")
    a2.plot(ms, data["time_to_accuracy_uniform"], label="uniform routing")
    a2.plot(ms, data["time_to_accuracy_optimal"], label="optimal routing at each m")
    a2.axvline(data["m_star_time"], color="tab:orange", ls=":", lw=1)
    a2.set_ylabel(r"time to accuracy $E[T_\epsilon] \approx K_\epsilon / \lambda$")
    a3.plot(ms, data["wallclock_uniform"], label="uniform routing")
    a3.plot(ms, data["wallclock_optimal"], label="optimal routing at each m")
    a3.axvline(data["m_star_wallclock"], color="tab:orange", ls=":", lw=1)
    a3.set_ylabel(r"wall-clock proxy $W(\tau)$")
    for a in (a1, a2, a3):
        a.set_xlabel("concurrency m")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(f"5 fast + 5 slow clients: the U shape of time against m (optimal m* = {data['m_star_time']} for "
                 f"time to accuracy, {data['m_star_wallclock']} for W)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_dir, "concurrency_sweep")


_OBJECTIVES = {"per-update": ("P1 per-update", "o"), "wallclock": ("P2 wall-clock", "s"),
               "time-to-accuracy": ("P3 time-to-accuracy", "^"), "max-throughput": ("P5 max-throughput", "x")}


def routing_vs_speed_figure(data: Mapping[str, Any], out_dir: str | Path, group: int = 4) -> list[Path]:
    """Optimal ``p_i`` against ``mu_i`` per objective. ``data``: ``rates`` (``n``) and, per objective
    name, its routing (``n``); clients come in consecutive groups of ``group`` equal ones, one point
    per group is drawn."""
    import numpy as np

    plt = pyplot()
    rates = np.asarray(data["rates"], dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for obj, (label, marker) in _OBJECTIVES.items():
        if obj in data:
            pts = np.maximum(np.asarray(data[obj], dtype=float), 1e-6)
            ax.loglog(rates[::group], pts[::group], marker=marker, label=label)
    ax.axhline(1 / rates.size, color="k", ls="--", lw=1, label="uniform (AsyncSGD)")
    ax.set_xlabel(r"client speed $\mu_i$ (tasks / time)")
    ax.set_ylabel(r"routing probability $p_i$ (floor 1e-6)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"Optimal routing against speed (5 types x {group} clients, m = 20)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_dir, "routing_vs_speed")


def energy_pareto_figure(data: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Time to accuracy against energy to accuracy over the trade-off weight ``r`` (P4).
    ``data``: ``weights``, ``time``, ``energy`` (lists over ``r``), ``uniform_time``, ``uniform_energy``."""
    plt = pyplot()
    T, E, w = data["time"], data["energy"], data["weights"]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(T, E, "o-", label="optimum for weight r (r = 0 ... 1)")
    for r, t, e in zip(w[::5], T[::5], E[::5]):
        ax.annotate(f"r={r:.1f}", (t, e), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.plot([data["uniform_time"]], [data["uniform_energy"]], "k*", ms=10, label="uniform (AsyncSGD)")
    ax.set_xlabel(r"time to accuracy $E[T_\epsilon]$")
    ax.set_ylabel(r"energy to accuracy (busy power $\kappa \mu^3$)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Time/energy Pareto front (P4), 5 device types", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_dir, "energy_pareto")


# --------------------------------------------------------------------------- training curves
def _accuracy_band(ax: Any, curves: list[Mapping[str, list]], colour: Any, label: str) -> None:
    """Mean test accuracy over seeds against simulated time, with a 95% t-band clipped to
    ``[0, 1]`` (accuracy lives there; few seeds make t-bands wider). Curves of another length than
    the first (an unfinished run) are left out."""
    import numpy as np

    from .stats import t_quantile

    t = np.asarray(curves[0]["time"])
    A = np.asarray([c["test_accuracy"] for c in curves if len(c["test_accuracy"]) == t.size])
    mean = A.mean(0)
    ax.plot(t, mean, color=colour, label=label, lw=1.4)
    if A.shape[0] > 1:
        h = t_quantile(0.95, A.shape[0] - 1) * A.std(0, ddof=1) / math.sqrt(A.shape[0])
        ax.fill_between(t, np.clip(mean - h, 0, 1), np.clip(mean + h, 0, 1), color=colour, alpha=0.15, lw=0)


def grid_accuracy_figures(records: list[Mapping[str, Any]], out_dir: str | Path) -> list[tuple[Path, str]]:
    """Validation grid: accuracy against simulated time (mean and 95% band over seeds), per routing
    for each (data set, algorithm), one panel per (speeds, partition). Returns ``[(png, caption)]``."""
    from collections import defaultdict

    from .experiments.grid import ROUTING_LABELS, ROUTINGS

    plt = pyplot()
    made: list[tuple[Path, str]] = []
    by: dict[tuple, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        c = r["cell"]
        by[(c["dataset"], c["algorithm"])][(c["speed"], c["partition"], c["routing"])].append(r)
    colors = {"uniform": "k", "per-update": "tab:blue", "wallclock": "tab:red", "wallclock-eta": "tab:purple",
              "time-to-accuracy": "tab:orange", "max-throughput": "tab:green"}
    order = ("iid", "dir0.5", "dir0.1")
    for (dataset, algorithm), cells in sorted(by.items()):
        scen = sorted({(s, p) for s, p, _ in cells})
        speeds = sorted({s for s, _ in scen})
        parts = sorted({p for _, p in scen}, key=lambda x: order.index(x) if x in order else 9)
        fig, axes = plt.subplots(len(speeds), len(parts), figsize=(4.2 * len(parts), 3.2 * len(speeds)),
                                 squeeze=False, sharey=True)
        for sp, pa in scen:
            ax = axes[speeds.index(sp)][parts.index(pa)]
            target = next(rr for (s2, p2, _), v in cells.items() if (s2, p2) == (sp, pa) for rr in v)["target"]
            for routing in ROUTINGS:
                runs = cells.get((sp, pa, routing))
                if runs:
                    _accuracy_band(ax, [r["measured"]["curves"] for r in runs], colors[routing],
                                   ROUTING_LABELS[routing])
            ax.axhline(target, color="grey", ls=":", lw=0.8)
            ax.set_title(f"{sp}, {pa}", fontsize=9)
            ax.set_ylim(0, 1)
            ax.set_xlabel("simulated time")
            ax.grid(alpha=0.3)
        for row in axes:
            row[0].set_ylabel("test accuracy")
        axes[0][0].legend(fontsize=7, loc="lower right")
        fig.suptitle(f"{dataset}: {algorithm}, accuracy against simulated time (mean, 95% band over seeds)", fontsize=10)
        fig.tight_layout()
        paths = save_figure(fig, out_dir, f"grid_accuracy_{dataset}_{algorithm}")
        made.append((Path(paths[0]), f"{dataset}, {algorithm}: test accuracy against simulated time per routing"))
    return made


def comparison_accuracy_figure(records: list[Mapping[str, Any]], out_dir: str | Path,
                               preset: str) -> list[tuple[Path, str]]:
    """Algorithm comparison: test accuracy against simulated time per algorithm, every seed as a
    thin line and the mean over seeds bold (a t-band over a handful of seeds would cover most of
    ``[0, 1]``; the report gives the bootstrap intervals), the preset's target dotted.
    ``records``: the comparison's run records (``algorithm``, ``seed``, ``curve``, ``target``).
    Returns ``[(png, caption)]`` (empty without records)."""
    import numpy as np

    if not records:
        return []
    plt = pyplot()
    colours = plt.get_cmap("tab10").colors
    algorithms = list(dict.fromkeys(r["algorithm"] for r in records))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        for k, alg in enumerate(algorithms):
            colour = colours[k % len(colours)]
            curves = [r["curve"] for r in records if r["algorithm"] == alg]
            for c in curves:
                ax.plot(c["time"], c["test_accuracy"], color=colour, lw=0.6, alpha=0.45)
            t = curves[0]["time"]
            A = np.asarray([c["test_accuracy"] for c in curves if len(c["test_accuracy"]) == len(t)])
            ax.plot(t, A.mean(0), color=colour, lw=1.8, label=f"{alg} ({A.shape[0]} seeds)")
        ax.axhline(records[0]["target"], color="grey", ls=":", lw=0.8)
        ax.set_ylim(0, 1)
        ax.set_xlabel("simulated time")
        ax.set_ylabel("test accuracy")
        ax.legend(loc="best", frameon=False)
        ax.set_title(f"{preset}: accuracy against simulated time (bold: mean over seeds)")
        fig.tight_layout()
        paths = save_figure(fig, out_dir, f"comparison_accuracy_{preset}")
    return [(Path(paths[0]), f"{preset}: test accuracy against simulated time per algorithm (thin: one seed; "
                             f"bold: mean over seeds)")]


# --------------------------------------------------------------------------- paper-scale validation
#: Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
OKABE_ITO = {"asyncsgd": "#000000", "p2": "#E69F00", "p3": "#0072B2", "op": "#D55E00", "p2-pmin4": "#009E73",
             "p2-clip4": "#CC79A7"}


def _band(curves: list[list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and a seeded percentile-bootstrap 95% band of the mean, per time point."""
    A = np.asarray(curves, dtype=float)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, A.shape[0], size=(2000, A.shape[0]))
    boot = A[idx].mean(axis=1)
    return A.mean(0), np.quantile(boot, 0.025, axis=0), np.quantile(boot, 0.975, axis=0)


def paper_figures(preset: Any, selection: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                  summary: Mapping[str, Any], out_dir: str | Path) -> list[tuple[Path, str]]:
    """Accuracy against simulated time (bootstrap bands), per-seed paired time ratios, and
    predicted against measured time ratios; PNG and PDF, returns ``[(png path, caption)]``."""
    from .experiments.paper import SAFEGUARDS, TREATMENTS, Scenario, run_times

    plt = pyplot()
    out = Path(out_dir)
    made: list[tuple[Path, str]] = []
    scen = summary["scenarios"]
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by[Scenario(**r["scenario"]).id][r["treatment"]].append(r)
    names = [*preset.treatments, *preset.safeguards]
    # 1. accuracy against simulated time
    ncol = len(preset.partitions)
    nrow = int(math.ceil(len(scen) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False, sharey="row")
    for k, sc in enumerate(scen):
        ax = axes[k // ncol][k % ncol]
        for name in names:
            runs = [r for r in by[sc["scenario"]].get(name, []) if len(r["measured"]["curves"]["time"]) > 1]
            if not runs:
                continue
            t = np.asarray(runs[0]["measured"]["curves"]["time"])
            curves = [r["measured"]["curves"]["test_accuracy"] for r in runs if
                      len(r["measured"]["curves"]["test_accuracy"]) == t.size]
            if not curves:
                continue
            mean, lo, hi = _band(curves)
            ax.plot(t, mean, color=OKABE_ITO.get(name, "grey"), lw=1.3,
                    label=(TREATMENTS.get(name) or SAFEGUARDS[name]).label)
            ax.fill_between(t, lo, hi, color=OKABE_ITO.get(name, "grey"), alpha=0.15, lw=0)
        ax.axhline(sc["target"], color="grey", ls=":", lw=0.8)
        ax.set_title(f"{sc['dataset']}, {sc['partition']} (n = {sc['clients']})", fontsize=9)
        ax.set_xlabel("simulated time (time units)")
        if k % ncol == 0:
            ax.set_ylabel("test accuracy")
    for k in range(len(scen), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.03 * math.ceil(len(labels) / 3)))
    fig.tight_layout()
    p = save_figure(fig, out, f"{preset.name}_accuracy")[0]
    made.append((p, "Test accuracy against simulated time: mean over evaluation seeds with a 95% bootstrap band; "
                    "dotted line: the target"))
    # 2. per-seed paired time ratios
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(scen), 3.0))
    offs = {n: (i - (len(names) - 2) / 2) * 0.14 for i, n in enumerate(n for n in names if n != "asyncsgd")}
    for k, sc in enumerate(scen):
        base = {r["seed"]: r for r in by[sc["scenario"]].get("asyncsgd", [])}
        for name, dx in offs.items():
            rr = {r["seed"]: r for r in by[sc["scenario"]].get(name, [])}
            ratios = [run_times(rr[s], sc["target"])[0] / run_times(base[s], sc["target"])[0] for s in rr if s in base]
            if not ratios:
                continue
            ax.scatter(np.full(len(ratios), k + dx), ratios, s=9, color=OKABE_ITO.get(name, "grey"), alpha=0.7,
                       label=(TREATMENTS.get(name) or SAFEGUARDS[name]).label if k == 0 else None)
            row = next((r for r in sc["rows"] if r["treatment"] == name), None)
            if row and row["time_ratio"] and row["time_ratio"]["ci"]:
                lo, hi = row["time_ratio"]["ci"]
                ax.errorbar(k + dx, row["time_ratio"]["mean"], yerr=[[row["time_ratio"]["mean"] - lo],
                                                                    [hi - row["time_ratio"]["mean"]]],
                            color=OKABE_ITO.get(name, "grey"), fmt="_", ms=10, lw=1.2, capsize=2)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.axhline(preset.criterion_ratio, color="grey", ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(scen)), [f"{sc['dataset']}\n{sc['partition']}" for sc in scen], fontsize=8)
    ax.set_ylabel("time to target, treatment / AsyncSGD")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    p = save_figure(fig, out, f"{preset.name}_time_ratios")[0]
    made.append((p, f"Per-seed paired time-to-target ratios (dots), geometric mean and 95% log-scale interval "
                    f"(bars); dashed: the criterion {preset.criterion_ratio}, solid: no gain"))
    # 3. predicted against measured
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    for sc in scen:
        for r in sc["rows"]:
            if r["treatment"] == "asyncsgd" or not r["time_ratio"] or not r["predicted_time_ratio"]:
                continue
            ax.scatter(r["predicted_time_ratio"]["mean"], r["time_ratio"]["mean"], s=18,
                       color=OKABE_ITO.get(r["treatment"], "grey"), marker="o" if sc["dataset"] == "digits" else "s")
    lims = [0.05, 5]
    ax.plot(lims, lims, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted time ratio (proxy T_eps)")
    ax.set_ylabel("measured time ratio (geometric mean)")
    fig.tight_layout()
    p = save_figure(fig, out, f"{preset.name}_predicted_vs_measured")[0]
    made.append((p, "Predicted (proxy) against measured time-to-target ratio vs AsyncSGD, one point per scenario "
                    "and treatment (circles: digits, squares: MNIST-1D); diagonal: perfect prediction"))
    return made




# --------------------------------------------------------------------------- approximation for general service
#: Okabe-Ito colours of the two analyses compared with simulation.
_ANALYSIS_COLOURS = {"product_form": ("product form (PF)", "#E69F00"), "approx": ("approximation", "#0072B2")}
_ERROR_FLOOR = 1e-3  # |error| in % below this is drawn at it (a log axis has no zero)


def approx_error_figure(results: Mapping[str, Any], out_dir: str | Path) -> list[tuple[Path, str]]:
    """Approximation vs product form against simulation, per compute-time cv, over the main grid:
    |relative error| of the throughput (left) and of the worst type's mean relative delay (right),
    as box plots side by side (box: quartiles, line: median, whiskers: 5th-95th percentile,
    dots: beyond), log scale, with the 3% criterion dashed. ``results``: the assembled results
    of :func:`aflqueue.experiments.approx.assemble`. Returns ``[(png, caption)]``."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from .experiments.approx import CRITERION, LAW_OF_CV, main_grid

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


__all__ += ["approx_error_figure"]

"""The figures any researcher draws from their own results, in the one style of :mod:`aflqueue.style`.

No function here runs an analysis, a simulation or a training: each takes data (a sweep's dict,
run groups, a schedule summary) and an output folder, writes the figure as PNG and PDF (file
names starting with the figure's family) at the size a paper prints it, and returns the paths.
:mod:`aflqueue.figures` computes the data of ``aflqueue figures``.

Families: sweeps of a system (``sweep_*``; the built-in analytic figures ``delay_vs_routing``,
``concurrency_sweep``, ``routing_vs_speed`` and ``energy_pareto`` are sweeps of the bundled
examples), a researcher's own runs (``runs_figure``) and schedules (``schedule_*``). A study's own
figures live in its folder (``validation/<study>/figures.py``, in the source repository) and use
the same style module.

Every axis is labelled with its unit, legends sit below the panels, each panel carries one
message and its title says it in words (no internal names); a figure says whether its numbers
come from the exact analysis or from the approximation (non-exponential laws, non-product-form
stages), and a band over seeds is drawn from three seeds or more only (every seed otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .style import (ACCURACY, GREY, LIGHT_GREY, LINESTYLES, LOSS, MARKERS, MIN_BAND_SEEDS, SIM_TIME, UPDATES,
                    as_array, band_note, colour, few_points_marker, finite, guide, human, legend_below, legend_entries,
                    log_axis, panel_grid, save_figure, styled, subplots, unlabelled)

__all__ = ["sweep_concurrency_figure", "sweep_routing_figure", "sweep_pareto_figure", "sweep_delay_routing_figure",
           "runs_figure", "schedule_timeline_figure", "schedule_delay_figure", "schedule_share_figure"]


# --------------------------------------------------------------------------- sweeps of a system
_PROXY_PANELS = (("per_update", "per-update", "P1 per-update $U$", "proxy $U$ (loss units)"),
                 ("wallclock", "wall-clock", "P2 wall-clock $W$", "proxy $W$ (loss units)"),
                 ("time_to_accuracy", "time-to-accuracy", r"P3 time to accuracy",
                  r"$E[T_\epsilon]$ (time units)"),
                 ("energy", "energy", "energy to accuracy", r"energy $P\,E[T_\epsilon]$ (energy units)"))

#: Colours of the sweep figures' series, one meaning each.
_UNIFORM, _BEST, _OPTIMUM, _FAST, _SLOW = "black", colour(0), colour(1), colour(2), colour(3)


def _system_name(data: Mapping[str, Any]) -> str:
    rates = np.asarray(data["rates"])
    return (f"{data.get('name') or 'system'}: {rates.size} clients, speeds {rates.min():g} to {rates.max():g} "
            "tasks / time unit")


def _analysis(data: Mapping[str, Any]) -> str:
    """"Exact analysis" or "Approximate analysis": whether the sweep's system is product form
    (exponential compute times, product-form stages; ``settings.exact`` of the sweep)."""
    exact = (data.get("settings") or {}).get("exact", True)
    return "Exact analysis" if exact else "Approximate analysis (not product form)"


def sweep_concurrency_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "sweep_concurrency",
                             objectives: Sequence[str] | None = None) -> list[Path]:
    """Throughput, relative delays and each proxy against the concurrency ``m``: uniform routing
    (AsyncSGD) and the best routing at each ``m``, the optimum ``m*`` marked (one panel each).
    ``data``: :meth:`aflqueue.sweep.SweepResult.to_dict`; ``objectives`` limits the proxy panels."""
    rows = data["rows"]
    ms = np.array([r["m"] for r in rows], dtype=float)
    objs = [o for o in data["objectives"] if objectives is None or o in objectives]
    panels = [p for p in _PROXY_PANELS if p[1] in objs]
    n_pan = 2 + len(panels)
    nrows, ncols = panel_grid(n_pan, 2 if n_pan <= 4 else 3)
    mk = few_points_marker(ms.size)
    with styled():
        fig, axes = subplots(nrows, ncols, width="double", panel_height=1.75)
        flat = list(axes.flat)
        a = flat[0]
        a.plot(ms, as_array([r["throughput_uniform"] for r in rows]), color=_UNIFORM, marker=mk,
               label="uniform routing (AsyncSGD)")
        title = "throughput, uniform routing"
        if "max-throughput" in data["optima"]:
            o = data["optima"]["max-throughput"]
            prof = [(r["m"], r.get("throughput_optimal")) for r in rows if finite(r.get("throughput_optimal"))]
            if prof:
                a.plot([p[0] for p in prof], [p[1] for p in prof], color=_BEST, ls="--", marker=mk,
                       label="best routing at each m")
            a.plot([o["concurrency"]], [o["objective_value"]], "*", color=_OPTIMUM, ms=8, label="optimum m* of the objective")
            title = f"throughput, P5 m* = {o['concurrency']}"
        a.set_title(title)
        a.set_ylabel(r"throughput $\lambda$ (updates / time unit)")
        a = flat[1]
        a.plot(ms, as_array([r["relative_delay_slowest_uniform"] for r in rows]), color=_SLOW, ls="--", marker=mk,
               label="slowest client, uniform routing")
        a.plot(ms, as_array([r["relative_delay_fastest_uniform"] for r in rows]), color=_FAST, ls="-.", marker=mk,
               label="fastest client, uniform routing")
        a.plot(ms, as_array([r["mean_relative_delay_uniform"] for r in rows]), color=GREY, ls=":", marker=mk,
               label=r"mean $\Sigma_i\, p_i E[D_i] = m - 1$ (any routing)")
        a.set_title("relative delay (staleness)")
        a.set_ylabel(r"relative delay $E[D_i]$ (updates)")
        for ax, (key, obj, title, ylabel) in zip(flat[2:], panels):
            ax.plot(ms, as_array([r.get(f"{key}_uniform") for r in rows]), color=_UNIFORM, marker=mk,
                    label="uniform routing (AsyncSGD)")
            prof = [(r["m"], r.get(f"{key}_optimal")) for r in rows if finite(r.get(f"{key}_optimal"))]
            if prof:
                ax.plot([p[0] for p in prof], [p[1] for p in prof], color=_BEST, ls="--", marker=mk,
                        label="best routing at each m")
            o = data["optima"][obj]
            ax.plot([o["concurrency"]], [o["objective_value"]], "*", color=_OPTIMUM, ms=8,
                    label="optimum m* of the objective")
            ax.set_title(f"{title}, m* = {o['concurrency']}")
            ax.set_ylabel(ylabel)
            vals = as_array([r.get(f"{key}_uniform") for r in rows] + [p[1] for p in prof])
            vals = vals[np.isfinite(vals) & (vals > 0)]
            if vals.size and vals.max() / vals.min() > 30:
                log_axis(ax, "y")
        for ax in flat[:n_pan]:
            ax.set_xlabel("concurrency m (tasks in flight)")
            if ms.max() / max(ms.min(), 1) > 50:
                log_axis(ax, "x")
        for ax in flat[n_pan:]:
            ax.set_visible(False)
        legend_below(fig, *legend_entries(axes), ncol=3)
        fig.suptitle(f"{_analysis(data)} against concurrency, {_system_name(data)}")
        return save_figure(fig, out_dir, stem)


def _dodge(k: int, K: int, span_decades: float) -> float:
    """Multiplicative offset of the ``k``-th of ``K`` series on a log axis, so that series with
    equal values stay visible side by side (a shift of 2.5% of the axis per series)."""
    return float(10.0 ** ((k - (K - 1) / 2) * 0.025 * max(span_decades, 0.3)))


def sweep_routing_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "sweep_routing_vs_speed",
                         objectives: Sequence[str] | None = None) -> list[Path]:
    """Optimal routing ``p_i`` against client speed ``mu_i`` for each objective (at its optimum
    ``m*``): the line through the mean ``p`` of each speed, one open marker per client; series
    with equal routings are shifted side by side (and the legend says which are equal)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator  # lazy: matplotlib

    rates = np.asarray(data["rates"], dtype=float)
    speeds = np.unique(rates)
    optima = {obj: o for obj, o in data["optima"].items() if objectives is None or obj in objectives}
    floor = 1e-6
    routes = {obj: np.maximum(np.asarray(o["routing"], dtype=float), floor) for obj, o in optima.items()}
    span = float(np.log10(speeds.max() / speeds.min())) if speeds.size > 1 else 0.3
    clipped = any(np.any(np.asarray(o["routing"], dtype=float) < floor) for o in optima.values())
    with styled():
        fig, axes = subplots(1, 1, width="single", panel_height=2.3)
        ax = axes[0][0]
        for k, (obj, p) in enumerate(routes.items()):
            col, mk, ls = colour(k), MARKERS[k % len(MARKERS)], LINESTYLES[k % len(LINESTYLES)]
            same = [human(o2).split(" ")[0] for o2, p2 in routes.items() if o2 != obj
                    and np.max(np.abs(np.log(p2) - np.log(p))) < 0.05]
            label = f"{human(obj)} (m* = {optima[obj]['concurrency']})" + (f", ≈ {', '.join(same)}" if same else "")
            dx = _dodge(k, len(routes), span)
            ax.plot(rates * dx, p, mk, color=col, mfc="none", ls="none", ms=3, alpha=0.8, label=label)
            ax.plot(speeds * dx, [p[rates == s].mean() for s in speeds], color=col, ls=ls, marker=mk, ms=3.5,
                    label=label)
        ax.axhline(1 / rates.size, color="black", ls="--", lw=0.9, label=f"uniform (AsyncSGD), p = 1/{rates.size}")
        log_axis(ax, "both")
        gaps = np.diff(np.log10(speeds)) / max(span, 1e-9) if speeds.size > 1 else np.array([1.0])
        if speeds.size <= 8 and gaps.min() > 0.12:  # few, well-spread speeds: tick exactly at them
            ax.xaxis.set_major_locator(FixedLocator(speeds))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(r"client speed $\mu_i$ (tasks / time unit)")
        ax.set_ylabel(r"routing probability $p_i$ (share)")
        ax.set_title("routing of each objective's optimum" + (" (p < 1e-6 drawn at 1e-6)" if clipped else ""))
        legend_below(fig, *legend_entries(axes), ncol=1,
                     title="objective (line: mean per speed, open markers: clients)")
        fig.suptitle(_system_name(data))
        return save_figure(fig, out_dir, stem)


def sweep_pareto_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "sweep_pareto") -> list[Path]:
    """Time to accuracy against energy to accuracy along the trade-off weight ``r`` (P4), and the
    uniform routing (AsyncSGD)."""
    pf = data["pareto"]
    T, E, w, ms = pf["time"], pf["energy"], pf["weights"], pf["concurrency"]
    with styled():
        fig, axes = subplots(1, 1, width="single", panel_height=2.3)
        ax = axes[0][0]
        ax.plot(T, E, "o-", color=colour(0), mfc="none", label="optimum at trade-off weight r")
        vals_t, vals_e = as_array(T), as_array(E)
        if np.nanmax(vals_t) / np.nanmin(vals_t) > 5 or np.nanmax(vals_e) / np.nanmin(vals_e) > 5:
            log_axis(ax, "both")
        if finite(pf.get("uniform_time")) and finite(pf.get("uniform_energy")):
            ax.plot([pf["uniform_time"]], [pf["uniform_energy"]], "*", color="black", ms=8,
                    label=f"uniform routing (AsyncSGD), m = {pf.get('uniform_concurrency')}")
        ax.margins(0.12)
        # the two ends named inside the panel: the fastest (r = 0) to its right, the most frugal to its left
        ends = ((0, f"r = {w[0]:g}: fastest, m = {ms[0]}", (5, 0), "left"),
                (len(w) - 1, f"r = {w[-1]:g}: least energy, m = {ms[-1]}", (0, 7), "right"))
        for i, text, off, ha in ends if len(w) > 1 else ends[:1]:
            ax.annotate(text, (T[i], E[i]), textcoords="offset points", xytext=off, ha=ha, va="bottom", fontsize=6.5)
        ax.set_xlabel(r"time to accuracy $E[T_\epsilon]$ (time units)")
        ax.set_ylabel(r"energy to accuracy (energy units)")
        ax.set_title(r"time/energy Pareto front (P4), busy power $\kappa\mu^3$")
        legend_below(fig, *legend_entries(axes), ncol=1)
        fig.suptitle(_system_name(data))
        return save_figure(fig, out_dir, stem)


def sweep_delay_routing_figure(data: Mapping[str, Any], out_dir: str | Path,
                               stem: str = "sweep_delay_vs_routing") -> list[Path]:
    """Relative delays of the fastest and slowest client and the throughput as routing mass moves
    to the slower clients, at the system's concurrency; the uniform routing dotted."""
    d = data["delay_routing"]
    q = np.asarray(d["slow_mass"])
    with styled():
        fig, axes = subplots(1, 2, width="double", panel_height=2.0)
        a1, a2 = axes[0]
        a1.plot(q, d["delay_slow"], color=_SLOW, ls="--", label=f"slowest client (rate {d['slow_rate']:g})")
        a1.plot(q, d["delay_fast"], color=_FAST, ls="-.", label=f"fastest client (rate {d['fast_rate']:g})")
        a1.plot(q, d["mean_delay"], color=GREY, ls=":", lw=1, label=r"mean $\Sigma_i\, p_i E[D_i] = m - 1$")
        log_axis(a1, "y")
        a1.set_ylabel(r"relative delay $E[D_i]$ (updates)")
        a1.set_title("relative delay of the fastest and slowest client")
        a2.plot(q, d["throughput"], color=colour(0), label=r"throughput $\lambda$")
        a2.set_ylabel(r"throughput $\lambda$ (updates / time unit)")
        a2.set_title("throughput")
        for a in (a1, a2):
            a.axvline(d["uniform_mass"], color=LIGHT_GREY, ls=":", lw=1, label="uniform routing")
            a.set_xlabel("routing mass on the slowest client (share)" if d["slow_clients"] == 1 else
                         f"routing mass on the {d['slow_clients']} slower clients (share)")
        legend_below(fig, *legend_entries(axes), ncol=3)
        fig.suptitle(f"{_analysis(data)} at m = {d['concurrency']}, {_system_name(data)}")
        return save_figure(fig, out_dir, stem)


# --------------------------------------------------------------------------- a researcher's own runs
def runs_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "runs_curves") -> list[Path]:
    """Accuracy and loss against simulated time and against updates for groups of runs (one
    panel each), legends from what differs between the groups' configurations. A group of at
    least three seeds is drawn as its mean with the 95% bootstrap band of the mean; a smaller
    group as its mean with every seed thin (``per_seed`` curves of the data) or, without them, its
    mean alone; curves of few evaluations carry a marker at each, and every curve is drawn as
    steps (a run's value holds until its next evaluation). ``data``:
    :func:`aflqueue.runs.curves_data` (each band may hold ``per_seed``: one curve per seed)."""
    groups = data["groups"]
    panels = (("time", "accuracy", SIM_TIME, ACCURACY, "accuracy against simulated time"),
              ("updates", "accuracy", UPDATES, ACCURACY, "accuracy against updates"),
              ("time", "loss", SIM_TIME, LOSS, "loss against simulated time"),
              ("updates", "loss", UPDATES, LOSS, "loss against updates"))
    counts = [len(g["seeds"]) for g in groups]
    with styled():
        fig, axes = subplots(2, 2, width="double", panel_height=1.9)
        for ax, (axis, metric, xlabel, ylabel, title) in zip(axes.flat, panels):
            scale = 100.0 if metric == "accuracy" else 1.0
            for k, g in enumerate(groups):
                c = g[axis]
                x = np.asarray(c["x"], dtype=float)
                if not x.size:
                    continue
                col, ls, mk = colour(k), LINESTYLES[k % len(LINESTYLES)], few_points_marker(x.size, MARKERS[k % 8])
                band, n = c[metric], len(g["seeds"])
                # a run's value holds from one evaluation to the next (aflqueue.runs reads the model as it
                # stood at each point): steps, not straight lines between evaluations
                if n >= MIN_BAND_SEEDS and band.get("lo") is not None:
                    poly = ax.fill_between(x, scale * as_array(band["lo"]), scale * as_array(band["hi"]), color=col,
                                           alpha=0.18, lw=0, step="post", label=g["legend"])
                    poly.set_gid(f"seed-band:{n}")
                elif n > 1 and band.get("per_seed"):
                    for curve in band["per_seed"]:
                        ax.plot(x, scale * as_array(curve), color=col, ls=ls, lw=0.6, alpha=0.55, marker=mk, ms=2,
                                mfc="none", gid="per-seed", drawstyle="steps-post", label=g["legend"])
                ax.plot(x, scale * as_array(band["mean"]), color=col, ls=ls, marker=mk, ms=3, drawstyle="steps-post",
                        label=g["legend"])
            if metric == "accuracy" and data.get("target") is not None:
                ax.axhline(100 * data["target"], color=GREY, ls=":", lw=0.8,
                           label=f"target accuracy ({100 * data['target']:.0f}%)")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(title)
        each_seed = all(g[a][m].get("per_seed") for g in groups for a in ("time", "updates")
                        for m in ("accuracy", "loss") if 1 < len(g["seeds"]) < MIN_BAND_SEEDS)
        note = band_note(counts, each_seed=each_seed)
        title = data.get("legend_title") or "runs"
        legend_below(fig, *legend_entries(axes), ncol=3, title=f"{title}; {note}; each value holds until the next "
                                                                 "evaluation")
        fig.suptitle(data.get("title") or "Training curves")
        return save_figure(fig, out_dir, stem)


# --------------------------------------------------------------------------- schedules
def schedule_timeline_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "schedule_timeline") -> list[Path]:
    """Tasks per client over simulated time -- the task in service (bar) and how many wait in the
    client's queue (shaded height) -- and, below, how many of the ``m`` tasks in flight wait,
    compute or travel at each moment. ``data``: ``timeline`` of :func:`aflqueue.schedule.schedule_data`."""
    tl = data["timeline"]
    lanes = tl["clients"]
    t0, t1 = tl["window"]
    states = (("queue", "waiting in a client's queue", colour(3)), ("service", "in service (computing)", colour(0)),
              ("transit", "in transit (links, central server)", colour(4)))
    top_h = max(1.5, 0.22 * len(lanes))
    with styled():
        fig, axes = subplots(2, 1, width="double", panel_height=(top_h + 1.4) / 2, sharex=True,
                             gridspec_kw={"height_ratios": [top_h, 1.4]})
        ax = axes[0][0]
        wmax = max([max(w["count"]) for w in tl["waiting"].values() if w["count"]] + [1])
        for lane, i in enumerate(lanes):
            segs = tl["segments"]["service"][str(i)]
            if segs:
                ax.broken_barh([(a, b - a) for a, b in segs], (lane - 0.42, 0.42), facecolors=colour(0),
                               edgecolors="none", label=states[1][1])
            w = tl["waiting"][str(i)]
            if w["time"]:
                tt = np.asarray(w["time"] + [t1])
                cc = np.asarray(w["count"] + w["count"][-1:], dtype=float)
                ax.fill_between(tt, lane + 0.02, lane + 0.02 + 0.4 * cc / wmax, step="post", color=states[0][2], lw=0,
                                label=states[0][1])
        ax.set_yticks(range(len(lanes)), [f"{tl['names'][i]} (μ = {tl['rates'][i]:g})" for i in lanes],
                      fontsize=6.5 if len(lanes) > 12 else 7)
        ax.set_ylim(len(lanes) - 0.5, -0.5)
        ax.set_ylabel("client (μ: tasks / time unit)")
        ax.set_xlabel(SIM_TIME)
        ax.tick_params(labelbottom=True)
        ax.set_title(f"per client: the task in service (bar) and the tasks waiting (height, up to {wmax})")
        ax.grid(False, axis="y")
        b = axes[1][0]
        cnt = tl["counts"]
        t = np.asarray(cnt["time"] + [t1], dtype=float)
        # a state that never occurs (no links: nothing in transit) is neither drawn nor in the legend
        present = [(k, lab, c) for k, lab, c in states if k == "service" or max(cnt[k] or [0]) > 0]
        stack = [np.asarray(cnt[k] + cnt[k][-1:], dtype=float) for k, _, _ in present]
        b.stackplot(t, *stack, step="post", colors=[c for _, _, c in present], labels=[lab for _, lab, _ in present],
                    lw=0)
        b.set_ylabel("tasks in flight (count)")
        b.set_xlabel(SIM_TIME)
        b.set_ylim(0, tl["concurrency"] * 1.05)
        b.set_title(f"all clients: the m = {tl['concurrency']} tasks in flight, by state")
        b.set_xlim(t0, t1)
        legend_below(fig, *legend_entries(axes), ncol=3)
        shown = "" if len(lanes) == tl["n_clients"] else f" ({len(lanes)} of {tl['n_clients']} clients shown)"
        fig.suptitle(f"Schedule from t = {t0:.4g} to {t1:.4g} (time units){shown}")
        return save_figure(fig, out_dir, stem)


def schedule_delay_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "schedule_delays") -> list[Path]:
    """Per-client histograms of the relative delay (updates) with the empirical mean, the
    closed-form mean ``E[D_i]`` (named an approximation when the system is not product form) and,
    where available, the exact law drawn on top. ``data``: ``delays`` of
    :func:`aflqueue.schedule.schedule_data`; whether the closed form is exact is read from
    ``delays.closed_form_exact`` when present, else from its note."""
    dl = data["delays"]
    clients = dl["clients"]
    exact_mean = dl.get("closed_form_exact")
    if exact_mean is None:
        exact_mean = "approximation" not in (dl.get("note") or "")
    cf_label = "closed-form mean $E[D_i]$" if exact_mean else "approximate mean $E[D_i]$ (not product form)"
    nrows, ncols = panel_grid(len(clients), 2 if len(clients) <= 4 else 3 if len(clients) <= 9 else 4)
    with styled():
        fig, axes = subplots(nrows, ncols, width="double" if ncols > 1 else "single", panel_height=1.5)
        for ax, c in zip(axes.flat, clients):
            counts = np.asarray(c["counts"], dtype=float)
            total = counts.sum()
            ax.set_xlabel("relative delay (updates)")
            ax.set_ylabel("share (fraction)")
            if total == 0:
                ax.set_title(f"{c['name']}: no update")
                unlabelled(ax.bar([0], [0], width=1.0, color=LIGHT_GREY)[0], "no update: the title says so")
                continue
            hi = int(c["display_max"])
            shown = counts[: hi + 1].copy()
            shown[-1] += counts[hi + 1:].sum()  # last bar: D >= hi
            d = np.arange(hi + 1)
            ax.bar(d, shown / total, width=1.0, color=LIGHT_GREY, alpha=0.6, lw=0, label="simulated share")
            if c.get("exact_pmf") is not None:
                pmf = as_array(c["exact_pmf"])
                ex = pmf[: hi + 1].copy()
                ex[-1] += np.nansum(pmf[hi + 1:])
                # a staircase over the bars: each delay's flat step is its value (no markers needed)
                guide(ax.step(d, ex, where="mid", color=colour(0), lw=1.0, label="exact law (CTMC)")[0])
            ax.axvline(c["mean"], color="black", lw=1.0, label="simulated mean")
            if c.get("closed_form_mean") is not None:
                ax.axvline(c["closed_form_mean"], color=colour(1), lw=1.2, ls="--", label=cf_label)
            ax.set_title(f"{c['name']} (μ = {c['rate']:g}, p = {c['p']:.3g})")
        for ax in list(axes.flat)[len(clients):]:
            ax.set_visible(False)
        legend_below(fig, *legend_entries(axes), ncol=4, title="last bar: that delay or more")
        fig.suptitle("Relative delay of each client's updates")
        return save_figure(fig, out_dir, stem)


def schedule_share_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "schedule_arrival_share") -> list[Path]:
    """Each client's share of the arrivals divided by its routing probability ``p_i`` (1: the
    long-run expectation), clients ordered by ``p_i``; the bars are the 95% range of a client's
    share of the dispatches (multinomial with ``p``), on the same scale. A ratio reads the same for
    large and small ``p`` and for clients of equal ``p``, which a scatter of share against ``p``
    piles on one point. ``data``: ``share`` of :func:`aflqueue.schedule.schedule_data`."""
    sh = data["share"]
    p = np.asarray(sh["p"], dtype=float)
    s = np.asarray(sh["share"], dtype=float)
    lo, hi = np.asarray(sh["expected_lo"], dtype=float), np.asarray(sh["expected_hi"], dtype=float)
    order = [i for i in np.argsort(p, kind="stable") if p[i] > 0]  # a client without tasks has no ratio
    x = np.arange(len(order))
    pp = p[order]
    with styled():
        fig, axes = subplots(1, 1, width="single", panel_height=2.2)
        ax = axes[0][0]
        guide(ax.axhline(1.0, color=GREY, lw=0.8, ls="--", label="share = p (long run)"))
        ax.errorbar(x, np.ones_like(x, dtype=float), yerr=[1 - lo[order] / pp, hi[order] / pp - 1], fmt="none",
                    ecolor=LIGHT_GREY, elinewidth=2.5, capsize=0, label="95% range of the share of the dispatches")
        ax.plot(x, s[order] / pp, "o", color=colour(0), mfc="none", label="measured share of the arrivals")
        if len(order) <= 12:
            ax.set_xticks(x, [f"{v:.2g}" for v in pp])
            ax.set_xlabel("client's routing probability $p_i$ (share)")
        else:
            ax.set_xlabel("client, by routing probability $p_i$ (rank)")
        ax.set_ylabel("share of the arrivals / $p_i$ (ratio)")
        skipped = len(p) - len(order)
        ax.set_title(f"each client's arrivals over p ({sh['updates']:,} updates)"
                     + (f", {skipped} with p = 0 left out" if skipped else ""))
        legend_below(fig, *legend_entries(axes), ncol=1)
        return save_figure(fig, out_dir, stem)

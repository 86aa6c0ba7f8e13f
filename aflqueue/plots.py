"""The figures any researcher draws from their own results, and the one style of every figure.

No function here runs an analysis, a simulation or a training: each takes data (a sweep's dict,
run groups, a schedule summary) and an output folder, writes the figure as PNG and PDF (file
names starting with the figure's family) and returns the paths. :mod:`aflqueue.figures` computes
the data of ``aflqueue figures``.

Families: sweeps of a system (``sweep_*``; the built-in analytic figures ``delay_vs_routing``,
``concurrency_sweep``, ``routing_vs_speed`` and ``energy_pareto`` are sweeps of the bundled
examples), a researcher's own runs (``runs_curves``) and schedules (``schedule_*``). A study's own
figures live in its folder (``validation/<study>/figures.py``, in the source repository) and use
the style helpers below: :func:`styled`, :func:`subplots`, :func:`legend_below`,
:func:`legend_entries`, :func:`mean_band`, :func:`save_figure`.

One style for all (:data:`STYLE`, applied with ``rc_context``, never globally): every axis is
labelled with its unit, legends sit outside the data (below the panels, or to the right), colours
come from the colour-blind-safe Okabe-Ito palette (:data:`PALETTE`, with line styles or markers as
a second cue), each panel carries one message and its title says it in words (no internal
names), and PDFs carry no creation date, so the same data give the same files.

matplotlib is imported inside the functions (Agg backend) so that ``import aflqueue`` stays light.
"""

from __future__ import annotations

import math
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

__all__ = ["STYLE", "PALETTE", "GREY", "LIGHT_GREY", "LINESTYLES", "MARKERS", "ACCURACY", "LOSS", "SIM_TIME", "UPDATES",
           "pyplot", "styled", "subplots", "legend_below", "legend_entries", "wrap", "save_figure", "panel_grid",
           "finite", "as_array", "human", "colour", "mean_band", "sweep_concurrency_figure", "sweep_routing_figure",
           "sweep_pareto_figure", "sweep_delay_routing_figure", "runs_figure", "schedule_timeline_figure",
           "schedule_delay_figure", "schedule_share_figure"]

#: The Okabe & Ito (2008) palette, distinguishable with the common colour-vision deficiencies, in
#: the order figures use it (black is kept for references such as AsyncSGD; yellow comes last: it
#: is faint on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
#: Greys for references (diagonals, targets, uniform routing).
GREY, LIGHT_GREY = "#555555", "#999999"
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1.5)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

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
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": "cycler(color=[" + ", ".join(repr(c) for c in PALETTE) + "])",
    "lines.linewidth": 1.3,
    "lines.markersize": 4,
    "legend.frameon": False,
    "savefig.dpi": 200,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable/searchable in the PDF
    "ps.fonttype": 42,
}

# Display names of the toolkit's internal names (scenarios, partitions, algorithms, data sets).
_HUMAN = {"two-groups": "two speed groups (10x)", "five-types": "five device types (30x)",
          "homogeneous": "equal speeds", "custom": "custom speeds", "iid": "IID split",
          "generalized-asyncsgd": "Generalized AsyncSGD", "asyncsgd": "AsyncSGD", "fedasync": "FedAsync",
          "fedbuff": "FedBuff", "fedecho": "FedEcho", "fedrevive": "FedRevive", "digits": "digits",
          "mnist1d": "MNIST-1D", "mnist": "MNIST", "fashionmnist": "Fashion-MNIST", "kmnist": "KMNIST",
          "emnist": "EMNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "synthetic": "synthetic data",
          "per-update": "P1 per-update", "wall-clock": "P2 wall-clock", "wallclock": "P2 wall-clock",
          "time-to-accuracy": "P3 time to accuracy", "energy": "energy to accuracy",
          "max-throughput": "P5 max-throughput", "uniform": "uniform (AsyncSGD)"}

ACCURACY = "test accuracy (%)"
LOSS = "test loss (cross-entropy, nats)"
SIM_TIME = "simulated time (time units)"
UPDATES = "updates applied (server model versions)"


def human(name: str) -> str:
    """Display name of an internal name (``dir0.5`` -> ``Dirichlet α = 0.5``); unknown names unchanged."""
    if name in _HUMAN:
        return _HUMAN[name]
    if name.startswith("dir") and name[3:].replace(".", "", 1).isdigit():
        return f"Dirichlet α = {name[3:]}"
    if name.startswith("k") and name[1:].isdigit():
        return f"{name[1:]} classes per client"
    return name


def colour(k: int) -> str:
    """The ``k``-th colour of :data:`PALETTE` (cycling)."""
    return PALETTE[k % len(PALETTE)]


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def styled() -> Iterator[Any]:
    """``pyplot`` with :data:`STYLE` in force (for drawing and saving)."""
    plt = pyplot()
    with plt.rc_context(STYLE):
        yield plt


def subplots(nrows: int = 1, ncols: int = 1, panel: tuple[float, float] = (3.3, 2.8), **kw: Any):
    """A constrained-layout figure of ``nrows x ncols`` panels (axes always 2-D); call inside :func:`styled`."""
    plt = pyplot()
    return plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows), squeeze=False,
                        layout="constrained", **kw)


def legend_below(fig: Any, handles: Sequence[Any], labels: Sequence[str], ncol: int | None = None,
                  title: str | None = None) -> Any:
    """One legend for the figure, below the panels (outside every data area)."""
    if not handles:
        return None
    ncol = ncol or min(len(labels), 3)
    return fig.legend(handles, labels, loc="outside lower center", ncol=ncol, title=title)


def legend_entries(axes: Any) -> tuple[list[Any], list[str]]:
    """Legend handles and labels of all axes, first occurrence of each label kept."""
    seen: dict[str, Any] = {}
    for ax in np.asarray(axes).flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_"):
                seen.setdefault(lab, h)
    return list(seen.values()), list(seen)


def wrap(text: str, width: int = 48) -> str:
    """``text`` wrapped at spaces to lines of at most ``width`` characters (a title, a legend entry)."""
    return "\n".join(textwrap.wrap(text, width)) or text


def _wrap_words(text: str, width: int) -> str:
    """Wrap ``text`` at spaces to lines of about ``width`` characters, never inside ``$...$``."""
    words: list[str] = []
    for tok in text.split(" "):
        if words and words[-1].count("$") % 2 == 1:  # inside mathtext: glue to the previous word
            words[-1] += " " + tok
        else:
            words.append(tok)
    lines: list[str] = []
    for w in words:
        if lines and len(lines[-1]) + 1 + len(w) <= width:
            lines[-1] += " " + w
        else:
            lines.append(w)
    return "\n".join(lines)


def _fit_text(fig: Any) -> None:
    """Wrap axis labels and titles that are longer than their panel (constrained layout can make
    room around a panel, but not for a label longer than the panel itself)."""
    W, H = fig.get_size_inches()
    fig.draw_without_rendering()  # lay the panels out: their real sizes, after legends and titles took room
    for ax in fig.axes:
        if not ax.get_visible() or ax.get_subplotspec() is None:
            continue
        pos = ax.get_position()
        nominal = ax.get_subplotspec().get_position(fig)
        width = max(pos.width, 0.6 * nominal.width) * W
        height = max(pos.height, 0.5 * nominal.height) * H
        for text, inches in ((ax.xaxis.label, width * 0.95), (ax.yaxis.label, height * 0.95),
                             (ax.title, width * 1.05)):
            s = text.get_text()
            if s:
                per_char = text.get_fontsize() * 0.55 / 72.0  # inches per character, roughly
                text.set_text(_wrap_words(s.replace("\n", " "), max(14, int(inches / per_char))))
    if fig._suptitle is not None and fig._suptitle.get_text():
        s = fig._suptitle
        s.set_text(_wrap_words(s.get_text().replace("\n", " "), max(30, int(W * 0.95 * 72 / (s.get_fontsize() * 0.55)))))


def save_figure(fig: Any, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.png`` and ``.pdf`` (no creation date: the same data give the
    same files), close it and return both paths. Labels and titles longer than their panel are
    wrapped first."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    plt = pyplot()
    with plt.rc_context(STYLE):
        _fit_text(fig)
        for p in paths:
            # no creation date in the PDF: regenerating a figure from the same results gives the same file
            fig.savefig(p, bbox_inches="tight",
                        metadata={"CreationDate": None, "Creator": "aflqueue"} if p.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


def panel_grid(n: int, ncols: int = 3) -> tuple[int, int]:
    """``(rows, columns)`` of a grid of panels for ``n`` panels, at most ``ncols`` per row."""
    ncols = max(1, min(ncols, n))
    return int(math.ceil(n / ncols)), ncols


def finite(x: Any) -> bool:
    """Whether ``x`` is a finite number (None is not)."""
    return x is not None and math.isfinite(float(x))


def as_array(x: Sequence[Any]) -> np.ndarray:
    """``x`` as a float array, None as NaN (saved curves hold None where a value was undefined)."""
    return np.asarray([np.nan if v is None else v for v in x], dtype=float)


# --------------------------------------------------------------------------- sweeps of a system
_PROXY_PANELS = (("per_update", "per-update", "P1: per-update proxy $U$", "proxy $U(p, m; K)$ (loss units)"),
                 ("wallclock", "wall-clock", r"P2: wall-clock proxy $W$", r"proxy $W(p, m; \tau)$ (loss units)"),
                 ("time_to_accuracy", "time-to-accuracy", r"P3: time to accuracy $E[T_\epsilon]$",
                  r"$E[T_\epsilon]$ (time units)"),
                 ("energy", "energy", "energy to accuracy", r"energy $P \cdot E[T_\epsilon]$ (energy units)"))


def _system_name(data: Mapping[str, Any]) -> str:
    rates = np.asarray(data["rates"])
    return f"{data.get('name') or 'system'} (n = {rates.size}, speeds {rates.min():g}-{rates.max():g} tasks / time unit)"


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
    with styled():
        fig, axes = subplots(nrows, ncols, panel=(3.4, 2.7))
        flat = list(axes.flat)
        a = flat[0]
        a.plot(ms, as_array([r["throughput_uniform"] for r in rows]), color="black", label="uniform routing (AsyncSGD)")
        if "max-throughput" in data["optima"]:
            o = data["optima"]["max-throughput"]
            a.plot([o["concurrency"]], [o["objective_value"]], "*", color=colour(1), ms=9,
                   label="optimum of the objective")
        a.set_title("throughput" + (f", P5 optimum at m* = {data['optima']['max-throughput']['concurrency']}"
                                    if "max-throughput" in data["optima"] else " under uniform routing"))
        a.set_ylabel(r"throughput $\lambda$ (updates / time unit)")
        a = flat[1]
        a.plot(ms, as_array([r["relative_delay_slowest_uniform"] for r in rows]), color=colour(1), ls="--",
               label="slowest client, uniform")
        a.plot(ms, as_array([r["relative_delay_fastest_uniform"] for r in rows]), color=colour(0), ls="-.",
               label="fastest client, uniform")
        a.plot(ms, as_array([r["mean_relative_delay_uniform"] for r in rows]), color=GREY, ls=":",
               label=r"mean $\Sigma_i\, p_i E[D_i] = m - 1$ (any routing)")
        a.set_title("relative delay (staleness) under uniform routing")
        a.set_ylabel(r"relative delay $E[D_i]$ (updates)")
        for ax, (key, obj, title, ylabel) in zip(flat[2:], panels):
            ax.plot(ms, as_array([r.get(f"{key}_uniform") for r in rows]), color="black",
                    label="uniform routing (AsyncSGD)")
            prof = [(r["m"], r.get(f"{key}_optimal")) for r in rows if finite(r.get(f"{key}_optimal"))]
            if prof:
                ax.plot([p[0] for p in prof], [p[1] for p in prof], color=colour(0), ls="--",
                        label="best routing at each m")
            o = data["optima"][obj]
            ax.plot([o["concurrency"]], [o["objective_value"]], "*", color=colour(1), ms=9,
                    label="optimum of the objective")
            ax.set_title(f"{title}, optimum at m* = {o['concurrency']}")
            ax.set_ylabel(ylabel)
            vals = as_array([r.get(f"{key}_uniform") for r in rows] + [p[1] for p in prof])
            vals = vals[np.isfinite(vals) & (vals > 0)]
            if vals.size and vals.max() / vals.min() > 30:
                ax.set_yscale("log")
        for ax in flat[:n_pan]:
            ax.set_xlabel("concurrency m (tasks in flight)")
            if ms.max() / max(ms.min(), 1) > 50:
                ax.set_xscale("log")
        for ax in flat[n_pan:]:
            ax.set_visible(False)
        handles, labels = legend_entries(axes)
        legend_below(fig, handles, labels, ncol=3)
        fig.suptitle(f"Against concurrency, {_system_name(data)}")
        return save_figure(fig, out_dir, stem)


def sweep_routing_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "sweep_routing_vs_speed",
                         objectives: Sequence[str] | None = None) -> list[Path]:
    """Optimal routing ``p_i`` against client speed ``mu_i`` for each objective (at its optimum
    ``m*``): one marker per client, the line through the mean ``p`` of each speed."""
    rates = np.asarray(data["rates"], dtype=float)
    speeds = np.unique(rates)
    with styled():
        fig, axes = subplots(1, 1, panel=(4.4, 3.3))
        ax = axes[0][0]
        for k, (obj, o) in enumerate(data["optima"].items()):
            if objectives is not None and obj not in objectives:
                continue
            p = np.maximum(np.asarray(o["routing"], dtype=float), 1e-6)
            col, mk, ls = colour(k), MARKERS[k % len(MARKERS)], LINESTYLES[k % len(LINESTYLES)]
            ax.plot(rates, p, mk, color=col, mfc="none", ls="none")
            ax.plot(speeds, [p[rates == s].mean() for s in speeds], color=col, ls=ls, marker=mk, mfc="none",
                    label=f"{human(obj)} (m* = {o['concurrency']})")
        ax.axhline(1 / rates.size, color="black", ls="--", lw=1, label="uniform (AsyncSGD)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"client speed $\mu_i$ (tasks / time unit)")
        ax.set_ylabel(r"routing probability $p_i$ (share of tasks; floor $10^{-6}$)")
        ax.set_title("routing of each objective's optimum against client speed")
        legend_below(fig, *legend_entries(axes), ncol=2, title="objective (markers: clients, line: mean per speed)")
        fig.suptitle(_system_name(data))
        return save_figure(fig, out_dir, stem)


def sweep_pareto_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "sweep_pareto") -> list[Path]:
    """Time to accuracy against energy to accuracy along the trade-off weight ``r`` (P4), and the
    uniform routing (AsyncSGD)."""
    pf = data["pareto"]
    T, E, w, ms = pf["time"], pf["energy"], pf["weights"], pf["concurrency"]
    with styled():
        fig, axes = subplots(1, 1, panel=(4.8, 3.6))
        ax = axes[0][0]
        ax.plot(T, E, "o-", color=colour(0), mfc="none", label="optimum for weight r (r = 0: time, 1: energy)")
        for i, what in ((0, "fastest"), (len(w) - 1, "least energy")):
            ax.annotate(f"r = {w[i]:g} ({what}), m = {ms[i]}", (T[i], E[i]), textcoords="offset points",
                        xytext=(6, 4), fontsize=7)
        vals_t, vals_e = as_array(T), as_array(E)
        if np.nanmax(vals_t) / np.nanmin(vals_t) > 5 or np.nanmax(vals_e) / np.nanmin(vals_e) > 5:
            ax.set_xscale("log")
            ax.set_yscale("log")
        if finite(pf.get("uniform_time")) and finite(pf.get("uniform_energy")):
            ax.plot([pf["uniform_time"]], [pf["uniform_energy"]], "*", color="black", ms=10,
                    label=f"uniform (AsyncSGD), m = {pf.get('uniform_concurrency')}")
        ax.set_xlabel(r"time to accuracy $E[T_\epsilon]$ (time units)")
        ax.set_ylabel(r"energy to accuracy (energy units, busy power $\kappa \mu^3$)")
        ax.set_title("time/energy Pareto front (P4) and uniform routing")
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
        fig, axes = subplots(1, 2, panel=(3.4, 2.9))
        a1, a2 = axes[0]
        a1.plot(q, d["delay_fast"], color=colour(0), ls="-.", label=f"fastest client (rate {d['fast_rate']:g})")
        a1.plot(q, d["delay_slow"], color=colour(1), ls="--", label=f"slowest client (rate {d['slow_rate']:g})")
        a1.plot(q, d["mean_delay"], color=GREY, ls=":", lw=1, label=r"mean $\Sigma_i\, p_i E[D_i] = m - 1$")
        a1.set_yscale("log")
        a1.set_ylabel(r"relative delay $E[D_i]$ (updates)")
        a1.set_title("relative delay of the fastest and slowest client")
        a2.plot(q, d["throughput"], color=colour(2), label=r"throughput $\lambda$")
        a2.set_ylabel(r"throughput $\lambda$ (updates / time unit)")
        a2.set_title("throughput")
        for a in (a1, a2):
            a.axvline(d["uniform_mass"], color=LIGHT_GREY, ls=":", lw=1, label="uniform routing")
            a.set_xlabel(f"routing mass on the {d['slow_clients']} slower clients (share of tasks)")
        legend_below(fig, *legend_entries(axes), ncol=3)
        fig.suptitle(f"Exact analysis at m = {d['concurrency']}, {_system_name(data)}")
        return save_figure(fig, out_dir, stem)


# --------------------------------------------------------------------------- training curves
def _band(curves: list[list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and a seeded percentile-bootstrap 95% band of the mean, per time point."""
    from .stats import bootstrap_band

    return bootstrap_band(curves)


def mean_band(ax: Any, t: np.ndarray, curves: list[list[float]], col: str, label: str, ls: Any = "-",
               scale: float = 100.0) -> None:
    """Mean over seeds (in %) and its 95% bootstrap band (several seeds only)."""
    mean, lo, hi = _band(curves)
    ax.plot(t, scale * mean, color=col, ls=ls, label=label)
    if len(curves) > 1:
        ax.fill_between(t, scale * lo, scale * hi, color=col, alpha=0.18, lw=0)


# --------------------------------------------------------------------------- a researcher's own runs
def runs_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "runs_curves") -> list[Path]:
    """Accuracy and loss against simulated time and against updates for groups of runs (one
    panel each): the mean over the seeds of a group with its 95% bootstrap band, legends from what
    differs between the groups' configurations. ``data``: :func:`aflqueue.runs.curves_data`."""
    groups = data["groups"]
    panels = (("time", "accuracy", SIM_TIME, ACCURACY, "accuracy against simulated time"),
              ("updates", "accuracy", UPDATES, ACCURACY, "accuracy against updates"),
              ("time", "loss", SIM_TIME, LOSS, "loss against simulated time"),
              ("updates", "loss", UPDATES, LOSS, "loss against updates"))
    with styled():
        fig, axes = subplots(2, 2, panel=(3.3, 2.5))
        for ax, (axis, metric, xlabel, ylabel, title) in zip(axes.flat, panels):
            scale = 100.0 if metric == "accuracy" else 1.0
            for k, g in enumerate(groups):
                c = g[axis]
                x = np.asarray(c["x"], dtype=float)
                if not x.size:
                    continue
                col, ls = colour(k), LINESTYLES[k % len(LINESTYLES)]
                band = c[metric]
                ax.plot(x, scale * as_array(band["mean"]), color=col, ls=ls, label=g["legend"])
                if band.get("lo") is not None and len(g["seeds"]) > 1:
                    ax.fill_between(x, scale * as_array(band["lo"]), scale * as_array(band["hi"]), color=col, alpha=0.18, lw=0)
            if metric == "accuracy" and data.get("target") is not None:
                ax.axhline(100 * data["target"], color=GREY, ls=":", lw=0.8,
                           label=f"target accuracy ({100 * data['target']:.0f}%)")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(title)
        several = any(len(g["seeds"]) > 1 for g in groups)
        title = data.get("legend_title") or "runs"
        if several:
            title += " (mean over seeds, band: 95% bootstrap interval of the mean)"
        legend_below(fig, *legend_entries(axes), ncol=min(2, len(groups) + 1), title=title)
        fig.suptitle(data.get("title") or "Training curves")
        return save_figure(fig, out_dir, stem)


# --------------------------------------------------------------------------- schedules
def schedule_timeline_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "schedule_timeline") -> list[Path]:
    """Tasks per client over simulated time -- the task in service (bar) and how many wait in the
    client's queue (shaded height) -- and, below, how many of the ``m`` tasks in flight wait,
    compute or travel at each moment. ``data``: ``timeline`` of :func:`aflqueue.schedule.schedule_data`."""
    from matplotlib.patches import Patch

    tl = data["timeline"]
    lanes = tl["clients"]
    t0, t1 = tl["window"]
    states = (("queue", "waiting in a client's queue", colour(5)), ("service", "in service (computing)", colour(0)),
              ("transit", "in transit (links, central server)", colour(4)))
    top_h = max(1.4, 0.42 * len(lanes))
    with styled():
        plt = pyplot()
        fig, axes = plt.subplots(2, 1, figsize=(7.2, top_h + 2.3), sharex=True, layout="constrained", squeeze=False,
                                 gridspec_kw={"height_ratios": [top_h, 1.9]})
        ax = axes[0][0]
        wmax = max([max(w["count"]) for w in tl["waiting"].values() if w["count"]] + [1])
        for lane, i in enumerate(lanes):
            segs = tl["segments"]["service"][str(i)]
            if segs:
                ax.broken_barh([(a, b - a) for a, b in segs], (lane - 0.42, 0.42), facecolors=colour(0),
                               edgecolors="none")
            w = tl["waiting"][str(i)]
            if w["time"]:
                tt = np.asarray(w["time"] + [t1])
                cc = np.asarray(w["count"] + w["count"][-1:], dtype=float)
                ax.fill_between(tt, lane + 0.02, lane + 0.02 + 0.4 * cc / wmax, step="post", color=colour(5), lw=0)
        ax.set_yticks(range(len(lanes)), [f"{tl['names'][i]} (μ = {tl['rates'][i]:g})" for i in lanes], fontsize=7)
        ax.set_ylim(len(lanes) - 0.5, -0.5)
        ax.set_ylabel("client (compute rate, tasks / time unit)")
        ax.set_xlabel(SIM_TIME)
        ax.tick_params(labelbottom=True)
        ax.set_title(f"per client: the task in service (bar) and the tasks waiting (height, up to {wmax})")
        ax.grid(False, axis="y")
        b = axes[1][0]
        cnt = tl["counts"]
        t = np.asarray(cnt["time"] + [t1], dtype=float)
        stack = [np.asarray(cnt[k] + cnt[k][-1:], dtype=float) for k, _, _ in states]
        b.stackplot(t, *stack, step="post", colors=[c for _, _, c in states], lw=0)
        b.set_ylabel("tasks in flight (count)")
        b.set_xlabel(SIM_TIME)
        b.set_ylim(0, tl["concurrency"] * 1.05)
        b.set_title(f"all clients: the m = {tl['concurrency']} tasks in flight, waiting, computing or travelling")
        b.set_xlim(t0, t1)
        # a state that never occurs (no links: nothing in transit) gets no legend entry
        present = [(lab, c) for k, lab, c in states if k == "service" or max(cnt[k] or [0]) > 0]
        legend_below(fig, [Patch(facecolor=c) for _, c in present], [lab for lab, _ in present], ncol=3)
        shown = "" if len(lanes) == tl["n_clients"] else f" ({len(lanes)} of {tl['n_clients']} clients shown)"
        fig.suptitle(f"Schedule from t = {t0:g} to {t1:g} (time units){shown}")
        return save_figure(fig, out_dir, stem)


def schedule_delay_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "schedule_delays") -> list[Path]:
    """Per-client histograms of the relative delay (updates) with the empirical mean, the
    closed-form mean ``E[D_i]`` and, where available, the exact law drawn on top.
    ``data``: ``delays`` of :func:`aflqueue.schedule.schedule_data`."""
    dl = data["delays"]
    clients = dl["clients"]
    nrows, ncols = panel_grid(len(clients), 4)
    with styled():
        fig, axes = subplots(nrows, ncols, panel=(2.9, 2.5))
        for ax, c in zip(axes.flat, clients):
            counts = np.asarray(c["counts"], dtype=float)
            total = counts.sum()
            if total == 0:
                ax.set_title(f"{c['name']}: no update")
                ax.set_xlabel("relative delay (updates)")
                ax.set_ylabel("share of its updates (fraction)")
                continue
            hi = int(c["display_max"])
            shown = counts[: hi + 1].copy()
            shown[-1] += counts[hi + 1:].sum()  # last bar: D >= hi
            d = np.arange(hi + 1)
            ax.bar(d, shown / total, width=1.0, color=colour(5), alpha=0.7, lw=0, label="simulated share")
            if c.get("exact_pmf") is not None:
                pmf = as_array(c["exact_pmf"])
                ex = pmf[: hi + 1].copy()
                ex[-1] += np.nansum(pmf[hi + 1:])
                ax.step(d, ex, where="mid", color=colour(0), lw=1.0, label="exact law (CTMC)")
            ax.axvline(c["mean"], color="black", lw=1.0, label="simulated mean")
            if c.get("closed_form_mean") is not None:
                ax.axvline(c["closed_form_mean"], color=colour(1), lw=1.2, ls="--", label="closed-form mean $E[D_i]$")
            ax.set_title(f"{c['name']} (μ = {c['rate']:g}, p = {c['p']:.3g})", fontsize=8)
            ax.set_xlabel("relative delay (updates)")
            ax.set_ylabel("share of its updates (fraction)")
        for ax in list(axes.flat)[len(clients):]:
            ax.set_visible(False)
        legend_below(fig, *legend_entries(axes), ncol=4)
        note = dl.get("note")
        fig.suptitle("Relative delay of each client's updates" + (f"\n{wrap(note, 110)}" if note else ""),
                     fontsize=9)
        return save_figure(fig, out_dir, stem)


def schedule_share_figure(data: Mapping[str, Any], out_dir: str | Path, stem: str = "schedule_arrival_share") -> list[Path]:
    """Each client's share of the arrivals against its routing probability ``p_i``; the bars are the
    95% range of a client's share of the dispatches (multinomial with ``p``), the diagonal the
    long-run expectation. ``data``: ``share`` of :func:`aflqueue.schedule.schedule_data`."""
    sh = data["share"]
    p = np.asarray(sh["p"], dtype=float)
    s = np.asarray(sh["share"], dtype=float)
    lo, hi = np.asarray(sh["expected_lo"], dtype=float), np.asarray(sh["expected_hi"], dtype=float)
    with styled():
        fig, axes = subplots(1, 1, panel=(3.8, 3.2))
        ax = axes[0][0]
        top = max(p.max(), s.max()) * 1.08
        ax.plot([0, top], [0, top], color=GREY, lw=0.8, ls="--", label="share = p (long run)")
        ax.errorbar(p, p, yerr=[p - lo, hi - p], fmt="none", ecolor=LIGHT_GREY, elinewidth=3, alpha=0.6,
                    label="95% range of the dispatch share")
        ax.plot(p, s, "o", color=colour(0), mfc="none", label="measured arrival share")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("routing probability $p_i$ (share of tasks sent)")
        ax.set_ylabel("share of the arrivals (fraction of updates)")
        ax.set_title(f"each client's share of the arrivals against p ({sh['updates']:,} updates)")
        legend_below(fig, *legend_entries(axes), ncol=1)
        return save_figure(fig, out_dir, stem)
